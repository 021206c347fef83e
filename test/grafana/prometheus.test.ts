/**
 * Every query of every shipped dashboard, proven against a real Prometheus: Debian's Prometheus
 * scrapes the example app (test/fixtures/grafana-app.js = grafana/example/app.js) every second
 * while this process drives bounded load at it — blocking routes included — then each panel
 * query runs through /api/v1/query with the variables substituted the way Grafana does, and must
 * return data. The variable queries (label_values) must list the job, instance and routes, and
 * the alert rules must load and evaluate without error on the real series.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { driveLoad, type LoadResult } from '../../grafana/example/load.js'
import { type Panel, panelsOf } from '../../grafana/src/grafana.js'
import { dashboards } from '../../grafana/src/looplens-dashboard.js'
import { type Fixture, startFixture } from '../helpers/fixture.js'
import {
  api,
  deriveConfig,
  ensurePrometheus,
  instantQuery,
  type RunningPrometheus,
  type Sample,
  startPrometheus,
} from './prometheus-server.js'
import { metricNamesOf, parseLabelValues, type Substitutions, substitute } from './promql.js'

const SCRAPE_SECONDS = 1
/** Grafana's $__rate_interval is max(4 × scrape interval, step + scrape): 4 s here; 10 s is safe. */
const RATE_INTERVAL = '10s'
const LOAD_MS = 14_000
const JOB = 'looplens'

/** Metrics that exist only when the app uses a fix API of looplens, by that API. */
const FIX_METRICS: Record<string, 'background' | 'guard' | 'track'> = {
  looplens_background_task_duration_seconds_bucket: 'background',
  looplens_background_task_duration_seconds_count: 'background',
  looplens_background_tasks_active: 'background',
  looplens_task_duration_seconds_bucket: 'track',
  looplens_task_duration_seconds_count: 'track',
  looplens_shed_requests_total: 'guard',
}

interface Apis {
  background: boolean
  guard: boolean
  track: boolean
}

interface PanelQuery {
  dashboard: string
  panel: Panel
  refId: string
  expr: string
}

const panelQueries: PanelQuery[] = Object.entries(dashboards).flatMap(([file, build]) =>
  panelsOf(build()).flatMap((panel) =>
    panel.targets.map((target) => ({
      dashboard: file,
      panel,
      refId: target.refId,
      expr: target.expr,
    })),
  ),
)

let fixture: Fixture | undefined
let prometheus: RunningPrometheus | undefined
let apis: Apis = { background: false, guard: false, track: false }
let evaluationTime = 0
let instance = ''
let rangeSeconds = 0
let load: LoadResult = {
  requests: 0,
  errors: 0,
  byStatus: {},
}

function context(): string {
  return `\nload: ${JSON.stringify(load)}\nprometheus log:\n${prometheus?.log().slice(-2_000)}\nfixture stderr:\n${fixture?.stderr().slice(-2_000)}`
}

