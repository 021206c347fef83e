/**
 * The benchmarked server: Express 5 hello-world `GET /users/:id` (JSON), instrumented as
 * `BENCH_CONFIG` says. Started as a child process by `overhead.js`, one process per round.
 *
 * Control goes over the IPC channel, never over HTTP, so nothing but the load is measured:
 *   parent → {cmd:'start'}  the measured window begins (CPU, request count snapshot)
 *   parent → {cmd:'stop'}   the window ends; the reply carries CPU µs, requests, RSS, checks
 *   parent → {cmd:'exit'}
 *
 * Configurations:
 *   bare                Express alone
 *   looplens            createLooplens() with everything on, app.use(lens.express()), /metrics
 *   looplens-nostacks   the same with captureStacks: false (no watchdog worker)
 *   prom-bundle         express-prom-bundle (includeMethod, includePath, normalizePath)
 *   otel                NodeSDK + http + express instrumentation (run with --import ./otel-setup.js)
 *   otel+looplens       both of the above
 *   blocked-at          blocked-at with its default options
 *
 * Ablations (diagnostic, not in the default run): one piece of what looplens does per request,
 * alone, to measure its cost without a profiler's sampling bias:
 *   ablate-noop         one extra middleware that only calls next()
 *   ablate-als          + AsyncLocalStorage#enterWith of a small object
 *   ablate-close        + res.prependOnceListener('close', …) reading the route at the end
 *   ablate-prom         + prom-client: active gauge inc/dec, two histogram observes (same labels)
 *   ablate-all          all four pieces together (how much of looplens's cost they explain)
 */
import { createRequire } from 'node:module'
import { ABLATIONS, CONFIGS } from './common.js'

const require = createRequire(import.meta.url)
const config = process.env.BENCH_CONFIG ?? 'bare'
const KNOWN = [...CONFIGS, ...ABLATIONS]
if (!KNOWN.includes(config)) {
  throw new Error(`BENCH_CONFIG must be one of ${KNOWN.join(', ')} (received ${config})`)
}
const wantsOtel = config.startsWith('otel')
if (wantsOtel && globalThis.__benchOtelSdk === undefined) {
  throw new Error(`BENCH_CONFIG=${config} needs: node --import ./otel-setup.js server.js`)
}

// express through require(), not import: OpenTelemetry patches CommonJS modules on require
// (require-in-the-middle); an ESM import of a CommonJS package would bypass the hook on Node 20.
// Every configuration loads it the same way, so the comparison stays fair.
const express = require('express')

/** Work counted by each configuration's own instruments, read after the window (sanity check). */
let check = async () => ({})
let close = async () => {}

const app = express()

if (config.includes('looplens')) {
  const { createLooplens } = await import('looplens')
  // BENCH_LOOPLENS_OPTIONS: JSON merged into the options (instructions.js raises the threshold:
  // under valgrind every tick runs ~50× slower and would otherwise count as a block).
  const extra = JSON.parse(process.env.BENCH_LOOPLENS_OPTIONS ?? '{}')
  const lens = createLooplens({
    ...(config.endsWith('looplens-nostacks') ? { captureStacks: false } : {}),
    ...extra,
  })
  app.use(lens.express())
  app.get('/metrics', lens.metricsHandler())
  check = async () => {
    const metric = lens.registry.getSingleMetric('http_server_request_duration_seconds')
    const values = metric === undefined ? [] : (await metric.get()).values
    const count = values
      .filter((value) => value.metricName === 'http_server_request_duration_seconds_count')
      .reduce((sum, value) => sum + value.value, 0)
    const snapshot = lens.snapshot()
    return { looplensRequests: count, looplensBlocks: snapshot.blocks.count }
  }
  close = () => lens.close()
}

if (config === 'prom-bundle') {
  const promBundle = require('express-prom-bundle')
  const promClient = require('prom-client')
  app.use(
    promBundle({
      includeMethod: true,
      includePath: true,
      normalizePath: [['^/users/[^/]+$', '/users/#id']],
    }),
  )
  check = async () => {
    const metric = promClient.register.getSingleMetric('http_request_duration_seconds')
    const values = metric === undefined ? [] : (await metric.get()).values
    const count = values
      .filter((value) => value.metricName === 'http_request_duration_seconds_count')
      .reduce((sum, value) => sum + value.value, 0)
    return { promBundleRequests: count }
  }
}

if (config === 'blocked-at') {
  const blocked = require('blocked-at')
  let blocks = 0
  blocked(() => {
    blocks++
  })
  check = async () => ({ blockedAtBlocks: blocks })
}

if (wantsOtel) {
  const previous = check
  check = async () => {
    await globalThis.__benchOtelSdk.shutdown() // flushes the batch processor
    return { ...(await previous()), otelSpans: { ...globalThis.__benchSpanExporter.counts } }
  }
}

