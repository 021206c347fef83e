/**
 * `unwrapOwnLayer`: takes a shimmer wrapper (what instrumentation-express puts around every
 * layer's handler) off looplens's own layer only, on Express 4 and 5, nested routers included,
 * and leaves anything it does not recognise alone.
 */

import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import type { RequestHandler } from 'express'
import express5 from 'express'
import express4 from 'express4'
import { createLooplens } from 'looplens'
import { describe, expect, it } from 'vitest'
import { unwrapOwnLayer } from '../../src/middleware/own-layer.js'

interface Layer {
  handle: ((...args: unknown[]) => unknown) & { __original?: unknown; __unwrap?: () => void }
  route?: { stack: Layer[] }
}

/** What @opentelemetry/instrumentation's shimmer does to `layer.handle`. */
function wrap(layer: Layer): void {
  const original = layer.handle
  const wrapped = Object.assign((...args: unknown[]) => original(...args), {
    __original: original,
    __unwrap: () => {
      if (layer.handle === wrapped) layer.handle = original
    },
  })
  layer.handle = wrapped
}

function stackOf(app: unknown): Layer[] {
  const application = app as { _router?: { stack: Layer[] }; router?: { stack: Layer[] } }
  return ('_router' in application ? application._router?.stack : application.router?.stack) ?? []
}

const looplensMiddleware: RequestHandler = (_req, _res, next) => next()
const otherMiddleware: RequestHandler = (_req, _res, next) => next()

describe.each([
  { name: 'Express 4', express: express4 as unknown as typeof express5 },
  { name: 'Express 5', express: express5 },
])('unwrapOwnLayer on $name', ({ express }) => {
  it('removes the wrapper of its own layer and keeps every other wrapper', () => {
    const app = express()
    app.use(looplensMiddleware)
    app.use(otherMiddleware)
    app.get('/x', (_req, res) => {
      res.end()
    })
    const stack = stackOf(app)
    for (const layer of stack) wrap(layer)
    const own = stack.find((layer) => layer.handle.__original === looplensMiddleware)!
    const other = stack.find((layer) => layer.handle.__original === otherMiddleware)!

    expect(unwrapOwnLayer(app, looplensMiddleware)).toBe(1)
    expect(own.handle).toBe(looplensMiddleware)
    expect(other.handle.__original).toBe(otherMiddleware)
    expect(stack.filter((layer) => layer.handle.__original !== undefined)).toHaveLength(
      stack.length - 1,
    )
    // A second look finds nothing left to do.
    expect(unwrapOwnLayer(app, looplensMiddleware)).toBe(0)
  })

  it('finds its layer in a nested router', () => {
    const app = express()
    const router = express.Router()
    router.use(looplensMiddleware)
    app.use('/api', router)
    const inner = (router as unknown as { stack: Layer[] }).stack[0]!
    wrap(inner)
    expect(unwrapOwnLayer(app, looplensMiddleware)).toBe(1)
    expect(inner.handle).toBe(looplensMiddleware)
  })

  it('changes nothing in an app that is not instrumented', () => {
    const app = express()
    app.use(looplensMiddleware)
    const before = stackOf(app).map((layer) => layer.handle)
    expect(unwrapOwnLayer(app, looplensMiddleware)).toBe(0)
    expect(stackOf(app).map((layer) => layer.handle)).toEqual(before)
  })
})

describe('lens.express() and the wrapper of its layer', () => {
  it('takes it off at the first request, and stops looking after 16 requests', async () => {
    const lens = createLooplens({ captureStacks: false })
    const middleware = lens.express()
    const app = express5()
    // Behind another middleware: as the first one, it would leave the router (next test).
    app.use(otherMiddleware)
    app.use(middleware)
    app.get('/x', (_req, res) => {
      res.end('ok')
    })
    const server = app.listen(0, '127.0.0.1')
    try {
      await once(server, 'listening')
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/x`
      const own = stackOf(app).find((layer) => layer.handle === middleware)!
      wrap(own)
      expect((await fetch(url)).status).toBe(200)
      expect(own.handle).toBe(middleware)
      for (let i = 0; i < 16; i++) await (await fetch(url)).text()
      // A wrapper put on after that is not looked for: requests read nothing more for it.
      wrap(own)
      expect((await fetch(url)).status).toBe(200)
      expect(own.handle.__original).toBe(middleware)
    } finally {
      server.close()
      await lens.close()
    }
  })
})

describe.each([
  { name: 'Express 4', express: express4 as unknown as typeof express5 },
  { name: 'Express 5', express: express5 },
])('lens.express() first in an instrumented app, $name', ({ express }) => {
  it('leaves the router at the first request, wrapper and all', async () => {
    const lens = createLooplens({ captureStacks: false })
    const middleware = lens.express()
    const app = express()
    app.use(middleware)
    app.get('/x', (_req, res) => {
      res.end('ok')
    })
    for (const layer of stackOf(app)) wrap(layer)
    const server = app.listen(0, '127.0.0.1')
    try {
      await once(server, 'listening')
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/x`
      expect((await fetch(url)).status).toBe(200)
      const own = (layer: Layer) =>
        layer.handle === middleware || layer.handle.__original === middleware
      expect(stackOf(app).filter(own)).toHaveLength(0)
      expect(stackOf(app).filter((layer) => layer.route !== undefined)).toHaveLength(1)
      expect((app as unknown as { handle: { name: string } }).handle.name).toBe('looplensHandle')
      expect((await fetch(url)).status).toBe(200)
    } finally {
      server.close()
      await lens.close()
    }
  })
})

describe('unwrapOwnLayer on what is not an Express app', () => {
  it.each([
    ['undefined', undefined],
    ['null', null],
    ['an empty object', {}],
    ['a router whose stack is not an array', { router: { stack: 'nope' } }],
    ['layers that are not objects', { _router: { stack: [null, 1, 'x', { handle: 2 }] } }],
    [
      'a stack whose getter throws',
      {
        router: {
          get stack() {
            throw new Error('boom')
          },
        },
      },
    ],
  ])('returns 0 for %s', (_name, app) => {
    expect(unwrapOwnLayer(app, looplensMiddleware)).toBe(0)
  })

  it('stops after a bounded number of layers', () => {
    const appWith = (before: number) => {
      const stack: Layer[] = Array.from({ length: before }, () => ({ handle: () => 1 }))
      const own: Layer = { handle: looplensMiddleware as Layer['handle'] }
      stack.push(own)
      wrap(own)
      return { app: { _router: { stack } }, own }
    }
    const near = appWith(10)
    expect(unwrapOwnLayer(near.app, looplensMiddleware)).toBe(1)
    expect(near.own.handle).toBe(looplensMiddleware)
    const far = appWith(10_000)
    expect(unwrapOwnLayer(far.app, looplensMiddleware)).toBe(0)
    expect(far.own.handle.__original).toBe(looplensMiddleware)
  })
})
