/**
 * The memory the main thread and the watchdog worker share, and what each slot means.
 * Float64 slots hold epoch milliseconds; Int32 slots are flags used with Atomics.
 */

/** Float64 slots. */
export const BEAT = 0 // last heartbeat, epoch ms (written by the main thread)
export const HANG_REPORTED = 1 // stall id (the beat before it) of the last hang report (worker)
export const FLOAT_SLOTS = 2

/** Int32 slots (after the Float64 ones). */
export const CONTROL = 0 // 0 = run, 1 = disconnect and stop (main → worker)
export const STOPPED = 1 // 1 = inspector session disconnected (worker → main)
/**
 * 1 = a debugger server was open when the main thread last looked (src/watchdog/debugger.ts):
 * a stall may be a breakpoint pause, so the worker does not probe it or report it as a hang.
 */
export const DEBUGGER_OPEN = 2
export const INT_SLOTS = 3

export interface SharedViews {
  floats: Float64Array
  ints: Int32Array
}

export function createShared(): SharedArrayBuffer {
  return new SharedArrayBuffer(FLOAT_SLOTS * 8 + INT_SLOTS * 4)
}

export function viewsOf(buffer: SharedArrayBuffer): SharedViews {
  return {
    floats: new Float64Array(buffer, 0, FLOAT_SLOTS),
    ints: new Int32Array(buffer, FLOAT_SLOTS * 8, INT_SLOTS),
  }
}

/** What the main thread hands the worker (workerData) and sends it when settings change. */
export interface WatchdogSettings {
  blockThresholdMs: number
  /** 0 = no hang reports. */
  hangReportMs: number
  /** How often the worker looks at the heartbeat, ms. */
  pollMs: number
  /**
   * A file descriptor open for appending (the zero-code session's journal) where the worker
   * writes each hang as it happens: the stuck main thread cannot, and the process may be killed
   * before the hang ends. Undefined: hangs go to stderr only.
   */
  hangJournalFd?: number
}

/** Messages from the worker to the main thread. */
export type WorkerMessage =
  | { type: 'ready' }
  | { type: 'unavailable'; reason: string }
  | { type: 'probe-failed'; reason: string }
