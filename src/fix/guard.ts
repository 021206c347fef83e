/**
 * `lens.guard(options)`: shed load while the event loop is over its limit — answer `503` with
 * `Retry-After` at once instead of queueing more work behind a stalled loop.
 *
 * The loop is sampled on an unref'd interval, off the request path: each sample takes the largest
 * event-loop delay since the previous one (the sampler's own lateness, and a
 * `monitorEventLoopDelay` histogram that sees stalls shorter than the interval) and the
 * event-loop utilization over the interval. The middleware only reads the result: one property
 * read per request while the loop is healthy.
 *
 * After a stall, the first thing the loop runs is the timers phase — the sampler — before it
 * reads the requests that queued up during the stall: those are the ones shed.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { type IntervalHistogram, monitorEventLoopDelay, performance } from 'node:perf_hooks'
import type { FixMetrics, ShedReason } from '../exporters/fix-metrics.js'
import { compileExclude, pathOf } from '../middleware/express.js'
import { describe, integerOption } from '../options.js'
import type { GuardOptions } from '../types.js'

/** Resolution (ms) of the guard's own delay histogram. */
const DELAY_RESOLUTION_MS = 10

const KNOWN_GUARD_OPTIONS = [
  'maxEventLoopDelayMs',
  'maxEventLoopUtilization',
  'retryAfterSeconds',
  'exemptPaths',
  'sampleIntervalMs',
]

export interface ResolvedGuardOptions {
  /** 0: the delay is not looked at. */
  readonly maxEventLoopDelayMs: number
  /** undefined: utilization is not looked at. */
  readonly maxEventLoopUtilization: number | undefined
  readonly retryAfterSeconds: number
  readonly exemptPaths: ReadonlyArray<string | RegExp>
  readonly sampleIntervalMs: number
}

/** Validate guard options once; errors name `guard options.<name>` and the value received. */
export function resolveGuardOptions(options: GuardOptions | undefined): ResolvedGuardOptions {
  if (options === undefined) options = {}
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new TypeError(`guard options must be an object (received ${describe(options)})`)
  }
  for (const key of Object.keys(options)) {
    if (!KNOWN_GUARD_OPTIONS.includes(key)) {
      throw new TypeError(
        `guard options.${key} is not an option of lens.guard() (known: ${KNOWN_GUARD_OPTIONS.join(', ')})`,
      )
    }
  }
  const maxEventLoopDelayMs = integerOption(
    'guard options.maxEventLoopDelayMs',
    options.maxEventLoopDelayMs,
    200,
    0,
    600_000,
  )
  let maxEventLoopUtilization: number | undefined
  const utilization: unknown = options.maxEventLoopUtilization
  if (utilization !== undefined) {
    if (typeof utilization !== 'number' || Number.isNaN(utilization)) {
      throw new TypeError(
        `guard options.maxEventLoopUtilization must be a number (received ${describe(utilization)})`,
      )
    }
    if (!(utilization > 0 && utilization < 1)) {
      throw new RangeError(
        `guard options.maxEventLoopUtilization must be a ratio between 0 and 1, both excluded (received ${utilization})`,
      )
    }
    maxEventLoopUtilization = utilization
  }
  if (maxEventLoopDelayMs === 0 && maxEventLoopUtilization === undefined) {
    throw new RangeError(
      'guard options: maxEventLoopDelayMs is 0 (off) and maxEventLoopUtilization is not set: the guard would never shed; set at least one',
    )
  }
  const retryAfterSeconds = integerOption(
    'guard options.retryAfterSeconds',
    options.retryAfterSeconds,
    10,
    0,
    86_400,
  )
  const sampleIntervalMs = integerOption(
    'guard options.sampleIntervalMs',
    options.sampleIntervalMs,
    250,
    10,
    60_000,
  )
  let exemptPaths: ReadonlyArray<string | RegExp> = ['/health', '/healthz', '/livez', '/metrics']
  if (options.exemptPaths !== undefined) {
    if (!Array.isArray(options.exemptPaths)) {
      throw new TypeError(
        `guard options.exemptPaths must be an array of strings and RegExps (received ${describe(options.exemptPaths)})`,
      )
    }
    options.exemptPaths.forEach((path: unknown, index: number) => {
      const ok = (typeof path === 'string' && path.startsWith('/')) || path instanceof RegExp
      if (!ok) {
        throw new TypeError(
          `guard options.exemptPaths[${index}] must be a path starting with "/" or a RegExp (received ${describe(path)})`,
        )
      }
    })
    exemptPaths = Object.freeze([...options.exemptPaths])
  }
  return Object.freeze({
    maxEventLoopDelayMs,
    maxEventLoopUtilization,
    retryAfterSeconds,
    exemptPaths,
    sampleIntervalMs,
  })
}

