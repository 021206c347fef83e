/**
 * Route labels are templates from the router structure, never request values (issue 13, items 1,
 * 2, 3 and 12): each test builds its own app and its own lens, so none depends on another's
 * caches or order; each runs alone (`-t NAME`).
 */

import type { Express, NextFunction, Request, Response, Router } from 'express'
import express5 from 'express'
import { createLooplens, type Looplens } from 'looplens'
import Router22 from 'router22'
import { afterEach, describe, expect, it } from 'vitest'
import { EXPRESS_VERSIONS } from '../helpers/express.js'
import { type Listening, listen } from '../helpers/server.js'
import { get, routeCountsWhen } from './labels.js'

const open: { lens: Looplens; server: Listening }[] = []
afterEach(async () => {
  for (const { lens, server } of open.splice(0)) {
    await server.close()
    await lens.close()
  }
})

/** A lens and a listening app built by `build` (the lens's middleware is mounted first). */
async function serve(
  express: typeof express5,
  build: (app: Express, lens: Looplens) => void,
  options: Parameters<typeof createLooplens>[0] = {},
): Promise<{ lens: Looplens; url: string }> {
  const lens = createLooplens({ captureStacks: false, ...options })
  const app = express()
  app.use(lens.express())
  build(app, lens)
  app.use(function errorHandler(_error: Error, _req: Request, res: Response, _next: NextFunction) {
    res.status(500).send('error')
  })
  const server = await listen(app)
  open.push({ lens, server })
  return { lens, url: server.url }
}

function ok(_req: Request, res: Response): void {
  res.send('ok')
}

/** The labels of `paths` (all GET), as a map of route → requests. */
async function labelsOf(
  lens: Looplens,
  url: string,
  paths: string[],
): Promise<Map<string, number>> {
  for (const path of paths) await get(`${url}${path}`)
  return routeCountsWhen(lens, paths.length)
}

