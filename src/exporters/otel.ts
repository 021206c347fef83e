/**
 * OpenTelemetry export, through `@opentelemetry/api` only (the application owns the SDK):
 *
 * - every BlockEvent becomes a span `eventloop.block`, from the stall's measured start to its
 *   end, parented to the span of the request (or task) that blocked — the HTTP server span of
 *   instrumentation-http — so it shows inside the slow request; a block outside any request is a
 *   root span;
 * - the server span gets the request's synchronous time and the blocked time it caused;
 * - when a meter provider is registered: `looplens.eventloop.block.duration`,
 *   `looplens.request.sync_duration`, `looplens.eventloop.delay` (histograms, seconds) and
 *   `nodejs.eventloop.utilization`. Never `http.server.request.duration`: instrumentation-http
 *   records it, and the Prometheus export keeps its own.
 *
 * When is it on? `openTelemetry: 'auto'` (the default) looks for a registered tracer provider
 * at construction and, if there is none yet, once more at first use (the first request or task):
 * an SDK started after `createLooplens()` but before the server serves is found. `true` captures
 * spans whatever the SDK does (for an SDK started later still); `false` switches everything off.
 */
import { fileURLToPath } from 'node:url'
import type { Attributes, Histogram, Meter, Span, Tracer } from '@opentelemetry/api'
import type { LensContext } from '../context/context.js'
import type { DelayCounts } from '../monitor/delay-monitor.js'
import { UtilizationWindow } from '../monitor/utilization.js'
import {
  meterProviderRegistered,
  type OpenTelemetryApi,
  tracerProviderRegistered,
} from '../otel/api.js'
import { installSpanReader, replaceSpanReader, type SpanReader } from '../otel/capture.js'
import type { BlockEvent, StackFrame } from '../types.js'
import type { Warnings } from '../util/warnings.js'
import { BLOCK_DURATION_BUCKETS, DELAY_BUCKETS, SYNC_DURATION_BUCKETS } from './prometheus.js'

/** Instrumentation scope of every span and metric of looplens. */
export const OTEL_SCOPE = 'looplens'
export const BLOCK_SPAN_NAME = 'eventloop.block'

export const OTEL_METRIC_NAMES = {
  blockDuration: 'looplens.eventloop.block.duration',
  syncDuration: 'looplens.request.sync_duration',
  delay: 'looplens.eventloop.delay',
  utilization: 'nodejs.eventloop.utilization',
} as const

/** Attributes looplens sets (semantic-convention names where one exists). */
export const OTEL_ATTRIBUTES = {
  method: 'http.request.method',
  route: 'http.route',
  task: 'looplens.task',
  functionName: 'code.function.name',
  filePath: 'code.file.path',
  lineNumber: 'code.line.number',
  columnNumber: 'code.column.number',
  stacktrace: 'code.stacktrace',
  blockDurationMs: 'looplens.block.duration_ms',
  blockKind: 'looplens.block.kind',
  stackMissing: 'looplens.block.stack_missing',
  hang: 'looplens.block.hang',
  requestSyncMs: 'looplens.request.sync_duration_ms',
  requestBlockedMs: 'looplens.request.blocked_ms',
} as const

/**
 * instrumentation-http puts the server span into the context's RPC metadata (a key of
 * @opentelemetry/core, made with `createContextKey`, i.e. `Symbol.for` of this description).
 * Read it rather than the active span: under instrumentation-express the active span in a
 * middleware is that middleware's own layer span, which ends as soon as it calls `next()`.
 */
const RPC_METADATA_KEY = Symbol.for('OpenTelemetry SDK Context Key RPC_METADATA')

export interface OpenTelemetryExporterOptions {
  api: OpenTelemetryApi
  mode: 'auto' | true
  /** The loop monitor's cumulative delay counts (shared with the Prometheus export). */
  drainDelay: () => DelayCounts
  /** Measure now a stall that may just have ended, so a request's blocked time includes it. */
  flushStall: () => void
  warnings: Warnings
}

interface OtelMetrics {
  blockDuration: Histogram
  syncDuration: Histogram
}

/** V8's rendering of a frame: `    at fn (file:line:column)`. */
function renderFrame(frame: StackFrame): string {
  const location = `${frame.file || '<anonymous>'}:${frame.line}:${frame.column}`
  return frame.functionName === '' || frame.functionName === '<anonymous>'
    ? `    at ${location}`
    : `    at ${frame.functionName} (${location})`
}

/** `code.file.path` is a path: turn V8's `file://` URLs (ESM) into one. */
function filePathOf(file: string): string {
  if (!file.startsWith('file://')) return file
  try {
    return fileURLToPath(file)
  } catch {
    return file
  }
}

