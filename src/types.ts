/**
 * Public types of looplens. Everything a user can touch is declared here; private shapes live in
 * `internal-types.ts`.
 */
import type { Registry } from 'prom-client'

/** Options of {@link createLooplens}. Every field is optional; see the README's options table. */
export interface LooplensOptions {
  /**
   * A stall of the event loop at least this long (ms) is a block: it is counted, measured,
   * attributed and published as a {@link BlockEvent}. Integer ≥ 10.
   * @default 50
   */
  blockThresholdMs?: number
  /**
   * The prom-client registry the metrics are registered in. By default looplens creates its own,
   * so two instances (or two test files) never collide with "already registered".
   * @default new Registry()
   */
  registry?: Registry
  /**
   * Sampling resolution (ms) of `perf_hooks.monitorEventLoopDelay`, subtracted from every sample.
   * Integer ≥ 1.
   * @default 10
   */
  delayResolutionMs?: number
  /**
   * Request paths the middleware does not measure at all (no metrics, no context). Exact paths
   * (`'/health'`), compared as Express routes them by default (any letter case, one trailing
   * slash allowed), or regular expressions tested against the path without its query string.
   * @default ['/metrics']
   */
  excludePaths?: ReadonlyArray<string | RegExp>
  /**
   * At most this many distinct `http_route` values per instance (request metrics and block
   * events); a new route past it is labelled `_OVERFLOW`, and one warning
   * (`LOOPLENS_ROUTE_OVERFLOW`) names the first one. Integer between 1 and 1000000.
   * @default 1000
   */
  maxRoutes?: number
  /**
   * Capture stacks with the watchdog worker and the inspector. `false` keeps counting, durations
   * and attribution to the request that was running (from the middleware), without a worker.
   * @default true
   */
  captureStacks?: boolean
  /**
   * At most this many stacks are captured per minute (token bucket, burst of the same size).
   * Counting and attribution are never rate-limited; an event past the limit says
   * `stackMissing: 'rate-limited'`.
   * @default 60
   */
  maxStacksPerMinute?: number
  /**
   * A stall still going on after this many ms is reported from the watchdog worker while it lasts
   * (on stderr, with its stack), because the main thread cannot speak. Integer ≥ blockThresholdMs,
   * or `0` to switch hang reports off.
   * @default 2000, or blockThresholdMs when that is larger
   */
  hangReportMs?: number
  /**
   * How long `lens.close()` waits (ms) for background tasks (`lens.background(res)`) that are
   * queued or running. Past it, close() resolves, reports what is still pending through
   * `onWarning`, and those tasks go on unawaited. Integer between 0 and 600000.
   * @default 5000
   */
  closeTimeoutMs?: number
  /**
   * OpenTelemetry, through `@opentelemetry/api` (an optional peer): block spans under the request
   * span, request span attributes, OpenTelemetry metrics, `trace_id` exemplars in OpenMetrics.
   * - `'auto'`: on when a tracer provider is registered — looked for at construction and, if
   *   none yet, once more at the first request or task; off when the API is not installed;
   * - `true`: capture request spans even if no SDK is registered yet (one started later still);
   * - `false`: off; no per-request cost at all.
   * @default 'auto'
   */
  openTelemetry?: 'auto' | boolean
  /**
   * Where the one-time warnings of looplens go (inspector unavailable, a listener threw, …).
   * @default process.emitWarning
   */
  onWarning?: (warning: Error) => void
}

/** One stack frame, top of the stack first. `file` is a path or URL as V8 prints it. */
export interface StackFrame {
  /** The function's name as V8 names it (`hashPasswordsSync`, `Router.handle`), or `<anonymous>`. */
  functionName: string
  /** Path or `file://` URL (source-mapped when the app runs with source maps); `''` if unknown. */
  file: string
  /** 1-based line, 0 if unknown. */
  line: number
  /** 1-based column, 0 if unknown. */
  column: number
}

/** Who was running when the loop stalled. Empty strings mean "none" (they are label values). */
export interface BlockContext {
  /** HTTP method (`GET`, …, `_OTHER` for unknown ones) or `''` outside any request. */
  method: string
  /** Route template (`/api/v1/users/:id`), `''` when no route matched or outside any request. */
  route: string
  /** Task name given in code (`lens.track(name)`, background tasks), or `''`. */
  task: string
  /**
   * Trace id of the request's (or task's) span, when tracing is on and that span is sampled; for
   * a block outside any request, of its own `eventloop.block` span.
   */
  traceId?: string
  /** Span id of the same span as {@link traceId}. */
  spanId?: string
}

/**
 * Why a {@link BlockEvent} has no stack:
 * - `disabled`: `captureStacks: false`;
 * - `rate-limited`: over `maxStacksPerMinute`;
 * - `unavailable`: no inspector, a debugger attached, the watchdog worker died, or it was still
 *   starting (the first few milliseconds after `createLooplens()`);
 * - `missed`: the stall ended before the probe ran inside it (native code, or too short).
 */
export type StackMissingReason = 'disabled' | 'rate-limited' | 'unavailable' | 'missed'

/**
 * How the stall was made:
 * - `callback`: one callback held the loop (the stack and context name it);
 * - `saturation`: one long loop iteration made of many short callbacks: nobody in particular;
 * - `unknown`: no probe ran inside it, so it cannot be told.
 */
export type BlockKind = 'callback' | 'saturation' | 'unknown'

