/**
 * The app under a session: started with the preload, waited for until it listens, stopped with
 * SIGINT then SIGKILL. Every wait is bounded; every failure is a {@link SessionError} that says
 * what happened in words a user can act on.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { connect } from 'node:net'
import path from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

/** A session that could not go on: printed as is, exit code 1. */
export class SessionError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'SessionError'
  }
}

/** `file://…/dist/register.js` of this very installation: works with or without `npm install`. */
export function registerUrl(): string {
  const here = path.dirname(fileURLToPath(import.meta.url))
  return pathToFileURL(path.resolve(here, '../register.js')).href
}

/** The command with `--import <register>` right after `node`; refuses commands that are not node. */
export function withPreload(command: string[], verb: string): string[] {
  const [executable, ...rest] = command
  const base = path.basename(executable ?? '').toLowerCase()
  const isNode = /^node(\.exe)?$/.test(base) || executable === process.execPath
  if (!isNode) {
    throw new SessionError(
      `the command after -- must start with node (received ${JSON.stringify(executable)}), e.g. looplens ${verb} -- node server.js`,
    )
  }
  return [executable!, '--import', registerUrl(), ...rest]
}

export interface Exit {
  code: number | null
  signal: NodeJS.Signals | null
}

/** A started child process and a promise of its exit. */
export interface Started {
  child: ChildProcess
  exited: Promise<Exit>
  /** Set once it has exited. */
  exit(): Exit | undefined
}

export function start(
  command: string[],
  env: NodeJS.ProcessEnv,
  stdio: 'inherit' | 'pipe-stdout' = 'inherit',
): Promise<Started> {
  return new Promise((resolve, reject) => {
    const child = spawn(command[0]!, command.slice(1), {
      env,
      stdio: ['ignore', stdio === 'inherit' ? 'inherit' : 'pipe', 'inherit'],
    })
    let exit: Exit | undefined
    const exited = new Promise<Exit>((done) => {
      child.once('exit', (code, signal) => {
        exit = { code, signal }
        done(exit)
      })
    })
    child.once('error', (error) => {
      reject(new SessionError(`could not start ${JSON.stringify(command[0])}: ${error.message}`))
    })
    child.once('spawn', () => resolve({ child, exited, exit: () => exit }))
  })
}

function describeExit(exit: Exit): string {
  return exit.signal !== null ? `was killed by ${exit.signal}` : `exited with code ${exit.code}`
}

/** A timer for races: unref'd, so a race already won never keeps the command alive. */
const sleep = (ms: number) =>
  new Promise<void>((resolve) => {
    setTimeout(resolve, ms).unref()
  })

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ port, host: '127.0.0.1' })
    socket.setTimeout(500)
    const done = (ok: boolean) => {
      socket.destroy()
      resolve(ok)
    }
    socket.once('connect', () => done(true))
    socket.once('error', () => done(false))
    socket.once('timeout', () => done(false))
  })
}

export interface Listening {
  port: number
  pid: number | undefined
}

/**
 * Wait until the app listens: its port file (written by the preload at the first `listen`), or
 * `port` accepting connections when given. Rejects when the app exits first or after `timeoutMs`.
 */
export async function waitForPort(
  app: Started,
  portFile: string,
  port: number | undefined,
  timeoutMs: number,
): Promise<Listening> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    const exit = app.exit()
    if (exit !== undefined) {
      throw new SessionError(`the app ${describeExit(exit)} before it listened on a port`)
    }
    if (existsSync(portFile)) {
      let written: { port: number; pid: number; refused?: unknown } | undefined
      try {
        written = JSON.parse(readFileSync(portFile, 'utf8')) as typeof written
      } catch {
        // Written but not complete yet: read it again on the next turn.
      }
      // The preload refused to start (a bad variable, options that cannot be combined): the
      // app runs without looplens and will never write its port. Say why, now.
      if (typeof written?.refused === 'string') {
        throw new SessionError(`looplens could not start in the app: ${written.refused}`)
      }
      if (written !== undefined && (port === undefined || port === written.port)) return written
    }
    if (port !== undefined && (await canConnect(port))) return { port, pid: undefined }
    await Promise.race([sleep(50), app.exited])
  }
  throw new SessionError(
    `the app did not listen on a port within ${timeoutMs / 1000} s (--timeout)${port === undefined ? '' : ` on port ${port}`}`,
  )
}

/**
 * Stop a child: SIGINT, then SIGKILL after `graceMs`. SIGINT does what it does to the app without
 * looplens (the preload adds no listener): an app without a handler dies of it at once, even when
 * hung; an app with one shuts down its own way (the final report is written at its exit); a hung
 * app with one cannot run it and is killed. In the last two kinds of ending the report is
 * rebuilt from the session's journal. Resolves with how it ended; never waits longer than
 * `graceMs` + 2 s.
 */
export async function stop(app: Started, graceMs: number): Promise<Exit & { killed: boolean }> {
  const done = app.exit()
  if (done !== undefined) return { ...done, killed: false }
  app.child.kill('SIGINT')
  let killed = false
  const timer = setTimeout(() => {
    killed = true
    app.child.kill('SIGKILL')
  }, graceMs)
  const exit = await Promise.race([app.exited, sleep(graceMs + 2_000).then(() => undefined)])
  clearTimeout(timer)
  if (exit === undefined) return { code: null, signal: 'SIGKILL', killed: true }
  return { ...exit, killed }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/**
 * Stop a process that is not our child (the app inside clinic): SIGINT, SIGKILL after `graceMs`.
 * Resolves true when it ended by itself after SIGINT, false when it had to be killed.
 */
export async function stopPid(pid: number, graceMs: number): Promise<boolean> {
  if (!alive(pid)) return true
  try {
    process.kill(pid, 'SIGINT')
  } catch {
    return true
  }
  const deadline = Date.now() + graceMs
  while (Date.now() < deadline) {
    await sleep(50)
    if (!alive(pid)) return true
  }
  try {
    process.kill(pid, 'SIGKILL')
  } catch {
    // Gone in the meantime.
  }
  return false
}
