/**
 * Route labels as a user sees them: the `http_route` values of the request-duration histogram
 * in the instance's registry, with their request counts.
 */
import type { Looplens } from 'looplens'
import { parseMetrics, select } from '../helpers/prometheus.js'

/** `http_route` → number of requests, from the instance's registry. */
export async function routeCounts(lens: Looplens): Promise<Map<string, number>> {
  const samples = parseMetrics(await lens.registry.metrics())
  const counts = new Map<string, number>()
  for (const sample of select(samples, 'http_server_request_duration_seconds_count')) {
    const route = sample.labels.http_route ?? ''
    counts.set(route, (counts.get(route) ?? 0) + sample.value)
  }
  return counts
}

/** Wait (bounded) until the registry holds `total` requests: a response is recorded at 'close'. */
export async function routeCountsWhen(
  lens: Looplens,
  total: number,
  timeoutMs = 3_000,
): Promise<Map<string, number>> {
  const deadline = performance.now() + timeoutMs
  for (;;) {
    const counts = await routeCounts(lens)
    let sum = 0
    for (const count of counts.values()) sum += count
    if (sum >= total || performance.now() > deadline) return counts
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

/** GET (or another method) `url` and read the body; the status and body text. */
export async function get(
  url: string,
  init?: RequestInit,
): Promise<{ status: number; body: string }> {
  const response = await fetch(url, init)
  return { status: response.status, body: await response.text() }
}
