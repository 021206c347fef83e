/**
 * The watchdog worker (its own entry file, so it resolves after bundling: `looplens/watchdog`).
 *
 * It watches the main thread's heartbeat in shared memory. When the heartbeat is stale, the
 * main thread is stalled right now: the worker asks the inspector to evaluate looplens's probe on
 * the main thread, which runs inside the blocked code (inspector messages are V8 interrupts).
 * Only `Runtime.evaluate` is used: the Debugger domain is never enabled (it slows async code
 * several-fold and costs tens of ms to enable).
 *
 * A stall that lasts past `hangReportMs` is reported from here, on stderr, while it lasts: the
 * main thread cannot speak. We write with fs.writeSync(2): a worker's process.stderr is relayed
 * through the main thread, which is exactly the thread that is stuck.
 *
 * While a debugger server is open (`--inspect` after start, SIGUSR1, `inspector.open()`), a stall
 * may be a breakpoint pause: the worker stops probing and prints no hang report (see
 * src/watchdog/debugger.ts). Only the main thread can tell (a worker's `inspector.url()` is its
 * own); the probe, which runs on it, writes the answer in shared memory as the stall goes on.
 *
 * Under the zero-code preload the hang also goes into the session's journal (the fd in
 * `hangJournalFd`): its context, the stack taken inside the hanging code, and once a second how
 * long it has lasted. looplens adds no signal listener (a signal keeps its default action, which
 * a stuck thread could not run anyway), so a hung app dies of SIGTERM/SIGINT or SIGKILL without
 * its main thread writing anything: what this thread wrote is the report's account of the hang.
 */
import { writeSync } from 'node:fs'
import { performance } from 'node:perf_hooks'
import { parentPort, workerData } from 'node:worker_threads'
import { culpritOf, dropProbeFrames, parseStack } from '../stack/frames.js'
import type { BlockContext } from '../types.js'
import {
  BEAT,
  CONTROL,
  DEBUGGER_OPEN,
  HANG_REPORTED,
  STOPPED,
  viewsOf,
  type WatchdogSettings,
  type WorkerMessage,
} from './shared.js'

// Constant texts: V8 caches their compilation. The probe reads the stall id from shared memory.
const PROBE = "globalThis[Symbol.for('looplens.probe.v1')](false)"
/**
 * The probe (its capture serves the detector if the stall ever ends; its text goes to stderr),
 * then src/watchdog/hang.ts's function, which returns the context labels and a raw stack for the
 * journal. One message, both inside the stuck code.
 */
const HANG_PROBE =
  "globalThis[Symbol.for('looplens.hang.v1')](globalThis[Symbol.for('looplens.probe.v1')](true))"

/** How often the journal learns that a reported hang is still going on. */
const HANG_PROGRESS_MS = 1_000

/**
 * After this many probes in one stall, probe less and less often (down to 4 a second): the
 * probes of a stall must fit the main thread's ring of captures, however long the stall.
 */
const DENSE_PROBES = 64
const SPARSE_INTERVAL_MS = 250

function post(message: WorkerMessage): void {
  parentPort?.postMessage(message)
}

function writeStderr(text: string): void {
  try {
    writeSync(2, text)
  } catch {
    // stderr closed: nothing to do
  }
}

/** What src/watchdog/hang.ts returns (by value). */
interface HangAnswer {
  text?: unknown
  context?: BlockContext
  stack?: unknown
}

interface Session {
  connectToMainThread(): void
  post(
    method: string,
    params: object,
    callback: (error: Error | null, result?: unknown) => void,
  ): void
  disconnect(): void
}

