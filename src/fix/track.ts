/**
 * `lens.track(name, fn)`: the context and measurement of a request, for entry points that are not
 * HTTP requests — a queue or message consumer, a WebSocket `message` listener, a scheduled job.
 *
 * The wrapper is transparent: same arguments, same `this`, returns exactly what `fn` returns (the
 * same promise object, not a copy) and throws exactly what `fn` throws. Every call runs in a
 * context `{task: name}` (method and route empty), so a block inside carries `task`, and is
 * measured in `looplens_task_duration_seconds{task, outcome}` (sync functions, and async ones
 * until their promise settles). Only a native promise is observed: any other thenable (a lazy
 * query builder) is returned untouched and measured as a sync call.
 */
import { performance } from 'node:perf_hooks'
import { isPromise } from 'node:util/types'
import { LensContext } from '../context/context.js'
import type { FixMetrics } from '../exporters/fix-metrics.js'
import type { RequestRecorder } from '../internal-types.js'
import { describe } from '../options.js'
import { captureSpan } from '../otel/capture.js'
import { runInContext } from './task-context.js'

export interface TrackRuntime {
  recorder: RequestRecorder
  metrics: FixMetrics
}

/** Wrap `fn`; see the module comment. Validates its arguments (TypeError naming them). */
export function createTracked<F extends (...args: never[]) => unknown>(
  runtime: TrackRuntime,
  name: string,
  fn: F,
): F {
  if (typeof name !== 'string' || name.trim() === '') {
    throw new TypeError(
      `lens.track(name, fn): name must be a non-empty string (received ${describe(name)})`,
    )
  }
  if (typeof fn !== 'function') {
    throw new TypeError(`lens.track(name, fn): fn must be a function (received ${describe(fn)})`)
  }
  const { recorder, metrics } = runtime
  const call = fn as unknown as (this: unknown, ...args: unknown[]) => unknown
  // Label objects made once, not per call.
  const successLabels = { task: name, outcome: 'success' }
  const errorLabels = { task: name, outcome: 'error' }

  // No warning on failure: the caller receives the error itself; it is only counted.
  function ended(start: number, failed: boolean): void {
    metrics.taskDuration.observe(
      failed ? errorLabels : successLabels,
      (performance.now() - start) / 1000,
    )
  }

  function tracked(this: unknown, ...args: unknown[]): unknown {
    const start = performance.now()
    const context = new LensContext('', name, undefined, start)
    context.finalRoute = ''
    // The span active where the tracked function was called (a consumer's span): block spans of
    // this task go under it.
    captureSpan(context)
    let result: unknown
    try {
      result = runInContext(recorder, context, () => call.apply(this, args))
    } catch (error) {
      context.ended = true
      ended(start, true)
      throw error
    }
    if (isPromise(result)) {
      // Observe native promises only. Any other thenable may be lazy — a knex or mongoose query
      // runs when `.then()` is called — so calling it would run the query a second time (mongoose
      // throws "Query was already executed"); such a result is measured as a sync call.
      // `Promise.prototype.then` is called directly so a subclass's own `then` is never run.
      // The caller gets the original object; this branch handles its own settlement.
      Promise.prototype.then.call(
        result,
        () => {
          context.ended = true
          ended(start, false)
        },
        () => {
          context.ended = true
          ended(start, true)
        },
      )
    } else {
      context.ended = true
      ended(start, false)
    }
    return result
  }

  // Keep the wrapped function's name and arity: stack traces and frameworks that read
  // `fn.length` (e.g. Express error handlers) see the original.
  Object.defineProperty(tracked, 'name', { value: fn.name || name, configurable: true })
  Object.defineProperty(tracked, 'length', { value: fn.length, configurable: true })
  return tracked as unknown as F
}
