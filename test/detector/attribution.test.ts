/**
 * The detector end to end: a real server in a child process (its loop is blocked on purpose), the
 * test as its client firing fast requests concurrently. Every block must name its route (or none),
 * its culprit function, and a duration within max(15 ms, 10%) of what the blocking code measured.
 */
import type { BlockEvent } from 'looplens'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type Fixture, startFixture } from '../helpers/fixture.js'

interface Measured {
  type: 'measured'
  name: string
  ms: number
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Fire `/fast` requests continuously (bounded) while `during` runs. */
async function withFastTraffic<T>(fixture: Fixture, during: () => Promise<T>): Promise<T> {
  let running = true
  const fastLoop = async () => {
    for (let i = 0; i < 200 && running; i++) {
      await fetch(`${fixture.url}/fast`).then((response) => response.text())
      await sleep(5)
    }
  }
  // The fast requests start once the slow one is in: they arrive while the loop is blocked and
  // wait for it (the victims), rather than sharing its loop turn.
  const result = during()
  await sleep(30)
  const loops = [fastLoop(), fastLoop(), fastLoop()]
  try {
    return await result
  } finally {
    running = false
    await Promise.all(loops)
  }
}

function lastMeasured(fixture: Fixture, name: string): Measured {
  const found = fixture.messages.filter(
    (message): message is Measured =>
      (message as Measured).type === 'measured' && (message as Measured).name === name,
  )
  const last = found.at(-1)
  if (last === undefined) throw new Error(`the fixture measured no ${name}`)
  return last
}

function expectDurationClose(event: BlockEvent, measuredMs: number): void {
  const tolerance = Math.max(15, measuredMs * 0.1)
  expect(event.durationMs).toBeGreaterThanOrEqual(measuredMs - tolerance)
  expect(event.durationMs).toBeLessThanOrEqual(measuredMs + tolerance)
}

for (const version of ['4', '5'] as const) {
  describe(`attribution on Express ${version}`, () => {
    let fixture: Fixture

    beforeAll(async () => {
      fixture = await startFixture('detector-app.js', { env: { EXPRESS: version } })
      await fetch(`${fixture.url}/fast`).then((response) => response.text())
    })
    afterAll(async () => {
      const exit = await fixture?.stop()
      expect(fixture.stderr()).not.toContain('Waiting for the debugger')
      expect(exit?.code).toBe(0)
    })

    /** Request `path`, wait for its block, check route, culprit and duration. */
    async function expectBlock(
      path: string,
      init: RequestInit,
      expected: { route: string; method: string; culprit: string; measured: string },
    ): Promise<BlockEvent> {
      const before = fixture.events.length
      await withFastTraffic(fixture, () =>
        fetch(`${fixture.url}${path}`, init).then((response) => response.text()),
      )
      const events = await fixture.waitForEvents(before + 1)
      const mine = events.slice(before).filter((event) => event.context.route === expected.route)
      expect(mine, JSON.stringify(events.slice(before), null, 1)).toHaveLength(1)
      const event = mine[0]!
      expect(event.kind).toBe('callback')
      expect(event.context.method).toBe(expected.method)
      expect(event.culprit?.functionName).toBe(expected.culprit)
      expect(event.culprit?.file).toContain('detector-app.js')
      expect(event.frames.length).toBeGreaterThan(0)
      expect(event.stackMissing).toBeUndefined()
      expectDurationClose(event, lastMeasured(fixture, expected.measured).ms)
      // None of the blocks in this window is pinned on the fast route.
      for (const other of events.slice(before)) expect(other.context.route).not.toBe('/fast')
      return event
    }

    it('attributes a JS busy loop', async () => {
      await expectBlock(
        '/loop',
        {},
        {
          route: '/loop',
          method: 'GET',
          culprit: 'spinLoop',
          measured: 'spinLoop',
        },
      )
    })

    it('attributes crypto.pbkdf2Sync to its JavaScript caller', async () => {
      await expectBlock(
        '/pbkdf2',
        {},
        {
          route: '/pbkdf2',
          method: 'GET',
          culprit: 'hashPasswordsSync',
          measured: 'hashPasswordsSync',
        },
      )
    })

    it('attributes work after an await to the request', async () => {
      await expectBlock(
        '/after-await',
        {},
        {
          route: '/after-await',
          method: 'GET',
          culprit: 'crunchAfterAwait',
          measured: 'crunchAfterAwait',
        },
      )
    })

    it('attributes a catastrophic regex', async () => {
      await expectBlock(
        '/regex',
        {},
        {
          route: '/regex',
          method: 'GET',
          culprit: 'validateEmailSlowly',
          measured: 'validateEmailSlowly',
        },
      )
    })

    it('attributes an Atomics.wait sleep', async () => {
      await expectBlock(
        '/sleep',
        {},
        {
          route: '/sleep',
          method: 'GET',
          culprit: 'sleepSync',
          measured: 'sleepSync',
        },
      )
    })

    it('attributes a middleware before routing to the route matched afterwards', async () => {
      await expectBlock(
        '/upload',
        { method: 'POST', body: 'x' },
        {
          route: '/upload',
          method: 'POST',
          culprit: 'parseBodySync',
          measured: 'parseBodySync',
        },
      )
    })

    it('attributes a block in a nested router to the full template', async () => {
      await expectBlock(
        '/api/v1/reports/42?secret=1',
        {},
        {
          route: '/api/v1/reports/:id',
          method: 'GET',
          culprit: 'renderReportSync',
          measured: 'renderReportSync',
        },
      )
    })

    it('keeps the fast route clean and the labels free of raw URLs', () => {
      for (const event of fixture.events) {
        expect(event.context.route).not.toBe('/fast')
        expect(JSON.stringify(event.context)).not.toContain('secret')
      }
    })
  })
}

describe('a timer outside any request', () => {
  it('has no route, method or task, and still names its culprit', async () => {
    const fixture = await startFixture('detector-app.js', { env: { TIMER_BLOCK_MS: '150' } })
    try {
      // A busy machine may stall the process while it starts; the timer's block is the long one.
      let event: BlockEvent | undefined
      const deadline = performance.now() + 5_000
      while (event === undefined && performance.now() < deadline) {
        event = fixture.events.find((candidate) => candidate.durationMs >= 140)
        await sleep(10)
      }
      expect(event, JSON.stringify(fixture.events)).toBeDefined()
      expect(event!.context).toEqual({ method: '', route: '', task: '' })
      expect(event!.kind).toBe('callback')
      expect(event!.culprit?.functionName).toBe('timerBlock')
      expectDurationClose(event!, lastMeasured(fixture, 'timerBlock').ms)
    } finally {
      await fixture.stop()
    }
  })
})
