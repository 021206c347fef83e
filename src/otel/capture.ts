/**
 * The span of a request or task, captured when its looplens context is created, so that a block
 * that happens later can be parented to it (and a Prometheus observation can carry its trace id).
 *
 * Every place that creates a `LensContext` calls {@link captureSpan}: the Express middleware,
 * `lens.track()`. While OpenTelemetry is off (the API is not installed, `openTelemetry: false`, or
 * no SDK was found) it is one comparison; while it is on, one read of the active OpenTelemetry
 * context. Nothing here imports `@opentelemetry/api`: spans are read by duck typing.
 */
import type { LensContext } from '../context/context.js'
import type { BlockContext } from '../types.js'

/** Reads the span to attach to a new context (installed by an OpenTelemetry exporter). */
export type SpanReader = () => unknown

/** Most recent open instance last: it is the one whose reader is used. */
const readers: SpanReader[] = []
let current: SpanReader | undefined

/**
 * Store the span active right now (the HTTP server span under instrumentation-http) in
 * `context.span`. A no-op while OpenTelemetry is off.
 * @example
 * const context = new LensContext('', name, undefined, performance.now())
 * captureSpan(context)
 */
export function captureSpan(context: LensContext): void {
  if (current !== undefined) context.span = current()
}

/** Install a reader: it is used until {@link replaceSpanReader} replaces or removes it. */
export function installSpanReader(reader: SpanReader): void {
  readers.push(reader)
  current = reader
}

/**
 * Swap an installed reader for another (a pending reader that made its decision), or remove it
 * (`to` undefined: the instance closed, or decided OpenTelemetry is off).
 */
export function replaceSpanReader(from: SpanReader, to: SpanReader | undefined): void {
  const index = readers.lastIndexOf(from)
  if (index === -1) return
  if (to === undefined) readers.splice(index, 1)
  else readers[index] = to
  current = readers.at(-1)
}

/** Trace and span id of a span, as W3C hex strings. */
export interface TraceIds {
  traceId: string
  spanId: string
}

interface SpanContextLike {
  traceId?: unknown
  spanId?: unknown
  traceFlags?: unknown
}

const INVALID_TRACE_ID = '00000000000000000000000000000000'
/** W3C trace flag "sampled". */
const SAMPLED = 1

/**
 * The ids of a span, only when it is valid and sampled: an id of an unsampled trace would be a
 * dead link (in an exemplar, in a log line), and a child of it would not be recorded anyway.
 */
export function traceIdsOf(span: unknown): TraceIds | undefined {
  if (typeof span !== 'object' || span === null) return undefined
  const spanContext = (span as { spanContext?: () => SpanContextLike }).spanContext
  if (typeof spanContext !== 'function') return undefined
  let ids: SpanContextLike
  try {
    ids = spanContext.call(span)
  } catch {
    return undefined
  }
  const { traceId, spanId, traceFlags } = ids ?? {}
  if (typeof traceId !== 'string' || typeof spanId !== 'string') return undefined
  if (traceId.length !== 32 || traceId === INVALID_TRACE_ID || spanId.length !== 16) {
    return undefined
  }
  if (typeof traceFlags !== 'number' || (traceFlags & SAMPLED) === 0) return undefined
  return { traceId, spanId }
}

/**
 * The BlockContext labels plus the trace and span id of the context's span, when there is a
 * sampled one (for the detector's `blockContextOf`).
 */
export function withTraceIds(labels: BlockContext, span: unknown): BlockContext {
  if (span === undefined) return labels
  const ids = traceIdsOf(span)
  if (ids === undefined) return labels
  labels.traceId = ids.traceId
  labels.spanId = ids.spanId
  return labels
}
