/**
 * `lens.express()`: request context, route template, RED and sync-time metrics.
 *
 * Per request: one context object, `enterWith` (so the request's own later callbacks — body
 * parser `data`/`end` events included — see it), two clock reads, six keyed reads of `req` and
 * `res` (context/fields.ts says why keyed), and a `close` listener only for a response still
 * open when `next()` returns. Everything else is decided here, at construction.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { performance } from 'node:perf_hooks'
import type { NextFunction, Request, RequestHandler, Response } from 'express'
import { contextStorage, LensContext } from '../context/context.js'
import { methodOf, originalUrlOf, responseEnded, statusCodeOf } from '../context/fields.js'
import { normalizeMethod, routeOf, routerStackOf } from '../context/route.js'
import { httpInstrumentation, kHttpRecorder } from '../instrument/marks.js'
import type { RequestRecorder } from '../internal-types.js'
import { captureSpan } from '../otel/capture.js'

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

/** The parts of an Express app and router this module reads (4 and 5 differ in where). */
interface RouterLike {
  stack?: unknown
}
interface LayerLike {
  handle?: unknown
  route?: RouterLike
}
interface ShimmerWrapper {
  __original?: unknown
  __unwrap?: () => void
}

/** Requests of a middleware that look for its wrapper (see {@link unwrapOwnLayer}). */
const UNWRAP_CHECKS = 16

/** Bound on the layers looked at: an app is searched once, never at length. */
const MAX_LAYERS = 2_000

/**
 * instrumentation-express wraps the handler of every layer, looplens's own included, to make a
 * `middleware - looplensMiddleware` span per request: a span in every trace that only times
 * looplens, and, on a trivial route, 12% more instructions per request than OpenTelemetry alone
 * (`bench/instructions.js`, against the same app with `ignoreLayers` for it). The first time a request
 * of an app reaches the middleware, the wrapper around the middleware's own layer is taken off
 * with the wrapper's own `__unwrap()` (the shimmer every OpenTelemetry instrumentation patches
 * with): later requests call the middleware directly. No other layer is touched. Only the first
 * 16 requests of a middleware look: an app whose first request comes later keeps the wrapper.
 * @returns how many wrappers were removed (0 when the app is not instrumented)
 */
export function unwrapOwnLayer(app: unknown, handler: RequestHandler): number {
  let removed = 0
  let budget = MAX_LAYERS
  const visit = (stack: unknown, depth: number): void => {
    if (!Array.isArray(stack) || depth > 4) return
    for (const layer of stack as LayerLike[]) {
      if (--budget < 0) return
      if (typeof layer?.handle !== 'function') continue
      const handle = layer.handle as ShimmerWrapper & RouterLike
      if (handle.__original === handler && typeof handle.__unwrap === 'function') {
        handle.__unwrap()
        if (layer.handle === handler) removed++
      } else {
        visit(handle.stack, depth + 1) // a nested router
      }
      visit(layer.route?.stack, depth + 1)
    }
  }
  try {
    visit(routerStackOf(app), 0)
  } catch {
    // An app shaped unlike Express 4 or 5: leave it as it is.
  }
  return removed
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

  // The wrapper is looked for during the first requests only (once per app they come from), so
  // that later requests read nothing more from `req` for it (context/fields.ts: what a read of
  // Express's `req` costs).
  let unwrapChecks = 0
  let checkedApp: unknown
  return function looplensMiddleware(req: Request, res: Response, next: NextFunction): void {
    if (unwrapChecks < UNWRAP_CHECKS) {
      unwrapChecks++
      const app = req.app
      if (app !== checkedApp) {
        checkedApp = app
        unwrapOwnLayer(app, looplensMiddleware)
      }
    }
    // Already measured for this recorder by the zero-code http instrumentation (the preload):
    // its context is entered and will be ended; a second one would count the request twice.
    if (
      httpInstrumentation.active &&
      (res as Response & { [kHttpRecorder]?: RequestRecorder })[kHttpRecorder] === recorder
    ) {
      next()
      return
    }
    if (isExcluded?.(originalUrlOf(req) ?? '/')) {
      next()
      return
    }
    const start = performance.now()
    const context = new LensContext(normalizeMethod(methodOf(req)), '', req, start)
    captureSpan(context)
    // enterWith, not run(): the request's body arrives in later callbacks of the same async
    // resource, and a block in a body parser must still be attributed to this request.
    contextStorage.enterWith(context)
    recorder.requestStarted(context)
    try {
      next()
    } finally {
      const end = performance.now()
      context.syncMs = end - start
      recorder.syncEnded(context, end)
      if (responseEnded(res)) {
        // Answered synchronously (res.end() already called): the request is over for us — its
        // status and route are known — so it is recorded now, with no 'close' listener at all.
        // That listener was a visible share of looplens's cost per request (bench/inproc.js).
        context.finalRoute = routeOf(req) ?? ''
        recorder.requestEnded(context, statusCodeOf(res), end)
      } else {
        // Prepended: instrumentation-http ends the server span in its own 'close' listener,
        // added before any middleware ran; ours must run first to put the request's times on
        // that span. Added after next(): a response's 'close' is never emitted synchronously.
        res.prependListener('close', endOnClose(context, res))
      }
    }
  }
}
