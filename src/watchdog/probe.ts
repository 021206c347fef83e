/**
 * The probe: a function looplens registers on the main thread, which the watchdog worker asks
 * the inspector to evaluate while the loop is stalled. Inspector messages are handled as V8
 * interrupts, so the probe runs *inside* the blocked code: the AsyncLocalStorage store it reads
 * is the blocked request's, and the stack it takes goes through the blocking function.
 *
 * It records into a process-wide ring buffer; the detector reads it when the stall is over. No
 * data crosses the thread boundary except the short text of a hang report.
 */
import { executionAsyncId } from 'node:async_hooks'
import { performance } from 'node:perf_hooks'
import { contextStorage, type LensContext } from '../context/context.js'
import { dropProbeFrames, formatFrame, parseStack } from '../stack/frames.js'
import { terminalFrame, terminalText } from '../util/text.js'
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

const CAPACITY = 512
const ring: Capture[] = []
let next = 0

/** Stacks per minute: a token bucket spent once per stall (later probes of a stall are free). */
const budget = { perMinute: 60, tokens: 60, refilledAt: performance.now(), stallId: Number.NaN }

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

export function setStackBudget(perMinute: number): void {
  budget.perMinute = perMinute
  budget.tokens = Math.min(budget.tokens, perMinute)
}

function takeStackToken(stallId: number): boolean {
  if (stallId === budget.stallId) return true
  const now = performance.now()
  budget.tokens = Math.min(
    budget.perMinute,
    budget.tokens + ((now - budget.refilledAt) * budget.perMinute) / 60_000,
  )
  budget.refilledAt = now
  if (budget.tokens < 1) return false
  budget.tokens -= 1
  budget.stallId = stallId
  return true
}

function captureStack(): string | undefined {
  const limit = Error.stackTraceLimit
  Error.stackTraceLimit = 50
  const holder: { stack?: unknown } = {}
  try {
    // Hide the probe's own frame; the inspector's `<anonymous>:1` wrapper is dropped at parse.
    Error.captureStackTrace(holder, probe)
    return typeof holder.stack === 'string' ? holder.stack : undefined
  } catch {
    return undefined
  } finally {
    Error.stackTraceLimit = limit
  }
}

/** Runs on the main thread, inside the blocked code. Must never throw. */
function probe(hang: boolean): string | undefined {
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
  const capture: Capture = {
    time: performance.now(),
    stallId,
    context,
    asyncId,
    stack: wantStack && takeStackToken(stallId) ? captureStack() : undefined,
  }
  ring[next] = capture
  next = (next + 1) % CAPACITY
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

/** Captures taken between two main-thread times (inclusive), oldest first. */
export function capturesBetween(startPerf: number, endPerf: number): Capture[] {
  const found: Capture[] = []
  for (const capture of ring) {
    if (capture !== undefined && capture.time >= startPerf && capture.time <= endPerf) {
      found.push(capture)
    }
  }
  return found.sort((a, b) => a.time - b.time)
}

let installed = false

/** Register the probe on globalThis (once per process). */
export function installProbe(sharedBeat: Float64Array): void {
  beat = sharedBeat
  if (installed) return
  installed = true
  Object.defineProperty(globalThis, Symbol.for(PROBE_KEY), {
    value: probe,
    configurable: true,
    enumerable: false,
    writable: false,
  })
}
