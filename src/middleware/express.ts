/**
 * `lens.express()`: request context, route template, RED and sync-time metrics.
 *
 * Per request: one context object, `enterWith` (so the request's own later callbacks — body
 * parser `data`/`end` events included — see it), two clock reads, six keyed reads of `req` and
 * `res` (context/fields.ts says why keyed), and a `close` listener only for a response still
 * open when `next()` returns. Everything else is decided here, at construction. As the app's
 * first middleware, it runs from the app's `handle` rather than as a router layer
 * (own-layer.ts): the same work around the same requests, one router layer fewer.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { performance } from 'node:perf_hooks'
import type { NextFunction, Request, RequestHandler, Response } from 'express'
import { contextStorage, LensContext } from '../context/context.js'
import { methodOf, originalUrlOf, responseEnded, statusCodeOf } from '../context/fields.js'
import { normalizeMethod, type RoutableRequest, routeOf } from '../context/route.js'
import { httpInstrumentation, kHttpRecorder } from '../instrument/marks.js'
import type { RequestRecorder } from '../internal-types.js'
import { captureSpan } from '../otel/capture.js'
import { type AppHandle, hoistOwnLayer, unwrapOwnLayer } from './own-layer.js'

/** Requests of a middleware that look at the app they come from (see own-layer.ts). */
const APP_CHECKS = 16

/**
 * Compile `excludePaths` into one test of a request URL (query string included), or `undefined`
 * when nothing is excluded. Exact paths are compared in place, without slicing the URL: this
 * runs for every request, and the default list (`/metrics`) is never empty. They match as
 * Express routes by default (case-insensitive, non-strict): `/METRICS` and `/metrics/` reach
 * `app.get('/metrics')`, so they are excluded with it.
 */
export function compileExclude(
  paths: ReadonlyArray<string | RegExp>,
): ((url: string) => boolean) | undefined {
  if (paths.length === 0) return undefined
  const exact = paths.filter((path): path is string => typeof path === 'string')
  const patterns = paths.filter((path): path is RegExp => path instanceof RegExp)
  return (url) => {
    for (const path of exact) {
      if (isPath(url, path)) return true
    }
    if (patterns.length === 0) return false
    const path = pathOf(url)
    for (const pattern of patterns) {
      pattern.lastIndex = 0
      if (pattern.test(path)) return true
    }
    return false
  }
}

/**
 * `url` is `path`, in any ASCII letter case, with at most one trailing slash, then the end or a
 * query string: `/metrics`, `/METRICS`, `/metrics/?x`, not `/metricsfoo` nor `/metrics/x`.
 */
function isPath(url: string, path: string): boolean {
  const length = path.length
  if (url.length < length) return false
  if (!url.startsWith(path) && !sameIgnoringCase(url, path, length)) return false
  if (url.length === length) return true
  let next = url.charCodeAt(length)
  if (next === 47 && path.charCodeAt(length - 1) !== 47) {
    if (url.length === length + 1) return true
    next = url.charCodeAt(length + 1)
  }
  return next === 63
}

/** The first `length` characters of `url` and `path` are equal but for ASCII letter case. */
function sameIgnoringCase(url: string, path: string, length: number): boolean {
  for (let i = 0; i < length; i++) {
    const a = url.charCodeAt(i)
    const b = path.charCodeAt(i)
    if (a === b) continue
    const lower = b | 32
    if ((a | 32) !== lower || lower < 97 || lower > 122) return false
  }
  return true
}

/** The path of a request URL without its query string. */
export function pathOf(url: string | undefined): string {
  if (url === undefined) return '/'
  const query = url.indexOf('?')
  return query === -1 ? url : url.slice(0, query)
}

/** An app mounted in another with `app.use(path, app)` (Express sets its `parent`). */
function isMounted(app: unknown): boolean {
  return typeof app === 'function' && (app as { parent?: unknown }).parent !== undefined
}