async function start(): Promise<void> {
  const { floats, ints } = viewsOf(workerData.buffer as SharedArrayBuffer)
  let settings = workerData.settings as WatchdogSettings

  let session: Session
  try {
    const inspector = (await import('node:inspector')) as unknown as {
      Session: new () => Session
    }
    session = new inspector.Session()
    session.connectToMainThread()
  } catch (error) {
    post({ type: 'unavailable', reason: (error as Error)?.message ?? String(error) })
    return
  }

  const epochNow = () => performance.timeOrigin + performance.now()
  /** As the main thread last saw it: at the end of a stall, or in a probe during this one. */
  const debuggerOpen = () => Atomics.load(ints, DEBUGGER_OPEN) === 1
  let stallId = Number.NaN
  let probesSent = 0
  let nextProbeAge = 0
  let inFlightSince = 0
  let hangReported = false
  let probeFailureReported = false

  /**
   * One line to the journal: a single write() on a descriptor opened for appending, so it never
   * interleaves with the main thread's lines. A failure (disk full, fd closed) stops journaling.
   */
  function journal(line: object): void {
    const fd = settings.hangJournalFd
    if (fd === undefined) return
    try {
      writeSync(fd, `${JSON.stringify(line)}\n`)
    } catch {
      settings = { ...settings, hangJournalFd: undefined }
    }
  }
  /** The stall whose hang is in the journal, and when its duration was last written. */
  let journaledStall = Number.NaN
  let progressAt = 0

  function journalHang(id: number, answer: HangAnswer | undefined, native: boolean): void {
    const blockedForMs = Math.round(epochNow() - id)
    const stack = typeof answer?.stack === 'string' ? answer.stack : undefined
    const frames = stack === undefined ? [] : dropProbeFrames(parseStack(stack))
    journal({
      type: 'hang',
      stallId: id,
      at: Date.now(),
      blockedForMs,
      context: answer?.context ?? { method: '', route: '', task: '' },
      frames,
      culprit: culpritOf(frames),
      stackMissing: frames.length > 0 ? undefined : native ? 'missed' : 'unavailable',
    })
    journaledStall = id
    progressAt = blockedForMs
  }

  function sendProbe(hang: boolean, onText?: (value: unknown) => void): void {
    inFlightSince = epochNow()
    session.post(
      'Runtime.evaluate',
      { expression: hang ? HANG_PROBE : PROBE, returnByValue: true, silent: true },
      (error, result) => {
        inFlightSince = 0
        const response = result as
          | { result?: { value?: unknown }; exceptionDetails?: { text?: string } }
          | undefined
        const failure = error?.message ?? response?.exceptionDetails?.text
        if (failure !== undefined) {
          if (!probeFailureReported) {
            probeFailureReported = true
            post({ type: 'probe-failed', reason: failure })
          }
          onText?.(undefined)
          return
        }
        onText?.(response?.result?.value)
      },
    )
  }

  function reportHang(id: number): void {
    hangReported = true
    floats[HANG_REPORTED] = id
    sendProbe(true, (value) => {
      // The probe has just looked: a debugger server is open, this may be a breakpoint pause.
      if (debuggerOpen()) return
      const answer = typeof value === 'object' && value !== null ? (value as HangAnswer) : undefined
      const blockedFor = Math.round(epochNow() - id)
      const where = typeof answer?.text === 'string' ? answer.text : "outside the probe's reach"
      // The journal first: whoever reads this line on stderr and kills the app (a person, a
      // supervisor, a test) must find the hang in the report.
      // Still the same stall: a probe that answers after the stall ended has nothing to add.
      if (floats[BEAT] === id) journalHang(id, answer, false)
      writeStderr(
        `looplens: the event loop has been blocked for ${blockedFor} ms and counting, ${where}\n`,
      )
    })
  }

  function check(): void {
    const beat = floats[BEAT]!
    const age = epochNow() - beat
    const { blockThresholdMs, hangReportMs } = settings
    const firstProbeAge = blockThresholdMs / 2
    if (age < firstProbeAge) {
      stallId = Number.NaN
      return
    }
    if (beat !== stallId) {
      stallId = beat
      probesSent = 0
      nextProbeAge = firstProbeAge
      hangReported = false
    }
    if (journaledStall === stallId && age - progressAt >= HANG_PROGRESS_MS) {
      progressAt = age
      journal({ type: 'stall', stallId, at: Date.now(), blockedForMs: Math.round(age) })
    }
    if (inFlightSince !== 0) {
      // The main thread is in native code (pbkdf2Sync, a sync fs call…): the probe runs when it
      // returns to JavaScript. Say so once if that outlasts the hang limit.
      if (hangReportMs > 0 && !hangReported && age >= hangReportMs && !debuggerOpen()) {
        hangReported = true
        floats[HANG_REPORTED] = stallId
        journalHang(stallId, undefined, true)
        writeStderr(
          `looplens: the event loop has been blocked for ${Math.round(age)} ms and counting, in native code (a stack follows when it returns to JavaScript)\n`,
        )
      }
      return
    }
    if (hangReportMs > 0 && !hangReported && age >= hangReportMs) {
      // Sent even while a debugger server seemed open: the probe looks again, so a real hang
      // after the debugger closed is still reported.
      reportHang(stallId)
      return
    }
    // Perhaps a breakpoint pause: no stacks (the stall will not be published as a block).
    if (debuggerOpen()) return
    if (age < nextProbeAge) return
    // Re-check right before probing: an idle loop is never probed.
    if (floats[BEAT] !== stallId) return
    sendProbe(false)
    probesSent++
    const step = blockThresholdMs / 4
    nextProbeAge =
      age +
      (probesSent < DENSE_PROBES
        ? step
        : Math.min(SPARSE_INTERVAL_MS, step * 2 ** (probesSent - DENSE_PROBES + 1)))
  }

  let timer = setInterval(check, settings.pollMs)

  parentPort?.on('message', (message: WatchdogSettings) => {
    settings = message
    clearInterval(timer)
    timer = setInterval(check, settings.pollMs)
  })

  // The main thread asks us to stop (close() or process exit): disconnect the session first, so
  // Node never prints "Waiting for the debugger to disconnect..." at exit.
  const stop = Atomics.waitAsync(ints, CONTROL, 0)
  const onStop = () => {
    clearInterval(timer)
    try {
      session.disconnect()
    } catch {
      // already gone
    }
    Atomics.store(ints, STOPPED, 1)
    Atomics.notify(ints, STOPPED)
    parentPort?.close()
  }
  if (stop.async) stop.value.then(onStop)
  else onStop()

  post({ type: 'ready' })
}

start().catch((error: unknown) => {
  post({ type: 'unavailable', reason: (error as Error)?.message ?? String(error) })
})
