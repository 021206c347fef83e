/**
 * A registry that fails: the error never reaches a scrape's client as internal text, and a
 * registry that refuses our metrics is named in the error createLooplens throws.
 */
import { createServer } from 'node:http'
import { createLooplens, type Looplens } from 'looplens'
import { Gauge, Registry } from 'prom-client'
import { afterEach, describe, expect, it } from 'vitest'
import { listen } from '../helpers/server.js'

const lenses: Looplens[] = []
afterEach(async () => {
  await Promise.all(lenses.splice(0).map((lens) => lens.close()))
})

describe('a failing registry', () => {
  it('a failed scrape answers 500 with a generic body and reports the error once', async () => {
    const registry = new Registry()
    // A user's collector that fails at scrape time, with internal detail in its message.
    new Gauge({
      name: 'app_queue_depth',
      help: 'Jobs waiting.',
      registers: [registry],
      collect() {
        throw new Error('connect ECONNREFUSED db.internal:5432 user=billing password=hunter2')
      },
    })
    const warnings: Error[] = []
    const lens = createLooplens({
      registry,
      captureStacks: false,
      onWarning: (warning) => warnings.push(warning),
    })
    lenses.push(lens)
    const server = await listen({
      listen: (port: number, host: string, callback: () => void) =>
        createServer(lens.metricsHandler()).listen(port, host, callback),
    })
    try {
      for (let scrape = 0; scrape < 3; scrape++) {
        const response = await fetch(`${server.url}/metrics`)
        expect(response.status).toBe(500)
        const body = await response.text()
        expect(body).toBe('looplens: metrics collection failed\n')
        expect(body).not.toMatch(/ECONNREFUSED|hunter2|db\.internal/)
      }
    } finally {
      await server.close()
    }
    const scrapeWarnings = warnings.filter((warning) => warning.name === 'LOOPLENS_SCRAPE_FAILED')
    expect(scrapeWarnings).toHaveLength(1)
    expect((scrapeWarnings[0]!.cause as Error).message).toMatch(/ECONNREFUSED/)
  })

  it('a registry whose registerMetric throws: createLooplens names options.registry and keeps the cause', () => {
    const registry = new Registry()
    const refusal = new Error('registry is frozen')
    let calls = 0
    const register = registry.registerMetric.bind(registry)
    // Accept two metrics, then refuse: the two already registered must not stay behind.
    registry.registerMetric = (metric) => {
      calls++
      if (calls > 2) throw refusal
      register(metric)
    }
    let thrown: unknown
    try {
      lenses.push(createLooplens({ registry, captureStacks: false }))
    } catch (error) {
      thrown = error
    }
    expect(thrown).toBeInstanceOf(TypeError)
    expect((thrown as Error).message).toMatch(
      /^options\.registry failed to register the metric [a-z_]+: registry is frozen$/,
    )
    expect((thrown as Error).cause).toBe(refusal)
    expect(registry.getMetricsAsArray()).toHaveLength(0)

    // The registry works again: a new instance registers everything.
    registry.registerMetric = register
    const lens = createLooplens({ registry, captureStacks: false })
    lenses.push(lens)
    expect(registry.getMetricsAsArray().length).toBeGreaterThanOrEqual(6)
  })
})
