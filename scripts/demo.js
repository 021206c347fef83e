#!/usr/bin/env node
/**
 * `npm run demo`: looplens finding — and measuring the fixes of — six classic ways to block
 * Node's event loop.
 *
 * 1. Builds looplens if dist/ is missing or older than src/.
 * 2. Starts examples/fixes/app.js (instrumented with looplens) in a child process.
 * 3. For each endpoint, bad then good: drives load with autocannon for a few seconds while a
 *    worker thread keeps probing the fast victim route GET /health (scripts/victim-prober.js: a
 *    probe still waiting when the phase ends counts with the time it has waited so far).
 * 4. Prints the blocking report the app's looplens instance made (every bad endpoint with its
 *    culprit function and file:line; no good one), and per pair: throughput, latency and the
 *    victim's p99 latency during each variant.
 *
 * Bounded: DEMO_SECONDS (default 3) per endpoint × 12 endpoints, with at most a few seconds to
 * let the server settle between them. Exit code 1 if the report misses a bad endpoint or names a
 * good one. Environment: DEMO_SECONDS, DEMO_CONNECTIONS (8), DEMO_RATE (200 requests/s offered),
 * DEMO_SCALE (0.1: the "5 s jobs" take 500 ms).
 */
import { execFileSync, fork } from 'node:child_process'
import { existsSync, readdirSync, statSync } from 'node:fs'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import autocannon from 'autocannon'
import { percentile, startProber } from './victim-prober.js'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')

function positiveNumber(name, fallback) {
  const raw = process.env[name]
  if (raw === undefined || raw === '') return fallback
  const value = Number(raw)
  if (!(value > 0)) throw new RangeError(`${name} must be a positive number (received ${raw})`)
  return value
}
const SECONDS = positiveNumber('DEMO_SECONDS', 3)
const CONNECTIONS = Math.round(positiveNumber('DEMO_CONNECTIONS', 8))
const SCALE = positiveNumber('DEMO_SCALE', 0.1)
/**
 * Offered load, requests per second over all connections: the same for bad and good, and well
 * within what the good endpoints serve on a small machine, so a good phase measures the endpoint
 * rather than an overloaded loop (which looplens would rightly report as saturation).
 */
const RATE = Math.round(positiveNumber('DEMO_RATE', 200))
/** Longest wait for the server to drain what a phase left behind before the next one. */
const SETTLE_MAX_MS = 6_000

/** The six pairs; `culprit` is the function the report must name for the bad endpoint. */
const PAIRS = [
  {
    title: 'Event-driven offload (5 s job)',
    bad: { method: 'POST', path: '/process/bad', culprit: 'processJobSync' },
    good: { method: 'POST', path: '/process/good' },
  },
  {
    title: 'Concurrent tasks (sleep)',
    bad: { method: 'GET', path: '/sleep/bad', culprit: 'sleepSync' },
    good: { method: 'GET', path: '/sleep/good' },
  },
  {
    title: 'Async-first (2 s)',
    bad: { method: 'GET', path: '/sync', culprit: 'renderReportSync' },
    good: { method: 'GET', path: '/async' },
  },
  {
    title: 'Background tasks (email)',
    bad: { method: 'POST', path: '/send-email/bad', culprit: 'sendEmailSync' },
    good: { method: 'POST', path: '/send-email/good' },
  },
  {
    title: 'Sending messages (5 s processing)',
    bad: { method: 'POST', path: '/send/bad', culprit: 'encodeMessageSync' },
    good: { method: 'POST', path: '/send/good' },
  },
  {
    title: 'CPU-bound work (hash)',
    bad: { method: 'GET', path: '/hash/bad', culprit: 'hashPasswordsSync' },
    good: { method: 'GET', path: '/hash/good' },
  },
]

const log = (line = '') => process.stdout.write(`${line}\n`)

// ─── 1. Build ────────────────────────────────────────────────────────────────────────────────────

function newestMtime(dir) {
  let newest = 0
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const file = path.join(dir, entry.name)
    newest = Math.max(newest, entry.isDirectory() ? newestMtime(file) : statSync(file).mtimeMs)
  }
  return newest
}

function buildIfNeeded() {
  let built = 0
  try {
    built = statSync(path.join(root, 'dist/index.js')).mtimeMs
  } catch {}
  if (built !== 0 && built >= newestMtime(path.join(root, 'src'))) return
  log('Building looplens (tsc)…')
  const tsc = path.join(root, 'node_modules/typescript/bin/tsc')
  try {
    execFileSync(process.execPath, [tsc, '-p', path.join(root, 'tsconfig.build.json')], {
      stdio: 'inherit',
    })
  } catch (error) {
    // tsc still emits on type errors; without any dist/ there is nothing to run.
    if (built === 0 && !existsSync(path.join(root, 'dist/index.js'))) throw error
    log('The build reported errors (above); going on with the dist/ it emitted.')
  }
}

