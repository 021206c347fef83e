/**
 * The worker side of the example's piscina pools. CPU-bound work runs here, on its own thread
 * and its own event loop: it can take as long as it takes without stalling the server's loop.
 *
 * Every function returns when it started and ended (epoch ms) so the main thread can export the
 * pool's queue wait and run time per task as Prometheus histograms.
 */
import { createHash, pbkdf2Sync } from 'node:crypto'
import { performance } from 'node:perf_hooks'

const now = () => performance.timeOrigin + performance.now()

/** The same hashing as `hashPasswordsSync` in app.js, off the main thread. */
export function hashPasswords({ passwords, iterations }) {
  const startedAt = now()
  const hashes = passwords.map((password) =>
    pbkdf2Sync(password, 'looplens-demo-salt', iterations, 64, 'sha512').toString('hex'),
  )
  return { hashes, startedAt, endedAt: now() }
}

/** The same processing as `encodeMessageSync` in app.js, off the main thread. */
export function encodeMessage({ payload, ms }) {
  const startedAt = now()
  let digest = JSON.stringify(payload)
  while (now() - startedAt < ms) {
    digest = createHash('sha256').update(digest).digest('hex')
  }
  return { digest, startedAt, endedAt: now() }
}

/** The same job as `processJobSync` in app.js, off the main thread. */
export function processJob({ jobId, ms }) {
  const startedAt = now()
  let checksum = 0
  while (now() - startedAt < ms) {
    for (let i = 0; i < 10_000; i++) checksum = (checksum * 31 + i + jobId) % 1_000_003
  }
  return { checksum, startedAt, endedAt: now() }
}
