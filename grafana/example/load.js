/**
 * Traffic for the example app (grafana/example/app.js): a few "victim" loops hitting fast routes
 * as fast as they are answered, and one "culprit" loop calling the blocking routes at a steady
 * pace, so the loop is blocked about a third of the time. Every loop stops at `durationMs` or
 * after `maxRequests` requests in all, whichever comes first.
 *
 * As a script (the `load` service of docker-compose.yml):
 *   node grafana/example/load.js http://app:3000        # DURATION_S (default 3600) bounds it
 */
import { pathToFileURL } from 'node:url'

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * Drive bounded load against the example app.
 * @param {string} baseUrl e.g. `http://127.0.0.1:3000`
 * @param {{ durationMs: number, maxRequests?: number, victims?: number, pauseMs?: number }} options
 * @returns {Promise<{ requests: number, errors: number, byStatus: Record<string, number> }>}
 *   `byStatus['aborted']` counts requests this client aborted on purpose
 */
export async function driveLoad(baseUrl, options) {
  const { durationMs, maxRequests = 50_000, victims = 4, pauseMs = 250 } = options
  const deadline = Date.now() + durationMs
  const byStatus = {}
  let requests = 0
  let errors = 0
  const more = () => Date.now() < deadline && requests < maxRequests

  async function hit(method, path, abortAfterMs) {
    requests++
    let status
    try {
      const response = await fetch(`${baseUrl}${path}`, {
        method,
        signal: AbortSignal.timeout(abortAfterMs ?? 10_000),
      })
      await response.arrayBuffer()
      status = String(response.status)
    } catch (error) {
      if (abortAfterMs !== undefined && error?.name === 'TimeoutError') {
        status = 'aborted'
      } else {
        errors++
        status = 'error'
      }
    }
    byStatus[status] = (byStatus[status] ?? 0) + 1
  }

  async function victim(index) {
    for (let round = 0; more(); round++) {
      await hit('GET', '/fast')
      await hit('GET', `/users/${(round * 7 + index) % 100}`)
      if (round % 10 === index) await hit('GET', '/no-such-page')
      if (round % 20 === index) await hit('GET', '/fail')
      // The client gives up before /slow answers: the request is recorded with status "".
      if (round % 30 === index) await hit('GET', '/slow', 50)
    }
  }

  async function culprit() {
    const blockers = [
      ['GET', '/report'],
      ['POST', '/import'],
      ['POST', '/signup'],
    ]
    for (let round = 0; more(); round++) {
      const [method, path] = blockers[round % blockers.length]
      await hit(method, path)
      await sleep(pauseMs)
    }
  }

  await Promise.all([culprit(), ...Array.from({ length: victims }, (_, index) => victim(index))])
  return { requests, errors, byStatus }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const baseUrl = process.argv[2] ?? 'http://127.0.0.1:3000'
  const durationMs = Number(process.env.DURATION_S ?? 3600) * 1000
  // The app may still be starting: wait for it (bounded) before loading it.
  for (let attempt = 0; attempt < 60; attempt++) {
    const up = await fetch(`${baseUrl}/health`).then(
      (response) => response.ok,
      () => false,
    )
    if (up) break
    await sleep(1000)
  }
  console.log(`loading ${baseUrl} for ${durationMs / 1000} s`)
  const result = await driveLoad(baseUrl, { durationMs, maxRequests: Number.MAX_SAFE_INTEGER })
  console.log(JSON.stringify(result))
}
