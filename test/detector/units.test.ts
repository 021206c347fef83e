/**
 * Units of the detector that need no server: stack parsing, the culprit, and the single
 * callback / saturation decision on synthetic probe captures.
 */
import { describe, expect, it } from 'vitest'
import { LensContext } from '../../src/context/context.js'
import { attribute as attributeAll } from '../../src/detector/detector.js'
import { ReportAggregator } from '../../src/report/aggregator.js'
import { adviceFor, formatReport } from '../../src/report/format.js'
import { culpritOf, dropProbeFrames, parseStack } from '../../src/stack/frames.js'
import type { BlockEvent, LooplensReport } from '../../src/types.js'
import type { Capture } from '../../src/watchdog/probe.js'

const STACK = `Error
    at <anonymous>:1:41
    at hashPasswordsSync (file:///srv/app/src/routes/process.js:12:5)
    at Object.pbkdf2Sync (node:internal/crypto/pbkdf2:78:17)
    at async Promise.all (index 0)
    at Layer.handleRequest (/srv/app/node_modules/router/lib/layer.js:169:33)
    at new Job (/srv/app/src/job.js:3:9)
    at file:///srv/app/src/main.js:40:1
    at Atomics.wait (<anonymous>)
    at eval (eval at compile (/srv/app/src/tpl.js:5:10), <anonymous>:1:1)`

describe('parseStack', () => {
  const frames = dropProbeFrames(parseStack(STACK))

  it('drops the inspector wrapper and reads every V8 frame form', () => {
    expect(frames[0]).toEqual({
      functionName: 'hashPasswordsSync',
      file: 'file:///srv/app/src/routes/process.js',
      line: 12,
      column: 5,
    })
    expect(frames[1]).toMatchObject({
      functionName: 'pbkdf2Sync',
      file: 'node:internal/crypto/pbkdf2',
    })
    expect(frames.find((f) => f.functionName === 'new Job')).toMatchObject({ line: 3, column: 9 })
    expect(frames.find((f) => f.file === 'file:///srv/app/src/main.js')).toMatchObject({
      functionName: '<anonymous>',
      line: 40,
    })
    expect(frames.find((f) => f.functionName === 'Atomics.wait')).toMatchObject({
      file: '<anonymous>',
      line: 0,
    })
    expect(frames.find((f) => f.functionName === 'eval')).toMatchObject({
      file: '/srv/app/src/tpl.js',
      line: 5,
    })
  })

  it('takes the first application frame as the culprit', () => {
    const withNativeOnTop = [
      { functionName: 'Atomics.wait', file: '<anonymous>', line: 0, column: 0 },
      { functionName: 'x', file: 'node:internal/x', line: 1, column: 1 },
      { functionName: 'y', file: '/srv/app/node_modules/dep/index.js', line: 1, column: 1 },
      { functionName: 'sleepSync', file: '/srv/app/src/sleep.js', line: 7, column: 3 },
    ]
    expect(culpritOf(withNativeOnTop)?.functionName).toBe('sleepSync')
    expect(culpritOf(withNativeOnTop.slice(0, 3))).toBeUndefined()
  })
})

function capture(
  time: number,
  context: LensContext | undefined,
  asyncId: number,
  fn = 'work',
): Capture {
  return {
    time,
    stallId: 1,
    context,
    asyncId,
    stack: `Error\n    at <anonymous>:1:41\n    at ${fn} (/srv/app/src/${fn}.js:10:3)`,
  }
}

/** The first segment of a stall spanning the captures (0…100 ms, threshold 50 ms). */
function attribute(captures: Capture[]) {
  return attributeAll(captures, { startPerf: 0, endPerf: 100 }, 50)?.[0]
}

