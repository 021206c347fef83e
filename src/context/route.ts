/**
 * Route templates from Express, read only when needed (at the end of a request, or when a block
 * is attributed), never built per request.
 */

/** The parts of an Express request the route is read from. */
export interface RoutableRequest {
  baseUrl?: string
  route?: { path?: unknown } | undefined
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
  const route = req.route
  if (route === undefined || route === null) return undefined
  const path = pathToString(route.path)
  const base = typeof req.baseUrl === 'string' ? req.baseUrl : ''
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
