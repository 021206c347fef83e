/**
 * The looplens dashboard: is the loop healthy, who is blocking it, what does it cost the other
 * requests, what to fix first. Metric names are the contract of DESIGN.md ("Names"); the runtime
 * row uses prom-client's default metrics (`collectDefaultMetrics({ register: lens.registry })`).
 *
 * Every query here is run against a real Prometheus scraping a real app by
 * test/grafana/prometheus.test.ts, with the variables substituted the way Grafana does.
 */
import {
  bars,
  DATASOURCE_INPUT,
  type Dashboard,
  datasourceVariable,
  heatmap,
  instantQuery,
  labelVariable,
  layout,
  query,
  stat,
  table,
  timeseries,
  trafficLight,
} from './grafana.js'

/** The series of the chosen job and instances. */
const SEL = 'job="$job", instance=~"$instance"'
/** …and of the chosen routes ("All" is `.*`, so the empty route of unrouted requests is in). */
const ROUTE = `${SEL}, http_route=~"$route"`
const RATE = '[$__rate_interval]'
const RANGE = '[$__range]'

const BLOCK = 'looplens_eventloop_block_duration_seconds'
const DELAY = 'looplens_eventloop_delay_seconds'
const UTILIZATION = 'looplens_eventloop_utilization_ratio'
const REQUEST = 'http_server_request_duration_seconds'
const SYNC = 'looplens_request_sync_duration_seconds'
const BLOCKER = 'http_request_method, http_route, task'
const ROUTE_KEY = 'http_request_method, http_route'
const BLOCKER_LEGEND = '{{http_request_method}} {{http_route}} {{task}}'
const ROUTE_LEGEND = '{{http_request_method}} {{http_route}}'

/** The q-quantile of a histogram's rate, kept apart by `by` (plus `le`). */
function quantile(q: number, metric: string, selector: string, by: string, window = RATE): string {
  const keep = by === '' ? 'le' : `${by}, le`
  return `histogram_quantile(${q}, sum by (${keep}) (rate(${metric}_bucket{${selector}}${window})))`
}

/**
 * How much a counter grew over the dashboard's time range, counting a series born inside the
 * range with its whole value. increase() never sees a counter's first sample, and a route's block
 * series is born with its first block already in it: a route that blocked once, for 5 s, would
 * show nothing. (The alert rules do the same; see grafana/alerts/looplens.rules.yml.)
 */
function rangeIncrease(metric: string, selector: string): string {
  const series = `${metric}{${selector}}`
  return `((${series} unless ${series} offset $__range) or increase(${series}${RANGE}))`
}

/** Blocked seconds over the range by blocker, and the same as a share of all blocked time. */
const blockedByBlocker = `sum by (${BLOCKER}) (${rangeIncrease(`${BLOCK}_sum`, ROUTE)})`
const blockedShare = `${blockedByBlocker} / scalar(sum(${rangeIncrease(`${BLOCK}_sum`, SEL)}))`

const delayP99ByInstance = quantile(0.99, DELAY, SEL, 'instance')

