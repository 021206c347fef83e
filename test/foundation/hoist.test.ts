/**
 * `lens.express()` as the app's first middleware leaves the router and runs from the app's
 * `handle` (src/middleware/own-layer.ts). On Express 4 and 5: requests are measured the same
 * before and after the switch, nothing else in the router changes, a request already in the
 * router walks on unharmed, and any other placement keeps its layer.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import type { NextFunction, Request, Response } from 'express'
import { createLooplens, type Looplens } from 'looplens'
import { afterEach, describe, expect, it } from 'vitest'
import { EXPRESS_VERSIONS } from '../helpers/express.js'
import { type MetricSample, parseMetrics, sampleValue, select } from '../helpers/prometheus.js'
import { busy, type Listening, listen } from '../helpers/server.js'

interface LayerLike {
  name: string
}

function layerNames(app: unknown): string[] {
  const candidate = app as { _router?: { stack: LayerLike[] }; router?: { stack: LayerLike[] } }
  const stack = '_router' in candidate ? candidate._router!.stack : candidate.router!.stack
  return stack.map((layer) => layer.name)
}

/** The name of an app's `handle`: `handle` (Express's own) or `looplensHandle`. */
function handleName(app: unknown): string {
  return (app as { handle: { name: string } }).handle.name
}

async function get(server: Listening, path: string): Promise<number> {
  const response = await fetch(server.url + path)
  await response.text()
  return response.status
}

async function samplesOf(lens: Looplens): Promise<MetricSample[]> {
  return parseMetrics(await lens.registry.metrics())
}

function requests(samples: MetricSample[], route: string, status: string): number {
  const found = select(samples, 'http_server_request_duration_seconds_count', {
    http_request_method: 'GET',
    http_route: route,
    http_response_status_code: status,
  })
  return found.reduce((sum, sample) => sum + sample.value, 0)
}

