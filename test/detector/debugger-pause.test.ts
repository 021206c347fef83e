/**
 * A debugger pause is not a block (issue 13, item 12). A developer who stops the app at a
 * breakpoint, or presses "pause", stops the main thread exactly like a blocking callback would;
 * nothing in Node tells the app. While a debugger server is open (`--inspect`, SIGUSR1,
 * `inspector.open()`), stalls are not published as blocks, the watchdog prints no hang report,
 * and one warning says so. Without a debugger server, a stall as long is still a block: the
 * control, in the same fixture.
 *
 * The pause is real: a worker thread of the child connects an inspector session to its main
 * thread, enables the Debugger domain and pauses it for 600 ms (test/fixtures/debugger-pause.js).
 */
import { execFile } from 'node:child_process'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'

const fixture = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  '../fixtures/debugger-pause.js',
)

const HANG_REPORT = 'looplens: the event loop has been blocked'

interface Outcome {
  stallMs: number
  watchdogActive: boolean
  blocks: { durationMs: number; kind: string; hang: boolean }[]
  warnings: string[]
}

async function runChild(
  mode: string,
  nodeFlags: string[] = [],
): Promise<{ outcome: Outcome; stderr: string }> {
  const { stdout, stderr } = await promisify(execFile)(
    process.execPath,
    [...nodeFlags, fixture, mode],
    { encoding: 'utf8', timeout: 30_000 },
  )
  const outcome = JSON.parse(stdout.trim().split('\n').at(-1) ?? '') as Outcome
  return { outcome, stderr }
}

function debuggerWarnings(outcome: Outcome): string[] {
  return outcome.warnings.filter((code) => code === 'LOOPLENS_DEBUGGER_ATTACHED')
}

describe('a debugger pause mid-run', () => {
  it('is not a block when the process runs with --inspect', async () => {
    const { outcome, stderr } = await runChild('pause', ['--inspect=127.0.0.1:0'])
    // The pause did happen, and lasted: otherwise this test could not fail.
    expect(outcome.stallMs, stderr).toBeGreaterThanOrEqual(500)
    expect(outcome.blocks, stderr).toEqual([])
    expect(stderr).not.toContain(HANG_REPORT)
    expect(debuggerWarnings(outcome), JSON.stringify(outcome)).toHaveLength(1)
  }, 40_000)

  it('is not a block nor a hang report when the debugger server opens at run time', async () => {
    // inspector.open() after the watchdog worker is up: the worker, which cannot see the main
    // thread's inspector.url(), must not report the pause as a hang.
    const { outcome, stderr } = await runChild('open-pause')
    expect(outcome.watchdogActive, stderr).toBe(true)
    expect(outcome.stallMs, stderr).toBeGreaterThanOrEqual(500)
    expect(outcome.blocks, stderr).toEqual([])
    expect(stderr).not.toContain(HANG_REPORT)
    expect(debuggerWarnings(outcome), JSON.stringify(outcome)).toHaveLength(1)
  }, 40_000)

  it('control: a real stall as long, without a debugger server, is a block and a hang', async () => {
    const { outcome, stderr } = await runChild('busy')
    expect(outcome.watchdogActive, stderr).toBe(true)
    expect(outcome.stallMs).toBeGreaterThanOrEqual(500)
    const long = outcome.blocks.filter((block) => block.durationMs >= 500)
    expect(long, JSON.stringify(outcome.blocks)).toHaveLength(1)
    expect(long[0]!.kind).toBe('callback')
    expect(stderr).toContain(HANG_REPORT)
    expect(debuggerWarnings(outcome)).toEqual([])
  }, 40_000)
})
