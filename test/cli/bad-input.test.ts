/**
 * Bad input to the CLI ends with a clear message and a non-zero exit, never a hang.
 */
import { describe, expect, it } from 'vitest'
import { looplens, tempDir } from './cli-helpers.js'

describe('looplens with bad input', () => {
  it('rejects an unknown flag (exit 2, with the usage)', async () => {
    const ran = await looplens(['run', '--lod-path', '/x', '--', 'node', 'app.js'])
    expect(ran.code).toBe(2)
    expect(ran.stderr).toContain('looplens: unknown option --lod-path for looplens run')
    expect(ran.stderr).toContain('Usage:')
  })

  it('rejects a bad value, naming the flag and the value', async () => {
    const ran = await looplens(['run', '--duration', 'soon', '--', 'node', 'app.js'])
    expect(ran.code).toBe(2)
    expect(ran.stderr).toContain(
      '--duration must be a number between 0.1 and 86400 (received "soon")',
    )
  })

  it('rejects a missing command after --', async () => {
    const ran = await looplens(['run', '--duration', '1', '--'])
    expect(ran.code).toBe(2)
    expect(ran.stderr).toContain("missing the app's command after --")
    const none = await looplens(['doctor'])
    expect(none.code).toBe(2)
    expect(none.stderr).toContain("missing the app's command: put it after --")
  })

  it('rejects an unknown command and a command that is not node', async () => {
    const unknown = await looplens(['profile', '--', 'node', 'app.js'])
    expect(unknown.code).toBe(2)
    expect(unknown.stderr).toContain('unknown command "profile"')
    const npm = await looplens(['run', '--out', tempDir(), '--', 'npm', 'start'])
    expect(npm.code).toBe(1)
    expect(npm.stderr).toContain('the command after -- must start with node (received "npm")')
  })

  it('says so when the app exits at once', async () => {
    const ran = await looplens(['run', '--out', tempDir(), '--', 'node', '-e', 'process.exit(3)'], {
      timeoutMs: 20_000,
    })
    expect(ran.code).toBe(1)
    expect(ran.stderr).toContain('the app exited with code 3 before it listened on a port')
  })

  it('gives up when the port never opens, within the timeout', async () => {
    const ran = await looplens(
      [
        'run',
        '--out',
        tempDir(),
        '--timeout',
        '1.5',
        '--grace',
        '2',
        '--',
        'node',
        '-e',
        'setInterval(() => {}, 1000)',
      ],
      { timeoutMs: 20_000 },
    )
    expect(ran.code).toBe(1)
    expect(ran.stderr).toContain('the app did not listen on a port within 1.5 s (--timeout)')
    expect(ran.ms).toBeLessThan(12_000)
  })

  it('explains where clinic is missing for doctor', async () => {
    const ran = await looplens(
      ['doctor', '--out', tempDir(), '--clinic', '/nonexistent', '--', 'node', 'app.js'],
      { timeoutMs: 20_000 },
    )
    expect(ran.code).toBe(1)
    expect(ran.stderr).toContain('--clinic "/nonexistent": no clinic installation there')
    const resolved = await looplens(['doctor', '--out', tempDir(), '--', 'node', 'app.js'], {
      cwd: tempDir(),
      timeoutMs: 20_000,
    })
    expect(resolved.code).toBe(1)
    expect(resolved.stderr).toContain('looplens doctor needs clinic (an optional peer dependency)')
  })
})
