/**
 * `@opentelemetry/api`, an optional peer dependency, loaded once and synchronously
 * (`createLooplens()` is synchronous). When it is not installed every OpenTelemetry path of
 * looplens is off, decided once, at construction: nothing is tried per request.
 *
 * Only the API is ever loaded, never an SDK: the application owns its SDK, its providers and its
 * exporters (OpenTelemetry's rule for instrumentation libraries).
 */
import { createRequire } from 'node:module'
import type * as OtelApi from '@opentelemetry/api'

export type OpenTelemetryApi = typeof OtelApi

let loaded: { api: OpenTelemetryApi | undefined } | undefined

/** The API, or `undefined` when `@opentelemetry/api` cannot be loaded. Cached per process. */
export function loadOpenTelemetryApi(): OpenTelemetryApi | undefined {
  if (loaded === undefined) {
    let api: OpenTelemetryApi | undefined
    try {
      // createRequire, not import(): the factory is synchronous. The CommonJS and ESM builds of
      // the API share their registered providers through a global symbol, so it does not matter
      // which one the application imported.
      api = createRequire(import.meta.url)('@opentelemetry/api') as OpenTelemetryApi
      if (typeof api?.trace?.getTracerProvider !== 'function') api = undefined
    } catch {
      api = undefined
    }
    loaded = { api }
  }
  return loaded.api
}

/** @internal tests: forget the cached load result. */
export function resetOpenTelemetryApiForTests(): void {
  loaded = undefined
}

/**
 * Whether an SDK registered a tracer provider. The global API always hands out a proxy; while
 * nothing is registered, the proxy delegates to the API's no-op provider, which every proxy
 * shares: compare with a fresh proxy's delegate (one property read, no span is made).
 */
export function tracerProviderRegistered(api: OpenTelemetryApi): boolean {
  const provider = api.trace.getTracerProvider() as Partial<OtelApi.ProxyTracerProvider>
  if (typeof provider.getDelegate !== 'function') return true
  noopTracerProvider ??= new api.ProxyTracerProvider().getDelegate()
  return provider.getDelegate() !== noopTracerProvider
}

let noopTracerProvider: OtelApi.TracerProvider | undefined

/** Whether an SDK registered a meter provider (there is no proxy: the no-op meter is a singleton). */
export function meterProviderRegistered(api: OpenTelemetryApi): boolean {
  return api.metrics.getMeterProvider().getMeter('looplens') !== api.createNoopMeter()
}
