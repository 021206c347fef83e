/**
 * Load for a session: autocannon (an optional peer dependency), with its progress bar on stderr
 * (drawn only on a terminal). Loaded on demand so `looplens run` without load needs nothing.
 */
import { createRequire } from 'node:module'
import path from 'node:path'
import { SessionError } from './app.js'

interface AutocannonResult {
  requests: { total: number; average: number }
  latency: { p50: number; p99: number; max: number }
  errors: number
  timeouts: number
  non2xx: number
  duration: number
}

interface AutocannonInstance {
  stop(): void
  on(event: 'done', listener: (result: AutocannonResult) => void): void
  on(event: 'error', listener: (error: Error) => void): void
}

interface Autocannon {
  (options: Record<string, unknown>): AutocannonInstance
  track(instance: AutocannonInstance, options: Record<string, unknown>): void
}

/** Find autocannon next to the user's project first, then next to looplens. */
function loadAutocannon(): Autocannon {
  const places = [path.join(process.cwd(), 'noop.js'), import.meta.url]
  for (const place of places) {
    try {
      return createRequire(place)('autocannon') as Autocannon
    } catch {
      // Try the next place.
    }
  }
  throw new SessionError(
    '--load-path needs autocannon (an optional peer dependency of looplens): npm install --save-dev autocannon',
  )
}

export interface LoadSummary {
  requests: number
  requestsPerSecond: number
  latencyP50Ms: number
  latencyP99Ms: number
  errors: number
  non2xx: number
}

/** Drive GET load at `url` for `durationS` seconds; resolves with a summary. Bounded in time. */
export function driveLoad(
  url: string,
  connections: number,
  durationS: number,
): Promise<LoadSummary> {
  const autocannon = loadAutocannon()
  return new Promise((resolve, reject) => {
    const instance = autocannon({ url, connections, duration: durationS, timeout: 30 })
    autocannon.track(instance, {
      outputStream: process.stderr,
      renderProgressBar: true,
      renderResultsTable: false,
      renderLatencyTable: false,
    })
    // autocannon stops by itself after `duration`; this is the belt to its braces.
    const guard = setTimeout(() => instance.stop(), (durationS + 35) * 1000)
    instance.on('error', (error) => {
      clearTimeout(guard)
      reject(new SessionError(`the load could not run: ${error.message}`))
    })
    instance.on('done', (result) => {
      clearTimeout(guard)
      resolve({
        requests: result.requests.total,
        requestsPerSecond: result.requests.average,
        latencyP50Ms: result.latency.p50,
        latencyP99Ms: result.latency.p99,
        errors: result.errors + result.timeouts,
        non2xx: result.non2xx,
      })
    })
  })
}

export function formatLoad(summary: LoadSummary): string {
  return `load: ${summary.requests} requests (${summary.requestsPerSecond.toFixed(0)}/s), latency p50 ${summary.latencyP50Ms} ms, p99 ${summary.latencyP99Ms} ms, ${summary.errors} errors, ${summary.non2xx} non-2xx`
}
