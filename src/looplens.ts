/**
 * The looplens instance: wires context → event → exporters, and owns every timer and worker it
 * starts (all unref'd; `close()` stops them).
 */
import { performance } from 'node:perf_hooks'
import type { RequestHandler } from 'express'
import type { LensContext } from './context/context.js'
import { RouteLimit } from './context/route-limit.js'
import { BlockDetector } from './detector/detector.js'
import { BlockPublisher } from './events/publisher.js'
import { createMetricsHandler, type MetricsHandler } from './exporters/metrics-handler.js'
import { OpenTelemetryExporter } from './exporters/otel.js'
import { DELAY_BUCKETS, PrometheusExporter } from './exporters/prometheus.js'
import type { GuardMiddleware } from './fix/guard.js'
import { FixRuntime } from './fix/runtime.js'
import type { RequestRecorder } from './internal-types.js'
import { createExpressMiddleware } from './middleware/express.js'
import { type DelayCounts, DelayMonitor } from './monitor/delay-monitor.js'
import { Heartbeat, heartbeatIntervalFor } from './monitor/heartbeat.js'
import { UtilizationWindow } from './monitor/utilization.js'
import { type ResolvedOptions, resolveOptions } from './options.js'
import { loadOpenTelemetryApi } from './otel/api.js'
import { ReportAggregator } from './report/aggregator.js'
import { formatReport } from './report/format.js'
import type {
  BackgroundOptions,
  BackgroundTasks,
  GuardOptions,
  LooplensEvents,
  LooplensOptions,
  LooplensReport,
  LoopSnapshot,
  RouteSyncRow,
  StackMissingReason,
} from './types.js'
import { terminalText } from './util/text.js'
import { Warnings } from './util/warnings.js'
import { debuggerServerOpen } from './watchdog/debugger.js'
import { chargeStack, openCaptureReader } from './watchdog/probe.js'
import {
  acquireWatchdog,
  hangReportedDuring,
  processShared,
  type WatchdogHandle,
} from './watchdog/watchdog.js'

export class Looplens {
  /** The validated, frozen options. */
  readonly options: ResolvedOptions
  readonly #warnings: Warnings
  readonly #publisher: BlockPublisher
  readonly #prometheus: PrometheusExporter
  /** Undefined when `openTelemetry: false` or `@opentelemetry/api` is not installed. */
  readonly #otel: OpenTelemetryExporter | undefined
  readonly #delay: DelayMonitor
  readonly #heartbeat: Heartbeat
  readonly #detector: BlockDetector
  readonly #recorder: RequestRecorder
  /** At most `maxRoutes` distinct route labels (request metrics and block events). */
  readonly #routeLimit: RouteLimit
  readonly #report = new ReportAggregator()
  /** Separate windows: a scrape must not shorten snapshot()'s window, nor the reverse. */
  readonly #scrapeUtilization = new UtilizationWindow()
  readonly #snapshotUtilization = new UtilizationWindow()
  readonly #watchdog: WatchdogHandle | undefined
  #closing: Promise<void> | undefined
  /** Background tasks, track() and guards: created on first use (see src/fix/runtime.ts). */
  #fixes: FixRuntime | undefined

