/**
 * A small typed model of the Grafana dashboard JSON that looplens ships (schema 38, Grafana 10+),
 * and builders for the panel kinds it uses. Only what the dashboards need is modelled: the point
 * is that a typo in a field name or a panel without a datasource fails to compile, and that the
 * layout (ids, grid positions) is computed instead of maintained by hand.
 *
 * The committed JSON under grafana/dashboards/ is generated from this code; the test
 * test/grafana/dashboards.test.ts regenerates it and fails when the two differ
 * (`npx vitest run test/grafana/dashboards.test.ts -u` rewrites it).
 */

/** Grafana's `${name}` variable syntax (written so, it is not mistaken for a JS template). */
export function variableRef(name: string): `\${${string}}` {
  return `\${${name}}` as `\${${string}}`
}

/** Every panel and variable queries through the dashboard's `datasource` variable. */
export const DATASOURCE = { type: 'prometheus', uid: variableRef('datasource') }
export type DatasourceRef = typeof DATASOURCE

/** One PromQL query of a panel. */
export interface Target {
  refId: string
  datasource: DatasourceRef
  editorMode: 'code'
  expr: string
  legendFormat: string
  range: boolean
  instant: boolean
  format: 'time_series' | 'table' | 'heatmap'
  /** Ask Prometheus for exemplars too (trace ids on block durations, when tracing is on). */
  exemplar?: boolean
}

export interface GridPos {
  x: number
  y: number
  w: number
  h: number
}

type Unit = 's' | 'ms' | 'percentunit' | 'reqps' | 'ops' | 'short' | 'bytes' | 'none'

export interface Threshold {
  color: string
  value: number | null
}

interface FieldConfig {
  defaults: Record<string, unknown> & {
    unit?: Unit
    thresholds?: { mode: 'absolute'; steps: Threshold[] }
  }
  overrides: Array<{
    matcher: { id: string; options: string }
    properties: Array<{ id: string; value: unknown }>
  }>
}

export interface Panel {
  id: number
  type: 'stat' | 'timeseries' | 'heatmap' | 'table' | 'bargauge'
  title: string
  description: string
  datasource: DatasourceRef
  gridPos: GridPos
  targets: Target[]
  fieldConfig: FieldConfig
  options: Record<string, unknown>
  transformations?: Array<{ id: string; options: Record<string, unknown> }>
  interval?: string
}

export interface RowPanel {
  id: number
  type: 'row'
  title: string
  collapsed: false
  gridPos: GridPos
  panels: []
}

export interface Variable {
  name: string
  label: string
  type: 'datasource' | 'query'
  description: string
  hide: 0
  [field: string]: unknown
}

export interface Dashboard {
  __inputs: Array<Record<string, string>>
  __elements: Record<string, never>
  __requires: Array<{ type: string; id: string; name: string; version: string }>
  annotations: { list: unknown[] }
  description: string
  editable: boolean
  fiscalYearStartMonth: 0
  graphTooltip: 1
  id: null
  links: unknown[]
  liveNow: false
  panels: Array<Panel | RowPanel>
  refresh: string
  schemaVersion: 38
  tags: string[]
  templating: { list: Variable[] }
  time: { from: string; to: string }
  timepicker: Record<string, never>
  timezone: ''
  title: string
  uid: string
  version: 1
  weekStart: ''
}

/** A panel before layout: its width and height, no id or position yet. */
export type PanelSpec = Omit<Panel, 'id' | 'gridPos' | 'datasource'> & { w: number; h: number }

export interface RowSpec {
  title: string
  panels: PanelSpec[]
}

/** A query shown over time (a range query in Grafana). */
export function query(expr: string, legendFormat = '__auto', extra: Partial<Target> = {}): Target {
  return {
    refId: '',
    datasource: DATASOURCE,
    editorMode: 'code',
    expr,
    legendFormat,
    range: true,
    instant: false,
    format: 'time_series',
    ...extra,
  }
}

/** A query evaluated once, at the end of the dashboard's time range (tables, range totals). */
export function instantQuery(
  expr: string,
  legendFormat = '__auto',
  format: 'table' | 'time_series' = 'table',
): Target {
  return query(expr, legendFormat, { range: false, instant: true, format })
}

/** Give the targets of a panel their refIds A, B, C… */
function withRefIds(targets: Target[]): Target[] {
  return targets.map((target, index) => ({ ...target, refId: String.fromCharCode(65 + index) }))
}

function thresholds(steps: Threshold[]) {
  return { mode: 'absolute' as const, steps }
}

/** Green below the first value, then yellow, then red. */
export function trafficLight(yellow: number, red: number): Threshold[] {
  return [
    { color: 'green', value: null },
    { color: 'yellow', value: yellow },
    { color: 'red', value: red },
  ]
}

const NEUTRAL: Threshold[] = [{ color: 'text', value: null }]

interface CommonOptions {
  title: string
  description: string
  targets: Target[]
  unit: Unit
  w: number
  h: number
}

