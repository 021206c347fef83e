/**
 * `looplens run` on an app that hangs (issue 13, defect 5): the app is stopped as it would be
 * without looplens — SIGINT ends an app without handlers at once, even stuck; an app whose own
 * SIGINT handler cannot run while it is stuck is killed after --grace — and in both cases the
 * session ends with a report that names the hang's culprit, written by the watchdog worker into
 * the session's journal while the main thread was stuck.
 */
import { existsSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import type { SessionFile } from '../../src/instrument/session.js'
import { FIXTURES, looplens, tempDir } from './cli-helpers.js'

const APP = path.join(FIXTURES, 'signals-app.js')

async function runHungApp(style: 'plain' | 'graceful') {
  const out = tempDir()
  const ran = await looplens(
    ['run', '--out', out, '--duration', '3', '--grace', '1', '--', 'node', APP],
    {
      env: {
        SIGNAL_STYLE: style,
        HANG: 'loop',
        HANG_AFTER_MS: '300',
        LOOPLENS_HANG_REPORT_MS: '500',
      },
      timeoutMs: 40_000,
    },
  )
  return { ran, out }
}

describe('looplens run on a hung app', () => {
  it('an app with its own SIGINT handler is killed after --grace; the report names the hang', async () => {
    const { ran, out } = await runHungApp('graceful')
    expect(ran.code, ran.stderr).toBe(0)
    const said = `stdout:\n${ran.stdout}\nstderr:\n${ran.stderr}`
    expect(ran.stderr, said).toContain('did not exit within 1 s of SIGINT (--grace): killed')
    expect(ran.stderr, said).toMatch(
      /the app was hung when it ended: the loop had been blocked for at least \d+ ms outside any request, in spinForever at test\/fixtures\/signals-app\.js:\d+/,
    )
    expect(ran.stdout).toContain('looplens — event-loop blocking report')
    expect(ran.stdout, said).toMatch(/spinForever\s+test\/fixtures\/signals-app\.js:\d+/)
    const session = JSON.parse(readFileSync(path.join(out, 'report.json'), 'utf8')) as SessionFile
    expect(session.meta).toMatchObject({ reason: 'SIGKILL', fromJournal: true })
    expect(session.meta.hangAtEnd?.culprit?.functionName).toBe('spinForever')
    expect(session.report.blockers[0]?.culprit?.functionName).toBe('spinForever')
    // Hung from 0.3 s to the kill (≥ 3 s later); the worker writes its length once a second.
    expect(session.report.blockers[0]?.maxMs, said).toBeGreaterThanOrEqual(1_500)
    expect(existsSync(path.join(out, 'report.html'))).toBe(true)
    expect(readFileSync(path.join(out, 'report.html'), 'utf8')).toContain('spinForever')
  })

  it('an app without handlers dies of SIGINT at once; the report names the hang', async () => {
    const { ran, out } = await runHungApp('plain')
    expect(ran.code, ran.stderr).toBe(0)
    const said = `stdout:\n${ran.stdout}\nstderr:\n${ran.stderr}`
    expect(ran.stderr, said).not.toContain('(--grace): killed')
    expect(ran.stdout, said).toMatch(/spinForever\s+test\/fixtures\/signals-app\.js:\d+/)
    const session = JSON.parse(readFileSync(path.join(out, 'report.json'), 'utf8')) as SessionFile
    expect(session.meta).toMatchObject({ reason: 'SIGINT', fromJournal: true })
    expect(session.meta.hangAtEnd?.culprit?.functionName).toBe('spinForever')
  })
})
