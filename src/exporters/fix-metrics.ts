/**
 * Metrics of the fixes (`lens.background()`, `lens.track()`, `lens.guard()`), registered through
 * the same per-registry leases (`MetricLeases`) as the core metrics: two instances on one registry
 * share them, and the last `close()` removes them.
 *
 * Registered on first use of any fix, so an application that uses none of them exports none.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client'
import { MetricLeases } from './prometheus.js'

/** Names of the fixes' metrics (the contract: dashboards depend on them). */
export const FIX_METRIC_NAMES = {
  backgroundTaskDuration: 'looplens_background_task_duration_seconds',
  backgroundTasksActive: 'looplens_background_tasks_active',
  taskDuration: 'looplens_task_duration_seconds',
  shedRequests: 'looplens_shed_requests_total',
} as const

/**
 * Task durations, 1 ms … 5 min: background jobs and queue consumers run far longer than a
 * request handler, and a 30 s email send must not land in `+Inf`.
 */
export const TASK_DURATION_BUCKETS = [
  0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300,
]

/**
 * How a task ended:
 * - `success`: it returned (or its promise resolved);
 * - `error`: it threw (or its promise rejected);
 * - `aborted`: a background task that never ran because the client aborted and the queue was
 *   created with `{ onAbort: 'skip' }`.
 */
export type TaskOutcome = 'success' | 'error' | 'aborted'

/** Why a request was shed by the guard. */
export type ShedReason = 'event_loop_delay' | 'event_loop_utilization'

export class FixMetrics {
  readonly registry: Registry
  readonly backgroundTaskDuration: Histogram<'task' | 'outcome'>
  readonly backgroundTasksActive: Gauge<'task'>
  readonly taskDuration: Histogram<'task' | 'outcome'>
  readonly shedRequests: Counter<'reason'>
  readonly #leases: MetricLeases
  #closed = false

  /** @throws TypeError naming options.registry when the registry refuses a metric. */
  constructor(registry: Registry) {
    this.registry = registry
    this.#leases = new MetricLeases(registry)
    this.backgroundTaskDuration = this.#leases.take(
      FIX_METRIC_NAMES.backgroundTaskDuration,
      () =>
        new Histogram({
          name: FIX_METRIC_NAMES.backgroundTaskDuration,
          help: 'Duration of background tasks run after the response (lens.background(res)), by task name and outcome (success, error, aborted).',
          labelNames: ['task', 'outcome'],
          buckets: TASK_DURATION_BUCKETS,
          registers: [registry],
        }),
    )
    this.backgroundTasksActive = this.#leases.take(
      FIX_METRIC_NAMES.backgroundTasksActive,
      () =>
        new Gauge({
          name: FIX_METRIC_NAMES.backgroundTasksActive,
          help: 'Background tasks running right now (started, not yet ended), by task name.',
          labelNames: ['task'],
          registers: [registry],
        }),
    )
    this.taskDuration = this.#leases.take(
      FIX_METRIC_NAMES.taskDuration,
      () =>
        new Histogram({
          name: FIX_METRIC_NAMES.taskDuration,
          help: 'Duration of calls of functions wrapped by lens.track(name, fn), by task name and outcome (success, error).',
          labelNames: ['task', 'outcome'],
          buckets: TASK_DURATION_BUCKETS,
          registers: [registry],
        }),
    )
    this.shedRequests = this.#leases.take(
      FIX_METRIC_NAMES.shedRequests,
      () =>
        new Counter({
          name: FIX_METRIC_NAMES.shedRequests,
          help: 'Requests answered 503 by lens.guard() because the event loop was over its limit, by reason (event_loop_delay, event_loop_utilization).',
          labelNames: ['reason'],
          registers: [registry],
        }),
    )
  }

  close(): void {
    if (this.#closed) return
    this.#closed = true
    this.#leases.releaseAll()
  }
}
