/**
 * Route templates from the router STRUCTURE of an Express app: the mount paths and route paths
 * as declared, never the text of the URL a request matched (`req.baseUrl`). Supported routers:
 * Express 4's own, and the `router` package 2.x that Express 5 uses (2.0 to 2.3 at least).
 *
 * The work is done once per route object (and app), at the first request that ends on it, and
 * kept on that route object: afterwards a request costs four keyed/field reads (see `routeOf`).
 * Nothing is cached by URL text, nothing process-wide: two apps in one process never share an
 * entry, and a label never holds a request value.
 *
 * How a template is found. `req.route` is the matched Route object; `req.app` the app whose
 * router it was matched in (Express sets the request's prototype per app). The app's router is
 * walked (bounded) for every route layer, remembering the mount layers on the way: each route
 * has one chain of mounts, or several when a router is mounted at more than one path. A sub-app
 * (`app.use('/org/:org', sub)`) hides its router in a closure, so the walk goes the other way
 * for it: `sub.mountpath` (its declared path) and `sub.parent`, up to the top app.
 *
 * Where a mount layer keeps its declared path:
 * - router >= 2.3: `layer.rawPath` (the declared path, arrays flattened), and one pure matcher
 *   per alternative in `layer.matchers`;
 * - Express 4: nowhere but in `layer.regexp`, compiled by path-to-regexp 0.1, which keeps the
 *   declared text; it is read back and checked by compiling the result again with the same
 *   Layer class (a mismatch falls back to the regexp's own text: still a template);
 * - router 2.0 to 2.2: nowhere at all (the matchers are closures). The template is inferred once
 *   per layer from the first request through it, by probing the layer's own pure matcher: a
 *   segment the matcher gives back as a parameter is `:name` (`*name` for a wildcard), the other
 *   segments are literal text of the declared path. Their letter case is lost when the router is
 *   case-insensitive (they are lower-cased then), and a regexp mount is `(regexp)`.
 *
 * A route reached through one chain whose mounts have one known template each has a fixed label.
 * Otherwise (a router mounted at several paths, an array mount, an inference still to make) the
 * chain is chosen per request by matching the request's path (`req.originalUrl`) against the
 * mounts, as the router did: only those apps pay for it.
 */
import { appOf, baseUrlOf, matchedRouteOf, originalUrlOf } from './fields.js'

/** The parts of an Express request the route is read from. */
export interface RoutableRequest {
  baseUrl?: string
  route?: { path?: unknown } | undefined
  app?: unknown
}

/** What we read of a router layer (Express 4's and the `router` package's). */
interface Layer {
  route?: unknown
  handle?: unknown
  /** router >= 2.3: the declared path (arrays flattened). */
  rawPath?: unknown
  /** router 2.x: one pure matcher per alternative path. */
  matchers?: unknown
  /** router 2.x: `use(fn)` at '/'. */
  slash?: unknown
  /** Express 4: the compiled path. */
  regexp?: unknown
  keys?: { name?: unknown }[]
  match?: unknown
}

/** A router: Express 4's `Router`, the `router` package's, or an app's. */
interface RouterLike {
  stack?: unknown
  caseSensitive?: unknown
}

/** How much of `path` a mount consumed, as the router would strip it, or -1. */
type Matcher = (path: string) => number

/** One declared path of a mount layer. */
interface Alternative {
  /** The template, or `undefined` until inferred (router 2.0 to 2.2). */
  template: string | undefined
  match: Matcher
  /** router 2.0 to 2.2: the template, from the part of a path this alternative matched. */
  infer?: (piece: string) => string
}

/** A mount layer: its alternatives, in the order the router tries them. */
type Step = readonly Alternative[]

/** One way from the top app to a route: the mount steps, outermost first. */
type Chain = readonly Step[]

/** A route's label in one app, kept on the route object. */
interface RouteEntry {
  readonly app: unknown
  /** The app's router and its stack when this entry was made: a new stack means look again. */
  readonly router: RouterLike
  readonly stack: unknown[]
  readonly length: number
  /** The label, when it does not depend on the request. */
  fixed: string | undefined
  readonly chains: readonly Chain[]
  readonly routePath: string
}

