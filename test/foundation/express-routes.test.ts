/**
 * lens.express() on real Express 4 and 5 apps: route templates, 404, unknown methods, bounded
 * labels under hostile URLs, sync time, excluded paths, the active-requests gauge.
 */
import { randomBytes } from 'node:crypto'
import http from 'node:http'
import type { Express } from 'express'
import { createLooplens, type Looplens } from 'looplens'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { EXPRESS_VERSIONS } from '../helpers/express.js'
import {
  type MetricSample,
  sampleValue,
  scrapeUrl,
  select,
  seriesOf,
} from '../helpers/prometheus.js'
import { busy, inBatches, type Listening, listen } from '../helpers/server.js'

const DURATION = 'http_server_request_duration_seconds'
const SYNC = 'looplens_request_sync_duration_seconds'
const ACTIVE = 'http_server_active_requests'

/** Requests of `route` (count of the duration histogram), by method and status. */
function requestCount(
  samples: MetricSample[],
  labels: { method?: string; route: string; status?: string },
): number {
  const selected = select(samples, `${DURATION}_count`, {
    http_route: labels.route,
    ...(labels.method === undefined ? {} : { http_request_method: labels.method }),
    ...(labels.status === undefined ? {} : { http_response_status_code: labels.status }),
  })
  return selected.reduce((sum, sample) => sum + sample.value, 0)
}

/** A request with any method, answered fully; resolves with the status code. */
function request(url: string, method = 'GET'): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, agent: false }, (res) => {
      res.resume()
      res.on('end', () => resolve(res.statusCode ?? 0))
    })
    req.on('error', reject)
    req.end()
  })
}

