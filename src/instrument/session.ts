/**
 * The JSON file a zero-code session writes (`LOOPLENS_REPORT_FILE`), read back by
 * `looplens report` and rendered by the HTML report. Versioned: a reader refuses what it does not
 * know rather than rendering nonsense.
 *
 * Next to it, while the app runs, the session's journal (`<file>.journal`): one JSON line per
 * fact, appended as it happens (see {@link JournalLine}). The final file can only be written by
 * a process that exits normally; an app that dies of a signal (no listener of looplens changes
 * that, by design) or is killed while hung leaves the journal, and {@link sessionFromJournal}
 * rebuilds the same session from it.
 */
import { existsSync, readFileSync } from 'node:fs'
import { ReportAggregator } from '../report/aggregator.js'
import type {
  BlockContext,
  BlockEvent,
  LooplensReport,
  LoopSnapshot,
  RouteSyncRow,
  StackFrame,
  StackMissingReason,
} from '../types.js'

/** One sample of the loop over one timeline interval. */
export interface TimelinePoint {
  /** End of the interval, epoch ms. */
  t: number
  /** Event-loop delay p99 over the interval, ms (interpolated within its histogram bucket). */
  delayP99Ms: number
  /** Largest event-loop delay over the interval, ms (upper bound of its bucket). */
  delayMaxMs: number
  /** Event-loop utilization over the interval, 0…1. */
  utilization: number
  /** Blocks published during the interval. */
  blocks: number
}

export interface SessionMeta {
  looplensVersion: string
  nodeVersion: string
  pid: number
  /** The script the process ran (`process.argv[1]`), relative to `cwd` when inside it. */
  script: string
  cwd: string
  startedAt: string
  endedAt: string
  /**
   * What ended the session: the process exiting (the final file was written at its exit), a
   * signal that ended it (known to `looplens run`, which sent it), or `unknown` (rebuilt from the
   * journal by `looplens report`: the process died without saying how).
   */
  reason: 'exit' | 'unknown' | NodeJS.Signals
  exitCode: number | undefined
  blockThresholdMs: number
  timelineIntervalMs: number
  /** Events past the cap of the file were counted but not kept. */
  eventsDropped: number
  /** Set when the session was rebuilt from its journal (the process did not exit normally). */
  fromJournal?: boolean
  /**
   * The loop was stuck when the process ended: the hang the watchdog reported (its event is in
   * `events` and in the report, `hang: true`, lasting at least `durationMs`).
   */
  hangAtEnd?: BlockEvent
}

/** What `LOOPLENS_REPORT_FILE` holds. */
export interface SessionFile {
  format: 'looplens-session'
  version: 1
  meta: SessionMeta
  report: LooplensReport
  timeline: TimelinePoint[]
  events: BlockEvent[]
}

/** The most events a session file keeps (the report aggregates all of them regardless). */
export const MAX_SESSION_EVENTS = 5_000

/**
 * Check that parsed JSON is a session file this version can render; throws a `TypeError` that
 * says what is wrong with it.
 */
export function parseSession(value: unknown, source: string): SessionFile {
  const fail = (why: string): never => {
    throw new TypeError(`${source} is not a looplens session file: ${why}`)
  }
  if (typeof value !== 'object' || value === null) return fail('not a JSON object')
  const file = value as Partial<SessionFile>
  if (file.format !== 'looplens-session') return fail('"format" is not "looplens-session"')
  if (file.version !== 1) {
    return fail(`version ${JSON.stringify(file.version)} is not supported (this looplens reads 1)`)
  }
  if (typeof file.meta !== 'object' || file.meta === null) return fail('"meta" is missing')
  if (typeof file.report !== 'object' || file.report === null) return fail('"report" is missing')
  if (!Array.isArray(file.report.blockers)) return fail('"report.blockers" is not an array')
  if (!Array.isArray(file.timeline)) return fail('"timeline" is not an array')
  if (!Array.isArray(file.events)) return fail('"events" is not an array')
  return file as SessionFile
}