interface AppIndex {
  readonly router: RouterLike
  readonly stack: unknown[]
  readonly length: number
  /** Route object → the chains of mounts inside this app that lead to it. */
  readonly routes: Map<object, Chain[]>
  readonly entries: Map<object, RouteEntry>
}

/** Bounds on a walk: an app is looked at once per change of its router, never at length. */
const MAX_LAYERS = 10_000
const MAX_DEPTH = 16
/** The label of a regexp mount whose regexp the router does not keep (router 2.0 to 2.2). */
const UNKNOWN_REGEXP = '(regexp)'

const kEntry: unique symbol = Symbol('looplens.routeEntry')

interface CachedRoute {
  path?: unknown
  [kEntry]?: RouteEntry
}

/** Per app (an app object is the key: never a URL). */
const indexes = new WeakMap<object, AppIndex>()
/** Per mount layer: its step, with the templates inferred so far. */
const stepsOfLayer = new WeakMap<object, Step | null>()
/** Per route object: the app whose router holds it (for a request that left its sub-app). */
const ownerOfRoute = new WeakMap<object, object>()
/** Per sub-app: its mount step in its parent, and what it was made from. */
const mountSteps = new WeakMap<object, { mountpath: unknown; parent: unknown; step: Step }>()

/** An app's router, on Express 4 and 5 (undefined for anything else). */
export function routerOf(app: unknown): { stack?: unknown } | undefined {
  const candidate = app as { router?: RouterLike; _router?: RouterLike }
  // Express 5 has `app.router`; Express 4 has `app._router` (and throws on `app.router`).
  try {
    return candidate?._router ?? candidate?.router
  } catch {
    return undefined
  }
}

/** The layers of an app's router, on Express 4 and 5 (undefined for anything else). */
export function routerStackOf(app: unknown): Layer[] | undefined {
  const stack = routerOf(app)?.stack
  return Array.isArray(stack) ? (stack as Layer[]) : undefined
}

/**
 * The full route template the request matched (`/orgs/:orgId/teams/:teamId`), `''` when it
 * matched a route whose place in the app cannot be found, or `undefined` when the request has
 * not matched a route (yet).
 */
export function routeOf(req: RoutableRequest): string | undefined {
  const route = matchedRouteOf(req)
  if (typeof route !== 'object' || route === null) return undefined
  const app = appOf(req)
  const entry = (route as CachedRoute)[kEntry]
  // The fast path: the same app, whose router has not changed since (a few field reads).
  if (
    entry !== undefined &&
    entry.app === app &&
    entry.router.stack === entry.stack &&
    entry.stack.length === entry.length
  ) {
    return entry.fixed ?? resolve(entry, req)
  }
  return slowRouteOf(req, route as CachedRoute, app)
}

function slowRouteOf(req: RoutableRequest, route: CachedRoute, app: unknown): string {
  try {
    const entry = entryFor(route, app)
    if (entry === undefined) {
      // Not an Express app (a bare `router` in node:http): its route path is all we know.
      return typeof app === 'function' || typeof app === 'object' ? '' : pathToString(route.path)
    }
    if (entry !== null) route[kEntry] = entry
    if (entry === null) return ''
    return entry.fixed ?? resolve(entry, req)
  } catch {
    // A router shaped unlike any we know: no label rather than a wrong one, and never a throw.
    return ''
  }
}

/**
 * The entry of `route` in `app`: `undefined` when `app` has no router, `null` when the route is
 * not in it (nor in a sub-app of it seen before).
 */
function entryFor(route: CachedRoute, app: unknown): RouteEntry | null | undefined {
  const index = indexOf(app)
  if (index === undefined) return undefined
  const known = index.entries.get(route)
  if (known !== undefined) return known
  let owner = app as object
  let chains = index.routes.get(route)
  if (chains === undefined) {
    // The request matched a route in a sub-app, then left it (`next(err)`): Express put back
    // the parent's prototype, so `req.app` is the parent. The sub-app's own index knows it.
    const other = ownerOfRoute.get(route)
    const otherIndex = other === undefined || other === app ? undefined : indexOf(other)
    chains = otherIndex?.routes.get(route)
    if (chains === undefined || other === undefined) return null
    owner = other
  }
  const prefix = appPrefix(owner)
  const full = prefix.length === 0 ? chains : chains.map((chain) => [...prefix, ...chain])
  const entry: RouteEntry = {
    app,
    router: index.router,
    stack: index.stack,
    length: index.length,
    fixed: undefined,
    chains: full,
    routePath: pathToString(route.path),
  }
  entry.fixed = fixedLabel(entry)
  index.entries.set(route, entry)
  return entry
}

