/**
 * Event-loop utilization over a window: each reader (a Prometheus scrape, `snapshot()`, the OTel
 * gauge, the preload's timeline) owns its window, so one reader never shortens another's.
 */
import { type EventLoopUtilization, performance } from 'node:perf_hooks'

export class UtilizationWindow {
  // The first reading needs a baseline, or it covers the whole process life and reads ~1 for a
  // process that was busy starting up (OpenTelemetry runtime-node makes the same note).
  #baseline: EventLoopUtilization = performance.eventLoopUtilization()

  /** Utilization (0…1) since the previous call (or since this window was made). */
  next(): number {
    const now = performance.eventLoopUtilization()
    const delta = performance.eventLoopUtilization(now, this.#baseline)
    this.#baseline = now
    return Number.isFinite(delta.utilization) ? delta.utilization : 0
  }
}
