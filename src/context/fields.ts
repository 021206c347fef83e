/**
 * The few fields looplens reads from a request and a response on every request, read so that
 * they stay cheap on Express.
 *
 * Express gives `req` and `res` its app's prototype (`Object.setPrototypeOf`), then adds
 * properties to them (`req.baseUrl`, `req.route`, `res.locals`, …). On V8 up to 12.4
 * (Node 20 and 22) a property added after a prototype change makes a hidden class for that one
 * object: every request's `req` and `res` have a hidden class no code has seen before. A named
 * load such as `req.method` then misses its inline cache and V8's stub cache and is resolved in
 * the runtime. A keyed load with a string key (`req[METHOD]`) is resolved by V8's generic lookup
 * builtin without leaving generated code. A getter on the prototype chain (`res.writableEnded`)
 * costs a walk up four prototypes either way, so the field behind it is read instead. Storing a
 * new property costs a new hidden class, so looplens never stores anything on them per request:
 * what it needs later lives in its own context object or a closure. On Node 24, where those
 * hidden classes are shared again, all of this compiles to plain field loads.
 *
 * `node bench/hidden-classes.js` (callgrind, Node 20.20, instructions per object built like
 * Express's `req`): a named read 1,770, a keyed read 441 (five keyed reads 449), a getter four
 * prototypes up 5,709, a new property 12,829.
 */

/** Keys as constants: a literal key (`req['method']`) would compile to a named load. */
const METHOD = 'method'
const ORIGINAL_URL = 'originalUrl'
const URL = 'url'
const ROUTE = 'route'
const BASE_URL = 'baseUrl'
const APP = 'app'
const STATUS_CODE = 'statusCode'
const FINISHED = 'finished'

type Fields = Record<string, unknown>

/** The request's method as the client sent it, if it is a string. */
export function methodOf(req: object): string | undefined {
  const method = (req as Fields)[METHOD]
  return typeof method === 'string' ? method : undefined
}

/** The URL the request arrived with: Express's `originalUrl` (unchanged by mounts), else `url`. */
export function originalUrlOf(req: object): string | undefined {
  const original = (req as Fields)[ORIGINAL_URL]
  if (typeof original === 'string') return original
  const url = (req as Fields)[URL]
  return typeof url === 'string' ? url : undefined
}

/** Express's matched route (`req.route`), if any. */
export function matchedRouteOf(req: object): unknown {
  return (req as Fields)[ROUTE]
}

/**
 * The Express app whose router is handling the request (`req.app`): Express gives the request
 * that app's prototype, a sub-app's while the request is inside it.
 */
export function appOf(req: object): unknown {
  return (req as Fields)[APP]
}

/** Express's mount path of the router handling the request (`req.baseUrl`), or ''. */
export function baseUrlOf(req: object): string {
  const baseUrl = (req as Fields)[BASE_URL]
  return typeof baseUrl === 'string' ? baseUrl : ''
}

/** The response's status code. */
export function statusCodeOf(res: object): number | undefined {
  const status = (res as Fields)[STATUS_CODE]
  return typeof status === 'number' ? status : undefined
}

/**
 * `res.writableEnded`: `end()` was called. Node's getter (20 to 24) returns the response's own
 * `finished` field, read here directly: a getter found on the prototype chain costs a
 * lookup through four prototypes on every request. Anything that is not such a response
 * falls back to the public getter.
 */
export function responseEnded(res: object): boolean {
  const finished = (res as Fields)[FINISHED]
  return typeof finished === 'boolean'
    ? finished
    : (res as { writableEnded?: unknown }).writableEnded === true
}
