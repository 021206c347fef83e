/**
 * A zero-code session (the JSON `looplens/register` writes) as one self-contained HTML page:
 * inline CSS, inline SVG charts drawn here, no script, no CDN, no network. It opens from a file,
 * an artifact store or an e-mail attachment, and prints.
 *
 * Sections: summary, loop delay and utilization over time, blocks on a timeline by route, top
 * blockers with culprit line and stack, sync time by route.
 */
import type { SessionFile, TimelinePoint } from '../instrument/session.js'
import { formatFrame, shortLocation } from '../stack/frames.js'
import type { BlockEvent, BlockerRow, RouteSyncRow } from '../types.js'
import { terminalFrame, terminalPath, terminalText } from '../util/text.js'
import { adviceFor, formatDuration } from './format.js'

const WIDTH = 960
const MARGIN = { left: 64, right: 20, top: 14, bottom: 30 }
const COLORS = {
  p99: '#2563eb',
  max: '#f59e0b',
  threshold: '#dc2626',
  utilization: '#7c3aed',
  callback: '#dc2626',
  saturation: '#f59e0b',
  unknown: '#64748b',
  grid: '#e5e7eb',
  axis: '#6b7280',
  bar: '#0d9488',
}

/** Escape text for HTML content and attribute values. */
export function escapeHtml(text: string): string {
  return String(text)
    .replaceAll('&', '&amp;')
    .replaceAll('<', '&lt;')
    .replaceAll('>', '&gt;')
    .replaceAll('"', '&quot;')
    .replaceAll("'", '&#39;')
}

const esc = escapeHtml

function num(value: number): string {
  return Number.isFinite(value) ? String(Math.round(value * 10) / 10) : '0'
}

/** Round axis ticks: 1, 2, 5 × 10^n steps covering [min, max]. */
export function niceTicks(min: number, max: number, count = 5): number[] {
  if (!(max > min)) return [min]
  const rough = (max - min) / count
  const power = 10 ** Math.floor(Math.log10(rough))
  const step = [1, 2, 5, 10].map((f) => f * power).find((s) => s >= rough) ?? 10 * power
  const ticks: number[] = []
  for (let tick = Math.ceil(min / step) * step; tick <= max + step * 1e-9; tick += step) {
    ticks.push(Math.round(tick / step) * step)
  }
  return ticks
}

interface Frame {
  x: (t: number) => number
  y: (v: number) => number
  width: number
  height: number
}

function timeAxis(startMs: number, endMs: number, frame: Frame): string {
  const spanS = (endMs - startMs) / 1000
  const ticks = niceTicks(0, spanS, 8)
  return ticks
    .map((s) => {
      const x = frame.x(startMs + s * 1000)
      return `<line x1="${num(x)}" x2="${num(x)}" y1="${MARGIN.top}" y2="${MARGIN.top + frame.height}" stroke="${COLORS.grid}"/><text x="${num(x)}" y="${MARGIN.top + frame.height + 18}" text-anchor="middle" class="tick">${esc(formatSeconds(s))}</text>`
    })
    .join('')
}

function formatSeconds(s: number): string {
  if (s >= 120) return `${Math.round(s / 60)} min`
  return `${Math.round(s * 10) / 10} s`
}

function valueAxis(ticks: number[], frame: Frame, label: (v: number) => string): string {
  return ticks
    .map((v) => {
      const y = frame.y(v)
      return `<line x1="${MARGIN.left}" x2="${MARGIN.left + frame.width}" y1="${num(y)}" y2="${num(y)}" stroke="${COLORS.grid}"/><text x="${MARGIN.left - 8}" y="${num(y + 4)}" text-anchor="end" class="tick">${esc(label(v))}</text>`
    })
    .join('')
}

function makeFrame(startMs: number, endMs: number, maxValue: number, height: number): Frame {
  const width = WIDTH - MARGIN.left - MARGIN.right
  const span = Math.max(1, endMs - startMs)
  return {
    width,
    height,
    x: (t) => MARGIN.left + ((t - startMs) / span) * width,
    y: (v) => MARGIN.top + height - (Math.min(v, maxValue) / maxValue) * height,
  }
}

function svg(height: number, body: string, label: string): string {
  const total = height + MARGIN.top + MARGIN.bottom
  return `<svg class="chart" viewBox="0 0 ${WIDTH} ${total}" role="img" aria-label="${esc(label)}" xmlns="http://www.w3.org/2000/svg">${body}</svg>`
}