describe.each(EXPRESS_VERSIONS)('lens.express() as the first middleware, $name', ({ express }) => {
  const lenses: Looplens[] = []
  const servers: Listening[] = []
  afterEach(async () => {
    await Promise.all(servers.splice(0).map((server) => server.close()))
    await Promise.all(lenses.splice(0).map((lens) => lens.close()))
  })
  function newLens(): Looplens {
    const lens = createLooplens({ captureStacks: false })
    lenses.push(lens)
    return lens
  }
  async function serve(app: unknown): Promise<Listening> {
    const server = await listen(app as Parameters<typeof listen>[0])
    servers.push(server)
    return server
  }

  it('runs from the app’s handle after the first request, measuring every request the same', async () => {
    const lens = newLens()
    const app = express()
    app.use(lens.express())
    app.get('/metrics', lens.metricsHandler())
    const router = express.Router()
    router.get('/users/:id', (req: Request, res: Response) => {
      res.json({ id: req.params.id })
    })
    app.use('/api/v1', router)
    app.get('/busy', (_req: Request, res: Response) => {
      busy(30)
      res.send('done')
    })
    app.get('/later', async (_req: Request, res: Response) => {
      await sleep(5)
      res.status(202).send('later')
    })
    const before = layerNames(app)
    expect(before).toContain('looplensMiddleware')
    const server = await serve(app)

    expect(await get(server, '/api/v1/users/1?q=1')).toBe(200) // through the layer
    expect(layerNames(app)).toEqual(before.filter((name) => name !== 'looplensMiddleware'))
    expect(handleName(app)).toBe('looplensHandle')

    for (let i = 2; i <= 4; i++) expect(await get(server, `/api/v1/users/${i}?q=${i}`)).toBe(200)
    expect(await get(server, '/busy')).toBe(200)
    expect(await get(server, '/later')).toBe(202)
    expect(await get(server, '/nowhere')).toBe(404)
    expect(await get(server, '/metrics')).toBe(200) // excluded

    const samples = await samplesOf(lens)
    expect(requests(samples, '/api/v1/users/:id', '200')).toBe(4)
    expect(requests(samples, '/busy', '200')).toBe(1)
    expect(requests(samples, '/later', '202')).toBe(1)
    expect(requests(samples, '', '404')).toBe(1)
    expect(select(samples, 'http_server_request_duration_seconds_count')).toHaveLength(4)
    const busySync = sampleValue(samples, 'looplens_request_sync_duration_seconds_sum', {
      http_request_method: 'GET',
      http_route: '/busy',
    })
    expect(busySync).toBeGreaterThanOrEqual(0.025)
    expect(select(samples, 'http_server_active_requests').every((s) => s.value === 0)).toBe(true)
  })

  it('lets a request already in the router walk its old stack: no layer is skipped', async () => {
    const lens = newLens()
    const app = express()
    app.use(lens.express())
    let seenAfter = 0
    app.use(function afterLooplens(_req: Request, _res: Response, next: NextFunction) {
      seenAfter++
      next()
    })
    app.get('/wait', async (_req: Request, res: Response) => {
      await sleep(30)
      res.send('waited')
    })
    app.get('/now', (_req: Request, res: Response) => {
      res.send('now')
    })
    const server = await serve(app)

    // The first request switches the app while it waits in its handler; the second is served
    // by the hoisted handle meanwhile.
    const first = get(server, '/wait')
    await sleep(5)
    expect(await get(server, '/now')).toBe(200)
    expect(await first).toBe(200)
    expect(seenAfter).toBe(2)
    const samples = await samplesOf(lens)
    expect(requests(samples, '/wait', '200')).toBe(1)
    expect(requests(samples, '/now', '200')).toBe(1)
  })

  it('keeps its layer behind another middleware, under a path, or in a router', async () => {
    const lens = newLens()
    const behind = express()
    behind.use(function first(_req: Request, _res: Response, next: NextFunction) {
      next()
    })
    behind.use(lens.express())
    behind.get('/x', (_req: Request, res: Response) => {
      res.send('x')
    })

    const underPath = express()
    underPath.use('/api', lens.express())
    underPath.get('/api/x', (_req: Request, res: Response) => {
      res.send('x')
    })
    underPath.get('/other', (_req: Request, res: Response) => {
      res.send('other')
    })

    const inRouter = express()
    const router = express.Router()
    router.use(lens.express())
    router.get('/x', (_req: Request, res: Response) => {
      res.send('x')
    })
    inRouter.use('/r', router)

    for (const app of [behind, underPath, inRouter]) {
      const names = layerNames(app)
      const server = await serve(app)
      for (const path of ['/x', '/api/x', '/other', '/r/x']) await get(server, path)
      expect(layerNames(app)).toEqual(names)
      expect(handleName(app)).toBe('handle')
    }
    const samples = await samplesOf(lens)
    expect(requests(samples, '/x', '200')).toBe(1)
    expect(requests(samples, '/api/x', '200')).toBe(1)
    expect(requests(samples, '/r/x', '200')).toBe(1)
    expect(requests(samples, '/other', '200')).toBe(0) // outside `/api`: never measured
  })

  it('in a mounted app, runs from that app’s handle and sees only its requests', async () => {
    const lens = newLens()
    const sub = express()
    sub.use(lens.express())
    sub.get('/items/:id', (_req: Request, res: Response) => {
      res.send('item')
    })
    const main = express()
    main.use('/shop', sub)
    main.get('/home', (_req: Request, res: Response) => {
      res.send('home')
    })
    const server = await serve(main)
    for (let i = 0; i < 3; i++) {
      expect(await get(server, `/shop/items/${i}`)).toBe(200)
      expect(await get(server, '/home')).toBe(200)
    }
    expect(layerNames(sub)).not.toContain('looplensMiddleware')
    expect(handleName(sub)).toBe('looplensHandle')
    expect(handleName(main)).toBe('handle')
    const samples = await samplesOf(lens)
    expect(requests(samples, '/shop/items/:id', '200')).toBe(3)
    expect(requests(samples, '/home', '200')).toBe(0)
  })

  it('hoists only the first of two instances; each still counts every request once', async () => {
    const one = newLens()
    const two = newLens()
    const app = express()
    app.use(one.express())
    app.use(two.express())
    app.get('/x', (_req: Request, res: Response) => {
      res.send('x')
    })
    const server = await serve(app)
    for (let i = 0; i < 20; i++) expect(await get(server, '/x')).toBe(200)
    expect(layerNames(app).filter((name) => name === 'looplensMiddleware')).toHaveLength(1)
    for (const lens of [one, two]) {
      expect(requests(await samplesOf(lens), '/x', '200')).toBe(20)
    }
  })
})