export function stat(
  options: CommonOptions & {
    steps?: Threshold[]
    textMode?: 'value' | 'value_and_name'
    decimals?: number
  },
): PanelSpec {
  return {
    type: 'stat',
    title: options.title,
    description: options.description,
    targets: withRefIds(options.targets),
    w: options.w,
    h: options.h,
    fieldConfig: {
      defaults: {
        unit: options.unit,
        ...(options.decimals === undefined ? {} : { decimals: options.decimals }),
        color: { mode: 'thresholds' },
        thresholds: thresholds(options.steps ?? NEUTRAL),
      },
      overrides: [],
    },
    options: {
      reduceOptions: { calcs: ['lastNotNull'], fields: '', values: false },
      orientation: 'auto',
      textMode: options.textMode ?? 'value',
      colorMode: options.steps === undefined ? 'none' : 'background',
      graphMode: options.textMode === 'value_and_name' ? 'none' : 'area',
      justifyMode: 'auto',
    },
  }
}

export function timeseries(
  options: CommonOptions & {
    stack?: boolean
    max?: number
    steps?: Threshold[]
    overrides?: FieldConfig['overrides']
  },
): PanelSpec {
  return {
    type: 'timeseries',
    title: options.title,
    description: options.description,
    targets: withRefIds(options.targets),
    w: options.w,
    h: options.h,
    fieldConfig: {
      defaults: {
        unit: options.unit,
        min: 0,
        ...(options.max === undefined ? {} : { max: options.max }),
        color: { mode: 'palette-classic' },
        custom: {
          drawStyle: 'line',
          lineWidth: 1,
          fillOpacity: options.stack ? 30 : 10,
          showPoints: 'never',
          spanNulls: false,
          stacking: { mode: options.stack ? 'normal' : 'none', group: 'A' },
          thresholdsStyle: { mode: options.steps === undefined ? 'off' : 'dashed' },
        },
        thresholds: thresholds(options.steps ?? [{ color: 'green', value: null }]),
      },
      overrides: options.overrides ?? [],
    },
    options: {
      legend: {
        displayMode: 'table',
        placement: 'right',
        calcs: ['mean', 'max'],
        showLegend: true,
      },
      tooltip: { mode: 'multi', sort: 'desc' },
    },
  }
}

export function heatmap(options: CommonOptions & { exemplars: boolean }): PanelSpec {
  return {
    type: 'heatmap',
    title: options.title,
    description: options.description,
    targets: withRefIds(options.targets),
    w: options.w,
    h: options.h,
    fieldConfig: { defaults: { custom: { scaleDistribution: { type: 'linear' } } }, overrides: [] },
    options: {
      calculate: false,
      cellGap: 1,
      color: {
        mode: 'scheme',
        scheme: 'Oranges',
        fill: 'dark-orange',
        scale: 'exponential',
        exponent: 0.5,
        steps: 64,
        reverse: false,
      },
      exemplars: { color: 'rgba(255,0,255,0.7)' },
      filterValues: { le: 1e-9 },
      legend: { show: true },
      rowsFrame: { layout: 'auto' },
      // `show` for Grafana 10, `mode` from 11 on.
      tooltip: { show: true, mode: 'single', yHistogram: true, showColorScale: false },
      yAxis: { axisPlacement: 'left', reverse: false, unit: options.unit },
      showValue: 'never',
    },
  }
}

/** A column of a table: the query (one row per label set) and how it is shown. */
export interface Column {
  header: string
  expr: string
  unit: Unit
  decimals?: number
  steps?: Threshold[]
}

/**
 * A table joining instant queries on their labels (Grafana's "merge" transformation), one column
 * per query, sorted by the first column.
 */
export function table(
  options: Omit<CommonOptions, 'targets' | 'unit'> & {
    labels: Record<string, string>
    columns: Column[]
  },
): PanelSpec {
  const targets = withRefIds(options.columns.map((column) => instantQuery(column.expr)))
  const renames: Record<string, string> = { ...options.labels }
  const overrides: FieldConfig['overrides'] = []
  options.columns.forEach((column, index) => {
    const field = `Value #${targets[index]!.refId}`
    renames[field] = column.header
    const properties: Array<{ id: string; value: unknown }> = [{ id: 'unit', value: column.unit }]
    if (column.decimals !== undefined) properties.push({ id: 'decimals', value: column.decimals })
    if (column.steps !== undefined) {
      properties.push({ id: 'thresholds', value: thresholds(column.steps) })
      properties.push({
        id: 'custom.cellOptions',
        value: { type: 'color-background', mode: 'basic' },
      })
    }
    overrides.push({ matcher: { id: 'byName', options: column.header }, properties })
  })
  const order = [
    ...Object.keys(options.labels),
    ...options.columns.map((_, index) => `Value #${targets[index]!.refId}`),
  ]
  return {
    type: 'table',
    title: options.title,
    description: options.description,
    targets,
    w: options.w,
    h: options.h,
    fieldConfig: { defaults: { custom: { align: 'auto', filterable: true } }, overrides },
    options: {
      showHeader: true,
      cellHeight: 'sm',
      footer: { show: false, reducer: ['sum'], fields: '' },
      sortBy: [{ displayName: options.columns[0]!.header, desc: true }],
    },
    transformations: [
      { id: 'merge', options: {} },
      {
        id: 'organize',
        options: {
          excludeByName: { Time: true },
          indexByName: Object.fromEntries(order.map((name, index) => [name, index])),
          renameByName: renames,
        },
      },
    ],
  }
}

