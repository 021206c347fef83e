/**
 * docker-compose.yml cannot run here (no Docker daemon), so this test holds it to the files the
 * other tests prove: every file it mounts exists and is one of them, and the addresses in the
 * Prometheus and Grafana configuration are the compose services' names and ports.
 */
import { existsSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
const read = (file: string) => readFileSync(path.join(root, file), 'utf8')
const compose = read('docker-compose.yml')

/** The `- ./source:/target[:ro]` volume mounts of the compose file, source → target. */
function mounts(): Map<string, string> {
  const found = new Map<string, string>()
  for (const match of compose.matchAll(/^\s*- \.\/([^:\s]+):([^:\s]+)(?::ro)?\s*$/gm)) {
    found.set(match[1]!, match[2]!)
  }
  return found
}

describe('docker-compose.yml', () => {
  it('mounts the files the tests use, and they exist', () => {
    const mounted = mounts()
    expect(Object.fromEntries(mounted)).toEqual({
      'grafana/prometheus/prometheus.yml': '/etc/prometheus/prometheus.yml',
      'grafana/alerts': '/etc/prometheus/rules',
      'grafana/provisioning/datasources': '/etc/grafana/provisioning/datasources',
      'grafana/provisioning/dashboards': '/etc/grafana/provisioning/dashboards',
      'grafana/dashboards': '/var/lib/grafana/dashboards/looplens',
    })
    for (const source of mounted.keys()) {
      expect(existsSync(path.join(root, source)), source).toBe(true)
    }
  })

  it('has the services the configuration points at', () => {
    for (const service of ['app', 'load', 'prometheus', 'grafana']) {
      expect(compose, service).toMatch(new RegExp(`^  ${service}:$`, 'm'))
    }
    // Prometheus scrapes the app service on the port its Dockerfile listens on.
    expect(read('grafana/prometheus/prometheus.yml')).toContain('targets: ["app:3000"]')
    expect(read('grafana/example/Dockerfile')).toContain('PORT=3000')
    expect(compose).toContain('dockerfile: grafana/example/Dockerfile')
    // Grafana reaches Prometheus by its service name.
    expect(read('grafana/provisioning/datasources/prometheus.yml')).toContain(
      'url: http://prometheus:9090',
    )
  })

  it('loads the alert rules where the Prometheus configuration expects them', () => {
    const rulesDir = mounts().get('grafana/alerts')
    expect(read('grafana/prometheus/prometheus.yml')).toContain(`${rulesDir}/looplens.rules.yml`)
  })

  it('provisions the dashboards from where they are mounted', () => {
    const dashboardsDir = mounts().get('grafana/dashboards')!
    expect(read('grafana/provisioning/dashboards/looplens.yml')).toContain(`path: ${dashboardsDir}`)
    const home = compose.match(/GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH: (\S+)/)?.[1]
    expect(home?.startsWith(`${dashboardsDir}/`), home).toBe(true)
    expect(existsSync(path.join(root, 'grafana/dashboards', path.basename(home!)))).toBe(true)
  })

  it('runs the example app that the dashboard test scrapes', () => {
    expect(read('grafana/example/Dockerfile')).toContain('grafana/example/server.js')
    expect(compose).toContain('grafana/example/load.js')
    expect(read('test/fixtures/grafana-app.js')).toContain('../../grafana/example/app.js')
  })
})
