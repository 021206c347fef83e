/**
 * Start a fixture server (test/fixtures/*.js) in a child process and act as its client.
 *
 * The child is forked with IPC (serialization 'advanced', so BlockEvents arrive intact) and uses
 * test/fixtures/_harness.js: it sends `{ type: 'listening', port }` once it listens on 127.0.0.1,
 * and `{ type: 'block', event }` for every 'block' event of its lens. Because the server lives in
 * another process, a test can block the server's event loop and still measure it from here.
 */
import { type ChildProcess, fork } from 'node:child_process'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import type { BlockEvent } from 'looplens'

/** A running fixture server. */
export interface Fixture {
  /** `http://127.0.0.1:<port>` */
  url: string
  port: number
  /** Every BlockEvent the fixture's lens emitted so far, in order of arrival. */
  events: BlockEvent[]
  /** Resolves with the events once at least `count` have arrived; rejects after `timeoutMs`. */
  waitForEvents(count: number, timeoutMs?: number): Promise<BlockEvent[]>
  /** All IPC messages received from the fixture (including 'listening' and 'block'). */
  messages: unknown[]
  stderr(): string
  stdout(): string
  /** Stop the child (disconnect + SIGTERM, SIGKILL after a grace period) and wait for its exit. */
  stop(): Promise<{ code: number | null; signal: string | null }>
}

export interface FixtureOptions {
  /** Extra environment variables (added to the test's own environment). */
  env?: Record<string, string>
  /** Arguments of the fixture script. */
  args?: string[]
  /** Node options of the child, e.g. `['--enable-source-maps']`. */
  execArgv?: string[]
}

const FIXTURES_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../fixtures')
const LISTEN_TIMEOUT_MS = 10_000
const STOP_GRACE_MS = 3_000
const DEFAULT_WAIT_MS = 5_000

/** Trim long output for an error message: the end is usually what explains a failure. */
function tail(text: string, max = 4_000): string {
  return text.length <= max ? text : `…${text.slice(-max)}`
}

/**
 * Fork a fixture server and wait until it listens.
 * @param file a file name in test/fixtures (`'foundation-app.js'`) or an absolute path
 * @example
 * const fixture = await startFixture('foundation-block.js', { env: { STALL_MS: '100' } })
 * await fetch(`${fixture.url}/block`)
 * const [event] = await fixture.waitForEvents(1)
 * await fixture.stop()
 */
export function startFixture(file: string, options: FixtureOptions = {}): Promise<Fixture> {
  const script = path.isAbsolute(file) ? file : path.join(FIXTURES_DIR, file)
  const child: ChildProcess = fork(script, options.args ?? [], {
    env: { ...process.env, ...options.env },
    execArgv: options.execArgv ?? [],
    serialization: 'advanced',
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  })
  let stdout = ''
  let stderr = ''
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk
  })
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk
  })

  const events: BlockEvent[] = []
  const messages: unknown[] = []
  const waiters = new Set<() => void>()
  let exit: { code: number | null; signal: string | null } | undefined
  const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) => {
    child.once('exit', (code, signal) => {
      exit = { code, signal }
      resolve(exit)
      for (const wake of waiters) wake()
    })
  })
  const describeExit = () =>
    exit === undefined ? '' : ` (it exited with code ${exit.code}, signal ${exit.signal})`

  child.on('message', (message: unknown) => {
    messages.push(message)
    const typed = message as { type?: unknown; event?: BlockEvent }
    if (typed?.type === 'block' && typed.event !== undefined) {
      events.push(typed.event)
      for (const wake of waiters) wake()
    }
  })

  function waitForEvents(count: number, timeoutMs = DEFAULT_WAIT_MS): Promise<BlockEvent[]> {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (events.length >= count) {
          done()
          resolve([...events])
        } else if (exit !== undefined) {
          done()
          reject(
            new Error(
              `fixture ${file} sent ${events.length} of ${count} block events${describeExit()}\nstderr:\n${tail(stderr)}`,
            ),
          )
        }
      }
      const timer = setTimeout(() => {
        done()
        reject(
          new Error(
            `fixture ${file} sent ${events.length} of ${count} block events within ${timeoutMs} ms\nstderr:\n${tail(stderr)}`,
          ),
        )
      }, timeoutMs)
      const done = () => {
        clearTimeout(timer)
        waiters.delete(check)
      }
      waiters.add(check)
      check()
    })
  }

  let stopping: Promise<{ code: number | null; signal: string | null }> | undefined
  function stop(): Promise<{ code: number | null; signal: string | null }> {
    stopping ??= (async () => {
      if (exit !== undefined) return exit
      if (child.connected) child.disconnect()
      child.kill('SIGTERM')
      const timer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS)
      const result = await exited
      clearTimeout(timer)
      return result
    })()
    return stopping
  }

  return new Promise<Fixture>((resolve, reject) => {
    const fail = (reason: string) => {
      cleanup()
      void stop()
      reject(
        new Error(`fixture ${file} ${reason}\nstderr:\n${tail(stderr)}\nstdout:\n${tail(stdout)}`),
      )
    }
    const timer = setTimeout(
      () => fail(`did not listen within ${LISTEN_TIMEOUT_MS} ms`),
      LISTEN_TIMEOUT_MS,
    )
    const onMessage = (message: unknown) => {
      const typed = message as { type?: unknown; port?: unknown }
      if (typed?.type !== 'listening' || typeof typed.port !== 'number') return
      cleanup()
      const port = typed.port
      resolve({
        url: `http://127.0.0.1:${port}`,
        port,
        events,
        waitForEvents,
        messages,
        stderr: () => stderr,
        stdout: () => stdout,
        stop,
      })
    }
    const onExit = () => {
      // Let the last stderr chunk arrive before reporting it.
      setImmediate(() => fail(`exited before listening${describeExit()}`))
    }
    const onError = (error: Error) => fail(`could not start: ${error.message}`)
    function cleanup() {
      clearTimeout(timer)
      child.off('message', onMessage)
      child.off('exit', onExit)
      child.off('error', onError)
    }
    child.on('message', onMessage)
    child.once('exit', onExit)
    child.once('error', onError)
  })
}
