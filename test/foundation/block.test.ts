/**
 * Stall detection: a 100 ms busy stall is one BlockEvent of 100 ms ± 10 ms; stalls below the
 * threshold are none. The heartbeat measures a stall after the fact, so measuring in-process is
 * sound; the request-attributed case runs the server in a child process.
 */
import diagnosticsChannel from 'node:diagnostics_channel'
import { BLOCK_CHANNEL_NAME, type BlockEvent, createLooplens } from 'looplens'
import { afterEach, describe, expect, it } from 'vitest'
import { type Fixture, startFixture } from '../helpers/fixture.js'
import { busy } from '../helpers/server.js'

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Wait until `events` has `count` entries (or `timeoutMs` passed). */
async function waitFor(events: unknown[], count: number, timeoutMs = 2_000): Promise<void> {
  const deadline = performance.now() + timeoutMs
  while (events.length < count && performance.now() < deadline) await sleep(10)
}

describe('stall detection in-process', () => {
  const cleanups: (() => unknown)[] = []
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
  })

  it('turns a 100 ms busy stall in a timer into exactly one BlockEvent of 100 ms ± 10 ms', async () => {
    const lens = createLooplens({ blockThresholdMs: 50 })
    cleanups.push(() => lens.close())
    const events: BlockEvent[] = []
    const published: unknown[] = []
    lens.on('block', (event) => events.push(event))
    const onChannel = (message: unknown) => published.push(message)
    diagnosticsChannel.subscribe(BLOCK_CHANNEL_NAME, onChannel)
    cleanups.push(() => diagnosticsChannel.unsubscribe(BLOCK_CHANNEL_NAME, onChannel))
    await sleep(100)

    let stallStart = 0
    setTimeout(function stallFor100ms() {
      stallStart = performance.timeOrigin + performance.now()
      busy(100)
    }, 20)
    await waitFor(events, 1)
    await sleep(300) // nothing else may follow

    expect(events).toHaveLength(1)
    const [event] = events as [BlockEvent]
    expect(event.durationMs).toBeGreaterThanOrEqual(90)
    expect(event.durationMs).toBeLessThanOrEqual(110)
    expect(Math.abs(event.startTime - stallStart)).toBeLessThanOrEqual(10)
    expect(event.context).toMatchObject({ method: '', route: '', task: '' })
    expect(event.hang).toBe(false)
    expect(Array.isArray(event.frames)).toBe(true)
    // The same event object goes to the diagnostics_channel.
    expect(published).toEqual([event])
  })

  it('emits nothing for stalls below the threshold', async () => {
    const lens = createLooplens({ blockThresholdMs: 50 })
    cleanups.push(() => lens.close())
    const events: BlockEvent[] = []
    lens.on('block', (event) => events.push(event))
    await sleep(50)
    for (let i = 0; i < 5; i++) {
      await new Promise<void>((resolve) =>
        setTimeout(function stallFor30ms() {
          busy(30)
          resolve()
        }, 40),
      )
    }
    await sleep(100)
    expect(events).toEqual([])
    expect(lens.snapshot().blocks.count).toBe(0)
  })

  it('counts each of several stalls once, in snapshot() too', async () => {
    const lens = createLooplens({ blockThresholdMs: 20 })
    cleanups.push(() => lens.close())
    const events: BlockEvent[] = []
    lens.on('block', (event) => events.push(event))
    await sleep(50)
    for (const ms of [60, 80]) {
      await new Promise<void>((resolve) =>
        setTimeout(() => {
          busy(ms)
          resolve()
        }, 40),
      )
    }
    await waitFor(events, 2)
    await sleep(100)
    expect(events).toHaveLength(2)
    expect(Math.abs(events[0]!.durationMs - 60)).toBeLessThanOrEqual(10)
    expect(Math.abs(events[1]!.durationMs - 80)).toBeLessThanOrEqual(10)
    const { blocks } = lens.snapshot()
    expect(blocks.count).toBe(2)
    expect(blocks.maxMs).toBe(events[1]!.durationMs)
  })
})

describe('stall detection in a server (child process)', () => {
  let fixture: Fixture | undefined
  afterEach(async () => {
    await fixture?.stop()
    fixture = undefined
  })

  it('reports a 100 ms handler as one BlockEvent with its route, and a 20 ms one not at all', async () => {
    fixture = await startFixture('foundation-app.js', { env: { BLOCK_THRESHOLD_MS: '50' } })
    expect((await fetch(`${fixture.url}/busy/20`)).status).toBe(200)
    expect((await fetch(`${fixture.url}/busy/100`)).status).toBe(200)
    const [event] = await fixture.waitForEvents(1)
    await sleep(300)
    expect(fixture.events).toHaveLength(1)
    expect(event!.durationMs).toBeGreaterThanOrEqual(90)
    expect(event!.durationMs).toBeLessThanOrEqual(110)
    expect(event!.context).toMatchObject({ method: 'GET', route: '/busy/:ms', task: '' })
  })
})
