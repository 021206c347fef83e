/**
 * The probe: a function looplens registers on the main thread, which the watchdog worker asks
 * the inspector to evaluate while the loop is stalled. Inspector messages are handled as V8
 * interrupts, so the probe runs *inside* the blocked code: the AsyncLocalStorage store it reads
 * is the blocked request's, and the stack it takes goes through the blocking function.
 *
 * It records into a process-wide list of captures; each instance's detector reads them when the
 * stall is over, and they are dropped once every reader has (see {@link openCaptureReader}). No
 * data crosses the thread boundary except the short text of a hang report.
 */
import { executionAsyncId } from 'node:async_hooks'
import { performance } from 'node:perf_hooks'
import { contextStorage, type LensContext } from '../context/context.js'
import { heartbeatIntervalFor } from '../monitor/heartbeat.js'
import { dropProbeFrames, formatFrame, parseStack } from '../stack/frames.js'
import { terminalFrame, terminalText } from '../util/text.js'
import { debuggerServerOpen } from './debugger.js'
import { BEAT } from './shared.js'

/**
 * The global key the worker evaluates: `globalThis[Symbol.for(PROBE_KEY)](hang)`. The expression
 * text never changes, so V8's compilation cache serves every probe after the first.
 */
export const PROBE_KEY = 'looplens.probe.v1'

export interface Capture {
  /** performance.now() on the main thread when the probe ran. */
  time: number
  /** Which stall (the heartbeat's last beat before it, epoch ms) the worker probed for. */
  stallId: number
  context: LensContext | undefined
  asyncId: number
  /** Raw V8 stack text, or undefined when rate-limited. */
  stack: string | undefined
}

/** At most this many captures are kept, whatever happens (they are normally read within ms). */
const CAPACITY = 512

/**
 * Captures not yet read by every reader, oldest first. A capture holds the request's context, and
 * through it (until the request ends) its `req` and body: it is dropped as soon as every reader
 * has looked at the stall it belongs to, so nothing of a request stays reachable from here.
 */
let captures: Capture[] = []

/**
 * One reader per heartbeat (per looplens instance). After each of its ticks a heartbeat has read
 * every capture up to that tick: its next stall starts after it.
 */
export interface CaptureReader {
  /** Captures taken between two main-thread times (inclusive), oldest first. */
  between(startPerf: number, endPerf: number): Capture[]
  /** Nothing taken at or before `perf` will be read again by this reader. */
  readUpTo(perf: number): void
  /** The reader is gone (its instance closed); idempotent. */
  close(): void
}

const readers = new Set<{ upTo: number }>()

/** Drop the captures every reader has read (all of them when nobody reads). */
function release(): void {
  if (captures.length === 0) return
  let upTo = Number.POSITIVE_INFINITY
  for (const reader of readers) upTo = Math.min(upTo, reader.upTo)
  let read = 0
  while (read < captures.length && captures[read]!.time <= upTo) read++
  if (read === captures.length) captures = []
  else if (read > 0) captures = captures.slice(read)
  // The stall is over once its captures are read: the last context seen must not outlive them.
  if (captures.length === 0) stall.lastKey = undefined
}

/** Start reading captures (one reader per heartbeat). */
export function openCaptureReader(): CaptureReader {
  const reader = { upTo: Number.NEGATIVE_INFINITY }
  readers.add(reader)
  return {
    between(startPerf, endPerf) {
      return captures.filter((capture) => capture.time >= startPerf && capture.time <= endPerf)
    },
    readUpTo(perf) {
      reader.upTo = perf
      release()
    },
    close() {
      readers.delete(reader)
      release()
    },
  }
}

/**
 * main-thread times of the last probes (numbers only, nothing of a request): what bench/detect.js
 * measures the probe's latency with, the captures themselves being gone by then.
 */
const recentTimes = new Float64Array(256)
let recentNext = 0

/** performance.now() of the most recent probes, oldest first (at most 256). */
export function recentProbeTimes(): number[] {
  const times: number[] = []
  for (let i = 0; i < recentTimes.length; i++) {
    const time = recentTimes[(recentNext + i) % recentTimes.length]!
    if (time !== 0) times.push(time)
  }
  return times
}

