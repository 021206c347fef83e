/**
 * Signals keep their meaning under the preload (issue 13, defect 5). Each app style runs twice in
 * a real child process, without and with `--import looplens/register`, and gets the same signal:
 * the exit status (code or signal) must be the same, and under the preload a report must exist
 * afterwards — `looplens report <file>` renders it (from the journal when the process died before
 * it could write the final file) and names the culprit.
 */
import { existsSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { FIXTURES, launch, looplens, REGISTER, tempDir, until } from '../cli/cli-helpers.js'

const APP = path.join(FIXTURES, 'signals-app.js')

type Style = 'plain' | 'signal-exit3' | 'signal-exit4' | 'graceful'
type Hang = 'none' | 'loop' | 'atomics'

interface Ended {
  code: number | null
  signal: NodeJS.Signals | null
  /** Still running this long after the signal: it had to be killed by the test. */
  ignoredTheSignal: boolean
  stdout: string
  stderr: string
  reportFile: string
  /** A block of checksumUpload, with its stack, was in the journal before the signal. */
  blockJournaled: boolean
}

function portOf(stdout: string): number | undefined {
  const match = /listening on (\d+)/.exec(stdout)
  return match === null ? undefined : Number(match[1])
}

/** How long an app may take to act on a signal before the test calls it ignored. */
const SIGNAL_WAIT_MS = 6_000

/**
 * Start the app, make it block once (or hang), send `signal`, and see how it ends. With the
 * preload, a hang is waited for until the watchdog has reported it (it is in the journal then).
 */
async function runApp(
  style: Style,
  hang: Hang,
  signal: NodeJS.Signals,
  preload: boolean,
): Promise<Ended> {
  const reportFile = path.join(tempDir('looplens-signals-'), 'report.json')
  const app = launch(process.execPath, preload ? ['--import', REGISTER, APP] : [APP], {
    env: {
      SIGNAL_STYLE: style,
      HANG: hang,
      LOOPLENS_REPORT_FILE: reportFile,
      LOOPLENS_METRICS_PORT: 'off',
      LOOPLENS_HANG_REPORT_MS: '300',
    },
    timeoutMs: 30_000,
  })
  await until(() => portOf(app.stdout()) !== undefined, 'the app to listen')
  const url = `http://127.0.0.1:${portOf(app.stdout())}`
  let blockJournaled = false
  if (hang === 'none') {
    // Under the preload, until a block with its stack is in the journal: the first block may
    // come before the watchdog worker is up (no stack then). Bounded.
    const journal = `${reportFile}.journal`
    const stackJournaled = () =>
      existsSync(journal) && readFileSync(journal, 'utf8').includes('checksumUpload')
    for (let i = 0; i < 20; i++) {
      expect((await fetch(`${url}/slow`, { method: 'POST', body: 'x' })).status).toBe(200)
      // The block is published once the heartbeat has measured its end (a few ms later).
      await new Promise((resolve) => setTimeout(resolve, 200))
      if (!preload) break
      blockJournaled = stackJournaled()
      if (blockJournaled) break
    }
  } else {
    // Never answered: the app hangs inside the handler.
    fetch(`${url}/hang`).catch(() => undefined)
    await until(() => app.stdout().includes('hanging'), 'the app to hang')
    if (preload) {
      await until(
        () => app.stderr().includes('the event loop has been blocked'),
        'the hang report on stderr',
      )
    }
  }
  app.child.kill(signal)
  let ignoredTheSignal = false
  const timer = setTimeout(() => {
    ignoredTheSignal = true
    app.child.kill('SIGKILL')
  }, SIGNAL_WAIT_MS)
  const ran = await app.done
  clearTimeout(timer)
  return {
    code: ran.code,
    signal: ran.signal,
    ignoredTheSignal,
    stdout: ran.stdout,
    stderr: ran.stderr,
    reportFile,
    blockJournaled,
  }
}

/** What Node itself does with each app and signal (the statuses without looplens). */
function expectedStatus(style: Style, hang: Hang, signal: NodeJS.Signals) {
  // A hung app never runs its JavaScript handlers: only a default action can end it, and the
  // graceful app replaced that default with a listener that cannot run.
  if (hang !== 'none' && style === 'graceful') return { ignoredTheSignal: true }
  if (style === 'graceful') return { code: signal === 'SIGINT' ? 3 : 4, signal: null }
  return { code: null, signal, ignoredTheSignal: false }
}

/**
 * What was journaled before the signal is in the report. (On a machine starved of CPU the
 * detector may publish none of the 120 ms blocks with a stack — its business, not this test's:
 * then the report must still exist and render.)
 */
async function expectBlockReported(ended: Ended): Promise<void> {
  const text = await reportText(ended.reportFile)
  expect(text).toContain('looplens — event-loop blocking report')
  if (ended.blockJournaled) expect(text, text).toContain('checksumUpload')
}

/** `looplens report <file>`: the text report, from the final file or from the journal. */
async function reportText(file: string): Promise<string> {
  const ran = await looplens(['report', file], { timeoutMs: 20_000 })
  expect(ran.code, `looplens report ${file}\n${ran.stderr}`).toBe(0)
  return ran.stdout
}

const STYLES: Style[] = ['plain', 'signal-exit3', 'signal-exit4', 'graceful']
const SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM']

describe('signals under the preload: the same exit status, and a report', () => {
  for (const style of STYLES) {
    for (const signal of SIGNALS) {
      it(`${style} app, ${signal}`, async () => {
        const bare = await runApp(style, 'none', signal, false)
        const lens = await runApp(style, 'none', signal, true)
        const status = (ended: Ended) => ({
          code: ended.code,
          signal: ended.signal,
          ignoredTheSignal: ended.ignoredTheSignal,
        })
        expect(status(bare)).toMatchObject(expectedStatus(style, 'none', signal))
        expect(status(lens), lens.stderr).toEqual(status(bare))
        if (style.startsWith('signal-exit')) {
          expect(bare.stdout).toContain(`cleanup ${signal}`)
          expect(lens.stdout).toContain(`cleanup ${signal}`)
        }
        if (style === 'graceful') {
          expect(bare.stdout).toContain('graceful done')
          expect(lens.stdout).toContain('graceful done')
        }
        // signal-exit re-raises the signal with process.kill(process.pid): Node then prints
        // "Waiting for the debugger to disconnect..." for any connected inspector session (the
        // watchdog's) on its way to the same death; the other apps die without a word.
        if (!style.startsWith('signal-exit')) {
          expect(lens.stderr).not.toContain('Waiting for the debugger')
        }
        await expectBlockReported(lens)
      })
    }
  }

  for (const hang of ['loop', 'atomics'] as const) {
    for (const signal of SIGNALS) {
      it(`hung app (${hang}), ${signal}: dies at once, as without looplens; the report names the hang`, async () => {
        const bare = await runApp('plain', hang, signal, false)
        const lens = await runApp('plain', hang, signal, true)
        expect(bare).toMatchObject(expectedStatus('plain', hang, signal))
        expect({ code: lens.code, signal: lens.signal, ignored: lens.ignoredTheSignal }).toEqual({
          code: bare.code,
          signal: bare.signal,
          ignored: false,
        })
        const text = await reportText(lens.reportFile)
        expect(text).toContain(hang === 'loop' ? 'spinForever' : 'waitForever')
        expect(text).toContain('GET')
      })
    }
  }

  it('hung app with its own handlers: ignores SIGTERM as without looplens; after SIGKILL the report names the hang', async () => {
    const bare = await runApp('graceful', 'loop', 'SIGTERM', false)
    const lens = await runApp('graceful', 'loop', 'SIGTERM', true)
    expect(bare.ignoredTheSignal).toBe(true)
    expect(lens.ignoredTheSignal).toBe(true)
    expect(lens.signal).toBe('SIGKILL')
    expect(existsSync(lens.reportFile)).toBe(false)
    expect(await reportText(lens.reportFile)).toContain('spinForever')
  })

  for (const style of STYLES) {
    it(`${style} app, SIGKILL: the report still exists`, async () => {
      const lens = await runApp(style, 'none', 'SIGKILL', true)
      expect(lens.signal).toBe('SIGKILL')
      await expectBlockReported(lens)
    })
  }
})