/** One stall of the event loop at least `blockThresholdMs` long. */
export interface BlockEvent {
  /** Start of the stall, epoch milliseconds (fractional). */
  startTime: number
  /** Measured length of the stall in milliseconds (the loop's busy time over the stall). */
  durationMs: number
  /** Single blocking callback, saturation, or unknown. */
  kind: BlockKind
  /** The request or task that was running. All empty for a block outside any. */
  context: BlockContext
  /** Stack frames at the time of the probe, top first; empty when {@link stackMissing} is set. */
  frames: StackFrame[]
  /** The first frame outside `node:` internals, `node_modules` and looplens: the line to fix. */
  culprit: StackFrame | undefined
  /** Why there is no stack, when there is none. */
  stackMissing: StackMissingReason | undefined
  /** True when the stall lasted past `hangReportMs` and was reported while it lasted. */
  hang: boolean
}

/** The current picture of the event loop, from {@link Looplens.snapshot}. */
export interface LoopSnapshot {
  /** Event-loop delay since the instance started, ms (resolution subtracted). */
  delay: {
    min: number
    mean: number
    p50: number
    p90: number
    p99: number
    max: number
    /** How many delay samples these figures are made of. */
    count: number
  }
  /** Event-loop utilization (0…1) since the previous `snapshot()` call (or the start). */
  utilization: number
  /** Blocks seen so far and their total length. */
  blocks: { count: number; totalMs: number; maxMs: number }
  /** Whether stacks are being captured right now, and if not, why. */
  stacks: { active: boolean; reason: StackMissingReason | undefined }
}

/** Listener signatures of {@link Looplens.on}. */
export interface LooplensEvents {
  block: (event: BlockEvent) => void
}

/** One row of the report: a place that blocked the loop, aggregated over its blocks. */
export interface BlockerRow {
  /** `callback` rows name a culprit; `unknown` rows had no probe inside (no stack). */
  kind: 'callback' | 'unknown'
  method: string
  route: string
  task: string
  /** The line to fix (the culprit frame shared by these blocks), if known. */
  culprit: StackFrame | undefined
  count: number
  totalMs: number
  maxMs: number
  /** One sample stack (the longest block's), top first. */
  sampleFrames: StackFrame[]
  /** Epoch ms of the first and the last block in this row. */
  firstSeen: number
  lastSeen: number
}

/** Synchronous time per route, from the middleware (or the zero-code instrumentation). */
export interface RouteSyncRow {
  method: string
  route: string
  requests: number
  syncTotalMs: number
  syncMaxMs: number
}

/** What {@link Looplens.report} returns: top blockers worst first, saturation apart. */
export interface LooplensReport {
  /** ISO time the report was made, and since when the instance has been watching. */
  generatedAt: string
  since: string
  blockThresholdMs: number
  /** All blocks, whatever their kind. */
  blocks: { count: number; totalMs: number; maxMs: number }
  /** Single-callback (and unknown) blockers, worst (largest total) first. */
  blockers: BlockerRow[]
  /** Saturated loop iterations: many short callbacks, nobody in particular to blame. */
  saturation: { count: number; totalMs: number; maxMs: number }
  /** Sync time per route, largest total first. */
  routes: RouteSyncRow[]
  /** The loop at report time. */
  loop: LoopSnapshot
}

/** Options of {@link Looplens.background}. */
export interface BackgroundOptions {
  /**
   * What happens to the queued tasks when the client aborts (the connection closes before the
   * response was sent): `'run'` runs them anyway — the request was accepted, so its work (the
   * email, the job) is done; `'skip'` does not run them and counts each as
   * `outcome="aborted"`.
   * @default 'run'
   */
  onAbort?: 'run' | 'skip'
}

/**
 * The background tasks of one response, from {@link Looplens.background}. Tasks run one after
 * another, in the order added, once the response has been sent; each in a context of its own
 * (the request's method and route, the task's name), measured, errors contained.
 */
export interface BackgroundTasks {
  /**
   * Run `fn(...args)` after the response. Its name is `fn.name` (`'anonymous'` for an arrow
   * function without one); use {@link addNamed} to choose it.
   * @example lens.background(res).add(sendWelcomeEmail, user.email)
   */
  add<A extends unknown[]>(fn: (...args: A) => unknown, ...args: A): this
  /**
   * Like {@link add}, with the task name given: it is the `task` label of the metrics and blocks.
   * @example lens.background(res).addNamed('welcome-email', (to) => mailer.send(to), user.email)
   */
  addNamed<A extends unknown[]>(name: string, fn: (...args: A) => unknown, ...args: A): this
  /** Tasks added and not yet ended (queued or running). */
  readonly pending: number
}

/** Options of {@link Looplens.guard}. Every field is optional. */
export interface GuardOptions {
  /**
   * Shed while the largest event-loop delay of the last sampling interval is above this (ms).
   * Integer ≥ 1, or `0` to not look at the delay.
   * @default 200
   */
  maxEventLoopDelayMs?: number
  /**
   * Shed while event-loop utilization over the last sampling interval is above this ratio
   * (0 < ratio < 1). Off unless given.
   * @default undefined
   */
  maxEventLoopUtilization?: number
  /** The `Retry-After` header of a 503 (seconds). Integer between 0 and 86400. @default 10 */
  retryAfterSeconds?: number
  /**
   * Paths never shed: health checks and the metrics scrape must answer precisely when the loop
   * is struggling. Exact paths or RegExps, tested against the path without its query string.
   * @default ['/health', '/healthz', '/livez', '/metrics']
   */
  exemptPaths?: ReadonlyArray<string | RegExp>
  /**
   * How often (ms) the loop is sampled, on an unref'd timer off the request path. Integer
   * between 10 and 60000.
   * @default 250
   */
  sampleIntervalMs?: number
}
