/**
 * Is a debugger server open on this process (`--inspect`, SIGUSR1, `inspector.open()`)?
 *
 * A breakpoint or a "pause" button stops the main thread exactly like a blocking callback does:
 * the heartbeat sees a stall and the watchdog would see a hang whose culprit is the paused frame.
 * Node gives the application no way to know that its thread is paused (only a session with the
 * Debugger domain enabled hears `Debugger.paused`, and enabling it on our own session makes async
 * code several-fold slower), so looplens asks the one question it can answer cheaply: is a
 * debugger server open? `inspector.url()` is set from the moment one is, including at run time.
 * While it is, a stall is not a block (src/looplens.ts drops it and warns once) and the watchdog
 * worker neither probes nor prints hang reports (src/watchdog/worker.ts).
 *
 * It is asked only when a stall is over (main thread) or while one lasts (the probe, on the main
 * thread): never per request. The worker cannot ask itself — a worker's `inspector.url()` is its
 * own agent's, undefined — so each answer is also written to shared memory for it to read.
 */
import { createRequire } from 'node:module'
import { DEBUGGER_OPEN } from './shared.js'

const require = createRequire(import.meta.url)

/** `inspector.url`, or null when this Node has no inspector (nothing can pause the thread then). */
let urlOf: (() => string | undefined) | null | undefined

/** The process's shared Int32 slots (set by src/watchdog/watchdog.ts). */
let sharedInts: Int32Array | undefined

/** Where to write each answer for the watchdog worker. */
export function shareDebuggerState(ints: Int32Array): void {
  sharedInts = ints
}

/** Whether a debugger server is open now; also tells the worker. Never throws. */
export function debuggerServerOpen(): boolean {
  if (urlOf === undefined) {
    try {
      urlOf = process.features.inspector
        ? (require('node:inspector') as typeof import('node:inspector')).url
        : null
    } catch {
      urlOf = null
    }
  }
  let open = false
  try {
    open = urlOf !== null && urlOf() !== undefined
  } catch {
    open = false
  }
  if (sharedInts !== undefined) Atomics.store(sharedInts, DEBUGGER_OPEN, open ? 1 : 0)
  return open
}
