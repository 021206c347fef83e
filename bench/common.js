/**
 * What the benchmarks share: the median they report, and how a configuration's server process is
 * started (the OpenTelemetry ones need the SDK preloaded, before `express` is required).
 */

/** Median of the finite values (NaN when there is none). */
export function median(values) {
  const sorted = values.filter((value) => Number.isFinite(value)).sort((a, b) => a - b)
  if (sorted.length === 0) return Number.NaN
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
}

/** The configurations bench/server.js serves (what each is: the comment at its top). */
export const CONFIGS = [
  'bare',
  'looplens',
  'looplens-nostacks',
  'prom-bundle',
  'otel',
  'otel+looplens',
  'blocked-at',
]

/** Diagnostic configurations, never in a default run: one piece of looplens's work each. */
export const ABLATIONS = ['ablate-noop', 'ablate-als', 'ablate-close', 'ablate-prom', 'ablate-all']

/** Configurations of bench/server.js that run under the OpenTelemetry NodeSDK. */
export const OTEL_CONFIGS = new Set(['otel', 'otel+looplens'])

/** Node arguments bench/server.js needs for a configuration (before `server.js` itself). */
export function serverNodeArgs(config) {
  return OTEL_CONFIGS.has(config) ? ['--import', './otel-setup.js'] : []
}
