/**
 * The README's first command runs examples/basic/try.js: it must start the example app, show
 * its metrics with route templates and the blocking route, print the report and exit by itself.
 */
import { spawn } from 'node:child_process'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { expect, it } from 'vitest'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')

it('examples/basic/try.js shows the metrics of the example app and exits', async () => {
  const child = spawn(process.execPath, ['examples/basic/try.js'], {
    cwd: ROOT,
    env: { ...process.env, TRY_DURATION_MS: '1500' },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let output = ''
  child.stdout.on('data', (chunk) => {
    output += chunk
  })
  child.stderr.on('data', (chunk) => {
    output += chunk
  })
  const code = await new Promise<number | null>((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000)
    child.on('exit', (exitCode) => {
      clearTimeout(timer)
      resolve(exitCode)
    })
  })
  expect(code, output).toBe(0)
  expect(output).toMatch(/example app listening on http:\/\/127\.0\.0\.1:\d+/)
  expect(output).toContain(
    'http_server_request_duration_seconds_count{http_request_method="GET",http_route="/api/v1/users/:id",http_response_status_code="200"}',
  )
  expect(output).toContain('http_route="",http_response_status_code="404"')
  expect(output).toMatch(
    /looplens_eventloop_block_duration_seconds_count\{http_request_method="POST",http_route="\/signup",task=""\} [1-9]/,
  )
  expect(output).toMatch(/event loop blocked \d+ ms by POST \/signup/)
  // No raw URL or query string of the burst reaches the metrics.
  expect(output).not.toMatch(/session=|\/users\/\d/)
}, 30_000)
