/**
 * Stall detection: a 100 ms busy stall is one BlockEvent of 100 ms ± 10 ms; stalls below the
 * threshold are none. The heartbeat measures a stall after the fact, so measuring in-process is
 * sound; the request-attributed case runs the server in a child process.
 *
 * On a shared 2-core machine a process can be descheduled in the middle of a test, and then its
 * loop really does stall longer than the test asked. Each test watches its own loop
 * (test/helpers/gaps.ts) and re-runs an attempt the machine disturbed; the tolerances are the
 * contract's.
 */
import { spawnSync } from 'node:child_process'
import diagnosticsChannel from 'node:diagnostics_channel'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { BLOCK_CHANNEL_NAME, type BlockEvent, createLooplens } from 'looplens'
import { afterEach, describe, expect, it } from 'vitest'
import { type Fixture, startFixture } from '../helpers/fixture.js'
import { cleanAttempt, type LoopGap, watchLoopGaps } from '../helpers/gaps.js'
import { busy } from '../helpers/server.js'

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
const TRIES = 3
const BELOW_THRESHOLD_FIXTURE = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  '../fixtures/foundation-below-threshold.js',
)

/** Wait until `events` has `count` entries (or `timeoutMs` passed). */
async function waitFor(events: unknown[], count: number, timeoutMs = 2_000): Promise<void> {
  const deadline = performance.now() + timeoutMs
  while (events.length < count && performance.now() < deadline) await sleep(10)
}

function describeGaps(gaps: LoopGap[]): string {
  return `observed gaps: ${gaps.map((gap) => `${gap.durationMs.toFixed(1)} ms`).join(', ') || 'none'}`
}

describe('stall detection in-process', () => {
  it('turns a 100 ms busy stall in a timer into exactly one BlockEvent of 100 ms ± 10 ms', async () => {
    const run = await cleanAttempt(TRIES, async () => {
      const lens = createLooplens({ blockThresholdMs: 50 })
      const events: BlockEvent[] = []
      const published: unknown[] = []
      lens.on('block', (event) => events.push(event))
      const onChannel = (message: unknown) => published.push(message)
      diagnosticsChannel.subscribe(BLOCK_CHANNEL_NAME, onChannel)
      await sleep(100)
      const watch = watchLoopGaps(20)
      let stallStart = 0
      setTimeout(function stallFor100ms() {
        stallStart = performance.timeOrigin + performance.now()
        busy(100)
      }, 20)
      await waitFor(events, 1)
      await sleep(300) // nothing else may follow
      watch.stop()
      diagnosticsChannel.unsubscribe(BLOCK_CHANNEL_NAME, onChannel)
      await lens.close()
      const stall = watch.gaps.filter((gap) => gap.durationMs >= 90)
      const other = watch.gaps.filter((gap) => gap.durationMs >= 25 && gap.durationMs < 90)
      return {
        clean: stall.length === 1 && stall[0]!.durationMs <= 105 && other.length === 0,
        result: { events, published, stallStart },
        observed: describeGaps(watch.gaps),
      }
    })

    expect(run.events).toHaveLength(1)
    const [event] = run.events as [BlockEvent]
    expect(event.durationMs).toBeGreaterThanOrEqual(90)
    expect(event.durationMs).toBeLessThanOrEqual(110)
    expect(Math.abs(event.startTime - run.stallStart)).toBeLessThanOrEqual(10)
    expect(event.context).toMatchObject({ method: '', route: '', task: '' })
    expect(event.hang).toBe(false)
    expect(Array.isArray(event.frames)).toBe(true)
    // The same event object goes to the diagnostics_channel.
    expect(run.published).toEqual([event])
  })

  it('emits nothing for stalls below the threshold', () => {
    // It flaked on a loaded machine (CI, 380/381): the machine, not looplens, stretched stalls —
    // in the test runner's process a GC of the runner's garbage (its helper threads waiting for
    // a CPU) stalled the loop 90-150 ms in the middle of the 30 ms stalls, and the kernel can take
    // the CPU away in the last moments of a 30 ms spin and give it back 20-70 ms later, so the
    // spin really ends past the threshold. A re-run of "disturbed" attempts, judged by gaps
    // between the ticks of a 1 ms interval, let such a stall through (the tick after a spin can
    // fall inside it). So the stalls now run in a fresh process, nothing is re-run, and every
    // block looplens reports must match a stall of ≥ 45 ms that the process saw of its own loop
    // (a spin's real length, or a gap between two ticks); on an undisturbed run there is none.
    const run = spawnSync(process.execPath, [BELOW_THRESHOLD_FIXTURE], {
      encoding: 'utf8',
      timeout: 20_000,
    })
    expect(run.status, run.stderr).toBe(0)
    const result = JSON.parse(run.stdout.trim().split('\n').at(-1) ?? '{}') as {
      events: [number, number][]
      stalls: [number, number][]
      blocks: number
    }
    const long = result.stalls.filter(([start, end]) => end - start >= 45)
    const madeUp = result.events.filter(
      ([start, end]) => !long.some(([from, to]) => from < end && to > start),
    )
    const seen = `own stalls: ${result.stalls.map(([start, end]) => `${(end - start).toFixed(1)} ms`).join(', ')}; blocks: ${result.events.map(([start, end]) => `${(end - start).toFixed(1)} ms`).join(', ') || 'none'}`
    expect(madeUp, seen).toEqual([])
    expect(result.blocks, seen).toBe(result.events.length)
  })

  it('counts each of several stalls once, in snapshot() too', async () => {
    // Judged against the stalls this process saw of its own loop, not against the spins' nominal
    // lengths: on a loaded machine the process is also descheduled, and those stalls are real too.
    const lens = createLooplens({ blockThresholdMs: 20 })
    const events: BlockEvent[] = []
    lens.on('block', (event) => events.push(event))
    await sleep(50)
    const watch = watchLoopGaps(15)
    const spins: { startPerf: number; endPerf: number }[] = []
    for (const ms of [60, 80]) {
      await new Promise<void>((resolve) =>
        setTimeout(() => {
          const startPerf = performance.now()
          busy(ms)
          spins.push({ startPerf, endPerf: performance.now() })
          resolve()
        }, 40),
      )
    }
    await waitFor(events, 2)
    await sleep(100)
    watch.stop()
    const snapshot = lens.snapshot()
    await lens.close()
    const observed = describeGaps(watch.gaps)
    const span = (event: BlockEvent) => {
      const startPerf = event.startTime - performance.timeOrigin
      return { startPerf, endPerf: startPerf + event.durationMs }
    }
    const overlaps = (a: { startPerf: number; endPerf: number }, b: LoopGap) =>
      a.startPerf < b.startPerf + b.durationMs && b.startPerf < a.endPerf
    for (const spin of spins) {
      const covering = events.filter((event) => {
        const { startPerf, endPerf } = span(event)
        return startPerf < spin.endPerf && spin.startPerf < endPerf
      })
      // Each spin is one block, as long as the stall the process saw around it.
      expect(covering, observed).toHaveLength(1)
      const gap = watch.gaps.find(
        (candidate) =>
          candidate.startPerf <= spin.startPerf + 1 &&
          candidate.startPerf + candidate.durationMs >= spin.endPerf - 1,
      )
      expect(gap, observed).toBeDefined()
      expect(Math.abs(covering[0]!.durationMs - gap!.durationMs), observed).toBeLessThanOrEqual(10)
    }
    // Any other block is a stall the process saw too (the machine's), never an invented one.
    for (const event of events) {
      expect(
        watch.gaps.some((gap) => overlaps(span(event), gap)),
        `${JSON.stringify(span(event))} ${observed}`,
      ).toBe(true)
    }
    expect(snapshot.blocks.count).toBe(events.length)
    expect(snapshot.blocks.maxMs).toBe(Math.max(...events.map((event) => event.durationMs)))
  })
})

