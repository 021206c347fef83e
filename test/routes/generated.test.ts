/**
 * Generative route test: random router trees × random URLs, on Express 4, Express 5 and Express 5
 * with routers of `router` 2.2.0 (no declared path on a layer). Each tree runs in a fresh app
 * with a fresh lens; the label of every request, read back from the lens's registry as a user
 * sees it, must be the template the tree declares for the route that answered (or `""` when no
 * route did), and must never hold a generated value.
 *
 * Trees: nested routers, sub-apps (`app.use(path, app)`), parameter mounts, arrays of paths,
 * regexp paths and mounts, `app.route()`, case-sensitive and strict routing; URLs with random
 * letter case, percent-encoded values and trailing slashes; errors thrown or passed to `next` by
 * routes and middleware at every depth, answered by error handlers at random depths.
 *
 * Seeded: LOOPLENS_SEED=<n> replays a run; every failure message starts with the seed. Bounded:
 * at most TREES trees and BUDGET_MS per variant (fewer trees on a slow machine).
 */

import type { NextFunction, Request, Response, Router } from 'express'
import express5 from 'express'
import express4 from 'express4'
import { createLooplens, type Looplens } from 'looplens'
import Router22 from 'router22'
import { describe, expect, it } from 'vitest'
import { type Listening, listen } from '../helpers/server.js'

const SEED = seedFromEnv()
const TREES = 400
const BUDGET_MS = 15_000
const URLS_PER_TREE = 12
const DURATION = 'http_server_request_duration_seconds'

function seedFromEnv(): number {
  const given = process.env.LOOPLENS_SEED
  if (given !== undefined && given !== '') {
    const seed = Number(given)
    if (!Number.isSafeInteger(seed))
      throw new TypeError(`LOOPLENS_SEED must be an integer: ${given}`)
    return seed
  }
  return Math.floor(Math.random() * 2 ** 31)
}

