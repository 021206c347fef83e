/**
 * Routers mounted on a path with parameters: `req.baseUrl` holds the matched values
 * (`/orgs/acme`), which must never reach a label. The template is rebuilt from the router stack.
 */
import { createLooplens } from 'looplens'
import { afterAll, describe, expect, it } from 'vitest'
import { EXPRESS_VERSIONS } from '../helpers/express.js'
import { scrapeUrl, select } from '../helpers/prometheus.js'
import { listen } from '../helpers/server.js'

describe.each(EXPRESS_VERSIONS)('$name: routers mounted on parameters', ({ express }) => {
  const lens = createLooplens()
  afterAll(() => lens.close())

  it('labels /orgs/:orgId/teams/:teamId/members/:id, whatever the ids', async () => {
    const app = express()
    app.use(lens.express())
    const members = express.Router()
    members.get('/members/:id', (_req, res) => {
      res.send('member')
    })
    const teams = express.Router()
    teams.use('/teams/:teamId', members)
    app.use('/orgs/:orgId', teams)
    const api = express.Router()
    api.get('/status', (_req, res) => {
      res.send('ok')
    })
    app.use('/api/v1', api)
    app.get('/metrics', lens.metricsHandler())
    const server = await listen(app)
    try {
      for (let i = 0; i < 20; i++) {
        const response = await fetch(`${server.url}/orgs/org-${i}/teams/t${i}/members/${i}`)
        expect(response.status).toBe(200)
      }
      expect((await fetch(`${server.url}/api/v1/status`)).status).toBe(200)
      const { text, samples } = await scrapeUrl(`${server.url}/metrics`)
      const routes = new Set(
        select(samples, 'http_server_request_duration_seconds_count', {}).map(
          (sample) => sample.labels.http_route,
        ),
      )
      expect(routes).toEqual(new Set(['/orgs/:orgId/teams/:teamId/members/:id', '/api/v1/status']))
      expect(text).not.toMatch(/org-\d|\/t\d/)
    } finally {
      await server.close()
    }
  })
})
