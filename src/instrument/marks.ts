/**
 * Marks the zero-code http instrumentation leaves on a response, so the Express middleware can
 * tell that a request is already measured (and by which recorder) without importing the
 * instrumentation itself.
 */

/** The LensContext the http instrumentation created for this response. */
export const kHttpContext: unique symbol = Symbol('looplens.httpContext')
/** The recorder the http instrumentation reports this response to. */
export const kHttpRecorder: unique symbol = Symbol('looplens.httpRecorder')

/**
 * Whether the zero-code http instrumentation runs in this process: the middleware looks for
 * its mark only then (a property miss on every response costs more than this flag).
 */
export const httpInstrumentation = { active: false }