if (config.startsWith('ablate-')) {
  const { AsyncLocalStorage } = await import('node:async_hooks')
  const storage = new AsyncLocalStorage()
  let routes = 0
  function onClose() {
    const req = this.req
    if (req.route !== undefined) routes += (req.baseUrl + req.route.path).length
  }
  let observe = () => {}
  const all = config === 'ablate-all'
  if (config === 'ablate-prom' || all) {
    const { Registry, Histogram, Gauge } = require('prom-client')
    const registry = new Registry()
    const labelNames = ['http_request_method', 'http_route', 'http_response_status_code']
    const duration = new Histogram({
      name: 'duration_seconds',
      help: 'h',
      labelNames,
      buckets: [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10],
      registers: [registry],
    })
    const sync = new Histogram({
      name: 'sync_seconds',
      help: 'h',
      labelNames: labelNames.slice(0, 2),
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers: [registry],
    })
    const active = new Gauge({
      name: 'active',
      help: 'g',
      labelNames: ['http_request_method'],
      registers: [registry],
    })
    observe = (method, route) => {
      active.inc({ http_request_method: method })
      active.dec({ http_request_method: method })
      duration.observe(
        { http_request_method: method, http_route: route, http_response_status_code: 200 },
        0.001,
      )
      sync.observe({ http_request_method: method, http_route: route }, 0.0001)
    }
  }
  app.use(function ablationMiddleware(req, res, next) {
    if (config === 'ablate-als' || all) storage.enterWith({ method: req.method, req })
    if (config === 'ablate-close' || all) res.prependOnceListener('close', onClose)
    if (config === 'ablate-prom' || all) observe(req.method, `/users/${':id'}`)
    next()
  })
  check = async () => ({ routeChars: routes })
}

let served = 0
app.get('/users/:id', function getUser(req, res) {
  served++
  res.json({ id: req.params.id, name: 'Ada Lovelace', active: true })
})

const server = app.listen(0, '127.0.0.1', () => {
  send({ type: 'ready', port: server.address().port, pid: process.pid })
})
// wrk holds keep-alive connections; do not let Node's defaults cut them mid-window.
server.keepAliveTimeout = 60_000

let window

// BENCH_CPU_PROF=<dir>: a V8 CPU profile of the measured window only (not startup or warm-up),
// written as <dir>/<config>-<pid>.cpuprofile with the window's request count in `$bench`.
const profileDir = process.env.BENCH_CPU_PROF
let profiler

async function startProfiler() {
  const { Session } = await import('node:inspector')
  const session = new Session()
  session.connect()
  const post = (method, params) =>
    new Promise((resolve, reject) =>
      session.post(method, params, (error, result) => (error ? reject(error) : resolve(result))),
    )
  await post('Profiler.enable')
  await post('Profiler.setSamplingInterval', {
    interval: Number(process.env.BENCH_CPU_PROF_INTERVAL_US ?? 200),
  })
  await post('Profiler.start')
  return { session, post }
}

async function stopProfiler(stats) {
  const { session, post } = profiler
  const { profile } = await post('Profiler.stop')
  session.disconnect()
  const { writeFileSync, mkdirSync } = await import('node:fs')
  const { join } = await import('node:path')
  mkdirSync(profileDir, { recursive: true })
  const file = join(
    profileDir,
    `${config.replace('+', '_')}-${stats.phase ?? 'window'}-${process.pid}.cpuprofile`,
  )
  profile.$bench = stats
  writeFileSync(file, JSON.stringify(profile))
  return file
}

process.on('message', async (message) => {
  if (message?.cmd === 'start') {
    // instructions.js: every window starts from a collected heap, so whether a major GC falls in
    // the window depends on what the requests allocate, not on what warm-up left behind.
    if (message.gc === true) globalThis.gc?.()
    if (profileDir !== undefined) profiler = await startProfiler()
    window = {
      cpu: process.cpuUsage(),
      served,
      wall: process.hrtime.bigint(),
      phase: message.phase,
    }
    send({ type: 'started' })
  } else if (message?.cmd === 'stop') {
    const cpu = process.cpuUsage(window.cpu)
    const wallMs = Number(process.hrtime.bigint() - window.wall) / 1e6
    const requests = served - window.served
    const memory = process.memoryUsage()
    const resources = process.resourceUsage()
    // Everything below runs after the window closed: it is not measured.
    const profileFile =
      profiler === undefined
        ? undefined
        : await stopProfiler({
            config,
            phase: window.phase,
            requests,
            cpuUs: cpu.user + cpu.system,
            wallMs,
          })
    // Only after the run's last window: the OpenTelemetry check shuts the SDK down.
    let checks = {}
    if (message.final) {
      try {
        checks = await check()
      } catch (error) {
        checks = { error: String(error) }
      }
    }
    send({
      type: 'stopped',
      config,
      cpuUserUs: cpu.user,
      cpuSystemUs: cpu.system,
      wallMs,
      requests,
      servedTotal: served,
      rssBytes: memory.rss,
      heapUsedBytes: memory.heapUsed,
      maxRssBytes: resources.maxRSS * 1024,
      checks,
      profileFile,
    })
  } else if (message?.cmd === 'exit') {
    server.closeAllConnections?.()
    server.close()
    await close()
    process.exit(0)
  }
})

function send(message) {
  process.send?.(message)
}
