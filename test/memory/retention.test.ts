/**
 * Nothing of a request stays reachable from looplens after the request ended: not its `req`, its
 * parsed body, its response or its context — not through the probe's captures, the detector, the
 * report or the events — and `close()` lets go of the instance itself.
 *
 * The server is a child process started with --expose-gc (test/fixtures/memory-app.js): each
 * request carries a 1.6 MB JSON body, is parsed by express.json(), and its handler holds the loop
 * past the threshold, so the watchdog probes it while the body is in memory. The test process is
 * the client (the server's loop is blocked on purpose). After the requests the child runs full
 * GCs and reports its heap and how many requests and bodies are still reachable.
 */
import { spawnSync } from 'node:child_process'
import http from 'node:http'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterEach, describe, expect, it } from 'vitest'
import { type Fixture, startFixture } from '../helpers/fixture.js'

const FIXTURES = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../fixtures')
const REQUESTS = 120
/** 1.6 MB of JSON: one long string, so the parsed body weighs about as much as its text. */
const BODY = JSON.stringify({ payload: 'x'.repeat(1_600_000 - 20) })
const MB = 1024 * 1024

interface Memory {
  heapUsed: number
  requests: number
  reqAlive: number
  bodyAlive: number
}

/** POST the body on a connection of its own (no keep-alive: nothing of Node's holds the last one). */
function upload(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const request = http.request(
      `${url}/upload`,
      {
        method: 'POST',
        agent: false,
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(BODY) },
      },
      (response) => {
        response.resume()
        response.once('end', () => resolve(response.statusCode ?? 0))
      },
    )
    request.once('error', reject)
    request.end(BODY)
  })
}

function get(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent: false }, (response) => {
        response.resume()
        response.once('end', () => resolve(response.statusCode ?? 0))
      })
      .once('error', reject)
  })
}

/** Ask the child to measure (after full GCs), or to close its lens first and then measure. */
async function measure(fixture: Fixture, closeFirst = false): Promise<Memory> {
  const response = await fetch(`${fixture.url}/memory${closeFirst ? '?close=1' : ''}`)
  expect(response.status, fixture.stderr()).toBe(200)
  return (await response.json()) as Memory
}

describe('memory', () => {
  let fixture: Fixture | undefined
  afterEach(async () => {
    await fixture?.stop()
    fixture = undefined
  })

  it('retains < 10 MB of 120 blocking requests with 1.6 MB bodies after a full GC', async () => {
    fixture = await startFixture('memory-app.js', { execArgv: ['--expose-gc'] })
    // Warm up the blocking path (probes, detector, exporters) without bodies, then the baseline.
    for (let i = 0; i < 5; i++) expect(await get(`${fixture.url}/spin`)).toBe(200)
    const baseline = await measure(fixture)
    for (let i = 0; i < REQUESTS; i++) expect(await upload(fixture.url)).toBe(200)
    // Every request blocked the loop: the watchdog had the chance to probe each one.
    await fixture.waitForEvents(REQUESTS, 10_000)
    const after = await measure(fixture)
    const retainedMb = (after.heapUsed - baseline.heapUsed) / MB
    const seen = `${retainedMb.toFixed(1)} MB retained; ${after.reqAlive} of ${after.requests} requests and ${after.bodyAlive} bodies still reachable`
    expect(after.requests).toBe(REQUESTS)
    expect(after.reqAlive, seen).toBe(0)
    expect(after.bodyAlive, seen).toBe(0)
    expect(retainedMb, seen).toBeLessThan(10)
  }, 120_000)

  it('lets go of every instance and every probed context once close() resolved', () => {
    // 4 instances in turn, each probing 5 tracked tasks that hold the loop for 60 ms, closed at
    // once after the last one (see test/fixtures/memory-close.js).
    const run = spawnSync(
      process.execPath,
      ['--expose-gc', path.join(FIXTURES, 'memory-close.js')],
      { encoding: 'utf8', timeout: 60_000 },
    )
    expect(run.status, run.stderr).toBe(0)
    const result = JSON.parse(run.stdout.trim().split('\n').at(-1) ?? '{}')
    const seen = JSON.stringify(result)
    // The tasks were blocks, probed with stacks: their contexts were captured. (A busy machine
    // may add a stall of its own: more blocks, never fewer.)
    expect(result.blocks, seen).toBeGreaterThanOrEqual(20)
    expect(result.stacks, seen).toBeGreaterThanOrEqual(15)
    expect(result.contexts, seen).toBe(20)
    expect({ lensesAlive: result.lensesAlive, contextsAlive: result.contextsAlive }, seen).toEqual({
      lensesAlive: 0,
      contextsAlive: 0,
    })
  }, 90_000)
})