const overview = {
  title: 'Overview',
  panels: [
    stat({
      title: 'Loop delay p99',
      description:
        'How late timers and I/O callbacks ran, worst instance (99th percentile over the rate interval). Every request waits at least this long when it lands at a bad moment. Green < 20 ms, red ≥ 100 ms.',
      targets: [query(`max(${delayP99ByInstance})`)],
      unit: 's',
      steps: trafficLight(0.02, 0.1),
      w: 3,
      h: 4,
    }),
    stat({
      title: 'Loop utilization',
      description:
        'Share of time the loop was busy running JavaScript rather than waiting for I/O, worst instance. Near 100% the process is CPU-bound: requests queue.',
      targets: [query(`max(${UTILIZATION}{${SEL}})`)],
      unit: 'percentunit',
      steps: trafficLight(0.7, 0.9),
      w: 3,
      h: 4,
    }),
    stat({
      title: 'Time blocked',
      description:
        'Share of wall time the loop spent in stalls of at least blockThresholdMs (all routes and tasks, averaged over instances). Nothing else ran during that time.',
      targets: [
        query(
          `(sum(rate(${BLOCK}_sum{${SEL}}${RATE})) or vector(0)) / count(${UTILIZATION}{${SEL}})`,
        ),
      ],
      unit: 'percentunit',
      steps: trafficLight(0.01, 0.05),
      w: 3,
      h: 4,
    }),
    stat({
      title: 'Blocks per minute',
      description: 'Stalls of at least blockThresholdMs per minute, all instances.',
      targets: [query(`(sum(rate(${BLOCK}_count{${SEL}}${RATE})) * 60) or vector(0)`)],
      unit: 'short',
      decimals: 1,
      steps: trafficLight(1, 10),
      w: 3,
      h: 4,
    }),
    stat({
      title: 'Worst blocker (range)',
      description:
        'The route (or task) that held the loop the longest over the whole time range, and for how long in total. Fix this one first.',
      targets: [
        instantQuery(
          `topk(1, sum by (${BLOCKER}) (${rangeIncrease(`${BLOCK}_sum`, SEL)}))`,
          BLOCKER_LEGEND,
          'time_series',
        ),
      ],
      unit: 's',
      textMode: 'value_and_name',
      w: 3,
      h: 4,
    }),
    stat({
      title: 'Requests per second',
      description: 'Completed and aborted requests per second, all routes and instances.',
      targets: [query(`sum(rate(${REQUEST}_count{${SEL}}${RATE}))`)],
      unit: 'reqps',
      w: 3,
      h: 4,
    }),
    stat({
      title: 'Request latency p99',
      description: '99th percentile of request duration, all routes.',
      targets: [query(quantile(0.99, REQUEST, SEL, ''))],
      unit: 's',
      steps: trafficLight(0.5, 1),
      w: 3,
      h: 4,
    }),
    stat({
      title: 'Errors and aborts',
      description:
        'Share of requests answered 5xx (503s of the load-shedding guard included) or aborted by the client before the response completed.',
      targets: [
        query(
          `(sum(rate(${REQUEST}_count{${SEL}, http_response_status_code=~"5..|"}${RATE})) or vector(0)) / sum(rate(${REQUEST}_count{${SEL}}${RATE}))`,
        ),
      ],
      unit: 'percentunit',
      steps: trafficLight(0.01, 0.05),
      w: 3,
      h: 4,
    }),
  ],
}

const loop = {
  title: 'Event-loop delay and utilization',
  panels: [
    timeseries({
      title: 'Event-loop delay',
      description:
        'How late the loop ran its callbacks (perf_hooks.monitorEventLoopDelay, resolution subtracted): median, 99th percentile and the upper bound of the slowest bucket seen. A healthy server stays in single-digit milliseconds.',
      targets: [
        query(quantile(0.5, DELAY, SEL, 'instance'), 'p50 {{instance}}'),
        query(delayP99ByInstance, 'p99 {{instance}}'),
        query(quantile(1, DELAY, SEL, 'instance'), 'max {{instance}}'),
      ],
      unit: 's',
      steps: trafficLight(0.02, 0.1),
      w: 12,
      h: 8,
    }),
    timeseries({
      title: 'Event-loop utilization',
      description:
        'Share of time the loop was busy between two scrapes (ELU). Sustained above 90%: the process is CPU-bound; add instances, move CPU work to workers, or shed load.',
      targets: [query(`${UTILIZATION}{${SEL}}`, '{{instance}}')],
      unit: 'percentunit',
      max: 1,
      steps: trafficLight(0.7, 0.9),
      w: 12,
      h: 8,
    }),
    heatmap({
      title: 'Event-loop delay distribution',
      description:
        'Every delay sample by size over time. A second band far above the first means occasional long stalls; a band that rises as a whole means saturation.',
      targets: [
        query(`sum by (le) (increase(${DELAY}_bucket{${SEL}}${RATE}))`, '{{le}}', {
          format: 'heatmap',
        }),
      ],
      unit: 's',
      exemplars: false,
      w: 24,
      h: 7,
    }),
  ],
}

