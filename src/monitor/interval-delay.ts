/**
 * Event-loop delay per interval of the zero-code timeline (the HTML report's delay chart): p99
 * and max of the delay samples recorded in the interval, and never less than what the interval's
 * own sampling timer measured.
 *
 * Why the floor: `monitorEventLoopDelay` records a sample when its timer fires, and a stalled
 * loop fires no timer. A stall's one sample lands when the loop comes back, and the timeline's
 * timer can run first in that loop turn: read then, an interval the loop spent stalled held no
 * sample of the stall and read as 0 ms at 100% utilization. The timeline's timer is a delay
 * sample of its own — it ran as late as the loop was stuck — so an interval's delay is at least
 * how late its sampling timer fired.
 */
import { performance } from 'node:perf_hooks'
import type { DelayCounts } from './delay-monitor.js'

/** What a window is measured from: the cumulative counts at its start. */
export interface DelayReading {
  cumulative: readonly number[]
  count: number
  maxSeconds: number
}

export interface WindowDelay {
  p99Ms: number
  maxMs: number
}

/** p99 and max of the delay samples recorded between two cumulative readings (0 when none). */
export function windowDelay(previous: DelayReading, now: Readonly<DelayCounts>): WindowDelay {
  const samples = now.count - previous.count
  if (samples <= 0) return { p99Ms: 0, maxMs: 0 }
  const target = 0.99 * samples
  let p99 = now.maxSeconds
  let max = now.maxSeconds
  let previousBound = 0
  let previousCount = 0
  let p99Found = false
  for (let i = 0; i < now.bounds.length; i++) {
    const bound = now.bounds[i]!
    const inWindow = now.cumulative[i]! - (previous.cumulative[i] ?? 0)
    if (!p99Found && inWindow >= target) {
      const inBucket = inWindow - previousCount
      const fraction = inBucket === 0 ? 1 : (target - previousCount) / inBucket
      p99 = previousBound + (bound - previousBound) * fraction
      p99Found = true
    }
    if (inWindow >= samples) {
      max = bound
      break
    }
    previousBound = bound
    previousCount = inWindow
  }
  // A new all-time maximum happened in this window: that one is exact.
  if (now.maxSeconds > previous.maxSeconds) max = now.maxSeconds
  max = Math.min(max, now.maxSeconds)
  return { p99Ms: Math.min(p99, max) * 1000, maxMs: max * 1000 }
}

/**
 * {@link windowDelay} with the interval's sampling timer as one more sample: `lateMs`, how late
 * it fired. The max is at least that. So is the p99 while the interval holds fewer than 100
 * samples (the p99 of fewer than 100 samples is their maximum) — a stalled loop records few.
 */
export function intervalDelay(
  previous: DelayReading,
  now: Readonly<DelayCounts>,
  lateMs: number,
): WindowDelay {
  const measured = windowDelay(previous, now)
  if (!(lateMs > 0)) return measured
  const samples = Math.max(0, now.count - previous.count) + 1
  return {
    p99Ms: samples < 100 ? Math.max(measured.p99Ms, lateMs) : measured.p99Ms,
    maxMs: Math.max(measured.maxMs, lateMs),
  }
}

/**
 * The timeline's delay, one interval after another: call {@link next} from the interval timer
 * (and once more at the end). Keeps the previous reading and when the timer should have fired.
 */
export class IntervalDelayWindow {
  readonly #intervalMs: number
  #previous: DelayReading
  #lastPerf: number

  constructor(initial: Readonly<DelayCounts>, intervalMs: number, nowPerf = performance.now()) {
    this.#intervalMs = intervalMs
    this.#previous = readingOf(initial)
    this.#lastPerf = nowPerf
  }

  /** The delay of the interval that ends now. */
  next(counts: Readonly<DelayCounts>, nowPerf = performance.now()): WindowDelay {
    // Node's setInterval schedules the next run an interval after the previous one ran: the
    // timer was due at the last run + interval, and ran `lateMs` after that.
    const lateMs = nowPerf - (this.#lastPerf + this.#intervalMs)
    const delay = intervalDelay(this.#previous, counts, lateMs)
    this.#previous = readingOf(counts)
    this.#lastPerf = nowPerf
    return delay
  }
}

function readingOf(counts: Readonly<DelayCounts>): DelayReading {
  return { cumulative: [...counts.cumulative], count: counts.count, maxSeconds: counts.maxSeconds }
}
