/**
 * Private shapes shared between modules. Not exported from the package.
 */
import type { LensContext } from './context/context.js'

/** What the request instrumentations (Express middleware, zero-code http) report to the core. */
export interface RequestRecorder {
  requestStarted(context: LensContext): void
  /** The synchronous part of the request ended at `endPerf` (performance.now()). */
  syncEnded(context: LensContext, endPerf: number): void
  /**
   * `statusCode` is undefined when the response did not complete (the client aborted).
   * `endPerf` (performance.now()) when the caller has just read the clock; else it is read here.
   */
  requestEnded(context: LensContext, statusCode: number | undefined, endPerf?: number): void
}
