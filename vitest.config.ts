import { defineConfig } from 'vitest/config'

/**
 * Test files run one at a time: many of them measure the event loop (stalls, delay, sync time),
 * and two files running at once on a 2-core machine would measure each other.
 */
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    fileParallelism: false,
    // Real servers in child processes, real sockets, a busy shared machine: generous, but bounded.
    testTimeout: 30_000,
    hookTimeout: 30_000,
    teardownTimeout: 10_000,
    // Forks, not threads: tests measure the main thread's event loop, and fixtures fork children.
    pool: 'forks',
    // vitest's own summary, then one plain `N passed, N failed` line for any CI log reader.
    reporters: ['default', './test/helpers/summary-reporter.ts'],
  },
})
