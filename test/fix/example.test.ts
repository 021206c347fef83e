/**
 * The six bad/good pairs of examples/fixes/app.js: every bad endpoint produces block events
 * attributed to its own route, with its culprit function; no good endpoint produces any.
 */
import type { BlockEvent } from 'looplens'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type Fixture, startFixture } from '../helpers/fixture.js'

const BAD = [
  { method: 'POST', route: '/process/bad', culprit: 'processJobSync' },
  { method: 'GET', route: '/sleep/bad', culprit: 'sleepSync' },
  { method: 'GET', route: '/sync', culprit: 'renderReportSync' },
  { method: 'POST', route: '/send-email/bad', culprit: 'sendEmailSync' },
  { method: 'POST', route: '/send/bad', culprit: 'encodeMessageSync' },
  { method: 'GET', route: '/hash/bad', culprit: 'hashPasswordsSync' },
]
const GOOD = [
  { method: 'POST', route: '/process/good' },
  { method: 'GET', route: '/sleep/good' },
  { method: 'GET', route: '/async' },
  { method: 'POST', route: '/send-email/good' },
  { method: 'POST', route: '/send/good' },
  { method: 'GET', route: '/hash/good' },
]

let fixture: Fixture

async function call(method: string, route: string): Promise<number> {
  const response = await fetch(fixture.url + route, {
    method,
    headers: { 'content-type': 'application/json' },
    body: method === 'POST' ? JSON.stringify({ to: ['someone@example.com'] }) : undefined,
  })
  await response.arrayBuffer()
  return response.status
}

/** Events that arrived while `action` ran, plus a grace period for the heartbeat to report. */
async function eventsDuring(action: () => Promise<unknown>, graceMs = 300): Promise<BlockEvent[]> {
  const before = fixture.events.length
  await action()
  await new Promise((resolve) => setTimeout(resolve, graceMs))
  return fixture.events.slice(before)
}

beforeAll(async () => {
  fixture = await startFixture('fix-example.js', { env: { DEMO_SCALE: '0.1' } })
  // Warm up the good endpoints once (worker pools start, JIT), outside any assertion.
  for (const { method, route } of GOOD) await call(method, route)
  await new Promise((resolve) => setTimeout(resolve, 800))
})

afterAll(async () => {
  await fixture?.stop()
})

describe('examples/fixes: bad endpoints', () => {
  for (const bad of BAD) {
    it(`${bad.method} ${bad.route} blocks the loop, attributed to its route and ${bad.culprit}`, async () => {
      const events = await eventsDuring(async () => {
        expect(await call(bad.method, bad.route)).toBeLessThan(300)
      })
      const own = events.filter(
        (event) => event.context.route === bad.route && event.context.method === bad.method,
      )
      expect(own.length, JSON.stringify(events.map((event) => event.context))).toBeGreaterThan(0)
      const withStack = own.filter((event) => event.culprit !== undefined)
      expect(withStack.length, 'a stack was captured').toBeGreaterThan(0)
      for (const event of withStack) {
        expect(event.culprit?.functionName).toBe(bad.culprit)
        expect(event.culprit?.file).toMatch(/examples\/fixes\/app\.js$/)
        expect(event.culprit?.line).toBeGreaterThan(0)
      }
    })
  }
})

describe('examples/fixes: good endpoints', () => {
  it('none of them blocks the loop (background tasks and worker jobs included)', async () => {
    const events = await eventsDuring(async () => {
      for (const { method, route } of GOOD) {
        expect(await call(method, route)).toBeLessThan(300)
      }
      // Let the background tasks (email: 150 ms, job: 500 ms in the pool) finish.
      await new Promise((resolve) => setTimeout(resolve, 800))
    })
    const goodRoutes = new Set(GOOD.map((good) => good.route))
    const blamed = events.filter((event) => goodRoutes.has(event.context.route))
    expect(blamed.map((event) => event.context)).toEqual([])
  })

  it('GET /health answers while a good endpoint works, and is slow while a bad one does', async () => {
    const timeHealth = async () => {
      const start = performance.now()
      await call('GET', '/health')
      return performance.now() - start
    }
    const good = call('GET', '/async') // awaits 200 ms
    await new Promise((resolve) => setTimeout(resolve, 50))
    const duringGood = await timeHealth()
    await good
    const bad = call('GET', '/sync') // spins 200 ms
    await new Promise((resolve) => setTimeout(resolve, 50))
    const duringBad = await timeHealth()
    await bad
    expect(duringBad).toBeGreaterThan(100)
    expect(duringGood).toBeLessThan(duringBad)
  })
})
