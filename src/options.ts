/**
 * The one place options are validated. Everything downstream trusts the frozen result.
 */
import { Registry } from 'prom-client'
import type { LooplensOptions } from './types.js'

export interface ResolvedOptions {
  readonly blockThresholdMs: number
  readonly registry: Registry
  readonly ownRegistry: boolean
  readonly delayResolutionMs: number
  readonly excludePaths: ReadonlyArray<string | RegExp>
  readonly maxRoutes: number
  readonly captureStacks: boolean
  readonly maxStacksPerMinute: number
  readonly hangReportMs: number
  readonly closeTimeoutMs: number
  readonly onWarning: (warning: Error) => void
  readonly openTelemetry: 'auto' | boolean
}

const KNOWN_OPTIONS = new Set<string>([
  'blockThresholdMs',
  'registry',
  'delayResolutionMs',
  'excludePaths',
  'maxRoutes',
  'captureStacks',
  'maxStacksPerMinute',
  'hangReportMs',
  'closeTimeoutMs',
  'onWarning',
  'openTelemetry',
])

/** Render a received value for an error message, short and unambiguous. */
export function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value)
  if (typeof value === 'bigint') return `${value}n`
  if (typeof value === 'function') return `function ${value.name || '<anonymous>'}`
  if (value === null || typeof value !== 'object') return String(value)
  if (Array.isArray(value)) return `an array of ${value.length}`
  const name = (value as object).constructor?.name
  return name && name !== 'Object' ? `an instance of ${name}` : 'an object'
}

/**
 * Validate an integer option. `TypeError` for the wrong type, `RangeError` for the wrong range.
 * Never `value || fallback`: that would turn an explicit `0` into the default.
 */
export function integerOption(
  name: string,
  value: unknown,
  fallback: number,
  min: number,
  max = Number.MAX_SAFE_INTEGER,
): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isInteger(value)) {
    throw new TypeError(`${name} must be an integer (received ${describe(value)})`)
  }
  if (value < min || value > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `≥ ${min}` : `between ${min} and ${max}`
    throw new RangeError(`${name} must be an integer ${range} (received ${value})`)
  }
  return value
}

export function booleanOption(name: string, value: unknown, fallback: boolean): boolean {
  if (value === undefined) return fallback
  if (typeof value !== 'boolean') {
    throw new TypeError(`${name} must be a boolean (received ${describe(value)})`)
  }
  return value
}

function isRegistry(value: unknown): value is Registry {
  // Duck-typed on purpose: a user may have a second copy of prom-client (another version in
  // node_modules), whose Registry is not `instanceof` ours but works the same.
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as Registry).registerMetric === 'function' &&
    typeof (value as Registry).metrics === 'function' &&
    typeof (value as Registry).getSingleMetric === 'function'
  )
}

function defaultWarning(warning: Error): void {
  process.emitWarning(warning.message, { type: 'LooplensWarning', code: warning.name })
}

export function resolveOptions(options: LooplensOptions | undefined): ResolvedOptions {
  if (options === undefined) options = {}
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new TypeError(`options must be an object (received ${describe(options)})`)
  }
  for (const key of Object.keys(options)) {
    if (!KNOWN_OPTIONS.has(key)) {
      throw new TypeError(
        `options.${key} is not an option of looplens (known: ${[...KNOWN_OPTIONS].join(', ')})`,
      )
    }
  }

  const blockThresholdMs = integerOption(
    'options.blockThresholdMs',
    options.blockThresholdMs,
    50,
    10,
    60_000,
  )
  const delayResolutionMs = integerOption(
    'options.delayResolutionMs',
    options.delayResolutionMs,
    10,
    1,
    1_000,
  )
  const maxStacksPerMinute = integerOption(
    'options.maxStacksPerMinute',
    options.maxStacksPerMinute,
    60,
    0,
    60_000,
  )
  // The default follows the threshold: a stall is a hang only once it is a block, so any
  // blockThresholdMs above 2000 works alone. Only an explicit value below it is a conflict.
  const hangReportMs = integerOption(
    'options.hangReportMs',
    options.hangReportMs,
    Math.max(2_000, blockThresholdMs),
    0,
  )
  if (hangReportMs !== 0 && hangReportMs < blockThresholdMs) {
    throw new RangeError(
      `options.hangReportMs must be 0 (off) or ≥ options.blockThresholdMs (${blockThresholdMs}) (received ${hangReportMs})`,
    )
  }
  const closeTimeoutMs = integerOption(
    'options.closeTimeoutMs',
    options.closeTimeoutMs,
    5_000,
    0,
    600_000,
  )
  const captureStacks = booleanOption('options.captureStacks', options.captureStacks, true)
  const maxRoutes = integerOption('options.maxRoutes', options.maxRoutes, 1_000, 1, 1_000_000)

  let registry: Registry
  let ownRegistry = false
  if (options.registry === undefined) {
    registry = new Registry()
    ownRegistry = true
  } else if (isRegistry(options.registry)) {
    registry = options.registry
  } else {
    throw new TypeError(
      `options.registry must be a prom-client Registry (received ${describe(options.registry)})`,
    )
  }

  let excludePaths: ReadonlyArray<string | RegExp> = ['/metrics']
  if (options.excludePaths !== undefined) {
    if (!Array.isArray(options.excludePaths)) {
      throw new TypeError(
        `options.excludePaths must be an array of strings and RegExps (received ${describe(options.excludePaths)})`,
      )
    }
    options.excludePaths.forEach((path: unknown, index: number) => {
      const ok = (typeof path === 'string' && path.startsWith('/')) || path instanceof RegExp
      if (!ok) {
        throw new TypeError(
          `options.excludePaths[${index}] must be a path starting with "/" or a RegExp (received ${describe(path)})`,
        )
      }
    })
    excludePaths = Object.freeze([...options.excludePaths])
  }

  let onWarning = defaultWarning
  if (options.onWarning !== undefined) {
    if (typeof options.onWarning !== 'function') {
      throw new TypeError(
        `options.onWarning must be a function (received ${describe(options.onWarning)})`,
      )
    }
    onWarning = options.onWarning
  }

  const openTelemetry = options.openTelemetry === undefined ? 'auto' : options.openTelemetry
  if (openTelemetry !== 'auto' && typeof openTelemetry !== 'boolean') {
    throw new TypeError(
      `options.openTelemetry must be 'auto', true or false (received ${describe(openTelemetry)})`,
    )
  }

  return Object.freeze({
    blockThresholdMs,
    registry,
    ownRegistry,
    delayResolutionMs,
    excludePaths,
    maxRoutes,
    captureStacks,
    maxStacksPerMinute,
    hangReportMs,
    closeTimeoutMs,
    onWarning,
    openTelemetry,
  })
}
