/**
 * The per-request reads of `req` and `res` (src/context/fields.ts) give what the public
 * properties give, on real Express 4 and 5 objects and on objects that are not Node's; and the
 * middleware leaves no property of its own on `req` or `res` (a property added per request costs
 * Express's objects a new hidden class).
 */
import { setTimeout as sleep } from 'node:timers/promises'
import type { NextFunction, Request, Response } from 'express'
import { createLooplens, type Looplens } from 'looplens'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  baseUrlOf,
  matchedRouteOf,
  methodOf,
  originalUrlOf,
  responseEnded,
  statusCodeOf,
} from '../../src/context/fields.js'
import { EXPRESS_VERSIONS } from '../helpers/express.js'
import { parseMetrics, sampleValue, select } from '../helpers/prometheus.js'
import { type Listening, listen } from '../helpers/server.js'

interface Seen {
  public: unknown[]
  read: unknown[]
}

/** Both readings of the same objects, at one moment. */
function readBoth(req: Request, res: Response): Seen {
  return {
    public: [
      req.method,
      req.originalUrl,
      req.route,
      req.baseUrl,
      res.statusCode,
      res.writableEnded,
    ],
    read: [
      methodOf(req),
      originalUrlOf(req),
      matchedRouteOf(req),
      baseUrlOf(req),
      statusCodeOf(res),
      responseEnded(res),
    ],
  }
}

describe.each(EXPRESS_VERSIONS)('request and response fields on $name', ({ express }) => {
  let server: Listening
  const seen: Seen[] = []

  beforeAll(async () => {
    const app = express()
    const router = express.Router()
    router.post('/items/:id', function item(req: Request, res: Response) {
      res.status(201)
      seen.push(readBoth(req, res)) // open
      res.send('made')
      seen.push(readBoth(req, res)) // ended
    })
    app.use('/api/v1', router)
    server = await listen(app)
  })
  afterAll(() => server.close())

  it('match req.method, req.originalUrl, req.route, req.baseUrl, res.statusCode and res.writableEnded', async () => {
    const response = await fetch(`${server.url}/api/v1/items/7?full=1`, { method: 'POST' })
    expect(response.status).toBe(201)
    expect(seen).toHaveLength(2)
    for (const { public: expected, read } of seen) expect(read).toEqual(expected)
    const [open, ended] = seen
    expect(open!.read.slice(0, 2)).toEqual(['POST', '/api/v1/items/7?full=1'])
    expect(open!.read[3]).toBe('/api/v1')
    expect(open!.read.slice(4)).toEqual([201, false])
    expect(ended!.read.slice(4)).toEqual([201, true])
  })
})

describe('request and response fields on objects that are not Node’s', () => {
  it('fall back to the public property, or undefined, for missing or mistyped fields', () => {
    expect(methodOf({})).toBeUndefined()
    expect(methodOf({ method: 7 })).toBeUndefined()
    expect(originalUrlOf({ url: '/only-url' })).toBe('/only-url')
    expect(originalUrlOf({ originalUrl: 3, url: '/fallback' })).toBe('/fallback')
    expect(originalUrlOf({})).toBeUndefined()
    expect(baseUrlOf({ baseUrl: null })).toBe('')
    expect(statusCodeOf({ statusCode: '200' })).toBeUndefined()
    expect(responseEnded({ writableEnded: true })).toBe(true)
    expect(responseEnded({ finished: 'yes', writableEnded: false })).toBe(false)
    expect(responseEnded({})).toBe(false)
  })
})

describe.each(EXPRESS_VERSIONS)('the middleware on $name', ({ express }) => {
  let lens: Looplens
  let measured: Listening
  let bare: Listening
  /** Own keys of req and res (strings and symbols) at the end of each handler, per app. */
  const keys: Record<'measured' | 'bare', string[][]> = { measured: [], bare: [] }

  function app(name: 'measured' | 'bare', withLens: boolean) {
    const app = express()
    if (withLens) app.use(lens.express())
    const record = (req: Request, res: Response) => {
      const names = (object: object) =>
        Reflect.ownKeys(object)
          .map((key) => String(key))
          .sort()
          .join(',')
      keys[name].push([names(req), names(res)])
    }
    app.get('/sync/:id', function sync(req: Request, res: Response) {
      res.send('now')
      record(req, res)
    })
    app.get('/async/:id', async function later(req: Request, res: Response, _next: NextFunction) {
      await sleep(5)
      res.send('later')
      record(req, res)
    })
    return app
  }

  beforeAll(async () => {
    lens = createLooplens({ captureStacks: false })
    measured = await listen(app('measured', true))
    bare = await listen(app('bare', false))
  })
  afterAll(async () => {
    await Promise.all([measured.close(), bare.close()])
    await lens.close()
  })

  it('adds no property to req or res, answered synchronously or later', async () => {
    for (const path of ['/sync/1', '/async/2']) {
      for (const server of [measured, bare]) {
        const response = await fetch(server.url + path)
        expect(response.status).toBe(200)
        await response.text()
      }
    }
    expect(keys.measured).toHaveLength(2)
    expect(keys.measured).toEqual(keys.bare)
  })

  it('still counts both requests with their route and status', async () => {
    const samples = parseMetrics(await lens.registry.metrics())
    for (const route of ['/sync/:id', '/async/:id']) {
      const labels = { http_request_method: 'GET', http_route: route }
      expect(
        sampleValue(samples, 'http_server_request_duration_seconds_count', {
          ...labels,
          http_response_status_code: '200',
        }),
      ).toBe(1)
      expect(sampleValue(samples, 'looplens_request_sync_duration_seconds_count', labels)).toBe(1)
    }
    expect(select(samples, 'http_server_active_requests').every((s) => s.value === 0)).toBe(true)
  })
})