/** mulberry32: small, fast, good enough to draw shapes. */
function makeRandom(seed: number): () => number {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

// --- The model of a tree ----------------------------------------------------------------------

/** One declared path: `/word/:param`, a regexp, or `/`. */
type Alt =
  | { kind: 'segments'; segments: string[] }
  | { kind: 'regexp'; word: string; regexp: RegExp }
  | { kind: 'root' }

interface MountItem {
  type: 'mount'
  alts: Alt[]
  child: TreeNode
}
interface RouteItem {
  type: 'route'
  id: number
  alts: Alt[]
  behaviour: 'ok' | 'throw' | 'next'
  viaRoute: boolean
}
interface MiddlewareItem {
  type: 'middleware'
  id: number
  word: string
  behaviour: 'throw' | 'next'
}
type Item = MountItem | RouteItem | MiddlewareItem

interface TreeNode {
  id: number
  kind: 'app' | 'router'
  caseSensitive: boolean
  strict: boolean
  items: Item[]
  errorHandler: boolean
  parent: TreeNode | undefined
}

/** Where a route or middleware sits: the mounts from the root, each with the node that owns it. */
interface Target {
  item: RouteItem | MiddlewareItem
  node: TreeNode
  mounts: { mount: MountItem; owner: TreeNode }[]
}

interface Variant {
  name: string
  express: typeof express5
  router: (options: { caseSensitive: boolean; strict: boolean }) => Router
  /** router 2.2.0 keeps no regexp of a mount: its label says `(regexp)`. */
  regexpMountsUnknown: boolean
}

const VARIANTS: Variant[] = [
  {
    name: 'Express 4',
    express: express4,
    router: (options) => express4.Router(options),
    regexpMountsUnknown: false,
  },
  {
    name: 'Express 5',
    express: express5,
    router: (options) => express5.Router(options),
    regexpMountsUnknown: false,
  },
  {
    name: 'Express 5 with router 2.2.0 routers',
    express: express5,
    router: (options) => Router22(options),
    regexpMountsUnknown: true,
  },
]

/** Letters of words and parameter names: no `z` (values start with `zq`), no digits. */
const LETTERS = 'abcdefghijklmnoprstuvwxy'

class TreeGenerator {
  readonly #random: () => number
  #ids = 0
  #words = new Set<string>()
  readonly targets: Target[] = []

  constructor(random: () => number) {
    this.#random = random
  }

  chance(p: number): boolean {
    return this.#random() < p
  }

  int(min: number, max: number): number {
    return min + Math.floor(this.#random() * (max - min + 1))
  }

  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.#random() * items.length)]!
  }

  /** A word no other path of the tree uses: a URL meant for one path matches no other word. */
  word(): string {
    for (;;) {
      let word = 'w'
      for (let i = this.int(2, 4); i > 0; i--) word += this.pick([...LETTERS])
      if (!this.#words.has(word)) {
        this.#words.add(word)
        return word
      }
    }
  }

  /** A parameter name no other path of the tree uses (a path never repeats one). */
  param(): string {
    for (;;) {
      let name = ':p'
      for (let i = 0; i < 3; i++) name += this.pick([...LETTERS])
      if (!this.#words.has(name)) {
        this.#words.add(name)
        return name
      }
    }
  }

  segmentsAlt(): Alt {
    const segments = [this.chance(0.7) ? this.word() : this.param()]
    if (this.chance(0.5)) segments.push(this.chance(0.5) ? this.word() : this.param())
    return { kind: 'segments', segments }
  }

  regexpAlt(forRoute: boolean): Alt {
    const word = this.word()
    return {
      kind: 'regexp',
      word,
      regexp: new RegExp(forRoute ? `^\\/${word}\\d+$` : `^\\/${word}\\d+`),
    }
  }

  mountAlts(): Alt[] {
    const one = (): Alt => (this.chance(0.12) ? this.regexpAlt(false) : this.segmentsAlt())
    if (this.chance(0.25)) return [one(), one()]
    return [this.chance(0.06) ? { kind: 'root' } : one()]
  }

  routeAlts(): Alt[] {
    if (this.chance(0.15))
      return [this.segmentsAlt(), this.chance(0.3) ? this.regexpAlt(true) : this.segmentsAlt()]
    const draw = this.#random()
    if (draw < 0.1) return [{ kind: 'root' }]
    if (draw < 0.2) return [this.regexpAlt(true)]
    return [this.segmentsAlt()]
  }

  node(
    kind: TreeNode['kind'],
    depth: number,
    parent: TreeNode | undefined,
    mounts: Target['mounts'],
  ): TreeNode {
    const node: TreeNode = {
      id: this.#ids++,
      kind,
      caseSensitive: this.chance(0.25),
      strict: this.chance(0.25),
      items: [],
      errorHandler: parent === undefined || this.chance(0.3),
      parent,
    }
    for (let i = this.int(1, 4); i > 0; i--) {
      const draw = this.#random()
      if (depth < 3 && draw < 0.35) {
        const childKind = kind === 'app' && this.chance(0.3) ? 'app' : 'router'
        const mount: MountItem = {
          type: 'mount',
          alts: this.mountAlts(),
          child: undefined as never,
        }
        mount.child = this.node(childKind, depth + 1, node, [...mounts, { mount, owner: node }])
        node.items.push(mount)
      } else if (draw < 0.88) {
        const behaviourDraw = this.#random()
        const route: RouteItem = {
          type: 'route',
          id: this.#ids++,
          alts: this.routeAlts(),
          behaviour: behaviourDraw < 0.7 ? 'ok' : behaviourDraw < 0.85 ? 'throw' : 'next',
          viaRoute: this.chance(0.2),
        }
        node.items.push(route)
        this.targets.push({ item: route, node, mounts })
      } else {
        const middleware: MiddlewareItem = {
          type: 'middleware',
          id: this.#ids++,
          word: this.word(),
          behaviour: this.chance(0.5) ? 'throw' : 'next',
        }
        node.items.push(middleware)
        this.targets.push({ item: middleware, node, mounts })
      }
    }
    return node
  }
}

// --- Declared templates, as the tree defines them --------------------------------------------

function altPath(alt: Alt): string | RegExp {
  if (alt.kind === 'root') return '/'
  if (alt.kind === 'regexp') return alt.regexp
  return `/${alt.segments.join('/')}`
}

function pathArgument(alts: Alt[]): string | RegExp | (string | RegExp)[] {
  return alts.length === 1 ? altPath(alts[0]!) : alts.map(altPath)
}

function mountTemplate(alt: Alt, owner: TreeNode, variant: Variant): string {
  if (alt.kind === 'root') return ''
  if (alt.kind === 'regexp') {
    return variant.regexpMountsUnknown && owner.kind === 'router' ? '(regexp)' : String(alt.regexp)
  }
  return `/${alt.segments.join('/')}`
}

function routeTemplate(alts: Alt[]): string {
  return alts.map((alt) => String(altPath(alt))).join(',')
}

/** How much of `rest` a mount path consumes, as Express matches a mount, or -1. */
function consumed(alt: Alt, rest: string, caseSensitive: boolean): number {
  if (alt.kind === 'root') return 0
  if (alt.kind === 'regexp') {
    const match = alt.regexp.exec(rest)
    if (match === null || match.index !== 0) return -1
    const next = rest[match[0].length]
    return next === undefined || next === '/' ? match[0].length : -1
  }
  const parts = rest.split('/')
  let length = 0
  for (let i = 0; i < alt.segments.length; i++) {
    const declared = alt.segments[i]!
    const actual = parts[i + 1]
    if (actual === undefined || actual === '') return -1
    if (!declared.startsWith(':')) {
      const same = caseSensitive ? actual === declared : actual.toLowerCase() === declared
      if (!same) return -1
    }
    length += actual.length + 1
  }
  return length
}

/** The label a request of `path` answered by `target`'s route must get. */
function expectedLabel(target: Target, path: string, variant: Variant): string {
  let rest = path
  let base = ''
  for (const { mount, owner } of target.mounts) {
    const caseSensitive = owner.caseSensitive
    let chosen: Alt | undefined
    for (const alt of mount.alts) {
      const length = consumed(alt, rest, caseSensitive)
      if (length >= 0) {
        chosen = alt
        rest = rest.slice(length)
        if (!rest.startsWith('/')) rest = `/${rest}`
        break
      }
    }
    if (chosen === undefined) throw new Error(`the model cannot route ${path} through its mounts`)
    base += mountTemplate(chosen, owner, variant)
  }
  const route = routeTemplate((target.item as RouteItem).alts)
  if (base === '') return route
  return route === '/' ? base : base + route
}

// --- URLs -------------------------------------------------------------------------------------

/** A parameter value: starts with `zq` (no template holds it), sometimes %-encoded. */
function value(generator: TreeGenerator): string {
  let text = 'zq'
  for (let i = generator.int(3, 8); i > 0; i--)
    text += generator.pick([...'abcdefghijklmnopqrstuvwxyz0123456789-_'])
  if (!generator.chance(0.3)) return text
  return [...text]
    .map((char) => {
      if (!generator.chance(0.4)) return char
      const hex = char.charCodeAt(0).toString(16)
      return `%${generator.chance(0.5) ? hex.toUpperCase() : hex}`
    })
    .join('')
}

function casing(word: string, caseSensitive: boolean, generator: TreeGenerator): string {
  if (caseSensitive && generator.chance(0.8)) return word
  return [...word].map((char) => (generator.chance(0.4) ? char.toUpperCase() : char)).join('')
}

function concrete(alt: Alt, caseSensitive: boolean, generator: TreeGenerator): string {
  if (alt.kind === 'root') return ''
  if (alt.kind === 'regexp') return `/${alt.word}${generator.int(0, 99_999)}`
  return alt.segments
    .map((segment) =>
      segment.startsWith(':')
        ? `/${value(generator)}`
        : `/${casing(segment, caseSensitive, generator)}`,
    )
    .join('')
}

function urlFor(target: Target, generator: TreeGenerator): string {
  let path = ''
  for (const { mount, owner } of target.mounts) {
    path += concrete(generator.pick(mount.alts), owner.caseSensitive, generator)
  }
  const item = target.item
  if (item.type === 'middleware')
    path += `/${casing(item.word, target.node.caseSensitive, generator)}`
  else path += concrete(generator.pick(item.alts), target.node.caseSensitive, generator)
  if (path === '') path = '/'
  if (generator.chance(0.15) && !path.endsWith('/')) path += '/'
  return path
}

// --- Building the app -------------------------------------------------------------------------

function failure(origin: number): Error {
  return Object.assign(new Error('generated failure'), { origin })
}

function build(node: TreeNode, variant: Variant, lens: Looplens | undefined): Router {
  const options = { caseSensitive: node.caseSensitive, strict: node.strict }
  let target: Router
  if (node.kind === 'app') {
    const app = variant.express()
    // Set before the app's router exists: it is made with these settings.
    if (node.caseSensitive) app.set('case sensitive routing', true)
    if (node.strict) app.set('strict routing', true)
    if (lens !== undefined) app.use(lens.express())
    target = app as unknown as Router
  } else {
    target = variant.router(options)
  }
  for (const item of node.items) {
    if (item.type === 'mount') {
      target.use(pathArgument(item.alts) as string, build(item.child, variant, undefined))
    } else if (item.type === 'route') {
      const handler = routeHandler(item)
      if (item.viaRoute) target.route(pathArgument(item.alts) as string).get(handler)
      else target.get(pathArgument(item.alts) as string, handler)
    } else {
      const id = item.id
      const throws = item.behaviour === 'throw'
      target.use(`/${item.word}`, function generatedMiddleware(_req, _res, next) {
        if (throws) throw failure(id)
        next(failure(id))
      })
    }
  }
  if (node.errorHandler) {
    const nodeId = node.id
    target.use(function generatedErrorHandler(
      error: Error & { origin?: number },
      _req: Request,
      res: Response,
      _next: NextFunction,
    ) {
      res.status(500).send(`E:${error.origin ?? -1}:${nodeId}`)
    })
  }
  return target
}

function routeHandler(route: RouteItem) {
  const id = route.id
  const behaviour = route.behaviour
  return function generatedRoute(_req: Request, res: Response, next: NextFunction): void {
    if (behaviour === 'ok') res.send(`R:${id}`)
    else if (behaviour === 'throw') throw failure(id)
    else next(failure(id))
  }
}

function describeTree(node: TreeNode, indent = ''): string {
  const flags = `${node.caseSensitive ? ' caseSensitive' : ''}${node.strict ? ' strict' : ''}`
  const lines = [
    `${indent}${node.kind}#${node.id}${flags}${node.errorHandler ? ' +errorHandler' : ''}`,
  ]
  for (const item of node.items) {
    const paths = (alts: Alt[]) => JSON.stringify(alts.map((alt) => String(altPath(alt))))
    if (item.type === 'mount') {
      lines.push(`${indent}  use ${paths(item.alts)} →`)
      lines.push(describeTree(item.child, `${indent}    `))
    } else if (item.type === 'route') {
      lines.push(
        `${indent}  ${item.viaRoute ? 'route().get' : 'get'} ${paths(item.alts)} #${item.id} ${item.behaviour}`,
      )
    } else {
      lines.push(`${indent}  use "/${item.word}" middleware #${item.id} ${item.behaviour}`)
    }
  }
  return lines.join('\n')
}

function isInside(node: TreeNode | undefined, ancestor: TreeNode): boolean {
  for (let current = node; current !== undefined; current = current.parent) {
    if (current === ancestor) return true
  }
  return false
}

// --- Reading labels back -------------------------------------------------------------------------

async function countsOf(lens: Looplens): Promise<Map<string, number>> {
  const metric = lens.registry.getSingleMetric(DURATION)
  const counts = new Map<string, number>()
  if (metric === undefined) return counts
  const { values } = await metric.get()
  for (const sample of values) {
    if ((sample as { metricName?: string }).metricName !== `${DURATION}_count`) continue
    const route = String(sample.labels.http_route ?? '')
    counts.set(route, (counts.get(route) ?? 0) + sample.value)
  }
  return counts
}

/** The label of the one request recorded since `before` (bounded wait: 'close' may come later). */
async function newLabel(lens: Looplens, before: Map<string, number>): Promise<string | undefined> {
  const deadline = performance.now() + 3_000
  for (;;) {
    const now = await countsOf(lens)
    for (const [route, count] of now) {
      if (count > (before.get(route) ?? 0)) {
        before.set(route, count)
        return route
      }
    }
    if (performance.now() > deadline) return undefined
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

/** What a label may never contain: a generated value, a %-escape, a request's digits. */
function leak(label: string): string | undefined {
  if (/zq/i.test(label)) return 'a generated value'
  if (label.includes('%')) return 'a %-escape'
  if (/[a-z]\d/i.test(label)) return "a request's digits"
  if (label !== '_OVERFLOW' && /[A-Z]/.test(label)) return "a request's letter case"
  return undefined
}

// --- The test ---------------------------------------------------------------------------------

describe.each(VARIANTS)('generated router trees on $name', (variant) => {
  it(`labels every request with the template its tree declares (seed ${SEED})`, {
    timeout: BUDGET_MS + 30_000,
  }, async () => {
    const variantSeed = SEED + VARIANTS.indexOf(variant) * 7_919
    const random = makeRandom(variantSeed)
    const started = performance.now()
    let trees = 0
    let requests = 0
    let afterErrorInSubApp = 0
    while (trees < TREES && performance.now() - started < BUDGET_MS) {
      trees++
      const generator = new TreeGenerator(random)
      const root = generator.node('app', 0, undefined, [])
      const context = `seed ${SEED} (LOOPLENS_SEED=${SEED} replays it), ${variant.name}, tree ${trees}:\n${describeTree(root)}`
      const lens = createLooplens({ captureStacks: false })
      let server: Listening | undefined
      try {
        server = await listen(build(root, variant, lens) as unknown as Parameters<typeof listen>[0])
        const nodes = new Map<number, TreeNode>()
        const visit = (node: TreeNode): void => {
          nodes.set(node.id, node)
          for (const item of node.items) if (item.type === 'mount') visit(item.child)
        }
        visit(root)
        const byId = new Map(generator.targets.map((target) => [target.item.id, target]))
        const counts = await countsOf(lens)
        for (let i = 0; i < URLS_PER_TREE; i++) {
          const path =
            generator.targets.length === 0 || generator.chance(0.1)
              ? `/zq${generator.int(0, 1e6)}`
              : urlFor(generator.pick(generator.targets), generator)
          const response = await fetch(`${server.url}${path}`)
          const body = await response.text()
          requests++
          const label = await newLabel(lens, counts)
          const where = `${context}\nGET ${path} → ${response.status} ${JSON.stringify(body.slice(0, 80))}`
          expect(label, `${where}\nno request was recorded`).toBeDefined()
          expect(
            leak(label!),
            `${where}\nlabel ${JSON.stringify(label)} holds ${leak(label!)}`,
          ).toBeUndefined()
          const answer = /^([RE]):(\d+)(?::(\d+))?$/.exec(body)
          let allowed: string[]
          if (answer === null) {
            allowed = [''] // a 404: no route matched
          } else {
            const target = byId.get(Number(answer[2]))
            if (target === undefined || target.item.type === 'middleware') {
              allowed = [''] // failed in middleware, before any route
            } else {
              const full = expectedLabel(target, path.split('?')[0]!, variant)
              allowed = [full]
              if (answer[1] === 'E') {
                // An error that left a sub-app: Express gave the request its parent's app back,
                // and a sub-app looplens has not seen answer a request yet cannot be found from
                // there (Express keeps it in a closure): "" then, never a suffix.
                const handler = nodes.get(Number(answer[3]))
                for (
                  let node: TreeNode | undefined = target.node;
                  node?.parent !== undefined;
                  node = node.parent
                ) {
                  if (node.kind === 'app' && !isInside(handler, node)) {
                    allowed.push('')
                    afterErrorInSubApp++
                    break
                  }
                }
              }
            }
          }
          expect(
            allowed,
            `${where}\nlabel ${JSON.stringify(label)}, expected one of ${JSON.stringify(allowed)}`,
          ).toContain(label)
        }
        const labels = [...(await countsOf(lens)).keys()]
        expect(labels, `${context}\nno correct tree reaches maxRoutes`).not.toContain('_OVERFLOW')
      } finally {
        await server?.close()
        await lens.close()
      }
    }
    // Breadth, even on a slow machine: enough trees and requests to have drawn every shape.
    expect(trees, `seed ${SEED}: trees run in ${BUDGET_MS} ms`).toBeGreaterThanOrEqual(20)
    console.log(
      `${variant.name}: seed ${SEED}, ${trees} trees, ${requests} requests, ${afterErrorInSubApp} errors leaving a sub-app, ${Math.round(performance.now() - started)} ms`,
    )
  })
})