export class OpenTelemetryExporter {
  readonly #api: OpenTelemetryApi
  readonly #mode: 'auto' | true
  readonly #tracer: Tracer
  readonly #drainDelay: () => DelayCounts
  readonly #flushStall: () => void
  readonly #warnings: Warnings
  /** Whether spans are captured and block spans made: undecided until first use in 'auto'. */
  #tracing: 'pending' | 'on' | 'off'
  #metrics: OtelMetrics | undefined
  #metricsResolved = false
  readonly #readSpan: SpanReader
  /** The reader this instance installed (the pending one until first use), if any. */
  #installed: SpanReader | undefined
  #pending = false
  /** Delay counts already recorded into the OpenTelemetry histogram. */
  #delayRecorded: { cumulative: number[]; count: number } | undefined
  /** Its own window: an OTel collection must not shorten a Prometheus scrape's. */
  readonly #utilizationWindow = new UtilizationWindow()
  #closed = false

  constructor(options: OpenTelemetryExporterOptions) {
    const api = options.api
    this.#api = api
    this.#mode = options.mode
    this.#drainDelay = options.drainDelay
    this.#flushStall = options.flushStall
    this.#warnings = options.warnings
    // A ProxyTracer: it starts delegating by itself once an SDK registers a provider.
    this.#tracer = api.trace.getTracer(OTEL_SCOPE)

    const { context, trace } = api
    this.#readSpan = function readSpan(): unknown {
      const active = context.active()
      const rpc = active.getValue(RPC_METADATA_KEY) as { span?: unknown } | undefined
      return rpc?.span ?? trace.getSpan(active)
    }

    const registered = tracerProviderRegistered(api)
    this.#tracing = registered || this.#mode === true ? 'on' : 'pending'
    if (meterProviderRegistered(api)) this.#resolveMetrics()
    if (this.#tracing === 'on' && this.#metricsResolved) {
      this.#installed = this.#readSpan
    } else {
      // Decide at first use: the first context created (request or task). Every later one pays
      // nothing for the decision.
      this.#pending = true
      this.#installed = () => this.#firstUse()
    }
    installSpanReader(this.#installed)
  }

