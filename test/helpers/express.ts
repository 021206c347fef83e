/**
 * Both Express majors, for tests that must pass on each: `describe.each(EXPRESS_VERSIONS)`.
 */
import express5 from 'express'
import express4 from 'express4'

export const EXPRESS_VERSIONS = [
  { name: 'Express 4', express: express4 },
  { name: 'Express 5', express: express5 },
] as const
