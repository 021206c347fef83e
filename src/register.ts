/**
 * Zero-code entry: `node --import looplens/register app.js`.
 *
 * Instruments every HTTP server of the process, serves metrics on their own port, keeps a
 * timeline of the loop and writes the report when the process exits or receives SIGINT/SIGTERM.
 * Configured by `LOOPLENS_*` environment variables (see the README, "Zero-code and CLI"); a bad
 * value is reported on stderr and the app runs without looplens.
 *
 * Main thread only: `--import` also runs in worker threads (looplens's own watchdog among them),
 * which must not start a second session.
 * @example
 * // LOOPLENS_BLOCK_THRESHOLD_MS=50 LOOPLENS_REPORT_FILE=report.json node --import looplens/register app.js
 */
import { isMainThread } from 'node:worker_threads'
import { startPreload } from './instrument/preload.js'

if (isMainThread) startPreload(process.env)
