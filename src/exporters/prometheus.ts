/**
 * Prometheus export through prom-client (a peer dependency: the user owns the registry).
 *
 * Names and labels are the product's contract (DESIGN.md "Names"); dashboards depend on them.
 */
import { Histogram, Registry } from 'prom-client'
import type { DelayCounts } from '../monitor/delay-monitor.js'
import { type TraceIds, traceIdsOf } from '../otel/capture.js'
import type { BlockContext, BlockEvent } from '../types.js'
import { ActiveRequestsGauge, Collector, type Sample, SeriesHistogram } from './series.js'

/** OpenTelemetry's advised buckets for http.server.request.duration (5 ms … 10 s). */
export const HTTP_DURATION_BUCKETS = [
  0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10,
]
/** Block durations, 10 ms … 30 s. */
export const BLOCK_DURATION_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]
/** Event-loop delay, 1 ms … 10 s. */
export const DELAY_BUCKETS = [
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
]
/** Synchronous time of a request, 0.1 ms … 1 s. */
export const SYNC_DURATION_BUCKETS = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
]

export const METRIC_NAMES = {
  requestDuration: 'http_server_request_duration_seconds',
  activeRequests: 'http_server_active_requests',
  syncDuration: 'looplens_request_sync_duration_seconds',
  blockDuration: 'looplens_eventloop_block_duration_seconds',
  delay: 'looplens_eventloop_delay_seconds',
  utilization: 'looplens_eventloop_utilization_ratio',
} as const

type Releasable = object

/**
 * Metrics shared per registry: two instances on one registry (or one instance created twice in
 * a test run) reuse the same metric objects instead of throwing "already registered", and the
 * last `close()` removes them.
 *
 * The registry is the truth, not this bookkeeping: `registry.clear()` (or `removeSingleMetric`)
 * removes our metrics behind our back, a common idiom between tests. An entry whose metric is no
 * longer the one registered under its name is stale: the next instance creates and registers a
 * fresh metric (as prom-client's own would start again after clear()), and the instances from
 * before go on recording into the removed one, which the user took out of the registry.
 */
const sharedMetrics = new WeakMap<Registry, Map<string, { metric: Releasable; users: number }>>()

export function acquire<T extends Releasable>(
  registry: Registry,
  name: string,
  create: () => T,
): T {
  let byName = sharedMetrics.get(registry)
  if (byName === undefined) {
    byName = new Map()
    sharedMetrics.set(registry, byName)
  }
  const entry = byName.get(name)
  const existing = registry.getSingleMetric(name)
  if (entry !== undefined && (existing as unknown) === entry.metric) {
    entry.users++
    return entry.metric as T
  }
  // Stale (cleared from the registry): forget it; release() of its users then finds nothing.
  if (entry !== undefined) byName.delete(name)
  if (existing !== undefined) {
    // Registered by someone else (another copy of looplens, or the user): reuse, never remove.
    byName.set(name, { metric: existing as unknown as T, users: Number.POSITIVE_INFINITY })
    return existing as unknown as T
  }
  const metric = create()
  byName.set(name, { metric, users: 1 })
  return metric
}

/**
 * One user of `metric` is done with it. By identity, not by name alone: an instance from before a
 * `registry.clear()` must not take away the metric a later instance registered under that name.
 */
export function release(registry: Registry, name: string, metric: Releasable): void {
  const byName = sharedMetrics.get(registry)
  const entry = byName?.get(name)
  if (entry === undefined || entry.metric !== metric) return
  entry.users--
  if (entry.users <= 0) {
    byName!.delete(name)
    if ((registry.getSingleMetric(name) as unknown) === metric) registry.removeSingleMetric(name)
  }
}

/**
 * The metrics one instance acquired, released together. A registry that throws while they are
 * acquired (a `registerMetric` that refuses, a foreign metric of our name) leaves nothing behind:
 * what was acquired before is released, and the error names `options.registry` and keeps the
 * registry's own error as its cause.
 */
