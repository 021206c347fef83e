/**
 * One internal event per block; every exporter subscribes here. Publishing never throws and a
 * subscriber that throws is reported once (OpenTelemetry's safeExecuteInTheMiddle idea).
 */
import diagnosticsChannel from 'node:diagnostics_channel'
import type { BlockEvent } from '../types.js'
import type { Warnings } from '../util/warnings.js'

/** The public diagnostics_channel every block is published on, for any instance. */
export const BLOCK_CHANNEL_NAME = 'looplens:block'
const blockChannel = diagnosticsChannel.channel(BLOCK_CHANNEL_NAME)

export type BlockSubscriber = (event: BlockEvent) => void

export class BlockPublisher {
  readonly #internal: BlockSubscriber[] = []
  readonly #listeners: BlockSubscriber[] = []
  readonly #warnings: Warnings

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
    if (blockChannel.hasSubscribers) {
      try {
        blockChannel.publish(event)
      } catch (error) {
        this.#warnings.once(
          'LOOPLENS_CHANNEL_SUBSCRIBER_FAILED',
          `a subscriber of diagnostics_channel "${BLOCK_CHANNEL_NAME}" threw`,
          error,
        )
      }
    }
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
