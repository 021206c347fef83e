/**
 * The report as a text table a person reads in a terminal.
 */
import { formatFrame, isLibraryFrame, shortLocation } from '../stack/frames.js'
import type { BlockerRow, LooplensReport, StackFrame } from '../types.js'
import { terminalFrame, terminalPath, terminalText } from '../util/text.js'

/** `5.0 s`, `120 ms`, `0.4 ms`. */
export function formatDuration(ms: number): string {
  if (ms >= 10_000) return `${(ms / 1000).toFixed(0)} s`
  if (ms >= 1000) return `${(ms / 1000).toFixed(1)} s`
  if (ms >= 10) return `${ms.toFixed(0)} ms`
  return `${ms.toFixed(1)} ms`
}

/**
 * Who blocked, for a terminal. Task names and routes come from the app (a regex route is any
 * text): shown through terminalText, so no control character reaches the terminal and no name
 * is longer than a line should be.
 */
function who(row: { method: string; route: string; task: string }): string {
  const method = terminalText(row.method)
  const route = terminalText(row.route)
  if (row.task !== '') {
    const task = terminalText(row.task)
    return row.method === '' ? `task ${task}` : `task ${task} (${method} ${route || '(no route)'})`
  }
  if (row.method === '') return '(outside any request)'
  return `${method} ${route === '' ? '(no route matched)' : route}`
}

/** A frame's function name, safe for a terminal. */
function frameName(frame: StackFrame): string {
  return terminalText(frame.functionName)
}

/** A frame's `file:line:column`, relative to `cwd`, safe for a terminal (its end kept). */
function frameLocation(frame: StackFrame, cwd: string): string {
  return terminalPath(shortLocation(frame, cwd))
}

/** What to do about it, from the frames the probe saw. */
export function adviceFor(frames: readonly StackFrame[]): string {
  // Only what runs on top of your code says what kind of work it is (pbkdf2Sync, readFileSync,
  // Atomics.wait, JSON.parse…): your own function names (`processJobSync`) say nothing.
  const top: StackFrame[] = []
  for (const frame of frames) {
    if (!isLibraryFrame(frame)) break
    top.push(frame)
  }
  const names = top.map((frame) => frame.functionName).join(' ')
  if (
    /\b(pbkdf2Sync|scryptSync|randomFillSync|generateKeyPairSync|hashSync|compareSync)\b/.test(
      names,
    )
  ) {
    return 'use the async crypto API, or move it to a worker pool'
  }
  if (/\b\w+Sync\b/.test(names))
    return 'use the promise-based API (fs/promises, zlib, child_process) instead of the *Sync call'
  if (/\bAtomics\.wait\b/.test(names)) return 'await a timer instead of sleeping synchronously'
  if (/\bJSON\.(parse|stringify)\b/.test(names))
    return 'stream or split the JSON work, or move it to a worker pool'
  if (
    /\b(RegExp|String\.(match|replace|split|search))\b|\[Symbol\.(match|replace|split)\]/.test(
      names,
    )
  ) {
    return 'check the regular expression for catastrophic backtracking, or bound its input'
  }
  return 'move it to a background task (after the response) or a worker pool'
}

function pad(text: string, width: number): string {
  return text.length >= width ? text : text + ' '.repeat(width - text.length)
}

function padStart(text: string, width: number): string {
  return text.length >= width ? text : ' '.repeat(width - text.length) + text
}

function culpritText(row: BlockerRow, cwd: string): string {
  if (row.culprit === undefined) {
    return row.kind === 'unknown'
      ? '(no stack: the probe did not run inside it)'
      : '(no application frame on the stack)'
  }
  return `${frameName(row.culprit)}  ${frameLocation(row.culprit, cwd)}`
}

/** Render a report for a terminal. `limit` rows at most (default 10). */
export function formatReport(
  report: LooplensReport,
  options: { limit?: number; cwd?: string } = {},
): string {
  const limit = options.limit ?? 10
  const cwd = options.cwd ?? process.cwd()
  const lines: string[] = []
  const { blocks, saturation } = report
  const watchedMs = Date.parse(report.generatedAt) - Date.parse(report.since)
  lines.push(
    `looplens — event-loop blocking report (threshold ${report.blockThresholdMs} ms, watched ${formatDuration(Math.max(0, watchedMs))})`,
  )
  const delay = report.loop.delay
  lines.push(
    blocks.count === 0
      ? 'No blocks: the event loop never stalled past the threshold.'
      : `${blocks.count} block${blocks.count === 1 ? '' : 's'}, ${formatDuration(blocks.totalMs)} blocked in total, longest ${formatDuration(blocks.maxMs)}.`,
  )
  lines.push(
    `Loop delay p50 ${formatDuration(delay.p50)}, p99 ${formatDuration(delay.p99)}, max ${formatDuration(delay.max)}; utilization ${(report.loop.utilization * 100).toFixed(0)}%.`,
  )
  const rows = report.blockers.slice(0, limit)
  if (rows.length > 0) {
    lines.push('')
    const whoWidth = Math.min(48, Math.max(5, ...rows.map((row) => who(row).length)))
    lines.push(
      `  #  ${pad('WHERE', whoWidth)}  ${padStart('COUNT', 5)}  ${padStart('TOTAL', 7)}  ${padStart('MAX', 7)}  CULPRIT`,
    )
    rows.forEach((row, index) => {
      lines.push(
        `${padStart(String(index + 1), 3)}  ${pad(who(row), whoWidth)}  ${padStart(String(row.count), 5)}  ${padStart(formatDuration(row.totalMs), 7)}  ${padStart(formatDuration(row.maxMs), 7)}  ${culpritText(row, cwd)}`,
      )
    })
    if (report.blockers.length > rows.length) {
      lines.push(`     … and ${report.blockers.length - rows.length} more`)
    }
  }
  if (saturation.count > 0) {
    lines.push('')
    lines.push(
      `Saturation: ${saturation.count} stall${saturation.count === 1 ? '' : 's'}, ${formatDuration(saturation.totalMs)} in total, longest ${formatDuration(saturation.maxMs)} — many short callbacks in one loop turn, no single culprit: the process is over capacity (shed load, add instances, or make each request cheaper).`,
    )
  }
  for (const row of rows.slice(0, 3)) {
    if (row.culprit === undefined) continue
    lines.push('')
    lines.push(
      `${who(row)} blocked the loop for ${formatDuration(row.totalMs)} in ${row.count} block${row.count === 1 ? '' : 's'} (longest ${formatDuration(row.maxMs)}) in ${frameName(row.culprit)} at ${frameLocation(row.culprit, cwd)} — ${adviceFor(row.sampleFrames)}.`,
    )
    for (const frame of row.sampleFrames.slice(0, 8)) lines.push(formatFrame(terminalFrame(frame)))
  }
  return `${lines.join('\n')}\n`
}
