/**
 * The zero-code session behind `node --import looplens/register app.js`: a looplens instance
 * configured from environment variables, every HTTP server instrumented, metrics on a port of
 * their own, a timeline of the loop, every block kept, and the report written when the process
 * exits or is told to stop.
 *
 * Rules it keeps:
 *  - a bad variable is reported on stderr (name and value) and the app runs without looplens:
 *    a profiling aid must never be the reason an app does not start (under `looplens run`, the
 *    refusal also goes into the port file, so the command stops at once with the reason);
 *  - everything it starts is unref'd: it never keeps the app alive;
 *  - signals keep their meaning: looplens adds NO signal listener. A listener would replace
 *    Node's default action (death, even while the loop is stuck: a JavaScript listener cannot
 *    run then), would cut an app's own `once` handler short or be cut short by it, and makes
 *    libraries such as `signal-exit` (which re-raise the signal only when they hold every
 *    listener) back off. So the process ends exactly as it would without looplens;
 *  - the report survives that: with `LOOPLENS_REPORT_FILE`, the session is journaled as it goes
 *    (`<file>.journal`: one line per block, per timeline point, a checkpoint every few seconds;
 *    small synchronous appends, never the whole session re-serialized), the watchdog worker adds
 *    any hang with its stack from its own thread, and a normal exit writes the final file (and
 *    removes the journal). After a signal or SIGKILL, `looplens run`/`looplens report` rebuild
 *    the session from the journal (src/instrument/session.ts).
 */
