/**
 * Options that must combine by default (issue 13, defect 11): a `blockThresholdMs` above 2000
 * alone works (the default `hangReportMs` follows it); an explicit conflict is refused naming
 * every variable behind it with its value; and `looplens run` stops at once with that reason
 * instead of waiting for a port the app, running without looplens, never writes.
 */
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { createLooplens } from 'looplens'
import { describe, expect, it } from 'vitest'
import type { SessionFile } from '../../src/instrument/session.js'
import { FIXTURES, launch, looplens, REGISTER, tempDir, until } from '../cli/cli-helpers.js'

const APP = path.join(FIXTURES, 'cli-http-app.js')

function portOf(stdout: string): number | undefined {
  const match = /listening on (\d+)/.exec(stdout)
  return match === null ? undefined : Number(match[1])
}

describe('options that combine by default', () => {
  it('a blockThresholdMs above 2000 works alone: hangReportMs follows it', async () => {
    const lens = createLooplens({ blockThresholdMs: 3_000, captureStacks: false })
    try {
      expect(lens.options.hangReportMs).toBe(3_000)
    } finally {
      await lens.close()
    }
    const below = createLooplens({ blockThresholdMs: 100, captureStacks: false })
    try {
      expect(below.options.hangReportMs).toBe(2_000)
    } finally {
      await below.close()
    }
    // An explicit value below the threshold is still a conflict, and says so.
    expect(() => createLooplens({ blockThresholdMs: 3_000, hangReportMs: 2_000 })).toThrow(
      'options.hangReportMs must be 0 (off) or ≥ options.blockThresholdMs (3000) (received 2000)',
    )
  })

  it('the preload runs with LOOPLENS_BLOCK_THRESHOLD_MS=3000 alone', async () => {
    const reportFile = path.join(tempDir(), 'report.json')
    const app = launch(process.execPath, ['--import', REGISTER, APP], {
      env: {
        LOOPLENS_BLOCK_THRESHOLD_MS: '3000',
        LOOPLENS_REPORT_FILE: reportFile,
        LOOPLENS_METRICS_PORT: 'off',
      },
      timeoutMs: 20_000,
    })
    await until(() => portOf(app.stdout()) !== undefined, 'the app to listen')
    await fetch(`http://127.0.0.1:${portOf(app.stdout())}/`)
    app.child.kill('SIGTERM')
    const ran = await app.done
    expect(ran.stderr).not.toContain('runs without looplens')
    expect(ran.signal).toBe('SIGTERM')
    const text = await looplens(['report', reportFile])
    expect(text.code, text.stderr).toBe(0)
    expect(text.stdout).toContain('threshold 3000 ms')
  })

  it('a refused combination names every variable behind it, with its value', async () => {
    const app = launch(process.execPath, ['--import', REGISTER, APP], {
      env: {
        LOOPLENS_BLOCK_THRESHOLD_MS: '3000',
        LOOPLENS_HANG_REPORT_MS: '1000',
        LOOPLENS_METRICS_PORT: 'off',
      },
      timeoutMs: 20_000,
    })
    await until(() => app.stderr().includes('runs without looplens'), 'the refusal')
    expect(app.stderr()).toContain(
      'looplens: LOOPLENS_HANG_REPORT_MS="1000", LOOPLENS_BLOCK_THRESHOLD_MS="3000": options.hangReportMs must be 0 (off) or ≥ options.blockThresholdMs (3000) (received 1000); the app runs without looplens',
    )
    app.child.kill('SIGTERM')
    await app.done
  })

  it('looplens run --threshold 3000 runs a session', async () => {
    const out = tempDir()
    const ran = await looplens(
      [
        'run',
        '--out',
        out,
        '--threshold',
        '3000',
        '--duration',
        '1',
        '--timeout',
        '10',
        '--',
        'node',
        APP,
      ],
      { timeoutMs: 40_000 },
    )
    expect(ran.code, ran.stderr).toBe(0)
    const session = JSON.parse(readFileSync(path.join(out, 'report.json'), 'utf8')) as SessionFile
    expect(session.meta.blockThresholdMs).toBe(3_000)
  })

  it('looplens run fails at once, with the reason, when the preload refuses to start', async () => {
    const ran = await looplens(
      ['run', '--out', tempDir(), '--duration', '5', '--timeout', '20', '--', 'node', APP],
      { env: { LOOPLENS_HANG_REPORT_MS: '20' }, timeoutMs: 40_000 },
    )
    expect(ran.code).toBe(1)
    expect(ran.stderr).toContain(
      'looplens could not start in the app: LOOPLENS_HANG_REPORT_MS="20": options.hangReportMs must be 0 (off) or ≥ options.blockThresholdMs (50) (received 20)',
    )
    // Not the 20 s --timeout: the refusal is known before the app even listens.
    expect(ran.ms).toBeLessThan(15_000)
  })
})
