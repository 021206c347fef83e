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
 * runs for every request, and the default list (`/metrics`) is never empty.
 */
export function compileExclude(
  paths: ReadonlyArray<string | RegExp>,
): ((url: string) => boolean) | undefined {
  if (paths.length === 0) return undefined
  const exact = paths.filter((path): path is string => typeof path === 'string')
  const patterns = paths.filter((path): path is RegExp => path instanceof RegExp)
  return (url) => {
    for (const path of exact) {
      // `/metrics` or `/metrics?…`, not `/metricsfoo`
      if (
        url.startsWith(path) &&
        (url.length === path.length || url.charCodeAt(path.length) === 63)
      ) {
        return true
      }
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

/** The path of a request URL without its query string. */
export function pathOf(url: string | undefined): string {
  if (url === undefined) return '/'
  const query = url.indexOf('?')
  return query === -1 ? url : url.slice(0, query)
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
  function begin(req: IncomingMessage, res: ServerResponse): LensContext | undefined {
    // Already measured for this recorder by the zero-code http instrumentation (the preload):
    // its context is entered and will be ended; a second one would count the request twice.
    if (
      httpInstrumentation.active &&
      (res as ServerResponse & { [kHttpRecorder]?: RequestRecorder })[kHttpRecorder] === recorder
    ) {
      return undefined
    }
    if (isExcluded?.(originalUrlOf(req) ?? '/')) return undefined
    const context = new LensContext(
      normalizeMethod(methodOf(req)),
      '',
      req as RoutableRequest,
      performance.now(),
    )
    captureSpan(context)
    // enterWith, not run(): the request's body arrives in later callbacks of the same async
    // resource, and a block in a body parser must still be attributed to this request.
    contextStorage.enterWith(context)
    recorder.requestStarted(context)
    return context
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
  function hoisted(original: AppHandle): AppHandle {
    return function looplensHandle(req, res, callback) {
      const context = begin(req, res)
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
  return function looplensMiddleware(req: Request, res: Response, next: NextFunction): void {
    if (appChecks < APP_CHECKS) {
      appChecks++
      const app = req.app
      if (app !== checkedApp) {
        checkedApp = app
        if (!hoistOwnLayer(app, looplensMiddleware, hoisted)) {
          unwrapOwnLayer(app, looplensMiddleware)
        }
      }
    }
    const context = begin(req, res)
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