const blocking = {
  title: 'Blocking by route',
  panels: [
    timeseries({
      title: 'Blocks per second by route',
      description:
        'Stalls of at least blockThresholdMs, by the route (or task) whose code was running. A series with every label empty is a stall outside any request, or a saturated loop (many short callbacks) that no single route is blamed for.',
      targets: [
        query(`sum by (${BLOCKER}) (rate(${BLOCK}_count{${ROUTE}}${RATE}))`, BLOCKER_LEGEND),
      ],
      unit: 'ops',
      w: 12,
      h: 8,
    }),
    timeseries({
      title: 'Time blocked by route',
      description:
        'Seconds of stall per second of wall time, stacked by route: the share of the loop each route took away from everyone else.',
      targets: [query(`sum by (${BLOCKER}) (rate(${BLOCK}_sum{${ROUTE}}${RATE}))`, BLOCKER_LEGEND)],
      unit: 'percentunit',
      stack: true,
      w: 12,
      h: 8,
    }),
    bars({
      title: 'Share of total blocked time (range)',
      description:
        'Each route’s part of all the time the loop was blocked over the time range (of every route, whatever the route filter).',
      targets: [instantQuery(blockedShare, BLOCKER_LEGEND, 'time_series')],
      unit: 'percentunit',
      w: 8,
      h: 9,
    }),
    table({
      title: 'Top blockers (range)',
      description:
        'Who blocked the loop, worst first: total time, how often, how long a typical bad block is. The culprit function and line are in the block events and the looplens report.',
      labels: { http_request_method: 'Method', http_route: 'Route', task: 'Task' },
      columns: [
        {
          header: 'Blocked',
          expr: blockedByBlocker,
          unit: 's',
        },
        {
          header: 'Blocks',
          expr: `sum by (${BLOCKER}) (${rangeIncrease(`${BLOCK}_count`, ROUTE)})`,
          unit: 'short',
          decimals: 0,
        },
        {
          header: 'Block p99',
          expr: `histogram_quantile(0.99, sum by (${BLOCKER}, le) (${rangeIncrease(`${BLOCK}_bucket`, ROUTE)}))`,
          unit: 's',
          steps: trafficLight(0.1, 1),
        },
        {
          header: 'Share',
          expr: blockedShare,
          unit: 'percentunit',
        },
      ],
      w: 16,
      h: 9,
    }),
    heatmap({
      title: 'Block durations',
      description:
        'Every block by its length over time (selected routes). With tracing on, exemplars link a block to its trace: hover a dot to open the request that blocked.',
      targets: [
        query(`sum by (le) (increase(${BLOCK}_bucket{${ROUTE}}${RATE}))`, '{{le}}', {
          format: 'heatmap',
          exemplar: true,
        }),
      ],
      unit: 's',
      exemplars: true,
      w: 24,
      h: 8,
    }),
  ],
}

