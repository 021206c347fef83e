/**
 * The demo's victim p99 (scripts/victim-prober.js): a probe stuck behind a blocked loop counts in
 * the window it was stuck in, with at least the time it has waited — the worst endpoint can no
 * longer show "—" or 1 ms because its victims had not finished yet.
 */
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import { describe, expect, it } from 'vitest'
import { ProbeWindow, percentile, startProber } from '../../scripts/victim-prober.js'

/** A server in another process that blocks its own loop for `BLOCK_MS` when asked on stdin. */
const BLOCKING_SERVER = `
import { createServer } from 'node:http'
const server = createServer((_req, res) => res.end('ok'))
server.listen(0, '127.0.0.1', () => process.stdout.write('port ' + server.address().port + '\\n'))
process.stdin.on('data', () => {
  process.stdout.write('blocking\\n')
  const end = performance.now() + Number(process.env.BLOCK_MS)
  while (performance.now() < end) {}
})
process.stdin.on('end', () => process.exit(0))
`

describe('the demo victim prober', () => {
  it('counts a probe still in flight when the window closes, once', () => {
    const window = new ProbeWindow()
    const fast = window.start(0)
    window.finish(fast, 2)
    const stuck = window.start(10)
    // The window closes while `stuck` waits: it counts with the 990 ms it waited so far.
    expect(window.take(1_000)).toEqual([2, 990])
    // It answers later: not counted again.
    window.finish(stuck, 1_500)
    expect(window.take(2_000)).toEqual([])
    expect(percentile([2, 990], 0.99)).toBe(990)
    expect(percentile([], 0.99)).toBeNaN()
  })

  it('a real blocked server: the victim p99 of the window is the wait, not "—"', async () => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', BLOCKING_SERVER], {
      env: { ...process.env, BLOCK_MS: '2000' },
      stdio: ['pipe', 'pipe', 'inherit'],
    })
    const lines: string[] = []
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => lines.push(...chunk.split('\n')))
    const waitFor = async (prefix: string) => {
      const deadline = performance.now() + 10_000
      while (!lines.some((line) => line.startsWith(prefix)) && performance.now() < deadline) {
        await sleep(10)
      }
      return lines.find((line) => line.startsWith(prefix))
    }
    const prober = startProber(`http://127.0.0.1:${(await waitFor('port '))?.slice(5)}`, {
      concurrency: 2,
      gapMs: 20,
    })
    try {
      await sleep(200) // a few fast probes
      await prober.take() // the window starts now
      child.stdin.write('block\n')
      expect(await waitFor('blocking')).toBe('blocking')
      await sleep(700)
      // The server is still blocked: both clients wait for it.
      const victims = await prober.take()
      expect(victims.length).toBeGreaterThanOrEqual(2)
      expect(percentile(victims, 0.99)).toBeGreaterThanOrEqual(500)
    } finally {
      await prober.stop()
      child.stdin.end()
      if (child.exitCode === null) await once(child, 'exit')
    }
  })
})
