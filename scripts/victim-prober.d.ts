/** Types of scripts/victim-prober.js (the demo's victim prober), for the tests that import it. */
export declare class ProbeWindow {
  start(now: number): number
  finish(id: number, now: number): void
  take(now: number): number[]
}
export declare function percentile(values: readonly number[], q: number): number
export declare function startProber(
  url: string,
  options?: { concurrency?: number; gapMs?: number },
): { take(): Promise<number[]>; stop(): Promise<number> }
