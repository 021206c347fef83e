/**
 * Debian's Prometheus for the dashboard tests: installed on demand (as root, `apt-get`), started
 * on 127.0.0.1 with a free port and a temporary storage directory, configured from the very file
 * docker-compose.yml mounts (grafana/prometheus/prometheus.yml), always stopped.
 */
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const here = path.dirname(fileURLToPath(import.meta.url))
export const GRAFANA_DIR = path.resolve(here, '../../grafana')
export const PROMETHEUS_CONFIG = path.join(GRAFANA_DIR, 'prometheus/prometheus.yml')
export const RULES_FILE = path.join(GRAFANA_DIR, 'alerts/looplens.rules.yml')
export const RULES_TEST_FILE = path.join(GRAFANA_DIR, 'alerts/looplens.test.yml')

const READY_TIMEOUT_MS = 30_000
const STOP_GRACE_MS = 5_000

function has(binary: string): boolean {
  return spawnSync(binary, ['--version'], { stdio: 'ignore' }).status === 0
}

/** Make sure `prometheus` and `promtool` are on the PATH (Debian package `prometheus`). */
export function ensurePrometheus(): void {
  if (has('prometheus') && has('promtool')) return
  if (process.getuid?.() !== 0) {
    throw new Error(
      'prometheus/promtool are missing: install them with `apt-get install -y --no-install-recommends prometheus`',
    )
  }
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
  const install = () =>
    spawnSync('apt-get', ['install', '-y', '--no-install-recommends', 'prometheus'], {
      stdio: 'ignore',
      env,
      timeout: 240_000,
    }).status === 0
  // The package lists may be missing or stale on a fresh machine: update once, then retry.
  if (!install()) {
    execFileSync('apt-get', ['update'], { stdio: 'ignore', env, timeout: 240_000 })
    execFileSync('apt-get', ['install', '-y', '--no-install-recommends', 'prometheus'], {
      stdio: 'ignore',
      env,
      timeout: 240_000,
    })
  }
  if (!has('prometheus') || !has('promtool')) {
    throw new Error('installed the prometheus package but prometheus/promtool are still missing')
  }
}

/** Replace `from` by `to` in `text`, exactly once, or say which anchor the file lost. */
function replaceOnce(text: string, from: string, to: string): string {
  const at = text.indexOf(from)
  if (at === -1 || text.indexOf(from, at + 1) !== -1) {
    throw new Error(`grafana/prometheus/prometheus.yml must contain ${JSON.stringify(from)} once`)
  }
  return text.slice(0, at) + to + text.slice(at + from.length)
}

/**
 * The committed prometheus.yml with the test's scrape interval, target and rules path swapped in
 * (everything else, the job name included, as committed).
 */
export function deriveConfig(options: { intervalSeconds: number; target: string }): string {
  let text = readFileSync(PROMETHEUS_CONFIG, 'utf8')
  text = replaceOnce(text, 'scrape_interval: 15s', `scrape_interval: ${options.intervalSeconds}s`)
  text = replaceOnce(
    text,
    'evaluation_interval: 15s',
    `evaluation_interval: ${options.intervalSeconds}s`,
  )
  text = replaceOnce(text, '/etc/prometheus/rules/looplens.rules.yml', RULES_FILE)
  text = replaceOnce(text, '"app:3000"', `"${options.target}"`)
  return text
}

/** A port nobody listens on right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      server.close(() => {
        if (address !== null && typeof address === 'object') resolve(address.port)
        else reject(new Error('no port'))
      })
    })
  })
}

export interface RunningPrometheus {
  url: string
  /** Everything Prometheus logged (it logs to stderr). */
  log(): string
  /** Stop Prometheus (SIGTERM, SIGKILL after a grace period) and remove its storage. Idempotent. */
  stop(): Promise<void>
}

/** Start Prometheus with `configText`; resolves once it answers /-/ready. */
export async function startPrometheus(configText: string): Promise<RunningPrometheus> {
  const dir = mkdtempSync(path.join(tmpdir(), 'looplens-prometheus-'))
  const configFile = path.join(dir, 'prometheus.yml')
  writeFileSync(configFile, configText)
  const port = await freePort()
  const url = `http://127.0.0.1:${port}`
  const child: ChildProcess = spawn(
    'prometheus',
    [
      `--config.file=${configFile}`,
      `--storage.tsdb.path=${path.join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--enable-feature=exemplar-storage',
      '--log.level=warn',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  )
  let log = ''
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    log += chunk
  })
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    log += chunk
  })
  let exited = child.exitCode !== null
  const exit = new Promise<void>((resolve) => {
    child.once('exit', () => {
      exited = true
      resolve()
    })
  })
  let stopping: Promise<void> | undefined
  const stop = () => {
    stopping ??= (async () => {
      if (!exited) {
        child.kill('SIGTERM')
        const timer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS)
        await exit
        clearTimeout(timer)
      }
      rmSync(dir, { recursive: true, force: true })
    })()
    return stopping
  }

  const deadline = Date.now() + READY_TIMEOUT_MS
  while (true) {
    if (exited) {
      await stop()
      throw new Error(`prometheus exited before it was ready:\n${log}`)
    }
    const ready = await fetch(`${url}/-/ready`, { signal: AbortSignal.timeout(1_000) }).then(
      (response) => response.ok,
      () => false,
    )
    if (ready) break
    if (Date.now() > deadline) {
      await stop()
      throw new Error(`prometheus was not ready within ${READY_TIMEOUT_MS} ms:\n${log}`)
    }
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
  return { url, log: () => log, stop }
}

/** One sample of an instant query result. */
export interface Sample {
  metric: Record<string, string>
  value: [number, string]
}

/** GET a Prometheus HTTP API path; throws with Prometheus's own error text when it fails. */
export async function api<T>(base: string, pathAndQuery: string): Promise<T> {
  const response = await fetch(`${base}${pathAndQuery}`, { signal: AbortSignal.timeout(10_000) })
  const body = (await response.json()) as {
    status: string
    data: T
    error?: string
    errorType?: string
  }
  if (body.status !== 'success') {
    throw new Error(`${pathAndQuery}: ${body.errorType}: ${body.error}`)
  }
  return body.data
}

/** An instant query at `time` (seconds since the epoch): the samples of a vector result. */
export async function instantQuery(base: string, expr: string, time: number): Promise<Sample[]> {
  const params = new URLSearchParams({ query: expr, time: String(time) })
  const data = await api<{ resultType: string; result: Sample[] | [number, string] }>(
    base,
    `/api/v1/query?${params}`,
  )
  if (data.resultType === 'scalar') {
    return [{ metric: {}, value: data.result as [number, string] }]
  }
  return data.result as Sample[]
}
