/**
 * The looplens instance: wires context → event → exporters, and owns every timer and worker it
 * starts (all unref'd; `close()` stops them).
 */
import { performance } from 'node:perf_hooks'
import type { RequestHandler } from 'express'
import type { LensContext } from './context/context.js'
import { BlockDetector } from './detector/detector.js'
import { BlockPublisher } from './events/publisher.js'
import { createMetricsHandler, type MetricsHandler } from './exporters/metrics-handler.js'
import { DELAY_BUCKETS, PrometheusExporter } from './exporters/prometheus.js'
import type { RequestRecorder } from './internal-types.js'
import { createExpressMiddleware } from './middleware/express.js'
import { DelayMonitor } from './monitor/delay-monitor.js'
import { Heartbeat } from './monitor/heartbeat.js'
import { type ResolvedOptions, resolveOptions } from './options.js'
import type {
  BlockEvent,
  LoopSnapshot,
  LooplensEvents,
  LooplensOptions,
  StackMissingReason,
} from './types.js'
import { Warnings } from './util/warnings.js'

export class Looplens {
  /** The validated, frozen options. */
  readonly options: ResolvedOptions
  readonly #warnings: Warnings
  readonly #publisher: BlockPublisher
  readonly #prometheus: PrometheusExporter
  readonly #delay: DelayMonitor
  readonly #heartbeat: Heartbeat
  readonly #detector: BlockDetector
  readonly #recorder: RequestRecorder
  readonly #blocks = { count: 0, totalMs: 0, maxMs: 0 }
  #closing: Promise<void> | undefined

  constructor(options?: LooplensOptions) {
    this.options = resolveOptions(options)
    const { registry, blockThresholdMs } = this.options
    this.#warnings = new Warnings(this.options.onWarning)
    this.#publisher = new BlockPublisher(this.#warnings)
    this.#delay = new DelayMonitor(this.options.delayResolutionMs, DELAY_BUCKETS)
    this.#prometheus = new PrometheusExporter(registry, {
      drainDelay: () => this.#delay.drain(),
      utilization: () => this.#delay.utilizationSinceLastCall(),
    })
    this.#publisher.subscribeInternal(this.#prometheus.recordBlock)
    this.#publisher.subscribeInternal((event) => {
      this.#blocks.count++
      this.#blocks.totalMs += event.durationMs
      this.#blocks.maxMs = Math.max(this.#blocks.maxMs, event.durationMs)
    })
    this.#detector = new BlockDetector({
      blockThresholdMs,
      stackMissing: () => this.#stackMissingReason(),
      publish: (event) => this.#publisher.publish(event),
    })
    this.#heartbeat = new Heartbeat(blockThresholdMs, this.#detector.onStall)
    this.#recorder = this.#createRecorder()
  }

  #stackMissingReason(): StackMissingReason {
    return this.options.captureStacks ? 'unavailable' : 'disabled'
  }

  #createRecorder(): RequestRecorder {
    const { requestDuration, activeRequests, syncDuration } = this.#prometheus
    const detector = this.#detector
    const thresholdMs = this.options.blockThresholdMs
    return {
      requestStarted(context: LensContext): void {
        activeRequests.inc({ http_request_method: context.method })
      },
      syncEnded(context: LensContext, endPerf: number): void {
        if (context.syncMs >= thresholdMs) {
          detector.noteLongSync(context, endPerf - context.syncMs, endPerf)
        }
      },
      requestEnded(context: LensContext, statusCode: number | undefined): void {
        context.ended = true
        const method = context.method
        const route = context.finalRoute ?? ''
        activeRequests.dec({ http_request_method: method })
        requestDuration.observe(
          {
            http_request_method: method,
            http_route: route,
            http_response_status_code: statusCode === undefined ? '' : statusCode,
          },
          (performance.now() - context.startTime) / 1000,
        )
        syncDuration.observe(
          { http_request_method: method, http_route: route },
          context.syncMs / 1000,
        )
        detector.contextEnded(context)
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
      utilization: delay.utilizationSinceLastCall(),
      blocks: { ...this.#blocks },
      stacks: { active: false, reason: this.#stackMissingReason() },
    }
  }

  /** @internal for instrumentations inside the package (zero-code http, tasks). */
  get recorder(): RequestRecorder {
    return this.#recorder
  }

  /** @internal publish path, for tests of exporters. */
  publish(event: BlockEvent): void {
    this.#publisher.publish(event)
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
    this.#heartbeat.tick()
    this.#heartbeat.close()
    this.#delay.close()
    this.#prometheus.close()
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
