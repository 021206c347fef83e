/**
 * The committed dashboard JSON is the generator's output, byte for byte, and is well formed for
 * Grafana: unique ids, panels on the grid without overlap, every query through the datasource
 * variable and scoped to the chosen job and instances, only metric names of the contract.
 *
 * After changing grafana/src/*.ts, regenerate with:
 *   npx vitest run test/grafana/dashboards.test.ts -u
 */
import { readdirSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import {
  DATASOURCE,
  type Dashboard,
  panelsOf,
  toJson,
  variableRef,
} from '../../grafana/src/grafana.js'
import { dashboards } from '../../grafana/src/looplens-dashboard.js'
import { metricNamesOf } from './promql.js'

const here = path.dirname(fileURLToPath(import.meta.url))
const dashboardsDir = path.resolve(here, '../../grafana/dashboards')

/** DESIGN.md "Names", the metrics of background tasks and shedding, and prom-client defaults. */
const KNOWN_METRICS = new Set([
  'http_server_request_duration_seconds_bucket',
  'http_server_request_duration_seconds_count',
  'http_server_request_duration_seconds_sum',
  'http_server_active_requests',
  'looplens_request_sync_duration_seconds_bucket',
  'looplens_request_sync_duration_seconds_count',
  'looplens_request_sync_duration_seconds_sum',
  'looplens_eventloop_block_duration_seconds_bucket',
  'looplens_eventloop_block_duration_seconds_count',
  'looplens_eventloop_block_duration_seconds_sum',
  'looplens_eventloop_delay_seconds_bucket',
  'looplens_eventloop_utilization_ratio',
  'looplens_background_task_duration_seconds_bucket',
  'looplens_background_task_duration_seconds_count',
  'looplens_background_tasks_active',
  'looplens_task_duration_seconds_bucket',
  'looplens_task_duration_seconds_count',
  'looplens_shed_requests_total',
  'process_cpu_seconds_total',
  'process_resident_memory_bytes',
  'nodejs_heap_size_used_bytes',
  'nodejs_heap_size_total_bytes',
  'nodejs_gc_duration_seconds_sum',
])

describe.each(Object.entries(dashboards))('dashboard %s', (file, build) => {
  const dashboard: Dashboard = build()

  it('is the committed JSON, regenerated', async () => {
    await expect(toJson(dashboard)).toMatchFileSnapshot(path.join(dashboardsDir, file))
  })

  it('is plain JSON: it survives a round trip unchanged', () => {
    expect(JSON.parse(toJson(dashboard))).toEqual(dashboard)
  })

  it('imports into Grafana: __inputs for the data source, variables datasource/job/instance/route', () => {
    expect(dashboard.__inputs).toEqual([
      expect.objectContaining({
        name: 'DS_PROMETHEUS',
        type: 'datasource',
        pluginId: 'prometheus',
      }),
    ])
    expect(dashboard.templating.list.map((variable) => variable.name)).toEqual([
      'datasource',
      'job',
      'instance',
      'route',
    ])
    expect(dashboard.uid).toMatch(/^[a-z0-9-]{1,40}$/)
    // The import dialog replaces this placeholder with the chosen data source.
    expect(JSON.stringify(dashboard.templating.list[0])).toContain(variableRef('DS_PROMETHEUS'))
  })

  it('has unique ids and panels inside the grid that do not overlap', () => {
    const ids = dashboard.panels.map((panel) => panel.id)
    expect(new Set(ids).size).toBe(ids.length)
    const cells = new Set<string>()
    for (const panel of dashboard.panels) {
      const { x, y, w, h } = panel.gridPos
      expect(x + w, panel.title).toBeLessThanOrEqual(24)
      for (let column = x; column < x + w; column++) {
        for (let line = y; line < y + h; line++) {
          const cell = `${column},${line}`
          expect(cells.has(cell), `${panel.title} overlaps at ${cell}`).toBe(false)
          cells.add(cell)
        }
      }
    }
  })

  it('has the rows the issue asks for', () => {
    const rows = dashboard.panels.filter((panel) => panel.type === 'row').map((row) => row.title)
    expect(rows).toEqual([
      'Overview',
      'Event-loop delay and utilization',
      'Blocking by route',
      'Requests by route (RED) and synchronous time',
      'Victims: request latency vs loop delay',
      'Background tasks and shed requests',
      'Runtime (prom-client default metrics)',
    ])
  })

  it('queries every panel through the datasource variable, scoped to $job and $instance', () => {
    const panels = panelsOf(dashboard)
    expect(panels.length).toBeGreaterThan(20)
    for (const panel of panels) {
      expect(panel.datasource.uid, panel.title).toBe(DATASOURCE.uid)
      expect(panel.description.length, panel.title).toBeGreaterThan(20)
      expect(panel.targets.length, panel.title).toBeGreaterThan(0)
      const refIds = panel.targets.map((target) => target.refId)
      expect(new Set(refIds).size, panel.title).toBe(refIds.length)
      for (const target of panel.targets) {
        expect(target.datasource.uid, panel.title).toBe(DATASOURCE.uid)
        expect(target.expr, panel.title).toContain('job="$job"')
        expect(target.expr, panel.title).toContain('instance=~"$instance"')
        for (const name of metricNamesOf(target.expr)) {
          expect(KNOWN_METRICS.has(name), `${panel.title}: unknown metric ${name}`).toBe(true)
        }
      }
    }
  })

  it('enables exemplars on the block-duration heatmap', () => {
    const heatmap = panelsOf(dashboard).find((panel) => panel.title === 'Block durations')
    expect(heatmap?.type).toBe('heatmap')
    expect(heatmap?.targets[0]?.exemplar).toBe(true)
    expect(heatmap?.targets[0]?.expr).toContain('looplens_eventloop_block_duration_seconds_bucket')
  })
})

it('ships no dashboard file without a generator', () => {
  const files = readdirSync(dashboardsDir).filter((file) => file.endsWith('.json'))
  expect(files.sort()).toEqual(Object.keys(dashboards).sort())
})

describe('documentation', () => {
  const root = path.resolve(here, '../..')
  const readme = readFileSync(path.join(root, 'README.md'), 'utf8')
  const section = readme.slice(
    readme.indexOf('## Dashboards'),
    readme.indexOf('\n## ', readme.indexOf('## Dashboards') + 1),
  )
  const guide = readFileSync(path.join(root, 'docs/grafana.md'), 'utf8')
  const titles = Object.values(dashboards).flatMap((build) =>
    panelsOf(build()).map((panel) => panel.title),
  )

  it('has panel titles unique within each dashboard', () => {
    for (const build of Object.values(dashboards)) {
      const own = panelsOf(build()).map((panel) => panel.title)
      expect(new Set(own).size).toBe(own.length)
    }
  })

  it.each(titles)('README "Dashboards" and docs/grafana.md describe the panel "%s"', (title) => {
    expect(section).toContain(title)
    expect(guide).toContain(`**${title}**`)
  })

  it('names every alert rule in docs/grafana.md', () => {
    const rules = readFileSync(path.join(root, 'grafana/alerts/looplens.rules.yml'), 'utf8')
    const names = [...rules.matchAll(/- alert: (\w+)/g)].map((match) => match[1]!)
    expect(names.length).toBeGreaterThan(5)
    for (const name of names) expect(guide).toContain(`\`${name}\``)
  })
})
