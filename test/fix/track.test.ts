/**
 * lens.track(name, fn): a non-HTTP entry point gets a context and measurement of its own. The
 * fake queue consumer blocks this very process on purpose: no HTTP client is involved.
 */
import { spawnSync } from 'node:child_process'
import { EventEmitter } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import { type BlockEvent, createLooplens, type Looplens } from 'looplens'
import { afterEach, describe, expect, it } from 'vitest'
import { parseMetrics, select } from '../helpers/prometheus.js'

let lens: Looplens | undefined
afterEach(async () => {
  await lens?.close()
  lens = undefined
})

async function taskCount(task: string, outcome: string): Promise<number | undefined> {
  const samples = parseMetrics(await lens!.registry.metrics())
  return select(samples, 'looplens_task_duration_seconds_count', { task, outcome })[0]?.value
}

function waitForBlock(match: (event: BlockEvent) => boolean, timeoutMs = 5_000) {
  return new Promise<BlockEvent>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no matching block event')), timeoutMs)
    lens!.on('block', function onBlock(event) {
      if (!match(event)) return
      clearTimeout(timer)
      lens!.off('block', onBlock)
      resolve(event)
    })
  })
}

describe('lens.track(name, fn)', () => {
  it('attributes a block inside a fake queue consumer to its task', async () => {
    lens = createLooplens({ blockThresholdMs: 50 })
    await sleep(200) // the watchdog worker is up
    const queue = new EventEmitter()
    const processed: string[] = []
    queue.on(
      'message',
      lens.track('orders-consumer', function handleOrder(message: string) {
        // Hold the loop on purpose, asleep in a synchronous call: a block of the app's whatever
        // the machine's load (a busy loop on a starved CPU is mostly waiting for the CPU).
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 200)
        processed.push(message)
      }),
    )
    const block = waitForBlock((event) => event.context.task === 'orders-consumer')
    setTimeout(() => queue.emit('message', 'order-1'), 20)
    const event = await block
    expect(processed).toEqual(['order-1'])
    expect(event.context).toMatchObject({ method: '', route: '', task: 'orders-consumer' })
    expect(event.durationMs).toBeGreaterThanOrEqual(150)
    expect(event.culprit?.functionName).toMatch(/(^|\.)handleOrder( \[as .*\])?$/)
    expect(await taskCount('orders-consumer', 'success')).toBe(1)
  })

  it('is transparent: same this, arguments, return value (a promise settling the same) and errors', async () => {
    lens = createLooplens({ captureStacks: false })
    const receiver = {
      factor: 3,
      multiply: lens.track('multiply', function multiply(this: { factor: number }, n: number) {
        return n * this.factor
      }),
    }
    expect(receiver.multiply(2)).toBe(6)
    expect(receiver.multiply.name).toBe('multiply')
    expect(receiver.multiply.length).toBe(1)

    const promise = Promise.resolve('done')
    const same = lens.track('same', () => promise)
    await expect(same()).resolves.toBe('done')

    const boom = new Error('boom')
    const throwing = lens.track('throwing', () => {
      throw boom
    })
    expect(() => throwing()).toThrow(boom)

    const rejecting = lens.track('rejecting', async () => {
      await sleep(5)
      throw boom
    })
    await expect(rejecting()).rejects.toBe(boom)

    await sleep(10)
    expect(await taskCount('multiply', 'success')).toBe(1)
    expect(await taskCount('same', 'success')).toBe(1)
    expect(await taskCount('throwing', 'error')).toBe(1)
    expect(await taskCount('rejecting', 'error')).toBe(1)
  })

  it('measures an async task until its promise settles', async () => {
    lens = createLooplens({ captureStacks: false })
    const job = lens.track('nightly-job', async () => {
      await sleep(120)
    })
    await job()
    const samples = parseMetrics(await lens.registry.metrics())
    const sum = select(samples, 'looplens_task_duration_seconds_sum', {
      task: 'nightly-job',
      outcome: 'success',
    })[0]?.value
    expect(sum).toBeGreaterThanOrEqual(0.1)
  })

  it('runs a lazy thenable (a knex/mongoose query) once: only native promises are observed', async () => {
    lens = createLooplens({ captureStacks: false })
    // A query builder: nothing runs until `.then()` is called, and every call runs it again.
    let executions = 0
    function lazyQuery() {
      return {
        // biome-ignore lint/suspicious/noThenProperty: a lazy thenable is exactly what is tested
        then(onFulfilled: (rows: string[]) => unknown, onRejected?: (error: unknown) => unknown) {
          executions += 1
          return Promise.resolve(['row']).then(onFulfilled, onRejected)
        },
      }
    }
    const findOrders = lens.track('find-orders', () => lazyQuery())
    const query = findOrders()
    await sleep(20)
    expect(executions).toBe(0) // looplens did not run the query
    expect(await query).toEqual(['row'])
    expect(executions).toBe(1) // the caller's await ran it exactly once
    // Measured as a sync call: the thenable is not a promise looplens may observe.
    expect(await taskCount('find-orders', 'success')).toBe(1)

    // A Promise subclass's own `then` is not run either; its settlement is still observed.
    let subclassThenCalls = 0
    class CountingPromise<T> extends Promise<T> {
      // biome-ignore lint/suspicious/noThenProperty: overriding then is the point of the case
      override then<A = T, B = never>(
        onFulfilled?: ((value: T) => A | PromiseLike<A>) | null,
        onRejected?: ((reason: unknown) => B | PromiseLike<B>) | null,
      ): Promise<A | B> {
        subclassThenCalls += 1
        return super.then(onFulfilled, onRejected)
      }
    }
    const subclassed = lens.track(
      'subclassed',
      () => new CountingPromise<number>((resolve) => resolve(7)),
    )
    const result = subclassed()
    expect(subclassThenCalls).toBe(0)
    await sleep(10)
    expect(await taskCount('subclassed', 'success')).toBe(1)
    expect(result).toBeInstanceOf(CountingPromise)
  })

  it('leaves a rejection nobody handles unhandled, as it was without looplens', () => {
    // In a child process: vitest itself fails a run on an unhandled rejection.
    const script = `
      import { createLooplens } from 'looplens'
      const lens = createLooplens({ captureStacks: false })
      process.on('unhandledRejection', (reason) => {
        console.log('unhandled: ' + reason.message)
        process.exit(0)
      })
      lens.track('nightly', async () => { throw new Error('boom') })()
      setTimeout(() => { console.log('nothing reported'); process.exit(0) }, 2000)
    `
    const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
      cwd: process.cwd(),
      encoding: 'utf8',
      timeout: 20_000,
    })
    expect(child.stderr).toBe('')
    expect(child.stdout.trim()).toBe('unhandled: boom')
  })

  it('rejects a missing name or function, naming the argument', async () => {
    lens = createLooplens({ captureStacks: false })
    expect(() => lens!.track('', () => 1)).toThrow(
      /lens.track\(name, fn\): name must be a non-empty string \(received ""\)/,
    )
    expect(() => lens!.track('x', 'nope' as never)).toThrow(
      /lens.track\(name, fn\): fn must be a function \(received "nope"\)/,
    )
  })
})
