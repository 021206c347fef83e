/**
 * Soak: is looplens's memory flat under sustained load with blocks and scrapes?
 *
 *   npm run build && node bench/soak.js                 # 500,000 requests
 *   node bench/soak.js --requests 100000 --sample-ms 2000
 *
 * The server (a child process started with --expose-gc, so the client never shares its loop) is
 * an Express app with looplens: `GET /items/:id` answers JSON, and every `--block-every`th request
 * holds the loop for `--block-ms` (a real block: detected, probed, exported). The client is
 * autocannon (in this process, 127.0.0.1 only), with ids that change on every request; a scrape of
 * /metrics runs every second beside it. Every `--sample-ms` the server runs a full GC and reports
 * its heap in use and RSS. At the end: the table, and a verdict — the median of the last third of
 * the samples against the first third after warm-up (the first 20% of the run), flat when each
 * grew by less than 10% (or 2 MB for the heap, 5 MB for RSS, whichever is larger). Bounded: the
 * run stops at `--requests` or after `--max-minutes`, whichever comes first.
 */
import { fork } from 'node:child_process'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { median } from './common.js'

const here = dirname(fileURLToPath(import.meta.url))
const dist = join(here, '..', 'dist')

const { values: args } = parseArgs({
  options: {
    child: { type: 'boolean', default: false },
    requests: { type: 'string', default: '500000' },
    connections: { type: 'string', default: '16' },
    'block-every': { type: 'string', default: '1000' },
    'block-ms': { type: 'string', default: '60' },
    'sample-ms': { type: 'string', default: '3000' },
    'max-minutes': { type: 'string', default: '15' },
  },
})

const MB = 1024 * 1024

