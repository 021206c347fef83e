/**
 * Lifecycle: many instances in one process (own registries and one shared user registry) neither
 * throw nor leak; close() is idempotent; nothing looplens starts keeps a process alive.
 */
import { spawn } from 'node:child_process'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import express from 'express'
import { createLooplens, type Looplens } from 'looplens'
import { Registry } from 'prom-client'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { parseMetrics, sampleValue, select } from '../helpers/prometheus.js'
import { listen } from '../helpers/server.js'

const FIXTURES = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../fixtures')
const LOOPLENS_FAMILIES = [
  'http_server_request_duration_seconds',
  'http_server_active_requests',
  'looplens_request_sync_duration_seconds',
  'looplens_eventloop_block_duration_seconds',
  'looplens_eventloop_delay_seconds',
  'looplens_eventloop_utilization_ratio',
]
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Active timers, workers and ports of this process, by type. */
function activeResources(): Record<string, number> {
  const counts: Record<string, number> = {}
  for (const type of process.getActiveResourcesInfo()) counts[type] = (counts[type] ?? 0) + 1
  return counts
}

/** Resource types of which there are more now than in `baseline` (with the excess). */
function excess(baseline: Record<string, number>): Record<string, number> {
  const more: Record<string, number> = {}
  for (const [type, count] of Object.entries(activeResources())) {
    if (count > (baseline[type] ?? 0)) more[type] = count - (baseline[type] ?? 0)
  }
  return more
}

/** Wait (bounded) until no resource type exceeds `baseline`; returns the excess left. */
async function settleTo(baseline: Record<string, number>): Promise<Record<string, number>> {
  const deadline = performance.now() + 3_000
  let more = excess(baseline)
  while (Object.keys(more).length > 0 && performance.now() < deadline) {
    await sleep(20)
    more = excess(baseline)
  }
  return more
}

describe('many instances in one process', () => {
  const warnings: Error[] = []
  const onProcessWarning = (warning: Error) => warnings.push(warning)
  beforeEach(() => {
    warnings.length = 0
    process.on('warning', onProcessWarning)
  })
  afterEach(() => {
    process.off('warning', onProcessWarning)
  })

  it('creates and closes 50 instances with their own registries, leaving nothing running', async () => {
    await sleep(50)
    const baseline = activeResources()
    const lenses: Looplens[] = []
    for (let i = 0; i < 50; i++) lenses.push(createLooplens({ onWarning: (w) => warnings.push(w) }))
    for (const lens of lenses) {
      const text = await lens.registry.metrics()
      for (const family of LOOPLENS_FAMILIES) expect(text, family).toContain(`# TYPE ${family} `)
      const samples = parseMetrics(text)
      expect(sampleValue(samples, 'looplens_eventloop_delay_seconds_count')).toBeGreaterThanOrEqual(
        0,
      )
    }
    for (const lens of lenses) {
      const first = lens.close()
      expect(lens.close()).toBe(first)
      await first
      await lens.close()
    }
    expect(warnings.map((warning) => warning.message)).toEqual([])
    expect(await settleTo(baseline)).toEqual({})
  })

  it('shares one user registry among 50 instances: one metric each, none left after the last close', async () => {
    const registry = new Registry()
    const lenses: Looplens[] = []
    for (let i = 0; i < 50; i++) {
      lenses.push(createLooplens({ registry, onWarning: (w) => warnings.push(w) }))
    }
    const text = await registry.metrics()
    for (const family of LOOPLENS_FAMILIES) {
      expect(text.split(`# TYPE ${family} `).length - 1, family).toBe(1)
    }

    // The survivors keep recording after the others closed.
    for (const lens of lenses.slice(1)) await lens.close()
    const app = express()
    app.use(lenses[0]!.express())
    app.get('/users/:id', (_req, res) => {
      res.send('ok')
    })
    const server = await listen(app)
    try {
      await (await fetch(`${server.url}/users/1`)).text()
    } finally {
      await server.close()
    }
    const samples = parseMetrics(await registry.metrics())
    expect(
      sampleValue(samples, 'http_server_request_duration_seconds_count', {
        http_route: '/users/:id',
      }),
    ).toBe(1)
    expect(select(samples, 'looplens_eventloop_delay_seconds_count')).toHaveLength(1)

    await lenses[0]!.close()
    await lenses[0]!.close()
    expect((await registry.metrics()).trim()).toBe('')
    expect(registry.getMetricsAsArray()).toHaveLength(0)

    // …and the registry takes a new instance afterwards.
    const again = createLooplens({ registry })
    expect(await registry.metrics()).toContain('# TYPE looplens_eventloop_delay_seconds histogram')
    await again.close()
    expect(warnings.map((warning) => warning.message)).toEqual([])
  })

  it('creates and closes 50 instances one after another on a shared registry', async () => {
    const registry = new Registry()
    for (let i = 0; i < 50; i++) {
      const lens = createLooplens({ registry, onWarning: (w) => warnings.push(w) })
      expect(await registry.metrics()).toContain('looplens_eventloop_delay_seconds_count')
      await Promise.all([lens.close(), lens.close()])
    }
    expect(registry.getMetricsAsArray()).toHaveLength(0)
    expect(warnings.map((warning) => warning.message)).toEqual([])
  })
})

describe('nothing keeps the process alive', () => {
  it.each([
    ['defaults (watchdog on)', {}],
    ['captureStacks: false', { CAPTURE_STACKS: 'false' }],
    ['after a scrape', { SCRAPE: '1' }],
  ])('a process that only creates a lens exits by itself: %s', async (_name, env) => {
    const started = performance.now()
    const child = spawn(process.execPath, [path.join(FIXTURES, 'foundation-quiet.js')], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let output = ''
    child.stdout.on('data', (chunk) => {
      output += chunk
    })
    child.stderr.on('data', (chunk) => {
      output += chunk
    })
    const exit = await new Promise<{ code: number | null; timedOut: boolean }>((resolve) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL')
        resolve({ code: null, timedOut: true })
      }, 5_000)
      child.on('exit', (code) => {
        clearTimeout(timer)
        resolve({ code, timedOut: false })
      })
    })
    expect(exit, output).toEqual({ code: 0, timedOut: false })
    expect(output.trim()).toBe('created')
    expect(performance.now() - started).toBeLessThan(5_000)
  })
})