describe('attribute: single callback or saturation', () => {
  const a = new LensContext('GET', '', undefined, 0)
  const b = new LensContext('GET', '', undefined, 0)

  it('is a callback when every probe saw the same context', () => {
    const found = attribute([capture(1, a, 7), capture(2, a, 7), capture(3, a, 7)])
    expect(found?.kind).toBe('callback')
    expect(found?.context).toBe(a)
    expect(found?.culprit?.functionName).toBe('work')
  })

  it('forgives one late probe after two that agree', () => {
    const found = attribute([capture(1, a, 7), capture(2, a, 7), capture(3, b, 9)])
    expect(found?.kind).toBe('callback')
    expect(found?.context).toBe(a)
  })

  it('is saturation when two probes saw two callbacks', () => {
    expect(attribute([capture(1, a, 7), capture(2, b, 9)])?.kind).toBe('saturation')
    const found = attribute([capture(1, a, 7), capture(2, b, 9), capture(3, a, 11)])
    expect(found?.kind).toBe('saturation')
    expect(found?.context).toBeUndefined()
    expect(found?.culprit).toBeUndefined()
  })

  it('uses the async resource outside any request', () => {
    expect(attribute([capture(1, undefined, 5), capture(2, undefined, 5)])?.kind).toBe('callback')
    expect(
      attribute([capture(1, undefined, 5), capture(2, undefined, 6), capture(3, undefined, 8)])
        ?.kind,
    ).toBe('saturation')
  })

  it('splits back-to-back long callbacks of one loop turn into one block each', () => {
    const c = new LensContext('GET', '', undefined, 0)
    const captures = [
      capture(10, a, 7, 'syncReport'),
      capture(30, a, 7, 'syncReport'),
      capture(45, a, 7, 'syncReport'),
      capture(70, b, 9, 'hashSync'),
      capture(82, b, 9, 'hashSync'),
      capture(95, b, 9, 'hashSync'),
      capture(200, c, 11, 'hashSync'),
      capture(212, c, 11, 'hashSync'),
    ]
    const segments = attributeAll(captures, { startPerf: 0, endPerf: 220 }, 50)!
    expect(segments.map((segment) => segment.kind)).toEqual(['callback', 'callback', 'callback'])
    expect(segments.map((segment) => segment.context)).toEqual([a, b, c])
    expect(segments.map((segment) => segment.culprit?.functionName)).toEqual([
      'syncReport',
      'hashSync',
      'hashSync',
    ])
    // Split at the midpoints between runs, covering the whole stall.
    expect(segments.map((segment) => [segment.startPerf, segment.endPerf])).toEqual([
      [0, 57.5],
      [57.5, 147.5],
      [147.5, 220],
    ])
  })

  it('is saturation when the one request probed began too late in the stall to have held it', () => {
    // Stall 0…100 ms, threshold 50: a request that started at 60 ran at most 40 ms of it.
    const late = new LensContext('GET', '', undefined, 60)
    const found = attribute([capture(70, late, 7)])
    expect(found?.kind).toBe('saturation')
    expect(found?.context).toBeUndefined()
    // Started at 40: it may have held the loop for 60 ms, a threshold or more.
    const early = new LensContext('GET', '', undefined, 40)
    expect(attribute([capture(70, early, 7)])?.kind).toBe('callback')
    // Started before the stall (work after an await): the stall may be all its own.
    const before = new LensContext('GET', '', undefined, -500)
    expect(attribute([capture(70, before, 7)])?.context).toBe(before)
  })

  it('does not blame anyone for a single probe with no application frame', () => {
    const lone: Capture = {
      time: 1,
      stallId: 1,
      context: a,
      asyncId: 7,
      stack: 'Error\n    at <anonymous>:1:41\n    at emit (node:events:519:28)',
    }
    const found = attribute([lone])
    expect(found?.kind).toBe('unknown')
    expect(found?.context).toBeUndefined()
  })

  it('ignores probes that ran with no JavaScript under them, and says when stacks were rate-limited', () => {
    const idle: Capture = {
      time: 1,
      stallId: 1,
      context: undefined,
      asyncId: 1,
      stack: 'Error\n    at <anonymous>:1:41',
    }
    expect(attribute([idle])).toBeUndefined()
    const limited: Capture = { time: 1, stallId: 1, context: a, asyncId: 7, stack: undefined }
    const found = attribute([limited, { ...limited, time: 2 }])
    expect(found?.kind).toBe('callback')
    expect(found?.stackMissing).toBe('rate-limited')
  })
})

