/**
 * Ends the run with one plain line, `N passed, N failed` (`, N skipped` when any), which any
 * CI log reader understands, whatever it knows of vitest's own summary.
 */
import type { Reporter, TestModule } from 'vitest/node'

export default class SummaryReporter implements Reporter {
  onTestRunEnd(testModules: ReadonlyArray<TestModule>): void {
    let passed = 0
    let failed = 0
    let skipped = 0
    for (const testModule of testModules) {
      for (const test of testModule.children.allTests()) {
        const state = test.result().state
        if (state === 'passed') passed++
        else if (state === 'failed') failed++
        else skipped++
      }
      // A file that failed to load has no tests but is a failure.
      if (testModule.state() === 'failed' && testModule.children.size === 0) failed++
    }
    const line = `${passed} passed, ${failed} failed${skipped > 0 ? `, ${skipped} skipped` : ''}`
    process.stdout.write(`\n${line}\n`)
  }
}