const red = {
  title: 'Requests by route (RED) and synchronous time',
  panels: [
    timeseries({
      title: 'Requests per second by route',
      description: 'Request rate by route template (never the raw URL).',
      targets: [
        query(`sum by (${ROUTE_KEY}) (rate(${REQUEST}_count{${ROUTE}}${RATE}))`, ROUTE_LEGEND),
      ],
      unit: 'reqps',
      w: 8,
      h: 8,
    }),
    timeseries({
      title: 'Errors and aborts by route',
      description:
        '5xx responses and requests the client aborted (status shown empty) per second, by route and status.',
      targets: [
        query(
          `sum by (${ROUTE_KEY}, http_response_status_code) (rate(${REQUEST}_count{${ROUTE}, http_response_status_code=~"5..|"}${RATE}))`,
          '{{http_request_method}} {{http_route}} {{http_response_status_code}}',
        ),
      ],
      unit: 'reqps',
      w: 8,
      h: 8,
    }),
    timeseries({
      title: 'Latency p99 by route',
      description: '99th percentile of request duration by route.',
      targets: [query(quantile(0.99, REQUEST, ROUTE, ROUTE_KEY), ROUTE_LEGEND)],
      unit: 's',
      w: 8,
      h: 8,
    }),
    timeseries({
      title: 'Synchronous time p99 by route',
      description:
        'How long a request’s middleware and handler chain held the loop before its first await (99th percentile). Everything above a few milliseconds is time no other request could run.',
      targets: [query(quantile(0.99, SYNC, ROUTE, ROUTE_KEY), ROUTE_LEGEND)],
      unit: 's',
      steps: trafficLight(0.01, 0.05),
      w: 8,
      h: 8,
    }),
    timeseries({
      title: 'Loop time spent synchronously, by route',
      description:
        'Seconds of synchronous handler time per second, stacked by route: which routes use the single thread. A route with a small request rate but a large share here is the one to optimise or offload.',
      targets: [query(`sum by (${ROUTE_KEY}) (rate(${SYNC}_sum{${ROUTE}}${RATE}))`, ROUTE_LEGEND)],
      unit: 'percentunit',
      stack: true,
      w: 8,
      h: 8,
    }),
    timeseries({
      title: 'Requests in flight',
      description: 'Requests started and not yet finished, by method.',
      targets: [
        query(
          `sum by (instance, http_request_method) (http_server_active_requests{${SEL}})`,
          '{{http_request_method}} {{instance}}',
        ),
      ],
      unit: 'short',
      w: 8,
      h: 8,
    }),
    table({
      title: 'Routes at a glance (range)',
      description:
        'Per route over the time range: request rate, latency, synchronous time and the time it blocked the loop. Sort by any column.',
      labels: { http_request_method: 'Method', http_route: 'Route' },
      columns: [
        {
          header: 'Requests/s',
          expr: `sum by (${ROUTE_KEY}) (rate(${REQUEST}_count{${ROUTE}}${RANGE}))`,
          unit: 'reqps',
        },
        {
          header: 'Latency p99',
          expr: quantile(0.99, REQUEST, ROUTE, ROUTE_KEY, RANGE),
          unit: 's',
          steps: trafficLight(0.5, 1),
        },
        {
          header: 'Sync p99',
          expr: quantile(0.99, SYNC, ROUTE, ROUTE_KEY, RANGE),
          unit: 's',
          steps: trafficLight(0.01, 0.05),
        },
        {
          header: 'Sync mean',
          expr: `sum by (${ROUTE_KEY}) (rate(${SYNC}_sum{${ROUTE}}${RANGE})) / sum by (${ROUTE_KEY}) (rate(${SYNC}_count{${ROUTE}}${RANGE}))`,
          unit: 's',
        },
        {
          header: 'Blocked (total)',
          expr: `sum by (${ROUTE_KEY}) (${rangeIncrease(`${BLOCK}_sum`, ROUTE)})`,
          unit: 's',
        },
      ],
      w: 24,
      h: 8,
    }),
  ],
}