describe('report', () => {
  function block(
    route: string,
    ms: number,
    fn: string | undefined,
    kind: BlockEvent['kind'] = 'callback',
  ): BlockEvent {
    const culprit =
      fn === undefined
        ? undefined
        : { functionName: fn, file: `${process.cwd()}/src/${fn}.ts`, line: 12, column: 5 }
    return {
      startTime: Date.now(),
      durationMs: ms,
      kind,
      context:
        kind === 'saturation'
          ? { method: '', route: '', task: '' }
          : { method: 'POST', route, task: '' },
      frames: culprit === undefined ? [] : [culprit],
      culprit,
      stackMissing: undefined,
      hang: false,
    }
  }

  it('aggregates blockers worst first, saturation apart, and renders a table a person reads', () => {
    const aggregator = new ReportAggregator()
    for (let i = 0; i < 12; i++)
      aggregator.recordBlock(block('/process', 5_000, 'hashPasswordsSync'))
    aggregator.recordBlock(block('/render', 120, 'renderReportSync'))
    aggregator.recordBlock(block('', 300, undefined, 'saturation'))
    const blockers = aggregator.blockers()
    expect(blockers.map((row) => row.route)).toEqual(['/process', '/render'])
    expect(blockers[0]).toMatchObject({ count: 12, totalMs: 60_000, maxMs: 5_000 })
    const report: LooplensReport = {
      generatedAt: new Date(aggregator.startedAt + 65_000).toISOString(),
      since: new Date(aggregator.startedAt).toISOString(),
      blockThresholdMs: 50,
      blocks: aggregator.blocks,
      blockers,
      saturation: aggregator.saturation,
      routes: [
        { method: 'POST', route: '/process', requests: 12, syncTotalMs: 60_000, syncMaxMs: 5_000 },
      ],
      loop: {
        delay: { min: 0, mean: 1, p50: 0.4, p90: 1, p99: 12, max: 5_000, count: 100 },
        utilization: 0.9,
        blocks: aggregator.blocks,
        stacks: { active: true, reason: undefined },
      },
    }
    const text = formatReport(report)
    expect(text).toContain('14 blocks')
    expect(text).toMatch(
      /1\s+POST \/process\s+12\s+60 s\s+5\.0 s\s+hashPasswordsSync\s+src\/hashPasswordsSync\.ts:12:5/,
    )
    expect(text).toContain(
      'POST /process blocked the loop for 60 s in 12 blocks (longest 5.0 s) in hashPasswordsSync',
    )
    expect(text).toContain('Saturation: 1 stall')
  })

  it('gives advice from the frames', () => {
    const frame = (functionName: string) => ({ functionName, file: '', line: 0, column: 0 })
    expect(adviceFor([frame('Object.pbkdf2Sync')])).toMatch(/async crypto/)
    expect(adviceFor([frame('Object.readFileSync')])).toMatch(/promise-based/)
    expect(adviceFor([frame('Atomics.wait')])).toMatch(/timer/)
    expect(adviceFor([frame('JSON.parse')])).toMatch(/JSON/)
    expect(adviceFor([frame('RegExp.test')])).toMatch(/regular expression/)
    expect(adviceFor([frame('spin')])).toMatch(/background task/)
    // A function of the application named …Sync is not a Node *Sync API.
    const own = { functionName: 'processJobSync', file: '/srv/app/src/jobs.js', line: 3, column: 1 }
    expect(adviceFor([own])).toMatch(/background task/)
    expect(adviceFor([frame('readFileSync'), own])).toMatch(/promise-based/)
  })
})