  constructor(options?: LooplensOptions) {
    this.options = resolveOptions(options)
    const { registry, blockThresholdMs } = this.options
    this.#warnings = new Warnings(this.options.onWarning)
    const { maxRoutes } = this.options
    this.#routeLimit = new RouteLimit(maxRoutes, (route) =>
      this.#warnings.once(
        'LOOPLENS_ROUTE_OVERFLOW',
        `more than ${maxRoutes} distinct routes (options.maxRoutes): "${terminalText(route)}" and every later new route are labelled http_route="_OVERFLOW"`,
      ),
    )
    this.#publisher = new BlockPublisher(this.#warnings)
    this.#delay = new DelayMonitor(this.options.delayResolutionMs, DELAY_BUCKETS)
    // OpenTelemetry: decided once, here. Its block subscriber runs first: it sets the trace ids
    // of a block outside any request (its own span's) before Prometheus reads them for exemplars.
    const { openTelemetry } = this.options
    const otelApi = openTelemetry === false ? undefined : loadOpenTelemetryApi()
    if (otelApi === undefined && openTelemetry === true) {
      this.#warnings.once(
        'LOOPLENS_OTEL_API_MISSING',
        'openTelemetry is true but @opentelemetry/api cannot be loaded: install it next to your OpenTelemetry SDK',
      )
    }
    if (otelApi !== undefined) {
      this.#otel = new OpenTelemetryExporter({
        api: otelApi,
        mode: openTelemetry === true ? true : 'auto',
        drainDelay: () => this.#delay.drain(),
        flushStall: () => this.#heartbeat.tick(),
        warnings: this.#warnings,
      })
      this.#publisher.subscribeInternal(this.#otel.recordBlock)
    }
    try {
      this.#prometheus = new PrometheusExporter(
        registry,
        {
          drainDelay: () => this.#delay.drain(),
          utilization: () => this.#scrapeUtilization.next(),
        },
        otelApi !== undefined,
      )
    } catch (error) {
      // options.registry refused our metrics (the error names it): stop what already started.
      this.#delay.close()
      this.#otel?.close()
      throw error
    }
    this.#publisher.subscribeInternal(this.#prometheus.recordBlock)
    this.#publisher.subscribeInternal(this.#report.recordBlock)
    if (this.options.captureStacks) {
      this.#watchdog = acquireWatchdog({
        blockThresholdMs,
        hangReportMs: this.options.hangReportMs,
        maxStacksPerMinute: this.options.maxStacksPerMinute,
        warn: (code, message) => this.#warnings.once(code, message),
      })
    }
    const heartbeatInterval = heartbeatIntervalFor(blockThresholdMs)
    this.#detector = new BlockDetector({
      blockThresholdMs,
      stacksUnavailable: () => this.#stackMissingReason(),
      captures: openCaptureReader(),
      chargeStack,
      hangReported: (stall) => hangReportedDuring(stall, heartbeatInterval),
      debuggerServerOpen: () => {
        if (!debuggerServerOpen()) return false
        this.#warnings.once(
          'LOOPLENS_DEBUGGER_ATTACHED',
          'a debugger server is open (inspector.url() is set): stalls are not reported as blocks while it is (a breakpoint pause is not a block)',
        )
        return true
      },
      publish: (event) => {
        const route = event.context.route
        const admitted = this.#routeLimit.admit(route)
        if (admitted !== route) event.context = { ...event.context, route: admitted }
        this.#publisher.publish(event)
      },
    })
    this.#heartbeat = new Heartbeat(
      blockThresholdMs,
      this.#detector.onStall,
      processShared.floats,
      this.#detector.afterTick,
    )
    this.#recorder = this.#createRecorder()
  }

  /** Undefined while the watchdog captures stacks; else why it does not. */
  #stackMissingReason(): StackMissingReason | undefined {
    if (this.#watchdog === undefined) return 'disabled'
    // While the worker starts (a few ms, more on a busy machine) no probe can run yet.
    return this.#watchdog.state() === 'active' ? undefined : 'unavailable'
  }

  #createRecorder(): RequestRecorder {
    const prometheus = this.#prometheus
    const activeRequests = prometheus.activeRequests
    const otel = this.#otel
    const detector = this.#detector
    const thresholdMs = this.options.blockThresholdMs
    const routeLimit = this.#routeLimit
    return {
      requestStarted(context: LensContext): void {
        const active = activeRequests.counter(context.method)
        active.value++
        context.active = active
      },
      syncEnded(context: LensContext, endPerf: number): void {
        if (context.syncMs >= thresholdMs) {
          detector.noteLongSync(context, endPerf - context.syncMs, endPerf)
        }
      },
      requestEnded(context: LensContext, statusCode: number | undefined, endPerf?: number): void {
        context.ended = true
        const method = context.method
        const route = routeLimit.admit(context.finalRoute ?? '')
        if (context.active !== undefined) context.active.value--
        prometheus.recordRequest(
          method,
          route,
          statusCode === undefined ? '' : statusCode,
          ((endPerf ?? performance.now()) - context.startTime) / 1000,
          context.syncMs / 1000,
          context.span,
        )
        otel?.requestEnded(context, method, route)
        detector.contextEnded(context)
        // Its route is fixed (finalRoute): the context keeps nothing of the request from now on.
        // Async resources the app created in it (a keep-alive socket, a long timer) may hold the
        // context long after, and through `req` its body and response.
        context.req = undefined
      },
    }
  }

  /**
   * Express middleware (Express 4 and 5): request context, route template, RED and sync-time
   * metrics. Mount it first, before body parsers, so their blocks are attributed too.
   * @example app.use(lens.express())
   */
  express(): RequestHandler {
    return createExpressMiddleware(this.#recorder, this.options.excludePaths)
  }

  /**
   * A request handler serving the registry: OpenMetrics when the `Accept` header asks for it
   * (Prometheus does), the Prometheus text format otherwise. Works with Express and `node:http`.
   * @example app.get('/metrics', lens.metricsHandler())
   */
  metricsHandler(): MetricsHandler {
    return createMetricsHandler(this.options.registry, this.#warnings)
  }

  /** The registry the metrics are in (your own, or the one looplens created). */
  get registry() {
    return this.options.registry
  }

  /**
   * Listen to every block, with its context and stack. A listener that throws is reported once
   * (through `onWarning`) and never reaches the application.
   * @example lens.on('block', (event) => log.warn(event, 'event loop blocked'))
   */
  on<E extends keyof LooplensEvents>(event: E, listener: LooplensEvents[E]): this {
    if (event !== 'block') {
      throw new TypeError(`lens.on: unknown event ${JSON.stringify(event)} (known: "block")`)
    }
    if (typeof listener !== 'function') {
      throw new TypeError('lens.on: listener must be a function')
    }
    this.#publisher.addListener(listener)
    return this
  }

  /** Remove a listener added with {@link on}. */
  off<E extends keyof LooplensEvents>(event: E, listener: LooplensEvents[E]): this {
    if (event === 'block') this.#publisher.removeListener(listener)
    return this
  }

  /**
   * The current picture: delay percentiles since start, utilization since the previous
   * snapshot, blocks so far.
   */
  snapshot(): LoopSnapshot {
    const delay = this.#delay
    const counts = delay.drain()
    const mean = counts.count === 0 ? 0 : (counts.sumSeconds / counts.count) * 1000
    return {
      delay: {
        min: counts.count === 0 ? 0 : counts.minSeconds * 1000,
        mean,
        p50: delay.quantileMs(0.5),
        p90: delay.quantileMs(0.9),
        p99: delay.quantileMs(0.99),
        max: counts.maxSeconds * 1000,
        count: counts.count,
      },
      utilization: this.#snapshotUtilization.next(),
      blocks: { ...this.#report.blocks },
      stacks: {
        active: this.#stackMissingReason() === undefined,
        reason: this.#stackMissingReason(),
      },
    }
  }

  /**
   * Top blockers, worst (largest total blocked time) first, with their culprit line and one
   * sample stack; saturation apart; sync time per route.
   * @example console.log(lens.formatReport(lens.report()))
   */
  report(): LooplensReport {
    return {
      generatedAt: new Date().toISOString(),
      since: new Date(this.#report.startedAt).toISOString(),
      blockThresholdMs: this.options.blockThresholdMs,
      blocks: { ...this.#report.blocks },
      blockers: this.#report.blockers(),
      saturation: { ...this.#report.saturation },
      routes: this.#routes(),
      loop: this.snapshot(),
    }
  }

  /** Sync time per route, largest total first, from the sync-time histogram's series. */
  #routes(): RouteSyncRow[] {
    return this.#prometheus.syncDuration
      .allSeries()
      .map((series) => ({
        method: String(series.labels.http_request_method),
        route: String(series.labels.http_route),
        requests: series.count,
        syncTotalMs: series.sum * 1000,
        syncMaxMs: series.max * 1000,
      }))
      .sort((a, b) => b.syncTotalMs - a.syncTotalMs)
  }

  /**
   * Render a report as a text table for a terminal (top 10 rows, the three worst with stacks).
   * @example process.stderr.write(lens.formatReport(lens.report()))
   */
  formatReport(report: LooplensReport = this.report(), options?: { limit?: number }): string {
    return formatReport(report, options)
  }

  #fixRuntime(): FixRuntime {
    if (this.#fixes === undefined) {
      this.#fixes = new FixRuntime({
        registry: this.options.registry,
        recorder: this.#recorder,
        warnings: this.#warnings,
        onWarning: this.options.onWarning,
        closeTimeoutMs: this.options.closeTimeoutMs,
      })
      if (this.#closing !== undefined) void this.#fixes.close()
    }
    return this.#fixes
  }

  /**
   * Work to run after the response has been sent, in order, each task in a context of its own
   * (the request's method and route, the task's name), measured in
   * `looplens_background_task_duration_seconds{task, outcome}`, errors contained. `close()` waits
   * for them up to `closeTimeoutMs`. When the client aborts, the tasks still run unless
   * `{ onAbort: 'skip' }`. Works without `lens.express()` too (the task label only).
   * @example
   * app.post('/signup', (req, res) => {
   *   res.status(201).json(user)
   *   lens.background(res).add(sendWelcomeEmail, user.email)
   * })
   */
  background(res: unknown, options?: BackgroundOptions): BackgroundTasks {
    return this.#fixRuntime().background(res, options)
  }

  /**
   * Wrap a non-HTTP entry point (queue consumer, WebSocket message listener, scheduled job):
   * every call runs in a context `{task: name}` and is measured in
   * `looplens_task_duration_seconds{task, outcome}`. The wrapper returns what `fn` returns and
   * throws what it throws.
   * @example queue.on('message', lens.track('orders-consumer', handleOrder))
   */
  track<F extends (...args: never[]) => unknown>(name: string, fn: F): F {
    return this.#fixRuntime().track(name, fn)
  }

  /**
   * Express middleware answering `503` with `Retry-After` while event-loop delay (default limit
   * 200 ms) or utilization is over its limit, sampled off the request path; health and metrics
   * paths exempt. Counted in `looplens_shed_requests_total{reason}`. Stopped by `close()`.
   * @example app.use(lens.guard({ maxEventLoopDelayMs: 200, retryAfterSeconds: 5 }))
   */
  guard(options?: GuardOptions): GuardMiddleware {
    return this.#fixRuntime().guard(options).middleware
  }

  /** @internal for instrumentations inside the package (zero-code http, tasks). */
  get recorder(): RequestRecorder {
    return this.#recorder
  }

  /** @internal cumulative delay counts (seconds), for the zero-code timeline (src/register.ts). */
  delayCounts(): Readonly<DelayCounts> {
    return this.#delay.drain()
  }

  /** @internal measure a stall that just ended now, before a report is taken at exit. */
  flushStall(): void {
    this.#heartbeat.tick()
  }

  /**
   * Stop every timer and worker looplens started and release its metrics. Idempotent; after it,
   * nothing of looplens keeps the process alive (nothing did before either: all is unref'd).
   */
  close(): Promise<void> {
    this.#closing ??= this.#close()
    return this.#closing
  }

  async #close(): Promise<void> {
    // First: background tasks may still block the loop, and those blocks must be measured.
    await this.#fixes?.close()
    this.#heartbeat.tick()
    this.#heartbeat.close()
    this.#detector.close()
    await this.#watchdog?.release()
    this.#delay.close()
    this.#prometheus.close()
    this.#otel?.close()
  }
}

/**
 * Create a looplens instance: starts the event-loop monitor and the blocking detector.
 * Throws a `TypeError`/`RangeError` naming the option when an option is invalid.
 * @example
 * const lens = createLooplens({ blockThresholdMs: 50 })
 * app.use(lens.express())
 * app.get('/metrics', lens.metricsHandler())
 */
export function createLooplens(options?: LooplensOptions): Looplens {
  return new Looplens(options)
}
