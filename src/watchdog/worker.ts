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
 */
import { writeSync } from 'node:fs'
import { performance } from 'node:perf_hooks'
import { parentPort, workerData } from 'node:worker_threads'
import {
  BEAT,
  CONTROL,
  HANG_REPORTED,
  STOPPED,
  viewsOf,
  type WatchdogSettings,
  type WorkerMessage,
} from './shared.js'

// Constant texts: V8 caches their compilation. The probe reads the stall id from shared memory.
const PROBE = "globalThis[Symbol.for('looplens.probe.v1')](false)"
const HANG_PROBE = "globalThis[Symbol.for('looplens.probe.v1')](true)"

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
  let stallId = Number.NaN
  let probesSent = 0
  let nextProbeAge = 0
  let inFlightSince = 0
  let hangReported = false
  let probeFailureReported = false

  function sendProbe(hang: boolean, onText?: (text: string | undefined) => void): void {
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
        const value = response?.result?.value
        onText?.(typeof value === 'string' ? value : undefined)
      },
    )
  }

  function reportHang(id: number): void {
    hangReported = true
    floats[HANG_REPORTED] = id
    sendProbe(true, (text) => {
      const blockedFor = Math.round(epochNow() - id)
      const where = text ?? "outside the probe's reach"
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
    if (inFlightSince !== 0) {
      // The main thread is in native code (pbkdf2Sync, a sync fs call…): the probe runs when it
      // returns to JavaScript. Say so once if that outlasts the hang limit.
      if (hangReportMs > 0 && !hangReported && age >= hangReportMs) {
        hangReported = true
        floats[HANG_REPORTED] = stallId
        writeStderr(
          `looplens: the event loop has been blocked for ${Math.round(age)} ms and counting, in native code (a stack follows when it returns to JavaScript)\n`,
        )
      }
      return
    }
    if (hangReportMs > 0 && !hangReported && age >= hangReportMs) {
      reportHang(stallId)
      return
    }
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
