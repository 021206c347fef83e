import { writeFileSync } from 'node:fs'
import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { startFixture } from '../helpers/fixture.js'

describe('test/helpers/fixture', () => {
  it('starts a fixture, serves requests, and stops it cleanly', async () => {
    const fixture = await startFixture('foundation-app.js')
    try {
      expect(fixture.url).toBe(`http://127.0.0.1:${fixture.port}`)
      const response = await fetch(`${fixture.url}/fast`)
      expect(await response.text()).toBe('ok')
      expect(fixture.messages).toContainEqual({ type: 'listening', port: fixture.port })
    } finally {
      const exit = await fixture.stop()
      expect(exit.signal === null ? exit.code : exit.signal).toBe(0)
    }
  })

  it('rejects with the stderr of a fixture that crashes before listening', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'looplens-fixture-'))
    const file = path.join(dir, 'crash.mjs')
    writeFileSync(file, "console.error('boom from the fixture'); process.exit(3)\n")
    await expect(startFixture(file)).rejects.toThrow(/boom from the fixture/)
  })

  it('rejects within 10 s when a fixture never listens, and kills it', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'looplens-fixture-'))
    const file = path.join(dir, 'silent.mjs')
    writeFileSync(file, "console.error('waiting forever'); setInterval(() => {}, 1000)\n")
    const started = performance.now()
    await expect(startFixture(file)).rejects.toThrow(
      /did not listen within 10000 ms[\s\S]*waiting forever/,
    )
    expect(performance.now() - started).toBeLessThan(11_000)
  }, 20_000)
})