function polyline(points: Array<[number, number]>, color: string, width = 2): string {
  if (points.length === 0) return ''
  const d = points.map(([x, y], i) => `${i === 0 ? 'M' : 'L'}${num(x)},${num(y)}`).join('')
  return `<path d="${d}" fill="none" stroke="${color}" stroke-width="${width}" stroke-linejoin="round"/>`
}

function area(points: Array<[number, number]>, baseY: number, color: string): string {
  if (points.length === 0) return ''
  const first = points[0]!
  const last = points[points.length - 1]!
  const d = `M${num(first[0])},${num(baseY)}${points.map(([x, y]) => `L${num(x)},${num(y)}`).join('')}L${num(last[0])},${num(baseY)}Z`
  return `<path d="${d}" fill="${color}" fill-opacity="0.18" stroke="none"/>`
}

function emptyChart(message: string): string {
  return `<p class="empty">${esc(message)}</p>`
}

/** Event-loop delay (p99 and max per interval) over time, with the block threshold. */
function delayChart(session: SessionFile, startMs: number, endMs: number): string {
  const points = session.timeline
  if (points.length === 0)
    return emptyChart('No timeline samples (the session was shorter than one interval).')
  const threshold = session.meta.blockThresholdMs
  const peak = Math.max(threshold * 1.2, ...points.map((p) => p.delayMaxMs), 1)
  const ticks = niceTicks(0, peak, 4)
  // The top tick must be above the highest point, or the chart would clip it.
  const step = ticks.length > 1 ? ticks[1]! - ticks[0]! : peak
  while (ticks[ticks.length - 1]! < peak) ticks.push(ticks[ticks.length - 1]! + step)
  const frame = makeFrame(startMs, endMs, ticks[ticks.length - 1]! || peak, 170)
  const maxPoints = stepPoints(points, frame, (p) => p.delayMaxMs)
  const p99Points = stepPoints(points, frame, (p) => p.delayP99Ms)
  const thresholdY = frame.y(threshold)
  const body = [
    valueAxis(ticks, frame, (v) => `${v} ms`),
    timeAxis(startMs, endMs, frame),
    area(maxPoints, MARGIN.top + frame.height, COLORS.max),
    polyline(maxPoints, COLORS.max, 1.5),
    polyline(p99Points, COLORS.p99, 2),
    `<line x1="${MARGIN.left}" x2="${MARGIN.left + frame.width}" y1="${num(thresholdY)}" y2="${num(thresholdY)}" stroke="${COLORS.threshold}" stroke-dasharray="6 4"/>`,
    `<text x="${MARGIN.left + frame.width - 4}" y="${num(thresholdY - 5)}" text-anchor="end" class="note" fill="${COLORS.threshold}">block threshold ${threshold} ms</text>`,
  ].join('')
  return `${svg(frame.height, body, 'Event-loop delay over time')}<div class="legend"><span><i style="background:${COLORS.p99}"></i>p99 per interval</span><span><i style="background:${COLORS.max}"></i>max per interval</span><span><i class="dash" style="border-color:${COLORS.threshold}"></i>block threshold</span></div>`
}

/** Each timeline point covers the interval that ends at `t`: draw it as a step. */
function stepPoints(
  points: TimelinePoint[],
  frame: Frame,
  value: (point: TimelinePoint) => number,
): Array<[number, number]> {
  const out: Array<[number, number]> = []
  let previousT: number | undefined
  for (const point of points) {
    const y = frame.y(value(point))
    const startT = previousT ?? point.t - 1000
    out.push([frame.x(startT), y], [frame.x(point.t), y])
    previousT = point.t
  }
  return out
}

function utilizationChart(session: SessionFile, startMs: number, endMs: number): string {
  const points = session.timeline
  if (points.length === 0) return emptyChart('No timeline samples.')
  const frame = makeFrame(startMs, endMs, 1, 110)
  const line = stepPoints(points, frame, (p) => p.utilization)
  const body = [
    valueAxis([0, 0.5, 1], frame, (v) => `${Math.round(v * 100)}%`),
    timeAxis(startMs, endMs, frame),
    area(line, MARGIN.top + frame.height, COLORS.utilization),
    polyline(line, COLORS.utilization, 2),
  ].join('')
  return svg(frame.height, body, 'Event-loop utilization over time')
}

/**
 * Who blocked. Names from the app are bounded and their control characters made visible, as in
 * the text report (src/util/text.ts): an 8 MB function name is not an 8 MB tooltip, and a
 * newline in a task name does not split a lane.
 */
function whoOf(context: { method: string; route: string; task: string }): string {
  if (context.task !== '') return `task ${terminalText(context.task)}`
  if (context.method === '') return '(outside any request)'
  return `${terminalText(context.method)} ${context.route === '' ? '(no route)' : terminalText(context.route)}`
}

