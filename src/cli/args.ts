/**
 * Command-line parsing of `looplens run|doctor|report`. Small and strict: an unknown flag, a
 * missing value or a missing command is a {@link UsageError} with a message that says what to type.
 */

/** A mistake on the command line: printed with the usage, exit code 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'UsageError'
  }
}

export interface SessionArgs {
  /** Output folder; default `.looplens/<timestamp>` in the current directory. */
  out: string | undefined
  thresholdMs: number | undefined
  loadPath: string | undefined
  /** Seconds of load, or of watching when there is no load. */
  durationS: number | undefined
  connections: number
  /** The app's port, when it cannot be detected (or to skip detection). */
  port: number | undefined
  /** Seconds to wait for the app to listen. */
  timeoutS: number
  /** Seconds between SIGINT and SIGKILL when stopping the app. */
  graceS: number
  /** `run` only: serve the preload's metrics on this port (off by default). */
  metricsPort: number | undefined
  /** `doctor` only: where clinic is, when it cannot be resolved. */
  clinic: string | undefined
  /** The app's command, after `--`. */
  command: string[]
}

export const DEFAULTS = { connections: 10, loadDurationS: 10, timeoutS: 30, graceS: 10 } as const

interface FlagSpec {
  key: keyof SessionArgs
  kind: 'int' | 'number' | 'string'
  min?: number
  max?: number
  only?: 'run' | 'doctor'
}

const FLAGS: Record<string, FlagSpec> = {
  '--out': { key: 'out', kind: 'string' },
  '--threshold': { key: 'thresholdMs', kind: 'int', min: 10, max: 60_000 },
  '--load-path': { key: 'loadPath', kind: 'string' },
  '--duration': { key: 'durationS', kind: 'number', min: 0.1, max: 86_400 },
  '--connections': { key: 'connections', kind: 'int', min: 1, max: 10_000 },
  '--port': { key: 'port', kind: 'int', min: 1, max: 65_535 },
  '--timeout': { key: 'timeoutS', kind: 'number', min: 0.1, max: 3_600 },
  '--grace': { key: 'graceS', kind: 'number', min: 0, max: 3_600 },
  '--metrics-port': { key: 'metricsPort', kind: 'int', min: 1, max: 65_535, only: 'run' },
  '--clinic': { key: 'clinic', kind: 'string', only: 'doctor' },
}

/** Parse the arguments of `run` or `doctor` (everything after the sub-command). */
export function parseSessionArgs(command: 'run' | 'doctor', argv: string[]): SessionArgs {
  const args: SessionArgs = {
    out: undefined,
    thresholdMs: undefined,
    loadPath: undefined,
    durationS: undefined,
    connections: DEFAULTS.connections,
    port: undefined,
    timeoutS: DEFAULTS.timeoutS,
    graceS: DEFAULTS.graceS,
    metricsPort: undefined,
    clinic: undefined,
    command: [],
  }
  const separator = argv.indexOf('--')
  const options = separator === -1 ? argv : argv.slice(0, separator)
  for (let i = 0; i < options.length; i++) {
    const token = options[i]!
    const equals = token.indexOf('=')
    const name = token.startsWith('--') && equals !== -1 ? token.slice(0, equals) : token
    const spec = FLAGS[name]
    if (spec === undefined || (spec.only !== undefined && spec.only !== command)) {
      if (!token.startsWith('-')) {
        throw new UsageError(
          `unexpected argument ${JSON.stringify(token)}: put the app's command after --, e.g. looplens ${command} -- node server.js`,
        )
      }
      throw new UsageError(`unknown option ${name} for looplens ${command}`)
    }
    let raw: string | undefined
    if (equals !== -1 && token.startsWith('--')) raw = token.slice(equals + 1)
    else raw = options[++i]
    if (raw === undefined || raw === '') throw new UsageError(`${name} needs a value`)
    ;(args as unknown as Record<string, unknown>)[spec.key] = parseValue(name, spec, raw)
  }
  if (separator === -1) {
    throw new UsageError(
      `missing the app's command: put it after --, e.g. looplens ${command} -- node server.js`,
    )
  }
  args.command = argv.slice(separator + 1)
  if (args.command.length === 0) {
    throw new UsageError(
      `missing the app's command after --, e.g. looplens ${command} -- node server.js`,
    )
  }
  if (args.loadPath !== undefined && !args.loadPath.startsWith('/')) {
    throw new UsageError(
      `--load-path must start with "/" (received ${JSON.stringify(args.loadPath)})`,
    )
  }
  return args
}

