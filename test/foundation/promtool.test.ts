/**
 * `promtool check metrics` on real scrapes, Prometheus text and OpenMetrics, from a server with
 * every looplens metric populated (requests, a 404, an abort, a block), on looplens' own registry
 * and on a user's registry shared with other metrics.
 */
import http from 'node:http'
import express from 'express'
import { createLooplens } from 'looplens'
import { Gauge, Histogram, Registry } from 'prom-client'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type Fixture, startFixture } from '../helpers/fixture.js'
import { scrapeUrl, select } from '../helpers/prometheus.js'
import { checkMetrics, ensurePromtool } from '../helpers/promtool.js'
import { listen } from '../helpers/server.js'

/** What Prometheus 2.x sends when it scrapes. */
const PROMETHEUS_ACCEPT =
  'application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1'

const FAMILIES = [
  'http_server_request_duration_seconds',
  'http_server_active_requests',
  'looplens_request_sync_duration_seconds',
  'looplens_eventloop_block_duration_seconds',
  'looplens_eventloop_delay_seconds',
  'looplens_eventloop_utilization_ratio',
]

beforeAll(() => ensurePromtool(), 600_000)

/** Poll `condition` every 20 ms until it holds; throws after `timeoutMs`. */
async function until(condition: () => Promise<boolean>, timeoutMs = 5_000): Promise<void> {
  const deadline = performance.now() + timeoutMs
  while (!(await condition())) {
    if (performance.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

describe('promtool check metrics on a server using its own registry', () => {
  let fixture: Fixture

  beforeAll(async () => {
    fixture = await startFixture('foundation-app.js')
    for (const path of ['/fast', '/fast?x=1', '/nope', '/busy/5', '/busy/80']) {
      await fetch(`${fixture.url}${path}`)
    }
    // A client abort: http_response_status_code="". Destroy the request once the server has
    // it in flight, then wait until the server has counted it (bounded).
    const req = http.get(`${fixture.url}/slow/2000`, { agent: false })
    req.on('error', () => {})
    await until(async () => {
      const { samples } = await scrapeUrl(`${fixture.url}/metrics`)
      return select(samples, 'http_server_active_requests').some((sample) => sample.value >= 1)
    })
    req.destroy()
    await until(async () => {
      const { samples } = await scrapeUrl(`${fixture.url}/metrics`)
      return (
        select(samples, 'http_server_request_duration_seconds_count', {
          http_response_status_code: '',
        }).length === 1
      )
    })
    await fixture.waitForEvents(1)
  })

  afterAll(async () => {
    await fixture?.stop()
  })

  it('passes on the Prometheus text format', async () => {
    const { text, contentType, samples } = await scrapeUrl(`${fixture.url}/metrics`)
    expect(contentType).toBe('text/plain; version=0.0.4; charset=utf-8')
    for (const family of FAMILIES) {
      expect(text, family).toContain(`# TYPE ${family} `)
      expect(
        samples.some((sample) => sample.name.startsWith(family)),
        family,
      ).toBe(true)
    }
    expect(
      select(samples, 'http_server_request_duration_seconds_count', {
        http_response_status_code: '',
      }),
    ).toHaveLength(1)
    expect(text).not.toContain('# EOF')
    const result = checkMetrics(text)
    expect(result.output).toBe('')
    expect(result.status).toBe(0)
  })

  it('passes on OpenMetrics, chosen by the Accept header Prometheus sends', async () => {
    const { text, contentType, samples } = await scrapeUrl(
      `${fixture.url}/metrics`,
      PROMETHEUS_ACCEPT,
    )
    expect(contentType).toBe('application/openmetrics-text; version=1.0.0; charset=utf-8')
    expect(text.endsWith('# EOF\n')).toBe(true)
    for (const family of FAMILIES) {
      expect(
        samples.some((sample) => sample.name.startsWith(family)),
        family,
      ).toBe(true)
    }
    const result = checkMetrics(text)
    expect(result.output).toBe('')
    expect(result.status).toBe(0)
  })

  it('answers concurrent scrapes of both formats each in its own format', async () => {
    const scrapes = await Promise.all(
      Array.from({ length: 10 }, (_, index) =>
        scrapeUrl(`${fixture.url}/metrics`, index % 2 === 0 ? PROMETHEUS_ACCEPT : 'text/plain'),
      ),
    )
    scrapes.forEach(({ text, contentType }, index) => {
      const openMetrics = index % 2 === 0
      expect(contentType.startsWith('application/openmetrics-text')).toBe(openMetrics)
      expect(text.endsWith('# EOF\n')).toBe(openMetrics)
    })
  })

  it('is a check that can fail: promtool rejects a broken exposition', () => {
    expect(checkMetrics('# TYPE broken histogram\nbroken_bucket{le="x"} nope\n').status).not.toBe(0)
  })
})

describe('promtool check metrics on a user registry shared with other metrics', () => {
  it("passes in both formats with the user's own metrics alongside", async () => {
    const registry = new Registry()
    // Not collectDefaultMetrics(): prom-client's own nodejs_active_*_total gauges fail promtool's
    // lint ("non-counter metrics should not have _total suffix"), which is not ours to judge.
    new Gauge({ name: 'shop_queue_length', help: 'Orders waiting.', registers: [registry] }).set(3)
    // No counter: promtool 2.42 reads OpenMetrics with the Prometheus text parser, and an
    // OpenMetrics counter (`# TYPE shop_orders counter` + `shop_orders_total`) reads as "no help".
    new Histogram({
      name: 'shop_checkout_seconds',
      help: 'Checkout time.',
      buckets: [0.1, 1],
      registers: [registry],
    }).observe(0.3)
    const lens = createLooplens({ registry })
    const app = express()
    app.use(lens.express())
    app.get('/metrics', lens.metricsHandler())
    app.get('/users/:id', (_req, res) => {
      res.send('ok')
    })
    const server = await listen(app)
    try {
      await fetch(`${server.url}/users/1`)
      for (const accept of [undefined, PROMETHEUS_ACCEPT]) {
        const { text } = await scrapeUrl(`${server.url}/metrics`, accept)
        expect(text).toContain('shop_checkout_seconds_count 1')
        expect(text).toContain('shop_queue_length 3')
        expect(text).toContain('http_route="/users/:id"')
        const result = checkMetrics(text)
        expect(result.output).toBe('')
        expect(result.status).toBe(0)
      }
      // The user's registry keeps its own content type after an OpenMetrics scrape.
      expect(registry.contentType).toBe(Registry.PROMETHEUS_CONTENT_TYPE)
    } finally {
      await server.close()
      await lens.close()
    }
    // Closing looplens removes its metrics from the user's registry and leaves theirs.
    const left = await registry.metrics()
    expect(left).toContain('shop_checkout_seconds_count 1')
    expect(left).not.toContain('looplens_')
    expect(left).not.toContain('http_server_')
  })
})
