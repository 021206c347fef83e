/**
 * Names that looplens did not choose — task names, route templates (a regex route is any text),
 * function names, file paths — made safe for a terminal or a log line.
 *
 * Why: an ESC sequence in a function name recolours or clears the reader's terminal, a newline in
 * a task name forges a row of the report (or a log record), and a minified bundle's 8 MB function
 * name is one 8 MB line. Every text output (the report table, `looplens run|report`, the stderr
 * hang report) shows names through here; the HTML report escapes for HTML and bounds through here
 * too. Data files (the JSON session, metrics labels) keep the names as they are.
 */
import type { StackFrame } from '../types.js'

/** The longest name shown, in characters, ellipsis included. */
export const MAX_NAME_LENGTH = 200

const ELLIPSIS = '…'

/**
 * Characters that are not text to a terminal: C0 controls (NUL…US: ESC, CR, LF, TAB, BS), DEL, C1
 * controls (0x80–0x9f: CSI alone starts an escape sequence on many terminals), the Unicode line
 * and paragraph separators (line breaks to a log reader), and the bidirectional controls that
 * make text display in another order than it is stored (the "Trojan Source" trick).
 */
const UNSAFE =
  // biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
  /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/

/** `\xNN` for a byte-sized code, `\uNNNN` above: visible, and what JavaScript would write. */
function escapeOf(code: number): string {
  return code <= 0xff
    ? `\\x${code.toString(16).padStart(2, '0')}`
    : `\\u${code.toString(16).padStart(4, '0')}`
}

/** The printable pieces of `text`: one per code point (an escape for an unsafe one). */
function piecesOf(text: string): string[] {
  const pieces: string[] = []
  for (const char of text) {
    pieces.push(UNSAFE.test(char) ? escapeOf(char.codePointAt(0)!) : char)
  }
  return pieces
}

/**
 * `value` as one safe line of at most `max` characters: control characters shown as escapes,
 * the rest cut with an ellipsis (at the end, or at the start with `keep: 'end'`, for a file path
 * whose end is what tells). An escape or a surrogate pair is never cut in half.
 * @example terminalText('evil\x1b[2J') === 'evil\\x1b[2J'
 */
export function terminalText(
  value: unknown,
  options: { max?: number; keep?: 'start' | 'end' } = {},
): string {
  const text = typeof value === 'string' ? value : String(value)
  const max = Math.max(2, options.max ?? MAX_NAME_LENGTH)
  const keepEnd = options.keep === 'end'
  // Fast path, the usual case: short and clean.
  if (text.length <= max && !UNSAFE.test(text)) return text
  // Only `max` characters of the input can be shown: never escape an 8 MB name whole.
  // (+1 so a name of exactly `max` clean characters is not mistaken for a longer one.)
  const cut = text.length > max + 1
  const window = keepEnd ? text.slice(text.length - (max + 1)) : text.slice(0, max + 1)
  const pieces = piecesOf(window)
  let total = 0
  for (const piece of pieces) total += piece.length
  if (!cut && total <= max) return pieces.join('')
  // Cut: as many whole pieces as fit next to the ellipsis.
  const kept: string[] = []
  let length = ELLIPSIS.length
  const ordered = keepEnd ? pieces.reverse() : pieces
  for (const piece of ordered) {
    if (length + piece.length > max) break
    kept.push(piece)
    length += piece.length
  }
  return keepEnd ? ELLIPSIS + kept.reverse().join('') : kept.join('') + ELLIPSIS
}

/** A file path or URL for a terminal: its end is kept when it is too long. */
export function terminalPath(value: unknown): string {
  return terminalText(value, { keep: 'end' })
}

/** A stack frame whose function name and file are safe to print (line and column are numbers). */
export function terminalFrame(frame: StackFrame): StackFrame {
  const functionName = terminalText(frame.functionName)
  const file = terminalPath(frame.file)
  return functionName === frame.functionName && file === frame.file
    ? frame
    : { ...frame, functionName, file }
}
