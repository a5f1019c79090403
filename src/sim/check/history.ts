// The history format shared by every checker: what each client asked, when, and what it saw.
// Times are plain numbers on one clock (simulator ticks or monotonic milliseconds); only their
// order matters.

/**
 * ok: the client saw a reply, and output is what it said.
 * fail: the operation certainly did not take effect (e.g. a rejected precondition the server
 *   reported before doing anything). Checkers drop these.
 * unknown: timeout or lost connection. It may have taken effect at any moment after its
 *   invocation, arbitrarily late, or never; its output is unknown.
 */
export type OpStatus = 'ok' | 'fail' | 'unknown';

export type ProcessId = number | string;

export interface Operation<Input = unknown, Output = unknown> {
  /** Unique within one history. */
  id: number;
  /** The client (Jepsen's "process") that issued it; used only in explanations. */
  process: ProcessId;
  /** Interpreted by the checker: 'read', 'write', 'cas', 'add', ... */
  kind: string;
  key: string;
  input: Input;
  /** Meaningful only when status is 'ok'. */
  output?: Output;
  invokeTime: number;
  /** Required when status is 'ok'. Ignored for 'unknown': the effect may land after any timeout. */
  completeTime?: number;
  status: OpStatus;
}

export type History<Input = unknown, Output = unknown> = readonly Operation<Input, Output>[];

export type HistoryFormatErrorCode =
  | 'HISTORY_DUPLICATE_ID'
  | 'HISTORY_BAD_TIME'
  | 'HISTORY_MISSING_COMPLETION'
  | 'HISTORY_BAD_STATUS'
  | 'HISTORY_BAD_OPERATION';

/** The history itself is malformed: a bug in the recorder, not in the system under test. */
export class HistoryFormatError extends Error {
  readonly code: HistoryFormatErrorCode;
  readonly opId: number | undefined;
  constructor(code: HistoryFormatErrorCode, message: string, opId?: number) {
    super(opId === undefined ? message : `op ${opId}: ${message}`);
    this.name = 'HistoryFormatError';
    this.code = code;
    this.opId = opId;
  }
}

const STATUSES: ReadonlySet<string> = new Set<OpStatus>(['ok', 'fail', 'unknown']);

/** Throws HistoryFormatError on the first malformed operation. */
export function validateHistory(history: History): void {
  const ids = new Set<number>();
  for (const op of history) {
    if (!Number.isSafeInteger(op.id))
      throw new HistoryFormatError('HISTORY_BAD_OPERATION', 'id must be an integer');
    if (ids.has(op.id)) throw new HistoryFormatError('HISTORY_DUPLICATE_ID', 'id used twice', op.id);
    ids.add(op.id);
    if (!STATUSES.has(op.status)) {
      throw new HistoryFormatError('HISTORY_BAD_STATUS', `status ${String(op.status)}`, op.id);
    }
    if (typeof op.key !== 'string' || typeof op.kind !== 'string') {
      throw new HistoryFormatError('HISTORY_BAD_OPERATION', 'key and kind must be strings', op.id);
    }
    if (!Number.isFinite(op.invokeTime)) {
      throw new HistoryFormatError('HISTORY_BAD_TIME', 'invokeTime must be finite', op.id);
    }
    validateCompletion(op);
  }
}

function validateCompletion(op: Operation): void {
  if (op.completeTime === undefined) {
    if (op.status === 'ok')
      throw new HistoryFormatError('HISTORY_MISSING_COMPLETION', 'ok without completeTime', op.id);
    return;
  }
  if (!Number.isFinite(op.completeTime) || op.completeTime < op.invokeTime) {
    throw new HistoryFormatError('HISTORY_BAD_TIME', 'completeTime must be finite and >= invokeTime', op.id);
  }
}

/** The latest moment the operation can take effect: its reply, or +∞ when the outcome is unknown. */
export function effectDeadline(op: Operation): number {
  if (op.status === 'unknown') return Number.POSITIVE_INFINITY;
  return op.completeTime ?? Number.POSITIVE_INFINITY;
}

/** True when a certainly finished before b began (real-time order). */
export function precedes(a: Operation, b: Operation): boolean {
  return effectDeadline(a) < b.invokeTime;
}

export function groupByKey<I, O>(history: History<I, O>): Map<string, Operation<I, O>[]> {
  const byKey = new Map<string, Operation<I, O>[]>();
  for (const op of history) {
    const list = byKey.get(op.key);
    if (list === undefined) byKey.set(op.key, [op]);
    else list.push(op);
  }
  return byKey;
}

export function formatTime(time: number): string {
  return Number.isFinite(time) ? String(time) : '∞';
}

/** "[12, 15]" or "[12, ∞)" for an operation whose outcome is unknown. */
export function formatInterval(op: Operation): string {
  const end = effectDeadline(op);
  return Number.isFinite(end) ? `[${op.invokeTime}, ${end}]` : `[${op.invokeTime}, ∞)`;
}

export function formatProcess(process: ProcessId): string {
  return `client ${String(process)}`;
}

export function formatValue(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'nil';
  return JSON.stringify(value);
}
