/**
 * "Fix what it finds": one instrumented Express 5 app with six bad/good pairs, from the advice
 * that looplens grew out of (FastAPI's performance notes, translated to Node). Every bad endpoint
 * holds the event loop in a function with a readable name — that is what looplens reports as the
 * culprit — and its good twin does the same work without holding the loop.
 *
 * Run it:   npm run build && node examples/fixes/app.js      (PORT=3000, DEMO_SCALE=1)
 * Or see it measured:  npm run demo
 *
 * DEMO_SCALE multiplies every duration (1 = the notes' numbers: 5 s jobs, 2 s sync, …); the demo
 * and the tests run at 0.1 so a whole tour takes seconds.
 */
import { createHash, pbkdf2Sync } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import express from 'express'
import { createLooplens } from 'looplens'
import { Piscina } from 'piscina'
import { Histogram } from 'prom-client'

/** Durations of the example at a given scale (ms, iterations). */
export function durations(scale = 1) {
  return {
    /** POST /process: the "5 s job". */
    jobMs: Math.round(5_000 * scale),
    /** GET /sleep: a sleep of 1 s. */
    sleepMs: Math.round(1_000 * scale),
    /** GET /sync, /async: 2 s. */
    syncMs: Math.round(2_000 * scale),
    /** POST /send-email: 1.5 s of talking to the mail server. */
    emailMs: Math.round(1_500 * scale),
    /** POST /send: 5 s of heavy processing. */
    sendMs: Math.round(5_000 * scale),
    /** GET /hash: three pbkdf2 hashes of this many iterations each (~0.3 s each at scale 1). */
    // Never so few that three hashes stay under a 50 ms threshold on a fast machine.
    hashIterations: Math.max(100_000, Math.round(200_000 * scale)),
  }
}

const nowMs = () => performance.timeOrigin + performance.now()

// ─── The culprits: each blocks the loop in its own named function ──────────────────────────────

/** A CPU-bound job done inline: nothing else runs on this loop until it returns. */
function processJobSync(jobId, ms) {
  const end = performance.now() + ms
  let checksum = 0
  while (performance.now() < end) {
    for (let i = 0; i < 10_000; i++) checksum = (checksum * 31 + i + jobId) % 1_000_003
  }
  return checksum
}

/** Node's `time.sleep()`: Atomics.wait on the main thread freezes the whole server. */
function sleepSync(ms) {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms)
}

/** "Wait until the report is ready" written as a busy loop: 2 s of a spinning CPU. */
function renderReportSync(ms) {
  const end = Date.now() + ms
  let pages = 0
  while (Date.now() < end) pages++
  return pages
}

/** A synchronous mail client: the request (and every other one) waits for the mail server. */
function sendEmailSync(to, ms) {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms)
  return `sent to ${to.length} recipient(s)`
}

/** Heavy message processing (serialize, sign, compress…) inline. */
function encodeMessageSync(payload, ms) {
  const end = performance.now() + ms
  let digest = JSON.stringify(payload)
  while (performance.now() < end) digest = createHash('sha256').update(digest).digest('hex')
  return digest
}

/** CPU-bound hashing inline: pbkdf2Sync is native code, its JS caller is the line to fix. */
function hashPasswordsSync(passwords, iterations) {
  const hashes = []
  for (const password of passwords) {
    hashes.push(
      pbkdf2Sync(password, 'looplens-demo-salt', iterations, 64, 'sha512').toString('hex'),
    )
  }
  return hashes
}

// ─── Their non-blocking twins ──────────────────────────────────────────────────────────────────

/** The mail server call, awaited: the loop serves other requests while it is on the wire. */
async function sendEmail(to, ms) {
  await sleep(ms)
  return `sent to ${to.length} recipient(s)`
}

/**
 * Build the app.
 * @param {{ lens: import('looplens').Looplens, scale?: number }} options
 * @returns {{ app: import('express').Express, close: () => Promise<void> }}
 */