beforeAll(async () => {
  ensurePrometheus()
  fixture = await startFixture('grafana-app.js')
  const announced = fixture.messages.find(
    (message) => (message as { type?: string }).type === 'apis',
  ) as (Apis & { type: string }) | undefined
  if (announced !== undefined) apis = announced
  instance = `127.0.0.1:${fixture.port}`
  prometheus = await startPrometheus(
    deriveConfig({ intervalSeconds: SCRAPE_SECONDS, target: instance }),
  )
  const started = Date.now()

  // Wait (bounded) until the first scrape succeeded, so the load is all on record.
  const base = prometheus.url
  const upDeadline = Date.now() + 15_000
  while (true) {
    const up = await instantQuery(base, `up{job="${JOB}"}`, Date.now() / 1000)
    if (up[0]?.value[1] === '1') break
    if (Date.now() > upDeadline)
      throw new Error(`target never up: ${JSON.stringify(up)}${context()}`)
    await new Promise((resolve) => setTimeout(resolve, 250))
  }

  load = await driveLoad(fixture.url, { durationMs: LOAD_MS, maxRequests: 40_000 })
  // Evaluate just after the first scrape that follows the load: every RATE_INTERVAL window then
  // lies (almost) within the load, and that scrape holds every block the load caused.
  const loadEnd = Date.now() / 1000
  const scrapeDeadline = Date.now() + 10_000
  while (true) {
    const [sample] = await instantQuery(base, `timestamp(up{job="${JOB}"})`, Date.now() / 1000)
    const scrapedAt = Number(sample?.value[1])
    if (scrapedAt > loadEnd + 0.05) {
      evaluationTime = scrapedAt + 0.05
      break
    }
    if (Date.now() > scrapeDeadline) throw new Error(`no scrape after the load${context()}`)
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
  rangeSeconds = Math.ceil((Date.now() - started) / 1000) + 5
}, 90_000)

afterAll(async () => {
  await Promise.allSettled([prometheus?.stop(), fixture?.stop()])
}, 20_000)

/** Variable values: "All" routes, and two chosen routes (a blocker and a failing one). */
const scenarios: Array<{ name: string; routes: Substitutions['routes'] }> = [
  { name: 'route = All', routes: 'All' },
  { name: 'route = /report + /fail', routes: ['/report', '/fail'] },
]

function substitutions(routes: Substitutions['routes']): Substitutions {
  return {
    job: JOB,
    instances: [instance],
    routes,
    rateInterval: RATE_INTERVAL,
    range: `${rangeSeconds}s`,
  }
}

it('drove load that blocked the loop, failed, aborted and was answered', () => {
  expect(load.requests, context()).toBeGreaterThan(200)
  // A keep-alive socket closed under a request now and then is the network, not the app.
  expect(load.errors, context()).toBeLessThanOrEqual(Math.floor(load.requests / 200))
  expect(load.byStatus['200'], context()).toBeGreaterThan(100)
  expect(load.byStatus['500'], context()).toBeGreaterThan(0)
  expect(load.byStatus.aborted, context()).toBeGreaterThan(0)
  const blockedRoutes = new Set(fixture?.events.map((event) => event.context.route))
  expect([...blockedRoutes], context()).toEqual(expect.arrayContaining(['/report', '/import']))
  if (apis.guard) expect(load.byStatus['503'], context()).toBeGreaterThan(0)
})

describe('dashboard variables', () => {
  const variables = Object.values(dashboards).flatMap((build) =>
    build().templating.list.filter((variable) => variable.type === 'query'),
  )

  async function values(definition: string): Promise<string[]> {
    const { selector, label } = parseLabelValues(definition)
    const params = new URLSearchParams({
      'match[]': substitute(selector, substitutions('All')),
      start: String(evaluationTime - rangeSeconds),
      end: String(evaluationTime),
    })
    return api<string[]>(prometheus!.url, `/api/v1/label/${label}/values?${params}`)
  }

  it.each(variables.map((variable) => [variable.name, variable.definition as string]))(
    '$%s: %s lists what was scraped',
    async (name, definition) => {
      const listed = await values(definition)
      const expected = { job: [JOB], instance: [instance], route: ['/report', '/import', '/fast'] }[
        name
      ]
      expect(expected, `no expectation for variable ${name}`).toBeDefined()
      expect(listed, context()).toEqual(expect.arrayContaining(expected!))
    },
  )
})

describe.each(scenarios)('every panel query returns data ($name)', ({ routes }) => {
  it.each(panelQueries.map((query) => [query.panel.title, query.refId, query]))(
    '%s [%s]',
    async (_title, _refId, query: PanelQuery) => {
      const expr = substitute(query.expr, substitutions(routes))
      const samples: Sample[] = await instantQuery(prometheus!.url, expr, evaluationTime)
      const needs = metricNamesOf(query.expr)
        .map((name) => FIX_METRICS[name])
        .filter((api) => api !== undefined)
      // Panels of background tasks, track() and shedding have data once this build of looplens
      // has those APIs (the fixture reports them); before that, the query must still be valid.
      if (needs.some((api) => !apis[api])) return
      const finite = samples.filter((sample) => Number.isFinite(Number(sample.value[1])))
      expect(samples.length, `${expr}\nreturned no series${context()}`).toBeGreaterThan(0)
      expect(
        finite.length,
        `${expr}\nreturned only non-finite values: ${JSON.stringify(samples)}`,
      ).toBeGreaterThan(0)
    },
  )
})

describe('what the panels show matches what happened', () => {
  it('"Top blockers (range)" totals are the block events, first block of each route included', async () => {
    const table = panelQueries.find(
      (query) => query.panel.title === 'Top blockers (range)' && query.refId === 'A',
    )!
    const rows = await instantQuery(
      prometheus!.url,
      substitute(table.expr, substitutions('All')),
      evaluationTime,
    )
    // The blocks of the load's blocking routes all ended before that scrape; the test holds
    // every one of them as a BlockEvent from the same lens.
    for (const route of ['/report', '/import']) {
      const events = fixture!.events.filter(
        (event) => event.context.route === route && event.startTime / 1000 < evaluationTime,
      )
      const expected = events.reduce((total, event) => total + event.durationMs / 1000, 0)
      const shown = rows
        .filter((row) => row.metric.http_route === route)
        .reduce((total, row) => total + Number(row.value[1]), 0)
      expect(events.length, context()).toBeGreaterThan(0)
      expect(shown, `${route}: ${events.length} events${context()}`).toBeCloseTo(expected, 3)
    }
  })

  it('a victim route waits: /users/:id p99 latency is far above its own sync time', async () => {
    const p99 = async (metric: string) => {
      const [sample] = await instantQuery(
        prometheus!.url,
        `histogram_quantile(0.99, sum by (le) (rate(${metric}_bucket{job="${JOB}", http_route="/users/:id"}[${rangeSeconds}s])))`,
        evaluationTime,
      )
      return Number(sample?.value[1])
    }
    // /users/:id holds the loop for well under a millisecond, then awaits a 5 ms timer: a stall of
    // /report or /import (120–250 ms) that starts during that await is added to its latency.
    // (A purely synchronous route such as /fast does not show it: a request that arrives during a
    // stall is read after it, and its own clock starts then — loop delay is what covers that.)
    expect(await p99('http_server_request_duration_seconds'), context()).toBeGreaterThan(0.05)
    expect(await p99('looplens_request_sync_duration_seconds'), context()).toBeLessThan(0.01)
  })
})

describe('exemplars', () => {
  it('the "Block durations" heatmap finds the trace ids the app attached to its blocks', async () => {
    // Does this build of looplens attach exemplars (it does when tracing is on)? Ask the app.
    const exposition = await fetch(`${fixture!.url}/metrics`, {
      headers: { accept: 'application/openmetrics-text; version=1.0.0' },
    }).then((response) => response.text())
    const emitted = /^looplens_eventloop_block_duration_seconds_bucket\{.*# \{trace_id="/m.test(
      exposition,
    )
    const heatmap = panelQueries.find((query) => query.panel.title === 'Block durations')!
    const params = new URLSearchParams({
      query: substitute(heatmap.expr, substitutions('All')),
      start: String(evaluationTime - rangeSeconds),
      end: String(evaluationTime),
    })
    const series = await api<Array<{ exemplars: Array<{ labels: Record<string, string> }> }>>(
      prometheus!.url,
      `/api/v1/query_exemplars?${params}`,
    )
    if (!emitted) return
    const exemplars = series.flatMap((entry) => entry.exemplars)
    expect(exemplars.length, context()).toBeGreaterThan(0)
    expect(exemplars[0]?.labels.trace_id).toMatch(/^[0-9a-f]{32}$/)
  })
})

describe('alert rules on the real series', () => {
  it('load and evaluate without error', async () => {
    const { groups } = await api<{
      groups: Array<{
        name: string
        rules: Array<{ name: string; health: string; lastError?: string; lastEvaluation: string }>
      }>
    }>(prometheus!.url, '/api/v1/rules')
    const rules = groups.flatMap((group) => group.rules)
    expect(rules.map((rule) => rule.name)).toEqual(
      expect.arrayContaining([
        'EventLoopBlocked',
        'EventLoopBlockedLong',
        'EventLoopDelayHigh',
        'EventLoopUtilizationHigh',
        'RequestsShed',
        'BackgroundTaskFailures',
      ]),
    )
    for (const rule of rules) {
      expect(rule.health, `${rule.name}: ${rule.lastError}`).toBe('ok')
      expect(rule.lastEvaluation.startsWith('0001'), rule.name).toBe(false)
    }
  })
})