/** The label when it does not depend on the request: one chain, one known template per mount. */
function fixedLabel(entry: RouteEntry): string | undefined {
  if (entry.chains.length !== 1) return undefined
  const templates: string[] = []
  for (const step of entry.chains[0]!) {
    if (step.length !== 1 || step[0]!.template === undefined) return undefined
    templates.push(step[0]!.template)
  }
  return join(templates, entry.routePath)
}

/**
 * The label for this request: the first chain whose mounts match the request's path, as the
 * router matched them (then, for a URL rewritten on the way, `req.baseUrl`); `''` when none does.
 */
function resolve(entry: RouteEntry, req: RoutableRequest): string {
  const sources = [pathnameOf(originalUrlOf(req as object)), baseUrlOf(req as object)]
  for (const path of sources) {
    if (path === undefined || path === '') continue
    for (const chain of entry.chains) {
      const templates = consume(chain, path)
      if (templates !== undefined) {
        // Inferred templates are kept per layer: a single chain may be fixed from now on.
        if (entry.fixed === undefined) entry.fixed = fixedLabel(entry)
        return join(templates, entry.routePath)
      }
    }
  }
  return ''
}

/** Match `path` through the mounts of `chain`: their templates, or `undefined`. */
function consume(chain: Chain, path: string): string[] | undefined {
  let rest = path
  const templates: string[] = []
  for (const step of chain) {
    let chosen: Alternative | undefined
    let piece = ''
    for (const alternative of step) {
      const length = alternative.match(rest)
      if (length >= 0) {
        chosen = alternative
        piece = rest.slice(0, length)
        rest = rest.slice(length)
        break
      }
    }
    if (chosen === undefined) return undefined
    if (chosen.template === undefined) chosen.template = chosen.infer?.(piece) ?? UNKNOWN_REGEXP
    templates.push(chosen.template)
    // The router puts back a leading slash after it strips a mount path.
    if (rest.charCodeAt(0) !== 47) rest = `/${rest}`
  }
  return templates
}

/** Mount templates + route path. `app.use('/api', r)` + `r.get('/')` is `/api`, not `/api/`. */
function join(mounts: readonly string[], routePath: string): string {
  const base = mounts.join('')
  if (base === '') return routePath
  if (routePath === '/' || routePath === '') return base
  return base + routePath
}

/** The path of a request URL: no query string, no `http://host` of an absolute-form URL. */
function pathnameOf(url: string | undefined): string | undefined {
  if (url === undefined) return undefined
  let path = url
  const query = path.indexOf('?')
  if (query !== -1) path = path.slice(0, query)
  if (path.charCodeAt(0) !== 47) {
    const scheme = path.indexOf('://')
    if (scheme === -1) return undefined
    const slash = path.indexOf('/', scheme + 3)
    path = slash === -1 ? '/' : path.slice(slash)
  }
  return path
}

// ---------------------------------------------------------------------------------------------
// The index of an app: which chains of mounts lead to each route.

function indexOf(app: unknown): AppIndex | undefined {
  if (typeof app !== 'function' && (typeof app !== 'object' || app === null)) return undefined
  const router = routerOf(app) as RouterLike | undefined
  const stack = router?.stack
  if (router === undefined || !Array.isArray(stack)) return undefined
  const known = indexes.get(app)
  if (known !== undefined && known.stack === stack && known.length === stack.length) return known
  const index: AppIndex = {
    router,
    stack,
    length: stack.length,
    routes: new Map(),
    entries: new Map(),
  }
  let budget = MAX_LAYERS
  const visit = (layers: unknown[], owner: RouterLike, chain: Chain, depth: number): void => {
    for (const item of layers) {
      if (--budget < 0) return
      if (typeof item !== 'object' || item === null) continue
      const layer = item as Layer
      const route = layer.route
      if (typeof route === 'object' && route !== null) {
        const chains = index.routes.get(route)
        if (chains === undefined) index.routes.set(route, [chain])
        else chains.push(chain)
        ownerOfRoute.set(route, app)
        continue
      }
      if (depth >= MAX_DEPTH) continue
      const inner = innerRouterOf(layer.handle)
      if (inner === undefined) continue
      const step = stepOf(layer, owner)
      if (step === undefined) continue
      visit(inner.stack as unknown[], inner, [...chain, step], depth + 1)
    }
  }
  visit(stack, router, [], 0)
  indexes.set(app, index)
  return index
}

