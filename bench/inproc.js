#!/usr/bin/env node
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
 * context, route template, metrics, `close` listener — and one more Express layer. Batches of the
 * two alternate in one process; the medians of per-batch CPU per request are compared.
 * What this leaves out: AsyncLocalStorage's hook on the async resources a real socket creates
 * (about 1% of a real request in the wrk profile) and the kernel.
 */
import http from 'node:http'
import { Socket } from 'node:net'
import { parseArgs } from 'node:util'
import express from 'express'
import { createLooplens } from 'looplens'

const { values: args } = parseArgs({
  options: {
    rounds: { type: 'string', default: '15' },
    requests: { type: 'string', default: '20000' },
  },
})
const rounds = Number(args.rounds)
const perBatch = Number(args.requests)

function makeApp(withLooplens) {
  const app = express()
  let lens
  if (withLooplens) {
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

const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
}

const bare = makeApp(false)
const instrumented = makeApp(true)
// Warm-up: JIT both paths.
for (let i = 0; i < 3; i++) {
  await batch(bare.app)
  await batch(instrumented.app)
}
const costs = { bare: [], looplens: [] }
const ratios = []
for (let round = 0; round < rounds; round++) {
  // Alternate which goes first.
  const order = round % 2 === 0 ? ['bare', 'looplens'] : ['looplens', 'bare']
  const got = {}
  for (const name of order) got[name] = await batch(name === 'bare' ? bare.app : instrumented.app)
  costs.bare.push(got.bare)
  costs.looplens.push(got.looplens)
  ratios.push(got.looplens / got.bare)
}
const metrics = await instrumented.lens.registry.metrics()
const counted =
  /http_server_request_duration_seconds_count\{[^}]*http_route="\/users\/:id"[^}]*\} (\d+)/.exec(
    metrics,
  )
await instrumented.lens.close()

const bareUs = median(costs.bare)
const lensUs = median(costs.looplens)
console.log(
  `looplens in-process request cost — Node ${process.version}, ${rounds} rounds × ${perBatch} requests\n`,
)
console.log('| configuration | CPU µs/request (median) | vs bare |')
console.log('|---|---:|---:|')
console.log(`| bare Express 5 | ${bareUs.toFixed(2)} | 1 |`)
console.log(
  `| looplens (lens.express()) | ${lensUs.toFixed(2)} | ${median(ratios).toFixed(3)}× (${Math.min(...ratios).toFixed(3)}–${Math.max(...ratios).toFixed(3)}) |`,
)
console.log(`\nlooplens adds ${(lensUs - bareUs).toFixed(2)} µs of CPU per request in-process.`)
console.log(`sanity: the lens counted ${counted?.[1] ?? 0} requests on /users/:id`)
