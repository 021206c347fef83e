#!/usr/bin/env node
/**
 * Where the instructions went: self cost per function of a callgrind dump kept by
 * `instructions.js --keep DIR`, per request, and the difference between two dumps.
 *
 *   NODE_OPTIONS=--perf-basic-prof-only-functions \
 *     node bench/instructions.js --configs bare,looplens --keep /tmp/cg
 *   node bench/callgrind-summary.js /tmp/cg/looplens.callgrind /tmp/cg/bare.callgrind --top 40
 *   node bench/callgrind-summary.js /tmp/cg/looplens.callgrind --callees looplensMiddleware
 *
 * `--callees NAME`: what the functions whose name contains NAME spend, themselves and in each
 * function they call (inclusive), per request: a JavaScript function's own cost apart from the
 * runtime and builtins it calls into (inline-cache misses show up there).
 * V8's generated code has no symbols, so callgrind names a JavaScript function by its address.
 * With `--perf-basic-prof-only-functions` V8 writes /tmp/perf-<pid>.map (address, size, name of
 * every compiled function); this script reads the map of the dump's pid and names them.
 * Requests per dump: `--requests`, as given to `instructions.js` (default 10000, as there).
 */
import { existsSync, readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'

const { values: args, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    top: { type: 'string', default: '30' },
    requests: { type: 'string', default: '10000' },
    callees: { type: 'string' },
  },
})
if (positionals.length < 1 || positionals.length > 2) {
  console.error(
    'usage: node bench/callgrind-summary.js A.callgrind [BASELINE.callgrind] [--top N] [--callees NAME]',
  )
  process.exit(2)
}
const requests = Number(args.requests)
const top = Number(args.top)

/** perf map of a pid: sorted [start, end, name]. */
function perfMap(pid) {
  const file = `/tmp/perf-${pid}.map`
  if (!existsSync(file)) return []
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const [start, size, ...name] = line.split(' ')
      const from = Number.parseInt(start, 16)
      return [from, from + Number.parseInt(size, 16), name.join(' ')]
    })
    .sort((a, b) => a[0] - b[0])
}

function resolve(map, address) {
  let low = 0
  let high = map.length - 1
  while (low <= high) {
    const middle = (low + high) >> 1
    const [from, to, name] = map[middle]
    if (address < from) high = middle - 1
    else if (address >= to) low = middle + 1
    else return name
  }
  return undefined
}

/**
 * Self cost (Ir) per function name, and the inclusive cost of every call from one function to
 * another (`caller → callee`), with JIT code named from the perf map.
 */
function parseDump(file) {
  const text = readFileSync(file, 'utf8')
  const pid = /^pid:\s*(\d+)/m.exec(text)?.[1]
  const map = pid === undefined ? [] : perfMap(pid)
  const names = new Map()
  const self = new Map()
  const calls = new Map()
  let current = '?'
  let callee = '?'
  let inCall = false
  const nameOf = (spec) => {
    const match = /^\((\d+)\)(?:\s+(.*))?$/.exec(spec)
    let name = spec
    if (match !== null) {
      if (match[2] !== undefined) names.set(match[1], match[2])
      name = names.get(match[1]) ?? spec
    }
    if (/^0x[0-9a-f]+/.test(name)) {
      name = resolve(map, Number.parseInt(name, 16)) ?? 'JIT code (unnamed)'
    }
    return name
  }
  const add = (costs, key, cost) => costs.set(key, (costs.get(key) ?? 0) + cost)
  for (const line of text.split('\n')) {
    if (line.startsWith('fn=')) {
      current = nameOf(line.slice(3))
    } else if (line.startsWith('cfn=')) {
      callee = nameOf(line.slice(4))
    } else if (line.startsWith('calls=')) {
      inCall = true
    } else if (/^[+\-*0-9]/.test(line)) {
      const parts = line.trim().split(/\s+/)
      const cost = Number(parts[parts.length - 1])
      if (!Number.isFinite(cost)) continue
      // The line after `calls=` is the call's inclusive cost, not the caller's own.
      if (inCall) add(calls, `${current} → ${callee}`, cost)
      else add(self, current, cost)
      inCall = false
    }
  }
  return { self, calls }
}

const a = parseDump(positionals[0])
const perRequest = (cost) => Math.round(cost / requests)

if (args.callees !== undefined) {
  // What functions named like the pattern call, inclusive cost per request (first dump only).
  const rows = [...a.calls]
    .filter(([key]) => key.split(' → ')[0].includes(args.callees))
    .sort((x, y) => y[1] - x[1])
    .slice(0, top)
  for (const [name] of a.self) {
    if (name.includes(args.callees))
      console.log(
        `${perRequest(a.self.get(name)).toString().padStart(9)}  self ${name.slice(0, 130)}`,
      )
  }
  for (const [key, cost] of rows)
    console.log(`${perRequest(cost).toString().padStart(9)}  ${key.slice(0, 170)}`)
  process.exit(0)
}

const b = positionals[1] === undefined ? { self: new Map() } : parseDump(positionals[1])
const total = (costs) => [...costs.values()].reduce((sum, cost) => sum + cost, 0)
const rows = [...new Set([...a.self.keys(), ...b.self.keys()])]
  .map((name) => [name, ((a.self.get(name) ?? 0) - (b.self.get(name) ?? 0)) / requests])
  .sort((x, y) => Math.abs(y[1]) - Math.abs(x[1]))
  .slice(0, top)
console.log(
  `self instructions per request: ${perRequest(total(a.self))}` +
    (positionals[1] === undefined
      ? ''
      : `, baseline ${perRequest(total(b.self))}, difference ${perRequest(total(a.self) - total(b.self))}`),
)
for (const [name, cost] of rows) {
  console.log(`${Math.round(cost).toString().padStart(9)}  ${name.slice(0, 140)}`)
}