/** The journal of a report file: appended while the app runs, removed once the file is written. */
export function journalPathOf(reportFile: string): string {
  return `${reportFile}.journal`
}

/** The hang the watchdog worker saw, as it appends it to the journal (from its own thread). */
export interface HangRecord {
  /** The stall's id: the last heartbeat before it, epoch ms (≈ its start). */
  stallId: number
  /** Epoch ms of the report. */
  at: number
  blockedForMs: number
  context: BlockContext
  frames: StackFrame[]
  culprit: StackFrame | undefined
  stackMissing: StackMissingReason | undefined
}

/**
 * One line of the journal. The main thread appends `start` once, then `block` for every block as
 * it is published, `point` for every timeline point and `checkpoint` (route rows and the loop)
 * every few seconds; the watchdog worker appends `hang` when a stall outlasts `hangReportMs` and
 * `stall` once a second while it goes on. Each line is one `write()` to a file opened for
 * appending, so lines from the two threads never interleave; a line cut short by the process's
 * death is skipped on reading.
 */
export type JournalLine =
  | { type: 'start'; meta: Omit<SessionMeta, 'endedAt' | 'reason' | 'exitCode' | 'eventsDropped'> }
  | { type: 'block'; event: BlockEvent; compact?: boolean }
  | { type: 'point'; point: TimelinePoint }
  | { type: 'checkpoint'; at: number; routes: RouteSyncRow[]; loop: LoopSnapshot }
  | ({ type: 'hang' } & HangRecord)
  | { type: 'stall'; stallId: number; at: number; blockedForMs: number }

/** How the process ended, when the reader knows (`looplens run` does). */
export interface Ending {
  reason: SessionMeta['reason']
  exitCode: number | undefined
}

const EMPTY_LOOP: LoopSnapshot = {
  delay: { min: 0, mean: 0, p50: 0, p90: 0, p99: 0, max: 0, count: 0 },
  utilization: 0,
  blocks: { count: 0, totalMs: 0, maxMs: 0 },
  stacks: { active: false, reason: undefined },
}

/**
 * Rebuild a session from its journal's text. Throws a `TypeError` naming `source` when the text
 * is not a journal. The report is aggregated again from the journaled blocks, as the live one was;
 * a hang that never ended (the process was killed while stuck) becomes a block of its own, as
 * long as the watchdog last saw it, with the stack it took.
 */
