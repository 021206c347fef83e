/**
 * One context per request or task, held in an AsyncLocalStorage. It stores references (the
 * request object, the method string Node already made), not strings built per request: the route
 * template is read from Express when it is needed.
 */
import { AsyncLocalStorage } from 'node:async_hooks'
import type { BlockEvent } from '../types.js'
import { type RoutableRequest, routeOf } from './route.js'

export class LensContext {
  /** Normalized HTTP method, or '' for a task. */
  readonly method: string
  /** Task name, or '' for an HTTP request. */
  readonly task: string
  /**
   * The request, for its route template, while it is in flight; undefined for a task, and once
   * the request ended (its route is `finalRoute` then): nothing of a request stays reachable
   * through a context that outlives it.
   */
  req: RoutableRequest | undefined
  /** performance.now() at the start. */
  readonly startTime: number
  /** Route template fixed at the end of the request; undefined until then. */
  finalRoute: string | undefined = undefined
  /** Set when the request or task has ended. */
  ended = false
  /** Synchronous time of the middleware's own next() call, ms. */
  syncMs = 0
  /** Total time (ms) of the blocks that happened in this context. */
  blockedMs = 0
  /**
   * Blocks that happened before the request was routed (a body parser): they wait for the route
   * the request finally matched and are published when it ends.
   */
  pendingBlocks: BlockEvent[] | undefined = undefined
  /** The span that was active when the context was created (OpenTelemetry), if any. */
  span: unknown = undefined
  /** The in-flight counter of this request's method (http_server_active_requests), if counted. */
  active: { value: number } | undefined = undefined
  /**
   * The recorder measuring this request (set by lens.express()): a sub-app's middleware of the
   * same instance sees its parent's context and does not count the request a second time.
   */
  recorder: unknown = undefined

  constructor(method: string, task: string, req: RoutableRequest | undefined, startTime: number) {
    this.method = method
    this.task = task
    this.req = req
    this.startTime = startTime
  }

  /** The route template as known now: final once ended, else whatever Express has matched. */
  currentRoute(): string | undefined {
    if (this.finalRoute !== undefined) return this.finalRoute
    if (this.req === undefined) return ''
    return routeOf(this.req)
  }
}

/** Process-wide: every looplens instance reads the same store, so a block is attributed once. */
export const contextStorage = new AsyncLocalStorage<LensContext>()

export function currentContext(): LensContext | undefined {
  return contextStorage.getStore()
}
