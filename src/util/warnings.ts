/**
 * One warning per cause, never a throw: looplens must not break the application it watches.
 */
export class Warnings {
  readonly #seen = new Set<string>()
  readonly #emit: (warning: Error) => void

  constructor(emit: (warning: Error) => void) {
    this.#emit = emit
  }

  /** Report `message` once per `code` for the life of this instance. */
  once(code: string, message: string, cause?: unknown): void {
    if (this.#seen.has(code)) return
    this.#seen.add(code)
    const warning = new Error(`looplens: ${message}`, cause === undefined ? undefined : { cause })
    warning.name = code
    try {
      this.#emit(warning)
    } catch {
      // A throwing onWarning must not turn a warning into a crash.
    }
  }
}
