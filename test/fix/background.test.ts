/**
 * lens.background(res): tasks run after the response, in their own context, measured; failures
 * are counted, not thrown; close() waits for them. Server tests run the app in a child process;
 * the bare node:http and abort tests are in-process (nothing there blocks the loop).
 */
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { createLooplens } from 'looplens'
import { afterEach, describe, expect, it } from 'vitest'
import { type Fixture, startFixture } from '../helpers/fixture.js'
import { parseMetrics, select } from '../helpers/prometheus.js'

type Message = { type: string; task?: string; at?: number; name?: string; message?: string }

let fixture: Fixture | undefined
afterEach(async () => {
  await fixture?.stop()
  fixture = undefined
})

function waitForMessage(f: Fixture, match: (message: Message) => boolean, timeoutMs = 5_000) {
  return new Promise<Message>((resolve, reject) => {
    const deadline = Date.now() + timeoutMs
    const check = () => {
      const found = (f.messages as Message[]).find(match)
      if (found !== undefined) resolve(found)
      else if (Date.now() > deadline)
        reject(new Error(`no such message; got ${JSON.stringify(f.messages)}`))
      else setTimeout(check, 10)
    }
    check()
  })
}

async function scrape(url: string) {
  return parseMetrics(await (await fetch(`${url}/metrics`)).text())
}

describe('lens.background(res) in an Express server', () => {
  it('runs tasks after the response, in order, attributed to the route and the task', async () => {
    fixture = await startFixture('fix-background.js', { env: { TASK_MS: '600' } })
    const start = Date.now()
    const response = await fetch(`${fixture.url}/orders/42`, { method: 'POST' })
    const received = Date.now()
    expect(response.status).toBe(201)
    expect(await response.json()).toEqual({ id: '42' })
    const responseMs = received - start

    const audit = await waitForMessage(fixture, (m) => m.task === 'writeAuditLog')
    const taskMs = audit.at! - start
    // The response did not wait for the 600 ms task.
    expect(taskMs).toBeGreaterThanOrEqual(600)
    expect(responseMs).toBeLessThan(taskMs / 3)

    // In order: the invoice (third task) ends after the audit log (first).
    const invoice = await waitForMessage(fixture, (m) => m.task === 'renderInvoiceSync')
    expect(invoice.at!).toBeGreaterThanOrEqual(audit.at!)

    // The block inside the invoice task carries the request's method/route and the task name.
    const events = await fixture.waitForEvents(1)
    const block = events.find((event) => event.context.task === 'invoice')
    expect(block, JSON.stringify(events.map((e) => e.context))).toBeDefined()
    expect(block!.context).toMatchObject({ method: 'POST', route: '/orders/:id', task: 'invoice' })
    expect(block!.culprit?.functionName).toBe('renderInvoiceSync')

    // Measured, failure counted (not thrown: the server still answers).
    const samples = await scrape(fixture.url)
    const count = (task: string, outcome: string) =>
      select(samples, 'looplens_background_task_duration_seconds_count', { task, outcome })[0]
        ?.value
    expect(count('writeAuditLog', 'success')).toBe(1)
    expect(count('chargeCard', 'error')).toBe(1)
    expect(count('invoice', 'success')).toBe(1)
    expect(
      select(samples, 'looplens_background_tasks_active', { task: 'writeAuditLog' })[0]?.value,
    ).toBe(0)
    expect((await fetch(`${fixture.url}/health`)).status).toBe(200)
  })

  it('counts every failure, reports it once per task, and never crashes the server', async () => {
    fixture = await startFixture('fix-background.js')
    for (let i = 0; i < 2; i++) {
      expect((await fetch(`${fixture.url}/fail-twice`, { method: 'POST' })).status).toBe(200)
    }
    await sleep(300)
    const samples = await scrape(fixture.url)
    expect(
      select(samples, 'looplens_background_task_duration_seconds_count', {
        task: 'chargeCard',
        outcome: 'error',
      })[0]?.value,
    ).toBe(4)
    const warnings = (fixture.messages as Message[]).filter((m) => m.type === 'warning')
    expect(warnings).toHaveLength(1)
    expect(warnings[0]).toMatchObject({ name: 'LOOPLENS_TASK_FAILED' })
    expect(warnings[0]!.message).toContain('card declined')
    expect(fixture.stderr()).not.toMatch(/unhandled|UnhandledPromiseRejection/i)
    expect((await fetch(`${fixture.url}/health`)).status).toBe(200)
  })

  it('close() waits for a running task', async () => {
    fixture = await startFixture('fix-background.js', { env: { TASK_MS: '500' } })
    expect((await fetch(`${fixture.url}/close`, { method: 'POST' })).status).toBe(200)
    const closed = await waitForMessage(fixture, (m) => m.type === 'closed')
    const done = (fixture.messages as Message[]).find((m) => m.task === 'writeAuditLog')
    expect(done, 'the task ended before close() resolved').toBeDefined()
    expect(closed.at!).toBeGreaterThanOrEqual(done!.at!)
  })

  it('close() stops waiting after closeTimeoutMs and says what is left', async () => {
    fixture = await startFixture('fix-background.js', {
      env: { TASK_MS: '3000', CLOSE_TIMEOUT_MS: '200' },
    })
    const start = Date.now()
    await fetch(`${fixture.url}/close`, { method: 'POST' })
    const closed = await waitForMessage(fixture, (m) => m.type === 'closed')
    expect(closed.at! - start).toBeLessThan(2_000)
    const warning = (fixture.messages as Message[]).find(
      (m) => m.name === 'LOOPLENS_BACKGROUND_CLOSE_TIMEOUT',
    )
    expect(warning?.message).toContain('1 still running')
  })
})

