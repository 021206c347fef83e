/**
 * Every option rejected with its exact message: TypeError for the wrong type, RangeError for the
 * wrong range, naming the option, the expected form and the value received.
 */
import { createLooplens, type LooplensOptions } from 'looplens'
import { Registry } from 'prom-client'
import { describe, expect, it } from 'vitest'

type Case = [option: string, value: unknown, error: typeof TypeError, message: string]

const CASES: Case[] = [
  [
    'blockThresholdMs',
    -5,
    RangeError,
    'options.blockThresholdMs must be an integer between 10 and 60000 (received -5)',
  ],
  [
    'blockThresholdMs',
    '50',
    TypeError,
    'options.blockThresholdMs must be an integer (received "50")',
  ],
  [
    'blockThresholdMs',
    12.5,
    TypeError,
    'options.blockThresholdMs must be an integer (received 12.5)',
  ],
  [
    'registry',
    {},
    TypeError,
    'options.registry must be a prom-client Registry (received an object)',
  ],
  [
    'registry',
    new Map(),
    TypeError,
    'options.registry must be a prom-client Registry (received an instance of Map)',
  ],
  [
    'delayResolutionMs',
    0,
    RangeError,
    'options.delayResolutionMs must be an integer between 1 and 1000 (received 0)',
  ],
  [
    'excludePaths',
    '/health',
    TypeError,
    'options.excludePaths must be an array of strings and RegExps (received "/health")',
  ],
  [
    'excludePaths',
    ['/ok', 'health'],
    TypeError,
    'options.excludePaths[1] must be a path starting with "/" or a RegExp (received "health")',
  ],
  [
    'maxRoutes',
    0,
    RangeError,
    'options.maxRoutes must be an integer between 1 and 1000000 (received 0)',
  ],
  ['maxRoutes', '1000', TypeError, 'options.maxRoutes must be an integer (received "1000")'],
  ['captureStacks', 'yes', TypeError, 'options.captureStacks must be a boolean (received "yes")'],
  [
    'maxStacksPerMinute',
    -1,
    RangeError,
    'options.maxStacksPerMinute must be an integer between 0 and 60000 (received -1)',
  ],
  [
    'hangReportMs',
    20,
    RangeError,
    'options.hangReportMs must be 0 (off) or ≥ options.blockThresholdMs (50) (received 20)',
  ],
  ['hangReportMs', -1, RangeError, 'options.hangReportMs must be an integer ≥ 0 (received -1)'],
  [
    'closeTimeoutMs',
    Number.NaN,
    TypeError,
    'options.closeTimeoutMs must be an integer (received NaN)',
  ],
  [
    'closeTimeoutMs',
    600_001,
    RangeError,
    'options.closeTimeoutMs must be an integer between 0 and 600000 (received 600001)',
  ],
  ['onWarning', 'log', TypeError, 'options.onWarning must be a function (received "log")'],
  [
    'openTelemetry',
    'on',
    TypeError,
    `options.openTelemetry must be 'auto', true or false (received "on")`,
  ],
]

/** The options looplens knows, as its own unknown-option message lists them. */
function knownOptions(): string[] {
  try {
    createLooplens({ notAnOption: 1 } as LooplensOptions)
  } catch (error) {
    const match = /\(known: (.*)\)$/.exec((error as Error).message)
    if (match) return match[1]!.split(', ')
  }
  throw new Error('an unknown option was accepted')
}

describe('createLooplens(options) validation', () => {
  it.each(CASES)('rejects options.%s = %o', (option, value, error, message) => {
    const attempt = () => createLooplens({ [option]: value } as LooplensOptions)
    expect(attempt).toThrow(error)
    expect(attempt).toThrow(message)
    // Exactly that message, not one that merely contains it.
    try {
      attempt()
    } catch (thrown) {
      expect((thrown as Error).message).toBe(message)
      expect((thrown as Error).constructor).toBe(error)
    }
  })

  it('has a rejection case for every option it knows', () => {
    const tested = new Set(CASES.map(([option]) => option))
    expect(knownOptions().filter((option) => !tested.has(option))).toEqual([])
  })

  it('rejects an unknown option, naming it and listing the known ones', () => {
    const attempt = () => createLooplens({ blockThreshold: 50 } as LooplensOptions)
    expect(attempt).toThrow(TypeError)
    expect(attempt).toThrow(
      `options.blockThreshold is not an option of looplens (known: ${knownOptions().join(', ')})`,
    )
  })

  it.each([
    [50, 'options must be an object (received 50)'],
    [null, 'options must be an object (received null)'],
    [[], 'options must be an object (received an array of 0)'],
  ])('rejects options = %o', (value, message) => {
    expect(() => createLooplens(value as LooplensOptions)).toThrow(new TypeError(message))
  })

  it('keeps an explicit 0 (never `x || default`) and freezes the result', async () => {
    const registry = new Registry()
    const lens = createLooplens({
      registry,
      maxStacksPerMinute: 0,
      hangReportMs: 0,
      closeTimeoutMs: 0,
      captureStacks: false,
      excludePaths: [],
      blockThresholdMs: 10,
      delayResolutionMs: 1,
      openTelemetry: false,
      onWarning: () => {},
    })
    try {
      expect(lens.options).toMatchObject({
        maxStacksPerMinute: 0,
        hangReportMs: 0,
        closeTimeoutMs: 0,
        captureStacks: false,
        excludePaths: [],
        blockThresholdMs: 10,
        delayResolutionMs: 1,
        openTelemetry: false,
      })
      expect(lens.registry).toBe(registry)
      expect(Object.isFrozen(lens.options)).toBe(true)
      expect(Object.isFrozen(lens.options.excludePaths)).toBe(true)
      expect(() => {
        ;(lens.options as { blockThresholdMs: number }).blockThresholdMs = 1
      }).toThrow(TypeError)
    } finally {
      await lens.close()
    }
  })

  it('uses the documented defaults', async () => {
    const lens = createLooplens()
    try {
      expect(lens.options).toMatchObject({
        blockThresholdMs: 50,
        delayResolutionMs: 10,
        excludePaths: ['/metrics'],
        captureStacks: true,
        maxStacksPerMinute: 60,
        hangReportMs: 2_000,
        closeTimeoutMs: 5_000,
        openTelemetry: 'auto',
      })
      expect(lens.registry).toBeInstanceOf(Registry)
    } finally {
      await lens.close()
    }
  })
})