/** One lane per route (and one for saturation); each block a bar as long as it lasted. */
function blocksChart(session: SessionFile, startMs: number, endMs: number): string {
  const events = session.events
  if (events.length === 0)
    return emptyChart('No blocks: the event loop never stalled past the threshold.')
  const laneOf = (event: BlockEvent) =>
    event.kind === 'saturation' ? 'saturation (many short callbacks)' : whoOf(event.context)
  const totals = new Map<string, number>()
  for (const event of events) {
    const lane = laneOf(event)
    totals.set(lane, (totals.get(lane) ?? 0) + event.durationMs)
  }
  const lanes = [...totals.entries()]
    .sort((a, b) => b[1] - a[1])
    .map(([lane]) => lane)
    .slice(0, 12)
  const laneHeight = 26
  const labelWidth = 230
  const height = lanes.length * laneHeight
  const width = WIDTH - labelWidth - MARGIN.right
  const span = Math.max(1, endMs - startMs)
  const x = (t: number) => labelWidth + ((t - startMs) / span) * width
  const parts: string[] = []
  lanes.forEach((lane, index) => {
    const y = MARGIN.top + index * laneHeight
    if (index % 2 === 0) {
      parts.push(
        `<rect x="${labelWidth}" y="${y}" width="${width}" height="${laneHeight}" fill="#f8fafc"/>`,
      )
    }
    parts.push(
      `<text x="${labelWidth - 10}" y="${y + laneHeight / 2 + 4}" text-anchor="end" class="lane">${esc(truncate(lane, 34))}<title>${esc(lane)}</title></text>`,
    )
  })
  // Time grid against the lanes (the shared time axis helper assumes the chart margin).
  const ticks = niceTicks(0, span / 1000, 8)
  for (const s of ticks) {
    const tx = x(startMs + s * 1000)
    parts.push(
      `<line x1="${num(tx)}" x2="${num(tx)}" y1="${MARGIN.top}" y2="${MARGIN.top + height}" stroke="${COLORS.grid}"/><text x="${num(tx)}" y="${MARGIN.top + height + 18}" text-anchor="middle" class="tick">${esc(formatSeconds(s))}</text>`,
    )
  }
  for (const event of events) {
    const index = lanes.indexOf(laneOf(event))
    if (index === -1) continue
    const y = MARGIN.top + index * laneHeight + 5
    const bx = x(event.startTime)
    const bw = Math.max(2.5, x(event.startTime + event.durationMs) - bx)
    const color = COLORS[event.kind]
    const culprit =
      event.culprit === undefined ? '' : ` in ${terminalText(event.culprit.functionName)}`
    parts.push(
      `<rect x="${num(bx)}" y="${y}" width="${num(bw)}" height="${laneHeight - 10}" rx="2" fill="${color}" fill-opacity="0.85"><title>${esc(`${laneOf(event)}: ${formatDuration(event.durationMs)}${culprit} at +${formatSeconds((event.startTime - startMs) / 1000)}`)}</title></rect>`,
    )
  }
  const legend = `<div class="legend"><span><i style="background:${COLORS.callback}"></i>one blocking callback</span><span><i style="background:${COLORS.saturation}"></i>saturation</span><span><i style="background:${COLORS.unknown}"></i>no probe inside (kind unknown)</span></div>`
  return `${svg(height, parts.join(''), 'Blocks on a timeline, by route')}${legend}`
}

function truncate(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`
}

function blockersTable(rows: BlockerRow[], cwd: string): string {
  if (rows.length === 0) return emptyChart('No blockers.')
  const body = rows
    .slice(0, 20)
    .map((row, index) => {
      const who = whoOf(row)
      const culprit =
        row.culprit === undefined
          ? `<span class="muted">${row.kind === 'unknown' ? 'no stack: the probe did not run inside it' : 'no application frame on the stack'}</span>`
          : `<code class="fn">${esc(terminalText(row.culprit.functionName))}</code><br><code class="loc">${esc(terminalPath(shortLocation(row.culprit, cwd)))}</code>`
      const stack =
        row.sampleFrames.length === 0
          ? ''
          : `<details${index < 3 ? ' open' : ''}><summary>stack (longest block) — ${esc(adviceFor(row.sampleFrames))}</summary><pre>${esc(
              row.sampleFrames
                .slice(0, 12)
                .map((frame) => formatFrame(terminalFrame(frame)))
                .join('\n'),
            )}</pre></details>`
      return `<tr><td class="rank">${index + 1}</td><td><strong>${esc(who)}</strong></td><td class="n">${row.count}</td><td class="n">${esc(formatDuration(row.totalMs))}</td><td class="n">${esc(formatDuration(row.maxMs))}</td><td>${culprit}</td></tr>${stack === '' ? '' : `<tr class="stack"><td></td><td colspan="5">${stack}</td></tr>`}`
    })
    .join('')
  return `<table class="blockers"><thead><tr><th>#</th><th>Where</th><th class="n">Count</th><th class="n">Total</th><th class="n">Max</th><th>Culprit (line to fix)</th></tr></thead><tbody>${body}</tbody></table>`
}

