/**
 * What Grafana does to a dashboard query before it reaches Prometheus, done here for the tests:
 * variable substitution (with Grafana's regex escaping of multi-value variables) and the
 * `label_values()` variable queries.
 */

/** Metric names a PromQL expression selects (every selector in our dashboards has braces). */
export function metricNamesOf(expr: string): string[] {
  return [...expr.matchAll(/([a-zA-Z_:][a-zA-Z0-9_:]*)\{/g)].map((match) => match[1]!)
}

/**
 * How Grafana's Prometheus data source writes one value of a multi-value or "include All"
 * variable into a query: regex metacharacters escaped, inside a PromQL string (so doubled).
 */
export function grafanaRegexEscape(value: string): string {
  return value.replace(/\\/g, '\\\\\\\\').replace(/[$^*{}[\]'+?.()|]/g, '\\\\$&')
}

export interface Substitutions {
  job: string
  /** Values of the multi-value `instance` variable. */
  instances: string[]
  /** Values of the `route` variable, or 'All' (the variable's allValue `.*`). */
  routes: string[] | 'All'
  rateInterval: string
  range: string
}

/** Format a multi-value variable as Grafana does: one value escaped, several as `(a|b)`. */
function multiValue(values: string[]): string {
  const escaped = values.map(grafanaRegexEscape)
  return escaped.length === 1 ? escaped[0]! : `(${escaped.join('|')})`
}

/** Substitute the dashboard's variables and Grafana's built-in interval variables. */
export function substitute(expr: string, values: Substitutions): string {
  const text = expr
    .replaceAll('$__rate_interval', values.rateInterval)
    .replaceAll('$__range', values.range)
    .replaceAll('$job', values.job)
    .replaceAll('$instance', multiValue(values.instances))
    .replaceAll('$route', values.routes === 'All' ? '.*' : multiValue(values.routes))
  const left = text.match(/\$[a-zA-Z_]+/)
  if (left !== null) throw new Error(`unsubstituted variable ${left[0]} in ${text}`)
  return text
}

/** `label_values(selector, label)` → its parts, or throw for any other variable query. */
export function parseLabelValues(definition: string): { selector: string; label: string } {
  const match = definition.match(/^label_values\((.+),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)$/)
  if (match === null) throw new Error(`not a label_values() query: ${definition}`)
  return { selector: match[1]!, label: match[2]! }
}