describe('stall detection in a server (child process)', () => {
  let fixture: Fixture | undefined
  afterEach(async () => {
    await fixture?.stop()
    fixture = undefined
  })

  it('reports a 100 ms handler as one BlockEvent with its route, and a 20 ms one not at all', async () => {
    const server = await startFixture('foundation-app.js', {
      env: { BLOCK_THRESHOLD_MS: '50', GAP_MONITOR: '1' },
    })
    fixture = server
    const run = await cleanAttempt(TRIES, async () => {
      const eventsBefore = server.events.length
      const messagesBefore = server.messages.length
      expect((await fetch(`${server.url}/busy/20`)).status).toBe(200)
      expect((await fetch(`${server.url}/busy/100`)).status).toBe(200)
      await server.waitForEvents(eventsBefore + 1)
      await sleep(300)
      const events = server.events.slice(eventsBefore)
      const gaps = server.messages
        .slice(messagesBefore)
        .filter((message) => (message as { type?: string }).type === 'gap') as LoopGap[]
      const long = gaps.filter((gap) => gap.durationMs >= 40)
      return {
        // Clean: the server's loop stalled once (the 100 ms handler with its request around it)
        // and the 20 ms handler stayed far below the threshold.
        clean: long.length === 1 && long[0]!.durationMs <= 115,
        result: { events, gap: long[0]! },
        observed: describeGaps(gaps),
      }
    })
    expect(run.events).toHaveLength(1)
    const [event] = run.events as [BlockEvent]
    // The stall is the handler's 100 ms plus the request handling around it, as the server
    // observed it: the measured duration is within 10 ms of that, and at least the 100 ms.
    expect(event.durationMs).toBeGreaterThanOrEqual(90)
    expect(Math.abs(event.durationMs - run.gap.durationMs)).toBeLessThanOrEqual(10)
    expect(event.context).toMatchObject({ method: 'GET', route: '/busy/:ms', task: '' })
  })
})
