/**
 * looplens on top of OpenTelemetry: run with
 *   npm run build && node --import ./examples/otel/instrumentation.js examples/otel/server.js
 * then `curl localhost:3000/hash/400` and look for the `eventloop.block` span under
 * `GET /hash/:rounds`, with `code.function.name: hashPasswordSync`.
 */
import { pbkdf2Sync } from 'node:crypto'
import express from 'express'
import { createLooplens } from 'looplens'

const lens = createLooplens({ blockThresholdMs: 50 })
const app = express()
app.use(lens.express())
app.get('/metrics', lens.metricsHandler())

/** The blocking handler: a synchronous key derivation on the event loop. */
function hashPasswordSync(password, rounds) {
  return pbkdf2Sync(password, 'salt', rounds * 1_000, 64, 'sha512').toString('hex')
}

app.get('/hash/:rounds', function hashRoute(req, res) {
  const rounds = Math.min(Number(req.params.rounds) || 100, 5_000)
  res.json({ hash: hashPasswordSync('hunter2', rounds).slice(0, 16) })
})
app.get('/fast', function fast(_req, res) {
  res.send('ok')
})

const port = Number(process.env.PORT ?? 3000)
const server = app.listen(port, () => {
  console.log(`listening on http://localhost:${port} — try /hash/400, /fast, /metrics`)
})
process.once('SIGINT', () => {
  server.close()
  lens.close()
})
