/**
 * `node --import looplens/register app.js` on a plain node:http server (no Express, no looplens
 * in the code): stalls attributed by method, metrics on their own port, the report kept through
 * SIGINT (from the session's journal: looplens adds no signal listener), the app's signal
 * semantics kept, bad variables never fatal.
 */
import { readFileSync } from 'node:fs'
import { createServer } from 'node:net'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { readSessionOrJournal, type SessionFile } from '../../src/instrument/session.js'
import { FIXTURES, launch, looplens, REGISTER, tempDir, until } from './cli-helpers.js'

const APP = path.join(FIXTURES, 'cli-http-app.js')

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number }
      server.close(() => resolve(port))
    })
  })
}

function portOf(stdout: string): number | undefined {
  const match = /listening on (\d+)/.exec(stdout)
  return match === null ? undefined : Number(match[1])
}

describe('looplens/register on a plain node:http server', () => {
  it('attributes stalls by method, serves metrics on its own port, keeps the report through SIGINT', async () => {
    const dir = tempDir()
    const reportFile = path.join(dir, 'report.json')
    const metricsPort = await freePort()
    const app = launch(process.execPath, ['--import', REGISTER, APP], {
      env: {
        LOOPLENS_REPORT_FILE: reportFile,
        LOOPLENS_METRICS_PORT: String(metricsPort),
        LOOPLENS_TIMELINE_INTERVAL_MS: '100',
        BLOCK_MS: '120',
      },
      timeoutMs: 30_000,
    })
    await until(() => portOf(app.stdout()) !== undefined, 'the app to listen')
    const url = `http://127.0.0.1:${portOf(app.stdout())}`
    for (let i = 0; i < 3; i++) {
      expect((await fetch(`${url}/slow`, { method: 'POST', body: 'x' })).status).toBe(200)
      expect((await fetch(`${url}/slow`)).status).toBe(200)
    }
    const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text()
    expect(metrics).toMatch(
      /looplens_eventloop_block_duration_seconds_count\{http_request_method="POST",http_route="",task=""\} 3/,
    )
    expect(metrics).toMatch(
      /looplens_request_sync_duration_seconds_count\{http_request_method="GET",http_route=""\} 3/,
    )
    // Our own metrics server is not instrumented: no request of it in the app's metrics.
    expect(metrics).not.toMatch(/http_route="\/metrics"/)

    // A timeline point or two: the route rows reach the journal with the points.
    await new Promise((resolve) => setTimeout(resolve, 400))
    app.child.kill('SIGINT')
    const ran = await app.done
    // No handler of its own: the app dies of SIGINT, as Node would have it. The report is
    // rebuilt from the journal the session kept as it went.
    expect(ran.signal).toBe('SIGINT')
    expect(ran.stderr).not.toContain('Waiting for the debugger')
    const text = await looplens(['report', reportFile])
    expect(text.code, text.stderr).toBe(0)
    expect(text.stdout).toContain('looplens — event-loop blocking report')
    expect(text.stdout).toContain('POST (no route matched)')
    expect(text.stdout).not.toContain('GET (no route matched)')

    const session = readSessionOrJournal(reportFile)
    expect(session.format).toBe('looplens-session')
    expect(session.meta.fromJournal).toBe(true)
    // Rows are per culprit: the three blocks may be split when one probe missed the stack.
    const rows = session.report.blockers
    expect(rows.every((row) => row.method === 'POST' && row.route === '')).toBe(true)
    expect(rows.reduce((sum, row) => sum + row.count, 0)).toBe(3)
    expect(Math.max(...rows.map((row) => row.maxMs))).toBeGreaterThanOrEqual(110)
    expect(session.events).toHaveLength(3)
    expect(session.events.every((event) => event.context.method === 'POST')).toBe(true)
    // The fast GETs were measured too (sync time by method), and blamed for nothing.
    expect(session.report.routes.find((row) => row.method === 'GET')?.requests).toBe(3)
    // The function, from the watchdog's stacks: named by at least one of the three blocks.
    expect(rows.map((row) => row.culprit?.functionName)).toContain('checksumUpload')
  })

  it('keeps the app alive when a variable is wrong, and says which one', async () => {
    const app = launch(process.execPath, ['--import', REGISTER, APP], {
      env: { LOOPLENS_BLOCK_THRESHOLD_MS: 'fast', LOOPLENS_METRICS_PORT: 'off' },
      timeoutMs: 20_000,
    })
    await until(() => portOf(app.stdout()) !== undefined, 'the app to listen')
    expect(app.stderr()).toContain(
      'looplens: LOOPLENS_BLOCK_THRESHOLD_MS must be an integer between 10 and 60000 (received "fast"); the app runs without looplens',
    )
    const response = await fetch(`http://127.0.0.1:${portOf(app.stdout())}/`)
    expect(await response.text()).toBe('ok')
    app.child.kill('SIGTERM')
    const ran = await app.done
    expect(ran.signal).toBe('SIGTERM')
  })

  it('names the variable when looplens refuses the option it holds', async () => {
    const app = launch(process.execPath, ['--import', REGISTER, APP], {
      env: { LOOPLENS_HANG_REPORT_MS: '20', LOOPLENS_METRICS_PORT: 'off' },
      timeoutMs: 20_000,
    })
    await until(() => portOf(app.stdout()) !== undefined, 'the app to listen')
    await until(() => app.stderr().includes('runs without looplens'), 'the message')
    expect(app.stderr()).toMatch(/LOOPLENS_HANG_REPORT_MS="20": options\.hangReportMs must be/)
    app.child.kill('SIGTERM')
    await app.done
  })

  it("leaves SIGTERM to the app's own handler and writes the report when the app exits", async () => {
    const dir = tempDir()
    const reportFile = path.join(dir, 'report.json')
    const script = [
      "import { createServer } from 'node:http'",
      "const server = createServer((req, res) => res.end('ok')).listen(0, '127.0.0.1', () => console.log('listening on ' + server.address().port))",
      "process.on('SIGTERM', () => { console.log('draining'); setTimeout(() => { server.close(); process.exitCode = 7 }, 200) })",
    ].join('\n')
    const app = launch(
      process.execPath,
      ['--import', REGISTER, '--input-type=module', '-e', script],
      {
        env: { LOOPLENS_REPORT_FILE: reportFile, LOOPLENS_METRICS_PORT: 'off' },
        timeoutMs: 20_000,
      },
    )
    await until(() => portOf(app.stdout()) !== undefined, 'the app to listen')
    app.child.kill('SIGTERM')
    const ran = await app.done
    expect(ran.stdout).toContain('draining')
    expect(ran.code).toBe(7)
    const session = JSON.parse(readFileSync(reportFile, 'utf8')) as SessionFile
    // Written at the app's own exit; looplens has no listener, so it cannot know a signal began it.
    expect(session.meta).toMatchObject({ reason: 'exit', exitCode: 7 })
  })
})