/**
 * Stacks cost the blocked thread a few tens of µs each (Error.captureStackTrace with 50 frames,
 * then its text; more with source maps), so they are budgeted, per stall (later probes of a stall
 * are free). Whether a stall is a block is only known once it is over (the heartbeat decides),
 * so:
 * - the block budget, `maxStacksPerMinute`, is charged when a block is published with its stack
 *   (the detector calls {@link chargeStack}), once per stall. A stall that ends below the
 *   threshold never spends it: otherwise a stream of near-threshold stalls leaves every real
 *   block without its stack (200 stalls of 40 ms under a 50 ms threshold did).
 * - early stacks, taken before a stall is old enough to be a block (the first probe comes at half
 *   the threshold), draw on a bucket of their own: EARLY_STACKS_FACTOR × `maxStacksPerMinute` a
 *   minute (600 by default, ~0.1% of a core at most). This is what bounds the CPU cost of
 *   sub-threshold stalls. A stall published as a block gives its early token back.
 * - a stall already older than the threshold plus one beat interval takes its stack without a
 *   token: one stack costs ~0.1% of the time the stall has already lasted, so those are bounded
 *   by the stalls themselves; the block budget decides at publication whether the stack is kept.
 */
interface Bucket {
  perMinute: number
  tokens: number
  refilledAt: number
}

const EARLY_STACKS_FACTOR = 10

function bucket(perMinute: number): Bucket {
  return { perMinute, tokens: perMinute, refilledAt: performance.now() }
}

const blockBudget = bucket(60)
const earlyBudget = bucket(60 * EARLY_STACKS_FACTOR)
/** The stall that was charged to the block budget last, and the one that took an early token. */
let chargedStall = Number.NaN
let earlyStall = Number.NaN
/**
 * A stall this old (beat age, ms) has lasted a threshold at least: the threshold, plus one beat
 * interval for the idle time between the last beat and the stall's start, which the age includes.
 */
let lateStackAgeMs = 50 + heartbeatIntervalFor(50)

function take(budget: Bucket): boolean {
  const now = performance.now()
  budget.tokens = Math.min(
    budget.perMinute,
    budget.tokens + ((now - budget.refilledAt) * budget.perMinute) / 60_000,
  )
  budget.refilledAt = now
  if (budget.tokens < 1) return false
  budget.tokens -= 1
  return true
}

/**
 * Probes so far in the current stall. Stacks are taken when a probe sees another context than
 * the probe before it (each run of the detector gets its culprit) and at the 1st, 2nd, 4th, 8th…
 * probe; the other probes only read the context, the cheap part.
 */
const stall: { id: number; probes: number; lastKey: unknown } = {
  id: Number.NaN,
  probes: 0,
  lastKey: undefined,
}

/** The shared heartbeat; its last beat identifies the stall in progress. */
let beat: Float64Array | undefined

/**
 * The budget of every instance together: the largest `maxStacksPerMinute`, the smallest
 * threshold (the worker probes for that one).
 */
export function setStackBudget(perMinute: number, blockThresholdMs: number): void {
  blockBudget.perMinute = perMinute
  blockBudget.tokens = Math.min(blockBudget.tokens, perMinute)
  earlyBudget.perMinute = perMinute * EARLY_STACKS_FACTOR
  earlyBudget.tokens = Math.min(earlyBudget.tokens, earlyBudget.perMinute)
  lateStackAgeMs = blockThresholdMs + heartbeatIntervalFor(blockThresholdMs)
}

/**
 * Charge a stall published as a block to the block budget (once per stall, however many
 * instances or segments publish it). False: over budget, the event goes out without its stack.
 */
export function chargeStack(stallId: number): boolean {
  if (stallId === chargedStall) return true
  if (!take(blockBudget)) return false
  chargedStall = stallId
  if (stallId === earlyStall) {
    // A block after all: its early stack is the block budget's now.
    earlyBudget.tokens = Math.min(earlyBudget.perMinute, earlyBudget.tokens + 1)
    earlyStall = Number.NaN
  }
  return true
}

/** Whether a probe of this stall, `ageMs` after its last beat, may take a stack. */
function mayTakeStack(stallId: number, ageMs: number): boolean {
  if (stallId === chargedStall || stallId === earlyStall) return true
  if (ageMs >= lateStackAgeMs) return true
  if (!take(earlyBudget)) return false
  earlyStall = stallId
  return true
}

