#!/usr/bin/env node
/**
 * `looplens` command: `run`, `doctor` and `report`. Exit codes: 0 done, 1 the session failed
 * (the reason is printed), 2 the command line was wrong (the usage is printed).
 * @example npx looplens run --load-path /api/orders --duration 20 -- node server.js
 */
import { writeFileSync } from 'node:fs'
import path from 'node:path'
import { readSessionOrJournal } from '../instrument/session.js'
import { formatReport } from '../report/format.js'
import { renderHtmlReport } from '../report/html.js'
import { parseReportArgs, parseSessionArgs, USAGE, UsageError } from './args.js'
import { runSession } from './session.js'

function report(argv: string[]): number {
  const args = parseReportArgs(argv)
  // The final file, or — when the app died before it could write it (a signal, SIGKILL, a hang)
  // — the session rebuilt from its journal (`<file>.journal`, or that file named directly).
  let session: ReturnType<typeof readSessionOrJournal>
  try {
    session = readSessionOrJournal(args.file)
  } catch (error) {
    process.stderr.write(`looplens: ${(error as Error).message}\n`)
    return 1
  }
  if (session.meta.fromJournal === true && !args.file.endsWith('.journal')) {
    process.stderr.write(
      `looplens: ${args.file} was not written (the app did not exit normally): rebuilt from its journal\n`,
    )
  }
  if (args.html !== undefined) {
    writeFileSync(args.html, renderHtmlReport(session))
    process.stdout.write(`HTML report written to ${path.resolve(args.html)}\n`)
    return 0
  }
  process.stdout.write(formatReport(session.report, { cwd: session.meta.cwd, limit: args.limit }))
  return 0
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv
  try {
    switch (command) {
      case 'run':
      case 'doctor':
        return await runSession(command, parseSessionArgs(command, rest))
      case 'report':
        return report(rest)
      case undefined:
      case '-h':
      case '--help':
      case 'help':
        process.stdout.write(USAGE)
        return command === undefined ? 2 : 0
      default:
        throw new UsageError(`unknown command ${JSON.stringify(command)}`)
    }
  } catch (error) {
    if (error instanceof UsageError) {
      process.stderr.write(`looplens: ${error.message}\n\n${USAGE}`)
      return 2
    }
    throw error
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code
  },
  (error: unknown) => {
    process.stderr.write(`looplens: unexpected error: ${(error as Error)?.stack ?? error}\n`)
    process.exitCode = 1
  },
)
