/**
 * Aggregates block events and request sync times into the report's rows. Memory is bounded:
 * rows are keyed by label values and culprit lines (both bounded), and capped anyway.
 */
import type { BlockEvent, BlockerRow, StackFrame } from '../types.js'

const MAX_ROWS = 500

function culpritKey(culprit: StackFrame | undefined): string {
  return culprit === undefined ? '' : `${culprit.file}:${culprit.line}:${culprit.functionName}`
}

export class ReportAggregator {
  readonly startedAt = Date.now()
  readonly blocks = { count: 0, totalMs: 0, maxMs: 0 }
  readonly saturation = { count: 0, totalMs: 0, maxMs: 0 }
  readonly #rows = new Map<string, BlockerRow>()
  /** Events that found no room (more distinct rows than MAX_ROWS): counted in blocks only. */
  dropped = 0

  /** Subscribe to the block pipeline. */
  readonly recordBlock = (event: BlockEvent): void => {
    const ms = event.durationMs
    this.blocks.count++
    this.blocks.totalMs += ms
    this.blocks.maxMs = Math.max(this.blocks.maxMs, ms)
    if (event.kind === 'saturation') {
      this.saturation.count++
      this.saturation.totalMs += ms
      this.saturation.maxMs = Math.max(this.saturation.maxMs, ms)
      return
    }
    const { method, route, task } = event.context
    const kind = event.kind === 'callback' ? 'callback' : 'unknown'
    const key = `${kind}\u0000${method}\u0000${route}\u0000${task}\u0000${culpritKey(event.culprit)}`
    let row = this.#rows.get(key)
    if (row === undefined) {
      if (this.#rows.size >= MAX_ROWS) {
        this.dropped++
        return
      }
      row = {
        kind,
        method,
        route,
        task,
        culprit: event.culprit,
        count: 0,
        totalMs: 0,
        maxMs: 0,
        sampleFrames: event.frames,
        firstSeen: event.startTime,
        lastSeen: event.startTime,
      }
      this.#rows.set(key, row)
    }
    row.count++
    row.totalMs += ms
    if (ms >= row.maxMs && event.frames.length > 0) row.sampleFrames = event.frames
    row.maxMs = Math.max(row.maxMs, ms)
    row.lastSeen = event.startTime
  }

  /**
   * Blocker rows, worst (largest total) first; copies, so callers may keep them. Blocks without
   * a stack (rate-limited, missed) join the row of the same route and task that has a culprit,
   * so a route that blocks often is one row with its culprit, not two.
   */
  blockers(): BlockerRow[] {
    const rows = [...this.#rows.values()].map((row) => ({
      ...row,
      sampleFrames: [...row.sampleFrames],
    }))
    const withCulprit = new Map<string, BlockerRow>()
    for (const row of rows) {
      if (row.culprit === undefined) continue
      const key = `${row.method}\u0000${row.route}\u0000${row.task}`
      const known = withCulprit.get(key)
      if (known === undefined || row.totalMs > known.totalMs) withCulprit.set(key, row)
    }
    const merged: BlockerRow[] = []
    for (const row of rows) {
      const target =
        row.culprit === undefined && (row.method !== '' || row.task !== '')
          ? withCulprit.get(`${row.method}\u0000${row.route}\u0000${row.task}`)
          : undefined
      if (target === undefined) {
        merged.push(row)
        continue
      }
      target.count += row.count
      target.totalMs += row.totalMs
      target.maxMs = Math.max(target.maxMs, row.maxMs)
      target.firstSeen = Math.min(target.firstSeen, row.firstSeen)
      target.lastSeen = Math.max(target.lastSeen, row.lastSeen)
    }
    return merged.sort((a, b) => b.totalMs - a.totalMs)
  }
}