/**
 * The raw V8 stack of the code running now, up to 50 frames, without `below`'s own frame and
 * those above it (the inspector's `<anonymous>:1` wrapper is dropped at parse). Never throws.
 */
// biome-ignore lint/complexity/noBannedTypes: Error.captureStackTrace takes any function
export function captureStack(below: Function): string | undefined {
  const limit = Error.stackTraceLimit
  Error.stackTraceLimit = 50
  const holder: { stack?: unknown } = {}
  try {
    Error.captureStackTrace(holder, below)
    return typeof holder.stack === 'string' ? holder.stack : undefined
  } catch {
    return undefined
  } finally {
    Error.stackTraceLimit = limit
  }
}

/** Register a function the worker evaluates as `globalThis[Symbol.for(key)]` (fixed, hidden). */
export function defineEvaluated(key: string, fn: unknown): void {
  Object.defineProperty(globalThis, Symbol.for(key), {
    value: fn,
    configurable: true,
    enumerable: false,
    writable: false,
  })
}

/** Runs on the main thread, inside the blocked code. Must never throw. */
function probe(hang: boolean): string | undefined {
  // A debugger server is open: this stall may be a breakpoint pause, not a block. No capture (the
  // stall will not be published) and no stack; the worker reads the answer in shared memory.
  if (debuggerServerOpen()) return undefined
  const stallId = beat?.[BEAT] ?? 0
  if (stallId !== stall.id) {
    stall.id = stallId
    stall.probes = 0
    stall.lastKey = undefined
  }
  stall.probes++
  // On a keep-alive connection the next request's first callbacks still carry the previous,
  // ended request's context (until the middleware replaces it): that request is not running.
  const store = contextStorage.getStore()
  const context = store?.ended === true ? undefined : store
  const asyncId = executionAsyncId()
  const key = context ?? asyncId
  const wantStack = hang || key !== stall.lastKey || (stall.probes & (stall.probes - 1)) === 0
  stall.lastKey = key
  const time = performance.now()
  const capture: Capture = {
    time,
    stallId,
    context,
    asyncId,
    stack:
      wantStack && mayTakeStack(stallId, performance.timeOrigin + time - stallId)
        ? captureStack(probe)
        : undefined,
  }
  recentTimes[recentNext] = time
  recentNext = (recentNext + 1) % recentTimes.length
  // Kept only for a heartbeat to read (none: the last instance closed while this probe was sent).
  if (readers.size > 0) {
    if (captures.length >= CAPACITY) captures.shift()
    captures.push(capture)
  }
  return hang ? describeForHang(capture) : undefined
}

/** The text the worker prints on stderr for a stall still going on. */
function describeForHang(capture: Capture): string {
  const context = capture.context
  let where = 'outside any request'
  if (context !== undefined) {
    const route = context.currentRoute()
    // Names from the app go to stderr: escaped and bounded (src/util/text.ts).
    if (context.task !== '') where = `in task ${terminalText(context.task)}`
    else
      where = `in ${terminalText(context.method)} ${route === undefined ? '(not routed yet)' : terminalText(route) || '(no route)'}`
  }
  const frames = capture.stack === undefined ? [] : dropProbeFrames(parseStack(capture.stack))
  const stack =
    frames.length === 0
      ? '    (no stack: rate-limited)'
      : frames
          .slice(0, 12)
          .map((frame) => formatFrame(terminalFrame(frame)))
          .join('\n')
  return `${where}\n${stack}`
}

let installed = false

/** Register the probe on globalThis (once per process); called by each new watchdog. */
export function installProbe(sharedBeat: Float64Array): void {
  beat = sharedBeat
  // A new watchdog (the previous one stopped with the last instance): a fresh budget, so what
  // closed instances spent does not carry over to the next ones.
  for (const budget of [blockBudget, earlyBudget]) {
    budget.tokens = budget.perMinute
    budget.refilledAt = performance.now()
  }
  chargedStall = Number.NaN
  earlyStall = Number.NaN
  if (installed) return
  installed = true
  defineEvaluated(PROBE_KEY, probe)
}