/** Horizontal bars, one per series: shares of a whole. */
export function bars(options: CommonOptions & { steps?: Threshold[] }): PanelSpec {
  return {
    type: 'bargauge',
    title: options.title,
    description: options.description,
    targets: withRefIds(options.targets),
    w: options.w,
    h: options.h,
    fieldConfig: {
      defaults: {
        unit: options.unit,
        min: 0,
        ...(options.unit === 'percentunit' ? { max: 1 } : {}),
        color: { mode: 'thresholds' },
        thresholds: thresholds(options.steps ?? [{ color: 'orange', value: null }]),
      },
      overrides: [],
    },
    options: {
      displayMode: 'gradient',
      orientation: 'horizontal',
      reduceOptions: { calcs: ['lastNotNull'], fields: '', values: false },
      showUnfilled: true,
      valueMode: 'color',
      namePlacement: 'auto',
      sizing: 'auto',
      minVizHeight: 16,
      maxVizHeight: 300,
    },
  }
}

/**
 * Lay the rows out on Grafana's 24-column grid: panels flow left to right and wrap; every row
 * starts on a new line. Ids are assigned in reading order.
 */
export function layout(rows: RowSpec[]): Array<Panel | RowPanel> {
  const panels: Array<Panel | RowPanel> = []
  let id = 1
  let y = 0
  for (const row of rows) {
    panels.push({
      id: id++,
      type: 'row',
      title: row.title,
      collapsed: false,
      gridPos: { x: 0, y, w: 24, h: 1 },
      panels: [],
    })
    y += 1
    let x = 0
    let lineHeight = 0
    for (const spec of row.panels) {
      if (spec.w > 24)
        throw new RangeError(`panel "${spec.title}" is wider than the grid (w=${spec.w})`)
      if (x + spec.w > 24) {
        y += lineHeight
        x = 0
        lineHeight = 0
      }
      const { w, h, ...panel } = spec
      panels.push({ ...panel, id: id++, datasource: DATASOURCE, gridPos: { x, y, w, h } })
      x += w
      lineHeight = Math.max(lineHeight, h)
    }
    y += lineHeight
  }
  return panels
}

/** The `datasource` variable and the `__inputs` entry an import maps onto it. */
export const DATASOURCE_INPUT = {
  name: 'DS_PROMETHEUS',
  label: 'Prometheus',
  description: 'The Prometheus that scrapes your looplens apps',
  type: 'datasource',
  pluginId: 'prometheus',
  pluginName: 'Prometheus',
}

export function datasourceVariable(): Variable {
  return {
    name: 'datasource',
    label: 'Data source',
    type: 'datasource',
    description: 'The Prometheus that scrapes your looplens apps.',
    hide: 0,
    query: 'prometheus',
    // An import replaces ${DS_PROMETHEUS} with the data source chosen in the import dialog; a
    // provisioned copy has no such data source and Grafana falls back to the default one.
    current: { selected: false, text: 'Prometheus', value: variableRef(DATASOURCE_INPUT.name) },
    regex: '',
    refresh: 1,
    includeAll: false,
    multi: false,
    options: [],
    skipUrlSync: false,
  }
}

/**
 * A variable filled by `label_values(selector, label)`.
 * @param allValue the regex "All" stands for; `undefined` lets Grafana join every listed value
 */
export function labelVariable(options: {
  name: string
  label: string
  description: string
  selector: string
  labelName: string
  multi: boolean
  allValue?: string
}): Variable {
  const definition = `label_values(${options.selector}, ${options.labelName})`
  return {
    name: options.name,
    label: options.label,
    type: 'query',
    description: options.description,
    hide: 0,
    datasource: DATASOURCE,
    definition,
    query: { query: definition, refId: 'PrometheusVariableQueryEditor-VariableQuery' },
    refresh: 2,
    regex: '',
    sort: 1,
    multi: options.multi,
    includeAll: options.multi,
    ...(options.allValue === undefined ? {} : { allValue: options.allValue }),
    current: options.multi ? { selected: true, text: ['All'], value: ['$__all'] } : {},
    options: [],
    skipUrlSync: false,
  }
}

/** Every panel of a dashboard, row panels' nested panels included, rows themselves excluded. */
export function panelsOf(dashboard: Dashboard): Panel[] {
  const flat: Panel[] = []
  for (const panel of dashboard.panels) {
    if (panel.type === 'row') continue
    flat.push(panel)
  }
  return flat
}

/** The JSON text of a dashboard as committed: two-space indent, trailing newline. */
export function toJson(dashboard: Dashboard): string {
  return `${JSON.stringify(dashboard, null, 2)}\n`
}
