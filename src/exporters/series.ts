/**
 * The per-request metrics, recorded without prom-client on the request path.
 *
 * prom-client's `observe(labels, value)` builds, validates and hashes a label object on every
 * call; at two histograms and a gauge per request that was the largest part of looplens's
 * overhead (bench/: ~2.5% of the CPU of a hello-world request). Here a request finds its series
 * through nested Maps keyed by the label values themselves (interned route strings, small
 * numbers), adds to plain counters, and prom-client sees the result only at scrape time, through
 * its collector shape (`get()` / `getForPromString()`), in both text formats.
 */
import type { Registry } from 'prom-client'

interface Exemplar {
  labelSet: { trace_id: string; span_id: string }
  value: number
  /** Seconds since the epoch, as OpenMetrics wants it. */
  timestamp: number
}

/** One label combination of a histogram. */
export class HistogramSeries {
  readonly labels: Readonly<Record<string, string | number>>
  /** Non-cumulative counts per bucket; the last one is +Inf. */
  readonly counts: number[]
  sum = 0
  count = 0
  /** Largest observation (the report's "max"). */
  max = 0
  /** The last exemplar per bucket, when the histogram takes exemplars. */
  exemplars: (Exemplar | undefined)[] | undefined
  readonly #bounds: readonly number[]

  constructor(labels: Record<string, string | number>, bounds: readonly number[]) {
    this.labels = labels
    this.#bounds = bounds
    this.counts = new Array<number>(bounds.length + 1).fill(0)
  }

  #bucket(value: number): number {
    const bounds = this.#bounds
    let index = 0
    while (index < bounds.length && value > bounds[index]!) index++
    return index
  }

  observe(value: number): void {
    this.counts[this.#bucket(value)]!++
    this.sum += value
    this.count++
    if (value > this.max) this.max = value
  }

  /** Observe with a `trace_id` exemplar on the bucket it lands in. */
  observeWithExemplar(value: number, traceId: string, spanId: string): void {
    const bucket = this.#bucket(value)
    this.counts[bucket]!++
    this.sum += value
    this.count++
    if (value > this.max) this.max = value
    this.exemplars ??= new Array<Exemplar | undefined>(this.counts.length).fill(undefined)
    this.exemplars[bucket] = {
      labelSet: { trace_id: traceId, span_id: spanId },
      value,
      timestamp: Date.now() / 1000,
    }
  }
}

export type Sample = {
  labels: Record<string, string | number>
  sharedLabels?: Record<string, string | number>
  value: number
  metricName: string
  exemplar?: Exemplar | undefined
}

/**
 * The shape prom-client's registry reads a metric through (`name`, `help`, `type`, `get()`):
 * our metrics are collectors, registered on construction, printed in both text formats.
 */
export abstract class Collector {
  readonly name: string
  readonly help: string
  abstract readonly type: 'histogram' | 'gauge'
  readonly aggregator = 'sum'

  constructor(registry: Registry, name: string, help: string) {
    this.name = name
    this.help = help
    registry.registerMetric(this as never)
  }

  protected result(values: Sample[]) {
    return {
      name: this.name,
      help: this.help,
      type: this.type,
      values,
      aggregator: this.aggregator,
    }
  }

  abstract get(): Promise<ReturnType<Collector['result']>>

  abstract reset(): void
}

/**
 * A histogram whose series are found by their label values, in the order of `labelNames`.
 * Registered in the registry as a collector; several looplens instances on one registry share it.
 */
export class SeriesHistogram extends Collector {
  readonly type = 'histogram'
  readonly labelNames: readonly string[]
  readonly bounds: readonly number[]
  readonly #root = new Map<string | number, unknown>()
  readonly #all: HistogramSeries[] = []

  constructor(
    registry: Registry,
    config: {
      name: string
      help: string
      labelNames: readonly string[]
      buckets: readonly number[]
    },
  ) {
    super(registry, config.name, config.help)
    this.labelNames = config.labelNames
    this.bounds = config.buckets
  }

  #create(values: (string | number)[]): HistogramSeries {
    const labels: Record<string, string | number> = {}
    this.labelNames.forEach((name, index) => {
      labels[name] = values[index]!
    })
    const series = new HistogramSeries(labels, this.bounds)
    this.#all.push(series)
    return series
  }

  #level(
    parent: Map<string | number, unknown>,
    key: string | number,
  ): Map<string | number, unknown> {
    let level = parent.get(key) as Map<string | number, unknown> | undefined
    if (level === undefined) {
      level = new Map()
      parent.set(key, level)
    }
    return level
  }

  /** The series of two label values (created on first use). No allocation once it exists. */
  series2(a: string | number, b: string | number): HistogramSeries {
    const level = this.#level(this.#root, a)
    let found = level.get(b) as HistogramSeries | undefined
    if (found === undefined) {
      found = this.#create([a, b])
      level.set(b, found)
    }
    return found
  }

  /** The series of three label values (created on first use). No allocation once it exists. */
  series3(a: string | number, b: string | number, c: string | number): HistogramSeries {
    const level = this.#level(this.#level(this.#root, a), b)
    let found = level.get(c) as HistogramSeries | undefined
    if (found === undefined) {
      found = this.#create([a, b, c])
      level.set(c, found)
    }
    return found
  }

  /** Every series, in order of creation. */
  allSeries(): readonly HistogramSeries[] {
    return this.#all
  }

  #samples(split: boolean): Sample[] {
    const values: Sample[] = []
    const bucketName = `${this.name}_bucket`
    for (const series of this.#all) {
      let cumulative = 0
      const shared = series.labels
      const bucket = (le: number | string, index: number): void => {
        cumulative += series.counts[index]!
        const exemplar = series.exemplars?.[index]
        values.push(
          split
            ? {
                labels: { le },
                sharedLabels: shared,
                value: cumulative,
                metricName: bucketName,
                exemplar,
              }
            : { labels: { ...shared, le }, value: cumulative, metricName: bucketName, exemplar },
        )
      }
      for (let index = 0; index < this.bounds.length; index++) bucket(this.bounds[index]!, index)
      bucket('+Inf', this.bounds.length)
      values.push({ labels: { ...shared }, value: series.sum, metricName: `${this.name}_sum` })
      values.push({ labels: { ...shared }, value: series.count, metricName: `${this.name}_count` })
    }
    return values
  }

  /** prom-client's registry prints through this (le first, then the series' labels). */
  async getForPromString() {
    return this.result(this.#samples(true))
  }

  /** `registry.getMetricsAsJSON()` reads this (labels merged). */
  async get() {
    return this.result(this.#samples(false))
  }

  /** `registry.resetMetrics()`: back to zero, as prom-client's own histograms do. */
  reset(): void {
    this.#root.clear()
    this.#all.length = 0
  }
}

/** A gauge of requests in flight per method: plain counters, read at scrape time. */
export class ActiveRequestsGauge extends Collector {
  readonly type = 'gauge'
  readonly #byMethod = new Map<string, { value: number }>()

  /** The counter of one method (keep it: inc and dec are then plain additions). */
  counter(method: string): { value: number } {
    let counter = this.#byMethod.get(method)
    if (counter === undefined) {
      counter = { value: 0 }
      this.#byMethod.set(method, counter)
    }
    return counter
  }

  async get() {
    const values: Sample[] = []
    for (const [method, counter] of this.#byMethod) {
      values.push({
        labels: { http_request_method: method },
        value: counter.value,
        metricName: this.name,
      })
    }
    return this.result(values)
  }

  reset(): void {
    for (const counter of this.#byMethod.values()) counter.value = 0
  }
}
