/**
 * The last line of defence for label cardinality, like OpenTelemetry's cardinality limit: an
 * instance accepts at most `maxRoutes` distinct `http_route` values; past that, a new value is
 * `_OVERFLOW` and one warning names the first template that did not fit.
 *
 * Route templates come from the router structure (route.ts), so a correct app has as many
 * labels as it declares routes: this limit is for what that cannot foresee (an app that declares
 * routes per tenant at run time, a router shape looplens reads wrong). Per request it costs one
 * lookup of a string whose hash V8 already keeps (the template is one string per route object).
 */

/** The label of every route past the limit. */
export const OVERFLOW_ROUTE = '_OVERFLOW'

export class RouteLimit {
  readonly #seen = new Set<string>()
  readonly #max: number
  readonly #overflowed: (route: string) => void

  /** `overflowed` is called with each route refused (the caller warns once). */
  constructor(max: number, overflowed: (route: string) => void) {
    this.#max = max
    this.#overflowed = overflowed
  }

  /** `route` while it is among the first `max` distinct routes seen; `_OVERFLOW` after. */
  admit(route: string): string {
    // '' (no route matched) is always bounded and never counts against the limit.
    if (route === '' || route === OVERFLOW_ROUTE || this.#seen.has(route)) return route
    if (this.#seen.size < this.#max) {
      this.#seen.add(route)
      return route
    }
    this.#overflowed(route)
    return OVERFLOW_ROUTE
  }
}
