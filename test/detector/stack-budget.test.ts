/**
 * The stack budget (`maxStacksPerMinute`, 60 by default) is spent on blocks, not on stalls that
 * end below the threshold. The watchdog probes a stall from half the threshold on, before anyone
 * knows how long it will last; a stream of near-threshold stalls used to take every token, and
 * the real blocks that followed came back `rate-limited`.
 *
 * In-process, with real busy loops (the heartbeat measures a stall after the fact, the watchdog
 * worker probes it while it lasts). What is asserted is counts, not timings. A loaded machine
 * may stretch a short stall past the threshold: that is a real block, and it spends a token as a
 * block should. The tests count those and account for them.
 */
import { type BlockEvent, createLooplens } from 'looplens'
import { describe, expect, it } from 'vitest'
import { busy } from '../helpers/server.js'

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Run `work` in a timer callback of its own, `delayMs` from now (a stall of its own). */
function stallIn(delayMs: number, work: () => void): Promise<void> {
  return new Promise((resolve) =>
    setTimeout(() => {
      work()
      resolve()
    }, delayMs),
  )
}

/** Whether an event carries a stack through the given function. */
function hasStackThrough(event: BlockEvent, functionName: string): boolean {
  return (
    event.stackMissing === undefined &&
    event.frames.some((frame) => frame.functionName.includes(functionName))
  )
}

interface Run {
  /** Short stalls the machine stretched into blocks that took a stack (each spent a token). */
  stretchedWithStacks: number
  /** Events of the real blocks. */
  real: BlockEvent[]
  seen: string
}

/** `short` stalls of 40 ms, then `blocks` real blocks of 150 ms, under a 50 ms threshold. */
async function runStalls(
  short: number,
  blocks: number,
  maxStacksPerMinute: number | undefined,
): Promise<Run> {
  const lens = createLooplens({ blockThresholdMs: 50, hangReportMs: 0, maxStacksPerMinute })
  const events: BlockEvent[] = []
  lens.on('block', (event) => events.push(event))
  try {
    const deadline = Date.now() + 5_000
    while (!lens.snapshot().stacks.active && Date.now() < deadline) await sleep(10)
    expect(lens.snapshot().stacks.active).toBe(true)
    // Each is probed (the first probe comes at 25 ms); none is a block on an undisturbed machine.
    for (let i = 0; i < short; i++) {
      await stallIn(5, function nearlyBlocking() {
        busy(40)
      })
    }
    await sleep(50)
    const stretched = events.length
    const stretchedWithStacks = events.filter((event) => event.stackMissing === undefined).length
    // ≥ 2 × threshold: the worker always has time to probe these while they last.
    for (let i = 0; i < blocks; i++) {
      await stallIn(20, function reallyBlocking() {
        busy(150)
      })
    }
    const waitUntil = Date.now() + 5_000
    while (events.length < stretched + blocks && Date.now() < waitUntil) await sleep(10)
    const real = events.slice(stretched)
    const seen = `${stretched} of ${short} short stalls were stretched into blocks by the machine (${stretchedWithStacks} with stacks); real blocks: ${real.map((event) => `${event.durationMs.toFixed(0)} ms ${event.stackMissing ?? (hasStackThrough(event, 'reallyBlocking') ? 'stack' : 'other stack')}`).join(', ')}`
    return { stretchedWithStacks, real, seen }
  } finally {
    await lens.close()
  }
}

describe('stack budget', () => {
  it('still has stacks for real blocks after 200 stalls of 40 ms below a 50 ms threshold', async () => {
    let run = await runStalls(200, 10, undefined)
    // More than 45 stretched blocks with stacks leave fewer than 15 of the 60 tokens: then the
    // machine, not the stalls below the threshold, spent the budget. Try again (twice at most).
    for (let retry = 0; retry < 2 && run.stretchedWithStacks > 45; retry++) {
      run = await runStalls(200, 10, undefined)
    }
    const withStacks = run.real.filter((event) => hasStackThrough(event, 'reallyBlocking'))
    expect(run.stretchedWithStacks, run.seen).toBeLessThanOrEqual(45)
    expect(run.real.length, run.seen).toBeGreaterThanOrEqual(10)
    expect(withStacks.length, run.seen).toBeGreaterThanOrEqual(9)
  }, 120_000)

  it('still limits real blocks to maxStacksPerMinute, and charges only blocks', async () => {
    // maxStacksPerMinute 3: 3 blocks with stacks a minute (the test lasts seconds: no token comes
    // back meanwhile), and 30 early stacks, which the 40 short stalls use up.
    const run = await runStalls(40, 6, 3)
    const allowed = Math.max(0, 3 - run.stretchedWithStacks)
    const real = run.real.filter((event) => event.durationMs >= 140)
    expect(real.length, run.seen).toBe(6)
    expect(real.filter((event) => hasStackThrough(event, 'reallyBlocking')).length, run.seen).toBe(
      allowed,
    )
    expect(real.filter((event) => event.stackMissing === 'rate-limited').length, run.seen).toBe(
      6 - allowed,
    )
  }, 60_000)
})
