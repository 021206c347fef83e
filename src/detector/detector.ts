/**
 * Turns measured stalls into BlockEvents: the heartbeat says when and how long; the probe
 * captures (taken inside the stall by the watchdog) and the middleware's synchronous timing say
 * who and where.
 *
 * Single callback or saturation? The worker probes several times during a stall (every quarter
 * threshold at first). One long callback is seen by every probe in the same request/task context
 * and the same async resource; a saturated loop iteration (many short callbacks back to back) is
 * seen in different ones. The last probe may land just after the stall ended (it was sent while
 * the loop was still stuck), so it alone cannot turn a callback into saturation.
 */
import { performance } from 'node:perf_hooks'
import type { LensContext } from '../context/context.js'
import type { Stall } from '../monitor/heartbeat.js'
import { withTraceIds } from '../otel/capture.js'
import { culpritOf, dropProbeFrames, parseStack } from '../stack/frames.js'
import type { BlockContext, BlockEvent, StackFrame, StackMissingReason } from '../types.js'
import type { Capture } from '../watchdog/probe.js'

const NO_CONTEXT: BlockContext = Object.freeze({ method: '', route: '', task: '' })

export interface DetectorOptions {
  /** Why events carry no stack when no probe could run (no watchdog, or it is down); undefined
   * when the watchdog is active. */
  stacksUnavailable: () => StackMissingReason | undefined
  /** Probe captures taken on the main thread between two performance.now() times. */
  capturesBetween: (startPerf: number, endPerf: number) => Capture[]
  /** Whether the worker reported this stall as a hang while it lasted. */
  hangReported: (stall: Stall) => boolean
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

interface Attribution {
  kind: BlockEvent['kind']
  context: LensContext | undefined
  frames: StackFrame[]
  culprit: StackFrame | undefined
  stackMissing: StackMissingReason | undefined
}

/** Decide who held the loop from the probes taken inside the stall. */
export function attribute(captures: Capture[]): Attribution | undefined {
  // A probe with no JavaScript under it ran after the stall, from the idle loop: not evidence.
  const inside: { capture: Capture; frames: StackFrame[] | undefined }[] = []
  for (const capture of captures) {
    if (capture.stack === undefined) {
      inside.push({ capture, frames: undefined })
      continue
    }
    const frames = dropProbeFrames(parseStack(capture.stack))
    if (frames.length > 0) inside.push({ capture, frames })
  }
  if (inside.length === 0) return undefined

  const first = keyOf(inside[0]!.capture)
  const disagreeing = inside.filter(({ capture }) => keyOf(capture) !== first).length
  const lastDisagrees = keyOf(inside[inside.length - 1]!.capture) !== first
  // A late last probe is forgiven only when at least two probes before it agree: two probes that
  // saw two different callbacks are saturation, not one callback and a straggler.
  const single = disagreeing === 0 || (disagreeing === 1 && lastDisagrees && inside.length - 1 >= 2)
  if (!single) {
    return {
      kind: 'saturation',
      context: undefined,
      frames: [],
      culprit: undefined,
      stackMissing: undefined,
    }
  }

  // The culprit most probes agree on; its first stack is the sample.
  const agreeing = inside.filter(({ capture }) => keyOf(capture) === first)
  const votes = new Map<string, { count: number; frames: StackFrame[]; culprit: StackFrame }>()
  let best: { count: number; frames: StackFrame[]; culprit: StackFrame | undefined } | undefined
  for (const { frames } of agreeing) {
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
  return {
    kind: 'callback',
    context: agreeing[0]!.capture.context,
    frames: best?.frames ?? [],
    culprit: best?.culprit,
    stackMissing: best === undefined ? 'rate-limited' : undefined,
  }
}

export class BlockDetector {
  readonly #options: DetectorOptions
  /** The last synchronous request chain longer than the threshold (from the middleware). */
  #longSync: { context: LensContext; startPerf: number; endPerf: number } | undefined

  constructor(options: DetectorOptions) {
    this.#options = options
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
    const unavailable = this.#options.stacksUnavailable()
    const captures =
      unavailable === undefined ? this.#options.capturesBetween(stall.startPerf, stall.endPerf) : []
    let found = attribute(captures)
    const longSync = this.#fromLongSync(stall)
    if (found === undefined && longSync !== undefined) {
      // No probe ran inside (no watchdog, or native code that returned just before the end):
      // the middleware saw this request hold the loop synchronously.
      found = {
        kind: 'callback',
        context: longSync,
        frames: [],
        culprit: undefined,
        stackMissing: unavailable ?? 'missed',
      }
    }
    const event: BlockEvent = {
      startTime: performance.timeOrigin + stall.startPerf,
      durationMs: stall.durationMs,
      kind: found?.kind ?? 'unknown',
      context: NO_CONTEXT,
      frames: found?.frames ?? [],
      culprit: found?.culprit,
      stackMissing:
        found === undefined
          ? (unavailable ?? 'missed')
          : found.kind === 'saturation'
            ? undefined
            : found.stackMissing,
      hang: this.#options.hangReported(stall),
    }
    this.#publish(event, found?.context)
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
