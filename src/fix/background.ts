/**
 * `lens.background(res).add(fn, ...args)`: work that runs after the response has been sent (the
 * FastAPI `BackgroundTasks` idea), measured and attributed like a request.
 *
 * - Tasks of one response run one after another, in the order added, starting once the response
 *   has been handed to the OS (`res` 'finish'). A task added after that starts at once (after the
 *   tasks before it).
 * - Each task runs in a context of its own: the request's method and route (from lens.express(),
 *   when it is mounted) and the task's name, so a block inside it is labelled
 *   `{http_request_method, http_route, task}`.
 * - A task that throws or rejects is counted (`outcome="error"`) and reported once per task name
 *   through `onWarning`; it never becomes an unhandled rejection, and the next task still runs.
 * - Client abort (the connection closed before the response was sent): by default the tasks run
 *   anyway — the request was accepted, its work is owed. `{ onAbort: 'skip' }` counts them as
 *   `outcome="aborted"` instead of running them.
 * - `lens.close()` waits for queued and running tasks up to `closeTimeoutMs`.
 */
import { performance } from 'node:perf_hooks'
import { contextStorage, LensContext } from '../context/context.js'
import { routeOf } from '../context/route.js'
import { FIX_METRIC_NAMES, type FixMetrics, type TaskOutcome } from '../exporters/fix-metrics.js'
import type { RequestRecorder } from '../internal-types.js'
import { describe } from '../options.js'
import type { BackgroundOptions, BackgroundTasks } from '../types.js'
import type { Warnings } from '../util/warnings.js'
import { runInContext, type TaskFailures } from './task-context.js'

/** The parts of a response (Node's ServerResponse, Express's Response) the queue needs. */
interface ResponseLike {
  once(event: string, listener: () => void): unknown
  writableFinished?: boolean
  destroyed?: boolean
  req?: unknown
}

interface Task {
  name: string
  fn: (...args: unknown[]) => unknown
  args: unknown[]
}

/** Who the tasks belong to, fixed when the response ends. */
interface Origin {
  method: string
  route: string
  span: unknown
}

export interface SchedulerOptions {
  recorder: RequestRecorder
  metrics: FixMetrics
  failures: TaskFailures
  warnings: Warnings
}

/** The task name of a function: its own name, without the `bound ` prefix of `fn.bind()`. */
export function taskNameOf(fn: (...args: never) => unknown): string {
  const name = typeof fn.name === 'string' ? fn.name.replace(/^(bound )+/, '') : ''
  return name === '' ? 'anonymous' : name
}

function validateName(where: string, name: unknown): string {
  if (typeof name !== 'string' || name.trim() === '') {
    throw new TypeError(`${where}: name must be a non-empty string (received ${describe(name)})`)
  }
  return name
}

function validateFn(where: string, fn: unknown): (...args: unknown[]) => unknown {
  if (typeof fn !== 'function') {
    throw new TypeError(`${where}: fn must be a function (received ${describe(fn)})`)
  }
  return fn as (...args: unknown[]) => unknown
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (
    (typeof value === 'object' || typeof value === 'function') &&
    value !== null &&
    typeof (value as PromiseLike<unknown>).then === 'function'
  )
}

class ResponseTasks implements BackgroundTasks {
  readonly #scheduler: BackgroundScheduler
  readonly #queue: Task[] = []
  /** The request's context, captured when the queue was made (the handler runs inside it). */
  readonly #requestContext: LensContext | undefined
  #onAbort: 'run' | 'skip'
  #state: 'waiting' | 'draining' | 'idle' = 'waiting'
  #origin: Origin | undefined
  #aborted = false

  constructor(
    scheduler: BackgroundScheduler,
    res: ResponseLike,
    onAbort: 'run' | 'skip',
    requestContext: LensContext | undefined,
  ) {
    this.#scheduler = scheduler
    this.#onAbort = onAbort
    this.#requestContext = requestContext
    if (res.writableFinished === true) {
      this.#responseEnded(false)
    } else if (res.destroyed === true) {
      this.#responseEnded(true)
    } else {
      // 'finish': the last byte was handed to the OS. 'close' without 'finish': the client went
      // away (or the server destroyed the socket) before the response was sent.
      res.once('finish', () => this.#responseEnded(false))
      res.once('close', () => this.#responseEnded(!res.writableFinished))
    }
  }

  get pending(): number {
    return this.#queue.length + (this.#state === 'draining' ? 1 : 0)
  }

  set onAbort(value: 'run' | 'skip') {
    this.#onAbort = value
  }

  add<A extends unknown[]>(fn: (...args: A) => unknown, ...args: A): this {
    const task = validateFn('lens.background(res).add', fn)
    return this.#push({ name: taskNameOf(task), fn: task, args })
  }

  addNamed<A extends unknown[]>(name: string, fn: (...args: A) => unknown, ...args: A): this {
    const taskName = validateName('lens.background(res).addNamed', name)
    const task = validateFn('lens.background(res).addNamed', fn)
    return this.#push({ name: taskName, fn: task, args })
  }

  #push(task: Task): this {
    this.#queue.push(task)
    this.#scheduler.taskQueued()
    if (this.#state === 'idle') this.#drainSoon()
    return this
  }

  #responseEnded(aborted: boolean): void {
    if (this.#origin !== undefined) return
    const context = this.#requestContext
    let route = ''
    if (context !== undefined) {
      route =
        context.finalRoute ??
        (context.req === undefined ? '' : (routeOf(context.req) ?? context.currentRoute() ?? ''))
    }
    this.#origin = { method: context?.method ?? '', route, span: context?.span }
    this.#aborted = aborted
    this.#drainSoon()
  }

  #drainSoon(): void {
    this.#state = 'draining'
    // setImmediate: let the response's own 'finish'/'close' listeners (the middleware's metrics,
    // loggers) run first; the tasks are not part of the request.
    setImmediate(() => void this.#drain())
  }

  async #drain(): Promise<void> {
    const origin = this.#origin!
    let task = this.#queue.shift()
    while (task !== undefined) {
      if (this.#aborted && this.#onAbort === 'skip') {
        this.#scheduler.record(task.name, 'aborted', 0)
      } else {
        await this.#scheduler.run(task, origin)
      }
      this.#scheduler.taskEnded()
      task = this.#queue.shift()
    }
    this.#state = 'idle'
  }
}

export class BackgroundScheduler {
  readonly #options: SchedulerOptions
  readonly #queues = new WeakMap<object, ResponseTasks>()
  /** Tasks added and not yet ended, over every response. */
  #outstanding = 0
  #running = 0
  #idleWaiters: (() => void)[] = []
  #closed = false