/**
 * The router a mount layer hands requests to: a nested Router (`handle.stack`), an app used as
 * plain middleware (`router.use('/x', subApp)`), or either behind a wrapper that keeps the
 * original (OpenTelemetry's shimmer). `app.use(path, subApp)` is not one: Express wraps it in a
 * closure (`mounted_app`), and the sub-app is found from `req.app` instead.
 */
function innerRouterOf(handle: unknown): RouterLike | undefined {
  if (typeof handle !== 'function') return undefined
  const candidate = handle as RouterLike & { __original?: unknown }
  if (Array.isArray(candidate.stack)) return candidate
  const ofApp = routerOf(handle) as RouterLike | undefined
  if (ofApp !== undefined && Array.isArray(ofApp.stack)) return ofApp
  const original = candidate.__original
  return original !== undefined && original !== handle ? innerRouterOf(original) : undefined
}

/** The step of a mount layer, once per layer. `undefined` for a layer of unknown shape. */
function stepOf(layer: Layer, owner: RouterLike): Step | undefined {
  const known = stepsOfLayer.get(layer)
  if (known !== undefined) return known ?? undefined
  let step: Step | undefined
  try {
    step = buildStep(layer, owner)
  } catch {
    step = undefined
  }
  stepsOfLayer.set(layer, step ?? null)
  return step
}

const ROOT: Step = [{ template: '', match: () => 0 }]

function buildStep(layer: Layer, owner: RouterLike): Step | undefined {
  const regexp = layer.regexp as (RegExp & { fast_slash?: unknown }) | undefined
  if (layer.slash === true || regexp?.fast_slash === true) return ROOT
  const matchers = layer.matchers
  if (Array.isArray(matchers)) {
    if (layer.rawPath !== undefined) {
      // router >= 2.3: the declared paths, aligned with their matchers.
      const paths = Array.isArray(layer.rawPath) ? layer.rawPath : [layer.rawPath]
      if (paths.length !== matchers.length) return undefined
      return paths.map((path, i) => ({
        template: mountTemplate(path),
        match: pureMatcher(matchers[i]),
      }))
    }
    // router 2.0 to 2.2: nothing of the declared path is kept; infer it from a first request.
    const sensitive = owner.caseSensitive === true
    return matchers.map((matcher) => ({
      template:
        typeof matcher === 'function' && matcher.name === 'regexpMatcher'
          ? UNKNOWN_REGEXP
          : undefined,
      match: pureMatcher(matcher),
      infer: (piece: string) => inferTemplate(matcher, piece, sensitive),
    }))
  }
  if (regexp instanceof RegExp) return express4Step(layer, regexp)
  return undefined
}

/** A router 2.x matcher (pure: it keeps nothing of the request) as a Matcher. */
function pureMatcher(matcher: unknown): Matcher {
  if (typeof matcher !== 'function') return () => -1
  return function matchMount(path: string): number {
    let result: unknown
    try {
      result = matcher(path)
    } catch {
      return -1 // a malformed %-escape: the router would have failed this request too
    }
    if (typeof result !== 'object' || result === null) return -1
    const matched = (result as { path?: unknown }).path
    return typeof matched === 'string' ? prefixLength(path, matched) : -1
  }
}

/** As the router checks a mount's match: a prefix of the path that ends at a `/` or the end. */
function prefixLength(path: string, matched: string): number {
  if (matched.length === 0) return 0
  if (!path.startsWith(matched)) return -1
  const next = path.charCodeAt(matched.length)
  return Number.isNaN(next) || next === 47 || next === 46 ? matched.length : -1
}

