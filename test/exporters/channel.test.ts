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

function busy(ms: number): void {
  const end = performance.now() + ms
  while (performance.now() < end) {
    // Hold the loop on purpose.
  }
}

function spanOf(event: BlockEvent): [number, number] {
  return [event.startTime, event.startTime + event.durationMs]
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
    diagnosticsChannel.subscribe(BLOCK_CHANNEL_NAME, onChannel)
    try {
      await sleep(100)
      // Two stalls, a loop turn apart: two messages, not four (and not one).
      for (let stall = 0; stall < 2; stall++) {
        await sleep(150)
        busy(200)
      }
      await waitUntil(() => seenByFirst.length >= 2 && seenBySecond.length >= 2, 5_000)
      await sleep(300)
    } finally {
      diagnosticsChannel.unsubscribe(BLOCK_CHANNEL_NAME, onChannel)
    }
    const ours = (event: BlockEvent) => event.durationMs >= 150
    expect(seenByFirst.filter(ours)).toHaveLength(2)
    expect(seenBySecond.filter(ours)).toHaveLength(2)
    // A loaded machine may add short stalls of its own: whatever they are, every stall either
    // instance saw is on the channel exactly once, and no two messages are the same stall.
    expect(published.filter(ours)).toHaveLength(2)
    for (const event of [...seenByFirst, ...seenBySecond]) {
      expect(published.filter((message) => overlaps(message, event))).toHaveLength(1)
    }
    for (const [index, message] of published.entries()) {
      for (const other of published.slice(index + 1)) expect(overlaps(message, other)).toBe(false)
    }
  })
})
