/**
 * lens.guard(): 503 + Retry-After while the loop is over its limit, 200 otherwise, never for
 * exempt paths. The server stalls in a child process; the test is its client.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import { createLooplens, type Looplens } from 'looplens'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { type Fixture, startFixture } from '../helpers/fixture.js'
import { parseMetrics, select } from '../helpers/prometheus.js'

describe('lens.guard() in a server', () => {
  let fixture: Fixture
  beforeAll(async () => {
    fixture = await startFixture('fix-guard.js')
  })
  afterAll(async () => {
    await fixture?.stop()
  })

  const get = async (path: string) => {
    const response = await fetch(fixture.url + path)
    await response.arrayBuffer()
    return response
  }

  it('answers 200 while the loop is healthy', async () => {
    for (let i = 0; i < 5; i++) {
      expect((await get('/victim')).status).toBe(200)
      await sleep(20)
    }
  })

  it('answers 503 with Retry-After during a forced stall, but never for exempt paths', async () => {
    const stall = get('/stall/600')
    await sleep(150) // the stall is going on; these requests queue behind it
    const [victim, health, metrics] = await Promise.all([
      get('/victim'),
      get('/health'),
      get('/metrics'),
    ])
    await stall
    expect(victim.status).toBe(503)
    expect(victim.headers.get('retry-after')).toBe('7')
    expect(health.status).toBe(200)
    expect(metrics.status).toBe(200)

    // Over: the next samples see a healthy loop again.
    await sleep(300)
    expect((await get('/victim')).status).toBe(200)

    const samples = parseMetrics(await (await fetch(`${fixture.url}/metrics`)).text())
    const shed = select(samples, 'looplens_shed_requests_total', { reason: 'event_loop_delay' })
    expect(shed[0]?.value).toBeGreaterThanOrEqual(1)
  })
})

describe('lens.guard() in process', () => {
  let lens: Looplens | undefined
  afterEach(async () => {
    await lens?.close()
    lens = undefined
  })

  /** Call the middleware with a minimal request/response; resolve with the status or 'next'. */
  function request(
    middleware: ReturnType<Looplens['guard']>,
    url: string,
  ): { status: number | 'next'; headers: Record<string, string> } {
    const headers: Record<string, string> = {}
    let status: number | 'next' = 'next'
    const res = {
      statusCode: 200,
      setHeader(name: string, value: string) {
        headers[name.toLowerCase()] = value
      },
      end() {
        status = res.statusCode
      },
    }
    middleware({ url } as never, res as never, () => {
      status = 'next'
    })
    return { status, headers }
  }

  function busy(ms: number) {
    const end = performance.now() + ms
    while (performance.now() < end) {
      // Hold the loop on purpose.
    }
  }

  it('sheds on utilization when the delay check is off, and stops at close()', async () => {
    lens = createLooplens({ captureStacks: false })
    const guard = lens.guard({
      maxEventLoopDelayMs: 0,
      maxEventLoopUtilization: 0.5,
      sampleIntervalMs: 50,
    })
    await sleep(120)
    expect(request(guard, '/x').status).toBe('next')
    // Keep the loop ~90% busy for a few intervals, in slices shorter than an interval.
    const until = performance.now() + 300
    while (performance.now() < until) {
      busy(18)
      await new Promise((resolve) => setImmediate(resolve))
    }
    await new Promise((resolve) => setTimeout(resolve, 0))
    const shed = request(guard, '/x?debug=1')
    expect(shed.status).toBe(503)
    expect(shed.headers['retry-after']).toBe('10')
    expect(request(guard, '/metrics').status).toBe('next')
    const samples = parseMetrics(await lens.registry.metrics())
    expect(
      select(samples, 'looplens_shed_requests_total', { reason: 'event_loop_utilization' })[0]
        ?.value,
    ).toBe(1)
    await lens.close()
    expect(request(guard, '/x').status).toBe('next')
  })

  it('validates every option, naming it', () => {
    lens = createLooplens({ captureStacks: false })
    const guard = (options: unknown) => () => lens!.guard(options as never)
    expect(guard({ maxEventLoopDelayMs: -1 })).toThrow(
      new RangeError(
        'guard options.maxEventLoopDelayMs must be an integer between 0 and 600000 (received -1)',
      ),
    )
    expect(guard({ maxEventLoopDelayMs: '100' })).toThrow(
      new TypeError('guard options.maxEventLoopDelayMs must be an integer (received "100")'),
    )
    expect(guard({ maxEventLoopUtilization: 1.5 })).toThrow(
      /guard options.maxEventLoopUtilization must be a ratio between 0 and 1, both excluded \(received 1.5\)/,
    )
    expect(guard({ maxEventLoopUtilization: 'high' })).toThrow(TypeError)
    expect(guard({ retryAfterSeconds: 1.5 })).toThrow(
      /guard options.retryAfterSeconds must be an integer \(received 1.5\)/,
    )
    expect(guard({ sampleIntervalMs: 1 })).toThrow(
      /guard options.sampleIntervalMs must be an integer between 10 and 60000 \(received 1\)/,
    )
    expect(guard({ exemptPaths: 'health' })).toThrow(/guard options.exemptPaths must be an array/)
    expect(guard({ exemptPaths: ['health'] })).toThrow(
      /guard options.exemptPaths\[0\] must be a path starting with "\/" or a RegExp \(received "health"\)/,
    )
    expect(guard({ maxEventLoopDelayMs: 0 })).toThrow(/the guard would never shed/)
    expect(guard({ maxDelay: 5 })).toThrow(
      /guard options.maxDelay is not an option of lens.guard\(\)/,
    )
    expect(guard('fast')).toThrow(/guard options must be an object \(received "fast"\)/)
  })

  it('rejects closeTimeoutMs out of range, naming it', () => {
    expect(() => createLooplens({ closeTimeoutMs: -1 })).toThrow(
      /options.closeTimeoutMs must be an integer between 0 and 600000 \(received -1\)/,
    )
  })
})
