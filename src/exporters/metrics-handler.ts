/**
 * `lens.metricsHandler()`: the registry as Prometheus text or OpenMetrics, by `Accept` header.
 * A prom-client registry has one content type; a scrape that wants the other switches it for the
 * duration of the scrape. Scrapes of one registry are serialized so a switch never leaks into a
 * concurrent scrape.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { Registry } from 'prom-client'
import type { Warnings } from '../util/warnings.js'

const queues = new WeakMap<Registry, Promise<unknown>>()

/** True when the client prefers OpenMetrics (Prometheus sends it first in its Accept header). */
export function wantsOpenMetrics(accept: string | undefined): boolean {
  return accept?.includes('application/openmetrics-text') === true
}

/** Render the registry in the asked format. */
export function scrape(
  registry: Registry,
  openMetrics: boolean,
): Promise<{ body: string; contentType: string }> {
  const wanted = openMetrics ? Registry.OPENMETRICS_CONTENT_TYPE : Registry.PROMETHEUS_CONTENT_TYPE
  const run = async () => {
    const previous = registry.contentType
    if (previous !== wanted) registry.setContentType(wanted as never)
    try {
      return { body: await registry.metrics(), contentType: wanted }
    } finally {
      if (previous !== wanted) registry.setContentType(previous as never)
    }
  }
  const result = (queues.get(registry) ?? Promise.resolve()).then(run, run)
  queues.set(
    registry,
    result.catch(() => undefined),
  )
  return result
}

/** What a failed scrape answers: nothing of the error itself. */
const SCRAPE_FAILED_BODY = 'looplens: metrics collection failed\n'

export type MetricsHandler = (
  req: IncomingMessage,
  res: ServerResponse,
  next?: (error?: unknown) => void,
) => void

export function createMetricsHandler(registry: Registry, warnings: Warnings): MetricsHandler {
  return function looplensMetricsHandler(req, res) {
    scrape(registry, wantsOpenMetrics(req.headers.accept)).then(
      ({ body, contentType }) => {
        res.statusCode = 200
        res.setHeader('Content-Type', contentType)
        res.end(body)
      },
      (error: unknown) => {
        // The error goes to the operator (once, with its cause), never to the scraper: its text
        // may hold internal detail (hosts, paths, credentials in a collector's message).
        warnings.once('LOOPLENS_SCRAPE_FAILED', 'metrics collection failed', error)
        res.statusCode = 500
        res.setHeader('Content-Type', 'text/plain; charset=utf-8')
        res.end(SCRAPE_FAILED_BODY)
      },
    )
  }
}