/** The `(req, res, next)` middleware of the guard, usable with Express 4/5 and Connect. */
export type GuardMiddleware = (
  req: IncomingMessage & { originalUrl?: string },
  res: ServerResponse,
  next: (error?: unknown) => void,
) => void

/** One guard: its sampler (started at creation) and its middleware. */
export class LoadGuard {
  readonly options: ResolvedGuardOptions
  readonly middleware: GuardMiddleware
  /** Why requests are being shed right now; undefined while the loop is within its limits. */
  reason: ShedReason | undefined = undefined
  /** The last sample, for diagnostics and tests. */
  lastSample = { delayMs: 0, utilization: 0 }
  readonly #timer: NodeJS.Timeout | undefined
  readonly #histogram: IntervalHistogram | undefined
  #lastTick: number
  #eluBaseline = performance.eventLoopUtilization()
  #closed = false

  constructor(options: ResolvedGuardOptions, metrics: FixMetrics) {
    this.options = options
    this.#lastTick = performance.now()
    if (options.maxEventLoopDelayMs !== 0) {
      this.#histogram = monitorEventLoopDelay({ resolution: DELAY_RESOLUTION_MS })
      this.#histogram.enable()
    }
    this.#timer = setInterval(() => this.sample(), options.sampleIntervalMs)
    this.#timer.unref()
    this.middleware = createGuardMiddleware(this, metrics)
  }

  /** Take one sample and decide whether to shed until the next one. */
  sample(): void {
    if (this.#closed) return
    const { maxEventLoopDelayMs, maxEventLoopUtilization, sampleIntervalMs } = this.options
    const now = performance.now()
    // The sampler's own lateness: a stall longer than the interval delayed this very callback.
    let delayMs = Math.max(0, now - this.#lastTick - sampleIntervalMs)
    this.#lastTick = now
    const histogram = this.#histogram
    if (histogram !== undefined) {
      if (histogram.count > 0) {
        delayMs = Math.max(delayMs, (histogram.max - DELAY_RESOLUTION_MS * 1e6) / 1e6)
      }
      histogram.reset()
    }
    const elu = performance.eventLoopUtilization()
    const utilization = performance.eventLoopUtilization(elu, this.#eluBaseline).utilization
    this.#eluBaseline = elu
    this.lastSample = { delayMs, utilization }
    if (maxEventLoopDelayMs !== 0 && delayMs > maxEventLoopDelayMs) {
      this.reason = 'event_loop_delay'
    } else if (maxEventLoopUtilization !== undefined && utilization > maxEventLoopUtilization) {
      this.reason = 'event_loop_utilization'
    } else {
      this.reason = undefined
    }
  }

  /** Stop sampling; the middleware lets every request through from now on. Idempotent. */
  close(): void {
    if (this.#closed) return
    this.#closed = true
    this.reason = undefined
    clearInterval(this.#timer)
    this.#histogram?.disable()
  }
}

function createGuardMiddleware(guard: LoadGuard, metrics: FixMetrics): GuardMiddleware {
  const isExempt = compileExclude(guard.options.exemptPaths)
  const retryAfter = String(guard.options.retryAfterSeconds)
  const shedCounter = metrics.shedRequests

  return function looplensGuard(req, res, next): void {
    const reason = guard.reason
    if (reason === undefined || isExempt?.(pathOf(req.originalUrl ?? req.url))) {
      next()
      return
    }
    shedCounter.inc({ reason })
    res.statusCode = 503
    res.setHeader('Retry-After', retryAfter)
    res.setHeader('Content-Type', 'text/plain; charset=utf-8')
    res.end('Service Unavailable: the server is overloaded, retry later.\n')
  }
}

/** Validate the options and start a guard. */
export function createGuard(options: GuardOptions | undefined, metrics: FixMetrics): LoadGuard {
  return new LoadGuard(resolveGuardOptions(options), metrics)
}
