/**
 * OpenTelemetry for the example, loaded before the app: `node --import ./instrumentation.js`.
 *
 * NodeSDK with the http and express instrumentations. Exporters follow the standard OTEL_*
 * environment variables (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_TRACES_EXPORTER, OTEL_METRICS_EXPORTER,
 * OTEL_SERVICE_NAME, …); with none of them set, spans and metrics go to the console.
 */
import { register } from 'node:module'
import { ExpressInstrumentation } from '@opentelemetry/instrumentation-express'
import { HttpInstrumentation } from '@opentelemetry/instrumentation-http'
import { NodeSDK } from '@opentelemetry/sdk-node'

// The ESM loader hook lets the instrumentations patch `import express from 'express'`.
register('@opentelemetry/instrumentation/hook.mjs', import.meta.url)

const configured = Object.keys(process.env).some(
  (name) =>
    name.startsWith('OTEL_EXPORTER_OTLP_') ||
    name === 'OTEL_TRACES_EXPORTER' ||
    name === 'OTEL_METRICS_EXPORTER',
)
if (!configured) {
  // NodeSDK's default is OTLP to localhost:4318; with nothing configured, show it instead.
  process.env.OTEL_TRACES_EXPORTER = 'console'
  process.env.OTEL_METRICS_EXPORTER = 'console'
  process.env.OTEL_METRIC_EXPORT_INTERVAL ??= '10000'
}
process.env.OTEL_SERVICE_NAME ??= 'looplens-otel-example'

const sdk = new NodeSDK({
  instrumentations: [
    new HttpInstrumentation(),
    // Every Express middleware gets a span of its own. looplens takes the wrapper off its own
    // layer at the first request: that span would only time looplens, in every trace.
    new ExpressInstrumentation(),
  ],
})
sdk.start()

process.once('SIGTERM', () => {
  sdk.shutdown().finally(() => process.exit(0))
})
