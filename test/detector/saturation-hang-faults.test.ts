/**
 * Saturation is not a culprit; a hang is reported while it lasts; faults degrade, never break;
 * stacks of a compiled TypeScript app point at the .ts source.
 */
import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import type { BlockEvent } from 'looplens'
import ts from 'typescript'
import { describe, expect, it } from 'vitest'
import { type Fixture, startFixture } from '../helpers/fixture.js'

const here = path.dirname(fileURLToPath(import.meta.url))
const fixtures = path.resolve(here, '../fixtures')
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * The block of one route. Other stalls may come first (a busy machine can stall a process that
 * is still starting up), so the test looks for the route's own.
 */
async function eventFor(fixture: Fixture, route: string, timeoutMs = 5_000): Promise<BlockEvent> {
  const deadline = performance.now() + timeoutMs
  while (performance.now() < deadline) {
    const found = fixture.events.find((event) => event.context.route === route)
    if (found !== undefined) return found
    await sleep(10)
  }
  throw new Error(`no block event for ${route}: ${JSON.stringify(fixture.events)}`)
}

describe('saturation', () => {
  it('never blames one route for a loop turn made of many short callbacks', async () => {
    const fixture = await startFixture('detector-saturation.js')
    try {
      for (let round = 0; round < 6; round++) {
        const requests = []
        for (let i = 0; i < 40; i++) {
          requests.push(fetch(`${fixture.url}/${i % 2 ? 'a' : 'b'}`).then((r) => r.text()))
        }
        await Promise.all(requests)
        await sleep(100)
      }
      await sleep(300)
      const events = fixture.events
      // 40 concurrent 5 ms requests make stalls well past the 50 ms threshold…
      expect(events.length).toBeGreaterThan(0)
      expect(events.some((event) => event.kind === 'saturation')).toBe(true)
      // …and none of them is pinned on a route as if one callback had held the loop.
      const blamed = events.filter(
        (event) => event.kind === 'callback' && event.context.route !== '',
      )
      expect(blamed, JSON.stringify(blamed, null, 1)).toEqual([])
      for (const event of events.filter((event) => event.kind === 'saturation')) {
        expect(event.context).toEqual({ method: '', route: '', task: '' })
        expect(event.culprit).toBeUndefined()
      }
    } finally {
      await fixture.stop()
    }
  })
})

describe('hangs', () => {
  it('reports a 3 s busy loop on stderr, with its stack, before it ends', async () => {
    const fixture = await startFixture('detector-app.js', { env: { HANG_REPORT_MS: '1000' } })
    try {
      let answeredAt = 0
      const request = fetch(`${fixture.url}/hang?ms=3000`)
        .then((response) => response.text())
        .then(() => {
          answeredAt = performance.now()
        })
      const deadline = performance.now() + 10_000
      let reportedAt = 0
      while (performance.now() < deadline && reportedAt === 0) {
        if (/blocked for \d+ ms and counting, in GET \/hang/.test(fixture.stderr())) {
          reportedAt = performance.now()
        }
        await sleep(20)
      }
      await request
      expect(reportedAt, fixture.stderr()).toBeGreaterThan(0)
      expect(reportedAt).toBeLessThan(answeredAt)
      expect(fixture.stderr()).toMatch(/at spinLoop \(.*detector-app\.js:\d+:\d+\)/)
      const event = await eventFor(fixture, '/hang')
      expect(event!.hang).toBe(true)
      expect(event!.durationMs).toBeGreaterThan(2_900)
    } finally {
      await fixture.stop()
    }
  })
})

