/**
 * The example app behind the dashboards: an instrumented Express app with a victim route, routes
 * that block the event loop on purpose, a background task, a tracked queue consumer and the
 * load-shedding guard. docker-compose.yml runs it (grafana/example/server.js) and the dashboard
 * test scrapes the very same app (test/fixtures/grafana-app.js), so what the test proves is what
 * the compose demo shows.
 *
 * Wiring it into your own app takes the four lines marked "looplens:" below.
 */
import express from 'express'
import { collectDefaultMetrics } from 'prom-client'

/** Hold the event loop for `ms` milliseconds, as a synchronous hash or a big JSON.parse would. */
function holdLoop(ms) {
  const end = performance.now() + ms
  while (performance.now() < end) {
    // Synchronous work on purpose: this is what looplens finds.
  }
}

/** A report built synchronously in the handler: the classic blocker (~120 ms). */
function buildReport() {
  holdLoop(120)
  return { rows: 1_000 }
}

/** An import parsed synchronously (~250 ms). */
function parseImport() {
  holdLoop(250)
  return { imported: 500 }
}

let emailsSent = 0
/** A background task: runs after the response, blocks a little, fails now and then. */
function sendWelcomeEmail(address) {
  holdLoop(60)
  emailsSent++
  if (emailsSent % 5 === 0) throw new Error(`mail server refused ${address}`)
}

let ordersSeen = 0
/** A queue consumer outside any HTTP request, measured with lens.track(). */
function consumeOrder() {
  ordersSeen++
  if (ordersSeen % 2 === 0) holdLoop(55)
  if (ordersSeen % 3 === 0) throw new Error('order rejected')
}

const wait = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * Build the example app on a looplens instance.
 * @param {import('looplens').Looplens} lens
 * @param {{ consumerIntervalMs?: number }} [options]
 * @returns {import('express').Express}
 */
export function createExampleApp(lens, options = {}) {
  // looplens: the runtime row of the dashboard (CPU, memory, GC) reads prom-client's default
  // metrics; register them on the lens's registry so /metrics serves them too.
  collectDefaultMetrics({ register: lens.registry })

  const app = express()
  // looplens: first middleware, so everything after it is attributed to its route.
  app.use(lens.express())
  // looplens: answer 503 + Retry-After while the loop is over 200 ms of delay (/metrics and
  // /health are exempt): /import's 250 ms stalls trip it, /report's 120 ms do not.
  // Feature-detected so the app also runs on a looplens without guard().
  if (typeof lens.guard === 'function') app.use(lens.guard({ maxEventLoopDelayMs: 200 }))
  // looplens: the scrape endpoint.
  app.get('/metrics', lens.metricsHandler())

  app.get('/health', function health(_req, res) {
    res.send('ok')
  })
  // The victim: does nothing slow, yet waits whenever someone else blocks the loop.
  app.get('/fast', function fast(_req, res) {
    res.send('ok')
  })
  app.get('/users/:id', async function getUser(req, res) {
    await wait(5)
    res.json({ id: req.params.id })
  })
  app.get('/slow', async function slow(_req, res) {
    await wait(300)
    if (!res.destroyed) res.send('late')
  })
  app.get('/fail', function fail(_req, res) {
    res.status(500).send('failed')
  })
  app.get('/report', function report(_req, res) {
    res.json(buildReport())
  })
  app.post('/import', function importData(_req, res) {
    res.json(parseImport())
  })
  app.post('/signup', function signup(_req, res) {
    if (typeof lens.background === 'function') {
      lens.background(res).add(sendWelcomeEmail, 'user@example.com')
    }
    res.status(201).send('welcome')
  })

  if (typeof lens.track === 'function') {
    const consumer = lens.track('orders-consumer', consumeOrder)
    const timer = setInterval(function pollOrders() {
      try {
        consumer()
      } catch {
        // Counted by looplens as outcome="error"; a real consumer would nack the message.
      }
    }, options.consumerIntervalMs ?? 500)
    timer.unref()
  }
  return app
}
