/**
 * Event-loop delay and utilization, sampled by Node itself (no JS on the hot path).
 *
 * `monitorEventLoopDelay` is a libuv timer that records how late it fires into an HDR histogram.
 * We read it as cumulative counts (never reset, by a scrape or by anyone: see `drain()`), so a
 * block that straddles a read is simply counted by the next one.
 */
import { type IntervalHistogram, monitorEventLoopDelay } from 'node:perf_hooks'

/** Cumulative delay counts in seconds, by upper bound, like a Prometheus histogram. */
export interface DelayCounts {
  /** Upper bounds in seconds, ascending. */
  readonly bounds: readonly number[]
  /** Count of samples ≤ bounds[i] (cumulative), same length as bounds. */
  readonly cumulative: number[]
  count: number
  sumSeconds: number
  maxSeconds: number
  minSeconds: number
}

/** Extra bounds (seconds) for the since-start quantiles of `snapshot()`. */
const FINE_BOUNDS = [
  0.00005, 0.0001, 0.00025, 0.0005, 0.00075, 0.0015, 0.002, 0.003, 0.004, 0.0075, 0.015, 0.02, 0.03,
  0.04, 0.075, 0.15, 0.2, 0.3, 0.4, 0.75, 1.5, 2, 3, 4, 7.5, 15, 20, 30, 60,
]

export class DelayMonitor {
  readonly #histogram: IntervalHistogram
  readonly #resolutionNs: number
  readonly #counts: DelayCounts
  #closed = false

  /**
   * @param bounds upper bounds (seconds) to count: the exported buckets; finer ones are added so
   *   that `quantileMs()` is precise without a second native histogram (which cannot be merged).
   */
  constructor(resolutionMs: number, bounds: readonly number[]) {
    bounds = [...new Set([...bounds, ...FINE_BOUNDS])].sort((a, b) => a - b)
    this.#resolutionNs = resolutionMs * 1e6
    this.#histogram = monitorEventLoopDelay({ resolution: resolutionMs })
    this.#histogram.enable()
    this.#counts = {
      bounds,
      cumulative: bounds.map(() => 0),
      count: 0,
      sumSeconds: 0,
      maxSeconds: 0,
      minSeconds: Number.POSITIVE_INFINITY,
    }
  }

  /**
   * The cumulative counts of every sample since start, read from the native histogram.
   *
   * The native histogram is never reset: its reset also forgets when the monitor's timer last
   * fired, so the first delay after a reset is not recorded at all. A drain right after a stall —
   * the timeline's or a scrape's timer running before the monitor's own in the loop turn that
   * ends the stall — lost the stall itself: a 5 s stall read as 4 ms, and the histogram never
   * counted it. Reading the whole histogram costs the same as reading a window of it (a binary
   * search on ranks per bound).
   */
  drain(): DelayCounts {
    const histogram = this.#histogram
    const counts = this.#counts
    const samples = histogram.count
    if (this.#closed || samples === counts.count) return counts
    const resolution = this.#resolutionNs
    const maxNs = histogram.max
    const rank = (k: number): number => histogram.percentile((100 * k) / samples)
    for (let i = 0; i < counts.bounds.length; i++) {
      const limitNs = counts.bounds[i]! * 1e9 + resolution
      let below: number
      if (maxNs <= limitNs) {
        below = samples
      } else {
        // Largest k with value(k) ≤ limit, by binary search on the rank: exact to the HDR
        // histogram's precision (3 significant digits), O(log n) native calls per bound.
        let lo = 0
        let hi = samples
        while (lo < hi) {
          const mid = Math.ceil((lo + hi) / 2)
          if (rank(mid) <= limitNs) lo = mid
          else hi = mid - 1
        }
        below = lo
      }
      counts.cumulative[i] = below
    }
    counts.count = samples
    counts.sumSeconds = Math.max(0, (histogram.mean - resolution) * samples) / 1e9
    counts.maxSeconds = Math.max(0, maxNs - resolution) / 1e9
    counts.minSeconds = Math.max(0, histogram.min - resolution) / 1e9
    return counts
  }

  /**
   * Delay in ms at a quantile (0…1) over everything drained so far, interpolated within the
   * bucket that holds it (as Prometheus' histogram_quantile does).
   */
  quantileMs(q: number): number {
    const counts = this.drain()
    if (counts.count === 0) return 0
    const target = q * counts.count
    let previousBound = 0
    let previousCount = 0
    for (let i = 0; i < counts.bounds.length; i++) {
      const bound = counts.bounds[i]!
      const cumulative = counts.cumulative[i]!
      if (cumulative >= target) {
        const inBucket = cumulative - previousCount
        const fraction = inBucket === 0 ? 1 : (target - previousCount) / inBucket
        const value = previousBound + (bound - previousBound) * fraction
        return Math.min(value, counts.maxSeconds) * 1000
      }
      previousBound = bound
      previousCount = cumulative
    }
    return counts.maxSeconds * 1000
  }

  close(): void {
    if (this.#closed) return
    this.drain()
    this.#closed = true
    this.#histogram.disable()
  }
}