export function sessionFromJournal(text: string, source: string, ending?: Ending): SessionFile {
  let start: Extract<JournalLine, { type: 'start' }> | undefined
  const events: BlockEvent[] = []
  const all: BlockEvent[] = []
  const timeline: TimelinePoint[] = []
  let checkpoint: Extract<JournalLine, { type: 'checkpoint' }> | undefined
  const hangs = new Map<number, HangRecord>()
  let lastSeen = 0
  for (const raw of text.split('\n')) {
    if (raw === '') continue
    let line: JournalLine
    try {
      line = JSON.parse(raw) as JournalLine
    } catch {
      continue // cut short by the process's death
    }
    switch (line?.type) {
      case 'start':
        start ??= line
        break
      case 'block':
        all.push(line.event)
        if (line.compact !== true) events.push(line.event)
        lastSeen = Math.max(lastSeen, line.event.startTime + line.event.durationMs)
        break
      case 'point':
        timeline.push(line.point)
        lastSeen = Math.max(lastSeen, line.point.t)
        break
      case 'checkpoint':
        checkpoint = line
        lastSeen = Math.max(lastSeen, line.at)
        break
      case 'hang': {
        const { type: _type, ...record } = line
        hangs.set(line.stallId, record)
        lastSeen = Math.max(lastSeen, line.at)
        break
      }
      case 'stall': {
        const hang = hangs.get(line.stallId)
        if (hang !== undefined) hang.blockedForMs = Math.max(hang.blockedForMs, line.blockedForMs)
        lastSeen = Math.max(lastSeen, line.at)
        break
      }
    }
  }
  if (start === undefined) {
    throw new TypeError(`${source} is not a looplens journal: no "start" line`)
  }
  const { blockThresholdMs } = start.meta
  // A hang that ended was measured by the main thread and journaled as a block (hang: true) whose
  // stall began at the hang's stall id (the last beat before it: within a few beats).
  let hangAtEnd: BlockEvent | undefined
  for (const hang of hangs.values()) {
    const ended = all.some(
      (event) =>
        event.hang &&
        hang.stallId >= event.startTime - blockThresholdMs &&
        hang.stallId <= event.startTime + event.durationMs,
    )
    if (ended) continue
    const event: BlockEvent = {
      startTime: hang.stallId,
      durationMs: hang.blockedForMs,
      kind: hang.frames.length > 0 || hang.context.method !== '' ? 'callback' : 'unknown',
      context: hang.context,
      frames: hang.frames,
      culprit: hang.culprit,
      stackMissing: hang.stackMissing,
      hang: true,
    }
    all.push(event)
    events.push(event)
    if (hangAtEnd === undefined || event.startTime > hangAtEnd.startTime) hangAtEnd = event
  }

  const aggregator = new ReportAggregator()
  all.sort((a, b) => a.startTime - b.startTime)
  for (const event of all) aggregator.recordBlock(event)
  events.sort((a, b) => a.startTime - b.startTime)
  const kept = events.slice(0, MAX_SESSION_EVENTS)
  const endedAt =
    hangAtEnd === undefined
      ? lastSeen
      : Math.max(lastSeen, hangAtEnd.startTime + hangAtEnd.durationMs)
  // The loop's figures of the last checkpoint; the longest delay is at least what the timeline
  // and a hang at the end show (a stuck loop never reaches the next checkpoint).
  const loop = structuredClone(checkpoint?.loop ?? EMPTY_LOOP)
  for (const point of timeline) loop.delay.max = Math.max(loop.delay.max, point.delayMaxMs)
  if (hangAtEnd !== undefined) loop.delay.max = Math.max(loop.delay.max, hangAtEnd.durationMs)
  const report: LooplensReport = {
    generatedAt: new Date().toISOString(),
    since: start.meta.startedAt,
    blockThresholdMs,
    blocks: { ...aggregator.blocks },
    blockers: aggregator.blockers(),
    saturation: { ...aggregator.saturation },
    routes: checkpoint?.routes ?? [],
    loop: { ...loop, blocks: { ...aggregator.blocks } },
  }
  const meta: SessionMeta = {
    ...start.meta,
    endedAt: new Date(endedAt > 0 ? endedAt : Date.parse(start.meta.startedAt)).toISOString(),
    reason: ending?.reason ?? 'unknown',
    exitCode: ending?.exitCode,
    eventsDropped: all.length - kept.length,
    fromJournal: true,
  }
  if (hangAtEnd !== undefined) meta.hangAtEnd = hangAtEnd
  return { format: 'looplens-session', version: 1, meta, report, timeline, events: kept }
}

/**
 * Read a session: the final file when it exists, else its journal (`<file>.journal`) rebuilt;
 * a journal may also be named directly. Throws an `Error` whose message says what is missing or
 * wrong, naming the file.
 */
export function readSessionOrJournal(file: string, ending?: Ending): SessionFile {
  const journal = file.endsWith('.journal') ? file : journalPathOf(file)
  if (!file.endsWith('.journal') && existsSync(file)) {
    let parsed: unknown
    try {
      parsed = JSON.parse(readFileSync(file, 'utf8'))
    } catch (error) {
      throw new Error(`cannot read ${file}: ${(error as Error).message}`)
    }
    return parseSession(parsed, file)
  }
  if (!existsSync(journal)) {
    throw new Error(
      file === journal
        ? `cannot read ${file}: no such file`
        : `cannot read ${file}: no such file, and no journal (${journal}) either`,
    )
  }
  return sessionFromJournal(readFileSync(journal, 'utf8'), journal, ending)
}
