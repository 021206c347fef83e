#!/usr/bin/env node
/**
 * Where does an instrumented server spend its CPU? Reads V8 `.cpuprofile` files written by
 * `node bench/overhead.js --cpu-prof` and attributes every sample:
 *
 * - to a looplens function when, walking the stack from the leaf up, a looplens frame comes
 *   before any Express/router frame (so a handler running under `looplensMiddleware → next()`
 *   is not counted against looplens; prom-client or `enterWith` called *by* looplens is);
 * - otherwise to a coarse bucket: AsyncLocalStorage/async_hooks, GC, express, node internals…
 *
 *   node bench/profile-summary.js bench/results/profiles/bare-1.cpuprofile \
 *     bench/results/profiles/looplens-2.cpuprofile [--top 25]
 *
 * Percentages are of the profile's non-idle samples. Multiply by the run's CPU µs/request for
 * µs/request (the sampling also costs CPU: use ratios between profiles, not absolute numbers).
 */
import { readFileSync } from 'node:fs'
import { basename, dirname, join, resolve } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'

const { values: args, positionals: files } = parseArgs({
  allowPositionals: true,
  options: { top: { type: 'string', default: '20' } },
})
if (files.length === 0) {
  console.error('usage: node bench/profile-summary.js FILE.cpuprofile… [--top N]')
  process.exit(2)
}

const benchDir = dirname(fileURLToPath(import.meta.url))
const looplensDist = pathToFileURL(join(resolve(benchDir, '..'), 'dist')).href

function bucketOf(url, functionName) {
  if (functionName === '(garbage collector)') return 'gc'
  if (functionName === '(program)') return 'program (native, V8 outside JS)'
  if (functionName === '(idle)') return 'idle'
  if (url.startsWith(looplensDist)) return 'looplens'
  if (url.includes('/prom-client/')) return 'prom-client'
  if (url.includes('/@opentelemetry/')) return 'opentelemetry'
  if (url.includes('async_hooks') || url.includes('async_local_storage')) return 'async_hooks'
  if (/\/(express|router|body-parser|finalhandler|send|on-finished)\//.test(url)) return 'express'
  if (url.startsWith('node:')) return 'node'
  if (url === '') return 'native'
  return 'other js'
}

function describeFrame(frame) {
  const file = frame.url === '' ? '' : ` ${basename(frame.url)}:${frame.lineNumber + 1}`
  return `${frame.functionName || '(anonymous)'}${file}`
}

function analyse(file) {
  const profile = JSON.parse(readFileSync(file, 'utf8'))
  const nodes = new Map(profile.nodes.map((node) => [node.id, node]))
  const parent = new Map()
  for (const node of profile.nodes) {
    for (const child of node.children ?? []) parent.set(child, node.id)
  }
  const intervalUs =
    (profile.endTime - profile.startTime) / Math.max(1, profile.samples?.length ?? 1)
  const counts = new Map()
  for (const id of profile.samples ?? []) counts.set(id, (counts.get(id) ?? 0) + 1)

  let busy = 0
  const buckets = new Map()
  const looplens = new Map() // looplens function → { total, by leaf bucket }
  const selfTop = new Map()
  const rollup = new Map() // samples under looplens frames, by what the leaf frame was
  for (const [id, count] of counts) {
    const leaf = nodes.get(id)
    const leafBucket = bucketOf(leaf.callFrame.url, leaf.callFrame.functionName)
    if (leafBucket === 'idle') continue
    busy += count
    const self = describeFrame(leaf.callFrame)
    selfTop.set(self, (selfTop.get(self) ?? 0) + count)
    let owner
    for (let cursor = id; cursor !== undefined; cursor = parent.get(cursor)) {
      const frame = nodes.get(cursor).callFrame
      const bucket = bucketOf(frame.url, frame.functionName)
      if (bucket === 'looplens') {
        owner = describeFrame(frame)
        break
      }
      if (bucket === 'express') break
    }
    if (owner !== undefined) {
      const entry = looplens.get(owner) ?? { total: 0, leaves: new Map() }
      entry.total += count
      const leafName = `${leafBucket}: ${self}`
      rollup.set(leafBucket, (rollup.get(leafBucket) ?? 0) + count)
      entry.leaves.set(leafName, (entry.leaves.get(leafName) ?? 0) + count)
      looplens.set(owner, entry)
      buckets.set(
        'looplens (+ what it calls)',
        (buckets.get('looplens (+ what it calls)') ?? 0) + count,
      )
    } else {
      buckets.set(leafBucket, (buckets.get(leafBucket) ?? 0) + count)
    }
  }
  return { file, busy, intervalUs, buckets, looplens, rollup, selfTop, bench: profile.$bench }
}

const top = Number(args.top)

for (const file of files) {
  const result = analyse(file)
  // µs per request: the share of the main thread's busy samples × the window's process CPU per
  // request (written into the profile by server.js).
  const cpuPerRequest =
    result.bench === undefined ? undefined : result.bench.cpuUs / result.bench.requests
  const percent = (part, whole) => {
    const share = `${((100 * part) / whole).toFixed(2)}%`.padStart(7)
    if (cpuPerRequest === undefined) return share
    return `${share} ${`${((part / whole) * cpuPerRequest).toFixed(2)} µs/req`.padStart(13)}`
  }
  console.log(
    `\n## ${basename(file)}: ${result.busy} busy samples (~${result.intervalUs.toFixed(0)} µs each)${cpuPerRequest === undefined ? '' : `, ${result.bench.requests} requests, process CPU ${cpuPerRequest.toFixed(1)} µs/req`}`,
  )
  console.log('\nbuckets (by leaf frame, except samples under a looplens frame):')
  for (const [bucket, count] of [...result.buckets].sort((a, b) => b[1] - a[1])) {
    console.log(`  ${percent(count, result.busy)}  ${bucket}`)
  }
  if (result.rollup.size > 0) {
    console.log('\nunder looplens frames, by what ran (looplens code, prom-client, node…):')
    for (const [bucket, count] of [...result.rollup].sort((a, b) => b[1] - a[1])) {
      console.log(`  ${percent(count, result.busy)}  ${bucket}`)
    }
  }
  if (result.looplens.size > 0) {
    console.log('\nlooplens functions (inclusive of callees, exclusive of next()):')
    for (const [name, entry] of [...result.looplens].sort((a, b) => b[1].total - a[1].total)) {
      console.log(`  ${percent(entry.total, result.busy)}  ${name}`)
      const leaves = [...entry.leaves].sort((a, b) => b[1] - a[1]).slice(0, 6)
      for (const [leaf, count] of leaves) {
        console.log(`  ${' '.repeat(20)}${percent(count, result.busy)}  └ ${leaf}`)
      }
    }
  }
  console.log(`\ntop ${top} self:`)
  for (const [name, count] of [...result.selfTop].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    console.log(`  ${percent(count, result.busy)}  ${name}`)
  }
}
