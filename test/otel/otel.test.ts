/**
 * OpenTelemetry, as a team that already traces with the NodeSDK sees it: the app (a fixture in a
 * child process: NodeSDK 0.223, instrumentation-http + instrumentation-express, in-memory span
 * exporter and an on-demand metric reader) on Express 4 and 5, this test as its client.
 */
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import type { BlockEvent } from 'looplens'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type Fixture, startFixture } from '../helpers/fixture.js'
import { checkMetrics, ensurePromtool } from '../helpers/promtool.js'

interface ExportedSpan {
  name: string
  kind: number
  traceId: string
  spanId: string
  parentSpanId?: string
  scope: string
  attributes: Record<string, unknown>
  startTime: number
  endTime: number
}

interface ExportedMetric {
  scope: string
  name: string
  unit: string
  points: { attributes: Record<string, unknown>; value?: number; count?: number; sum?: number }[]
}

/** What Prometheus 2.x sends when it scrapes. */
const PROMETHEUS_ACCEPT =
  'application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1'
const SERVER = 1
const BLOCK_MS = 150

async function getJson<T>(url: string): Promise<T> {
  const response = await fetch(url)
  if (response.status !== 200) throw new Error(`${url} answered ${response.status}`)
  return (await response.json()) as T
}

/** A busy loop the fixture's /block handler ran: in which server span, when (epoch ms). */
interface BusyLoop {
  spanId: string
  start: number
  end: number
}

const loopsOf = (fixture: Fixture) => getJson<BusyLoop[]>(`${fixture.url}/__otel/blocks`)
const spansOf = (fixture: Fixture) => getJson<ExportedSpan[]>(`${fixture.url}/__otel/spans`)
const metricsOf = (fixture: Fixture) =>
  getJson<{ metrics: ExportedMetric[]; errors: string[] }>(`${fixture.url}/__otel/metrics`)

async function get(fixture: Fixture, path: string): Promise<void> {
  const response = await fetch(`${fixture.url}${path}`)
  await response.text()
  if (response.status !== 200) throw new Error(`${path} answered ${response.status}`)
}

/** Wait until an event matching `accept` arrived (they come from the fixture over IPC). */
async function waitForEvent(
  fixture: Fixture,
  accept: (event: BlockEvent) => boolean,
  timeoutMs = 5_000,
): Promise<BlockEvent> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const found = fixture.events.find(accept)
    if (found !== undefined) return found
    if (Date.now() > deadline) throw new Error('no matching block event arrived')
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

/** Overlap (ms) of two intervals. */
function overlap(a: { start: number; end: number }, b: { start: number; end: number }): number {
  return Math.max(0, Math.min(a.end, b.end) - Math.max(a.start, b.start))
}

