/**
 * One profiling session around an app: start it with the preload (inside clinic doctor for
 * `doctor`), wait for its port, drive load or wait, stop it, then print the report and write the
 * JSON and HTML next to each other. Every wait is bounded.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { pathToFileURL } from 'node:url'
import {
  type Ending,
  journalPathOf,
  readSessionOrJournal,
  type SessionFile,
} from '../instrument/session.js'
import { formatReport } from '../report/format.js'
import { renderHtmlReport } from '../report/html.js'
import { terminalPath, terminalText } from '../util/text.js'
import {
  type Listening,
  SessionError,
  type Started,
  start,
  stop,
  stopPid,
  waitForPort,
  withPreload,
} from './app.js'
import { DEFAULTS, type SessionArgs } from './args.js'
import {
  type Clinic,
  describeIssues,
  findClinic,
  findDoctorHtml,
  readDoctorAnalysis,
  verdictText,
} from './doctor.js'
import { driveLoad, formatLoad } from './load.js'

/** How long clinic may take to analyse after the app stopped. */
const CLINIC_ANALYSIS_TIMEOUT_MS = 180_000

/** A timer for races: unref'd, so a race already won never keeps the command alive. */
const sleep = (ms: number) =>
  new Promise<void>((resolve) => {
    setTimeout(resolve, ms).unref()
  })

function timestamp(): string {
  return new Date().toISOString().replace(/[:.]/g, '-').replace('T', '_').slice(0, 19)
}

function log(message: string): void {
  process.stderr.write(`looplens: ${message}\n`)
}

/** The part of the session between "it listens" and "stop it": load, a timer, or the user. */
async function drive(args: SessionArgs, app: Started, listening: Listening): Promise<void> {
  if (args.loadPath !== undefined) {
    const url = `http://127.0.0.1:${listening.port}${args.loadPath}`
    const durationS = args.durationS ?? DEFAULTS.loadDurationS
    const summary = await driveLoad(url, args.connections, durationS)
    log(formatLoad(summary))
    return
  }
  let interrupted: () => void = () => undefined
  const onSigint = () => interrupted()
  process.once('SIGINT', onSigint)
  try {
    const waits: Promise<unknown>[] = [app.exited, new Promise<void>((r) => (interrupted = r))]
    if (args.durationS !== undefined) waits.push(sleep(args.durationS * 1000))
    else log('watching; press Ctrl-C to stop the app and get the report')
    await Promise.race(waits)
  } finally {
    process.off('SIGINT', onSigint)
  }
}

/**
 * The session the app left: its final file, or its journal rebuilt (the app died of the signal,
 * or was killed) — then written as the final file, so the JSON and the HTML are there as always.
 */
function readReport(file: string, ending: Ending): SessionFile | undefined {
  if (!existsSync(file) && !existsSync(journalPathOf(file))) return undefined
  const session = readSessionOrJournal(file, ending)
  if (session.meta.fromJournal === true) {
    writeFileSync(file, JSON.stringify(session))
    rmSync(journalPathOf(file), { force: true })
  }
  return session
}

/** How the app ended, in the session's terms: a signal's name, or an exit with its code. */
function endingOf(
  exit: { code: number | null; signal: NodeJS.Signals | null } | undefined,
): Ending {
  if (exit === undefined) return { reason: 'unknown', exitCode: undefined }
  if (exit.signal !== null) return { reason: exit.signal, exitCode: undefined }
  return { reason: 'exit', exitCode: exit.code ?? undefined }
}

/** One line for a hang still going on when the app ended: who, where, how long at least. */
function describeHangAtEnd(session: SessionFile, cwd: string): string | undefined {
  const hang = session.meta.hangAtEnd
  if (hang === undefined) return undefined
  const { method, route, task } = hang.context
  const who =
    task !== ''
      ? `in task ${terminalText(task)}`
      : method === ''
        ? 'outside any request'
        : `in ${terminalText(method)} ${route === '' ? '(no route)' : terminalText(route)}`
  const culprit = hang.culprit
  const where =
    culprit === undefined
      ? 'without a stack'
      : `in ${terminalText(culprit.functionName)} at ${terminalPath(path.relative(cwd, culprit.file.replace(/^file:\/\//, '')) || culprit.file)}:${culprit.line}`
  return `the app was hung when it ended: the loop had been blocked for at least ${Math.round(hang.durationMs)} ms ${who}, ${where}`
}

/** One line naming the worst blocker, for the doctor summary. */
function attribution(session: SessionFile, cwd: string): string {
  const top = session.report.blockers[0]
  if (top === undefined) return 'no blocks past the threshold'
  // Names from the app, for a terminal: escaped and bounded (src/util/text.ts).
  const who =
    top.task !== ''
      ? `task ${terminalText(top.task)}`
      : top.method === ''
        ? 'code outside any request'
        : `${terminalText(top.method)} ${top.route === '' ? '(no route)' : terminalText(top.route)}`
  const where =
    top.culprit === undefined
      ? 'no stack'
      : `${terminalText(top.culprit.functionName)} at ${terminalPath(path.relative(cwd, top.culprit.file.replace(/^file:\/\//, '')) || top.culprit.file)}:${top.culprit.line}`
  return `${who} blocked the loop ${top.count} time${top.count === 1 ? '' : 's'} (${Math.round(top.totalMs)} ms in total, longest ${Math.round(top.maxMs)} ms) in ${where}`
}

/**
 * Run a session; resolves with the process exit code (0, or 1 with the reason printed).
 */
