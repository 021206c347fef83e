/**
 * The JSON file a zero-code session writes (`LOOPLENS_REPORT_FILE`), read back by
 * `looplens report` and rendered by the HTML report. Versioned: a reader refuses what it does not
 * know rather than rendering nonsense.
 */
import type { BlockEvent, LooplensReport } from '../types.js'

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
  /** What ended the session: the process exiting, or a signal. */
  reason: 'exit' | 'SIGINT' | 'SIGTERM'
  exitCode: number | undefined
  blockThresholdMs: number
  timelineIntervalMs: number
  /** Events past the cap of the file were counted but not kept. */
  eventsDropped: number
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
