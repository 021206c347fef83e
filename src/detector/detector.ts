/**
 * Turns measured stalls into BlockEvents: the heartbeat says when and how long; the probe
 * captures (taken inside the stall by the watchdog) and the middleware's synchronous timing say
 * who and where.
 *
 * Who held the loop? The worker probes every quarter threshold during a stall. Consecutive probes
 * that saw the same request/task context (or, outside any, the same async resource) form a run:
 * - one run: one callback held the loop for the whole stall;
 * - several runs of two probes or more: several long callbacks back to back in one loop turn
 *   (queued requests of a blocking route) — one event each, split at the midpoints between runs;
 * - runs of one probe each: saturation, many short callbacks, nobody to blame; so is one run whose
 *   request began too late in the stall to have held the loop for a threshold.
 * The last probe may land just after the stall ended (it was sent while the loop was still
 * stuck), so a lone last probe after a long run belongs to that run.
 */
import { performance } from 'node:perf_hooks'
import type { LensContext } from '../context/context.js'
import type { Stall } from '../monitor/heartbeat.js'
import { withTraceIds } from '../otel/capture.js'
import { culpritOf, dropProbeFrames, parseStack } from '../stack/frames.js'
import type { BlockContext, BlockEvent, StackFrame, StackMissingReason } from '../types.js'
import type { Capture, CaptureReader } from '../watchdog/probe.js'

const NO_CONTEXT: BlockContext = Object.freeze({ method: '', route: '', task: '' })

export interface DetectorOptions {
  blockThresholdMs: number
  /** Why events carry no stack when no probe could run (no watchdog, or it is down); undefined
   * when the watchdog is active. */
  stacksUnavailable: () => StackMissingReason | undefined
  /** The probe's captures, read once per stall and let go after each heartbeat tick. */
  captures: CaptureReader
  /**
   * Charge a stall that is published as a block with its stack to the stack budget; false when
   * the budget is spent (the event then goes out without its stack, `rate-limited`).
   */
  chargeStack: (stallId: number) => boolean
  /** Whether the worker reported this stall as a hang while it lasted. */
  hangReported: (stall: Stall) => boolean
  /**
   * Whether a debugger server is open as the stall ends (asked per stall, never per request):
   * the stall may then be a breakpoint pause, which is not a block, and is not published.
   */
  debuggerServerOpen: () => boolean
  publish: (event: BlockEvent) => void
}

/** The BlockContext labels of a context, as known now. */
export function blockContextOf(context: LensContext | undefined): BlockContext {
  if (context === undefined) return NO_CONTEXT
  const labels = { method: context.method, route: context.currentRoute() ?? '', task: context.task }
  // OpenTelemetry (issue 4): the trace and span id of the request's span, when it has one.
  return context.span === undefined ? labels : withTraceIds(labels, context.span)
}

function keyOf(capture: Capture): unknown {
  return capture.context ?? capture.asyncId
}

/** Who held the loop for one part of a stall (one part = the whole stall, usually). */
export interface Segment {
  kind: BlockEvent['kind']
  context: LensContext | undefined
  frames: StackFrame[]
  culprit: StackFrame | undefined
  stackMissing: StackMissingReason | undefined
  startPerf: number
  endPerf: number
}

interface Seen {
  capture: Capture
  /** Parsed frames; undefined when the stack was rate-limited. */
  frames: StackFrame[] | undefined
}

/** The culprit most probes of a run agree on; its first stack is the sample. */
function culpritOfRun(run: Seen[]): Pick<Segment, 'frames' | 'culprit' | 'stackMissing'> {
  const votes = new Map<string, { count: number; frames: StackFrame[]; culprit: StackFrame }>()
  let best: { count: number; frames: StackFrame[]; culprit: StackFrame | undefined } | undefined
  for (const { frames } of run) {
    if (frames === undefined) continue
    const culprit = culpritOf(frames)
    if (culprit === undefined) {
      best ??= { count: 0, frames, culprit: undefined }
      continue
    }
    const key = `${culprit.file}:${culprit.line}:${culprit.functionName}`
    const vote = votes.get(key) ?? { count: 0, frames, culprit }
    vote.count++
    votes.set(key, vote)
    if (best === undefined || best.culprit === undefined || vote.count > best.count) best = vote
  }
  if (best === undefined) return { frames: [], culprit: undefined, stackMissing: 'rate-limited' }
  return { frames: best.frames, culprit: best.culprit, stackMissing: undefined }
}

/** Many short callbacks in one loop turn: nobody to blame, no culprit. */
function saturation(span: { startPerf: number; endPerf: number }): Segment {
  return {
    kind: 'saturation',
    context: undefined,
    frames: [],
    culprit: undefined,
    stackMissing: undefined,
    ...span,
  }
}