function parseValue(name: string, spec: FlagSpec, raw: string): string | number {
  if (spec.kind === 'string') return raw
  const value = Number(raw)
  const valid =
    raw.trim() !== '' &&
    Number.isFinite(value) &&
    (spec.kind === 'number' || Number.isInteger(value)) &&
    value >= (spec.min ?? Number.NEGATIVE_INFINITY) &&
    value <= (spec.max ?? Number.POSITIVE_INFINITY)
  if (!valid) {
    const what = spec.kind === 'int' ? 'an integer' : 'a number'
    throw new UsageError(
      `${name} must be ${what} between ${spec.min} and ${spec.max} (received ${JSON.stringify(raw)})`,
    )
  }
  return value
}

export interface ReportArgs {
  file: string
  html: string | undefined
  limit: number
}

/** Parse `looplens report file.json [--html out.html] [--limit n]`. */
export function parseReportArgs(argv: string[]): ReportArgs {
  let file: string | undefined
  let html: string | undefined
  let limit = 10
  for (let i = 0; i < argv.length; i++) {
    const token = argv[i]!
    if (token === '--html' || token === '--limit') {
      const raw = argv[++i]
      if (raw === undefined || raw === '') throw new UsageError(`${token} needs a value`)
      if (token === '--html') html = raw
      else {
        limit = Number(raw)
        if (!Number.isInteger(limit) || limit < 1 || limit > 1000) {
          throw new UsageError(
            `--limit must be an integer between 1 and 1000 (received ${JSON.stringify(raw)})`,
          )
        }
      }
    } else if (token.startsWith('-')) {
      throw new UsageError(`unknown option ${token} for looplens report`)
    } else if (file === undefined) {
      file = token
    } else {
      throw new UsageError(`looplens report takes one file (received ${JSON.stringify(token)} too)`)
    }
  }
  if (file === undefined)
    throw new UsageError('missing the report file: looplens report report.json')
  return { file, html, limit }
}

export const USAGE = `Usage:
  looplens run [options] -- node app.js      run the app with looplens, optionally under load;
                                             print the report, write JSON and HTML
  looplens doctor [options] -- node app.js   the same session inside clinic doctor; print its
                                             verdict next to looplens's attribution
  looplens report file.json [--html out.html] [--limit n]
                                             print a saved report again (or render it as HTML)

Options of run and doctor:
  --out <dir>            output folder (default .looplens/<timestamp>)
  --threshold <ms>       block threshold (default 50)
  --load-path <path>     drive GET load at this path with autocannon (optional peer)
  --duration <s>         seconds of load (default ${DEFAULTS.loadDurationS}); without load, seconds
                         to watch before stopping the app (default: until it exits or Ctrl-C)
  --connections <n>      concurrent connections of the load (default ${DEFAULTS.connections})
  --port <n>             the app's port, when it cannot be detected
  --timeout <s>          seconds to wait for the app to listen (default ${DEFAULTS.timeoutS})
  --grace <s>            seconds between SIGINT and SIGKILL when stopping (default ${DEFAULTS.graceS})
  --metrics-port <n>     run only: serve looplens metrics on this port during the session
  --clinic <path>        doctor only: clinic's folder or bin.js, when it is not installed here
`
