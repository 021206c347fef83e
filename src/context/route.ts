/**
 * Route templates from Express, read only when needed (at the end of a request, or when a block
 * is attributed), never built per request.
 */
import { baseUrlOf, matchedRouteOf } from './fields.js'

/** The parts of an Express request the route is read from. */
export interface RoutableRequest {
  baseUrl?: string
  route?: { path?: unknown } | undefined
  app?: unknown
}

/** What we read of an Express router layer (Express 4's and the `router` package's). */
interface Layer {
  route?: unknown
  handle?: { stack?: Layer[] }
  /** Express 5 (`router` 2): the path the layer was created with. */
  rawPath?: unknown
  keys?: { name: string | number }[]
  params?: Record<string, string>
  path?: string
  match?: (path: string) => boolean
}

/**
 * `req.baseUrl` is the *matched* mount path: `/orgs/acme` for `app.use('/orgs/:orgId', router)`.
 * As a label that is a raw URL value (unbounded, and maybe private), so we rebuild the mount
 * template by walking the app's router stack — once per distinct baseUrl, then from a bounded
 * cache. Static mounts (`/api/v1`, the common case) are their own template.
 */
const baseTemplates = new Map<string, string>()
const BASE_TEMPLATE_CACHE = 1_000

/** An app's router, on Express 4 and 5 (undefined for anything else). */
export function routerOf(app: unknown): { stack?: Layer[] } | undefined {
  const candidate = app as { router?: { stack?: Layer[] }; _router?: { stack?: Layer[] } }
  // Express 5 has `app.router`; Express 4 has `app._router` (and throws on `app.router`).
  try {
    return candidate?._router ?? candidate?.router
  } catch {
    return undefined
  }
}

/** The layers of an app's router, on Express 4 and 5 (undefined for anything else). */
export function routerStackOf(app: unknown): Layer[] | undefined {
  return routerOf(app)?.stack
}

/** The template of the part of `path` a mount layer matched (`layer.match` just ran). */
function layerTemplate(layer: Layer): string {
  const raw = layer.rawPath
  if (raw !== undefined) return pathToString(raw)
  // Express 4 keeps no path: put the parameter names back in place of their values.
  let template = layer.path ?? ''
  let from = 0
  for (const key of layer.keys ?? []) {
    const value = layer.params?.[key.name]
    if (value === undefined) continue
    const at = template.indexOf(`/${value}`, from)
    if (at === -1) continue
    const replacement = `/:${key.name}`
    template = template.slice(0, at) + replacement + template.slice(at + value.length + 1)
    from = at + replacement.length
  }
  return template
}

/** Explain `path` (a baseUrl, or what is left of it) by the mount layers of `stack`. */
function explain(stack: Layer[], path: string, depth: number): string | undefined {
  if (path === '') return ''
  if (depth > 16) return undefined
  for (const layer of stack) {
    const inner = layer.handle?.stack
    if (layer.route !== undefined || !Array.isArray(inner) || typeof layer.match !== 'function') {
      continue
    }
    let matched: boolean
    try {
      // Express sets layer.path/params here, as it does while routing; both are per-match
      // scratch values that the router reads synchronously right after its own match.
      matched = layer.match(path)
    } catch {
      continue
    }
    const actual = layer.path
    if (!matched || typeof actual !== 'string' || !path.startsWith(actual)) continue
    const rest = explain(inner, path.slice(actual.length), depth + 1)
    if (rest !== undefined) return layerTemplate(layer) + rest
  }
  return undefined
}

function baseTemplateOf(req: RoutableRequest, base: string): string {
  const known = baseTemplates.get(base)
  if (known !== undefined) return known
  const stack = routerStackOf(req.app)
  // Mounted sub-apps hide their router in a closure: keep what Express gave us then.
  const template = (stack === undefined ? undefined : explain(stack, base, 0)) ?? base
  if (baseTemplates.size >= BASE_TEMPLATE_CACHE) baseTemplates.clear()
  baseTemplates.set(base, template)
  return template
}

/** Render one path of `app.get(path)`: a string, a RegExp, or an array of them. */
function pathToString(path: unknown): string {
  if (typeof path === 'string') return path
  if (path instanceof RegExp) return path.toString()
  if (Array.isArray(path)) return path.map(pathToString).join(',')
  return ''
}

/**
 * `req.baseUrl + req.route.path`, or `undefined` when the request has not matched a route (yet).
 * Express sets `req.baseUrl` to the mount path of the router that handles the request, so nested
 * and mounted routers give the full template (`/api/v1` + `/users/:id`).
 */
export function routeOf(req: RoutableRequest): string | undefined {
  const route = matchedRouteOf(req) as CachedRoute | undefined | null
  if (route === undefined || route === null) return undefined
  const baseUrl = baseUrlOf(req)
  // Built once per route object (and mount): the same string every time, whose hash V8 keeps,
  // so the metrics' series lookups by route are fast too.
  if (route[kTemplateBase] === baseUrl) return route[kTemplate]!
  const template = buildTemplate(req, route, baseUrl)
  route[kTemplateBase] = baseUrl
  route[kTemplate] = template
  return template
}

const kTemplate: unique symbol = Symbol('looplens.routeTemplate')
const kTemplateBase: unique symbol = Symbol('looplens.routeTemplateBase')

interface CachedRoute {
  path?: unknown
  [kTemplate]?: string
  [kTemplateBase]?: string
}

function buildTemplate(req: RoutableRequest, route: CachedRoute, baseUrl: string): string {
  const path = pathToString(route.path)
  const base = baseUrl !== '' ? baseTemplateOf(req, baseUrl) : ''
  if (base === '') return path
  // `app.use('/api', router)` + `router.get('/', …)` is `/api`, not `/api/`.
  if (path === '/' || path === '') return base
  return base + path
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
