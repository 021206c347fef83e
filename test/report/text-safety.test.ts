/**
 * Names looplens did not choose (task names, regex route templates, function names, file paths)
 * never reach a terminal raw: control characters show as escapes and names are bounded — in
 * formatReport, `looplens report`, the stderr hang report and the HTML report.
 */
import { execFile, fork } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'
import type { SessionFile } from '../../src/instrument/session.js'
import { formatReport } from '../../src/report/format.js'
import { renderHtmlReport } from '../../src/report/html.js'
import type { BlockerRow, LooplensReport, StackFrame } from '../../src/types.js'
import { MAX_NAME_LENGTH, terminalPath, terminalText } from '../../src/util/text.js'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
const ESC = '\u001b'
/** What a terminal would act on: C0 controls but the line feed, DEL, C1 controls. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is the point
const RAW_CONTROL = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/
const FORGED_ROW = '  2  GET /forged  999  1 s  1 s  forged'
const TASK = `${ESC}[2Jimport-job\n${FORGED_ROW}`
const ROUTE = `/^\\/files\\/(.*)$/${ESC}[8m\r\n${FORGED_ROW}`
const FUNCTION = `${ESC}]0;owned\u0007spin${ESC}[31m\u009b2J`
const HUGE = `x${'y'.repeat(8 * 1024 * 1024)}`

function frame(functionName: string, file: string): StackFrame {
  return { functionName, file, line: 12, column: 5 }
}

function row(overrides: Partial<BlockerRow>): BlockerRow {
  const culprit = frame(FUNCTION, `/srv/app/${ESC}[1msrc/jobs.ts`)
  return {
    kind: 'callback',
    method: '',
    route: '',
    task: '',
    culprit,
    count: 3,
    totalMs: 900,
    maxMs: 400,
    sampleFrames: [culprit, frame(HUGE, `/srv/app/${'deep/'.repeat(200_000)}x.js`)],
    firstSeen: 0,
    lastSeen: 0,
    ...overrides,
  }
}

function hostileReport(): LooplensReport {
  const blockers = [
    row({ task: TASK }),
    row({ method: 'GET', route: ROUTE, totalMs: 800 }),
    row({ method: 'POST', route: HUGE, totalMs: 700, culprit: frame(HUGE, HUGE) }),
  ]
  const blocks = { count: 9, totalMs: 2_400, maxMs: 400 }
  return {
    generatedAt: new Date(60_000).toISOString(),
    since: new Date(0).toISOString(),
    blockThresholdMs: 50,
    blocks,
    blockers,
    saturation: { count: 0, totalMs: 0, maxMs: 0 },
    routes: [{ method: 'GET', route: ROUTE, requests: 1, syncTotalMs: 1, syncMaxMs: 1 }],
    loop: {
      delay: { min: 0, mean: 1, p50: 1, p90: 1, p99: 1, max: 400, count: 10 },
      utilization: 0.5,
      blocks,
      stacks: { active: true, reason: undefined },
    },
  }
}

function hostileSession(): SessionFile {
  const report = hostileReport()
  return {
    format: 'looplens-session',
    version: 1,
    meta: {
      looplensVersion: '0.1.0',
      nodeVersion: process.version,
      pid: 1,
      script: `server${ESC}[2J.js`,
      cwd: '/srv/app',
      startedAt: new Date(0).toISOString(),
      endedAt: new Date(60_000).toISOString(),
      reason: 'exit',
      exitCode: 0,
      blockThresholdMs: 50,
      timelineIntervalMs: 1000,
      eventsDropped: 0,
    },
    report,
    timeline: [],
    events: report.blockers.map((blocker, index) => ({
      startTime: 1_000 * (index + 1),
      durationMs: 300,
      kind: 'callback' as const,
      context: { method: blocker.method, route: blocker.route, task: blocker.task },
      frames: blocker.sampleFrames,
      culprit: blocker.culprit,
      stackMissing: undefined,
      hang: false,
    })),
  }
}

/** Every line of a text output: none raw, none forged, none longer than a few names. */
function expectSafeLines(text: string, maxLine: number): void {
  expect(text).not.toMatch(RAW_CONTROL)
  const lines = text.split('\n')
  expect(lines.filter((line) => line.startsWith(FORGED_ROW.slice(0, 12)))).toEqual([])
  expect(Math.max(...lines.map((line) => line.length))).toBeLessThanOrEqual(maxLine)
}

