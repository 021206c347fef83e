/**
 * Run the built `looplens` command (dist/cli/main.js) or an app under the preload, as a user
 * would, in a child process. Every run is bounded: past its timeout it is killed and the test
 * fails with what it printed.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
export const CLI = path.join(ROOT, 'dist/cli/main.js')
export const REGISTER = pathToFileURL(path.join(ROOT, 'dist/register.js')).href
export const FIXTURES = path.join(ROOT, 'test/fixtures')
export const OUTPUT = path.join(ROOT, 'test-output/cli')

export interface Ran {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
  ms: number
}

export interface Running {
  child: ChildProcess
  stdout(): string
  stderr(): string
  done: Promise<Ran>
}

/** Start a process; `done` resolves when it exits, or after `timeoutMs` with it killed. */
export function launch(
  command: string,
  args: string[],
  options: { env?: Record<string, string>; cwd?: string; timeoutMs: number },
): Running {
  const started = performance.now()
  const child = spawn(command, args, {
    cwd: options.cwd ?? ROOT,
    env: { ...process.env, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stdout = ''
  let stderr = ''
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk
  })
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk
  })
  const done = new Promise<Ran>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(
        new Error(
          `${path.basename(args[0] ?? command)} ${args.slice(1).join(' ')} did not finish within ${options.timeoutMs} ms\nstdout:\n${stdout.slice(-3000)}\nstderr:\n${stderr.slice(-3000)}`,
        ),
      )
    }, options.timeoutMs)
    child.once('exit', (code, signal) => {
      clearTimeout(timer)
      // Let the last chunks of output arrive.
      setImmediate(() => resolve({ code, signal, stdout, stderr, ms: performance.now() - started }))
    })
  })
  return { child, stdout: () => stdout, stderr: () => stderr, done }
}

/** `looplens <args>`, to its end. */
export function looplens(
  args: string[],
  options: { env?: Record<string, string>; cwd?: string; timeoutMs?: number } = {},
): Promise<Ran> {
  return launch(process.execPath, [CLI, ...args], { timeoutMs: 60_000, ...options }).done
}

export function tempDir(prefix = 'looplens-cli-'): string {
  return mkdtempSync(path.join(tmpdir(), prefix))
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Wait until `check()` is true, polling; throws after `timeoutMs`. */
export async function until(check: () => boolean, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(25)
  }
}
