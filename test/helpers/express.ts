/**
 * Both Express majors, for tests that must pass on each: `describe.each(EXPRESS_VERSIONS)`.
 */
import express5 from 'express'
import express4 from 'express4'

export const EXPRESS_VERSIONS = [
  // `wildcard`: a catch-all route in each major's own path syntax (path-to-regexp 0.1 vs 8).
  { name: 'Express 4', express: express4, wildcard: '/files/*' },
  { name: 'Express 5', express: express5, wildcard: '/files/*path' },
] as const
