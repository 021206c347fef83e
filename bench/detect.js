#!/usr/bin/env node
/**
 * Detection benchmark (issue 3): how soon the watchdog's probe runs inside a stall, how exactly
 * stalls are measured, and what the watchdog worker costs in memory.
 *
 *   npm run bench:detect            (root: build, then this)
 *   node bench/detect.js --reps 20
 *
 * Latency = first probe capture inside the stall (main-thread time) − stall start. The stall is a
 * busy loop in a timer, outside any request, so nothing else is measured with it.
 * RSS = a process with `createLooplens()` minus one with `createLooplens({ captureStacks: false })`,
 * each after 1.5 s of settling, alternated, medians.
 */
import { spawnSync } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { median } from './common.js'

const benchDir = dirname(fileURLToPath(import.meta.url))
const dist = join(benchDir, '..', 'dist')
const { values: args } = parseArgs({
  options: {
    reps: { type: 'string', default: '15' },
    'rss-runs': { type: 'string', default: '5' },
    child: { type: 'string' },
  },
})

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const quantile = (values, q) => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]
}

if (args.child === 'rss') {
  // Child: report RSS once settled, with or without the watchdog.
  const { createLooplens } = await import(join(dist, 'index.js'))
  const lens = createLooplens({ captureStacks: process.env.STACKS === '1' })
  await sleep(1500)
  globalThis.gc?.()
  await sleep(100)
  process.stdout.write(`${JSON.stringify({ rss: process.memoryUsage().rss })}\n`)
  await lens.close()
  process.exit(0)
}

const { createLooplens } = await import(join(dist, 'index.js'))
const { recentProbeTimes } = await import(join(dist, 'watchdog', 'probe.js'))

function spin(ms) {
  const end = performance.now() + ms
  while (performance.now() < end);
}

const lens = createLooplens({ blockThresholdMs: 50, hangReportMs: 0 })
const events = []
lens.on('block', (event) => events.push(event))
await sleep(500)

const reps = Number(args.reps)
const rows = []
for (const stallMs of [100, 500, 2000]) {
  const latencies = []
  const errors = []
  let missed = 0
  const count = stallMs === 2000 ? Math.max(3, Math.ceil(reps / 3)) : reps
  for (let i = 0; i < count; i++) {
    const before = events.length
    let start = 0
    await new Promise((resolve) => {
      setTimeout(
        () => {
          start = performance.now()
          spin(stallMs)
          resolve()
        },
        20 + Math.random() * 20,
      )
    })
    await sleep(60)
    const event = events.slice(before).find((candidate) => candidate.durationMs >= stallMs * 0.9)
    // The captures themselves are let go once read; the probe keeps the times of its last probes.
    const first = recentProbeTimes().find((time) => time >= start && time <= start + stallMs + 50)
    if (event === undefined || first === undefined) {
      missed++
      continue
    }
    latencies.push(first - start)
    errors.push(event.durationMs - stallMs)
  }
  rows.push({
    stallMs,
    runs: count,
    missed,
    latencyP50: median(latencies),
    latencyP90: quantile(latencies, 0.9),
    latencyMax: Math.max(...latencies),
    errorMedian: median(errors),
    errorMax: Math.max(...errors.map(Math.abs)),
  })
}
await lens.close()

const rss = { stacks: [], nostacks: [] }
for (let i = 0; i < Number(args['rss-runs']); i++) {
  for (const stacks of ['0', '1']) {
    const run = spawnSync(
      process.execPath,
      ['--expose-gc', fileURLToPath(import.meta.url), '--child', 'rss'],
      {
        env: { ...process.env, STACKS: stacks },
        encoding: 'utf8',
      },
    )
    const { rss: value } = JSON.parse(run.stdout.trim().split('\n').at(-1))
    ;(stacks === '1' ? rss.stacks : rss.nostacks).push(value)
  }
}
const addedMb = (median(rss.stacks) - median(rss.nostacks)) / 1024 / 1024

const f = (ms) => `${ms.toFixed(1)} ms`
console.log(
  `looplens detection benchmark — Node ${process.version}, threshold 50 ms, ${new Date().toISOString()}\n`,
)
console.log(
  '| stall | runs | missed | probe latency p50 | p90 | max | duration error median | max abs |',
)
console.log('|---|---|---|---|---|---|---|---|')
for (const row of rows) {
  console.log(
    `| ${row.stallMs} ms | ${row.runs} | ${row.missed} | ${f(row.latencyP50)} | ${f(row.latencyP90)} | ${f(row.latencyMax)} | ${f(row.errorMedian)} | ${f(row.errorMax)} |`,
  )
}
console.log(
  `\nWatchdog worker RSS: +${addedMb.toFixed(1)} MB (median of ${rss.stacks.length} processes each; budget ≤ 15 MB)`,
)
mkdirSync(join(benchDir, 'results'), { recursive: true })
writeFileSync(
  join(benchDir, 'results', `detect-${new Date().toISOString().slice(0, 10)}.json`),
  JSON.stringify({ node: process.version, rows, rss }, null, 2),
)