// ─── 2. The app ──────────────────────────────────────────────────────────────────────────────────

function startApp() {
  const child = fork(path.join(root, 'examples/fixes/app.js'), [], {
    env: { ...process.env, PORT: '0', DEMO_SCALE: String(SCALE) },
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  })
  let output = ''
  child.stdout.setEncoding('utf8').on('data', (chunk) => {
    output += chunk
  })
  child.stderr.setEncoding('utf8').on('data', (chunk) => {
    output += chunk
  })
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`the example app did not start within 15 s:\n${output}`))
    }, 15_000)
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`the example app exited (code ${code}) before listening:\n${output}`))
    })
    child.on('message', (message) => {
      if (message?.type !== 'listening') return
      clearTimeout(timer)
      child.removeAllListeners('exit')
      resolve({ child, url: `http://127.0.0.1:${message.port}`, output: () => output })
    })
  })
}

async function stopApp(child) {
  if (child.exitCode !== null) return
  const exited = new Promise((resolve) => child.once('exit', resolve))
  child.kill('SIGTERM')
  const timer = setTimeout(() => child.kill('SIGKILL'), 3_000)
  await exited
  clearTimeout(timer)
}

// ─── 3. The victim prober: scripts/victim-prober.js (a worker thread; unfinished probes count) ───

// ─── 4. Load ─────────────────────────────────────────────────────────────────────────────────────

function runLoad(url, endpoint) {
  return new Promise((resolve, reject) => {
    const instance = autocannon(
      {
        url: url + endpoint.path,
        method: endpoint.method,
        headers: { 'content-type': 'application/json' },
        body:
          endpoint.method === 'POST' ? JSON.stringify({ to: ['someone@example.com'] }) : undefined,
        connections: CONNECTIONS,
        duration: SECONDS,
        overallRate: RATE,
        timeout: 20,
      },
      (error, result) => (error ? reject(error) : resolve(result)),
    )
    // Progress: a dot a second.
    const ticker = setInterval(() => process.stdout.write('.'), 1_000)
    instance.once('done', () => clearInterval(ticker))
  })
}

/** Wait until the victim answers fast again and the worker pools are idle (bounded). */
async function settle(url) {
  const deadline = Date.now() + SETTLE_MAX_MS
  while (Date.now() < deadline) {
    const start = performance.now()
    try {
      const status = await (await fetch(`${url}/__looplens/status`)).json()
      const latency = performance.now() - start
      if (latency < 25 && status.poolQueued === 0 && status.poolRunning < 0.05) return
    } catch {}
    await sleep(100)
  }
}

async function measure(url, prober, endpoint, index, total) {
  const label = `${endpoint.method.padEnd(4)} ${endpoint.path}`
  process.stdout.write(`  [${String(index).padStart(2)}/${total}] ${label.padEnd(22)} `)
  await prober.take() // discard what came before this phase
  const result = await runLoad(url, endpoint)
  const victim = await prober.take()
  const ok = result['2xx'] ?? 0
  const measured = {
    okPerSecond: ok / SECONDS,
    non2xx: result.non2xx ?? 0,
    latencyP50: result.latency.p50,
    victimP99: percentile(victim, 0.99),
    victimCount: victim.length,
  }
  log(
    ` ${fmtRate(measured.okPerSecond)} ok/s, p50 ${fmtMs(measured.latencyP50)}, victim p99 ${fmtMs(measured.victimP99)}`,
  )
  await settle(url)
  return measured
}

// ─── 5. Output ───────────────────────────────────────────────────────────────────────────────────