/** Wait until `predicate` holds for a scrape (the server records at response 'close'). */
async function scrapeUntil(
  url: string,
  predicate: (samples: MetricSample[]) => boolean,
  timeoutMs = 3_000,
): Promise<MetricSample[]> {
  const deadline = performance.now() + timeoutMs
  for (;;) {
    const { samples } = await scrapeUrl(url)
    if (predicate(samples)) return samples
    if (performance.now() > deadline) return samples
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

describe.each(EXPRESS_VERSIONS)('lens.express() on $name', ({ express, wildcard }) => {
  let lens: Looplens
  let server: Listening
  const held: (() => void)[] = []

  beforeAll(async () => {
    lens = createLooplens({ blockThresholdMs: 50 })
    const app: Express = express()
    app.use(lens.express())
    app.get('/metrics', lens.metricsHandler())

    const users = express.Router()
    users.get('/users/:id', function getUser(req, res) {
      res.json({ id: req.params.id })
    })
    const v1 = express.Router()
    v1.use('/v1', users)
    app.use('/api', v1)

    const admin = express.Router()
    admin.get('/', function adminHome(_req, res) {
      res.send('admin')
    })
    admin.get('/stats', function adminStats(_req, res) {
      res.send('stats')
    })
    app.use('/admin', admin)

    const sub = express()
    sub.get('/items/:item', function subItem(_req, res) {
      res.send('item')
    })
    app.use('/sub', sub)

    app.get(['/one', '/two'], function either(_req, res) {
      res.send('either')
    })
    app.get(/^\/re\/\d+$/, function byRegex(_req, res) {
      res.send('regex')
    })
    app
      .route('/books/:id')
      .get(function getBook(_req, res) {
        res.send('book')
      })
      .put(function putBook(_req, res) {
        res.send('put')
      })
    app.get(wildcard, function anyFile(_req, res) {
      res.send('file')
    })
    app.all('/anything', function anyMethod(_req, res) {
      res.send('any')
    })
    app.get('/fast', function fast(_req, res) {
      res.send('ok')
    })
    app.get('/boom/:id', function boom() {
      throw new Error('handler failed')
    })
    app.get('/busy30', function busy30(_req, res) {
      busy(30)
      res.send('done')
    })
    app.get('/held', function heldRoute(_req, res) {
      held.push(() => res.send('released'))
    })
    server = await listen(app)
  })

  afterAll(async () => {
    for (const release of held.splice(0)) release()
    await server?.close()
    await lens?.close()
  })

  it.each([
    ['/api/v1/users/42', 'GET', '/api/v1/users/:id'],
    ['/admin', 'GET', '/admin'],
    ['/admin/stats', 'GET', '/admin/stats'],
    ['/sub/items/9', 'GET', '/sub/items/:item'],
    ['/two', 'GET', '/one,/two'],
    ['/re/123', 'GET', String(/^\/re\/\d+$/)],
    ['/books/7', 'GET', '/books/:id'],
    ['/books/7', 'PUT', '/books/:id'],
  ])('labels %s %s as http_route="%s"', async (path, method, route) => {
    const before = requestCount((await scrapeUrl(`${server.url}/metrics`)).samples, {
      method,
      route,
      status: '200',
    })
    expect(await request(`${server.url}${path}`, method)).toBe(200)
    const samples = await scrapeUntil(
      `${server.url}/metrics`,
      (now) => requestCount(now, { method, route, status: '200' }) === before + 1,
    )
    expect(requestCount(samples, { method, route, status: '200' })).toBe(before + 1)
    expect(
      select(samples, `${SYNC}_count`, { http_request_method: method, http_route: route }),
    ).toHaveLength(1)
  })

  it('labels a wildcard route with its template, not the path it matched', async () => {
    expect(await request(`${server.url}/files/a/b/secret-zq7.txt`)).toBe(200)
    const samples = await scrapeUntil(
      `${server.url}/metrics`,
      (now) => requestCount(now, { route: wildcard }) >= 1,
    )
    expect(requestCount(samples, { method: 'GET', route: wildcard, status: '200' })).toBe(1)
    expect(JSON.stringify(samples)).not.toContain('zq7')
  })

  it('labels a request that matched no route http_route="" (never the raw URL)', async () => {
    expect(await request(`${server.url}/no/such/page-zq9`)).toBe(404)
    const samples = await scrapeUntil(
      `${server.url}/metrics`,
      (now) => requestCount(now, { method: 'GET', route: '', status: '404' }) >= 1,
    )
    expect(requestCount(samples, { method: 'GET', route: '', status: '404' })).toBe(1)
    expect(JSON.stringify(samples)).not.toContain('zq9')
  })

  it('labels a request whose handler threw with its route and status 500', async () => {
    expect(await request(`${server.url}/boom/1`)).toBe(500)
    const samples = await scrapeUntil(
      `${server.url}/metrics`,
      (now) => requestCount(now, { route: '/boom/:id' }) >= 1,
    )
    expect(requestCount(samples, { method: 'GET', route: '/boom/:id', status: '500' })).toBe(1)
  })

  it('labels an unknown method _OTHER', async () => {
    expect(await request(`${server.url}/anything`, 'PURGE')).toBe(200)
    const samples = await scrapeUntil(
      `${server.url}/metrics`,
      (now) => requestCount(now, { method: '_OTHER', route: '/anything' }) >= 1,
    )
    expect(requestCount(samples, { method: '_OTHER', route: '/anything', status: '200' })).toBe(1)
    expect(select(samples, `${DURATION}_count`, { http_request_method: 'PURGE' })).toHaveLength(0)
  })

  it('keeps labels bounded: 2,000 random URLs with query strings add no series and no URL text', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 16 })
    const get = (path: string) =>
      new Promise<void>((resolve, reject) => {
        http
          .get(`${server.url}${path}`, { agent }, (res) => {
            res.resume()
            res.on('end', () => resolve())
          })
          .on('error', reject)
      })
    // Warm-up: one request of each shape, so every series the storm may touch exists.
    await get('/api/v1/users/1?warm=1')
    await get('/nowhere/at/all?warm=1')
    const before = (await scrapeUrl(`${server.url}/metrics`)).samples

    const tokens: string[] = []
    const token = () => {
      const value = `zq${randomBytes(6).toString('hex')}`
      tokens.push(value)
      return value
    }
    const paths = Array.from({ length: 2_000 }, (_, index) =>
      index % 2 === 0
        ? `/api/v1/users/${token()}?q=${token()}&email=${token()}%40example.com`
        : `/${token()}/${token()}?${token()}=${token()}&redirect=%2F${token()}`,
    )
    await inBatches(paths, 16, get)
    agent.destroy()

    const { text, samples } = await scrapeUrl(`${server.url}/metrics`)
    for (const family of [DURATION, SYNC, ACTIVE]) {
      expect(seriesOf(samples, family), family).toEqual(seriesOf(before, family))
    }
    expect(
      requestCount(samples, { route: '/api/v1/users/:id' }) -
        requestCount(before, { route: '/api/v1/users/:id' }),
    ).toBe(1_000)
    expect(requestCount(samples, { route: '' }) - requestCount(before, { route: '' })).toBe(1_000)
    for (const value of tokens) expect(text.includes(value), value).toBe(false)
    for (const sample of samples) {
      for (const value of Object.values(sample.labels)) {
        expect(value, `${sample.name} ${value}`).not.toMatch(/[?&=%]|example/)
      }
    }
  })

  it('measures sync time: a handler busy for 30 ms ≥ 25 ms, a trivial one < 5 ms', async () => {
    expect(await request(`${server.url}/busy30`)).toBe(200)
    expect(await request(`${server.url}/fast`)).toBe(200)
    const samples = await scrapeUntil(
      `${server.url}/metrics`,
      (now) =>
        select(now, `${SYNC}_count`, { http_route: '/busy30' }).length === 1 &&
        select(now, `${SYNC}_count`, { http_route: '/fast' }).length === 1,
    )
    const labels = (route: string) => ({ http_request_method: 'GET', http_route: route })
    expect(sampleValue(samples, `${SYNC}_count`, labels('/busy30'))).toBe(1)
    expect(sampleValue(samples, `${SYNC}_sum`, labels('/busy30'))).toBeGreaterThanOrEqual(0.025)
    expect(sampleValue(samples, `${SYNC}_count`, labels('/fast'))).toBe(1)
    expect(sampleValue(samples, `${SYNC}_sum`, labels('/fast'))).toBeLessThan(0.005)
  })

  it('does not measure the metrics path (excluded by default)', async () => {
    for (let i = 0; i < 3; i++) await scrapeUrl(`${server.url}/metrics`)
    await scrapeUrl(`${server.url}/metrics?x=1`)
    const { samples } = await scrapeUrl(`${server.url}/metrics`)
    expect(select(samples, `${DURATION}_count`, { http_route: '/metrics' })).toHaveLength(0)
    expect(select(samples, `${SYNC}_count`, { http_route: '/metrics' })).toHaveLength(0)
  })

  it('counts a request in flight in http_server_active_requests, and back to 0 after', async () => {
    const active = (samples: MetricSample[]) =>
      select(samples, ACTIVE, { http_request_method: 'GET' }).reduce((s, x) => s + x.value, 0)
    const idle = await scrapeUntil(`${server.url}/metrics`, (now) => active(now) === 0)
    expect(active(idle)).toBe(0)

    const pending = request(`${server.url}/held`)
    const during = await scrapeUntil(`${server.url}/metrics`, (now) => active(now) === 1)
    expect(active(during)).toBe(1)
    expect(held).toHaveLength(1)

    held.shift()!()
    expect(await pending).toBe(200)
    const after = await scrapeUntil(`${server.url}/metrics`, (now) => active(now) === 0)
    expect(active(after)).toBe(0)
    expect(requestCount(after, { route: '/held', status: '200' })).toBe(1)
  })
})

