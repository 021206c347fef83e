/**
 * Zero-code instrumentation of every `http.Server` (and `https.Server`) in the process, through
 * Node's own diagnostics channels:
 *  - `http.server.request.start` (published synchronously right before the server emits
 *    `'request'`): one LensContext per request, entered into the process-wide AsyncLocalStorage
 *    with `enterWith` (the subscriber runs inside the request's own execution, so the handler and
 *    every callback it schedules see it), `requestStarted`;
 *  - `http.server.response.finish`: `requestEnded(context, statusCode)`, with the route template
 *    read from Express at that moment when the app is Express (Express's `req` *is* the
 *    IncomingMessage the channel hands us);
 *  - a response that closes without finishing (the client aborted): `requestEnded(context,
 *    undefined)`, from one `'close'` listener.
 *
 * Sync time. No channel marks the end of the synchronous part of a request, and a
 * `setImmediate`/`nextTick` per request would cost more than the whole measurement. Instead the
 * server's own `emit` is wrapped once per server (the first time one of its requests is seen):
 * for `'request'` it reads the clock before and after the listeners run, the same two clock
 * reads the Express middleware spends around its `next()`. Other events pass straight through.
 *
 * Per request: one context, one `enterWith`, three clock reads, two property writes, one
 * `'close'` listener. Plain `node:http` servers have no route template: their requests (and the
 * blocks inside them) carry the method and `http_route=""`.
 */
import diagnosticsChannel from 'node:diagnostics_channel'
import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import { performance } from 'node:perf_hooks'
import { contextStorage, LensContext } from '../context/context.js'
import { statusCodeOf } from '../context/fields.js'
import { normalizeMethod, type RoutableRequest, routeOf } from '../context/route.js'
import type { RequestRecorder } from '../internal-types.js'
import { compileExclude } from '../middleware/express.js'
import { httpInstrumentation, kHttpContext, kHttpRecorder } from './marks.js'

const REQUEST_START = 'http.server.request.start'
const RESPONSE_FINISH = 'http.server.response.finish'

/** Set on a server whose `emit` we wrapped, and on servers we must not instrument (our own). */
const kWrapped: unique symbol = Symbol('looplens.emitWrapped')
const kIgnored: unique symbol = Symbol('looplens.ignored')

interface MarkedServer extends Server {
  [kWrapped]?: true
  [kIgnored]?: true
}

interface MarkedResponse extends ServerResponse {
  [kHttpContext]?: LensContext | undefined
  [kHttpRecorder]?: RequestRecorder
}

interface ServerMessage {
  request: IncomingMessage
  response: MarkedResponse
  server: MarkedServer
}

export interface HttpInstrumentationOptions {
  /** Paths not measured at all (as `excludePaths` of the middleware). */
  excludePaths: ReadonlyArray<string | RegExp>
  /** Called once per cause when something inside the instrumentation failed. */
  warn: (code: string, message: string, cause?: unknown) => void
}

/** A running instrumentation: `ignore()` our own servers, `close()` to unsubscribe. */
export interface HttpInstrumentation {
  /** Never instrument this server (looplens's own metrics server). */
  ignore(server: Server): void
  /** Unsubscribe from the channels. Idempotent. Wrapped `emit`s stay, as pass-throughs. */
  close(): void
}

let active = false

/**
 * Instrument every HTTP server of the process, present and future, for `recorder`. One
 * instrumentation per process (the preload's); a second call throws.
 * @example
 * const http = instrumentHttp(lens.recorder, { excludePaths: lens.options.excludePaths, warn })
 */
export function instrumentHttp(
  recorder: RequestRecorder,
  options: HttpInstrumentationOptions,
): HttpInstrumentation {
  if (active) throw new Error('looplens: HTTP servers are already instrumented in this process')
  active = true
  httpInstrumentation.active = true
  const isExcluded = compileExclude(options.excludePaths)
  let closed = false

  function end(context: LensContext, statusCode: number | undefined): void {
    const req = context.req
    context.finalRoute = req === undefined ? '' : (routeOf(req) ?? '')
    recorder.requestEnded(context, statusCode)
  }

  function onResponseClose(this: MarkedResponse): void {
    const context = this[kHttpContext]
    if (context === undefined) return
    this[kHttpContext] = undefined
    try {
      end(context, this.writableFinished ? statusCodeOf(this) : undefined)
    } catch (error) {
      options.warn('LOOPLENS_HTTP_FAILED', 'the http instrumentation failed on a response', error)
    }
  }

  function wrapEmit(server: MarkedServer): void {
    server[kWrapped] = true
    const original = server.emit as (
      this: Server,
      event: string | symbol,
      ...args: unknown[]
    ) => boolean
    server.emit = function looplensServerEmit(
      this: Server,
      event: string | symbol,
      ...args: unknown[]
    ): boolean {
      if (event !== 'request' || closed) return original.call(this, event, ...args)
      const response = args[1] as MarkedResponse | undefined
      const context = response?.[kHttpContext]
      if (context === undefined) return original.call(this, event, ...args)
      const start = performance.now()
      try {
        return original.call(this, event, ...args)
      } finally {
        const endPerf = performance.now()
        context.syncMs = endPerf - start
        try {
          recorder.syncEnded(context, endPerf)
        } catch (error) {
          options.warn(
            'LOOPLENS_HTTP_FAILED',
            'the http instrumentation failed on a request',
            error,
          )
        }
      }
    } as Server['emit']
  }

  // A subscriber that throws becomes an uncaught exception of the application (the channel
  // rethrows it on nextTick): everything below is contained.
  function onRequestStart(message: unknown): void {
    try {
      const { request, response, server } = message as ServerMessage
      if (server[kIgnored] === true) return
      if (isExcluded?.(request.url ?? '/')) return
      if (server[kWrapped] !== true) wrapEmit(server)
      const context = new LensContext(
        normalizeMethod(request.method),
        '',
        request as RoutableRequest,
        performance.now(),
      )
      // enterWith, not run(): the subscriber runs synchronously inside the request's execution
      // (right before `emit('request')`), and the body's later `data`/`end` callbacks belong to
      // the same async resource: a block in a body parser is attributed to this request.
      contextStorage.enterWith(context)
      response[kHttpContext] = context
      response[kHttpRecorder] = recorder
      recorder.requestStarted(context)
      response.once('close', onResponseClose)
    } catch (error) {
      options.warn('LOOPLENS_HTTP_FAILED', 'the http instrumentation failed on a request', error)
    }
  }

  function onResponseFinish(message: unknown): void {
    try {
      const { response } = message as ServerMessage
      const context = response[kHttpContext]
      if (context === undefined) return
      response[kHttpContext] = undefined
      end(context, statusCodeOf(response))
    } catch (error) {
      options.warn('LOOPLENS_HTTP_FAILED', 'the http instrumentation failed on a response', error)
    }
  }

  diagnosticsChannel.subscribe(REQUEST_START, onRequestStart)
  diagnosticsChannel.subscribe(RESPONSE_FINISH, onResponseFinish)

  return {
    ignore(server: Server): void {
      ;(server as MarkedServer)[kIgnored] = true
    },
    close(): void {
      if (closed) return
      closed = true
      active = false
      diagnosticsChannel.unsubscribe(REQUEST_START, onRequestStart)
      diagnosticsChannel.unsubscribe(RESPONSE_FINISH, onResponseFinish)
    },
  }
}