function syncChart(routes: RouteSyncRow[]): string {
  if (routes.length === 0) return emptyChart('No requests were measured.')
  const rows = routes.slice(0, 15)
  const barHeight = 24
  const labelWidth = 230
  const valueWidth = 330
  const width = WIDTH - labelWidth - valueWidth
  const peak = Math.max(...rows.map((row) => row.syncTotalMs), 0.001)
  const parts = rows.map((row, index) => {
    const y = MARGIN.top + index * barHeight
    const w = Math.max(1, (row.syncTotalMs / peak) * width)
    const mean = row.requests === 0 ? 0 : row.syncTotalMs / row.requests
    const who = whoOf({ method: row.method, route: row.route, task: '' })
    return `<text x="${labelWidth - 10}" y="${y + 16}" text-anchor="end" class="lane">${esc(truncate(who, 34))}<title>${esc(who)}</title></text><rect x="${labelWidth}" y="${y + 4}" width="${num(w)}" height="${barHeight - 8}" rx="2" fill="${COLORS.bar}"/><text x="${num(labelWidth + w + 8)}" y="${y + 16}" class="tick">${esc(`${formatDuration(row.syncTotalMs)} total · ${row.requests} req · mean ${formatDuration(mean)} · max ${formatDuration(row.syncMaxMs)}`)}</text>`
  })
  return svg(
    rows.length * barHeight - MARGIN.bottom + 10,
    parts.join(''),
    'Synchronous time by route',
  )
}

const CSS = `
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 -apple-system,BlinkMacSystemFont,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:#111827;background:#f3f4f6}
main{max-width:1040px;margin:0 auto;padding:24px}
header h1{font-size:22px;margin:0 0 4px}
header p{margin:0;color:#4b5563}
.cards{display:grid;grid-template-columns:repeat(6,1fr);gap:12px;margin:18px 0}
.card{background:#fff;border-radius:10px;padding:12px 14px;box-shadow:0 1px 2px rgba(0,0,0,.06)}
.card b{display:block;font-size:20px}
.card span{color:#6b7280;font-size:12px;text-transform:uppercase;letter-spacing:.04em}
.card.alert b{color:#dc2626}
section{background:#fff;border-radius:10px;padding:16px 18px;margin:0 0 16px;box-shadow:0 1px 2px rgba(0,0,0,.06)}
section h2{font-size:16px;margin:0 0 2px}
section .sub{margin:0 0 10px;color:#6b7280;font-size:13px}
.chart{width:100%;height:auto;display:block}
.tick{font-size:11px;fill:#6b7280}
.note{font-size:11px}
.lane{font-size:12px;fill:#111827}
.legend{display:flex;gap:18px;font-size:12px;color:#4b5563;margin-top:4px;padding-left:64px}
.legend i{display:inline-block;width:12px;height:12px;border-radius:2px;margin-right:6px;vertical-align:-2px}
.legend i.dash{height:0;border-top:2px dashed;border-radius:0;vertical-align:3px}
table.blockers{width:100%;border-collapse:collapse}
.blockers th{text-align:left;font-size:12px;color:#6b7280;text-transform:uppercase;letter-spacing:.04em;border-bottom:1px solid #e5e7eb;padding:6px 8px}
.blockers td{padding:8px;border-top:1px solid #f1f5f9;vertical-align:top;overflow-wrap:anywhere}
.blockers pre{white-space:pre-wrap;overflow-wrap:anywhere}
.blockers tr.stack td{border-top:none;padding-top:0}
.n{text-align:right;white-space:nowrap}
.rank{color:#6b7280;width:28px}
code{font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
code.fn{font-weight:600;color:#b91c1c}
code.loc{color:#374151}
details summary{cursor:pointer;color:#4b5563;font-size:12px}
pre{margin:6px 0 0;padding:8px 10px;background:#0f172a;color:#e2e8f0;border-radius:6px;font:12px/1.45 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;overflow-x:auto}
.muted{color:#6b7280}
.empty{color:#6b7280;font-style:italic;margin:8px 0}
.saturation{background:#fffbeb;border:1px solid #fde68a;border-radius:8px;padding:8px 12px;margin:10px 0 0;color:#92400e}
footer{color:#6b7280;font-size:12px;text-align:center;margin:8px 0 24px}
@media (max-width:800px){.cards{grid-template-columns:repeat(3,1fr)}}
`