describe('lens.background(res) without lens.express() and on abort', () => {
  it('works on a bare node:http server (task label only)', async () => {
    const lens = createLooplens({ captureStacks: false })
    const ran: string[] = []
    const server = http.createServer((_req, res) => {
      res.end('ok')
      lens.background(res).add(async function notify() {
        await sleep(20)
        ran.push('notify')
      })
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const { port } = server.address() as AddressInfo
    expect(await (await fetch(`http://127.0.0.1:${port}/`)).text()).toBe('ok')
    await lens.close() // waits for the task
    expect(ran).toEqual(['notify'])
    server.close()
  })

  it('runs the tasks when the client aborts, unless { onAbort: "skip" }', async () => {
    const lens = createLooplens({ captureStacks: false })
    const ran: string[] = []
    const server = http.createServer((req, res) => {
      const skip = req.url === '/skip'
      lens
        .background(res, skip ? { onAbort: 'skip' } : undefined)
        .addNamed(skip ? 'skipped' : 'kept', () => {
          ran.push(skip ? 'skipped' : 'kept')
        })
      setTimeout(() => res.end('late'), 300)
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const { port } = server.address() as AddressInfo
    for (const path of ['/skip', '/keep']) {
      const controller = new AbortController()
      const request = fetch(`http://127.0.0.1:${port}${path}`, { signal: controller.signal })
      await sleep(50)
      controller.abort()
      await request.catch(() => undefined)
    }
    await sleep(400)
    expect(ran).toEqual(['kept'])
    const text = await lens.registry.metrics()
    const samples = parseMetrics(text)
    expect(
      select(samples, 'looplens_background_task_duration_seconds_count', {
        task: 'skipped',
        outcome: 'aborted',
      })[0]?.value,
    ).toBe(1)
    expect(
      select(samples, 'looplens_background_task_duration_seconds_count', {
        task: 'kept',
        outcome: 'success',
      })[0]?.value,
    ).toBe(1)
    await lens.close()
    server.close()
  })

  it('rejects what is not a response or a function, naming it', () => {
    const lens = createLooplens({ captureStacks: false })
    expect(() => lens.background({})).toThrow(
      /lens.background\(res\): res must be an HTTP response/,
    )
    const res = new http.ServerResponse(new http.IncomingMessage(null as never))
    expect(() => lens.background(res).add(42 as never)).toThrow(
      /lens.background\(res\).add: fn must be a function \(received 42\)/,
    )
    expect(() => lens.background(res).addNamed('', () => 1)).toThrow(
      /name must be a non-empty string/,
    )
    expect(() => lens.background(res, { onAbort: 'never' as never })).toThrow(
      /options.onAbort must be "run" or "skip" \(received "never"\)/,
    )
    return lens.close()
  })
})