const victims = {
  title: 'Victims: request latency vs loop delay',
  panels: [
    timeseries({
      title: 'Request latency p99 vs event-loop delay p99',
      description:
        'When a route’s latency rises together with the loop delay (dashed) while its own synchronous time stays small, that route is a victim: it waited behind someone else’s blocking code. Look at “Blocking by route” for the culprit.',
      targets: [
        query(quantile(0.99, REQUEST, ROUTE, 'http_route'), '{{http_route}}'),
        query(`max(${delayP99ByInstance})`, 'event-loop delay p99'),
      ],
      unit: 's',
      overrides: [
        {
          matcher: { id: 'byName', options: 'event-loop delay p99' },
          properties: [
            { id: 'color', value: { mode: 'fixed', fixedColor: 'red' } },
            { id: 'custom.lineStyle', value: { fill: 'dash', dash: [10, 10] } },
            { id: 'custom.lineWidth', value: 2 },
          ],
        },
      ],
      w: 12,
      h: 8,
    }),
    timeseries({
      title: 'Requests slower than 100 ms, by route',
      description:
        'Share of each route’s requests that took longer than 100 ms. A fast route showing up here while the loop is blocked is paying for another route’s blocking.',
      targets: [
        query(
          `1 - (sum by (http_route) (rate(${REQUEST}_bucket{${ROUTE}, le="0.1"}${RATE})) / sum by (http_route) (rate(${REQUEST}_count{${ROUTE}}${RATE})))`,
          '{{http_route}}',
        ),
      ],
      unit: 'percentunit',
      max: 1,
      w: 12,
      h: 8,
    }),
    timeseries({
      title: 'Time waiting vs time running, by route',
      description:
        'Mean request duration minus mean synchronous time: how long a request spent not running its own synchronous code — awaiting I/O, or queued behind other work on a busy loop. Rising together with loop delay = waiting behind blockers.',
      targets: [
        query(
          `sum by (http_route) (rate(${REQUEST}_sum{${ROUTE}}${RATE})) / sum by (http_route) (rate(${REQUEST}_count{${ROUTE}}${RATE})) - sum by (http_route) (rate(${SYNC}_sum{${ROUTE}}${RATE})) / sum by (http_route) (rate(${SYNC}_count{${ROUTE}}${RATE}))`,
          '{{http_route}} waiting',
        ),
        query(
          `sum by (http_route) (rate(${SYNC}_sum{${ROUTE}}${RATE})) / sum by (http_route) (rate(${SYNC}_count{${ROUTE}}${RATE}))`,
          '{{http_route}} running',
        ),
      ],
      unit: 's',
      w: 24,
      h: 8,
    }),
  ],
}

const BACKGROUND = 'looplens_background_task_duration_seconds'
const TASK = 'looplens_task_duration_seconds'

const tasks = {
  title: 'Background tasks and shed requests',
  panels: [
    timeseries({
      title: 'Background tasks per second',
      description:
        'Tasks run after the response with lens.background(res).add(fn), by task and outcome.',
      targets: [
        query(
          `sum by (task, outcome) (rate(${BACKGROUND}_count{${SEL}}${RATE}))`,
          '{{task}} {{outcome}}',
        ),
      ],
      unit: 'ops',
      w: 8,
      h: 8,
    }),
    timeseries({
      title: 'Background task duration p99',
      description: 'How long background tasks take, by task (99th percentile).',
      targets: [query(quantile(0.99, BACKGROUND, SEL, 'task'), '{{task}}')],
      unit: 's',
      w: 8,
      h: 8,
    }),
    timeseries({
      title: 'Background tasks running',
      description:
        'Background tasks started and not finished. A line that only grows: tasks arrive faster than they finish.',
      targets: [query(`sum by (task) (looplens_background_tasks_active{${SEL}})`, '{{task}}')],
      unit: 'short',
      w: 8,
      h: 8,
    }),
    timeseries({
      title: 'Tracked tasks per second',
      description:
        'Non-HTTP work wrapped with lens.track(name, fn) — queue consumers, WebSocket messages, jobs — by task and outcome.',
      targets: [
        query(
          `sum by (task, outcome) (rate(${TASK}_count{${SEL}}${RATE}))`,
          '{{task}} {{outcome}}',
        ),
      ],
      unit: 'ops',
      w: 8,
      h: 8,
    }),
    timeseries({
      title: 'Tracked task duration p99',
      description: 'How long tracked tasks take, by task (99th percentile).',
      targets: [query(quantile(0.99, TASK, SEL, 'task'), '{{task}}')],
      unit: 's',
      w: 8,
      h: 8,
    }),
    timeseries({
      title: 'Shed requests per second',
      description:
        'Requests answered 503 + Retry-After by lens.guard() because the loop was over its delay or utilization limit, by reason. Shedding protects latency; sustained shedding means too little capacity.',
      targets: [
        query(`sum by (reason) (rate(looplens_shed_requests_total{${SEL}}${RATE}))`, '{{reason}}'),
      ],
      unit: 'reqps',
      w: 8,
      h: 8,
    }),
  ],
}

