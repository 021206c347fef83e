/**
 * Preloaded with `node --import ./otel-setup.js server.js` for the `otel` and `otel+looplens`
 * configurations: the SDK must patch `http` and `express` before the server loads them.
 *
 * Spans go through a BatchSpanProcessor (what production uses) into an exporter that only counts
 * them, so the benchmark measures instrumentation, not serialisation or the network.
 */
import { ExpressInstrumentation } from '@opentelemetry/instrumentation-express'
import { HttpInstrumentation } from '@opentelemetry/instrumentation-http'
import { NodeSDK } from '@opentelemetry/sdk-node'
import { BatchSpanProcessor } from '@opentelemetry/sdk-trace-base'

/** Counts exported spans per instrumentation scope; `server.js` reports them as a sanity check. */
class CountingSpanExporter {
  /** @type {Record<string, number>} */
  counts = {}

  export(spans, resultCallback) {
    for (const span of spans) {
      const scope = span.instrumentationScope?.name ?? span.instrumentationLibrary?.name ?? '?'
      this.counts[scope] = (this.counts[scope] ?? 0) + 1
    }
    resultCallback({ code: 0 })
  }

  shutdown() {
    return Promise.resolve()
  }

  forceFlush() {
    return Promise.resolve()
  }
}

// The SDK would otherwise pick OTLP exporters for metrics and logs from OTEL_* defaults.
process.env.OTEL_METRICS_EXPORTER ??= 'none'
process.env.OTEL_LOGS_EXPORTER ??= 'none'

export const spanExporter = new CountingSpanExporter()
globalThis.__benchSpanExporter = spanExporter

const sdk = new NodeSDK({
  serviceName: 'looplens-bench',
  spanProcessors: [new BatchSpanProcessor(spanExporter)],
  instrumentations: [new HttpInstrumentation(), new ExpressInstrumentation()],
})
sdk.start()
globalThis.__benchOtelSdk = sdk
