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
 */
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)
const config = process.env.BENCH_CONFIG ?? 'bare'
const KNOWN = [
  'bare',
  'looplens',
  'looplens-nostacks',
  'prom-bundle',
  'otel',
  'otel+looplens',
  'blocked-at',
]
if (!KNOWN.includes(config)) {
  throw new Error(`BENCH_CONFIG must be one of ${KNOWN.join(', ')} (received ${config})`)
}
const wantsOtel = config === 'otel' || config === 'otel+looplens'
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

if (config === 'looplens' || config === 'looplens-nostacks' || config === 'otel+looplens') {
  const { createLooplens } = await import('looplens')
  const lens = createLooplens(config === 'looplens-nostacks' ? { captureStacks: false } : {})
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

process.on('message', async (message) => {
  if (message?.cmd === 'start') {
    window = { cpu: process.cpuUsage(), served, wall: process.hrtime.bigint() }
    send({ type: 'started' })
  } else if (message?.cmd === 'stop') {
    const cpu = process.cpuUsage(window.cpu)
    const wallMs = Number(process.hrtime.bigint() - window.wall) / 1e6
    const requests = served - window.served
    const memory = process.memoryUsage()
    const resources = process.resourceUsage()
    // Everything below runs after the window closed: it is not measured.
    let checks = {}
    try {
      checks = await check()
    } catch (error) {
      checks = { error: String(error) }
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