export async function runSession(mode: 'run' | 'doctor', args: SessionArgs): Promise<number> {
  const verb = mode
  const outDir = path.resolve(args.out ?? path.join('.looplens', timestamp()))
  const reportFile = path.join(outDir, 'report.json')
  const htmlFile = path.join(outDir, 'report.html')
  const scratch = mkdtempSync(path.join(tmpdir(), 'looplens-'))
  const portFile = path.join(scratch, 'port.json')
  let clinic: Clinic | undefined
  let app: Started | undefined
  try {
    const appCommand = withPreload(args.command, verb)
    if (mode === 'doctor') clinic = findClinic(args.clinic)
    mkdirSync(outDir, { recursive: true })
    rmSync(reportFile, { force: true })
    rmSync(journalPathOf(reportFile), { force: true })

    const env: NodeJS.ProcessEnv = { ...process.env }
    delete env.LOOPLENS_OWNER_PID
    env.LOOPLENS_REPORT_FILE = reportFile
    env.LOOPLENS_PORT_FILE = portFile
    env.LOOPLENS_REPORT_STDERR = '0'
    // Under doctor: no extra server in the app (it would be in clinic's measurements).
    env.LOOPLENS_METRICS_PORT =
      mode === 'run' && args.metricsPort !== undefined ? String(args.metricsPort) : 'off'
    if (args.thresholdMs !== undefined) env.LOOPLENS_BLOCK_THRESHOLD_MS = String(args.thresholdMs)

    let clinicOut = ''
    const clinicDest = path.join(outDir, 'clinic')
    if (clinic !== undefined) {
      env.NO_INSIGHT = '1'
      app = await start(
        [
          process.execPath,
          clinic.bin,
          'doctor',
          '--open=false',
          '--dest',
          clinicDest,
          '--',
          ...appCommand,
        ],
        env,
        'pipe-stdout',
      )
      app.child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
        clinicOut += chunk
        process.stdout.write(chunk)
      })
    } else {
      app = await start(appCommand, env)
    }

    const listening = await waitForPort(app, portFile, args.port, args.timeoutS * 1000)
    log(`the app listens on port ${listening.port}`)
    await drive(args, app, listening)

    const graceMs = args.graceS * 1000
    let ending: Ending
    if (clinic === undefined) {
      const ended = await stop(app, graceMs)
      if (ended.killed) {
        log(`the app did not exit within ${args.graceS} s of SIGINT (--grace): killed`)
      }
      ending = endingOf(ended)
    } else {
      // The app is clinic's child: only whether it had to be killed is known here.
      ending = { reason: 'unknown', exitCode: undefined }
      if (listening.pid !== undefined) {
        const clean = await stopPid(listening.pid, graceMs)
        if (!clean) {
          log(`the app did not exit within ${args.graceS} s of SIGINT (--grace): killed`)
          ending = { reason: 'SIGKILL', exitCode: undefined }
        }
      }
      log('clinic doctor is analysing…')
      const done = await Promise.race([
        app.exited,
        sleep(CLINIC_ANALYSIS_TIMEOUT_MS).then(() => undefined),
      ])
      if (done === undefined) {
        app.child.kill('SIGKILL')
        throw new SessionError(
          `clinic doctor did not finish within ${CLINIC_ANALYSIS_TIMEOUT_MS / 1000} s`,
        )
      }
    }

    const session = readReport(reportFile, ending)
    if (session === undefined) {
      throw new SessionError(
        'the app ended without a report: neither the report nor its journal was written (was the report folder writable?)',
      )
    }
    const cwd = session.meta.cwd
    const hung = describeHangAtEnd(session, cwd)
    if (hung !== undefined) log(hung)
    writeFileSync(htmlFile, renderHtmlReport(session))
    process.stdout.write(`\n${formatReport(session.report, { cwd })}`)

    if (clinic !== undefined) {
      const html = findDoctorHtml(clinicOut, clinicDest)
      if (html === undefined) throw new SessionError('clinic doctor generated no HTML report')
      const analysis = readDoctorAnalysis(readFileSync(html, 'utf8'))
      const words = verdictText(clinic, analysis.issueCategory)
      process.stdout.write(
        `\nclinic doctor ${clinic.version} verdict: ${analysis.issueCategory}${words === undefined ? '' : ` — ${words}`}\n` +
          `  (${describeIssues(analysis.issues)})\n` +
          `looplens attribution: ${attribution(session, cwd)}\n` +
          `\nReports:\n  clinic doctor  ${pathToFileURL(html).href}\n  looplens       ${pathToFileURL(htmlFile).href}\n  looplens JSON  ${reportFile}\n`,
      )
    } else {
      process.stdout.write(
        `\nReports:\n  HTML  ${pathToFileURL(htmlFile).href}\n  JSON  ${reportFile}\n`,
      )
    }
    const exit = app.exit()
    if (exit !== undefined && exit.code !== 0 && exit.code !== 130 && exit.signal === null) {
      log(`note: the app exited with code ${exit.code}`)
    }
    // The session did its job — a report — whichever way the app ended (its own exit, the
    // SIGINT we sent, or SIGKILL after --grace): 0.
    return 0
  } catch (error) {
    if (error instanceof SessionError) {
      log(error.message)
      if (app !== undefined && app.exit() === undefined) await stop(app, 2_000)
      return 1
    }
    if (app !== undefined && app.exit() === undefined) await stop(app, 2_000)
    throw error
  } finally {
    rmSync(scratch, { recursive: true, force: true })
  }
}
