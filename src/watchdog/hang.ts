/**
 * What the watchdog worker learns about a hang, for the journal: a second function next to the
 * probe, evaluated right after it in the same inspector message while the loop is stuck.
 *
 * The worker evaluates `HANG(PROBE(true))`: the probe records its capture for the detector (used
 * if the stall ever ends) and returns the hang's text for stderr; this function then reads the
 * context labels and takes the raw stack itself. Both run inside the blocked code, called from
 * the inspector's `<anonymous>` script, so the stack goes through the hanging function. A hang is
 * reported once per stall, so this stack is not charged to `maxStacksPerMinute`: a hang is the one
 * stall whose stack must not be missing. Parsing happens in the worker, off the stuck thread.
 */
import { contextStorage } from '../context/context.js'
import type { BlockContext } from '../types.js'
import { debuggerServerOpen } from './debugger.js'
import { captureStack, defineEvaluated } from './probe.js'

/** The global key the worker evaluates, next to the probe's. */
export const HANG_KEY = 'looplens.hang.v1'

/** What the function returns to the worker (by value: plain data only). */
export interface HangCapture {
  /** The probe's text for stderr, if it answered. */
  text: string | undefined
  context: BlockContext
  /** Raw V8 stack text (parsed in the worker), or undefined if it could not be taken. */
  stack: string | undefined
}

const NO_CONTEXT: BlockContext = { method: '', route: '', task: '' }

/** Runs on the main thread, inside the stuck code. Must never throw. */
function describeHang(probeText: unknown): HangCapture {
  // Perhaps a breakpoint pause: the worker sees the flag this sets and reports nothing.
  if (debuggerServerOpen()) return { text: undefined, context: NO_CONTEXT, stack: undefined }
  let context = NO_CONTEXT
  try {
    // An ended request's context can linger on a keep-alive socket: it is not the one running.
    const store = contextStorage.getStore()
    if (store !== undefined && !store.ended) {
      context = { method: store.method, route: store.currentRoute() ?? '', task: store.task }
    }
  } catch {
    // A router whose state cannot be read: the stack still names the function.
  }
  // Hide this function's own frame: the stack starts in the hanging code.
  const stack = captureStack(describeHang)
  return { text: typeof probeText === 'string' ? probeText : undefined, context, stack }
}

let installed = false

/** Register the function on globalThis (once per process). */
export function installHangDescriber(): void {
  if (installed) return
  installed = true
  defineEvaluated(HANG_KEY, describeHang)
}
