/**
 * `looplens run` end to end on an Express app with a known culprit (no looplens in its code),
 * `looplens report` on what it saved, and the HTML report in headless Chromium.
 */
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs'
import path from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import type { SessionFile } from '../../src/instrument/session.js'
import { FIXTURES, looplens, OUTPUT, type Ran, tempDir } from './cli-helpers.js'

const APP = path.join(FIXTURES, 'cli-express-app.js')

describe('looplens run', () => {
  let out: string
  let ran: Ran
  beforeAll(async () => {
    out = tempDir()
    // One connection: each 60 ms handler is a stall of its own (with several connections, the
    // loop runs several handlers per turn and the detector may rightly call it saturation).
    ran = await looplens(
      [
        'run',
        '--out',
        out,
        '--load-path',
        '/api/orders/42/invoice',
        '--duration',
        '3',
        '--connections',
        '1',
        '--',
        'node',
        APP,
      ],
      { timeoutMs: 60_000 },
    )
  }, 70_000)

  it('drives load, stops the app and prints the report naming the route and the function', () => {
    expect(ran.code, ran.stderr).toBe(0)
    expect(ran.stderr).toMatch(/the app listens on port \d+/)
    expect(ran.stderr).toMatch(/load: \d+ requests/)
    expect(ran.stdout).toContain('looplens — event-loop blocking report')
    expect(ran.stdout).toContain('GET /api/orders/:id/invoice')
    expect(ran.stdout).toMatch(/renderInvoice\s+test\/fixtures\/cli-express-app\.js:\d+/)
    expect(ran.stdout).not.toContain('/health')
  })

  it('writes the JSON session and a self-contained HTML report', () => {
    const session = JSON.parse(readFileSync(path.join(out, 'report.json'), 'utf8')) as SessionFile
    const [top] = session.report.blockers
    expect(top).toMatchObject({ method: 'GET', route: '/api/orders/:id/invoice', kind: 'callback' })
    expect(top!.culprit?.functionName).toBe('renderInvoice')
    expect(session.timeline.length).toBeGreaterThanOrEqual(2)
    expect(session.events.length).toBe(session.report.blocks.count)
    const html = readFileSync(path.join(out, 'report.html'), 'utf8')
    expect(html).toContain('renderInvoice')
    expect(html).toContain('GET /api/orders/:id/invoice')
    // Self-contained: no script, no stylesheet or image from anywhere.
    expect(html).not.toMatch(/<script|<link|<img|@import|url\(/i)
    expect(html.replaceAll('http://www.w3.org/2000/svg', '')).not.toMatch(/https?:\/\//)
  })

  it('renders the saved session again as text and as HTML (looplens report)', async () => {
    const file = path.join(out, 'report.json')
    const text = await looplens(['report', file])
    expect(text.code).toBe(0)
    expect(text.stdout).toContain('GET /api/orders/:id/invoice')
    expect(text.stdout).toContain('renderInvoice')
    const htmlFile = path.join(out, 'again.html')
    const html = await looplens(['report', file, '--html', htmlFile])
    expect(html.code).toBe(0)
    expect(readFileSync(htmlFile, 'utf8')).toBe(readFileSync(path.join(out, 'report.html'), 'utf8'))
    const bad = await looplens(['report', path.join(FIXTURES, 'cli-express-app.js')])
    expect(bad.code).toBe(1)
    expect(bad.stderr).toContain('looplens:')
  })

  it('shows the charts and the top blockers in headless Chromium, without console errors', () => {
    mkdirSync(OUTPUT, { recursive: true })
    const screenshot = path.join(OUTPUT, 'run-report.png')
    const profile = tempDir('looplens-chromium-')
    const chromium = spawnSync(
      '/usr/bin/chromium',
      [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        `--user-data-dir=${profile}`,
        '--hide-scrollbars',
        '--enable-logging=stderr',
        '--v=0',
        '--window-size=1100,2300',
        `--screenshot=${screenshot}`,
        `file://${path.join(out, 'report.html')}`,
      ],
      { encoding: 'utf8', timeout: 60_000 },
    )
    expect(chromium.status, chromium.stderr).toBe(0)
    expect(existsSync(screenshot)).toBe(true)
    expect(statSync(screenshot).size).toBeGreaterThan(30_000)
    // Console messages are logged as `CONSOLE(line)] "message"`; a page with no script and no
    // resource has none, and no failed load either.
    expect(chromium.stderr).not.toMatch(/CONSOLE\(|Failed to load resource|ERR_FILE_NOT_FOUND/)
  })
})
