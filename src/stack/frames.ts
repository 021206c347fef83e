/**
 * V8 stack text → frames, and the culprit: the first frame that is the application's own code.
 *
 * We parse `Error.stack` text rather than using CallSite objects because Node applies source
 * maps to the text (`--enable-source-maps` / `process.setSourceMapsEnabled(true)`), so frames of
 * a compiled TypeScript app point at the `.ts` lines.
 */
import { fileURLToPath } from 'node:url'
import type { StackFrame } from '../types.js'

// at fn (file:line:col) | at file:line:col | at async fn (file:line:col) | at fn (native)
const FRAME_WITH_NAME = /^\s*at (?:async )?(.*?) \((.*)\)$/
const FRAME_BARE = /^\s*at (?:async )?(.*)$/
const LOCATION = /^(.*):(\d+):(\d+)$/

function parseLocation(location: string): { file: string; line: number; column: number } {
  // eval frames: "eval at fn (file:1:2), <anonymous>:1:1" — keep the outer location.
  const evalMatch = /^eval at .*? \((.*?)\),/.exec(location)
  const target = evalMatch ? evalMatch[1]! : location
  const match = LOCATION.exec(target)
  if (match === null) return { file: target === 'native' ? '' : target, line: 0, column: 0 }
  return { file: match[1]!, line: Number(match[2]), column: Number(match[3]) }
}

/**
 * V8 prefixes a function with its receiver's type and suffixes an alias: `Object.handleOrder
 * [as handle]`. The alias says nothing about the code, and `Object.` nothing about the type.
 */
function cleanName(name: string): string {
  let clean = name
  const alias = clean.indexOf(' [as ')
  if (alias !== -1) clean = clean.slice(0, alias)
  if (clean.startsWith('Object.') && clean.length > 7) clean = clean.slice(7)
  return clean || '<anonymous>'
}

/** Parse V8's `Error.stack` text into frames, top first. Unknown lines are skipped. */
export function parseStack(stack: string): StackFrame[] {
  const frames: StackFrame[] = []
  for (const line of stack.split('\n')) {
    if (!line.trimStart().startsWith('at ')) continue
    const named = FRAME_WITH_NAME.exec(line)
    if (named !== null) {
      frames.push({ functionName: cleanName(named[1] ?? ''), ...parseLocation(named[2]!) })
      continue
    }
    const bare = FRAME_BARE.exec(line)
    if (bare !== null) frames.push({ functionName: '<anonymous>', ...parseLocation(bare[1]!) })
  }
  return frames
}

/** The directory of looplens's own built code (`dist/`), whose frames are never the culprit. */
const OWN_DIR = fileURLToPath(new URL('..', import.meta.url))
const OWN_URL = new URL('..', import.meta.url).href

function isOwnFile(file: string): boolean {
  return file.startsWith(OWN_DIR) || file.startsWith(OWN_URL)
}

/** Drop the inspector's evaluation wrapper (`<anonymous>:1:n`) on top of a probe's stack. */
export function dropProbeFrames(frames: StackFrame[]): StackFrame[] {
  let start = 0
  while (
    start < frames.length &&
    frames[start]!.file === '<anonymous>' &&
    frames[start]!.line === 1
  ) {
    start++
  }
  return start === 0 ? frames : frames.slice(start)
}

/** True for frames that are not the application's code: Node internals, dependencies, us. */
export function isLibraryFrame(frame: StackFrame): boolean {
  const file = frame.file
  if (file === '' || file === '<anonymous>' || file === 'native') return true
  if (file.startsWith('node:') || file.startsWith('internal/')) return true
  if (file.includes('/node_modules/') || file.includes('\\node_modules\\')) return true
  return isOwnFile(file)
}

/** The first frame outside `node:` internals, `node_modules` and looplens itself. */
export function culpritOf(frames: readonly StackFrame[]): StackFrame | undefined {
  return frames.find((frame) => !isLibraryFrame(frame))
}

/** `file:line:col` relative to `cwd` when inside it; file URLs become paths. */
export function shortLocation(frame: StackFrame, cwd = process.cwd()): string {
  let file = frame.file
  if (file.startsWith('file://')) {
    try {
      file = fileURLToPath(file)
    } catch {
      // keep the URL as it is
    }
  }
  if (file.startsWith(`${cwd}/`)) file = file.slice(cwd.length + 1)
  return frame.line > 0 ? `${file}:${frame.line}:${frame.column}` : file
}

/** One frame as V8 prints it (for stderr and `code.stacktrace`). */
export function formatFrame(frame: StackFrame): string {
  const location = frame.line > 0 ? `${frame.file}:${frame.line}:${frame.column}` : frame.file
  return location === ''
    ? `    at ${frame.functionName}`
    : `    at ${frame.functionName} (${location})`
}
