/**
 * The `openTelemetry` option: rejected with its message when it is not 'auto', true or false.
 */
import { createLooplens, type LooplensOptions } from 'looplens'
import { describe, expect, it } from 'vitest'

const MESSAGE = "options.openTelemetry must be 'auto', true or false"

describe('options.openTelemetry', () => {
  it.each([
    ['yes', '"yes"'],
    [1, '1'],
    [null, 'null'],
    [{}, 'an object'],
  ])('rejects %j with a TypeError naming the value', (value, received) => {
    const create = () => createLooplens({ openTelemetry: value } as unknown as LooplensOptions)
    expect(create).toThrow(TypeError)
    expect(create).toThrow(`${MESSAGE} (received ${received})`)
  })

  it.each(['auto', true, false] as const)('accepts %j', async (value) => {
    const lens = createLooplens({ openTelemetry: value, captureStacks: false })
    expect(lens.options.openTelemetry).toBe(value)
    await lens.close()
  })

  it("defaults to 'auto'", async () => {
    const lens = createLooplens({ captureStacks: false })
    expect(lens.options.openTelemetry).toBe('auto')
    await lens.close()
  })
})