/**
 * Render a session as a self-contained HTML page (no script, no external resource).
 * @example writeFileSync('report.html', renderHtmlReport(JSON.parse(readFileSync('report.json', 'utf8'))))
 */
export function renderHtmlReport(session: SessionFile): string {
  const { meta, report, timeline, events } = session
  const cwd = meta.cwd
  const started = Date.parse(meta.startedAt)
  const ended = Date.parse(meta.endedAt)
  let startMs = Number.isFinite(started) ? started : Date.parse(report.since)
  let endMs = Number.isFinite(ended) ? ended : Date.parse(report.generatedAt)
  for (const point of timeline) endMs = Math.max(endMs, point.t)
  for (const event of events) {
    startMs = Math.min(startMs, event.startTime)
    endMs = Math.max(endMs, event.startTime + event.durationMs)
  }
  if (!(endMs > startMs)) endMs = startMs + 1000
  const meanUtilization =
    timeline.length === 0
      ? report.loop.utilization
      : timeline.reduce((sum, point) => sum + point.utilization, 0) / timeline.length
  const peakP99 = timeline.reduce((peak, point) => Math.max(peak, point.delayP99Ms), 0)
  const cards = [
    ['Blocks', String(report.blocks.count), report.blocks.count > 0],
    ['Blocked in total', formatDuration(report.blocks.totalMs), report.blocks.totalMs > 0],
    ['Longest block', formatDuration(report.blocks.maxMs), report.blocks.maxMs > 0],
    ['Loop delay p99', formatDuration(Math.max(report.loop.delay.p99, peakP99)), false],
    ['Utilization (mean)', `${Math.round(meanUtilization * 100)}%`, false],
    ['Saturation stalls', String(report.saturation.count), report.saturation.count > 0],
  ] as const
  const saturation =
    report.saturation.count === 0
      ? ''
      : `<p class="saturation">Saturation: ${report.saturation.count} stall${report.saturation.count === 1 ? '' : 's'}, ${esc(formatDuration(report.saturation.totalMs))} in total — many short callbacks in one loop turn, no single culprit: the process is over capacity.</p>`
  const dropped =
    meta.eventsDropped > 0
      ? ` (${meta.eventsDropped} more blocks were counted but not kept in the file)`
      : ''
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>looplens report — ${esc(terminalPath(meta.script || 'app'))}</title>
<style>${CSS}</style>
</head>
<body>
<main>
<header>
<h1>looplens — event-loop blocking report</h1>
<p><code>${esc(terminalPath(meta.script || '(unknown script)'))}</code> · pid ${meta.pid} · Node ${esc(meta.nodeVersion)} · ${esc(new Date(startMs).toISOString().replace('T', ' ').slice(0, 19))} UTC · watched ${esc(formatDuration(endMs - startMs))} · threshold ${meta.blockThresholdMs} ms · ended by ${esc(meta.reason)}</p>
</header>
<div class="cards">${cards.map(([label, value, alert]) => `<div class="card${alert ? ' alert' : ''}"><b>${esc(value)}</b><span>${esc(label)}</span></div>`).join('')}</div>
<section id="delay"><h2>Event-loop delay</h2><p class="sub">How late the loop ran its timers, per ${meta.timelineIntervalMs} ms interval. Above the threshold, every request waited.</p>${delayChart(session, startMs, endMs)}</section>
<section id="utilization"><h2>Event-loop utilization</h2><p class="sub">Share of each interval the loop spent running JavaScript and callbacks rather than waiting for I/O.</p>${utilizationChart(session, startMs, endMs)}</section>
<section id="blocks"><h2>Blocks by route</h2><p class="sub">Every stall at least ${meta.blockThresholdMs} ms long, on the route that held the loop${esc(dropped)}.</p>${blocksChart(session, startMs, endMs)}${saturation}</section>
<section id="blockers"><h2>Top blockers</h2><p class="sub">Worst (largest total blocked time) first, with the line to fix and the stack of the longest block.</p>${blockersTable(report.blockers, cwd)}</section>
<section id="sync"><h2>Synchronous time by route</h2><p class="sub">Time each route's handlers ran without yielding (until their first await), summed over the session.</p>${syncChart(report.routes)}</section>
<footer>looplens ${esc(meta.looplensVersion)} · self-contained report: no script, no network</footer>
</main>
</body>
</html>
`
}
