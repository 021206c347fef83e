/**
 * What `lens.express()` does to its own layer in an Express app, once, at the app's first request
 * through it:
 *
 * - {@link hoistOwnLayer}: when it is the app's first middleware, it leaves the router and runs
 *   from the app's `handle` instead, around the whole router;
 * - {@link unwrapOwnLayer}: otherwise, it takes OpenTelemetry's wrapper off its own layer.
 *
 * Both only ever touch looplens's own layer. Anything shaped unlike Express 4 or 5 is left alone.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { RequestHandler } from 'express'
import { routerOf, routerStackOf } from '../context/route.js'

/** The parts of an Express router layer this module reads (4 and 5 differ in where). */
interface LayerLike {
  name?: unknown
  handle?: unknown
  route?: { stack?: unknown }
  /** Express 5 (`router` 2): `app.use(fn)` at the root. */
  slash?: unknown
  /** Express 4: `app.use(fn)` at the root. */
  regexp?: { fast_slash?: unknown }
}
interface ShimmerWrapper {
  __original?: unknown
  __unwrap?: () => void
  stack?: unknown
}

/** An app's `handle(req, res, callback)`, which its router runs in. */
export type AppHandle = (
  this: unknown,
  req: IncomingMessage,
  res: ServerResponse,
  callback?: unknown,
) => unknown

/** Bound on the layers looked at: an app is searched once, never at length. */
const MAX_LAYERS = 2_000

/** Express 4's own first layers (`app.lazyrouter()`): they run before any middleware. */
const EXPRESS_INIT_LAYERS = new Set(['query', 'expressInit'])

/** Set on an app whose handle runs a looplens middleware: only one per app, the first. */
const kHoisted = Symbol.for('looplens.hoisted')

function isOwn(layer: LayerLike | undefined, handler: RequestHandler): boolean {
  const handle = layer?.handle as ShimmerWrapper | undefined
  return handle === handler || (handle !== undefined && handle.__original === handler)
}

/**
 * Every layer of an Express router costs each request a pass through the router's `next()`: a
 * path match, `req.params`, the mount-path bookkeeping, each a read or write of Express's `req`,
 * whose hidden class no code has seen before on Node 20 and 22 (context/fields.ts). A middleware
 * that only wraps the rest pays that once more per request: ~12,000 instructions on Node 20,
 * almost 2% of a hello-world request and as much as AsyncLocalStorage (`bench/instructions.js`,
 * ablate-noop against bare).
 *
 * When looplens's layer is the app's first middleware (only Express 4's own `query` and
 * `expressInit` before it) mounted at the root, nothing of the application runs before it, and
 * its whole job is to wrap what follows: so it does that from the app's `handle`, which the
 * router runs in, and its layer leaves the router. Requests see the same middleware in the same
 * order, with the same context around them; the router does one layer fewer.
 *
 * The layer is removed by giving the router a new stack array: a request already inside the
 * router keeps walking the array it started with. `wrap` makes the new handle from the old one.
 * An app mounted in another (`main.use('/api', sub)`) is run through its `handle` too, so the
 * hoisted middleware sees exactly the requests it saw as a layer.
 * @returns whether the layer was hoisted; `false` leaves the app untouched
 */
export function hoistOwnLayer(
  app: unknown,
  handler: RequestHandler,
  wrap: (original: AppHandle) => AppHandle,
): boolean {
  try {
    const target = app as { handle?: unknown; [kHoisted]?: true }
    if (typeof app !== 'function' || typeof target.handle !== 'function') return false
    if (target[kHoisted] === true) return false
    const router = routerOf(app) as { stack?: unknown } | undefined
    const stack = router?.stack as LayerLike[] | undefined
    if (router === undefined || !Array.isArray(stack)) return false
    const index = stack.findIndex((layer) => isOwn(layer, handler))
    if (index === -1) return false
    for (let i = 0; i < index; i++) {
      const name = stack[i]?.name
      if (typeof name !== 'string' || !EXPRESS_INIT_LAYERS.has(name)) return false
    }
    const own = stack[index]!
    const atRoot = own.slash === true || own.regexp?.fast_slash === true
    if (!atRoot || own.route !== undefined) return false
    const original = target.handle as AppHandle
    router.stack = stack.filter((_layer, i) => i !== index)
    target.handle = wrap(original)
    target[kHoisted] = true
    return true
  } catch {
    return false
  }
}

/**
 * instrumentation-express wraps the handler of every layer, looplens's own included, to make a
 * `middleware - looplensMiddleware` span per request: a span in every trace that only times
 * looplens, and, on a trivial route, 12% more instructions per request than OpenTelemetry alone
 * (`bench/instructions.js`, against the same app with `ignoreLayers` for it). The first time a request
 * of an app reaches the middleware, the wrapper around the middleware's own layer is taken off
 * with the wrapper's own `__unwrap()` (the shimmer every OpenTelemetry instrumentation patches
 * with): later requests call the middleware directly. No other layer is touched. Only the first
 * 16 requests of a middleware look: an app whose first request comes later keeps the wrapper.
 * (A hoisted layer has left the router, wrapper and all.)
 * @returns how many wrappers were removed (0 when the app is not instrumented)
 */
export function unwrapOwnLayer(app: unknown, handler: RequestHandler): number {
  let removed = 0
  let budget = MAX_LAYERS
  const visit = (stack: unknown, depth: number): void => {
    if (!Array.isArray(stack) || depth > 4) return
    for (const layer of stack as LayerLike[]) {
      if (--budget < 0) return
      if (typeof layer?.handle !== 'function') continue
      const handle = layer.handle as ShimmerWrapper
      if (handle.__original === handler && typeof handle.__unwrap === 'function') {
        handle.__unwrap()
        if (layer.handle === handler) removed++
      } else {
        visit(handle.stack, depth + 1) // a nested router
      }
      visit(layer.route?.stack, depth + 1)
    }
  }
  try {
    visit(routerStackOf(app), 0)
  } catch {
    // An app shaped unlike Express 4 or 5: leave it as it is.
  }
  return removed
}
