/**
 * The example app as a server (docker-compose.yml runs it): PORT (default 3000), HOST (default
 * 0.0.0.0). Stops cleanly on SIGTERM/SIGINT.
 */
import { createLooplens } from 'looplens'
import { createExampleApp } from './app.js'

const lens = createLooplens({ blockThresholdMs: 50 })
const app = createExampleApp(lens)
const port = Number(process.env.PORT ?? 3000)
const host = process.env.HOST ?? '0.0.0.0'

const server = app.listen(port, host, () => {
  console.log(`looplens example app on http://${host}:${port} (metrics on /metrics)`)
})

function shutdown() {
  server.close()
  server.closeAllConnections()
  lens.close().finally(() => process.exit(0))
}
process.once('SIGTERM', shutdown)
process.once('SIGINT', shutdown)
