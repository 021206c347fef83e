/**
 * Shared by background tasks and track(): running user code in a context of its own, and
 * reporting its failures without ever throwing them into the application.
 */
import { performance } from 'node:perf_hooks'
import { contextStorage, type LensContext } from '../context/context.js'
import type { RequestRecorder } from '../internal-types.js'

/**
 * Run `fn` in `context` and measure its synchronous part the way the middleware measures a
 * request's: a long synchronous run is handed to the detector, which attributes the stall to this
 * context even without a stack (no watchdog, or `captureStacks: false`).
 */
export function runInContext<T>(recorder: RequestRecorder, context: LensContext, fn: () => T): T {
  return contextStorage.run(context, () => {
    const start = performance.now()
    try {
      return fn()
    } finally {
      const end = performance.now()
      context.syncMs = end - start
      recorder.syncEnded(context, end)
    }
  })
}

/** A task failure is reported once per task name: the metrics count every one. */
export class TaskFailures {
  readonly #seen = new Set<string>()
  readonly #emit: (warning: Error) => void

  constructor(emit: (warning: Error) => void) {
    this.#emit = emit
  }

  report(kind: string, name: string, error: unknown, metric: string): void {
    const key = `${kind}\u0000${name}`
    if (this.#seen.has(key)) return
    this.#seen.add(key)
    const reason = error instanceof Error ? error.message : String(error)
    const warning = new Error(
      `looplens: ${kind} "${name}" failed: ${reason} (further failures of this task are only counted in ${metric}{outcome="error"})`,
      { cause: error },
    )
    warning.name = 'LOOPLENS_TASK_FAILED'
    try {
      this.#emit(warning)
    } catch {
      // A throwing onWarning must not turn a contained failure into a crash.
    }
  }
}