export function createFixesApp({ lens, scale = 1 }) {
  const d = durations(scale)
  const workerFile = new URL('./hash-worker.js', import.meta.url).href

  // One small pool per kind of work, so the metrics say which pool queues. One thread each:
  // this is a 2-core demo; size pools to your cores in production.
  const pools = {
    jobs: new Piscina({ filename: workerFile, name: 'processJob', maxThreads: 1, minThreads: 1 }),
    hash: new Piscina({
      filename: workerFile,
      name: 'hashPasswords',
      maxThreads: 1,
      minThreads: 1,
    }),
    messages: new Piscina({
      filename: workerFile,
      name: 'encodeMessage',
      maxThreads: 1,
      minThreads: 1,
    }),
  }
  // Piscina keeps waitTime/runTime as summaries (percentiles since start); Prometheus wants
  // histograms it can aggregate, so each task reports when it started and ended in the worker.
  const poolQueueWait = new Histogram({
    name: 'looplens_pool_queue_wait_seconds',
    help: 'Time a task waited in the worker pool queue before a worker took it, by pool.',
    labelNames: ['pool'],
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [lens.registry],
  })
  const poolRunDuration = new Histogram({
    name: 'looplens_pool_run_duration_seconds',
    help: 'Time a worker spent running a task, by pool.',
    labelNames: ['pool'],
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [lens.registry],
  })
  /** Run a task in a pool and record its queue wait and run time. */
  async function runInPool(pool, data) {
    const submittedAt = nowMs()
    const result = await pools[pool].run(data)
    poolQueueWait.observe({ pool }, Math.max(0, result.startedAt - submittedAt) / 1000)
    poolRunDuration.observe({ pool }, Math.max(0, result.endedAt - result.startedAt) / 1000)
    return result
  }
  /** A background job that runs in the jobs pool (see POST /process/good). */
  async function processJob(jobId, ms) {
    const { checksum } = await runInPool('jobs', { jobId, ms })
    return checksum
  }
  /** Bounded backlog: past this many queued jobs, /process/good says 503 instead of 202. */
  const maxQueuedJobs = 4

  const app = express()
  app.use(lens.express())
  app.use(express.json())

  // The victim: a fast route that every blocked loop makes slow. The demo probes it throughout.
  app.get('/health', function health(_req, res) {
    res.send('ok')
  })

  // ── 1. Event-driven offload ───────────────────────────────────────────────────────────────────
  // BAD: the 5 s job runs inside the request. The client waits 5 s, and so does every other
  // request on this process: the loop is held for the whole job.
  app.post('/process/bad', function processBad(_req, res) {
    const checksum = processJobSync(Date.now() % 1000, d.jobMs)
    res.json({ status: 'done', checksum })
  })
  // GOOD: accept the job (202) at once and run it after the response, in a worker: the client
  // does not wait and the loop is never held. The backlog is bounded: when the pool is full,
  // say so (503 + Retry-After) instead of queueing without limit.
  app.post('/process/good', function processGood(_req, res) {
    if (pools.jobs.queueSize >= maxQueuedJobs) {
      res.status(503).set('Retry-After', '1').json({ status: 'busy' })
      return
    }
    res.status(202).json({ status: 'accepted' })
    lens.background(res).add(processJob, Date.now() % 1000, d.jobMs)
  })

  // ── 2. Concurrent tasks ───────────────────────────────────────────────────────────────────────
  // BAD: a synchronous sleep (Atomics.wait, Node's time.sleep). Ten concurrent requests take ten
  // times as long: they are served one after another.
  app.get('/sleep/bad', function sleepBad(_req, res) {
    sleepSync(d.sleepMs)
    res.send('slept')
  })
  // GOOD: await a timer. Ten concurrent requests take as long as one.
  app.get('/sleep/good', async function sleepGood(_req, res) {
    await sleep(d.sleepMs)
    res.send('slept')
  })

  // ── 3. Async-first ────────────────────────────────────────────────────────────────────────────
  // BAD: waits 2 s by spinning the CPU. Under concurrent load, throughput is 1 / 2 s.
  app.get('/sync', function syncRoute(_req, res) {
    const pages = renderReportSync(d.syncMs)
    res.json({ pages })
  })
  // GOOD: awaits 2 s. Under concurrent load, every connection is served every 2 s.
  app.get('/async', async function asyncRoute(_req, res) {
    await sleep(d.syncMs)
    res.json({ pages: 1 })
  })

  // ── 4. Background tasks ───────────────────────────────────────────────────────────────────────
  // BAD: the mail is sent inside the request, with a synchronous client.
  app.post('/send-email/bad', function sendEmailBad(req, res) {
    const result = sendEmailSync(req.body?.to ?? ['someone@example.com'], d.emailMs)
    res.json({ status: result })
  })
  // GOOD: answer first, send after the response — awaited, so the loop is free meanwhile.
  // lens.background() runs it once the response is out, measures it
  // (looplens_background_task_duration_seconds{task="sendEmail"}) and contains its errors.
  app.post('/send-email/good', function sendEmailGood(req, res) {
    res.status(202).json({ status: 'queued' })
    lens.background(res).add(sendEmail, req.body?.to ?? ['someone@example.com'], d.emailMs)
  })

  // ── 5. Sending messages ───────────────────────────────────────────────────────────────────────
  // BAD: 5 s of heavy processing (serialize, hash) inline before the message goes out.
  app.post('/send/bad', function sendBad(req, res) {
    const digest = encodeMessageSync(req.body ?? {}, d.sendMs)
    res.json({ digest })
  })
  // GOOD: the processing is offloaded to a worker and awaited: same work, same latency for this
  // client, but the loop keeps serving everyone else.
  app.post('/send/good', async function sendGood(req, res) {
    const { digest } = await runInPool('messages', { payload: req.body ?? {}, ms: d.sendMs })
    res.json({ digest })
  })

  // ── 6. CPU-bound work ─────────────────────────────────────────────────────────────────────────
  // BAD: pbkdf2Sync on the main thread.
  app.get('/hash/bad', function hashBad(_req, res) {
    const hashes = hashPasswordsSync(['alice', 'bob', 'carol'], d.hashIterations)
    res.json({ count: hashes.length })
  })
  // GOOD: the same hashes in a piscina worker pool; queue wait and run time are exported as
  // looplens_pool_queue_wait_seconds / looplens_pool_run_duration_seconds{pool="hash"}.
  app.get('/hash/good', async function hashGood(_req, res) {
    const { hashes } = await runInPool('hash', {
      passwords: ['alice', 'bob', 'carol'],
      iterations: d.hashIterations,
    })
    res.json({ count: hashes.length })
  })

  // ── looplens itself ───────────────────────────────────────────────────────────────────────────
  app.get('/metrics', lens.metricsHandler())
  // The blocking report as a person reads it, and as data (the demo reads both).
  app.get('/__looplens/report', function report(req, res) {
    const data = lens.report()
    if (req.query.format === 'json') res.json(data)
    else res.type('text/plain').send(lens.formatReport(data))
  })
  // Is anything still running? (The demo waits for quiet between phases.)
  app.get('/__looplens/status', function status(_req, res) {
    res.json({
      poolQueued: Object.values(pools).reduce((sum, pool) => sum + pool.queueSize, 0),
      poolRunning: Object.values(pools).reduce(
        (sum, pool) => sum + pool.threads.length * pool.utilization,
        0,
      ),
    })
  })

  async function close() {
    await lens.close()
    await Promise.all(Object.values(pools).map((pool) => pool.destroy()))
  }
  return { app, close }
}

// Run directly: `node examples/fixes/app.js`.
if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const scale = Number(process.env.DEMO_SCALE ?? '1')
  if (!(scale > 0))
    throw new RangeError(
      `DEMO_SCALE must be a positive number (received ${process.env.DEMO_SCALE})`,
    )
  const lens = createLooplens({
    blockThresholdMs: 50,
    excludePaths: ['/metrics', /^\/__looplens\//],
  })
  const { app, close } = createFixesApp({ lens, scale })
  const server = app.listen(Number(process.env.PORT ?? '3000'), '127.0.0.1', () => {
    const { port } = server.address()
    console.log(`looplens fixes example on http://127.0.0.1:${port} (DEMO_SCALE=${scale})`)
    // Started by the demo: tell it the port.
    if (process.send) process.send({ type: 'listening', port })
  })
  const shutdown = () => {
    server.close()
    server.closeAllConnections()
    close().finally(() => process.exit(0))
  }
  process.once('SIGINT', shutdown)
  process.once('SIGTERM', shutdown)
  process.once('disconnect', shutdown)
}
