/**
 * A small Express 5 app instrumented with looplens: a fast route, a nested router, and one route
 * that blocks the event loop in a named synchronous function (`hashPasswordSync`).
 *
 *   npm run build && node examples/basic/server.js      (PORT=3000 by default)
 *   curl localhost:3000/api/v1/users/42 ; curl -X POST localhost:3000/signup ; curl localhost:3000/metrics
 *
 * Ctrl-C prints the report: the top blockers, worst first.
 */
import { pbkdf2Sync, randomBytes } from 'node:crypto'
import express from 'express'
import { createLooplens } from 'looplens'

const lens = createLooplens({ blockThresholdMs: 50 })
const app = express()
app.use(lens.express())
app.get('/metrics', lens.metricsHandler())

app.get('/hello', function hello(_req, res) {
  res.json({ hello: 'world' })
})

// A nested router: requests are labelled with the template /api/v1/users/:id, never the raw URL.
const users = express.Router()
users.get('/users/:id', function getUser(req, res) {
  res.json({ id: req.params.id, name: `user ${req.params.id}` })
})
const api = express.Router()
api.use('/v1', users)
app.use('/api', api)

/** The culprit: a password hash done synchronously holds the loop for ~100 ms per sign-up. */
function hashPasswordSync(password) {
  const salt = randomBytes(16)
  return pbkdf2Sync(password, salt, Number(process.env.HASH_ITERATIONS ?? 100_000), 64, 'sha512')
}

app.post('/signup', function signup(_req, res) {
  const hash = hashPasswordSync('correct horse battery staple')
  res.status(201).json({ created: true, hashBytes: hash.length })
})

lens.on('block', (event) => {
  const where = event.culprit
    ? `${event.culprit.functionName} (${event.culprit.file.split('/').pop()}:${event.culprit.line})`
    : event.kind
  const route = event.context.route === '' ? '(no request)' : event.context.route
  console.log(
    `looplens: event loop blocked ${event.durationMs.toFixed(0)} ms by ${event.context.method} ${route} in ${where}`,
  )
})

const server = app.listen(Number(process.env.PORT ?? 3000), '127.0.0.1', () => {
  const url = `http://127.0.0.1:${server.address().port}`
  console.log(`example app listening on ${url}  (metrics: ${url}/metrics)`)
  process.send?.({ type: 'listening', url })
})

async function shutdown() {
  server.close()
  server.closeAllConnections()
  console.log(lens.formatReport(lens.report()))
  await lens.close()
  process.disconnect?.()
}
process.once('SIGINT', shutdown)
process.once('SIGTERM', shutdown)
