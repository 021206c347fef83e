/**
 * The public `looplens:block` diagnostics_channel carries each stall once per process, however
 * many instances watch it (the preload's and the app's own, typically). The stall is made in this
 * very process on purpose: no HTTP is involved.
 */
import diagnosticsChannel from 'node:diagnostics_channel'
import { setTimeout as sleep } from 'node:timers/promises'
import { BLOCK_CHANNEL_NAME, type BlockEvent, createLooplens, type Looplens } from 'looplens'
import { afterEach, describe, expect, it } from 'vitest'

const lenses: Looplens[] = []
afterEach(async () => {
  await Promise.all(lenses.splice(0).map((lens) => lens.close()))
})

/**
 * Hold the loop for `ms`, asleep in a synchronous call: a stall of the app's whatever the load
 * (a busy loop on a starved machine is mostly waiting for a CPU, which is not the app's block).
 */
function stallFor(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms)
}

function spanOf(event: BlockEvent): [number, number] {
  return [event.startTime, event.startTime + event.durationMs]
}

function overlapsSpan(event: BlockEvent, start: number, end: number): boolean {
  const [eventStart, eventEnd] = spanOf(event)
  return eventStart < end && start < eventEnd
}

function overlaps(a: BlockEvent, b: BlockEvent): boolean {
  const [aStart, aEnd] = spanOf(a)
  const [bStart, bEnd] = spanOf(b)
  return aStart < bEnd && bStart < aEnd
}

async function waitUntil(done: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs
  while (!done() && performance.now() < deadline) await sleep(20)
}

describe('diagnostics_channel looplens:block', () => {
  it('publishes one message per stall when two instances watch the same process', async () => {
    const first = createLooplens({ blockThresholdMs: 50, captureStacks: false })
    const second = createLooplens({ blockThresholdMs: 50, captureStacks: false })
    lenses.push(first, second)
    const seenByFirst: BlockEvent[] = []
    const seenBySecond: BlockEvent[] = []
    first.on('block', (event) => seenByFirst.push(event))
    second.on('block', (event) => seenBySecond.push(event))
    const published: BlockEvent[] = []
    const onChannel = (message: unknown) => published.push(message as BlockEvent)
    // Our two stalls, as wall-clock spans (the clock of BlockEvent.startTime).
    const stalls: [number, number][] = []
    const covered = (events: BlockEvent[]) =>
      stalls.every(([start, end]) => events.some((event) => overlapsSpan(event, start, end)))
    diagnosticsChannel.subscribe(BLOCK_CHANNEL_NAME, onChannel)
    try {
      await sleep(100)
      // Two stalls, a loop turn apart: two messages, not four (and not one).
      for (let stall = 0; stall < 2; stall++) {
        await sleep(150)
        const start = performance.timeOrigin + performance.now()
        stallFor(200)
        stalls.push([start, performance.timeOrigin + performance.now()])
      }
      await waitUntil(() => covered(seenByFirst) && covered(seenBySecond), 3_000)
      await sleep(300)
    } finally {
      diagnosticsChannel.unsubscribe(BLOCK_CHANNEL_NAME, onChannel)
    }
    // Both instances measured at least one of our stalls: the case where both would publish it.
    const describe = (events: BlockEvent[]) =>
      events.map((event) => `${event.kind} ${Math.round(event.durationMs)} ms`).join(', ')
    const seen = `stalls ${stalls.map(([start, end]) => Math.round(end - start)).join(', ')} ms; first: ${describe(seenByFirst)}; second: ${describe(seenBySecond)}; channel: ${describe(published)}`
    expect(
      stalls.some(([start, end]) =>
        [seenByFirst, seenBySecond].every((events) =>
          events.some((event) => overlapsSpan(event, start, end)),
        ),
      ),
      seen,
    ).toBe(true)
    // The channel carried each stall once. A loaded machine may add stalls of its own: whatever
    // they are, no two messages are the same stall, and every stall either instance saw is on
    // the channel.
    for (const [index, message] of published.entries()) {
      for (const other of published.slice(index + 1)) {
        expect(overlaps(message, other), seen).toBe(false)
      }
    }
    for (const event of [...seenByFirst, ...seenBySecond]) {
      expect(
        published.some((message) => overlaps(message, event)),
        seen,
      ).toBe(true)
    }
  })
})