describe.each(EXPRESS_VERSIONS)('$name: templates from the router structure', ({ express }) => {
  it('labels a router mounted on a parameter with the mount template, whatever the value', async () => {
    const { lens, url } = await serve(express, (app) => {
      const teams = express.Router()
      teams.get('/teams/:teamId', ok)
      app.use('/orgs/:orgId', teams)
    })
    const paths = ['/orgs/customer-2-secret/teams/1', '/orgs/acme/teams/2', '/orgs/x/teams/3']
    const labels = await labelsOf(lens, url, paths)
    expect(Object.fromEntries(labels)).toEqual({ '/orgs/:orgId/teams/:teamId': 3 })
  })

  it('labels a sub-app mounted on a parameter with its mountpath', async () => {
    const { lens, url } = await serve(express, (app) => {
      const sub = express()
      sub.get('/projects/:id', ok)
      app.use('/org/:org', sub)
    })
    const labels = await labelsOf(lens, url, [
      '/org/secret-org/projects/1',
      '/org/other/projects/2',
    ])
    expect(Object.fromEntries(labels)).toEqual({ '/org/:org/projects/:id': 2 })
  })

  it('labels a regexp mount with its regexp, not the text it matched', async () => {
    const mount = /^\/v\d+/
    const { lens, url } = await serve(express, (app) => {
      const api = express.Router()
      api.get('/users/:id', ok)
      app.use(mount, api)
    })
    const labels = await labelsOf(lens, url, ['/v1/users/1', '/v987654/users/2'])
    expect(Object.fromEntries(labels)).toEqual({ [`${String(mount)}/users/:id`]: 2 })
  })

  it('keeps a percent-encoded value out of the label', async () => {
    const { lens, url } = await serve(express, (app) => {
      const teams = express.Router()
      teams.get('/teams/:teamId', ok)
      app.use('/orgs/:orgId', teams)
    })
    const labels = await labelsOf(lens, url, ['/orgs/%73ecret/teams/1', '/orgs/s%2Fx/teams/2'])
    expect(Object.fromEntries(labels)).toEqual({ '/orgs/:orgId/teams/:teamId': 2 })
  })

  it("labels a static prefix as declared, whatever the request's letter case", async () => {
    const { lens, url } = await serve(express, (app) => {
      const users = express.Router()
      users.get('/users/:id', ok)
      const api = express.Router()
      api.use('/api', users)
      app.use('/v1', api)
    })
    const labels = await labelsOf(lens, url, [
      '/V1/Api/users/1',
      '/v1/api/users/2',
      '/V1/API/users/3',
    ])
    expect(Object.fromEntries(labels)).toEqual({ '/v1/api/users/:id': 3 })
  })

  it('labels each path of an array mount with its own template', async () => {
    const { lens, url } = await serve(express, (app) => {
      const items = express.Router()
      items.get('/items/:id', ok)
      app.use(['/shop', '/store/:storeId'], items)
    })
    const labels = await labelsOf(lens, url, ['/shop/items/1', '/store/secret-7/items/2'])
    expect(Object.fromEntries(labels)).toEqual({
      '/shop/items/:id': 1,
      '/store/:storeId/items/:id': 1,
    })
  })

  it('labels one router mounted at two paths by the path each request took', async () => {
    const { lens, url } = await serve(express, (app) => {
      const shared = express.Router()
      shared.get('/x/:id', ok)
      app.use('/a/:tenant', shared)
      app.use('/b', shared)
    })
    const labels = await labelsOf(lens, url, ['/a/t1/x/1', '/b/x/2', '/b/x/3'])
    expect(Object.fromEntries(labels)).toEqual({ '/a/:tenant/x/:id': 1, '/b/x/:id': 2 })
  })

  it('keeps the labels of two apps in one process apart', async () => {
    // One app mounts a router at /team/admin, the other at /team/:team: a request of the second
    // app with the same URL must still be labelled with its own app's template.
    const first = await serve(express, (app) => {
      const pages = express.Router()
      pages.get('/:page', ok)
      app.use('/team/admin', pages)
    })
    const second = await serve(express, (app) => {
      const pages = express.Router()
      pages.get('/:page', ok)
      app.use('/team/:team', pages)
    })
    const firstLabels = await labelsOf(first.lens, first.url, ['/team/admin/home'])
    const secondLabels = await labelsOf(second.lens, second.url, [
      '/team/admin/home',
      '/team/blue/home',
    ])
    expect(Object.fromEntries(firstLabels)).toEqual({ '/team/admin/:page': 1 })
    expect(Object.fromEntries(secondLabels)).toEqual({ '/team/:team/:page': 2 })
  })

  it('labels a request answered by an error handler with the full route it matched', async () => {
    const { lens, url } = await serve(express, (app) => {
      const api = express.Router()
      api.post('/users', express.json(), ok)
      api.get('/fail/:id', (_req, _res, next) => next(new Error('failed')))
      api.get('/throw/:id', () => {
        throw new Error('thrown')
      })
      const v1 = express.Router()
      v1.use('/api', api)
      app.use('/v1', v1)
    })
    const rejected = await get(`${url}/v1/api/users`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{not json',
    })
    expect(rejected.status).toBe(500)
    expect((await get(`${url}/v1/api/fail/7`)).status).toBe(500)
    expect((await get(`${url}/V1/api/throw/8`)).status).toBe(500)
    const labels = await routeCountsWhen(lens, 3)
    expect(Object.fromEntries(labels)).toEqual({
      '/v1/api/users': 1,
      '/v1/api/fail/:id': 1,
      '/v1/api/throw/:id': 1,
    })
  })

  it('labels "" a request that failed before any route matched, never a suffix', async () => {
    const { lens, url } = await serve(express, (app) => {
      const api = express.Router()
      api.use('/guarded', (_req, _res, next) => next(new Error('denied')))
      api.get('/guarded/:id', ok)
      app.use('/v1', api)
    })
    expect((await get(`${url}/v1/guarded/1`)).status).toBe(500)
    expect((await get(`${url}/v1/nothing/here`)).status).toBe(404)
    const labels = await routeCountsWhen(lens, 2)
    expect(Object.fromEntries(labels)).toEqual({ '': 2 })
  })

  it('counts a request once when a parent app and its sub-app both use lens.express()', async () => {
    const { lens, url } = await serve(express, (app, lens) => {
      const sub = express()
      sub.use(lens.express())
      sub.get('/things/:id', ok)
      const inner = express()
      inner.get('/deep', ok)
      const mid = express()
      mid.use(express.json())
      mid.use(lens.express())
      mid.use('/inner', inner)
      app.use('/sub', sub)
      app.use('/mid', mid)
    })
    const labels = await labelsOf(lens, url, ['/sub/things/1', '/sub/things/2', '/mid/inner/deep'])
    expect(Object.fromEntries(labels)).toEqual({ '/sub/things/:id': 2, '/mid/inner/deep': 1 })
  })

  it('does not measure /METRICS nor /metrics/, which Express routes to the excluded /metrics', async () => {
    const { lens, url } = await serve(express, (app, lens) => {
      app.get('/metrics', lens.metricsHandler())
      app.get('/measured', ok)
    })
    for (const path of ['/METRICS', '/metrics/', '/Metrics/?x=1', '/metrics']) {
      expect((await get(`${url}${path}`)).status).toBe(200)
    }
    expect((await get(`${url}/measured`)).status).toBe(200)
    const labels = await routeCountsWhen(lens, 1)
    expect(Object.fromEntries(labels)).toEqual({ '/measured': 1 })
  })
})

describe('router 2.2.0 (Express 5 before router 2.3): no declared path on a layer', () => {
  /** An Express 5 app whose routing happens in a router 2.2.0 tree. */
  function build22(app: Express, shape: (root: Router) => void): void {
    const root = Router22()
    shape(root)
    app.use(root)
  }

  it('labels param mounts, letter case and encoded values with templates', async () => {
    const { lens, url } = await serve(express5, (app) =>
      build22(app, (root) => {
        const teams = Router22()
        teams.get('/teams/:teamId', ok)
        root.use('/orgs/:orgId', teams)
        const users = Router22()
        users.get('/users/:id', ok)
        root.use('/v1/api', users)
        const repos = Router22()
        repos.get('/meta', ok)
        root.use('/u/:user/repos/:repo', repos)
      }),
    )
    const labels = await labelsOf(lens, url, [
      '/orgs/customer-2-secret/teams/1',
      '/orgs/%73ecret/teams/2',
      '/V1/Api/users/3',
      '/v1/api/users/4',
      '/u/%41lice/repos/private-repo/meta',
    ])
    expect(Object.fromEntries(labels)).toEqual({
      '/orgs/:orgId/teams/:teamId': 2,
      '/v1/api/users/:id': 2,
      '/u/:user/repos/:repo/meta': 1,
    })
  })

  it('labels a regexp mount "(regexp)": router 2.2.0 keeps no trace of the regexp', async () => {
    const { lens, url } = await serve(express5, (app) =>
      build22(app, (root) => {
        const api = Router22()
        api.get('/users/:id', ok)
        root.use(/^\/v\d+/, api)
      }),
    )
    const labels = await labelsOf(lens, url, ['/v1/users/1', '/v23456/users/2'])
    expect(Object.fromEntries(labels)).toEqual({ '(regexp)/users/:id': 2 })
  })
})
