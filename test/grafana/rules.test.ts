/**
 * The alert rules and the Prometheus configuration, checked by Prometheus's own tool: `promtool
 * check rules`, the rule unit tests of grafana/alerts/looplens.test.yml (`promtool test rules`),
 * and `promtool check config` on the configuration the dashboard test runs.
 */
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { beforeAll, expect, it } from 'vitest'
import { deriveConfig, ensurePrometheus, RULES_FILE, RULES_TEST_FILE } from './prometheus-server.js'

function promtool(...args: string[]): { status: number | null; output: string } {
  const result = spawnSync('promtool', args, { encoding: 'utf8', timeout: 60_000 })
  return { status: result.status, output: `${result.stdout}${result.stderr}` }
}

beforeAll(() => {
  ensurePrometheus()
}, 300_000)

it('promtool check rules accepts grafana/alerts/looplens.rules.yml', () => {
  const { status, output } = promtool('check', 'rules', RULES_FILE)
  expect(output).toMatch(/SUCCESS: \d+ rules found/)
  expect(status, output).toBe(0)
})

it('promtool test rules passes grafana/alerts/looplens.test.yml', () => {
  const { status, output } = promtool('test', 'rules', RULES_TEST_FILE)
  expect(status, output).toBe(0)
  expect(output).toContain('SUCCESS')
})

it('promtool check config accepts the Prometheus configuration (with its rules)', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'looplens-promconfig-'))
  try {
    const file = path.join(dir, 'prometheus.yml')
    writeFileSync(file, deriveConfig({ intervalSeconds: 15, target: '127.0.0.1:3000' }))
    const { status, output } = promtool('check', 'config', file)
    expect(status, output).toBe(0)
    expect(output).toMatch(/SUCCESS: 9 rules found/)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})