export class MetricLeases {
  readonly #registry: Registry
  readonly #held: { name: string; metric: Releasable }[] = []

  constructor(registry: Registry) {
    this.#registry = registry
  }

  /**
   * {@link acquire}, checked: when `type` is given, the metric found must be one of ours.
   * @throws TypeError naming options.registry (cause: the registry's error)
   */
  take<T extends Releasable>(
    name: string,
    create: () => T,
    type?: abstract new (...args: never[]) => T,
  ): T {
    let metric: T
    try {
      metric = acquire(this.#registry, name, create)
    } catch (error) {
      this.releaseAll()
      throw new TypeError(
        `options.registry failed to register the metric ${name}: ${messageOf(error)}`,
        { cause: error },
      )
    }
    this.#held.push({ name, metric })
    if (type !== undefined && !(metric instanceof type)) {
      this.releaseAll()
      throw new TypeError(
        `options.registry already has a metric named ${name} that looplens did not create: remove it, or give looplens its own registry`,
      )
    }
    return metric
  }

  /** Release every metric taken (idempotent). */
  releaseAll(): void {
    for (const { name, metric } of this.#held.splice(0)) release(this.#registry, name, metric)
  }
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}

/**
 * A metric read from the loop monitor at scrape time, in prom-client's collector shape (`get()`),
 * so it prints in both the Prometheus and the OpenMetrics format. Several instances of looplens
 * on one registry share it; the most recent open one is the source.
 */
abstract class LoopCollector<T> extends Collector {
  readonly #sources: (() => T)[] = []

  addSource(read: () => T): void {
    this.#sources.push(read)
  }

  removeSource(read: () => T): void {
    const index = this.#sources.indexOf(read)
    if (index !== -1) this.#sources.splice(index, 1)
  }

  protected abstract samples(value: T | undefined): Sample[]

  async get() {
    const read = this.#sources.at(-1)
    return this.result(this.samples(read?.()))
  }

  reset(): void {
    // Cumulative by contract: a registry-wide resetMetrics() leaves loop metrics alone.
  }
}

/** Event-loop delay as a cumulative histogram, from drained counts rather than per-sample observe. */
class DelayHistogram extends LoopCollector<DelayCounts> {
  readonly type = 'histogram'
  readonly #bounds: readonly number[]

  constructor(registry: Registry, bounds: readonly number[]) {
    super(
      registry,
      METRIC_NAMES.delay,
      'Event-loop delay sampled by perf_hooks.monitorEventLoopDelay, resolution subtracted.',
    )
    this.#bounds = bounds
  }

  protected samples(counts: DelayCounts | undefined): Sample[] {
    const values: Sample[] = []
    const bucket = `${this.name}_bucket`
    for (const bound of this.#bounds) {
      const index = counts === undefined ? -1 : counts.bounds.indexOf(bound)
      const value = index === -1 ? 0 : counts!.cumulative[index]!
      values.push({ labels: { le: bound }, value, metricName: bucket })
    }
    const count = counts?.count ?? 0
    values.push({ labels: { le: '+Inf' }, value: count, metricName: bucket })
    values.push({ labels: {}, value: counts?.sumSeconds ?? 0, metricName: `${this.name}_sum` })
    values.push({ labels: {}, value: count, metricName: `${this.name}_count` })
    return values
  }
}

/** Utilization over the window since the previous scrape: set at scrape time, never on a timer. */
class UtilizationGauge extends LoopCollector<number> {
  readonly type = 'gauge'

  constructor(registry: Registry) {
    super(
      registry,
      METRIC_NAMES.utilization,
      'Event-loop utilization (0..1) over the window since the previous scrape.',
    )
  }

  protected samples(value: number | undefined): Sample[] {
    return [{ labels: {}, value: value ?? 0, metricName: this.name }]
  }
}

type ExemplarLabels = { trace_id: string; span_id: string }
type ExemplarHistogram = Histogram<string> & {
  enableExemplars?: boolean
  observeWithExemplar(data: {
    labels: Record<string, string | number>
    value: number
    exemplarLabels: ExemplarLabels
  }): void
  observeWithoutExemplar(labels: Record<string, string | number>, value: number): void
}

/**
 * Create a histogram that can carry `trace_id` exemplars. prom-client accepts exemplars only on
 * a metric created while its registry's content type is OpenMetrics: switch it for the (synchronous)
 * creation and back, so a concurrent scrape never sees the switch. Exemplars are printed only in
 * OpenMetrics scrapes; the Prometheus text format of the same histogram is unchanged.
 */
function withExemplars<T extends string>(
  registry: Registry,
  create: (enableExemplars: boolean) => Histogram<T>,
): Histogram<T> {
  if (typeof registry.setContentType !== 'function') return create(false)
  const previous = registry.contentType
  registry.setContentType(Registry.OPENMETRICS_CONTENT_TYPE as never)
  try {
    const histogram = create(true) as unknown as ExemplarHistogram
    // Keep the plain `observe(labels, value)` signature for every other caller: prom-client
    // swaps `observe` for the object form when exemplars are on. (Do not use startTimer() on
    // these: it calls the object form.)
    histogram.observe = histogram.observeWithoutExemplar as Histogram<string>['observe']
    return histogram as unknown as Histogram<T>
  } finally {
    registry.setContentType(previous as never)
  }
}

/**
 * The observe function of a histogram, picked once: with a `trace_id` exemplar when the
 * histogram takes exemplars and `idsOf(source)` finds sampled ids, the plain observe otherwise.
 */
function exemplarObserver<T extends string, S>(
  histogram: Histogram<T>,
  idsOf: (source: S) => TraceIds | undefined,
): (labels: Partial<Record<T, string | number>>, value: number, source: S) => void {
  const typed = histogram as unknown as ExemplarHistogram
  if (typed.enableExemplars !== true) {
    return (labels, value) => histogram.observe(labels, value)
  }
  return (labels, value, source) => {
    const ids = idsOf(source)
    if (ids === undefined) {
      typed.observeWithoutExemplar(labels as Record<string, string>, value)
    } else {
      typed.observeWithExemplar({
        labels: labels as Record<string, string>,
        value,
        exemplarLabels: { trace_id: ids.traceId, span_id: ids.spanId },
      })
    }
  }
}

/** The ids a block event carries (set from the request's span, or its own block span). */
function blockIdsOf(context: BlockContext): TraceIds | undefined {
  const { traceId, spanId } = context
  return traceId === undefined || spanId === undefined ? undefined : { traceId, spanId }
}

function withOptionalExemplars<T extends string>(
  registry: Registry,
  exemplars: boolean,
  create: (enableExemplars: boolean) => Histogram<T>,
): Histogram<T> {
  return exemplars ? withExemplars(registry, create) : create(false)
}

export interface PrometheusSources {
  drainDelay: () => DelayCounts
  utilization: () => number
}

/** Recording functions used by the middleware and the block pipeline. */
export class PrometheusExporter {
  readonly registry: Registry
  readonly requestDuration: SeriesHistogram
  readonly activeRequests: ActiveRequestsGauge
  readonly syncDuration: SeriesHistogram
  readonly blockDuration: Histogram<'http_request_method' | 'http_route' | 'task'>
  /** Decided at construction: exemplars on the request histogram (tracing possible). */
  readonly #requestExemplars: boolean
  readonly #observeBlock: (
    labels: Partial<Record<'http_request_method' | 'http_route' | 'task', string | number>>,
    seconds: number,
    context: BlockContext,
  ) => void
  readonly #delay: DelayHistogram
  readonly #utilization: UtilizationGauge
  readonly #sources: PrometheusSources
  readonly #leases: MetricLeases
  #closed = false

  /**
   * @param exemplars create the request and block histograms able to carry exemplars.
   * @throws TypeError naming options.registry when the registry refuses a metric (nothing of
   * ours stays registered then).
   */
  constructor(registry: Registry, sources: PrometheusSources, exemplars = false) {
    this.registry = registry
    this.#leases = new MetricLeases(registry)
    const leases = this.#leases
    this.requestDuration = leases.take(
      METRIC_NAMES.requestDuration,
      () =>
        new SeriesHistogram(registry, {
          name: METRIC_NAMES.requestDuration,
          help: 'Duration of HTTP server requests (http_response_status_code="" when the response did not complete: the client aborted).',
          labelNames: ['http_request_method', 'http_route', 'http_response_status_code'],
          buckets: HTTP_DURATION_BUCKETS,
        }),
      SeriesHistogram,
    )
    this.#requestExemplars = exemplars
    this.activeRequests = leases.take(
      METRIC_NAMES.activeRequests,
      () =>
        new ActiveRequestsGauge(
          registry,
          METRIC_NAMES.activeRequests,
          'Number of HTTP server requests in flight.',
        ),
      ActiveRequestsGauge,
    )
    this.syncDuration = leases.take(
      METRIC_NAMES.syncDuration,
      () =>
        new SeriesHistogram(registry, {
          name: METRIC_NAMES.syncDuration,
          help: 'Synchronous time of a request: how long its middleware and handler chain held the event loop before the first await.',
          labelNames: ['http_request_method', 'http_route'],
          buckets: SYNC_DURATION_BUCKETS,
        }),
      SeriesHistogram,
    )
    this.blockDuration = leases.take(METRIC_NAMES.blockDuration, () =>
      withOptionalExemplars(
        registry,
        exemplars,
        (enableExemplars) =>
          new Histogram({
            enableExemplars,
            name: METRIC_NAMES.blockDuration,
            help: 'Stalls of the event loop at least blockThresholdMs long, by the route or task that was running (all labels empty: outside any request, or saturation).',
            labelNames: ['http_request_method', 'http_route', 'task'],
            buckets: BLOCK_DURATION_BUCKETS,
            registers: [registry],
          }),
      ),
    )
    this.#observeBlock = exemplarObserver(this.blockDuration, blockIdsOf)
    this.#sources = sources
    this.#delay = leases.take(METRIC_NAMES.delay, () => new DelayHistogram(registry, DELAY_BUCKETS))
    this.#utilization = leases.take(METRIC_NAMES.utilization, () => new UtilizationGauge(registry))
    // Sources last: nothing below can throw, so a failed construction added none.
    this.#delay.addSource?.(sources.drainDelay)
    this.#utilization.addSource?.(sources.utilization)
  }

  /**
   * One request ended: its duration (with a `trace_id` exemplar of its span when exemplars are
   * on and the span is sampled) and its sync time. `statusCode` is '' when the response did not
   * complete.
   */
  recordRequest(
    method: string,
    route: string,
    statusCode: number | '',
    seconds: number,
    syncSeconds: number,
    span: unknown,
  ): void {
    const series = this.requestDuration.series3(method, route, statusCode)
    const ids = this.#requestExemplars && span !== undefined ? traceIdsOf(span) : undefined
    if (ids === undefined) series.observe(seconds)
    else series.observeWithExemplar(seconds, ids.traceId, ids.spanId)
    this.syncDuration.series2(method, route).observe(syncSeconds)
  }

  /** Subscribe to the block pipeline. */
  readonly recordBlock = (event: BlockEvent): void => {
    const { method, route, task } = event.context
    this.#observeBlock(
      { http_request_method: method, http_route: route, task },
      event.durationMs / 1000,
      event.context,
    )
  }

  close(): void {
    if (this.#closed) return
    this.#closed = true
    this.#delay.removeSource?.(this.#sources.drainDelay)
    this.#utilization.removeSource?.(this.#sources.utilization)
    this.#leases.releaseAll()
  }
}