/**
 * Decide who held the loop from the probes taken inside the stall: one segment per long
 * callback, or one saturation segment; undefined when no probe ran inside it.
 */
export function attribute(
  captures: Capture[],
  stall: { startPerf: number; endPerf: number },
  blockThresholdMs: number,
): Segment[] | undefined {
  // A probe with no JavaScript under it ran after the stall, from the idle loop: not evidence.
  const inside: Seen[] = []
  for (const capture of captures) {
    if (capture.stack === undefined) {
      inside.push({ capture, frames: undefined })
      continue
    }
    const frames = dropProbeFrames(parseStack(capture.stack))
    if (frames.length > 0) inside.push({ capture, frames })
  }
  if (inside.length === 0) return undefined

  const runs: Seen[][] = []
  for (const seen of inside) {
    const last = runs.at(-1)
    if (last !== undefined && keyOf(last[0]!.capture) === keyOf(seen.capture)) last.push(seen)
    else runs.push([seen])
  }
  // A lone last probe after a long run is a straggler of that run.
  if (runs.length >= 2 && runs.at(-1)!.length === 1 && runs.at(-2)!.length >= 2) {
    runs.pop()
  }
  const whole = { startPerf: stall.startPerf, endPerf: stall.endPerf }

  if (runs.length === 1) {
    const run = runs[0]!
    const found = culpritOfRun(run)
    // One probe and no application frame: too little to blame anyone (a process descheduled by a
    // busy machine, or a GC pause, is probed wherever it resumes).
    if (run.length === 1 && found.culprit === undefined && found.stackMissing === undefined) {
      return [{ kind: 'unknown', context: undefined, ...found, ...whole }]
    }
    const context = run[0]!.capture.context
    // A request (or task) that began inside the stall, less than a threshold before its end,
    // cannot have held the loop for a threshold: the stall was other callbacks before it. This
    // is what a short saturated loop turn looks like when the worker had time for one probe.
    if (
      context !== undefined &&
      context.startTime > stall.startPerf &&
      stall.endPerf - context.startTime < blockThresholdMs
    ) {
      return [saturation(whole)]
    }
    return [{ kind: 'callback', context, ...found, ...whole }]
  }

  // Split the stall at the midpoints between runs.
  const bounds = runs.map((run, index) => ({
    run,
    startPerf:
      index === 0
        ? stall.startPerf
        : (runs[index - 1]!.at(-1)!.capture.time + run[0]!.capture.time) / 2,
    endPerf:
      index === runs.length - 1
        ? stall.endPerf
        : (run.at(-1)!.capture.time + runs[index + 1]![0]!.capture.time) / 2,
  }))
  const long = bounds.filter(
    (bound) => bound.run.length >= 2 && bound.endPerf - bound.startPerf >= blockThresholdMs,
  )
  if (long.length === 0) return [saturation(whole)]
  // Short runs between long ones are folded into the long run before them (or the first one).
  const segments: Segment[] = long.map((bound) => ({
    kind: 'callback',
    context: bound.run[0]!.capture.context,
    ...culpritOfRun(bound.run),
    startPerf: bound.startPerf,
    endPerf: bound.endPerf,
  }))
  segments[0]!.startPerf = stall.startPerf
  for (let i = 0; i < segments.length - 1; i++) segments[i]!.endPerf = segments[i + 1]!.startPerf
  segments.at(-1)!.endPerf = stall.endPerf
  return segments
}

export class BlockDetector {
  readonly #options: DetectorOptions
  /** The last synchronous request chain longer than the threshold (from the middleware). */
  #longSync: { context: LensContext; startPerf: number; endPerf: number } | undefined

  constructor(options: DetectorOptions) {
    this.#options = options
  }

  /**
   * Called by the heartbeat after each tick (`nowPerf`), once the stall it ended, if any, was
   * handled: nothing before it is needed any more, and nothing of a request may stay reachable —
   * the captures up to it are let go, and so is a long synchronous chain no stall claimed.
   */
  readonly afterTick = (nowPerf: number): void => {
    if (this.#longSync !== undefined && this.#longSync.endPerf <= nowPerf)
      this.#longSync = undefined
    this.#options.captures.readUpTo(nowPerf)
  }

  /** The instance closed: keep nothing. */
  close(): void {
    this.#longSync = undefined
    this.#options.captures.close()
  }

  /** Called by the request instrumentation when a synchronous chain ran ≥ threshold. */
  noteLongSync(context: LensContext, startPerf: number, endPerf: number): void {
    this.#longSync = { context, startPerf, endPerf }
  }

  /** The request whose synchronous chain covered most of the stall, if one did. */
  #fromLongSync(stall: Stall): LensContext | undefined {
    const longSync = this.#longSync
    if (longSync === undefined || longSync.endPerf < stall.startPerf) return undefined
    this.#longSync = undefined
    const overlap =
      Math.min(longSync.endPerf, stall.endPerf) - Math.max(longSync.startPerf, stall.startPerf)
    return overlap >= stall.durationMs / 2 ? longSync.context : undefined
  }

