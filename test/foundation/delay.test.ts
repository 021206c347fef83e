/**
 * looplens_eventloop_delay_seconds and looplens_eventloop_utilization_ratio: cumulative across
 * scrapes, consistent counts, a 200 ms stall in the right bucket, utilization within 0…1.
 */
import { createLooplens, type Looplens } from 'looplens'
import { afterEach, describe, expect, it } from 'vitest'
import { type MetricSample, parseMetrics, sampleValue, select } from '../helpers/prometheus.js'
import { busy } from '../helpers/server.js'

const DELAY = 'looplens_eventloop_delay_seconds'
const UTILIZATION = 'looplens_eventloop_utilization_ratio'
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

async function scrape(lens: Looplens): Promise<MetricSample[]> {
  return parseMetrics(await lens.registry.metrics())
}

/** Delay buckets as [le, cumulative count], in output order. */
function buckets(samples: MetricSample[]): [string, number][] {
  return select(samples, `${DELAY}_bucket`).map((sample) => [sample.labels.le!, sample.value])
}

function bucket(samples: MetricSample[], le: string): number {
  return sampleValue(samples, `${DELAY}_bucket`, { le })
}

describe('event-loop delay histogram', () => {
  let lens: Looplens | undefined
  afterEach(async () => {
    await lens?.close()
    lens = undefined
  })

  it('has the documented buckets, consistent counts, and never resets on a scrape', async () => {
    lens = createLooplens({ delayResolutionMs: 10 })
    await sleep(150)
    const first = await scrape(lens)
    await sleep(150)
    const second = await scrape(lens)

    expect(buckets(first).map(([le]) => le)).toEqual([
      '0.001',
      '0.0025',
      '0.005',
      '0.01',
      '0.025',
      '0.05',
      '0.1',
      '0.25',
      '0.5',
      '1',
      '2.5',
      '5',
      '10',
      '+Inf',
    ])
    for (const samples of [first, second]) {
      const counts = buckets(samples).map(([, value]) => value)
      // Cumulative within a scrape: non-decreasing, and +Inf is the count.
      for (let i = 1; i < counts.length; i++)
        expect(counts[i]).toBeGreaterThanOrEqual(counts[i - 1]!)
      expect(bucket(samples, '+Inf')).toBe(sampleValue(samples, `${DELAY}_count`))
      expect(sampleValue(samples, `${DELAY}_sum`)).toBeGreaterThanOrEqual(0)
    }
    // Cumulative across scrapes: every bucket keeps what it had and the count grows.
    expect(sampleValue(first, `${DELAY}_count`)).toBeGreaterThan(0)
    expect(sampleValue(second, `${DELAY}_count`)).toBeGreaterThan(
      sampleValue(first, `${DELAY}_count`),
    )
    const before = buckets(first)
    buckets(second).forEach(([le, value], index) => {
      expect(value, le).toBeGreaterThanOrEqual(before[index]![1])
    })
    expect(sampleValue(second, `${DELAY}_sum`)).toBeGreaterThanOrEqual(
      sampleValue(first, `${DELAY}_sum`),
    )
  })

  it('puts a 200 ms stall in the (0.1, 0.25] bucket, and keeps it there after more scrapes', async () => {
    lens = createLooplens({ delayResolutionMs: 10 })
    await sleep(100)
    const before = await scrape(lens)
    const inBucket = (samples: MetricSample[]) => bucket(samples, '0.25') - bucket(samples, '0.1')
    const above = (samples: MetricSample[]) => bucket(samples, '+Inf') - bucket(samples, '0.25')

    setTimeout(function stallFor200ms() {
      busy(200)
    }, 10)
    await sleep(300)
    const after = await scrape(lens)
    expect(inBucket(after) - inBucket(before)).toBe(1)
    expect(above(after) - above(before)).toBe(0)
    expect(
      sampleValue(after, `${DELAY}_sum`) - sampleValue(before, `${DELAY}_sum`),
    ).toBeGreaterThan(0.15)
    expect(lens.snapshot().delay.max).toBeGreaterThan(150)

    await sleep(50)
    const later = await scrape(lens)
    expect(inBucket(later) - inBucket(before)).toBe(1)
  })

  it('reports utilization over the window since the previous scrape, between 0 and 1', async () => {
    lens = createLooplens()
    await scrape(lens)
    busy(200)
    const busyWindow = sampleValue(await scrape(lens), UTILIZATION)
    await sleep(300)
    const idleWindow = sampleValue(await scrape(lens), UTILIZATION)
    expect(busyWindow).toBeGreaterThan(0.8)
    expect(busyWindow).toBeLessThanOrEqual(1)
    expect(idleWindow).toBeGreaterThanOrEqual(0)
    expect(idleWindow).toBeLessThan(0.5)
  })
})