/**
 * A private copy of a layer, made with the router's own Layer class: matching it sets (on
 * Express 4 and router < 2.3) `layer.path`/`params` on the copy, never on the app's layers,
 * which the app's own routing reads.
 */
function layerMatcher(LayerClass: unknown, path: unknown, sensitive: boolean): Matcher {
  if (typeof LayerClass !== 'function') return () => -1
  const layer = new (LayerClass as new (p: unknown, o: object, f: () => void) => Layer)(
    path,
    { sensitive, strict: false, end: false },
    function looplensMatchOnly() {},
  )
  const match = layer.match
  if (typeof match !== 'function') return () => -1
  return function matchMount(path: string): number {
    let result: unknown
    try {
      result = match.call(layer, path)
    } catch {
      return -1
    }
    if (result === false || result === undefined || result === null) return -1
    const matched =
      typeof result === 'object'
        ? (result as { path?: unknown }).path
        : (layer as { path?: unknown }).path
    return typeof matched === 'string' ? prefixLength(path, matched) : -1
  }
}

/** A declared mount path as a template: the router strips a trailing `/` from a mount. */
function mountTemplate(path: unknown): string {
  if (typeof path === 'string') return path.endsWith('/') ? path.slice(0, -1) : path
  return pathToString(path)
}

/** Render one path of `app.get(path)`: a string, a RegExp, or an array of them. */
function pathToString(path: unknown): string {
  if (typeof path === 'string') return path
  if (path instanceof RegExp) return path.toString()
  if (Array.isArray(path)) return path.map(pathToString).join(',')
  return ''
}

// ---------------------------------------------------------------------------------------------
// Sub-apps: `app.use(path, sub)` sets `sub.mountpath` (declared) and `sub.parent`.

/** The mount steps from the top app down to `app` (none for a top app). */
function appPrefix(app: object): Step[] {
  const steps: Step[] = []
  let current = app as { parent?: unknown; mountpath?: unknown }
  for (let depth = 0; depth < MAX_DEPTH; depth++) {
    const parent = current.parent
    if (typeof parent !== 'function' && (typeof parent !== 'object' || parent === null)) break
    steps.unshift(mountStepOf(current, parent))
    current = parent as { parent?: unknown; mountpath?: unknown }
  }
  return steps
}

function mountStepOf(app: { mountpath?: unknown }, parent: object): Step {
  const mountpath = app.mountpath
  const known = mountSteps.get(app)
  if (known !== undefined && known.mountpath === mountpath && known.parent === parent) {
    return known.step
  }
  const router = routerOf(parent) as RouterLike | undefined
  const stack = Array.isArray(router?.stack) ? (router.stack as Layer[]) : []
  // The parent router's own Layer class: the sub-app's mount layer was made with it.
  const LayerClass = stack.find((layer) => typeof layer === 'object' && layer !== null)?.constructor
  const sensitive = router?.caseSensitive === true
  const paths = Array.isArray(mountpath) ? mountpath.flat(Number.POSITIVE_INFINITY) : [mountpath]
  const step: Step = paths.map((path) => {
    const template = mountTemplate(path)
    return {
      template,
      match: template === '' ? () => 0 : layerMatcher(LayerClass, path, sensitive),
    }
  })
  mountSteps.set(app, { mountpath, parent, step })
  return step
}

// ---------------------------------------------------------------------------------------------
// Express 4: the declared path, read back from the regexp path-to-regexp 0.1 compiled it to.