  /** Called by the heartbeat for every stall ≥ threshold. */
  readonly onStall = (stall: Stall): void => {
    // Nothing tells an app that its thread was paused (src/watchdog/debugger.ts): while a debugger
    // could have paused it, no stall is called a block. afterTick still lets its captures go.
    if (this.#options.debuggerServerOpen()) return
    const unavailable = this.#options.stacksUnavailable()
    const captures =
      unavailable === undefined
        ? this.#options.captures.between(stall.startPerf, stall.endPerf)
        : []
    let segments = attribute(captures, stall, this.#options.blockThresholdMs)
    const longSync = this.#fromLongSync(stall)
    const undecided =
      segments === undefined || (segments.length === 1 && segments[0]!.kind !== 'callback')
    if (longSync !== undefined && undecided) {
      // The middleware timed this request's synchronous chain over most of the stall: that is
      // exact, where probes are samples (too few of them on a starved machine, or none in native
      // code that returned just before the end). Its own probes, if any, give the culprit.
      const own = captures.filter((capture) => capture.context === longSync)
      const found = attribute(own, stall, this.#options.blockThresholdMs)?.[0]
      segments = [
        {
          kind: 'callback',
          context: longSync,
          frames: found?.frames ?? [],
          culprit: found?.culprit,
          stackMissing: found === undefined ? (unavailable ?? 'missed') : found.stackMissing,
          startPerf: stall.startPerf,
          endPerf: stall.endPerf,
        },
      ]
    }
    const hang = this.#options.hangReported(stall)
    if (segments === undefined) {
      this.#publish(
        {
          startTime: performance.timeOrigin + stall.startPerf,
          durationMs: stall.durationMs,
          kind: 'unknown',
          context: NO_CONTEXT,
          frames: [],
          culprit: undefined,
          stackMissing: unavailable ?? 'missed',
          hang,
        },
        undefined,
      )
      return
    }
    this.#chargeStacks(segments, captures)
    let longest = segments[0]!
    for (const segment of segments) {
      if (segment.endPerf - segment.startPerf > longest.endPerf - longest.startPerf)
        longest = segment
    }
    for (const segment of segments) {
      this.#publish(
        {
          startTime: performance.timeOrigin + segment.startPerf,
          durationMs: segment.endPerf - segment.startPerf,
          kind: segment.kind,
          context: NO_CONTEXT,
          frames: segment.frames,
          culprit: segment.culprit,
          stackMissing: segment.kind === 'saturation' ? undefined : segment.stackMissing,
          hang: hang && segment === longest,
        },
        segment.kind === 'callback' ? segment.context : undefined,
      )
    }
  }

  /**
   * The stall is a block: charge its stacks to the budget (once per stall). Over budget, its
   * events go out without them, as `rate-limited`. Stalls that end below the threshold never get
   * here, so they never spend the budget of real blocks (see watchdog/probe.ts).
   */
  #chargeStacks(segments: Segment[], captures: Capture[]): void {
    const withStack = segments.filter((segment) => segment.frames.length > 0)
    if (withStack.length === 0) return
    const stallId = captures.find((capture) => capture.stack !== undefined)?.stallId
    if (stallId === undefined || this.#options.chargeStack(stallId)) return
    for (const segment of withStack) {
      segment.frames = []
      segment.culprit = undefined
      segment.stackMissing = 'rate-limited'
    }
  }

  /**
   * Publish now, or — when the request has not been routed yet (a body parser blocked) — when it
   * ends, so the block carries the route the request finally matched.
   */
  #publish(event: BlockEvent, context: LensContext | undefined): void {
    if (context !== undefined) {
      context.blockedMs += event.durationMs
      if (!context.ended && context.req !== undefined && context.currentRoute() === undefined) {
        context.pendingBlocks ??= []
        context.pendingBlocks.push(event)
        return
      }
    }
    event.context = blockContextOf(context)
    this.#options.publish(event)
  }

  /** The request or task ended: publish the blocks that waited for its route. */
  contextEnded(context: LensContext): void {
    const pending = context.pendingBlocks
    if (pending === undefined) return
    context.pendingBlocks = undefined
    const labels = blockContextOf(context)
    for (const event of pending) {
      event.context = labels
      this.#options.publish(event)
    }
  }
}
