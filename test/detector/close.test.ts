/**
 * close() resolves by itself: nothing else has to keep the event loop alive while the watchdog
 * worker stops.
 */
import { spawnSync } from 'node:child_process'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'

const fixture = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  '../fixtures/detector-close-last.js',
)

describe('close()', () => {
  it('resolves when it is the last thing a program awaits', () => {
    for (let run = 0; run < 3; run++) {
      const result = spawnSync(process.execPath, [fixture], { encoding: 'utf8', timeout: 10_000 })
      expect(result.stderr).not.toContain('Waiting for the debugger')
      expect(result.stdout.trim(), result.stderr).toBe('closed')
      expect(result.status).toBe(0)
    }
  })
})