if (args.child) {
  // ── The server ────────────────────────────────────────────────────────────────────────────
  const { default: express } = await import('express')
  const { createLooplens } = await import(join(dist, 'index.js'))
  const blockEvery = Number(args['block-every'])
  const blockMs = Number(args['block-ms'])
  const lens = createLooplens({ blockThresholdMs: 50 })
  const blocks = { count: 0, withStack: 0, rateLimited: 0 }
  lens.on('block', (event) => {
    blocks.count++
    if (event.frames.length > 0) blocks.withStack++
    if (event.stackMissing === 'rate-limited') blocks.rateLimited++
  })
  let served = 0
  const app = express()
  app.use(lens.express())
  app.get('/metrics', lens.metricsHandler())
  app.get('/items/:id', function item(req, res) {
    served++
    if (served % blockEvery === 0) {
      const end = performance.now() + blockMs
      while (performance.now() < end) {
        // A real block, on purpose.
      }
    }
    res.json({ id: req.params.id, served })
  })
  const sample = (afterClose = false) => {
    globalThis.gc()
    const memory = process.memoryUsage()
    process.send({
      type: 'sample',
      afterClose,
      served,
      heapUsed: memory.heapUsed,
      rss: memory.rss,
      blocks: { ...blocks },
    })
  }
  const sampler = setInterval(sample, Number(args['sample-ms']))
  const server = app.listen(0, '127.0.0.1', () => {
    process.send({ type: 'listening', port: server.address().port })
  })
  process.on('message', async (message) => {
    if (message?.type !== 'stop') return
    clearInterval(sampler)
    sample()
    server.close()
    server.closeAllConnections()
    await lens.close()
    sample(true)
    process.disconnect()
  })
} else {
  // ── The client ────────────────────────────────────────────────────────────────────────────
  const { default: autocannon } = await import('autocannon')
  const requests = Number(args.requests)
  const child = fork(fileURLToPath(import.meta.url), ['--child', ...process.argv.slice(2)], {
    execArgv: ['--expose-gc'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  })
  const samples = []
  const start = performance.now()
  const port = await new Promise((resolve, reject) => {
    child.on('message', (message) => {
      if (message.type === 'listening') resolve(message.port)
      if (message.type === 'sample') {
        samples.push({ seconds: (performance.now() - start) / 1000, ...message })
      }
    })
    child.once('exit', (code) => reject(new Error(`the server exited (code ${code})`)))
  })
  const base = `http://127.0.0.1:${port}`

  let scrapes = 0
  let scrapeFailures = 0
  let lastScrape = ''
  const scraper = setInterval(async () => {
    try {
      const response = await fetch(`${base}/metrics`)
      lastScrape = await response.text()
      if (response.ok) scrapes++
      else scrapeFailures++
    } catch {
      scrapeFailures++
    }
  }, 1_000)

  let next = 0
  const result = await new Promise((resolve, reject) => {
    const instance = autocannon(
      {
        url: base,
        connections: Number(args.connections),
        amount: requests,
        // A new id on every request: the route label must stay `/items/:id`.
        requests: [
          {
            setupRequest(request) {
              next++
              return { ...request, path: `/items/${next}` }
            },
          },
        ],
      },
      (error, finished) => (error ? reject(error) : resolve(finished)),
    )
    const stopAt = setTimeout(() => instance.stop(), Number(args['max-minutes']) * 60_000)
    stopAt.unref()
  })
  clearInterval(scraper)
  child.send({ type: 'stop' })
  await new Promise((resolve) => child.once('exit', resolve))

  const seconds = (performance.now() - start) / 1000
  console.log(
    `looplens soak — Node ${process.version}, ${new Date().toISOString()}, ${result.requests.total} requests in ${seconds.toFixed(0)} s (${Math.round(result.requests.average)} req/s, ${result.non2xx} non-2xx, ${result.errors} errors), ${args.connections} connections`,
  )
  console.log(
    `a block of ${args['block-ms']} ms every ${args['block-every']} requests; ${scrapes} scrapes of /metrics (${scrapeFailures} failed)`,
  )
  const closed = samples.find((sample) => sample.afterClose)
  const running = samples.filter((sample) => !sample.afterClose)
  const last = running.at(-1)
  console.log(
    `blocks seen by the app: ${last?.blocks.count} (${last?.blocks.withStack} with a stack, ${last?.blocks.rateLimited} rate-limited)`,
  )
  const routes = new Set([...lastScrape.matchAll(/http_route="([^"]*)"/g)].map((match) => match[1]))
  console.log(`http_route values in the last scrape: ${[...routes].sort().join(', ')}`)
  console.log('\n| t (s) | requests served | heap used after GC (MB) | RSS (MB) |')
  console.log('|---|---|---|---|')
  for (const sample of running) {
    console.log(
      `| ${sample.seconds.toFixed(0)} | ${sample.served} | ${(sample.heapUsed / MB).toFixed(1)} | ${(sample.rss / MB).toFixed(1)} |`,
    )
  }

  if (closed !== undefined) {
    console.log(
      `| after close() | ${closed.served} | ${(closed.heapUsed / MB).toFixed(1)} | ${(closed.rss / MB).toFixed(1)} |`,
    )
  }

  // Warm-up: the first 20% of the samples. Then the first third against the last third.
  const steady = running.slice(Math.ceil(running.length * 0.2))
  const third = Math.max(1, Math.floor(steady.length / 3))
  const first = steady.slice(0, third)
  const end = steady.slice(-third)
  const verdict = (key, floorMb) => {
    const before = median(first.map((sample) => sample[key])) / MB
    const after = median(end.map((sample) => sample[key])) / MB
    const growth = after - before
    const flat = growth < Math.max(before * 0.1, floorMb)
    return { before, after, growth, flat }
  }
  const heap = verdict('heapUsed', 2)
  const rss = verdict('rss', 5)
  console.log('')
  for (const [name, row] of [
    ['heap used after GC', heap],
    ['RSS', rss],
  ]) {
    console.log(
      `${name}: ${row.before.toFixed(1)} MB (first third, median) → ${row.after.toFixed(1)} MB (last third): ${row.growth >= 0 ? '+' : ''}${row.growth.toFixed(1)} MB — ${row.flat ? 'flat' : 'GROWING'}`,
    )
  }
  console.log(
    `verdict: ${heap.flat && rss.flat ? 'flat' : 'NOT flat'} (${steady.length} samples after warm-up)`,
  )
  process.exitCode = heap.flat && rss.flat ? 0 : 1
}
