#!/usr/bin/env node
/**
 * Instructions per request, counted by valgrind (callgrind): the overhead benchmark's CPU ratios
 * without the shared machine's noise.
 *
 *   npm run bench:instructions          (root: build, install bench/, run this)
 *   node bench/instructions.js --configs bare,looplens,otel,otel+looplens --requests 3000
 *   node bench/instructions.js --node /usr/bin/node,/path/to/node24 --jobs 2   (a column per Node)
 *   node bench/instructions.js --configs bare,looplens --keep /tmp/cg   (then callgrind-summary.js)
 *
 * CPU time per request on this machine moves ±10–15 % from one round to the next (other tenants,
 * frequency, caches), so a 3 % budget cannot be read off `overhead.js` alone. An instruction count
 * is repeatable: the same binary doing the same work executes the same instructions whatever else
 * the machine does. Each configuration runs bench/server.js (the same server as overhead.js) under
 * `valgrind --tool=callgrind`, which counts every instruction of every thread of the process —
 * V8's generated code, the garbage collector, the watchdog worker and libuv included.
 *
 * Per configuration:
 *   1. start the server under callgrind, send `--warmup` requests (the JIT settles);
 *   2. collect the heap (a full GC, so every window starts alike), zero the counters
 *      (`callgrind_control -z`), send exactly `--requests` requests from
 *      `--connections` keep-alive connections, dump the counters (`callgrind_control -d`);
 *   3. wait 6 s (deferred work of the window, such as OpenTelemetry's batch export, finishes),
 *      then count three idle windows of `--idle`/3 seconds each: the median is the instructions
 *      per second that timers cost (heartbeat, delay histogram, watchdog) whatever the load.
 * Instructions per request = (window − idle rate × window's wall time) / requests. Under valgrind
 * the server runs ~50× slower, so a window lasts ~50× longer than it would natively and timers
 * would weigh ~50× too much per request; the idle rate takes them out, and they are shown apart
 * (instructions per second, the same natively: a timer fires on the clock, not per request).
 *
 * Why 10,000 requests per window: bare Express 5 on Node 20 makes a full (mark-compact) GC about
 * every 2,500 requests (`node --trace-gc`), ~60 million instructions each, and V8 keeps
 * recompiling its request path, about a quarter of all instructions. A 3,000-request window held
 * one such GC or two, which moved a configuration's count by ±2% from run to run; 10,000 requests
 * average over about four.
 *
 * The load generator runs natively, outside valgrind; only the server is counted. Instructions
 * are not time (a cache miss costs more than an add), but for the same request path they are the
 * closest repeatable stand-in, and `--repeat` shows how repeatable they are here.
 */
