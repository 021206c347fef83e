/**
 * `lens.track(name, fn)`: the context and measurement of a request, for entry points that are not
 * HTTP requests — a queue or message consumer, a WebSocket `message` listener, a scheduled job.
 *
 * The wrapper is transparent: same arguments, same `this`, returns what `fn` returns and throws
 * exactly what `fn` throws. For a native promise it returns the promise of observing it, which
 * settles the same way one turn later: observing the caller's own promise would attach a handler
 * to it, and Node would no longer report its rejection as unhandled (an app that crashes on an
 * unhandled rejection would silently run on). Every call runs in a
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
  // Never throws: it runs inside the promise chain the caller receives, where a throw would turn
  // the caller's result into a rejection.
  function ended(start: number, failed: boolean): void {
    try {
      metrics.taskDuration.observe(
        failed ? errorLabels : successLabels,
        (performance.now() - start) / 1000,
      )
    } catch {
      // A broken registry loses one observation, never the caller's result.
    }
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
      // The caller gets the derived promise: a rejection nobody handles stays unhandled, with
      // the same reason, exactly as without looplens.
      return Promise.prototype.then.call(
        result,
        (value: unknown) => {
          context.ended = true
          ended(start, false)
          return value
        },
        (error: unknown) => {
          context.ended = true
          ended(start, true)
          throw error
        },
      )
    }
    context.ended = true
    ended(start, false)
    return result
  }

  // Keep the wrapped function's name and arity: stack traces and frameworks that read
  // `fn.length` (e.g. Express error handlers) see the original.
  Object.defineProperty(tracked, 'name', { value: fn.name || name, configurable: true })
  Object.defineProperty(tracked, 'length', { value: fn.length, configurable: true })
  return tracked as unknown as F
}
