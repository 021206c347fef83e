/**
 * The main thread's heartbeat: a short unref'd interval that
 *  1. writes "alive at" into a SharedArrayBuffer, which the watchdog worker reads to see a stall
 *     while it is still going on, and
 *  2. measures every stall once it is over, with no worker at all.
 *
 * How a stall is measured: between two beats, the loop was either waiting for I/O (libuv counts
 * that as idle time, `performance.nodeTiming.idleTime`) or busy. The busy part of a long gap is
 * the stall. This is exact whatever the beat interval: the gap alone would over-count by the idle
 * time before the stall began (up to one interval).
 */
import { performance } from 'node:perf_hooks'

export interface Stall {
  /** performance.now() at the start of the stall. */
  startPerf: number
  /** performance.now() at the end (when the heartbeat ran again). */
  endPerf: number
  /** Busy time of the loop over the stall, ms. */
  durationMs: number
}

/** Slot of the beat in the shared Float64 view (see watchdog/shared.ts). */
const BEAT_SLOT = 0

/** The heartbeat interval for a threshold: fine enough to see a stall early, never busy. */
export function heartbeatIntervalFor(blockThresholdMs: number): number {
  return Math.min(20, Math.max(5, Math.floor(blockThresholdMs / 4)))
}

export class Heartbeat {
  readonly intervalMs: number
  readonly #beat: Float64Array
  readonly #thresholdMs: number
  readonly #onStall: (stall: Stall) => void
  readonly #afterTick: ((nowPerf: number) => void) | undefined
  readonly #timer: NodeJS.Timeout
  #lastTick: number
  #lastIdle: number

  /**
   * @param beat shared memory the beat is written to (`[0]` = epoch ms of the last beat); every
   *   instance in the process writes the same slot, which the one watchdog worker reads.
   * @param afterTick called after every tick (after `onStall`, when there was a stall): whatever
   *   was kept to measure or attribute a stall up to `nowPerf` can be let go.
   */
  constructor(
    blockThresholdMs: number,
    onStall: (stall: Stall) => void,
    beat: Float64Array,
    afterTick?: (nowPerf: number) => void,
  ) {
    this.intervalMs = heartbeatIntervalFor(blockThresholdMs)
    this.#thresholdMs = blockThresholdMs
    this.#onStall = onStall
    this.#afterTick = afterTick
    this.#beat = beat
    this.#lastTick = performance.now()
    this.#lastIdle = performance.nodeTiming.idleTime
    this.#beat[BEAT_SLOT] = performance.timeOrigin + this.#lastTick
    this.#timer = setInterval(() => this.tick(), this.intervalMs)
    this.#timer.unref()
  }

  /** Runs every interval; also called once more at close so a stall in progress is not lost. */
  tick(): void {
    const now = performance.now()
    const idle = performance.nodeTiming.idleTime
    this.#beat[BEAT_SLOT] = performance.timeOrigin + now
    const gap = now - this.#lastTick
    const busy = gap - (idle - this.#lastIdle)
    this.#lastTick = now
    this.#lastIdle = idle
    try {
      if (gap >= this.#thresholdMs && busy >= this.#thresholdMs) {
        this.#onStall({ startPerf: now - busy, endPerf: now, durationMs: busy })
      }
    } finally {
      this.#afterTick?.(now)
    }
  }

  close(): void {
    clearInterval(this.#timer)
  }
}
