/**
 * Try looplens in a few seconds: start examples/basic/server.js in a child process, send it a
 * bounded burst of requests (fast ones, a nested route, some blocking sign-ups, a few 404s),
 * print the interesting part of its /metrics, stop it (it prints its report) and exit.
 *
 *   npm run example        (= npm run build && node examples/basic/try.js)
 *
 * The server runs in another process on purpose: the sign-up route blocks the server's event
 * loop, and a client in the same process would be blocked with it.
 */
import { fork } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const DURATION_MS = Number(process.env.TRY_DURATION_MS ?? 3_000)
const MAX_REQUESTS = 5_000
const CONCURRENCY = 8

const server = fork(fileURLToPath(new URL('./server.js', import.meta.url)), {
  env: { ...process.env, PORT: '0' },
  stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
})
const url = await new Promise((resolve, reject) => {
  const timer = setTimeout(
    () => reject(new Error('the example app did not start within 10 s')),
    10_000,
  )
  server.once('message', (message) => {
    clearTimeout(timer)
    resolve(message.url)
  })
  server.once('exit', (code) => reject(new Error(`the example app exited (code ${code})`)))
})

// A bounded burst: at most MAX_REQUESTS requests and DURATION_MS milliseconds.
console.log(`\nsending requests for ${DURATION_MS / 1000} s …\n`)
let sent = 0
const deadline = performance.now() + DURATION_MS
async function client(id) {
  while (performance.now() < deadline && sent < MAX_REQUESTS) {
    const n = sent++
    let request = [`${url}/hello`]
    if (n % 3 === 0) request = [`${url}/api/v1/users/${n}?session=${n * 7919}`]
    if (n % 97 === 0) request = [`${url}/no/such/page/${n}`]
    if (id === 0 && n % 40 === 0) request = [`${url}/signup`, { method: 'POST' }]
    const response = await fetch(...request)
    await response.arrayBuffer()
  }
}
await Promise.all(Array.from({ length: CONCURRENCY }, (_, id) => client(id)))

const metrics = await (await fetch(`${url}/metrics`)).text()
const interesting =
  /^(http_server_request_duration_seconds_count|looplens_request_sync_duration_seconds_(sum|count)|looplens_eventloop_block_duration_seconds_(sum|count)|looplens_eventloop_delay_seconds_(sum|count)|looplens_eventloop_delay_seconds_bucket\{le="0\.(05|1|25)"\}|looplens_eventloop_utilization_ratio|http_server_active_requests)/
console.log(`\n${sent} requests sent. The interesting part of ${url}/metrics:\n`)
for (const line of metrics.split('\n')) {
  if (interesting.test(line)) console.log(`  ${line}`)
}
console.log('')

server.kill('SIGTERM')
await new Promise((resolve) => {
  const timer = setTimeout(() => {
    server.kill('SIGKILL')
    resolve()
  }, 5_000)
  timer.unref()
  server.once('exit', () => {
    clearTimeout(timer)
    resolve()
  })
})