describe('faults degrade, never break', () => {
  async function blockAndServe(simulate: string) {
    const fixture = await startFixture('detector-app.js', { env: { SIMULATE: simulate } })
    try {
      if (simulate === 'kill-worker') {
        expect(await fetch(`${fixture.url}/kill-watchdog`).then((r) => r.text())).toBe('killed')
        await sleep(100)
      }
      await fetch(`${fixture.url}/loop`).then((r) => r.text())
      // Detection, measurement and attribution go on.
      const event = await eventFor(fixture, '/loop')
      expect(event!.durationMs).toBeGreaterThan(140)
      // The app keeps serving.
      for (let i = 0; i < 5; i++) {
        expect((await fetch(`${fixture.url}/fast`)).status).toBe(200)
      }
      return { fixture, event: event! }
    } finally {
      const started = performance.now()
      const exit = await fixture.stop()
      // It exits by itself, promptly, and cleanly.
      expect(exit.code).toBe(0)
      expect(performance.now() - started).toBeLessThan(1_900)
      expect(fixture.stderr()).not.toContain('Waiting for the debugger')
    }
  }

  function warnings(fixture: { messages: unknown[] }) {
    return fixture.messages.filter((m) => (m as { type: string }).type === 'warning') as {
      code: string
      message: string
    }[]
  }

  it('without an inspector: no stacks, one warning, detection goes on', async () => {
    const { fixture, event } = await blockAndServe('no-inspector')
    expect(event.stackMissing).toBe('unavailable')
    expect(event.frames).toEqual([])
    const warned = warnings(fixture)
    expect(warned).toHaveLength(1)
    expect(warned[0]!.code).toBe('LOOPLENS_INSPECTOR_UNAVAILABLE')
    expect(warned[0]!.message).toContain('built without the inspector')
  })

  it('when the watchdog worker is killed mid-run: no stacks, one warning, detection goes on', async () => {
    const { fixture, event } = await blockAndServe('kill-worker')
    expect(event.stackMissing).toBe('unavailable')
    const warned = warnings(fixture)
    expect(warned).toHaveLength(1)
    expect(warned[0]!.code).toBe('LOOPLENS_WATCHDOG_EXITED')
  })

  it('with a throwing block listener: reported once, requests unaffected', async () => {
    const { fixture, event } = await blockAndServe('throwing-listener')
    expect(event.culprit?.functionName).toBe('spinLoop')
    const warned = warnings(fixture)
    expect(warned).toHaveLength(1)
    expect(warned[0]!.code).toBe('LOOPLENS_LISTENER_FAILED')
  })
})

describe('source maps', () => {
  it('names the .ts line of a compiled TypeScript app run with --enable-source-maps', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'looplens-sourcemap-'))
    const source = readFileSync(path.join(fixtures, 'detector-sourcemap.ts'), 'utf8')
    const compiled = ts.transpileModule(source, {
      fileName: 'app.ts',
      compilerOptions: {
        module: ts.ModuleKind.ESNext,
        target: ts.ScriptTarget.ES2022,
        sourceMap: true,
      },
    })
    writeFileSync(path.join(dir, 'app.ts'), source)
    writeFileSync(path.join(dir, 'app.js'), compiled.outputText)
    writeFileSync(path.join(dir, 'app.js.map'), compiled.sourceMapText!)
    copyFileSync(path.join(fixtures, '_harness.js'), path.join(dir, '_harness.js'))
    writeFileSync(path.join(dir, 'package.json'), '{"type":"module"}')
    // Resolve `looplens` (the built package) and `express` from the project.
    mkdirSync(path.join(dir, 'node_modules'))
    symlinkSync(path.resolve(here, '../..'), path.join(dir, 'node_modules', 'looplens'))
    symlinkSync(
      path.resolve(here, '../../node_modules/express'),
      path.join(dir, 'node_modules', 'express'),
    )
    const expectedLine = source.split('\n').findIndex((line) => line.includes('CULPRIT-LINE')) + 1

    const fixture = await startFixture(path.join(dir, 'app.js'), {
      execArgv: ['--enable-source-maps'],
    })
    try {
      await fetch(`${fixture.url}/checksum`).then((r) => r.text())
      const event = await eventFor(fixture, '/checksum')
      expect(event!.culprit?.functionName).toBe('computeChecksumSync')
      expect(event!.culprit?.file).toMatch(/app\.ts$/)
      expect(event!.culprit?.line).toBe(expectedLine)
    } finally {
      await fixture.stop()
    }
  })
})
