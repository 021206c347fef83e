/**
 * Turns measured stalls into BlockEvents: the heartbeat says when and how long, the probe
 * captures (watchdog) and the middleware's synchronous timing say who and where.
 */
import { performance } from 'node:perf_hooks'
import type { LensContext } from '../context/context.js'
import type { Stall } from '../monitor/heartbeat.js'
import type { BlockContext, BlockEvent, StackMissingReason } from '../types.js'

const NO_CONTEXT: BlockContext = Object.freeze({ method: '', route: '', task: '' })

export interface DetectorOptions {
  blockThresholdMs: number
  /** Why events carry no stack when no probe ran (no watchdog, or it is down). */
  stackMissing: () => StackMissingReason
  publish: (event: BlockEvent) => void
}

/** The BlockContext labels of a context, as known now. */
export function blockContextOf(context: LensContext | undefined): BlockContext {
  if (context === undefined) return NO_CONTEXT
  return { method: context.method, route: context.currentRoute() ?? '', task: context.task }
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

  /** Called by the heartbeat for every stall ≥ threshold. */
  readonly onStall = (stall: Stall): void => {
    let context: LensContext | undefined
    let kind: BlockEvent['kind'] = 'unknown'
    const longSync = this.#longSync
    // The request whose synchronous chain covers most of the stall held the loop.
    if (longSync !== undefined && longSync.endPerf >= stall.startPerf) {
      const overlap =
        Math.min(longSync.endPerf, stall.endPerf) - Math.max(longSync.startPerf, stall.startPerf)
      if (overlap >= stall.durationMs / 2) {
        context = longSync.context
        kind = 'callback'
      }
      this.#longSync = undefined
    }
    const event: BlockEvent = {
      startTime: performance.timeOrigin + stall.startPerf,
      durationMs: stall.durationMs,
      kind,
      context: NO_CONTEXT,
      frames: [],
      culprit: undefined,
      stackMissing: this.#options.stackMissing(),
      hang: false,
    }
    this.#attribute(event, context)
  }

  /**
   * Publish now, or — when the request has not been routed yet (a body parser blocked) — when it
   * ends, so the block carries the route the request finally matched.
   */
  #attribute(event: BlockEvent, context: LensContext | undefined): void {
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