describe('terminalText', () => {
  it('shows control characters as escapes and bounds the length', () => {
    expect(terminalText('GET /users/:id')).toBe('GET /users/:id')
    expect(terminalText(`a${ESC}[2Jb\nc\rd\te\u007ff\u009bg`)).toBe(
      'a\\x1b[2Jb\\x0ac\\x0dd\\x09e\\x7ff\\x9bg',
    )
    expect(terminalText('a\u2028b\u202ec')).toBe('a\\u2028b\\u202ec')
    const long = terminalText('z'.repeat(1_000))
    expect(long).toHaveLength(MAX_NAME_LENGTH)
    expect(long.endsWith('…')).toBe(true)
    expect(terminalText('z'.repeat(MAX_NAME_LENGTH))).toBe('z'.repeat(MAX_NAME_LENGTH))
    // Never half an escape, never half a surrogate pair.
    expect(terminalText(`${'z'.repeat(196)}${ESC}`)).toBe(`${'z'.repeat(196)}\\x1b`)
    expect(terminalText(`${'z'.repeat(197)}${ESC}`)).toBe(`${'z'.repeat(197)}…`)
    expect(terminalText(`${'z'.repeat(198)}😀😀`)).toBe(`${'z'.repeat(198)}…`)
    // A path keeps its end.
    expect(terminalPath(`/${'a/'.repeat(500)}file.ts:12:5`)).toMatch(/^….*a\/file\.ts:12:5$/)
  })

  it('handles an 8 MB name in well under a second', () => {
    const start = performance.now()
    expect(terminalText(HUGE)).toHaveLength(MAX_NAME_LENGTH)
    expect(performance.now() - start).toBeLessThan(500)
  })
})

describe('text outputs with hostile names', () => {
  it('formatReport', () => {
    const text = formatReport(hostileReport(), { cwd: '/srv/app' })
    expectSafeLines(text, 1_200)
    expect(text).toContain('task \\x1b[2Jimport-job\\x0a  2  GET /forged')
    expect(text).toContain('\\x1b]0;owned\\x07spin\\x1b[31m\\x9b2J')
  })

  it('the HTML report escapes for HTML and bounds names', () => {
    const html = renderHtmlReport(hostileSession())
    expect(html).not.toMatch(RAW_CONTROL)
    expect(html.length).toBeLessThan(200_000)
    expect(html).toContain('task \\x1b[2Jimport-job')
    expect(html).not.toContain('<script')
  })

  it('looplens report (the CLI) prints a saved session safely', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'looplens-text-'))
    try {
      const file = path.join(dir, 'session.json')
      writeFileSync(file, JSON.stringify(hostileSession()))
      const { stdout } = await promisify(execFile)(
        process.execPath,
        [path.join(ROOT, 'dist/cli/main.js'), 'report', file],
        { maxBuffer: 64 * 1024 * 1024, timeout: 20_000 },
      )
      expectSafeLines(stdout, 1_200)
      expect(stdout).toContain('task \\x1b[2Jimport-job')
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('the stderr hang report and the report of a live process', async () => {
    const child = fork(path.join(ROOT, 'test/fixtures/hostile-names-app.js'), [], {
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      cwd: ROOT,
    })
    let stdout = ''
    let stderr = ''
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk
    })
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk
    })
    const code = await new Promise<number | null>((resolve) => {
      const timer = setTimeout(() => child.kill('SIGKILL'), 20_000)
      child.on('exit', (exitCode) => {
        clearTimeout(timer)
        resolve(exitCode)
      })
    })
    expect(code, stderr.slice(0, 2_000)).toBe(0)
    // The hang was reported while it lasted, naming the task, escaped.
    expect(stderr).toMatch(/blocked for \d+ ms and counting, in task \\x1b\[2Jimport-job\\x0a {2}2/)
    expectSafeLines(stderr, 1_200)
    expect(stdout).toContain('task \\x1b[2Jimport-job\\x0a')
    expect(stdout).toContain('\\x1b]0;owned\\x07spin\\x1b[31m\\x9b2J')
    expectSafeLines(stdout, 1_200)
  })
})
