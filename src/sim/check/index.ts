// History checkers for fault tests and the simulator. Pure functions over recorded histories:
// no I/O, no clocks except the optional injected one bounding the linearizability search.

export { type BankOptions, type BankReadOp, type BankVerdict, checkBank } from './bank.js';
export { type CounterOp, type CounterReadBounds, type CounterVerdict, checkCounter } from './counter.js';
export {
  checkFencing,
  type FencedWriteOp,
  type FencingHistory,
  type LeaseExpiry,
  type LeaseId,
  type LeaseKeyReadOp,
  type LockHold,
} from './fencing.js';
export {
  historyFromPlan,
  type PlannedOp,
  type PlannedOutcome,
  type RandomPlanOptions,
  randomPlan,
  seededRandom,
} from './generate.js';
export {
  effectDeadline,
  type History,
  HistoryFormatError,
  type HistoryFormatErrorCode,
  type Operation,
  type OpStatus,
  type ProcessId,
  precedes,
  validateHistory,
} from './history.js';
export {
  checkLinearizability,
  type KeyResult,
  LINEARIZABILITY_STEPS_MAX_DEFAULT,
  LINEARIZABILITY_TIME_BUDGET_MS_DEFAULT,
  type LinearizabilityOptions,
  type LinearizabilityVerdict,
} from './linearizability.js';
export {
  type CycleClass,
  checkListAppend,
  type ListAppendCycle,
  type ListAppendMop,
  type ListAppendOp,
  type ListAppendOptions,
  type ListAppendVerdict,
  type ListElement,
} from './list-append.js';
export { type ListAppendPlanOptions, randomListAppendHistory } from './list-append-generate.js';
export type { EdgeType } from './list-append-graph.js';
export { hashString, type Model, type StepResult } from './model.js';
export { HistoryRecorder, type PendingOp } from './recorder.js';
export {
  type CasInput,
  possibleValuesByTiming,
  type RegisterInput,
  type RegisterOp,
  type RegisterOutput,
  type RegisterValue,
  registerModel,
} from './register.js';
export { checkRevisions, type RevisionFacts } from './revision.js';
export { checkSet, type SetElement, type SetOp, type SetVerdict } from './set.js';
export {
  ANOMALIES_PER_CODE_MAX,
  ANOMALY_CODES,
  type Anomaly,
  type AnomalyCode,
  assertNever,
  CheckerInvariantError,
  combineValidity,
  combineVerdicts,
  type Validity,
  type Verdict,
} from './verdict.js';
export {
  type CompactionRecord,
  checkWatches,
  type KeyspaceEvent,
  type WatchEventType,
  type WatcherRecord,
  type WatchFilter,
  type WatchHistory,
  type WatchSegment,
  watchMatches,
} from './watch.js';
