export { BLOCK_CHANNEL_NAME } from './events/publisher.js'
export { METRIC_NAMES } from './exporters/prometheus.js'
export { createLooplens, Looplens } from './looplens.js'
export type {
  BlockContext,
  BlockEvent,
  BlockKind,
  LoopSnapshot,
  LooplensEvents,
  LooplensOptions,
  StackFrame,
  StackMissingReason,
} from './types.js'
