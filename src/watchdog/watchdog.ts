/**
 * Main-thread side of the watchdog: one worker per process, shared by every looplens instance
 * (reference-counted), started only where the inspector can be used safely.
 *
 * Degrade, never break: no inspector in this build, a debugger attached (`inspector.url()`),
 * `--inspect` in the flags, or a worker that fails or dies — detection and metrics go on without
 * stacks, each instance warns once, nothing crashes or hangs.
 */
import { createRequire } from 'node:module'
import { performance } from 'node:perf_hooks'
import { Worker } from 'node:worker_threads'
import { heartbeatIntervalFor } from '../monitor/heartbeat.js'
import { debuggerServerOpen, shareDebuggerState } from './debugger.js'
import { installHangDescriber } from './hang.js'
import { installProbe, setStackBudget } from './probe.js'
import {
  CONTROL,
  createShared,
  HANG_REPORTED,
  type SharedViews,
  STOPPED,
  viewsOf,
  type WatchdogSettings,
  type WorkerMessage,
} from './shared.js'

export type WatchdogState = 'starting' | 'active' | 'unavailable'

export interface WatchdogUser {
  blockThresholdMs: number
  hangReportMs: number
  maxStacksPerMinute: number
  /** Called once per cause when stacks become unavailable. */
  warn: (code: string, message: string) => void
}

/** The memory every heartbeat writes and the worker reads (process-wide). */
export const processShared: SharedViews = viewsOf(createShared())
shareDebuggerState(processShared.ints)

const require = createRequire(import.meta.url)

/** Why the inspector must not be used here, or undefined when it can. */
export function inspectorUnavailableReason(): string | undefined {
  if (!process.features.inspector) return 'this Node.js is built without the inspector'
  const flags = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)]
  if (flags.some((flag) => /^--inspect(-brk|-wait)?(=|$)/.test(flag))) {
    return 'the process runs with --inspect (a debugger may attach; looplens stays out of its way)'
  }
  try {
    const inspector = require('node:inspector') as typeof import('node:inspector')
    if (inspector.url() !== undefined) return 'a debugger is attached (inspector.url() is set)'
  } catch (error) {
    return `the inspector cannot be loaded (${(error as Error).message})`
  }
  return undefined
}

class Watchdog {
  state: WatchdogState = 'starting'
  reason: string | undefined
  readonly users = new Set<WatchdogUser>()
  #worker: Worker | undefined
  #stopping: Promise<void> | undefined

  constructor(first: WatchdogUser) {
    this.users.add(first)
    // The budget first: installing the probe starts it full.
    this.#applyBudget()
    installProbe(processShared.floats)
    installHangDescriber()
    const reason = inspectorUnavailableReason()
    if (reason !== undefined) {
      this.#fail('LOOPLENS_INSPECTOR_UNAVAILABLE', reason)
      return
    }
    try {
      const worker = new Worker(new URL('./worker.js', import.meta.url), {
        workerData: { buffer: processShared.floats.buffer, settings: this.settings() },
        // A small heap: the worker only reads shared memory and relays inspector messages.
        resourceLimits: { maxOldGenerationSizeMb: 16, maxYoungGenerationSizeMb: 4 },
        name: 'looplens-watchdog',
      })
      worker.on('message', (message: WorkerMessage) => this.#onMessage(message))
      worker.on('error', (error) => this.#fail('LOOPLENS_WATCHDOG_FAILED', error.message))
      worker.on('exit', (code) => {
        if (this.#stopping === undefined) {
          this.#fail('LOOPLENS_WATCHDOG_EXITED', `the watchdog worker exited (code ${code})`)
        }
      })
      // After the listeners: adding a 'message' listener refs the worker's port again, and a
      // ref'd port keeps the process alive.
      worker.unref()
      this.#worker = worker
      process.on('exit', this.#stopAtExit)
    } catch (error) {
      this.#fail('LOOPLENS_WATCHDOG_FAILED', (error as Error).message)
    }
  }

  settings(): WatchdogSettings {
    let blockThresholdMs = Number.POSITIVE_INFINITY
    let hangReportMs = Number.POSITIVE_INFINITY
    for (const user of this.users) {
      blockThresholdMs = Math.min(blockThresholdMs, user.blockThresholdMs)
      if (user.hangReportMs > 0) hangReportMs = Math.min(hangReportMs, user.hangReportMs)
    }
    if (!Number.isFinite(blockThresholdMs)) blockThresholdMs = 50
    return {
      blockThresholdMs,
      hangReportMs: Number.isFinite(hangReportMs) ? hangReportMs : 0,
      pollMs: heartbeatIntervalFor(blockThresholdMs),
      hangJournalFd,
    }
  }

  /** Tell the worker what changed (settings are sent whole). */
  resend(): void {
    if (this.state !== 'unavailable') this.#worker?.postMessage(this.settings())
  }

  #applyBudget(): void {
    let perMinute = 0
    for (const user of this.users) perMinute = Math.max(perMinute, user.maxStacksPerMinute)
    setStackBudget(perMinute, this.settings().blockThresholdMs)
  }

  add(user: WatchdogUser): void {
    this.users.add(user)
    this.#applyBudget()
    if (this.state === 'unavailable') user.warn(this.#warnCode, this.#warnMessage())
    else this.#worker?.postMessage(this.settings())
  }

  #warnCode = 'LOOPLENS_INSPECTOR_UNAVAILABLE'

  #warnMessage(): string {
    // With a debugger server open no stall is a block (LOOPLENS_DEBUGGER_ATTACHED): say so here.
    const blocks = debuggerServerOpen()
      ? 'While a debugger server is open, stalls are not reported as blocks.'
      : 'Blocks are still detected, measured and counted.'
    return `stacks are not captured: ${this.reason}. ${blocks}`
  }

  #onMessage(message: WorkerMessage): void {
    if (message.type === 'ready') {
      if (this.state === 'starting') this.state = 'active'
    } else if (message.type === 'unavailable') {
      this.#fail('LOOPLENS_INSPECTOR_UNAVAILABLE', message.reason)
    } else if (message.type === 'probe-failed') {
      this.#fail('LOOPLENS_PROBE_FAILED', `the probe failed: ${message.reason}`)
    }
  }

  #fail(code: string, reason: string): void {
    if (this.state === 'unavailable') return
    this.state = 'unavailable'
    this.reason = reason
    this.#warnCode = code
    for (const user of this.users) user.warn(code, this.#warnMessage())
    this.#shutdown()
  }

  readonly #stopAtExit = (): void => {
    // Synchronous at exit: ask the worker to disconnect its session and wait briefly for it.
    const ints = processShared.ints
    Atomics.store(ints, CONTROL, 1)
    Atomics.notify(ints, CONTROL)
    if (this.state !== 'unavailable') Atomics.wait(ints, STOPPED, 0, 200)
  }