import { spawn, spawnSync } from 'node:child_process'
import {
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs'
import http from 'node:http'
import os from 'node:os'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { CONFIGS, median, serverNodeArgs } from './common.js'

const benchDir = dirname(fileURLToPath(import.meta.url))
/** Wait after the load before the idle windows, and how many idle windows (median taken). */
const SETTLE_MS = 6000
const IDLE_WINDOWS = 3
/** Every configuration but blocked-at (never measured under valgrind here; `--configs` adds it). */
const DEFAULT_CONFIGS = CONFIGS.filter((config) => config !== 'blocked-at')

/** Budgets from DESIGN.md and the issues: [config, baseline, max instruction ratio, source]. */
const BUDGETS = [
  ['looplens', 'bare', 1.03, 'DESIGN.md / issue 2: everything on but tracing'],
  ['otel+looplens', 'otel', 1.05, 'issue 4: looplens on top of OpenTelemetry'],
]

const { values: args } = parseArgs({
  options: {
    configs: { type: 'string', default: DEFAULT_CONFIGS.join(',') },
    warmup: { type: 'string', default: '5000' },
    requests: { type: 'string', default: '10000' },
    connections: { type: 'string', default: '1' },
    idle: { type: 'string', default: '4' },
    repeat: { type: 'string', default: '3' },
    node: { type: 'string', default: process.execPath },
    jobs: { type: 'string', default: '2' },
    'node-args': { type: 'string', default: '' },
    out: { type: 'string' },
    keep: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
})

if (args.help) {
  console.log(
    'usage: node bench/instructions.js [--configs a,b] [--warmup N] [--requests N]\n' +
      '         [--connections N] [--idle SECONDS] [--repeat N] [--node BIN[,BIN]] [--jobs N]\n' +
      '         [--keep DIR] [--out FILE]',
  )
  process.exit(0)
}

function positiveInteger(name) {
  const value = Number(args[name])
  if (!Number.isInteger(value) || value < 1) {
    console.error(`--${name} must be a positive integer (received ${JSON.stringify(args[name])})`)
    process.exit(2)
  }
  return value
}

const warmup = positiveInteger('warmup')
const requests = positiveInteger('requests')
const connections = positiveInteger('connections')
const idleSeconds = positiveInteger('idle')
const repeat = positiveInteger('repeat')
const jobs = positiveInteger('jobs')
/** Node binaries the server runs on; each gets its own column, compared with its own bare. */
const nodes = args.node.split(',').filter(Boolean)
const nodeVersions = new Map(
  nodes.map((binary) => {
    const result = spawnSync(binary, ['--version'], { encoding: 'utf8' })
    if (result.status !== 0) {
      console.error(
        `--node ${binary}: not a Node binary (${result.error?.message ?? result.stderr})`,
      )
      process.exit(2)
    }
    return [binary, result.stdout.trim()]
  }),
)
const configs = args.configs.split(',').filter(Boolean)

for (const tool of ['valgrind', 'callgrind_control']) {
  if (spawnSync(tool, ['--version'], { stdio: 'ignore' }).error !== undefined) {
    console.error(`${tool} not found: install Debian's valgrind package (apt-get install valgrind)`)
    process.exit(2)
  }
}

/** Send exactly `count` GET requests over `connections` keep-alive connections. */
async function load(port, count) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: connections })
  let next = 0
  let failed = 0
  const one = (i) =>
    new Promise((resolve) => {
      const req = http.get(
        { host: '127.0.0.1', port, path: `/users/${i}?q=${i}`, agent },
        (res) => {
          if (res.statusCode !== 200) failed++
          res.resume()
          res.on('end', resolve)
        },
      )
      req.on('error', () => {
        failed++
        resolve()
      })
    })
  const worker = async () => {
    while (next < count) await one(next++)
  }
  await Promise.all(Array.from({ length: connections }, worker))
  agent.destroy()
  if (failed > 0) throw new Error(`${failed} of ${count} requests failed`)
}

/** Total instructions (Ir) of a callgrind dump file. */
function dumpTotal(file) {
  const text = readFileSync(file, 'utf8')
  const match = /^(?:totals|summary):\s+(\d+)/m.exec(text)
  if (match === null) throw new Error(`no totals line in ${file}`)
  return Number(match[1])
}

/** `callgrind_control -z|-d PID`, then (for -d) the newest dump file's total. */
function control(flag, pid, dir, keepAs) {
  const result = spawnSync('callgrind_control', [flag, String(pid)], { encoding: 'utf8' })
  if (result.status !== 0) {
    throw new Error(`callgrind_control ${flag} ${pid} failed: ${result.stderr || result.stdout}`)
  }
  if (flag !== '-d') return undefined
  const dumps = readdirSync(dir)
    .filter((name) => name.startsWith(`cg.${pid}.`))
    .sort((a, b) => Number(a.split('.').pop()) - Number(b.split('.').pop()))
  const file = dumps.at(-1)
  if (file === undefined) throw new Error(`callgrind wrote no dump for ${pid} in ${dir}`)
  const total = dumpTotal(join(dir, file))
  if (keepAs === undefined) rmSync(join(dir, file))
  else renameSync(join(dir, file), keepAs)
  return total
}

