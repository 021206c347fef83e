/**
 * The cardinality guard (`maxRoutes`): at most N distinct `http_route` values per instance; past
 * it new routes are `_OVERFLOW`, and one warning names the first. Request metrics here; block
 * events from a server in a child process (its loop is blocked on purpose).
 */
import express from 'express'
import { createLooplens, type Looplens } from 'looplens'
import { afterEach, describe, expect, it } from 'vitest'
import { type Fixture, startFixture } from '../helpers/fixture.js'
import { type Listening, listen } from '../helpers/server.js'
import { get, routeCountsWhen } from './labels.js'

const open: { lens?: Looplens; server?: Listening; fixture?: Fixture }[] = []
afterEach(async () => {
  for (const { lens, server, fixture } of open.splice(0)) {
    await server?.close()
    await lens?.close()
    await fixture?.stop()
  }
})

describe('options.maxRoutes', () => {
  it('defaults to 1000 and accepts 1', () => {
    const lens = createLooplens({ captureStacks: false })
    const one = createLooplens({ captureStacks: false, maxRoutes: 1 })
    open.push({ lens }, { lens: one })
    expect(lens.options.maxRoutes).toBe(1_000)
    expect(one.options.maxRoutes).toBe(1)
  })

  it('labels new routes past the limit _OVERFLOW, with one warning naming the first', async () => {
    const warnings: Error[] = []
    const lens = createLooplens({
      captureStacks: false,
      maxRoutes: 2,
      onWarning: (warning) => warnings.push(warning),
    })
    const app = express()
    app.use(lens.express())
    for (let i = 0; i < 5; i++) {
      app.get(`/r${i}/:id`, (_req, res) => {
        res.send('ok')
      })
    }
    app.get('/never/:id', (_req, res) => {
      res.send('ok')
    })
    const server = await listen(app)
    open.push({ lens, server })
    const paths = ['/r0/1', '/r1/1', '/r2/1', '/r3/1', '/r0/2', '/r4/1', '/r2/2', '/nothing']
    for (const path of paths) await get(`${server.url}${path}`)
    const labels = await routeCountsWhen(lens, paths.length)
    expect(Object.fromEntries(labels)).toEqual({
      '/r0/:id': 2,
      '/r1/:id': 1,
      _OVERFLOW: 4,
      // A request that matched no route is "" and never counts against the limit.
      '': 1,
    })
    expect(warnings.map((warning) => warning.name)).toEqual(['LOOPLENS_ROUTE_OVERFLOW'])
    expect(warnings[0]!.message).toContain('"/r2/:id"')
    expect(warnings[0]!.message).toContain('options.maxRoutes')
  })

  it('labels block events past the limit _OVERFLOW too', async () => {
    const fixture = await startFixture('routes-overflow.js', { env: { MAX_ROUTES: '3' } })
    open.push({ fixture })
    for (let i = 0; i < 5; i++) {
      expect((await get(`${fixture.url}/r${i}`)).status).toBe(200)
    }
    // Only the requests' blocks: a stall outside any request (a loaded machine) has route ''.
    const deadline = performance.now() + 10_000
    const routes = () =>
      fixture.events.map((event) => event.context.route).filter((route) => route !== '')
    while (routes().length < 5 && performance.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
    expect(routes()).toEqual(['/r0', '/r1', '/r2', '_OVERFLOW', '_OVERFLOW'])
    const warnings = fixture.messages.filter(
      (message) => (message as { type?: string }).type === 'warning',
    ) as { code: string; message: string }[]
    expect(warnings.map((warning) => warning.code)).toEqual(['LOOPLENS_ROUTE_OVERFLOW'])
    expect(warnings[0]!.message).toContain('"/r3"')
  })
})