/** OpenMetrics exemplars of a family's bucket lines: `{ labels, traceId, spanId }`. */
function exemplarsOf(text: string, family: string) {
  const found: { line: string; traceId: string; spanId: string }[] = []
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${family}_bucket{`)) continue
    const match = / # \{trace_id="([0-9a-f]{32})",span_id="([0-9a-f]{16})"\} \S+ \S+$/.exec(line)
    if (match !== null) found.push({ line, traceId: match[1]!, spanId: match[2]! })
  }
  return found
}

/**
 * Prometheus' own OpenMetrics parser (the backfill path of promtool) on an exposition: it
 * parses exemplars strictly. Backfill needs a timestamp on every sample: add one.
 */
function parseWithPrometheusOpenMetricsParser(text: string): {
  status: number | null
  output: string
} {
  const timestamp = Math.floor(Date.now() / 1000)
  const lines = text.split('\n').map((line) => {
    if (line === '' || line.startsWith('#')) return line
    const exemplar = line.indexOf(' # {')
    const sample = exemplar === -1 ? line : line.slice(0, exemplar)
    return `${sample} ${timestamp}${exemplar === -1 ? '' : line.slice(exemplar)}`
  })
  const dir = mkdtempSync(path.join(tmpdir(), 'looplens-om-'))
  try {
    const input = path.join(dir, 'scrape.om')
    writeFileSync(input, lines.join('\n'))
    const result = spawnSync(
      'promtool',
      ['tsdb', 'create-blocks-from', 'openmetrics', input, path.join(dir, 'blocks')],
      { encoding: 'utf8', timeout: 30_000 },
    )
    return { status: result.status, output: `${result.stdout}${result.stderr}` }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

beforeAll(() => ensurePromtool(), 600_000)

describe.each([
  { name: 'Express 4', version: '4' },
  { name: 'Express 5', version: '5' },
])('OpenTelemetry on $name', ({ version }) => {
  describe('with the NodeSDK registered', () => {
    let fixture: Fixture
    let spans: ExportedSpan[]
    let server: ExportedSpan
    let block: ExportedSpan
    let event: BlockEvent
    let loops: BusyLoop[]

    beforeAll(async () => {
      fixture = await startFixture('otel-app.js', { env: { EXPRESS: version } })
      await get(fixture, '/fast')
      await get(fixture, `/block/${BLOCK_MS}`)
      event = await waitForEvent(fixture, (e) => e.context.route === '/block/:ms')
      spans = await spansOf(fixture)
      loops = await loopsOf(fixture)
      server = spans.find((span) => span.kind === SERVER && span.name === 'GET /block/:ms')!
      block = spans.find(
        (span) => span.name === 'eventloop.block' && span.parentSpanId === server?.spanId,
      )!
    })

    afterAll(async () => {
      await fixture?.stop()
    })

    it('puts an eventloop.block span under the blocking request’s server span', () => {
      expect(server, 'server span of GET /block/:ms').toBeDefined()
      expect(server.scope).toBe('@opentelemetry/instrumentation-http')
      expect(block, 'eventloop.block child of the server span').toBeDefined()
      expect(block.traceId).toBe(server.traceId)
      expect(block.scope).toBe('looplens')
      expect(block.attributes).toMatchObject({
        'http.route': '/block/:ms',
        'http.request.method': 'GET',
        'looplens.block.kind': 'callback',
      })
      // Start and end are the stall's measured ones (the detector's accuracy is tested with the
      // detector): the span lasts the stall, where the busy loop ran, inside the request.
      expect(block.startTime).toBeCloseTo(event.startTime, 1)
      expect(block.endTime - block.startTime).toBeCloseTo(event.durationMs, 1)
      expect(block.attributes['looplens.block.duration_ms']).toBeCloseTo(event.durationMs, 6)
      const loop = loops.find((l) => l.spanId === server.spanId)!
      expect(loop, 'the busy loop ran in this request').toBeDefined()
      expect(overlap(loop, { start: block.startTime, end: block.endTime })).toBeGreaterThanOrEqual(
        (loop.end - loop.start) * 0.9,
      )
      expect(block.endTime - block.startTime).toBeGreaterThanOrEqual(BLOCK_MS - 15)
      // The stall is the loop's busy time, which may include the parsing of this request just
      // before its span started: within the detection tolerance (15 ms) of the request's span.
      expect(block.startTime).toBeGreaterThanOrEqual(server.startTime - 15)
      expect(block.endTime).toBeLessThanOrEqual(server.endTime + 15)
    })

    it('carries the culprit as code.* attributes and the stack as code.stacktrace', () => {
      expect(block.attributes['code.function.name'], JSON.stringify(block.attributes)).toBe(
        'blockTheLoop',
      )
      expect(String(block.attributes['code.file.path'])).toMatch(/[/\\]otel-app\.js$/)
      expect(block.attributes['code.line.number']).toBeGreaterThan(0)
      expect(String(block.attributes['code.stacktrace'])).toMatch(
        /(^|\n) {4}at blockTheLoop \(file:\/\/[^\n]*otel-app\.js:\d+:\d+\)\n {4}at blockRoute \(/,
      )
    })

    it('takes instrumentation-express’s wrapper off its own middleware after the first request, and no other', () => {
      const serverSpans = spans.filter((span) => span.kind === SERVER)
      const own = spans.filter((span) => span.name === 'middleware - looplensMiddleware')
      // GET /fast then GET /block/:ms: the first went through the wrapper, the second did not.
      expect(serverSpans.length).toBeGreaterThanOrEqual(2)
      expect(own).toHaveLength(1)
      expect(own[0]!.traceId).toBe(serverSpans.find((span) => span.name === 'GET /fast')?.traceId)
      // The second request's express spans: Express's own and the route handler's, no looplens one.
      const secondExpress = spans.filter(
        (span) =>
          span.scope === '@opentelemetry/instrumentation-express' &&
          span.traceId === server.traceId,
      )
      const names = secondExpress.map((span) => span.name)
      expect(names).not.toContain('middleware - looplensMiddleware')
      expect(names.filter((name) => name.startsWith('request handler'))).toHaveLength(1)
    })

    it('gives the BlockEvent the trace and span id of the request span', () => {
      expect(event.context.traceId).toBe(server.traceId)
      expect(event.context.spanId).toBe(server.spanId)
    })

    it('puts the sync time and the blocked time on the server span', () => {
      const syncMs = server.attributes['looplens.request.sync_duration_ms'] as number
      const blockedMs = server.attributes['looplens.request.blocked_ms'] as number
      expect(syncMs).toBeGreaterThanOrEqual(BLOCK_MS)
      expect(blockedMs).toBeCloseTo(block.attributes['looplens.block.duration_ms'] as number, 3)
      const fast = spans.find((span) => span.kind === SERVER && span.name === 'GET /fast')!
      expect(fast.attributes['looplens.request.blocked_ms']).toBeTypeOf('number')
      expect(fast.attributes['looplens.request.sync_duration_ms']).toBeGreaterThan(0)
      expect(fast.attributes['looplens.request.sync_duration_ms']).toBeLessThan(BLOCK_MS)
    })

    it('records looplens metrics through the meter provider, and never a second http.server.request.duration', async () => {
      const { metrics, errors } = await metricsOf(fixture)
      expect(errors).toEqual([])
      const httpDurations = metrics.filter((m) => m.name === 'http.server.request.duration')
      expect(httpDurations.map((m) => m.scope)).toEqual(['@opentelemetry/instrumentation-http'])
      const ours = new Map(metrics.filter((m) => m.scope === 'looplens').map((m) => [m.name, m]))
      expect([...ours.keys()].sort()).toEqual([
        'looplens.eventloop.block.duration',
        'looplens.eventloop.delay',
        'looplens.request.sync_duration',
        'nodejs.eventloop.utilization',
      ])
      const blockPoint = ours
        .get('looplens.eventloop.block.duration')!
        .points.find((p) => p.attributes['http.route'] === '/block/:ms')!
      expect(blockPoint.count).toBe(1)
      expect(blockPoint.sum).toBeCloseTo(
        (block.attributes['looplens.block.duration_ms'] as number) / 1000,
        4,
      )
      const syncPoints = ours.get('looplens.request.sync_duration')!.points
      expect(syncPoints.find((p) => p.attributes['http.route'] === '/fast')?.count).toBe(1)
      expect(ours.get('looplens.eventloop.delay')!.points[0]!.count).toBeGreaterThan(0)
      expect(ours.get('looplens.eventloop.delay')!.unit).toBe('s')
      const utilization = ours.get('nodejs.eventloop.utilization')!.points[0]!.value!
      expect(utilization).toBeGreaterThan(0)
      expect(utilization).toBeLessThanOrEqual(1)
    })

    it('serves OpenMetrics with trace_id exemplars of exported spans, valid for Prometheus', async () => {
      const response = await fetch(`${fixture.url}/metrics`, {
        headers: { accept: PROMETHEUS_ACCEPT },
      })
      const text = await response.text()
      expect(response.headers.get('content-type')).toContain('application/openmetrics-text')
      const traceIds = new Set(spans.map((span) => span.traceId))

      const requestExemplars = exemplarsOf(text, 'http_server_request_duration_seconds').filter(
        (e) => e.line.includes('http_route="/block/:ms"'),
      )
      expect(requestExemplars).toHaveLength(1)
      expect(requestExemplars[0]!.traceId).toBe(server.traceId)
      expect(requestExemplars[0]!.spanId).toBe(server.spanId)
      const blockExemplars = exemplarsOf(text, 'looplens_eventloop_block_duration_seconds').filter(
        (e) => e.line.includes('http_route="/block/:ms"'),
      )
      expect(blockExemplars).toHaveLength(1)
      expect(blockExemplars[0]!.traceId).toBe(block.traceId)
      for (const exemplar of exemplarsOf(text, 'http_server_request_duration_seconds')) {
        expect(traceIds.has(exemplar.traceId), exemplar.line).toBe(true)
      }

      // promtool 2.42 `check metrics` reads the Prometheus text parser, which has no exemplar
      // syntax: lint everything else there, and the exemplars with Prometheus' OpenMetrics parser.
      const withoutExemplars = text.replace(/ # \{[^}]*\} \S+ \S+$/gm, '')
      expect(withoutExemplars).not.toContain('trace_id')
      const lint = checkMetrics(withoutExemplars)
      expect(lint.output).toBe('')
      expect(lint.status).toBe(0)
      const parsed = parseWithPrometheusOpenMetricsParser(text)
      expect(parsed.status, parsed.output).toBe(0)
      // …and that parser is a check that can fail on a broken exemplar.
      const broken = text.replace(/ # \{trace_id="([0-9a-f]+)"/, ' # {trace_id="$1" broken')
      expect(parseWithPrometheusOpenMetricsParser(broken).status).not.toBe(0)
    })

    it('serves the same registry as Prometheus text without exemplars, passing promtool', async () => {
      const response = await fetch(`${fixture.url}/metrics`)
      const text = await response.text()
      expect(response.headers.get('content-type')).toContain('text/plain')
      expect(text).toContain('http_route="/block/:ms"')
      expect(text).not.toContain('trace_id')
      const lint = checkMetrics(text)
      expect(lint.output).toBe('')
      expect(lint.status).toBe(0)
    })

    it('parents every block span to the blocking request under 20 concurrent requests', async () => {
      const before = new Set((await spansOf(fixture)).map((span) => span.spanId))
      const BLOCKING = 6
      let stop = false
      let fastDone = 0
      const deadline = Date.now() + 20_000
      // 20 requests in flight all along (each waits 20 ms in the server), bounded in count and
      // time. They keep 20 contexts and spans alive around every block, without saturating the
      // loop (saturation is reported as such, with no parent: tested with the detector).
      const clients = Array.from({ length: 20 }, async () => {
        while (!stop && fastDone < 4_000 && Date.now() < deadline) {
          await get(fixture, '/wait/20')
          fastDone++
        }
      })
      for (let i = 0; i < BLOCKING; i++) await get(fixture, '/block/80')
      stop = true
      await Promise.all(clients)
      // The last block is measured by the heartbeat or the request's own end: give it a beat.
      await new Promise((resolve) => setTimeout(resolve, 100))

      const all = (await spansOf(fixture)).filter((span) => !before.has(span.spanId))
      const loops = await loopsOf(fixture)
      const byId = new Map(all.map((span) => [span.spanId, span]))
      const blockServers = all.filter((s) => s.kind === SERVER && s.name === 'GET /block/:ms')
      const waitServers = all.filter((s) => s.kind === SERVER && s.name === 'GET /wait/:ms')
      expect(blockServers).toHaveLength(BLOCKING)
      expect(waitServers.length).toBeGreaterThanOrEqual(20)
      const blockSpans = all.filter((span) => span.name === 'eventloop.block')
      const parented = blockSpans.filter((span) => span.parentSpanId !== undefined)
      // Every block span sits under the span of the request it is attributed to…
      for (const span of parented) {
        const parent = byId.get(span.parentSpanId!)
        expect(parent, `parent of ${JSON.stringify(span)}`).toBeDefined()
        expect(parent!.traceId).toBe(span.traceId)
        expect(parent!.attributes['http.route']).toBe(span.attributes['http.route'])
      }
      // …and every stall a blocking request caused is under that very request: the one whose
      // handler ran the busy loop, among the 20 in flight.
      const ours = loops.filter((loop) => blockServers.some((s) => s.spanId === loop.spanId))
      expect(ours).toHaveLength(BLOCKING)
      let parentedToItsRequest = 0
      for (const loop of ours) {
        const covering = blockSpans.filter(
          (span) =>
            overlap(loop, { start: span.startTime, end: span.endTime }) >=
            (loop.end - loop.start) * 0.9,
        )
        expect(covering, `block spans covering the loop of ${loop.spanId}`).toHaveLength(1)
        const span = covering[0]!
        if (span.attributes['looplens.block.kind'] === 'saturation') {
          // On a starved machine the stall can outlast the loop enough for the detector to call
          // it saturation: then it blames no request, so it has no parent — never another's.
          expect(span.parentSpanId, JSON.stringify(span)).toBeUndefined()
          continue
        }
        expect(span.parentSpanId, JSON.stringify(span)).toBe(loop.spanId)
        expect(span.attributes['looplens.block.kind']).toBe('callback')
        parentedToItsRequest++
      }
      expect(parentedToItsRequest).toBeGreaterThanOrEqual(BLOCKING / 2)
      for (const server of blockServers) {
        expect(
          parented.filter((span) => span.parentSpanId === server.spanId).length,
          `block spans under ${server.spanId}`,
        ).toBeLessThanOrEqual(1)
      }
    })
  })

  describe('with openTelemetry: false', () => {
    let fixture: Fixture

    beforeAll(async () => {
      fixture = await startFixture('otel-app.js', {
        env: { EXPRESS: version, LOOPLENS_OTEL: 'false' },
      })
      await get(fixture, `/block/${BLOCK_MS}`)
      await waitForEvent(fixture, (e) => e.context.route === '/block/:ms')
    })

    afterAll(async () => {
      await fixture?.stop()
    })

    it('makes no span, no metric, no attribute and no exemplar, while the SDK traces', async () => {
      const spans = await spansOf(fixture)
      const server = spans.find((span) => span.kind === SERVER && span.name === 'GET /block/:ms')
      expect(server, 'the SDK still traces the request').toBeDefined()
      expect(spans.filter((span) => span.scope === 'looplens')).toEqual([])
      expect(Object.keys(server!.attributes).filter((key) => key.startsWith('looplens.'))).toEqual(
        [],
      )
      const { metrics } = await metricsOf(fixture)
      expect(metrics.filter((m) => m.scope === 'looplens')).toEqual([])
      expect(fixture.events.every((e) => e.context.traceId === undefined)).toBe(true)
      const text = await (
        await fetch(`${fixture.url}/metrics`, { headers: { accept: PROMETHEUS_ACCEPT } })
      ).text()
      expect(text).toContain('http_route="/block/:ms"')
      expect(text).not.toContain('trace_id')
    })
  })

  describe('with no provider registered', () => {
    let fixture: Fixture

    beforeAll(async () => {
      fixture = await startFixture('otel-app.js', {
        env: { EXPRESS: version, OTEL_SDK: 'later' },
      })
    })

    afterAll(async () => {
      await fixture?.stop()
    })

    it('makes no spans, no ids, no exemplars, and registers nothing itself', async () => {
      await get(fixture, '/fast')
      await get(fixture, `/block/${BLOCK_MS}`)
      const event = await waitForEvent(fixture, (e) => e.context.route === '/block/:ms')
      expect(event.kind).toBe('callback')
      expect(event.context.traceId).toBeUndefined()
      expect(event.context.spanId).toBeUndefined()
      expect(await getJson(`${fixture.url}/__otel/state`)).toEqual({
        tracerRegistered: false,
        meterRegistered: false,
      })
      const text = await (
        await fetch(`${fixture.url}/metrics`, { headers: { accept: PROMETHEUS_ACCEPT } })
      ).text()
      expect(text).toContain('http_route="/block/:ms"')
      expect(text).not.toContain('trace_id')

      // An SDK registered after the first request is not used ('auto' decided at first use):
      // nothing of what happened, nor of what happens next, turns into looplens spans.
      await get(fixture, '/__otel/register')
      expect(await getJson(`${fixture.url}/__otel/state`)).toEqual({
        tracerRegistered: true,
        meterRegistered: true,
      })
      await get(fixture, `/block/${BLOCK_MS}`)
      await waitForEvent(
        fixture,
        (e) => e.context.route === '/block/:ms' && e !== event && e.startTime > event.startTime,
      )
      const spans = await spansOf(fixture)
      expect(spans.filter((span) => span.name === 'eventloop.block')).toEqual([])
    })
  })
})