  #firstUse(): unknown {
    if (this.#pending && !this.#closed) {
      this.#pending = false
      if (!this.#metricsResolved) this.#resolveMetrics()
      if (this.#tracing === 'pending') {
        this.#tracing = tracerProviderRegistered(this.#api) ? 'on' : 'off'
      }
      const next = this.#tracing === 'on' ? this.#readSpan : undefined
      replaceSpanReader(this.#installed!, next)
      this.#installed = next
    }
    return this.#tracing === 'on' ? this.#readSpan() : undefined
  }

  #resolveMetrics(): void {
    if (this.#closed) return
    this.#metricsResolved = meterProviderRegistered(this.#api)
    if (!this.#metricsResolved) return
    try {
      this.#metrics = this.#createMetrics(this.#api.metrics.getMeter(OTEL_SCOPE))
    } catch (error) {
      this.#warnings.once(
        'LOOPLENS_OTEL_METRICS_FAILED',
        'creating OpenTelemetry metrics failed',
        error,
      )
    }
  }

  #createMetrics(meter: Meter): OtelMetrics {
    const blockDuration = meter.createHistogram(OTEL_METRIC_NAMES.blockDuration, {
      unit: 's',
      description:
        'Stalls of the event loop at least blockThresholdMs long, by the route or task that was running.',
      advice: { explicitBucketBoundaries: BLOCK_DURATION_BUCKETS },
    })
    const syncDuration = meter.createHistogram(OTEL_METRIC_NAMES.syncDuration, {
      unit: 's',
      description:
        'Synchronous time of a request: how long its middleware and handler chain held the event loop before the first await.',
      advice: { explicitBucketBoundaries: SYNC_DURATION_BUCKETS },
    })
    const delay = meter.createHistogram(OTEL_METRIC_NAMES.delay, {
      unit: 's',
      description:
        'Event-loop delay sampled by perf_hooks.monitorEventLoopDelay, resolution subtracted.',
      advice: { explicitBucketBoundaries: DELAY_BUCKETS },
    })
    const utilization = meter.createObservableGauge(OTEL_METRIC_NAMES.utilization, {
      unit: '1',
      description: 'Event-loop utilization (0..1) over the window since the previous collection.',
    })
    utilization.addCallback((result) => {
      if (this.#closed) return
      // Collection time is when the delay histogram catches up too: the SDK runs observable
      // callbacks before it reads synchronous instruments, so these records land in this export.
      this.#recordDelay(delay)
      result.observe(this.#utilization())
    })
    return { blockDuration, syncDuration }
  }

  #utilization(): number {
    return this.#utilizationWindow.next()
  }

  /**
   * Move the delay samples counted since the last collection into the histogram. The loop
   * monitor keeps counts per bucket, not samples: each sample is recorded at the middle of its
   * (fine) bucket, so bucket counts are exact and the sum is within half a fine bucket per sample.
   */
  #recordDelay(histogram: Histogram): void {
    const counts = this.#drainDelay()
    const previous = this.#delayRecorded ?? {
      cumulative: counts.bounds.map(() => 0),
      count: 0,
    }
    let below = 0
    let lower = 0
    for (let i = 0; i < counts.bounds.length; i++) {
      const upper = counts.bounds[i]!
      const cumulative = counts.cumulative[i]! - previous.cumulative[i]!
      const inBucket = cumulative - below
      const value = Math.min((lower + upper) / 2, counts.maxSeconds)
      for (let n = 0; n < inBucket; n++) histogram.record(value)
      below = cumulative
      lower = upper
    }
    const above = counts.count - previous.count - below
    for (let n = 0; n < above; n++) histogram.record(counts.maxSeconds)
    this.#delayRecorded = { cumulative: [...counts.cumulative], count: counts.count }
  }

  /** Subscribe to the block pipeline, before the other exporters (see the ids set below). */
  readonly recordBlock = (event: BlockEvent): void => {
    if (this.#closed) return
    const context = event.context
    const metrics = this.#metrics
    if (metrics !== undefined) {
      const attributes: Attributes = {}
      if (context.method !== '') attributes[OTEL_ATTRIBUTES.method] = context.method
      if (context.route !== '') attributes[OTEL_ATTRIBUTES.route] = context.route
      if (context.task !== '') attributes[OTEL_ATTRIBUTES.task] = context.task
      metrics.blockDuration.record(event.durationMs / 1000, attributes)
    }
    if (this.#tracing === 'off' || !tracerProviderRegistered(this.#api)) return
    this.#blockSpan(event)
  }

  #blockSpan(event: BlockEvent): void {
    const api = this.#api
    const context = event.context
    const attributes: Attributes = {
      [OTEL_ATTRIBUTES.blockDurationMs]: event.durationMs,
      [OTEL_ATTRIBUTES.blockKind]: event.kind,
    }
    if (context.method !== '') attributes[OTEL_ATTRIBUTES.method] = context.method
    if (context.route !== '') attributes[OTEL_ATTRIBUTES.route] = context.route
    if (context.task !== '') attributes[OTEL_ATTRIBUTES.task] = context.task
    const culprit = event.culprit
    if (culprit !== undefined) {
      attributes[OTEL_ATTRIBUTES.functionName] = culprit.functionName
      if (culprit.file !== '') attributes[OTEL_ATTRIBUTES.filePath] = filePathOf(culprit.file)
      if (culprit.line > 0) attributes[OTEL_ATTRIBUTES.lineNumber] = culprit.line
      if (culprit.column > 0) attributes[OTEL_ATTRIBUTES.columnNumber] = culprit.column
    }
    if (event.frames.length > 0) {
      attributes[OTEL_ATTRIBUTES.stacktrace] = event.frames.map(renderFrame).join('\n')
    }
    if (event.stackMissing !== undefined) {
      attributes[OTEL_ATTRIBUTES.stackMissing] = event.stackMissing
    }
    if (event.hang) attributes[OTEL_ATTRIBUTES.hang] = true

    // The parent is rebuilt from the ids the detector copied from the context's span (only
    // sampled spans give ids). ROOT_CONTEXT, not the active context: the heartbeat that
    // measured the stall may run inside any request's context.
    let parent = api.ROOT_CONTEXT
    const root = context.traceId === undefined || context.spanId === undefined
    if (!root) {
      parent = api.trace.setSpanContext(api.ROOT_CONTEXT, {
        traceId: context.traceId!,
        spanId: context.spanId!,
        traceFlags: api.TraceFlags.SAMPLED,
        isRemote: false,
      })
    }
    const span: Span = this.#tracer.startSpan(
      BLOCK_SPAN_NAME,
      {
        kind: api.SpanKind.INTERNAL,
        startTime: event.startTime,
        attributes,
        root,
      },
      parent,
    )
    span.end(event.startTime + event.durationMs)
    if (root) {
      // A block outside any request: its own span is the trace to link to (exemplar, logs).
      const ids = span.spanContext()
      if (api.isSpanContextValid(ids) && (ids.traceFlags & api.TraceFlags.SAMPLED) !== 0) {
        event.context = { ...context, traceId: ids.traceId, spanId: ids.spanId }
      }
    }
  }

  /**
   * The request ended: record its sync time, and put it and the blocked time on the server
   * span. Runs from the response's `close`, before instrumentation-http ends the span there
   * (the middleware's listener is prepended).
   */
  requestEnded(context: LensContext, method: string, route: string): void {
    const metrics = this.#metrics
    if (metrics !== undefined) {
      const attributes: Attributes = { [OTEL_ATTRIBUTES.method]: method }
      if (route !== '') attributes[OTEL_ATTRIBUTES.route] = route
      metrics.syncDuration.record(context.syncMs / 1000, attributes)
    }
    const span = context.span as Span | undefined
    if (span === undefined || typeof span.setAttribute !== 'function') return
    // A stall that ended just before the response (a synchronous handler) is measured at the
    // next heartbeat, after the span ends: measure it now so blocked_ms includes it.
    this.#flushStall()
    span.setAttribute(OTEL_ATTRIBUTES.requestSyncMs, context.syncMs)
    span.setAttribute(OTEL_ATTRIBUTES.requestBlockedMs, context.blockedMs)
  }

  close(): void {
    if (this.#closed) return
    this.#closed = true
    if (this.#installed !== undefined) replaceSpanReader(this.#installed, undefined)
    this.#installed = undefined
  }
}
