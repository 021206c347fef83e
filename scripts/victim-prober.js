/**
 * The demo's victim prober: clients in a worker thread (so the load generator cannot delay their
 * clock) that keep requesting the fast route GET /health, and the accounting of what they saw.
 *
 * Why the accounting counts unfinished probes: a probe stuck behind a blocked loop may still be in
 * flight when the demo closes its measurement window. Counting only the probes that finished in
 * the window left out exactly the ones that suffered: the worst endpoint showed a victim p99 of
 * "—" (no probe finished) or 1 ms (only the probes between two blocks finished) against 28 ms
 * for its good twin. A probe still in flight when a window closes counts there with its elapsed
 * time — a lower bound of its latency — and is not counted again when it finishes.
 */
import http from 'node:http'
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads'

/** Latencies of probes per window; every probe counts in exactly one window. */
export class ProbeWindow {
  /** Start time of each probe in flight that no window has counted yet. */
  #inFlight = new Map()
  #nextId = 0
  #samples = []

  /** A probe starts at `now` (ms); returns its id for {@link finish}. */
  start(now) {
    const id = this.#nextId++
    this.#inFlight.set(id, now)
    return id
  }

  /** The probe answered (or failed) at `now`: its latency counts in the current window. */
  finish(id, now) {
    const start = this.#inFlight.get(id)
    // Already counted (with its elapsed time) by a window that closed while it was in flight.
    if (start === undefined) return
    this.#inFlight.delete(id)
    this.#samples.push(now - start)
  }

  /**
   * Close the window at `now`: the latencies of the probes that finished in it, and for each
   * probe still in flight its elapsed time so far (it waited at least that long in this window).
   */
  take(now) {
    const samples = this.#samples
    this.#samples = []
    for (const [id, start] of this.#inFlight) {
      samples.push(now - start)
      this.#inFlight.delete(id)
    }
    return samples
  }
}

/** The q-quantile (0…1) of `values` by the nearest-rank method; NaN when there is none. */
export function percentile(values, q) {
  if (values.length === 0) return Number.NaN
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]
}

/**
 * Start `concurrency` clients probing `${url}/health`, each waiting `gapMs` between probes.
 * `take()` closes the current window (see {@link ProbeWindow.take}); `stop()` ends the worker.
 */
export function startProber(url, { concurrency = 2, gapMs = 20 } = {}) {
  const worker = new Worker(new URL(import.meta.url), {
    workerData: { victimProber: true, url, concurrency, gapMs },
  })
  return {
    /** Latencies (ms) of the window that closes now. */
    take: () =>
      new Promise((resolve) => {
        worker.once('message', resolve)
        worker.postMessage('take')
      }),
    stop: () => {
      worker.postMessage('stop')
      return worker.terminate()
    },
  }
}

function runProber({ url, concurrency, gapMs }) {
  const agent = new http.Agent({ keepAlive: true })
  const window = new ProbeWindow()
  let running = true
  parentPort.on('message', (message) => {
    if (message === 'take') parentPort.postMessage(window.take(performance.now()))
    if (message === 'stop') {
      running = false
      agent.destroy()
      parentPort.close()
    }
  })
  function probe() {
    return new Promise((resolve) => {
      const id = window.start(performance.now())
      const done = () => {
        window.finish(id, performance.now())
        resolve()
      }
      const req = http.get(`${url}/health`, { agent, timeout: 15_000 }, (res) => {
        res.resume()
        res.on('end', done)
      })
      req.on('timeout', () => req.destroy())
      req.on('error', done)
    })
  }
  async function loop() {
    while (running) {
      await probe()
      await new Promise((resolve) => setTimeout(resolve, gapMs))
    }
  }
  for (let i = 0; i < concurrency; i++) loop()
}

if (!isMainThread && workerData?.victimProber === true) runProber(workerData)
