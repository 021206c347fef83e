#!/usr/bin/env node
import { AsyncLocalStorage } from 'node:async_hooks'
/**
 * In-process benchmark: the JavaScript cost looplens adds to one request, without the network.
 *
 *   npm run build && node bench/inproc.js [--rounds 15] [--requests 20000]
 *
 * The wrk benchmark (overhead.js) measures what users get, but on this shared 2-core machine its
 * CPU per request moves ±10–15% between runs, and half of it is the kernel's socket work (writev),
 * the same for every configuration. Here the same Express 5 app, bare and with `lens.express()`,
 * handles `GET /users/:id` dispatched straight into `app(req, res)` on real IncomingMessage /
 * ServerResponse objects (no socket): the difference is looplens's own work on the request path —
 * context, route template, metrics — and one more Express layer. Two ablations split that up: a
 * middleware that only calls `next()` (the layer), and one that only does
 * `AsyncLocalStorage#enterWith` (the layer + the context store). Batches of all four alternate in
 * one process, in a shuffled order each round; the medians of per-batch CPU per request are
 * compared.
 * What this leaves out: AsyncLocalStorage's hook on the async resources a real socket creates
 * (about 1% of a real request in the wrk profile) and the kernel.
 */
import http from 'node:http'
import { Socket } from 'node:net'
import { parseArgs } from 'node:util'
import express from 'express'
import { createLooplens } from 'looplens'
import { median } from './common.js'

const { values: args } = parseArgs({
  options: {
    rounds: { type: 'string', default: '15' },
    requests: { type: 'string', default: '20000' },
  },
})
const rounds = Number(args.rounds)
const perBatch = Number(args.requests)

const CONFIGS = ['bare', 'noop layer', 'layer + AsyncLocalStorage', 'looplens']

function makeApp(config) {
  const app = express()
  let lens
  if (config === 'noop layer') {
    app.use(function noop(_req, _res, next) {
      next()
    })
  } else if (config === 'layer + AsyncLocalStorage') {
    const storage = new AsyncLocalStorage()
    app.use(function contextOnly(req, _res, next) {
      storage.enterWith({ req })
      next()
    })
  } else if (config === 'looplens') {
    lens = createLooplens()
    app.use(lens.express())
    app.get('/metrics', lens.metricsHandler())
  }
  app.get('/users/:id', (req, res) => {
    res.json({ id: req.params.id, name: 'Ada' })
  })
  return { app, lens }
}

const socket = new Socket()

function dispatch(app) {
  const req = new http.IncomingMessage(socket)
  req.method = 'GET'
  req.url = '/users/42'
  req.headers = { host: 'bench', accept: 'application/json' }
  const res = new http.ServerResponse(req)
  app(req, res)
  // No socket to flush to: end the response's life as Node would.
  res.emit('finish')
  res.emit('close')
}

const turn = () => new Promise((resolve) => setImmediate(resolve))

/** CPU µs per request over a batch; the loop turns every 50 requests, as a server's would. */
async function batch(app) {
  const start = process.cpuUsage()
  for (let i = 0; i < perBatch; i++) {
    dispatch(app)
    if (i % 50 === 49) await turn()
  }
  const used = process.cpuUsage(start)
  return (used.user + used.system) / perBatch
}

const apps = Object.fromEntries(CONFIGS.map((config) => [config, makeApp(config)]))
// Warm-up: JIT every path.
for (let i = 0; i < 3; i++) for (const config of CONFIGS) await batch(apps[config].app)
const costs = Object.fromEntries(CONFIGS.map((config) => [config, []]))
const ratios = Object.fromEntries(CONFIGS.map((config) => [config, []]))
let seed = 7
const random = () => {
  seed = (seed * 16807) % 2147483647
  return seed / 2147483647
}
for (let round = 0; round < rounds; round++) {
  const order = [...CONFIGS].sort(() => random() - 0.5)
  const got = {}
  for (const config of order) got[config] = await batch(apps[config].app)
  for (const config of CONFIGS) {
    costs[config].push(got[config])
    ratios[config].push(got[config] / got.bare)
  }
}
const instrumented = apps.looplens
const metrics = await instrumented.lens.registry.metrics()
const counted =
  /http_server_request_duration_seconds_count\{[^}]*http_route="\/users\/:id"[^}]*\} (\d+)/.exec(
    metrics,
  )
await instrumented.lens.close()

console.log(
  `looplens in-process request cost — Node ${process.version}, ${rounds} rounds × ${perBatch} requests\n`,
)
console.log('| configuration | CPU µs/request (median) | vs bare (range) |')
console.log('|---|---:|---:|')
for (const config of CONFIGS) {
  const r = ratios[config]
  console.log(
    `| ${config} | ${median(costs[config]).toFixed(2)} | ${median(r).toFixed(3)}× (${Math.min(...r).toFixed(3)}–${Math.max(...r).toFixed(3)}) |`,
  )
}
const own = median(costs.looplens) - median(costs['layer + AsyncLocalStorage'])
console.log(
  `\nlooplens's own work beyond an Express layer and an AsyncLocalStorage context: ${own.toFixed(2)} µs per request.`,
)
console.log(`sanity: the lens counted ${counted?.[1] ?? 0} requests on /users/:id`)