async function measure(config, node, dir) {
  const nodeArgs = [
    '--expose-gc',
    ...args['node-args'].split(' ').filter(Boolean),
    ...serverNodeArgs(config),
  ]
  const child = spawn(
    'valgrind',
    [
      '--tool=callgrind',
      `--callgrind-out-file=${join(dir, 'cg.%p')}`,
      '--dump-line=no',
      // --keep: the window's dump is kept for callgrind_annotate (which functions cost what).
      node,
      ...nodeArgs,
      'server.js',
    ],
    {
      cwd: benchDir,
      env: {
        ...process.env,
        BENCH_CONFIG: config,
        // Time runs ~50× slower under valgrind: a 50 ms threshold would see the JIT's and every
        // request's ticks as blocks. Scaled up, looplens does per request what it does natively.
        BENCH_LOOPLENS_OPTIONS: JSON.stringify({ blockThresholdMs: 2500, hangReportMs: 100_000 }),
      },
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    },
  )
  let stderr = ''
  child.stderr.on('data', (chunk) => {
    stderr = (stderr + chunk).slice(-4000)
  })
  const messages = []
  let waiting
  child.on('message', (message) => {
    messages.push(message)
    waiting?.()
  })
  const exited = new Promise((resolve) => child.on('exit', resolve))
  const receive = async (type, timeoutMs) => {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const index = messages.findIndex((message) => message.type === type)
      if (index !== -1) return messages.splice(index, 1)[0]
      if (child.exitCode !== null) throw new Error(`${config}: server exited\n${stderr}`)
      if (Date.now() > deadline) throw new Error(`${config}: no '${type}' in ${timeoutMs} ms`)
      await new Promise((resolve) => {
        waiting = resolve
        setTimeout(resolve, 200)
      })
    }
  }
  try {
    const { port, pid } = await receive('ready', 180_000)
    await load(port, warmup)
    child.send({ cmd: 'start', gc: true })
    await receive('started', 60_000)
    control('-z', pid, dir)
    const started = process.hrtime.bigint()
    await load(port, requests)
    const wallS = Number(process.hrtime.bigint() - started) / 1e9
    const windowIr = control(
      '-d',
      pid,
      dir,
      args.keep === undefined
        ? undefined
        : join(args.keep, `${nodeVersions.get(node)}-${config.replace('+', '_')}.callgrind`),
    )
    // Let deferred work of the window finish first (OpenTelemetry's batch export runs every
    // 5 s): it belongs to the requests, and must not be taken for the timers' steady cost.
    await new Promise((resolve) => setTimeout(resolve, SETTLE_MS))
    const idleRates = []
    for (let i = 0; i < IDLE_WINDOWS; i++) {
      control('-z', pid, dir)
      const idleStarted = process.hrtime.bigint()
      await new Promise((resolve) => setTimeout(resolve, (idleSeconds * 1000) / IDLE_WINDOWS))
      const idleIr = control('-d', pid, dir)
      idleRates.push(idleIr / (Number(process.hrtime.bigint() - idleStarted) / 1e9))
    }
    // The median of three windows: one that caught a one-off (a major GC) does not count.
    const idlePerS = median(idleRates)
    child.send({ cmd: 'stop', final: true })
    const stopped = await receive('stopped', 120_000)
    return {
      config,
      requests,
      windowIr,
      wallS,
      idlePerS,
      perRequest: (windowIr - idlePerS * wallS) / requests,
      rawPerRequest: windowIr / requests,
      checks: stopped.checks,
    }
  } finally {
    child.send?.({ cmd: 'exit' })
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000)
    await exited
    clearTimeout(timer)
  }
}

const fmt = (value) => Math.round(value).toLocaleString('en-US')

