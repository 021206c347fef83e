#!/usr/bin/env node
/**
 * Where the instructions went: self cost per function of a callgrind dump kept by
 * `instructions.js --keep DIR`, per request, and the difference between two dumps.
 *
 *   NODE_OPTIONS=--perf-basic-prof-only-functions \
 *     node bench/instructions.js --configs bare,looplens --keep /tmp/cg
 *   node bench/callgrind-summary.js /tmp/cg/looplens.callgrind /tmp/cg/bare.callgrind --top 40
 *
 * V8's generated code has no symbols, so callgrind names a JavaScript function by its address.
 * With `--perf-basic-prof-only-functions` V8 writes /tmp/perf-<pid>.map (address, size, name of
 * every compiled function); this script reads the map of the dump's pid and names them.
 * Requests per dump come from `instructions.js` (`--requests`, default 2000).
 */
import { existsSync, readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'

const { values: args, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    top: { type: 'string', default: '30' },
    requests: { type: 'string', default: '2000' },
  },
})
if (positionals.length < 1 || positionals.length > 2) {
  console.error('usage: node bench/callgrind-summary.js A.callgrind [BASELINE.callgrind] [--top N]')
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

/** Self cost (Ir) per function name. */
function selfCosts(file) {
  const text = readFileSync(file, 'utf8')
  const pid = /^pid:\s*(\d+)/m.exec(text)?.[1]
  const map = pid === undefined ? [] : perfMap(pid)
  const names = new Map()
  const costs = new Map()
  let current = '?'
  let skipNext = false
  const nameOf = (spec) => {
    const match = /^\((\d+)\)(?:\s+(.*))?$/.exec(spec)
    if (match === null) return spec
    if (match[2] !== undefined) names.set(match[1], match[2])
    return names.get(match[1]) ?? spec
  }
  for (const line of text.split('\n')) {
    if (line.startsWith('fn=')) {
      let name = nameOf(line.slice(3))
      if (/^0x[0-9a-f]+/.test(name)) {
        name = resolve(map, Number.parseInt(name, 16)) ?? 'JIT code (unnamed)'
      }
      current = name
    } else if (line.startsWith('cfn=')) {
      nameOf(line.slice(4))
    } else if (line.startsWith('calls=')) {
      skipNext = true
    } else if (/^[+\-*0-9]/.test(line)) {
      if (skipNext) {
        skipNext = false
        continue
      }
      const parts = line.trim().split(/\s+/)
      const cost = Number(parts[parts.length - 1])
      if (Number.isFinite(cost)) costs.set(current, (costs.get(current) ?? 0) + cost)
    }
  }
  return costs
}

const a = selfCosts(positionals[0])
const b = positionals[1] === undefined ? new Map() : selfCosts(positionals[1])
const total = (costs) => [...costs.values()].reduce((sum, cost) => sum + cost, 0)
const rows = [...new Set([...a.keys(), ...b.keys()])]
  .map((name) => [name, ((a.get(name) ?? 0) - (b.get(name) ?? 0)) / requests])
  .sort((x, y) => Math.abs(y[1]) - Math.abs(x[1]))
  .slice(0, top)
console.log(
  `self instructions per request: ${Math.round(total(a) / requests)}` +
    (positionals[1] === undefined
      ? ''
      : `, baseline ${Math.round(total(b) / requests)}, difference ${Math.round((total(a) - total(b)) / requests)}`),
)
for (const [name, cost] of rows) {
  console.log(`${Math.round(cost).toString().padStart(9)}  ${name.slice(0, 140)}`)
}