export function createExpressMiddleware(
  recorder: RequestRecorder,
  excludePaths: ReadonlyArray<string | RegExp>,
): RequestHandler {
  const isExcluded = compileExclude(excludePaths)

  /**
   * The `'close'` listener of a response still open when `next()` returned. A closure over the
   * context rather than a property on `res`: a new property on Express's response costs it a new
   * hidden class (see context/fields.ts). `context.ended` makes a second call a no-op.
   */
  function endOnClose(context: LensContext, res: ServerResponse): () => void {
    return function onResponseClose(): void {
      if (context.ended) return
      const req = context.req as (Request & IncomingMessage) | undefined
      context.finalRoute = req === undefined ? '' : (routeOf(req) ?? '')
      recorder.requestEnded(context, res.writableFinished ? statusCodeOf(res) : undefined)
    }
  }

  /** Start measuring a request: its context, entered. `undefined` when it is not measured. */
  function begin(
    req: IncomingMessage,
    res: ServerResponse,
    nested: boolean,
  ): LensContext | undefined {
    // Already measured for this recorder by the zero-code http instrumentation (the preload):
    // its context is entered and will be ended; a second one would count the request twice.
    if (
      httpInstrumentation.active &&
      (res as ServerResponse & { [kHttpRecorder]?: RequestRecorder })[kHttpRecorder] === recorder
    ) {
      return undefined
    }
    // A sub-app's middleware: the parent app's may measure this request already.
    if (nested && measuredAlready(req)) return undefined
    if (isExcluded?.(originalUrlOf(req) ?? '/')) return undefined
    const context = new LensContext(
      normalizeMethod(methodOf(req)),
      '',
      req as RoutableRequest,
      performance.now(),
    )
    context.recorder = recorder
    captureSpan(context)
    // enterWith, not run(): the request's body arrives in later callbacks of the same async
    // resource, and a block in a body parser must still be attributed to this request.
    contextStorage.enterWith(context)
    recorder.requestStarted(context)
    return context
  }

  /** This request is being measured for this recorder by a middleware of an enclosing app. */
  function measuredAlready(req: IncomingMessage): boolean {
    const store = contextStorage.getStore()
    return (
      store !== undefined &&
      store.recorder === recorder &&
      !store.ended &&
      store.req === (req as RoutableRequest)
    )
  }

  /** What follows the middleware (the rest of the app) returned: its synchronous part is over. */
  function endSync(context: LensContext, req: IncomingMessage, res: ServerResponse): void {
    const end = performance.now()
    context.syncMs = end - context.startTime
    recorder.syncEnded(context, end)
    if (responseEnded(res)) {
      // Answered synchronously (res.end() already called): the request is over for us — its
      // status and route are known — so it is recorded now, with no 'close' listener at all.
      // That listener was a visible share of looplens's cost per request (bench/inproc.js).
      context.finalRoute = routeOf(req as RoutableRequest) ?? ''
      recorder.requestEnded(context, statusCodeOf(res), end)
    } else {
      // Prepended: instrumentation-http ends the server span in its own 'close' listener,
      // added before any middleware ran; ours must run first to put the request's times on
      // that span. Added after next(): a response's 'close' is never emitted synchronously.
      res.prependListener('close', endOnClose(context, res))
    }
  }

  /** The app's handle, with the middleware's work around it (see own-layer.ts). */
  function hoisted(original: AppHandle, app: unknown): AppHandle {
    // Decided once, when the middleware leaves the router: `app.use(path, sub)` sets `parent`.
    const nested = isMounted(app)
    return function looplensHandle(req, res, callback) {
      const context = begin(req, res, nested)
      if (context === undefined) return original.call(this, req, res, callback)
      try {
        return original.call(this, req, res, callback)
      } finally {
        endSync(context, req, res)
      }
    }
  }

  // The app is looked at during the first requests only (once per app they come from), so that
  // later requests read nothing more from `req` for it (context/fields.ts: what a read of
  // Express's `req` costs).
  let appChecks = 0
  let checkedApp: unknown
  /** Whether an app this middleware runs in is a sub-app (then each request is checked). */
  let inSubApp = false
  return function looplensMiddleware(req: Request, res: Response, next: NextFunction): void {
    if (appChecks < APP_CHECKS) {
      appChecks++
      const app = req.app
      if (app !== checkedApp) {
        checkedApp = app
        // Checked before hoisting: this request still runs through the layer.
        if (isMounted(app)) inSubApp = true
        if (!hoistOwnLayer(app, looplensMiddleware, (original) => hoisted(original, app))) {
          unwrapOwnLayer(app, looplensMiddleware)
        }
      }
    }
    const context = begin(req, res, inSubApp)
    if (context === undefined) {
      next()
      return
    }
    try {
      next()
    } finally {
      endSync(context, req, res)
    }
  }
}