function express4Step(layer: Layer, regexp: RegExp): Step {
  const LayerClass = (layer as { constructor?: unknown }).constructor
  const sensitive = !regexp.flags.includes('i')
  const parts = splitAlternatives(regexp.source)
  const names = (layer.keys ?? [])
    .map((key) => key.name)
    .filter((name): name is string => typeof name === 'string')
  let next = 0
  const nextName = (): string | undefined => names[next++]
  if (parts.length === 1 && !parts[0]!.startsWith('^')) {
    // A RegExp mount: its own text is its template.
    return [{ template: regexp.toString(), match: layerMatcher(LayerClass, regexp, sensitive) }]
  }
  const step: Alternative[] = []
  for (const part of parts) {
    const candidate = readExpress4Path(part, nextName)
    if (candidate !== undefined && compiledSource(LayerClass, candidate, sensitive) === part) {
      step.push({
        template: mountTemplate(candidate),
        match: layerMatcher(LayerClass, candidate, sensitive),
      })
    } else {
      // A RegExp in an array (Express 4 joins its source, under the array's flags), or a path
      // we cannot read back: the regexp text of that part is its template.
      const own = new RegExp(part, regexp.flags)
      step.push({
        template: String(new RegExp(part)),
        match: layerMatcher(LayerClass, own, sensitive),
      })
    }
  }
  return step
}

/** The source Express 4 would compile `path` to, as a mount (to check a read-back path). */
function compiledSource(LayerClass: unknown, path: string, sensitive: boolean): string | undefined {
  if (typeof LayerClass !== 'function') return undefined
  const layer = new (LayerClass as new (p: unknown, o: object, f: () => void) => Layer)(
    path,
    { sensitive, strict: false, end: false },
    function looplensMatchOnly() {},
  )
  return layer.regexp instanceof RegExp ? layer.regexp.source : undefined
}

/**
 * The structural characters of a regexp source from `from` on: each one outside escapes and
 * character classes, with the group depth before it.
 */
function* structureOf(source: string, from = 0): Generator<[number, string, number]> {
  let depth = 0
  let inClass = false
  for (let i = from; i < source.length; i++) {
    const char = source[i]!
    if (char === '\\') {
      i++
    } else if (inClass) {
      if (char === ']') inClass = false
    } else if (char === '[') {
      inClass = true
    } else {
      yield [i, char, depth]
      if (char === '(') depth++
      else if (char === ')') depth--
    }
  }
}

/** Split a regexp source at its top-level `|` (an array path is its parts joined by `|`). */
function splitAlternatives(source: string): string[] {
  const parts: string[] = []
  let start = 0
  for (const [i, char, depth] of structureOf(source)) {
    if (char === '|' && depth === 0) {
      parts.push(source.slice(start, i))
      start = i + 1
    }
  }
  parts.push(source.slice(start))
  return parts
}

/** The index just past the group that opens at `open` (a `(`), or -1. */
function groupEnd(source: string, open: number): number {
  for (const [i, char, depth] of structureOf(source, open)) {
    if (char === ')' && depth === 1) return i + 1
  }
  return -1
}

const MOUNT_SUFFIXES = ['\\/?(?=\\/|$)', '?(?=\\/|$)']
const DEFAULT_CAPTURES = new Set(['([^/]+?)', '([^/\\.]+?)', '([^\\/]+?)', '([^\\/\\.]+?)'])
const STAR_PARTS = new Set(['((?:[/].+?)?)', '((?:[/\\.].+?)?)'])

/**
 * The path a path-to-regexp 0.1 mount regexp was compiled from (`^\/orgs(?:\/([^/]+?))\/?(?=\/|$)`
 * → `/orgs/:orgId`), or `undefined`. Parameter names come from the layer's keys, in order. The
 * caller checks the result by compiling it again.
 */
function readExpress4Path(part: string, nextName: () => string | undefined): string | undefined {
  if (!part.startsWith('^')) return undefined
  const suffix = MOUNT_SUFFIXES.find((candidate) => part.endsWith(candidate))
  if (suffix === undefined) return undefined
  const source = part.slice(1, part.length - suffix.length)
  let path = ''
  let i = 0
  while (i < source.length) {
    if (source.startsWith('(?:', i)) {
      const end = groupEnd(source, i)
      const param = end === -1 ? undefined : readParam(source.slice(i + 3, end - 1), nextName)
      if (param !== undefined) {
        const optional = source[end] === '?'
        path += param + (optional ? '?' : '')
        i = end + (optional ? 1 : 0)
        continue
      }
      path += '(' // `/(…)` in a path compiles to `/(?:…)`
      i += 3
    } else if (source.startsWith('(.*)', i)) {
      path += '*'
      i += 4
    } else if (source.startsWith('\\/', i) || source.startsWith('\\.', i)) {
      path += source[i + 1]
      i += 2
    } else if (source[i] === '\\') {
      path += source.slice(i, i + 2)
      i += 2
    } else {
      path += source[i]
      i++
    }
  }
  return path
}