  #shutdown(): Promise<void> {
    this.#stopping ??= (async () => {
      process.off('exit', this.#stopAtExit)
      const worker = this.#worker
      if (worker === undefined) return
      const ints = processShared.ints
      // Ref'd while it stops: `await lens.close()` may be the last thing a program does, and an
      // unref'd worker's exit (or an Atomics.waitAsync) does not keep the loop alive to see it.
      worker.ref()
      Atomics.store(ints, CONTROL, 1)
      Atomics.notify(ints, CONTROL)
      const deadline = Date.now() + 200
      while (Atomics.load(ints, STOPPED) === 0 && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 2))
      }
      await worker.terminate().catch(() => undefined)
    })()
    return this.#stopping
  }

  async remove(user: WatchdogUser): Promise<void> {
    this.users.delete(user)
    if (this.users.size > 0) {
      this.#applyBudget()
      this.#worker?.postMessage(this.settings())
      return
    }
    if (current === this) current = undefined
    await this.#shutdown()
    // The next watchdog starts from a clean shared state.
    Atomics.store(processShared.ints, CONTROL, 0)
    Atomics.store(processShared.ints, STOPPED, 0)
  }
}

let current: Watchdog | undefined

/** The zero-code session's journal (process-wide, like the worker), if any. */
let hangJournalFd: number | undefined

/**
 * Have the watchdog worker append each hang to this descriptor (open for appending) as it
 * happens — see src/instrument/session.ts for the journal's lines. `undefined` stops it. The
 * caller keeps the descriptor open for the life of the process: the worker may write to it at
 * any time, and a closed number could be reused by another file.
 */
export function setHangJournal(fd: number | undefined): void {
  hangJournalFd = fd
  current?.resend()
}

/**
 * Whether the worker reported a hang during this stall. It marks a hang with the beat written
 * before the stall, and any heartbeat of the process may have written that beat, so the match is
 * on time: the mark lies between one beat interval or two before the stall's start and its end.
 */
export function hangReportedDuring(
  stall: { startPerf: number; endPerf: number },
  beatIntervalMs: number,
): boolean {
  const mark = processShared.floats[HANG_REPORTED]!
  const start = performance.timeOrigin + stall.startPerf
  return mark >= start - 2 * beatIntervalMs && mark <= performance.timeOrigin + stall.endPerf
}

export interface WatchdogHandle {
  /** Whether stacks are being captured now. */
  state(): WatchdogState
  reason(): string | undefined
  release(): Promise<void>
}

/** Join (or start) the process's watchdog. */
export function acquireWatchdog(user: WatchdogUser): WatchdogHandle {
  let watchdog = current
  if (watchdog === undefined || watchdog.users.size === 0) {
    watchdog = new Watchdog(user)
    current = watchdog
  } else {
    watchdog.add(user)
  }
  const owner = watchdog
  let released: Promise<void> | undefined
  return {
    state: () => owner.state,
    reason: () => owner.reason,
    release: () => {
      released ??= owner.remove(user)
      return released
    },
  }
}
