/**
 * Client aborts on Express 4 and 5: counted with http_response_status_code="", and completed
 * responses — keep-alive included — counted once with their status. The middleware records at
 * the response's 'close' and reads `res.writableFinished` there: this checks that 'close' comes
 * after 'finish' for a completed response, and without 'finish' for an aborted one.
 */
import http from 'node:http'
import type { Express } from 'express'
import { createLooplens, type Looplens } from 'looplens'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { EXPRESS_VERSIONS } from '../helpers/express.js'
import { type MetricSample, scrapeUrl, select } from '../helpers/prometheus.js'
import { type Listening, listen } from '../helpers/server.js'

const DURATION_COUNT = 'http_server_request_duration_seconds_count'

function count(samples: MetricSample[], route: string, status: string): number {
  return select(samples, DURATION_COUNT, {
    http_request_method: 'GET',
    http_route: route,
    http_response_status_code: status,
  }).reduce((sum, sample) => sum + sample.value, 0)
}

function active(samples: MetricSample[]): number {
  return select(samples, 'http_server_active_requests').reduce((sum, s) => sum + s.value, 0)
}

describe.each(EXPRESS_VERSIONS)('client aborts on $name', ({ express }) => {
  let lens: Looplens
  let server: Listening
  let connections = 0
  /** Response events in order, per request path, as the server saw them. */
  const responseEvents: string[][] = []
  const held: (() => void)[] = []
  const arrived: (() => void)[] = []

  beforeAll(async () => {
    lens = createLooplens()
    const app: Express = express()
    app.use(lens.express())
    app.get('/metrics', lens.metricsHandler())
    app.use(function recordResponseEvents(_req, res, next) {
      const events: string[] = []
      responseEvents.push(events)
      res.on('finish', () => events.push('finish'))
      res.on('close', () => events.push(`close writableFinished=${res.writableFinished}`))
      next()
    })
    app.get('/fast', function fast(_req, res) {
      res.send('ok')
    })
    app.get('/hold', function hold(_req, res) {
      held.push(() => {
        if (!res.destroyed) res.send('late')
      })
      arrived.shift()?.()
    })
    server = await listen(app)
    server.server.on('connection', () => connections++)
  })

  afterAll(async () => {
    for (const release of held.splice(0)) release()
    await server?.close()
    await lens?.close()
  })

  /** Start GET /hold on `agent`, wait until the handler runs, then destroy the client request. */
  async function abortHeldRequest(agent: http.Agent | false): Promise<void> {
    const handlerRan = new Promise<void>((resolve) => arrived.push(resolve))
    const req = http.get(`${server.url}/hold`, { agent })
    req.on('error', () => {
      // ECONNRESET / "socket hang up": the abort we asked for.
    })
    await handlerRan
    req.destroy()
  }

  async function scrapeUntil(predicate: (samples: MetricSample[]) => boolean) {
    const deadline = performance.now() + 3_000
    for (;;) {
      const { samples } = await scrapeUrl(`${server.url}/metrics`)
      if (predicate(samples) || performance.now() > deadline) return samples
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
  }

  it('counts an aborted request with http_response_status_code="" and frees the gauge', async () => {
    responseEvents.length = 0
    await abortHeldRequest(false)
    const samples = await scrapeUntil((now) => count(now, '/hold', '') === 1)
    expect(count(samples, '/hold', '')).toBe(1)
    expect(count(samples, '/hold', '200')).toBe(0)
    expect(active(samples)).toBe(0)
    expect(responseEvents[0]).toEqual(['close writableFinished=false'])

    // The handler answering later (into a destroyed socket) does not count it a second time.
    for (const release of held.splice(0)) release()
    await new Promise((resolve) => setTimeout(resolve, 50))
    const later = (await scrapeUrl(`${server.url}/metrics`)).samples
    expect(count(later, '/hold', '')).toBe(1)
    expect(count(later, '/hold', '200')).toBe(0)
  })

  it('counts completed keep-alive responses once each with their status, then an abort on the same socket', async () => {
    responseEvents.length = 0
    const before = (await scrapeUrl(`${server.url}/metrics`)).samples
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
    const connectionsBefore = connections
    for (let i = 0; i < 5; i++) {
      await new Promise<void>((resolve, reject) => {
        http
          .get(`${server.url}/fast`, { agent }, (res) => {
            res.resume()
            res.on('end', resolve)
          })
          .on('error', reject)
      })
    }
    const samples = await scrapeUntil(
      (now) => count(now, '/fast', '200') - count(before, '/fast', '200') === 5,
    )
    expect(connections - connectionsBefore).toBe(1)
    expect(count(samples, '/fast', '200') - count(before, '/fast', '200')).toBe(5)
    expect(count(samples, '/fast', '')).toBe(0)
    expect(responseEvents).toEqual(
      Array.from({ length: 5 }, () => ['finish', 'close writableFinished=true']),
    )

    // Now abort a request on that same kept-alive socket.
    await abortHeldRequest(agent)
    const afterAbort = await scrapeUntil(
      (now) => count(now, '/hold', '') - count(before, '/hold', '') === 1,
    )
    expect(connections - connectionsBefore).toBe(1)
    expect(count(afterAbort, '/hold', '') - count(before, '/hold', '')).toBe(1)
    expect(count(afterAbort, '/fast', '200') - count(before, '/fast', '200')).toBe(5)
    expect(active(afterAbort)).toBe(0)
    agent.destroy()
  })
})