/** A compiled `/:name` group's inside (`\/([^/]+?)`) → `/:name`, or `undefined`. */
function readParam(inside: string, nextName: () => string | undefined): string | undefined {
  let rest = inside
  let prefix = ''
  if (rest.startsWith('\\.')) {
    prefix += '.'
    rest = rest.slice(2)
  }
  if (rest.startsWith('\\/')) {
    prefix = `/${prefix}`
    rest = rest.slice(2)
  }
  if (!rest.startsWith('(')) return undefined
  const end = groupEnd(rest, 0)
  if (end === -1) return undefined
  const capture = rest.slice(0, end)
  const tail = rest.slice(end)
  if (tail !== '' && !STAR_PARTS.has(tail)) return undefined
  const name = nextName()
  if (name === undefined) return undefined
  const custom = DEFAULT_CAPTURES.has(capture) ? '' : capture.replaceAll('\\/', '/')
  return `${prefix}:${name}${custom}${tail === '' ? '' : '*'}`
}

// ---------------------------------------------------------------------------------------------
// router 2.0 to 2.2: a mount's template inferred by probing its own (pure) matcher.

/** A segment no declared path contains: where a probe puts it, the matcher shows a parameter. */
const PROBE = 'looplens-probe-7f3a'

function inferTemplate(matcher: unknown, piece: string, sensitive: boolean): string {
  if (typeof matcher !== 'function') return UNKNOWN_REGEXP
  const run = (path: string): { params?: Record<string, unknown> } | undefined => {
    try {
      const result = matcher(path) as { params?: Record<string, unknown> } | false
      return result === false ? undefined : result
    } catch {
      return undefined
    }
  }
  const base = run(piece)
  if (base === undefined) return UNKNOWN_REGEXP
  const names = Object.keys(base.params ?? {})
  const segments = piece.split('/')
  const out: string[] = []
  const placed = new Set<string>()
  for (let i = 0; i < segments.length; i++) {
    const segment = segments[i]!
    if (i === 0 || segment === '') {
      out.push(segment)
      continue
    }
    const probe = segments.slice()
    probe[i] = PROBE
    const params = names.length === 0 ? undefined : run(probe.join('/'))?.params
    const name = names.find((candidate) => {
      const value = params?.[candidate]
      return value === PROBE || (Array.isArray(value) && value.includes(PROBE))
    })
    if (name !== undefined) {
      const wildcard = Array.isArray(params?.[name])
      const token = wildcard ? `*${name}` : `:${name}`
      // A wildcard spans segments: one token for all of them.
      if (!(wildcard && out[out.length - 1] === token)) out.push(token)
      placed.add(name)
      continue
    }
    // Literal text of the declared path, unless the matcher accepts another text there (a
    // pattern, not a literal): then it is not ours to show.
    const last = segment.slice(-1).toLowerCase()
    const changed = `${segment.slice(0, -1)}${last === 'a' ? 'b' : 'a'}`
    probe[i] = changed
    if (run(probe.join('/')) !== undefined) return UNKNOWN_REGEXP
    out.push(sensitive ? segment : segment.toLowerCase())
  }
  // A parameter inside a segment (`/file-:id`): where its value sits cannot be told safely.
  if (placed.size !== names.length) return `/${names.map((name) => `:${name}`).join('/')}`
  const template = out.join('/')
  return template.endsWith('/') ? template.slice(0, -1) : template
}

const KNOWN_METHODS = new Set([
  'GET',
  'HEAD',
  'POST',
  'PUT',
  'DELETE',
  'CONNECT',
  'OPTIONS',
  'TRACE',
  'PATCH',
  'QUERY',
])

/** OpenTelemetry's rule: a method outside the known set becomes `_OTHER` (bounded labels). */
export function normalizeMethod(method: string | undefined): string {
  if (method === undefined) return '_OTHER'
  return KNOWN_METHODS.has(method) ? method : '_OTHER'
}
