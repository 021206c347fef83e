/**
 * One internal event per block; every exporter subscribes here. Publishing never throws and an
 * exporter or listener that throws is reported once (OpenTelemetry's safeExecuteInTheMiddle
 * idea). The public diagnostics_channel gets each stall once per process, whichever instance
 * measured it first.
 */
import diagnosticsChannel from 'node:diagnostics_channel'
import type { BlockEvent } from '../types.js'
import type { Warnings } from '../util/warnings.js'

/** The public diagnostics_channel every block is published on, once per process. */
export const BLOCK_CHANNEL_NAME = 'looplens:block'
const blockChannel = diagnosticsChannel.channel(BLOCK_CHANNEL_NAME)

/** A block some instance put on the channel: its owner and its span on the wall clock. */
interface ChannelSpan {
  /** The publishing instance's own token (not the instance: a closed one is not kept alive). */
  owner: symbol
  start: number
  end: number
}

/**
 * Process-wide: the latest blocks published on the channel. Every instance measures the same
 * stalls — the preload's and the app's own — and the channel is one for the whole process, so
 * each stall must go out once. Spans of distinct stalls never overlap (a loop turn separates
 * them); spans of one stall measured by two instances do. Kept on `globalThis` under a versioned
 * symbol (like the probe) so that two copies of looplens in one process — a preload installed
 * apart from the app's own — share it too. A bounded ring: a stall published by an instance whose
 * route was pending (published when the request ends) is still found among the last few dozen.
 */
const channelSpans = sharedChannelSpans()
const MAX_CHANNEL_SPANS = 64

/**
 * Whether `owner` may put this block on the channel: not when another instance already published
 * an overlapping one (the same stall). One instance's own segments of one stall never overlap
 * each other, and all of them go out.
 */
function claimChannelSpan(owner: symbol, event: BlockEvent): boolean {
  const start = event.startTime
  const end = start + event.durationMs
  for (const span of channelSpans) {
    if (span.owner !== owner && span.start < end && start < span.end) return false
  }
  channelSpans.push({ owner, start, end })
  if (channelSpans.length > MAX_CHANNEL_SPANS) channelSpans.shift()
  return true
}

function sharedChannelSpans(): ChannelSpan[] {
  const key = Symbol.for('looplens.channelSpans.v1')
  const holder = globalThis as Record<symbol, unknown>
  if (!Array.isArray(holder[key])) {
    Object.defineProperty(globalThis, key, { value: [], configurable: true, enumerable: false })
  }
  return holder[key] as ChannelSpan[]
}

export type BlockSubscriber = (event: BlockEvent) => void

export class BlockPublisher {
  readonly #internal: BlockSubscriber[] = []
  readonly #listeners: BlockSubscriber[] = []
  readonly #warnings: Warnings
  /** Who published a span on the channel (see claimChannelSpan). */
  readonly #channelToken = Symbol('looplens instance')

  constructor(warnings: Warnings) {
    this.#warnings = warnings
  }

  /** Exporters (Prometheus, OpenTelemetry, the report): called first, in order of subscription. */
  subscribeInternal(subscriber: BlockSubscriber): void {
    this.#internal.push(subscriber)
  }

  /** `lens.on('block', listener)`. */
  addListener(listener: BlockSubscriber): void {
    this.#listeners.push(listener)
  }

  removeListener(listener: BlockSubscriber): void {
    const index = this.#listeners.lastIndexOf(listener)
    if (index !== -1) this.#listeners.splice(index, 1)
  }

  publish(event: BlockEvent): void {
    for (const subscriber of this.#internal) {
      try {
        subscriber(event)
      } catch (error) {
        this.#warnings.once(
          'LOOPLENS_EXPORTER_FAILED',
          `an exporter failed on a block event`,
          error,
        )
      }
    }
    // A subscriber of the channel that throws cannot be contained here: `Channel.publish` catches
    // it and rethrows it on the next tick as an uncaught exception of the process (Node's
    // documented behaviour, the same on Node 20, 22 and 24). Wrapping the call in try/catch never
    // sees it; only patching Node's channel would, and looplens does not patch Node. The README
    // says so; looplens itself never subscribes to this channel.
    if (blockChannel.hasSubscribers && claimChannelSpan(this.#channelToken, event))
      blockChannel.publish(event)
    for (const listener of [...this.#listeners]) {
      try {
        listener(event)
      } catch (error) {
        this.#warnings.once(
          'LOOPLENS_LISTENER_FAILED',
          `a 'block' listener threw; further errors of listeners are not reported`,
          error,
        )
      }
    }
  }
}