function fmtMs(ms) {
  if (!Number.isFinite(ms)) return '—'
  return ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${Math.round(ms)} ms`
}
function fmtRate(rate) {
  return rate >= 100 ? String(Math.round(rate)) : rate.toFixed(1)
}
function table(rows) {
  const widths = rows[0].map((_, column) =>
    Math.max(...rows.map((row) => String(row[column]).length)),
  )
  return rows
    .map((row) =>
      row
        .map((cell, column) =>
          column === 0
            ? String(cell).padEnd(widths[column])
            : String(cell).padStart(widths[column]),
        )
        .join('   '),
    )
    .join('\n')
}

/** Which endpoints the report names, and with which culprit. */
function checkReport(report) {
  const problems = []
  const found = []
  for (const pair of PAIRS) {
    // A route can have several rows (one per culprit): look for the one naming the culprit.
    const rows = report.blockers.filter(
      (blocker) => blocker.method === pair.bad.method && blocker.route === pair.bad.path,
    )
    const row = rows.find((blocker) => blocker.culprit?.functionName === pair.bad.culprit)
    if (rows.length === 0) {
      problems.push(`${pair.bad.method} ${pair.bad.path} is missing from the report`)
    } else if (row === undefined) {
      const named = rows.map((blocker) => blocker.culprit?.functionName ?? '(none)').join(', ')
      problems.push(
        `${pair.bad.method} ${pair.bad.path}: culprit ${named}, expected ${pair.bad.culprit}`,
      )
    } else {
      const file = path.relative(root, fileURLToPath(new URL(row.culprit.file, 'file://')))
      found.push(
        `${pair.bad.method} ${pair.bad.path} → ${row.culprit.functionName} (${file}:${row.culprit.line})`,
      )
    }
    const good = report.blockers.find(
      (blocker) => blocker.route === pair.good.path && blocker.method === pair.good.method,
    )
    if (good !== undefined) {
      problems.push(`${pair.good.method} ${pair.good.path} (a good endpoint) is in the report`)
    }
  }
  return { problems, found }
}

async function main() {
  const started = performance.now()
  log('looplens demo — six ways to block the event loop, found and fixed')
  log()
  buildIfNeeded()
  const { child, url, output } = await startApp()
  const prober = startProber(url)
  let failed = false
  try {
    log(`Example app on ${url} (DEMO_SCALE=${SCALE}: "5 s" jobs take ${5 * SCALE} s).`)
    log(
      `Load: up to ${RATE} requests/s on ${CONNECTIONS} connections, ${SECONDS} s per endpoint (autocannon); the victim GET /health is probed by 2 clients throughout.`,
    )
    log()
    // Warm-up: one request per endpoint, one at a time (JIT, worker pools). Each bad endpoint
    // blocks once here on its own; under the concurrent load below, bad requests queue up and
    // run back to back in one loop turn.
    process.stdout.write('  warm-up: one request per endpoint ')
    for (const pair of PAIRS) {
      for (const endpoint of [pair.bad, pair.good]) {
        await fetch(url + endpoint.path, {
          method: endpoint.method,
          headers: { 'content-type': 'application/json' },
          body:
            endpoint.method === 'POST'
              ? JSON.stringify({ to: ['someone@example.com'] })
              : undefined,
        }).then((response) => response.arrayBuffer())
        process.stdout.write('.')
      }
    }
    log()
    await settle(url)
    const results = []
    const total = PAIRS.length * 2
    let index = 0
    for (const pair of PAIRS) {
      const bad = await measure(url, prober, pair.bad, ++index, total)
      const good = await measure(url, prober, pair.good, ++index, total)
      results.push({ pair, bad, good })
    }

    const text = await (await fetch(`${url}/__looplens/report`)).text()
    const report = await (await fetch(`${url}/__looplens/report?format=json`)).json()
    log()
    log('─'.repeat(100))
    log('What looplens saw (lens.formatReport(lens.report()) from inside the app):')
    log('─'.repeat(100))
    log(text.trimEnd())
    log()
    log('─'.repeat(100))
    log(
      'Bad vs good, measured (ok/s: 2xx responses per second; victim: GET /health while under load)',
    )
    log('─'.repeat(100))
    for (const { pair, bad, good } of results) {
      log()
      log(pair.title)
      log(
        table([
          ['', 'endpoint', 'ok/s', 'p50 latency', 'victim p99'],
          [
            'bad',
            `${pair.bad.method} ${pair.bad.path}`,
            fmtRate(bad.okPerSecond),
            fmtMs(bad.latencyP50),
            fmtMs(bad.victimP99),
          ],
          [
            'good',
            `${pair.good.method} ${pair.good.path}`,
            fmtRate(good.okPerSecond),
            fmtMs(good.latencyP50),
            fmtMs(good.victimP99),
          ],
        ]),
      )
      if (good.non2xx > 0)
        log(`  (good: ${good.non2xx} answered 503 — the bounded backlog said "busy")`)
    }
    log()
    const { problems, found } = checkReport(report)
    for (const line of found) log(`✔ ${line}`)
    if (problems.length === 0) {
      log('✔ no good endpoint blocked the loop')
    } else {
      failed = true
      for (const problem of problems) log(`✘ ${problem}`)
    }
    log()
    log(`Done in ${((performance.now() - started) / 1000).toFixed(0)} s.`)
  } catch (error) {
    failed = true
    log(`\nThe demo failed: ${error?.stack ?? error}\nApp output:\n${output()}`)
  } finally {
    await prober.stop()
    await stopApp(child)
  }
  process.exitCode = failed ? 1 : 0
}

await main()