describe.each(EXPRESS_VERSIONS)('excludePaths on $name', ({ express }) => {
  it('does not measure exact paths and RegExp matches, query strings ignored', async () => {
    const lens = createLooplens({ excludePaths: ['/health', /^\/internal\//] })
    const app: Express = express()
    app.use(lens.express())
    app.get('/health', (_req, res) => {
      res.send('ok')
    })
    app.get('/internal/:what', (_req, res) => {
      res.send('ok')
    })
    app.get('/measured', (_req, res) => {
      res.send('ok')
    })
    app.get('/metrics', lens.metricsHandler())
    const server = await listen(app)
    try {
      for (const path of ['/health', '/health?verbose=1', '/internal/cache', '/measured']) {
        expect(await request(`${server.url}${path}`)).toBe(200)
      }
      // The given list replaces the default: /metrics is measured now.
      await scrapeUrl(`${server.url}/metrics`)
      const samples = await scrapeUntil(
        `${server.url}/metrics`,
        (now) => requestCount(now, { route: '/metrics' }) >= 1,
      )
      expect(requestCount(samples, { route: '/measured' })).toBe(1)
      expect(requestCount(samples, { route: '/metrics' })).toBeGreaterThanOrEqual(1)
      expect(select(samples, `${DURATION}_count`, { http_route: '/health' })).toHaveLength(0)
      expect(select(samples, `${DURATION}_count`, { http_route: '/internal/:what' })).toHaveLength(
        0,
      )
      expect(select(samples, `${SYNC}_count`, { http_route: '/health' })).toHaveLength(0)
    } finally {
      await server.close()
      await lens.close()
    }
  })
})