const dir = mkdtempSync(join(os.tmpdir(), 'looplens-callgrind-'))
if (args.keep !== undefined) mkdirSync(args.keep, { recursive: true })
const results = []
const started = Date.now()
const queue = []
for (let round = 1; round <= repeat; round++) {
  for (const node of nodes) for (const config of configs) queue.push({ round, node, config })
}
try {
  // --jobs 2 runs two servers at once: instruction counts do not depend on the other core's
  // load (only the wall time does), so this halves the run on a 2-core machine.
  const worker = async () => {
    for (let task = queue.shift(); task !== undefined; task = queue.shift()) {
      const result = await measure(task.config, task.node, dir)
      Object.assign(result, { round: task.round, node: nodeVersions.get(task.node) })
      results.push(result)
      console.error(
        `${result.node} round ${task.round} ${task.config.padEnd(22)} ` +
          `${fmt(result.perRequest).padStart(12)} instr/req  (raw ${fmt(result.rawPerRequest)}, ` +
          `timers ${fmt(result.idlePerS)}/s, ${result.wallS.toFixed(1)} s) ${JSON.stringify(result.checks)}`,
      )
    }
  }
  await Promise.all(Array.from({ length: Math.min(jobs, queue.length) }, worker))
} finally {
  rmSync(dir, { recursive: true, force: true })
}

/** Median instructions per request of a configuration on one Node version, and its runs. */
function summary(node, config) {
  const own = results.filter((result) => result.node === node && result.config === config)
  if (own.length === 0) return undefined
  return {
    perRequest: median(own.map((result) => result.perRequest)),
    runs: own.map((result) => result.perRequest),
    idlePerS: median(own.map((result) => result.idlePerS)),
  }
}
const versions = [...nodeVersions.values()]

console.log(
  `\nInstructions per request (callgrind; ${requests} requests after ${warmup} warm-up, ` +
    `${connections} connection(s), ${repeat} run(s) each)\n`,
)
console.log(
  `| configuration | ${versions.map((v) => `instructions / request, ${v} | vs bare`).join(' | ')} |`,
)
console.log(`|---|${versions.map(() => '---|---|').join('')}`)
for (const config of configs) {
  const cells = versions.map((version) => {
    const value = summary(version, config)
    const bare = summary(version, 'bare')
    if (value === undefined) return ' | '
    const spread =
      value.runs.length > 1
        ? ` (${fmt(Math.min(...value.runs))}–${fmt(Math.max(...value.runs))})`
        : ''
    const ratio = bare === undefined ? '' : `${(value.perRequest / bare.perRequest).toFixed(3)}×`
    return `${fmt(value.perRequest)}${spread} | ${ratio}`
  })
  console.log(`| ${config} | ${cells.join(' | ')} |`)
}
console.log(
  `\nTimers while idle, instructions / s: ${versions
    .map(
      (version) =>
        `${version}: ${configs
          .map((config) => `${config} ${fmt(summary(version, config)?.idlePerS ?? 0)}`)
          .join(', ')}`,
    )
    .join('; ')}`,
)
const verdicts = []
for (const version of versions) {
  for (const [config, baseline, max, source] of BUDGETS) {
    const a = summary(version, config)
    const b = summary(version, baseline)
    if (a === undefined || b === undefined) continue
    const ratio = a.perRequest / b.perRequest
    verdicts.push({ node: version, config, baseline, ratio, max, met: ratio <= max, source })
    console.log(
      `${ratio <= max ? 'MET ' : 'MISS'} ${version} ${config} / ${baseline} = ${ratio.toFixed(3)}× ` +
        `(budget ≤ ${max}×, ${source})`,
    )
  }
}
console.log(`\n${((Date.now() - started) / 1000).toFixed(0)} s`)

if (args.out !== undefined) {
  mkdirSync(dirname(args.out), { recursive: true })
  writeFileSync(
    args.out,
    `${JSON.stringify({ nodes: versions, args, results, verdicts }, null, 2)}\n`,
  )
  console.log(`wrote ${relative(process.cwd(), args.out)}`)
}