const runtime = {
  title: 'Runtime (prom-client default metrics)',
  panels: [
    timeseries({
      title: 'CPU',
      description:
        'Process CPU time per second (1 = one full core). A Node process serves from one thread: near 1 it is CPU-bound.',
      targets: [query(`rate(process_cpu_seconds_total{${SEL}}${RATE})`, '{{instance}}')],
      unit: 'percentunit',
      w: 8,
      h: 8,
    }),
    timeseries({
      title: 'Memory',
      description: 'Resident set size, V8 heap used and heap size. Heap that only grows is a leak.',
      targets: [
        query(`process_resident_memory_bytes{${SEL}}`, 'rss {{instance}}'),
        query(`nodejs_heap_size_used_bytes{${SEL}}`, 'heap used {{instance}}'),
        query(`nodejs_heap_size_total_bytes{${SEL}}`, 'heap total {{instance}}'),
      ],
      unit: 'bytes',
      w: 8,
      h: 8,
    }),
    timeseries({
      title: 'Garbage collection',
      description:
        'Share of time spent in garbage collection, by kind. GC pauses stop the loop too: a high share shows up as loop delay without any route to blame.',
      targets: [
        query(
          `sum by (instance, kind) (rate(nodejs_gc_duration_seconds_sum{${SEL}}${RATE}))`,
          '{{kind}} {{instance}}',
        ),
      ],
      unit: 'percentunit',
      stack: true,
      w: 8,
      h: 8,
    }),
  ],
}

/** The dashboard, as committed in grafana/dashboards/looplens.json. */
export function looplensDashboard(): Dashboard {
  return {
    __inputs: [DATASOURCE_INPUT],
    __elements: {},
    __requires: [
      { type: 'grafana', id: 'grafana', name: 'Grafana', version: '10.0.0' },
      { type: 'datasource', id: 'prometheus', name: 'Prometheus', version: '1.0.0' },
      { type: 'panel', id: 'stat', name: 'Stat', version: '' },
      { type: 'panel', id: 'timeseries', name: 'Time series', version: '' },
      { type: 'panel', id: 'heatmap', name: 'Heatmap', version: '' },
      { type: 'panel', id: 'table', name: 'Table', version: '' },
      { type: 'panel', id: 'bargauge', name: 'Bar gauge', version: '' },
    ],
    annotations: {
      list: [
        {
          builtIn: 1,
          datasource: { type: 'grafana', uid: '-- Grafana --' },
          enable: true,
          hide: true,
          iconColor: 'rgba(0, 211, 255, 1)',
          name: 'Annotations & Alerts',
          type: 'dashboard',
        },
      ],
    },
    description:
      'looplens: event-loop health, who blocks it (route, task), what it costs the other requests, and what to fix first.',
    editable: true,
    fiscalYearStartMonth: 0,
    graphTooltip: 1,
    id: null,
    links: [],
    liveNow: false,
    panels: layout([overview, loop, blocking, red, victims, tasks, runtime]),
    refresh: '30s',
    schemaVersion: 38,
    tags: ['looplens', 'nodejs', 'event-loop'],
    templating: {
      list: [
        datasourceVariable(),
        labelVariable({
          name: 'job',
          label: 'Job',
          description: 'The Prometheus job of your looplens app.',
          selector: UTILIZATION,
          labelName: 'job',
          multi: false,
        }),
        labelVariable({
          name: 'instance',
          label: 'Instance',
          description: 'Processes of the job.',
          selector: `${UTILIZATION}{job="$job"}`,
          labelName: 'instance',
          multi: true,
        }),
        labelVariable({
          name: 'route',
          label: 'Route',
          description:
            'Route templates (Express paths, never raw URLs). "All" also covers requests that matched no route and blocks outside any request (empty route).',
          selector: `${REQUEST}_count{job="$job", instance=~"$instance"}`,
          labelName: 'http_route',
          multi: true,
          allValue: '.*',
        }),
      ],
    },
    time: { from: 'now-1h', to: 'now' },
    timepicker: {},
    timezone: '',
    title: 'looplens — event loop',
    uid: 'looplens-event-loop',
    version: 1,
    weekStart: '',
  }
}

/** Every dashboard looplens ships, by file name under grafana/dashboards/. */
export const dashboards: Record<string, () => Dashboard> = {
  'looplens.json': looplensDashboard,
}
