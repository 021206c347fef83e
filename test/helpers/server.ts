/**
 * Run an app on 127.0.0.1:0 in the test process (for tests that do not block the loop on purpose).
 */
import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'

export interface Listening {
  url: string
  server: Server
  close(): Promise<void>
}

/** Listen on 127.0.0.1:0. `app` is an Express 4 or 5 app (or anything with `listen`). */
export function listen(app: {
  listen: (port: number, host: string, callback: (error?: Error) => void) => Server
}): Promise<Listening> {
  return new Promise((resolve, reject) => {
    const server = app.listen(0, '127.0.0.1', (error?: Error) => {
      if (error) {
        reject(error)
        return
      }
      const { port } = server.address() as AddressInfo
      resolve({
        url: `http://127.0.0.1:${port}`,
        server,
        close: () =>
          new Promise<void>((done) => {
            server.close(() => done())
            server.closeAllConnections()
          }),
      })
    })
    server.once('error', reject)
  })
}

/** Hold the event loop for `ms` milliseconds (a synchronous busy loop). */
export function busy(ms: number): void {
  const end = performance.now() + ms
  while (performance.now() < end) {
    // Blocking on purpose.
  }
}

/** Run `task` over `items` with at most `concurrency` at a time. */
export async function inBatches<T>(
  items: T[],
  concurrency: number,
  task: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0
  async function worker(): Promise<void> {
    while (next < items.length) {
      const item = items[next++]!
      await task(item)
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker))
}
