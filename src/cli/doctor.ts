/**
 * `looplens doctor`: the session inside clinic doctor. clinic is an optional peer: found next to
 * the user's project, next to looplens, or where `--clinic` points. Its verdict is read from its
 * own analysis (the `analysis` object clinic embeds in the HTML it generates), so what we print is
 * what its report says.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'
import { SessionError } from './app.js'

export interface Clinic {
  /** clinic's bin.js. */
  bin: string
  /** @clinic/doctor's folder, for its own words about a verdict. */
  doctorDir: string | undefined
  version: string
}

function clinicAt(packageJson: string): Clinic {
  const dir = path.dirname(packageJson)
  const { version } = JSON.parse(readFileSync(packageJson, 'utf8')) as { version: string }
  let doctorDir: string | undefined
  try {
    doctorDir = path.dirname(createRequire(packageJson).resolve('@clinic/doctor/package.json'))
  } catch {
    doctorDir = undefined
  }
  return { bin: path.join(dir, 'bin.js'), doctorDir, version }
}

/** Where clinic is, or a {@link SessionError} that says how to get it. */
export function findClinic(hint: string | undefined): Clinic {
  if (hint !== undefined) {
    const resolved = path.resolve(hint)
    const candidates = [
      resolved.endsWith('bin.js') ? path.join(path.dirname(resolved), 'package.json') : '',
      path.join(resolved, 'package.json'),
      path.join(resolved, 'node_modules', 'clinic', 'package.json'),
    ]
    for (const candidate of candidates) {
      if (candidate === '' || !existsSync(candidate)) continue
      const { name } = JSON.parse(readFileSync(candidate, 'utf8')) as { name?: string }
      if (name === 'clinic') return clinicAt(candidate)
    }
    throw new SessionError(`--clinic ${JSON.stringify(hint)}: no clinic installation there`)
  }
  for (const place of [path.join(process.cwd(), 'noop.js'), import.meta.url]) {
    try {
      return clinicAt(createRequire(place).resolve('clinic/package.json'))
    } catch {
      // Try the next place.
    }
  }
  throw new SessionError(
    'looplens doctor needs clinic (an optional peer dependency): npm install --save-dev clinic — or point --clinic at an installation',
  )
}

export interface DoctorAnalysis {
  /** clinic doctor's verdict: `event-loop`, `io`, `gc`, `none`, `data` or `unknown`. */
  issueCategory: string
  /** Its per-signal findings (`performance`, `none`, `data`). */
  issues: Record<string, unknown>
}

/** Read the JSON object that starts at `start` (balanced braces, strings respected). */
function objectAt(text: string, start: number): string | undefined {
  let depth = 0
  let inString = false
  for (let i = start; i < text.length; i++) {
    const char = text[i]
    if (inString) {
      if (char === '\\') i++
      else if (char === '"') inString = false
    } else if (char === '"') inString = true
    else if (char === '{') depth++
    else if (char === '}') {
      depth--
      if (depth === 0) return text.slice(start, i + 1)
    }
  }
  return undefined
}

/** clinic doctor's analysis, from the HTML it generated. */
export function readDoctorAnalysis(html: string): DoctorAnalysis {
  const marker = /"analysis":\s*\{/.exec(html)
  const json = marker === null ? undefined : objectAt(html, marker.index + marker[0].length - 1)
  if (json === undefined) {
    throw new SessionError('clinic doctor wrote no analysis into its HTML report')
  }
  const analysis = JSON.parse(json) as Partial<DoctorAnalysis>
  if (typeof analysis.issueCategory !== 'string') {
    throw new SessionError('clinic doctor\'s analysis has no verdict ("issueCategory")')
  }
  return { issueCategory: analysis.issueCategory, issues: analysis.issues ?? {} }
}

/** The HTML clinic announced on stdout, or the newest one in its output folder. */
export function findDoctorHtml(stdout: string, dest: string): string | undefined {
  const announced = /Generated HTML file is (file:\/\/\S+)/.exec(stdout)?.[1]
  if (announced !== undefined) {
    const file = decodeURIComponent(new URL(announced).pathname)
    if (existsSync(file)) return file
  }
  if (!existsSync(dest)) return undefined
  const html = readdirSync(dest)
    .filter((name) => name.endsWith('.clinic-doctor.html'))
    .map((name) => path.join(dest, name))
    .sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs)
  return html[0]
}

/** clinic doctor's own one-line explanation of a verdict (from its recommendations). */
export function verdictText(clinic: Clinic, category: string): string | undefined {
  if (clinic.doctorDir === undefined) return undefined
  const file = path.join(clinic.doctorDir, 'recommendations', `${category}-summary.md`)
  if (!existsSync(file)) return undefined
  const first = readFileSync(file, 'utf8')
    .split('\n')
    .map((line) => line.replace(/^[-*\s]+/, '').trim())
    .find((line) => line !== '' && !line.startsWith('#'))
  return first?.replace(/<[^>]+>/g, '')
}

/** `delay: performance, cpu: none, …` — the signals behind the verdict. */
export function describeIssues(issues: Record<string, unknown>): string {
  return Object.entries(issues)
    .map(([name, value]) => {
      if (typeof value === 'string') return `${name}: ${value}`
      if (value !== null && typeof value === 'object') {
        const values = Object.values(value as Record<string, unknown>)
        const worst = values.includes('performance')
          ? 'performance'
          : values.includes('data')
            ? 'data'
            : 'none'
        return `${name}: ${worst}`
      }
      return `${name}: ?`
    })
    .join(', ')
}
