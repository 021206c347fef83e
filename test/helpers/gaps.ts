/**
 * What the test itself observes of its event loop: a 1 ms interval records every gap between two
 * of its ticks. On a shared, overloaded machine a process can be descheduled or paused by GC, and
 * the loop really stalls longer than the code under test asked for; a test compares looplens to
 * what it observed, or re-runs an attempt the machine disturbed, instead of loosening tolerances.
 */
export interface LoopGap {
  /** performance.now() at the tick before the gap. */
  startPerf: number
  durationMs: number
}

export interface GapWatch {
  /** Gaps at least `minMs` long, in order. */
  gaps: LoopGap[]
  stop(): void
}

/** Record every gap ≥ `minMs` between ticks of a 1 ms interval until `stop()`. */
export function watchLoopGaps(minMs = 20): GapWatch {
  const gaps: LoopGap[] = []
  let last = performance.now()
  const timer = setInterval(() => {
    const now = performance.now()
    if (now - last >= minMs) gaps.push({ startPerf: last, durationMs: now - last })
    last = now
  }, 1)
  timer.unref()
  return { gaps, stop: () => clearInterval(timer) }
}

/**
 * Run `attempt` up to `tries` times until it reports a clean run (one the machine did not
 * disturb); returns that run's result, or throws with what each disturbed run observed.
 */
export async function cleanAttempt<T>(
  tries: number,
  attempt: () => Promise<{ clean: boolean; result: T; observed: string }>,
): Promise<T> {
  const disturbed: string[] = []
  for (let i = 0; i < tries; i++) {
    const { clean, result, observed } = await attempt()
    if (clean) return result
    disturbed.push(observed)
  }
  throw new Error(`the machine disturbed every one of ${tries} attempts:\n${disturbed.join('\n')}`)
}