import diagnosticsChannel from 'node:diagnostics_channel'
import { constants as fsConstants, openSync, rmSync, writeFileSync, writeSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import { createRequire } from 'node:module'
import type { AddressInfo } from 'node:net'
import path from 'node:path'
import { performance } from 'node:perf_hooks'
import { createLooplens, type Looplens } from '../looplens.js'
import { IntervalDelayWindow } from '../monitor/interval-delay.js'
import { UtilizationWindow } from '../monitor/utilization.js'
import { resolveOptions } from '../options.js'
import type { BlockEvent, LooplensOptions } from '../types.js'
import { Warnings } from '../util/warnings.js'
import { setHangJournal } from '../watchdog/watchdog.js'
import { instrumentHttp } from './http.js'
import {
  type JournalLine,
  journalPathOf,
  MAX_SESSION_EVENTS,
  type SessionFile,
  type SessionMeta,
  type TimelinePoint,
} from './session.js'

/** Environment variables of the preload; the README's table documents each. */
export const ENV = {
  blockThresholdMs: 'LOOPLENS_BLOCK_THRESHOLD_MS',
  captureStacks: 'LOOPLENS_CAPTURE_STACKS',
  hangReportMs: 'LOOPLENS_HANG_REPORT_MS',
  metricsPort: 'LOOPLENS_METRICS_PORT',
  metricsHost: 'LOOPLENS_METRICS_HOST',
  reportFile: 'LOOPLENS_REPORT_FILE',
  reportStderr: 'LOOPLENS_REPORT_STDERR',
  timelineIntervalMs: 'LOOPLENS_TIMELINE_INTERVAL_MS',
  portFile: 'LOOPLENS_PORT_FILE',
  start: 'LOOPLENS_START',
  ownerPid: 'LOOPLENS_OWNER_PID',
} as const

/** The port OpenTelemetry's Prometheus exporter uses by default: scrapers often expect it. */
export const DEFAULT_METRICS_PORT = 9464
export const DEFAULT_TIMELINE_INTERVAL_MS = 1_000

export interface PreloadSettings {
  options: LooplensOptions
  /** Undefined: no metrics server. */
  metricsPort: number | undefined
  metricsHost: string
  reportFile: string | undefined
  reportStderr: boolean
  timelineIntervalMs: number
  portFile: string | undefined
  /** `listen`: start watching when the first server listens; `now`: from the preload on. */
  start: 'listen' | 'now'
}

/** A variable with a value the preload cannot use; the message names both. */
export class PreloadEnvError extends Error {
  constructor(variable: string, value: string, expected: string) {
    super(`${variable} must be ${expected} (received ${JSON.stringify(value)})`)
    this.name = 'PreloadEnvError'
  }
}

type Env = Record<string, string | undefined>

function integerVar(env: Env, variable: string, min: number, max: number): number | undefined {
  const raw = env[variable]
  if (raw === undefined || raw.trim() === '') return undefined
  const value = raw.trim()
  if (!/^\d+$/.test(value) || Number(value) < min || Number(value) > max) {
    throw new PreloadEnvError(variable, raw, `an integer between ${min} and ${max}`)
  }
  return Number(value)
}

function booleanVar(env: Env, variable: string): boolean | undefined {
  const raw = env[variable]
  if (raw === undefined || raw.trim() === '') return undefined
  const value = raw.trim().toLowerCase()
  if (['1', 'true', 'on', 'yes'].includes(value)) return true
  if (['0', 'false', 'off', 'no'].includes(value)) return false
  throw new PreloadEnvError(variable, raw, 'true or false (also 1/0, on/off)')
}

/** Read and check the preload's variables. Throws {@link PreloadEnvError}. */
export function readPreloadSettings(env: Env): PreloadSettings {
  const options: LooplensOptions = {}
  const blockThresholdMs = integerVar(env, ENV.blockThresholdMs, 10, 60_000)
  if (blockThresholdMs !== undefined) options.blockThresholdMs = blockThresholdMs
  const captureStacks = booleanVar(env, ENV.captureStacks)
  if (captureStacks !== undefined) options.captureStacks = captureStacks
  const hangReportMs = integerVar(env, ENV.hangReportMs, 0, 3_600_000)
  if (hangReportMs !== undefined) options.hangReportMs = hangReportMs

  let metricsPort: number | undefined = DEFAULT_METRICS_PORT
  const rawPort = env[ENV.metricsPort]?.trim()
  if (rawPort !== undefined && rawPort !== '') {
    if (['0', 'off', 'false', 'no'].includes(rawPort.toLowerCase())) metricsPort = undefined
    else metricsPort = integerVar(env, ENV.metricsPort, 1, 65_535)
  }
  const metricsHost = env[ENV.metricsHost]?.trim() || '127.0.0.1'
  const reportFile = env[ENV.reportFile]?.trim() || undefined
  const reportStderr = booleanVar(env, ENV.reportStderr) ?? true
  const timelineIntervalMs =
    integerVar(env, ENV.timelineIntervalMs, 100, 60_000) ?? DEFAULT_TIMELINE_INTERVAL_MS
  const portFile = env[ENV.portFile]?.trim() || undefined
  const rawStart = env[ENV.start]?.trim() || 'listen'
  if (rawStart !== 'listen' && rawStart !== 'now') {
    throw new PreloadEnvError(ENV.start, env[ENV.start] ?? '', '"listen" or "now"')
  }
  return {
    options,
    metricsPort,
    metricsHost,
    reportFile,
    reportStderr,
    timelineIntervalMs,
    portFile,
    start: rawStart,
  }
}

/** Which variable holds an option, to name it when the option is refused. */
const OPTION_VARIABLES: Record<string, string> = {
  blockThresholdMs: ENV.blockThresholdMs,
  captureStacks: ENV.captureStacks,
  hangReportMs: ENV.hangReportMs,
}

/**
 * An option error in the words of the variables: each variable behind an option the message
 * names, with its value — only the variables that are set (an option left to its default is no
 * variable's fault), e.g. `LOOPLENS_HANG_REPORT_MS="1000", LOOPLENS_BLOCK_THRESHOLD_MS="3000":
 * options.hangReportMs must be 0 (off) or ≥ options.blockThresholdMs (3000) (received 1000)`.
 */
export function explainOptionError(message: string, env: Env): string {
  const named: string[] = []
  for (const match of message.matchAll(/options\.(\w+)/g)) {
    const variable = OPTION_VARIABLES[match[1]!]
    const value = variable === undefined ? undefined : env[variable]
    if (value === undefined || value.trim() === '') continue
    const part = `${variable}=${JSON.stringify(value)}`
    if (!named.includes(part)) named.push(part)
  }
  return named.length === 0 ? message : `${named.join(', ')}: ${message}`
}

function looplensVersion(): string {
  try {
    const require = createRequire(import.meta.url)
    return (require('../../package.json') as { version: string }).version
  } catch {
    return 'unknown'
  }
}

function relativeScript(cwd: string): string {
  const script = process.argv[1]
  if (script === undefined) return ''
  const relative = path.relative(cwd, script)
  return relative.startsWith('..') || path.isAbsolute(relative) ? script : relative
}

/** What {@link startPreload} started, for tests; `undefined` when it did not start. */
export interface PreloadSession {
  lens: Looplens
  settings: PreloadSettings
  /** Write the report now (idempotent), as the exit path does. */
  finish(reason: SessionMeta['reason'], exitCode: number | undefined): void
}

/**
 * Start the zero-code session for this process. Never throws: a problem is explained on stderr
 * and the app runs on without looplens.
 */
export function startPreload(env: Env = process.env): PreloadSession | undefined {
  const say = (message: string) => {
    try {
      process.stderr.write(`looplens: ${message}\n`)
    } catch {
      // stderr closed: nothing more to do.
    }
  }
  let settings: PreloadSettings
  try {
    settings = readPreloadSettings(env)
    // The options too, now rather than at the first listen: a refusal is said before the app
    // starts, and `looplens run` learns it at once (not after its --timeout).
    resolveOptions(settings.options)
  } catch (error) {
    refuse(explainOptionError((error as Error).message, env), env, say)
    return undefined
  }
  if (settings.start === 'now') return begin(settings, env, say, undefined)
  // Start at the first listen: module loading and startup work are not the app's steady state
  // (they would show as one long block outside any request), and requests come only after it.
  const onFirstListen = (message: unknown): void => {
    const server = (message as { server?: Server }).server
    const address = server?.address()
    if (server === undefined || address === null || typeof address === 'string') return
    diagnosticsChannel.unsubscribe(LISTEN_CHANNEL, onFirstListen)
    begin(settings, env, say, server)
  }
  diagnosticsChannel.subscribe(LISTEN_CHANNEL, onFirstListen)
  return undefined
}

/** Fires once a server is bound (`server.address()` works): every `listen()` of the process. */
const LISTEN_CHANNEL = 'tracing:net.server.listen:asyncEnd'

/** This process is a child of the app's first process (fork, cluster) that runs the preload too. */
function isChildProcess(env: Env): boolean {
  const owner = env[ENV.ownerPid]
  return owner !== undefined && owner !== '' && owner !== String(process.pid)
}

/**
 * The preload will not run: say why on stderr, and in the port file when `looplens run` waits
 * for one (`{ "refused": why }`), so the command ends with the reason instead of waiting for a
 * port that the app, running without looplens, will never write.
 */
function refuse(why: string, env: Env, say: (message: string) => void): void {
  say(`${why}; the app runs without looplens`)
  const portFile = env[ENV.portFile]?.trim()
  if (portFile === undefined || portFile === '' || isChildProcess(env)) return
  try {
    writeFileSync(portFile, JSON.stringify({ pid: process.pid, refused: why }), { flag: 'wx' })
  } catch {
    // Written already, or the folder is gone: the message on stderr stands.
  }
}

function begin(
  settings: PreloadSettings,
  env: Env,
  say: (message: string) => void,
  firstServer: Server | undefined,
): PreloadSession | undefined {
  let lens: Looplens
  try {
    lens = createLooplens(settings.options)
  } catch (error) {
    refuse(explainOptionError((error as Error).message, env), env, say)
    return undefined
  }
  try {
    return runSession(lens, settings, env, say, firstServer)
  } catch (error) {
    refuse(`could not start (${(error as Error).message})`, env, say)
    void lens.close()
    return undefined
  }
}

function runSession(
  lens: Looplens,
  settings: PreloadSettings,
  env: Env,
  say: (message: string) => void,
  firstServer: Server | undefined,
): PreloadSession {
  const startedAt = new Date()
  const cwd = process.cwd()
  // A child process started with the same flags (fork, cluster) runs the preload too: it keeps
  // its own report (file name suffixed with its pid) but leaves the port file and the metrics
  // port to the first process.
  const isChild = isChildProcess(env)
  if (!isChild) process.env[ENV.ownerPid] = String(process.pid)
  const reportFile =
    settings.reportFile === undefined || !isChild
      ? settings.reportFile
      : settings.reportFile.replace(/(\.json)?$/, `-${process.pid}$1`)

  const warnings = new Warnings((warning) =>
    process.emitWarning(warning.message, { type: 'LooplensWarning', code: warning.name }),
  )
  const http = instrumentHttp(lens.recorder, {
    excludePaths: lens.options.excludePaths,
    warn: (code, message, cause) => warnings.once(code, message, cause),
  })

  // Metrics on a port of their own: the app's routes stay untouched.
  let metricsServer: Server | undefined
  if (settings.metricsPort !== undefined && !isChild) {
    const handler = lens.metricsHandler()
    const server = createServer((req, res) => {
      void handler(req, res)
    })
    http.ignore(server)
    server.on('error', (error: NodeJS.ErrnoException) => {
      say(
        `metrics not served on ${settings.metricsHost}:${settings.metricsPort} (${error.code ?? error.message}); set ${ENV.metricsPort} to another port, or to off`,
      )
    })
    server.listen(settings.metricsPort, settings.metricsHost)
    server.unref()
    metricsServer = server
  }

  // The first server the app opens: `looplens run` waits for its port in this file.
  function writePortFile(server: Server): boolean {
    const address = server.address()
    if (address === null || typeof address === 'string') return false
    try {
      const { port, address: host, family } = address as AddressInfo
      writeFileSync(settings.portFile!, JSON.stringify({ pid: process.pid, port, host, family }), {
        flag: 'wx',
      })
    } catch {
      // Another process of the app wrote it first (EEXIST), or the folder is gone: not ours.
    }
    return true
  }
  function onListen(message: unknown): void {
    const server = (message as { server?: Server }).server
    if (server === undefined || server === metricsServer) return
    if (writePortFile(server)) diagnosticsChannel.unsubscribe(LISTEN_CHANNEL, onListen)
  }
  if (settings.portFile !== undefined && !isChild) {
    if (firstServer !== undefined) writePortFile(firstServer)
    else diagnosticsChannel.subscribe(LISTEN_CHANNEL, onListen)
  }

  // The journal: what survives a signal, a hang or SIGKILL (see the header and session.ts).
  // Opened once for appending; each line is one small synchronous write. Never closed: the
  // watchdog worker may append a hang at any moment, and a closed descriptor's number could be
  // reused by the app for another file. The process's end closes it.
  const journalFile = reportFile === undefined ? undefined : journalPathOf(reportFile)
  let journalFd: number | undefined
  function journal(line: JournalLine): void {
    if (journalFd === undefined) return
    try {
      writeSync(journalFd, `${JSON.stringify(line)}\n`)
    } catch (error) {
      journalFd = undefined
      setHangJournal(undefined)
      warnings.once('LOOPLENS_JOURNAL_FAILED', `the report journal ${journalFile} failed`, error)
    }
  }
  const baseMeta = {
    looplensVersion: looplensVersion(),
    nodeVersion: process.version,
    pid: process.pid,
    script: relativeScript(cwd),
    cwd,
    startedAt: startedAt.toISOString(),
    blockThresholdMs: lens.options.blockThresholdMs,
    timelineIntervalMs: settings.timelineIntervalMs,
  }
  if (journalFile !== undefined) {
    try {
      // O_APPEND: every write lands at the end, whichever thread makes it.
      const { O_WRONLY, O_CREAT, O_TRUNC, O_APPEND } = fsConstants
      journalFd = openSync(journalFile, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND)
      journal({ type: 'start', meta: baseMeta })
      if (lens.options.hangReportMs > 0) setHangJournal(journalFd)
    } catch (error) {
      say(
        `the report journal ${journalFile} cannot be written (${(error as Error).message}); the report is written at a normal exit only`,
      )
      journalFd = undefined
    }
  }

  // Every block, for the JSON file, the journal and the timeline.
  const events: BlockEvent[] = []
  let eventsDropped = 0
  let blocksInWindow = 0
  lens.on('block', (event) => {
    blocksInWindow++
    if (events.length < MAX_SESSION_EVENTS) {
      events.push(event)
      journal({ type: 'block', event })
    } else {
      eventsDropped++
      // Past the cap, the journal keeps what the report aggregates (no stack frames).
      journal({ type: 'block', event: { ...event, frames: [] }, compact: true })
    }
  })

  // The timeline: delay p99/max and utilization per interval, from the lens's own delay monitor
  // (no second histogram, no second timer at sampling frequency).
  const timeline: TimelinePoint[] = []
  // A stalled interval reads as stalled: see src/monitor/interval-delay.ts.
  const delayWindow = new IntervalDelayWindow(lens.delayCounts(), settings.timelineIntervalMs)
  const utilizationWindow = new UtilizationWindow()
  function sample(firedAt = performance.now()): void {
    const { p99Ms, maxMs } = delayWindow.next(lens.delayCounts(), firedAt)
    const utilization = utilizationWindow.next()
    const point: TimelinePoint = {
      t: Date.now(),
      delayP99Ms: round(p99Ms),
      delayMaxMs: round(maxMs),
      utilization: round(utilization, 4),
      blocks: blocksInWindow,
    }
    timeline.push(point)
    journal({ type: 'point', point })
    blocksInWindow = 0
    // Bounded: a day at one point a second is 86,400 points; drop every other old point past it.
    if (timeline.length > 86_400) timeline.splice(0, timeline.length, ...thin(timeline))
  }
  // Utilization since the session began, read without moving any window (the report's own
  // `loop.utilization` is "since the previous report", and checkpoints take reports).
  const sessionElu = performance.eventLoopUtilization()
  const sessionUtilization = () => performance.eventLoopUtilization(sessionElu).utilization

  // The route rows and the loop's figures, for a journal-rebuilt report (they are the only part
  // of it not made of journaled blocks): at a timeline point when they changed, at most
  // CHECKPOINT_BYTES_PER_S of journal a second — an app with many routes checkpoints less often.
  let nextCheckpointAt = 0
  let lastRoutes = ''
  function checkpoint(): void {
    const now = Date.now()
    if (journalFd === undefined || now < nextCheckpointAt) return
    const report = lens.report()
    const routes = JSON.stringify(report.routes)
    nextCheckpointAt = now + (routes.length / CHECKPOINT_BYTES_PER_S) * 1000
    if (routes === lastRoutes) return
    lastRoutes = routes
    const loop = { ...report.loop, utilization: sessionUtilization() }
    journal({ type: 'checkpoint', at: now, routes: report.routes, loop })
  }
  const timer = setInterval(() => {
    // Read after this loop turn's timers: after a stall, the delay monitor's own overdue timer
    // records the stall in this same timers phase, and it may run after this one.
    const firedAt = performance.now()
    setImmediate(() => {
      if (finished) return
      try {
        sample(firedAt)
        checkpoint()
      } catch (error) {
        warnings.once('LOOPLENS_TIMELINE_FAILED', 'the timeline could not be sampled', error)
      }
    }).unref()
  }, settings.timelineIntervalMs)
  timer.unref()

  let finished = false
  function finish(reason: SessionMeta['reason'], exitCode: number | undefined): void {
    if (finished) return
    finished = true
    clearInterval(timer)
    try {
      lens.flushStall()
      sample()
      const report = lens.report()
      report.loop.utilization = sessionUtilization()
      if (settings.reportStderr) process.stderr.write(`\n${lens.formatReport(report)}`)
      if (reportFile !== undefined) {
        const meta: SessionMeta = {
          ...baseMeta,
          endedAt: new Date().toISOString(),
          reason,
          exitCode,
          eventsDropped,
        }
        const session: SessionFile = {
          format: 'looplens-session',
          version: 1,
          meta,
          report,
          timeline,
          events,
        }
        writeFileSync(reportFile, JSON.stringify(session))
        // The final file says all the journal did and more.
        if (journalFile !== undefined) rmSync(journalFile, { force: true })
      }
    } catch (error) {
      say(`the report could not be written (${(error as Error).message})`)
    }
    // The lens is not closed: the process is ending, and the watchdog disconnects its inspector
    // session synchronously in its own 'exit' listener (an async close here would race it).
    http.close()
    metricsServer?.close()
  }

  // A normal exit (the app's own signal handlers end in one too). No signal listener: see the
  // header — a signal that kills the process leaves the journal.
  process.once('exit', (code) => finish('exit', code))

  return { lens, settings, finish }
}

/** The journal's budget for checkpoints (route rows), bytes a second. */
const CHECKPOINT_BYTES_PER_S = 2_048

function round(value: number, digits = 2): number {
  const scale = 10 ** digits
  return Math.round(value * scale) / scale
}

/** Every other point, for a timeline that has grown past its bound. */
function thin(points: TimelinePoint[]): TimelinePoint[] {
  return points.filter((_, index) => index % 2 === 0 || index >= points.length - 3_600)
}
