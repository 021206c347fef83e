#!/usr/bin/env node
/**
 * `looplens` command: `run`, `doctor` and `report`. Exit codes: 0 done, 1 the session failed
 * (the reason is printed), 2 the command line was wrong (the usage is printed).
 * @example npx looplens run --load-path /api/orders --duration 20 -- node server.js
 */
import { readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { parseSession } from '../instrument/session.js'
import { formatReport } from '../report/format.js'
import { renderHtmlReport } from '../report/html.js'
import { parseReportArgs, parseSessionArgs, USAGE, UsageError } from './args.js'
import { runSession } from './session.js'

function report(argv: string[]): number {
  const args = parseReportArgs(argv)
  let text: string
  try {
    text = readFileSync(args.file, 'utf8')
  } catch (error) {
    process.stderr.write(`looplens: cannot read ${args.file}: ${(error as Error).message}\n`)
    return 1
  }
  let session: ReturnType<typeof parseSession>
  try {
    session = parseSession(JSON.parse(text), args.file)
  } catch (error) {
    process.stderr.write(`looplens: ${(error as Error).message}\n`)
    return 1
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
