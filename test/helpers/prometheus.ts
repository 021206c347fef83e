/**
 * Read Prometheus text (or OpenMetrics) back into samples, so tests assert on what a scrape shows.
 */

/** One sample line: `name{label="value",…} value`. */
export interface MetricSample {
  name: string
  labels: Record<string, string>
  value: number
}

function unescapeLabel(value: string): string {
  return value.replace(/\\(.)/g, (_, char: string) => (char === 'n' ? '\n' : char))
}

/** Parse every sample line of an exposition; comments (`# HELP`, `# TYPE`, `# EOF`) are skipped. */
export function parseMetrics(text: string): MetricSample[] {
  const samples: MetricSample[] = []
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\S+)?$/.exec(line)
    if (match === null) throw new Error(`not a sample line: ${line}`)
    const labels: Record<string, string> = {}
    const labelText = match[2] ?? ''
    const labelPattern = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?/g
    for (const label of labelText.matchAll(labelPattern)) {
      labels[label[1]!] = unescapeLabel(label[2]!)
    }
    const raw = match[3]!
    const value =
      raw === '+Inf' ? Number.POSITIVE_INFINITY : raw === '-Inf' ? -Infinity : Number(raw)
    samples.push({ name: match[1]!, labels, value })
  }
  return samples
}

/** Samples of `name` whose labels include every label of `labels`. */
export function select(
  samples: MetricSample[],
  name: string,
  labels: Record<string, string> = {},
): MetricSample[] {
  return samples.filter(
    (sample) =>
      sample.name === name &&
      Object.entries(labels).every(([key, value]) => sample.labels[key] === value),
  )
}

/** The value of the one sample of `name` with `labels`; throws when there is none or several. */
export function sampleValue(
  samples: MetricSample[],
  name: string,
  labels: Record<string, string> = {},
): number {
  const found = select(samples, name, labels)
  if (found.length !== 1) {
    throw new Error(
      `expected one sample ${name}${JSON.stringify(labels)}, found ${found.length}:\n${found
        .map((sample) => JSON.stringify(sample))
        .join('\n')}`,
    )
  }
  return found[0]!.value
}

/** The distinct label sets (without `le`) of a metric family: one string per series. */
export function seriesOf(samples: MetricSample[], family: string): string[] {
  const series = new Set<string>()
  for (const sample of samples) {
    if (sample.name !== family && !sample.name.startsWith(`${family}_`)) continue
    const { le: _le, ...labels } = sample.labels
    series.add(JSON.stringify(Object.entries(labels).sort()))
  }
  return [...series].sort()
}

/** Scrape a metrics endpoint over HTTP. */
export async function scrapeUrl(
  url: string,
  accept?: string,
): Promise<{ text: string; contentType: string; samples: MetricSample[] }> {
  const response = await fetch(url, accept === undefined ? {} : { headers: { accept } })
  if (response.status !== 200) throw new Error(`scrape of ${url} answered ${response.status}`)
  const text = await response.text()
  return {
    text,
    contentType: response.headers.get('content-type') ?? '',
    samples: parseMetrics(text),
  }
}
