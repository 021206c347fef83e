/**
 * `promtool check metrics`, from the Debian package `prometheus`. Installed on demand when the
 * test runs as root on a machine without it (a fresh CI box); .ci/run installs it too.
 */
import { execFileSync, spawnSync } from 'node:child_process'

function hasPromtool(): boolean {
  return spawnSync('promtool', ['--version'], { stdio: 'ignore' }).status === 0
}

/** Make sure `promtool` is on the PATH; throws with the install command when it cannot be. */
export function ensurePromtool(): void {
  if (hasPromtool()) return
  if (process.getuid?.() !== 0) {
    throw new Error(
      'promtool is missing: install it with `apt-get install -y --no-install-recommends prometheus`',
    )
  }
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
  execFileSync('apt-get', ['update'], { stdio: 'ignore', env, timeout: 240_000 })
  execFileSync('apt-get', ['install', '-y', '--no-install-recommends', 'prometheus'], {
    stdio: 'ignore',
    env,
    timeout: 240_000,
  })
  if (!hasPromtool())
    throw new Error('installed the prometheus package but promtool is still missing')
}

/** Run `promtool check metrics` on an exposition; returns its exit status and output. */
export function checkMetrics(text: string): { status: number | null; output: string } {
  const result = spawnSync('promtool', ['check', 'metrics'], {
    input: text,
    encoding: 'utf8',
    timeout: 30_000,
  })
  return { status: result.status, output: `${result.stdout}${result.stderr}` }
}
