/**
 * `registry.clear()` between tests (a common idiom): prom-client removes every metric; an
 * instance created after it must register its metrics again and export them, and an instance
 * from before it must not take the new instance's metrics away when it closes.
 */
import express from 'express'
import { createLooplens, type Looplens } from 'looplens'
import { Registry } from 'prom-client'
import { afterEach, describe, expect, it } from 'vitest'
import { parseMetrics, select } from '../helpers/prometheus.js'
import { listen } from '../helpers/server.js'

const lenses: Looplens[] = []
afterEach(async () => {
  await Promise.all(lenses.splice(0).map((lens) => lens.close()))
})

function open(registry: Registry): Looplens {
  const lens = createLooplens({ registry, captureStacks: false })
  lenses.push(lens)
  return lens
}

/** One real request through an app measured by `lens`. */
async function requestThrough(lens: Looplens): Promise<void> {
  const app = express()
  app.use(lens.express())
  app.get('/users/:id', (_req, res) => {
    res.send('ok')
  })
  const server = await listen(app)
  try {
    const response = await fetch(`${server.url}/users/42`)
    expect(response.status).toBe(200)
    await response.text()
  } finally {
    await server.close()
  }
}

async function exported(registry: Registry) {
  const samples = parseMetrics(await registry.metrics())
  return {
    requests: select(samples, 'http_server_request_duration_seconds_count', {
      http_route: '/users/:id',
    })[0]?.value,
    delay: select(samples, 'looplens_eventloop_delay_seconds_count', {}).length,
    tasks: select(samples, 'looplens_task_duration_seconds_count', { task: 'job' })[0]?.value,
  }
}

describe('registry.clear()', () => {
  it('an instance created after clear() registers and exports its metrics again', async () => {
    const registry = new Registry()
    const before = open(registry)
    before.track('job', () => 1)()
    await requestThrough(before)
    expect(await exported(registry)).toEqual({ requests: 1, delay: 1, tasks: 1 })

    registry.clear()
    expect((await registry.metrics()).trim()).toBe('')

    const after = open(registry)
    after.track('job', () => 1)()
    await requestThrough(after)
    // Fresh metrics, as prom-client's own would be after clear(): the count starts again at 1.
    expect(await exported(registry)).toEqual({ requests: 1, delay: 1, tasks: 1 })

    // The instance from before clear() closes: the new instance's metrics stay registered.
    await before.close()
    await requestThrough(after)
    expect(await exported(registry)).toEqual({ requests: 2, delay: 1, tasks: 1 })

    // The last user closes: its metrics leave the registry, as always.
    await after.close()
    expect((await registry.metrics()).trim()).toBe('')
  })

  it('an instance from before clear() never removes a metric registered after it', async () => {
    const registry = new Registry()
    const before = open(registry)
    registry.clear()
    const after = open(registry)
    await before.close()
    await requestThrough(after)
    expect((await exported(registry)).requests).toBe(1)
  })
})
