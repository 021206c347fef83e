export { BLOCK_CHANNEL_NAME } from './events/publisher.js'
export { METRIC_NAMES } from './exporters/prometheus.js'
export { createLooplens, Looplens } from './looplens.js'
export type {
  BackgroundOptions,
  BackgroundTasks,
  BlockContext,
  BlockEvent,
  BlockKind,
  GuardOptions,
  LooplensEvents,
  LooplensOptions,
  LoopSnapshot,
  StackFrame,
  StackMissingReason,
} from './types.js'
