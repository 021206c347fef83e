/** Types of load.js (plain JavaScript, so docker-compose.yml runs it with node alone). */
export interface LoadOptions {
  /** Stop after this long (ms). */
  durationMs: number
  /** Stop after this many requests in all. @default 50000 */
  maxRequests?: number
  /** Concurrent loops on fast routes. @default 4 */
  victims?: number
  /** Pause of the blocking loop between two blocking requests (ms). @default 250 */
  pauseMs?: number
}

export interface LoadResult {
  requests: number
  /** Requests that failed without an HTTP answer (not counting the ones aborted on purpose). */
  errors: number
  /** Requests by HTTP status, plus `aborted` (aborted on purpose) and `error`. */
  byStatus: Record<string, number>
}

/** Drive bounded load against the example app. */
export function driveLoad(baseUrl: string, options: LoadOptions): Promise<LoadResult>