  constructor(options: SchedulerOptions) {
    this.#options = options
  }

  /** The queue of `res`: the same one however often `lens.background(res)` is called. */
  tasksOf(res: unknown, options: BackgroundOptions | undefined): BackgroundTasks {
    if (
      typeof res !== 'object' ||
      res === null ||
      typeof (res as ResponseLike).once !== 'function'
    ) {
      throw new TypeError(
        `lens.background(res): res must be an HTTP response (Express or node:http) (received ${describe(res)})`,
      )
    }
    const onAbort = resolveOnAbort(options)
    let queue = this.#queues.get(res)
    if (queue === undefined) {
      const response = res as ResponseLike
      const store = contextStorage.getStore()
      // The request's own context, when called from inside it (the handler, or any callback or
      // promise continuation of it). The middleware keeps nothing on the response to look it up
      // by otherwise: a property per request would cost a new hidden class (context/fields.ts).
      const context =
        store !== undefined && store.req !== undefined && store.req === response.req
          ? store
          : undefined
      queue = new ResponseTasks(this, response, onAbort ?? 'run', context)
      this.#queues.set(res, queue)
    } else if (onAbort !== undefined) {
      queue.onAbort = onAbort
    }
    if (this.#closed) {
      this.#options.warnings.once(
        'LOOPLENS_BACKGROUND_AFTER_CLOSE',
        'lens.background(res) was used after lens.close(): its tasks run, but close() did not wait for them',
      )
    }
    return queue
  }

  taskQueued(): void {
    this.#outstanding++
  }

  taskEnded(): void {
    this.#outstanding--
    if (this.#outstanding === 0) {
      const waiters = this.#idleWaiters
      this.#idleWaiters = []
      for (const wake of waiters) wake()
    }
  }

  record(task: string, outcome: TaskOutcome, seconds: number): void {
    this.#options.metrics.backgroundTaskDuration.observe({ task, outcome }, seconds)
  }

  /** Run one task in its own context; resolves when it ended, never rejects. */
  async run(task: Task, origin: Origin): Promise<void> {
    const { metrics, recorder, failures } = this.#options
    const start = performance.now()
    const context = new LensContext(origin.method, task.name, undefined, start)
    context.finalRoute = origin.route
    context.span = origin.span
    metrics.backgroundTasksActive.inc({ task: task.name })
    this.#running++
    let outcome: TaskOutcome = 'success'
    try {
      // A plain call, not `task.fn(...)`: V8 would name the frame `Object.fn [as fn]`.
      const { fn, args } = task
      const result = runInContext(recorder, context, () => fn(...args))
      if (isThenable(result)) await result
    } catch (error) {
      outcome = 'error'
      failures.report('background task', task.name, error, FIX_METRIC_NAMES.backgroundTaskDuration)
    } finally {
      context.ended = true
      this.#running--
      metrics.backgroundTasksActive.dec({ task: task.name })
      this.record(task.name, outcome, (performance.now() - start) / 1000)
    }
  }

  /**
   * Wait until no task is queued or running, at most `timeoutMs`. Past it, say what is left
   * (through `onWarning`): those tasks go on, unawaited, rather than being silently lost.
   */
  async close(timeoutMs: number): Promise<void> {
    this.#closed = true
    if (this.#outstanding === 0) return
    let timer: NodeJS.Timeout | undefined
    const idle = new Promise<boolean>((resolve) => this.#idleWaiters.push(() => resolve(true)))
    const timeout = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), timeoutMs)
      // unref: close() must not be what keeps a process alive; the tasks' own I/O does.
      timer.unref()
    })
    const drained = await Promise.race([idle, timeout])
    clearTimeout(timer)
    if (!drained) {
      const running = this.#running
      const queued = this.#outstanding - running
      this.#options.warnings.once(
        'LOOPLENS_BACKGROUND_CLOSE_TIMEOUT',
        `lens.close() waited closeTimeoutMs (${timeoutMs} ms) for background tasks: ${running} still running and ${queued} queued; they go on but are no longer awaited or measured`,
      )
    }
  }
}

function resolveOnAbort(options: BackgroundOptions | undefined): 'run' | 'skip' | undefined {
  if (options === undefined) return undefined
  if (typeof options !== 'object' || options === null) {
    throw new TypeError(
      `lens.background(res, options): options must be an object (received ${describe(options)})`,
    )
  }
  for (const key of Object.keys(options)) {
    if (key !== 'onAbort') {
      throw new TypeError(
        `lens.background(res, options): options.${key} is not an option (known: onAbort)`,
      )
    }
  }
  const onAbort = options.onAbort
  if (onAbort === undefined) return undefined
  if (onAbort !== 'run' && onAbort !== 'skip') {
    throw new TypeError(
      `lens.background(res, options): options.onAbort must be "run" or "skip" (received ${describe(onAbort)})`,
    )
  }
  return onAbort
}
