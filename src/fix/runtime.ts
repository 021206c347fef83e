/**
 * What the fixes (background tasks, track, guard) need from their looplens instance, and the one
 * place they are started and stopped. Created on the first use of a fix, so an application that
 * uses none of them pays nothing and exports none of their metrics.
 */
import type { Registry } from 'prom-client'
import { FixMetrics } from '../exporters/fix-metrics.js'
import type { RequestRecorder } from '../internal-types.js'
import type { BackgroundOptions, BackgroundTasks, GuardOptions } from '../types.js'
import type { Warnings } from '../util/warnings.js'
import { BackgroundScheduler } from './background.js'
import { createGuard, type LoadGuard } from './guard.js'
import { TaskFailures } from './task-context.js'
import { createTracked } from './track.js'

export interface FixRuntimeOptions {
  registry: Registry
  recorder: RequestRecorder
  warnings: Warnings
  onWarning: (warning: Error) => void
  closeTimeoutMs: number
}

export class FixRuntime {
  readonly metrics: FixMetrics
  readonly failures: TaskFailures
  readonly #options: FixRuntimeOptions
  readonly #background: BackgroundScheduler
  readonly #guards = new Set<LoadGuard>()
  #closing: Promise<void> | undefined

  constructor(options: FixRuntimeOptions) {
    this.#options = options
    this.metrics = new FixMetrics(options.registry)
    this.failures = new TaskFailures(options.onWarning)
    this.#background = new BackgroundScheduler({
      recorder: options.recorder,
      metrics: this.metrics,
      failures: this.failures,
      warnings: options.warnings,
    })
  }

  background(res: unknown, options: BackgroundOptions | undefined): BackgroundTasks {
    return this.#background.tasksOf(res, options)
  }

  track<F extends (...args: never[]) => unknown>(name: string, fn: F): F {
    return createTracked({ recorder: this.#options.recorder, metrics: this.metrics }, name, fn)
  }

  guard(options: GuardOptions | undefined): LoadGuard {
    const guard = createGuard(options, this.metrics)
    if (this.#closing !== undefined) {
      // Created after close(): it never samples and never sheds.
      guard.close()
    } else {
      this.#guards.add(guard)
    }
    return guard
  }

  /** Wait for background tasks (bounded by closeTimeoutMs), stop the guards, release metrics. */
  close(): Promise<void> {
    this.#closing ??= this.#close()
    return this.#closing
  }

  async #close(): Promise<void> {
    for (const guard of this.#guards) guard.close()
    this.#guards.clear()
    await this.#background.close(this.#options.closeTimeoutMs)
    this.metrics.close()
  }
}
