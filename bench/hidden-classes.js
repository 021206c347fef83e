#!/usr/bin/env node
/**
 * What one read or write of an Express-like `req` costs, in instructions (callgrind): the numbers
 * behind src/context/fields.ts.
 *
 *   node bench/hidden-classes.js                  (this Node)
 *   node bench/hidden-classes.js --node /path/to/node24
 *
 * Express gives `req` and `res` its app's prototype (`Object.setPrototypeOf`), then adds
 * properties. On V8 up to 12.4 (Node 20, 22) each property added after the prototype change
 * makes a hidden class for that one object, so code reading `req` sees a new hidden class on every
 * request. This script builds objects the same way (a class instance with 14 fields, a prototype
 * change, 5 more fields) and counts, per object, the instructions of one operation on each:
 * a named read (`o.method`), a keyed read (`o[KEY]`), a getter found on the prototype chain, a
 * new property stored, a `WeakMap.set`, a closure. Each case runs in its own process under
 * `valgrind --tool=callgrind`, minus a run that only builds the objects.
 */
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'

const OBJECTS = 100_000

const CASES = {
  none: 'the objects only',
  namedRead: '`o.method` (own field, named)',
  keyedRead: '`o[METHOD]` (own field, keyed)',
  namedGetter: '`o.ended` (getter 4 prototypes up, named)',
  keyedGetter: '`o[ENDED]` (same getter, keyed)',
  namedFive: 'five named reads',
  keyedFive: 'five keyed reads',
  storeNew: '`o.ctx = c` (new property)',
  weakMapSet: '`weakMap.set(o, c)`',
  closure: 'a closure over `o`',
}

/** The measured program, run in a child: `node hidden-classes.js --child CASE`. */
function child(name) {
  class Message {
    constructor(i) {
      this.a = 1
      this.b = 2
      this.c = 3
      this.d = 4
      this.e = 5
      this.f = 6
      this.g = 7
      this.h = 8
      this.i = 9
      this.j = 10
      this.method = 'GET'
      this.url = `/users/${i}`
      this.statusCode = 200
      this.finished = true
    }
  }
  Object.defineProperty(Message.prototype, 'ended', {
    get() {
      return this.finished
    },
  })
  // Like Express: the app's request prototype, a few levels above Node's class.
  const appPrototype = Object.create(Object.create(Object.create(Message.prototype)))
  const make = (i) => {
    const o = new Message(i)
    Object.setPrototypeOf(o, appPrototype)
    o.next = 1
    o.baseUrl = ''
    o.originalUrl = o.url
    o.route = null
    o.params = {}
    return o
  }
  const METHOD = 'method'
  const ORIGINAL_URL = 'originalUrl'
  const ENDED = 'ended'
  const ROUTE = 'route'
  const BASE_URL = 'baseUrl'
  const STATUS = 'statusCode'
  const weakMap = new WeakMap()
  const cases = {
    none: () => 1,
    namedRead: (o) => o.method.length,
    keyedRead: (o) => o[METHOD].length,
    namedGetter: (o) => (o.ended ? 1 : 0),
    keyedGetter: (o) => (o[ENDED] ? 1 : 0),
    namedFive: (o) =>
      o.method.length +
      o.originalUrl.length +
      o.baseUrl.length +
      o.statusCode +
      (o.route === null ? 1 : 0),
    keyedFive: (o) =>
      o[METHOD].length +
      o[ORIGINAL_URL].length +
      o[BASE_URL].length +
      o[STATUS] +
      (o[ROUTE] === null ? 1 : 0),
    storeNew: (o) => {
      o.ctx = o
      return 1
    },
    weakMapSet: (o) => {
      weakMap.set(o, o)
      return 1
    },
    closure: (o) => {
      const get = () => o
      return get() === o ? 1 : 0
    },
  }
  const run = cases[name]
  let sum = 0
  // Batches of 500 live objects, like requests in flight, then garbage.
  for (let batch = 0; batch < OBJECTS / 500; batch++) {
    const objects = []
    for (let i = 0; i < 500; i++) objects.push(make(i))
    for (const o of objects) sum += run(o)
  }
  if (sum < 0) console.log(sum)
}

function instructions(node, name) {
  const result = spawnSync(
    'valgrind',
    [
      '--tool=callgrind',
      '--callgrind-out-file=/dev/null',
      node,
      fileURLToPath(import.meta.url),
      '--child',
      name,
    ],
    { encoding: 'utf8' },
  )
  const match = /Collected : (\d+)/.exec(result.stderr ?? '')
  if (result.status !== 0 || match === null) {
    throw new Error(
      `valgrind failed on ${name}: ${result.error?.message ?? result.stderr.slice(-500)}`,
    )
  }
  return Number(match[1])
}

const { values: args } = parseArgs({
  options: { node: { type: 'string', default: process.execPath }, child: { type: 'string' } },
})
if (args.child !== undefined) {
  child(args.child)
} else {
  const version = spawnSync(args.node, ['--version'], { encoding: 'utf8' }).stdout.trim()
  const base = instructions(args.node, 'none')
  console.log(`Instructions per object, ${OBJECTS} objects, Node ${version} (callgrind)\n`)
  console.log('| operation | instructions |')
  console.log('|---|---:|')
  for (const [name, label] of Object.entries(CASES)) {
    if (name === 'none') continue
    const cost = (instructions(args.node, name) - base) / OBJECTS
    console.log(`| ${label} | ${Math.round(cost).toLocaleString('en-US')} |`)
  }
}
