/**
 * The loop-delay numbers of a stalled interval read as stalled: in the zero-code timeline (the
 * HTML report's delay chart) and in the delay histogram a scrape or snapshot() reads.
 */
import { execFile } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { createLooplens, type Looplens } from 'looplens'
import { afterEach, describe, expect, it } from 'vitest'
import type { SessionFile } from '../../src/instrument/session.js'
import type { DelayCounts } from '../../src/monitor/delay-monitor.js'
import { IntervalDelayWindow, intervalDelay } from '../../src/monitor/interval-delay.js'
import { busy } from '../helpers/server.js'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')

let lens: Looplens | undefined
afterEach(async () => {
  await lens?.close()
  lens = undefined
})

/** Cumulative counts over bounds 1 ms … 10 s with `perBound[i]` samples ≤ bounds[i]. */
function counts(samplesAt: number[], maxSeconds: number): DelayCounts {
  const bounds = [0.001, 0.01, 0.1, 1, 10]
  const cumulative = bounds.map((bound) => samplesAt.filter((value) => value <= bound).length)
  return {
    bounds,
    cumulative,
    count: samplesAt.length,
    sumSeconds: samplesAt.reduce((sum, value) => sum + value, 0),
    maxSeconds,
    minSeconds: Math.min(...samplesAt),
  }
}

describe('delay of a stalled interval', () => {
  it('an interval with no delay sample but a sampling timer 1.9 s late reads 1.9 s', () => {
    const before = counts(new Array(100).fill(0.0005), 0.0005)
    // The monitor recorded nothing in the interval (the loop was stuck, its timer did not fire).
    expect(intervalDelay(before, before, 1_900)).toEqual({ p99Ms: 1_900, maxMs: 1_900 })
    // A quiet interval: a timer 0.3 ms late changes nothing that matters.
    const quiet = counts([...new Array(200).fill(0.0005)], 0.0005)
    const delay = intervalDelay(before, quiet, 0.3)
    expect(delay.p99Ms).toBeLessThan(1)
    expect(delay.maxMs).toBeLessThan(1)
    // A timer that ran early or on time adds nothing.
    expect(intervalDelay(before, before, -2)).toEqual({ p99Ms: 0, maxMs: 0 })
  })

  it('IntervalDelayWindow measures how late its timer ran from the previous run', () => {
    const initial = counts([0.0005], 0.0005)
    const window = new IntervalDelayWindow(initial, 1_000, 10_000)
    expect(window.next(initial, 11_001).maxMs).toBeCloseTo(1, 5) // 1 ms late
    // Ran 2 s after the previous run for a 1 s interval: 1 s late, nothing recorded meanwhile.
    expect(window.next(initial, 13_001)).toEqual({ p99Ms: 1_000, maxMs: 1_000 })
    // The next one is due an interval after that late run, not on the old schedule.
    expect(window.next(initial, 14_001).maxMs).toBe(0)
  })

  it('a stall is counted in the delay histogram even when it is read right after the stall', async () => {
    lens = createLooplens({ captureStacks: false, delayResolutionMs: 10 })
    const current = lens
    await sleep(100)
    setTimeout(function stallThenRead() {
      busy(400)
      // A reader (a scrape, snapshot(), the timeline) before the monitor's timer fires again.
      current.snapshot()
    }, 20)
    // The monitor records the stall when its own timer next fires, after the stall: poll for it
    // (bounded). Lost, it never comes.
    let maxMs = 0
    const deadline = performance.now() + 3_000
    while (maxMs < 350 && performance.now() < deadline) {
      await sleep(50)
      maxMs = current.snapshot().delay.max
    }
    expect(maxMs).toBeGreaterThanOrEqual(350)
  })

  it('the zero-code timeline shows every stalled interval as stalled', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'looplens-timeline-'))
    try {
      const file = path.join(dir, 'session.json')
      await promisify(execFile)(
        process.execPath,
        ['--import', 'looplens/register', path.join(ROOT, 'test/fixtures/timeline-stall-app.js')],
        {
          cwd: ROOT,
          timeout: 30_000,
          env: {
            ...process.env,
            LOOPLENS_REPORT_FILE: file,
            LOOPLENS_REPORT_STDERR: 'false',
            LOOPLENS_METRICS_PORT: '0',
            LOOPLENS_TIMELINE_INTERVAL_MS: '1000',
            LOOPLENS_HANG_REPORT_MS: '0',
          },
        },
      )
      const session = JSON.parse(readFileSync(file, 'utf8')) as SessionFile
      const points = session.timeline
      const described = points
        .map((p) => `u=${p.utilization} p99=${p.delayP99Ms} max=${p.delayMaxMs} b=${p.blocks}`)
        .join('\n')
      // Each of the five 1.2 s stalls in one loop turn: an interval whose delay is at least 1 s.
      expect(points.filter((p) => p.delayMaxMs >= 1_000).length, described).toBeGreaterThanOrEqual(
        5,
      )
      // Every interval the loop spent mostly busy reads above the block threshold.
      const busyPoints = points.filter((p) => p.utilization >= 0.8)
      expect(busyPoints.length, described).toBeGreaterThanOrEqual(6)
      for (const point of busyPoints) {
        expect(point.delayP99Ms, described).toBeGreaterThanOrEqual(50)
        expect(point.delayMaxMs, described).toBeGreaterThanOrEqual(100)
      }
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
