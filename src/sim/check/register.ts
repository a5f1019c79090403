// The register model for per-key linearizability: read, write, compare-and-set and delete on
// one key, which is what a KV store offers per key (etcd's Put, Range, Txn-with-compare, Delete).

import {
  effectDeadline,
  formatInterval,
  formatProcess,
  formatValue,
  HistoryFormatError,
  type Operation,
} from './history.js';
import { hashString, type Model, type StepResult } from './model.js';

/** null means the key is absent (never written, or deleted). */
export type RegisterValue = string | number | null;

export interface CasInput {
  expected: RegisterValue;
  value: RegisterValue;
}

/**
 * kind 'read': input ignored, output is the value read (null if absent).
 * kind 'write': input is the value written, output ignored.
 * kind 'cas': input {expected, value}; output true if the swap happened, false if the compare
 *   failed (a definite answer that the value differed from expected). Use status 'fail' only
 *   when the operation certainly had no effect and told nothing.
 * kind 'delete': input and output ignored.
 */
export type RegisterInput = RegisterValue | CasInput | undefined;
export type RegisterOutput = RegisterValue | boolean;
export type RegisterOp = Operation<RegisterInput, RegisterOutput>;

export const REGISTER_KINDS = ['read', 'write', 'cas', 'delete'] as const;

function isRegisterValue(value: unknown): value is RegisterValue {
  return value === null || typeof value === 'string' || typeof value === 'number';
}

function casInput(op: RegisterOp): CasInput {
  const input = op.input;
  if (typeof input !== 'object' || input === null || !('expected' in input) || !('value' in input)) {
    throw new HistoryFormatError('HISTORY_BAD_OPERATION', 'cas input must be {expected, value}', op.id);
  }
  if (!isRegisterValue(input.expected) || !isRegisterValue(input.value)) {
    throw new HistoryFormatError('HISTORY_BAD_OPERATION', 'cas values must be string, number or null', op.id);
  }
  return input;
}

function writeInput(op: RegisterOp): RegisterValue {
  if (!isRegisterValue(op.input)) {
    throw new HistoryFormatError(
      'HISTORY_BAD_OPERATION',
      'write input must be string, number or null',
      op.id,
    );
  }
  return op.input;
}

function stepRead(state: RegisterValue, op: RegisterOp): StepResult<RegisterValue> {
  if (op.status === 'unknown') return { ok: true, newState: state };
  if (!isRegisterValue(op.output)) {
    throw new HistoryFormatError(
      'HISTORY_BAD_OPERATION',
      'ok read output must be string, number or null',
      op.id,
    );
  }
  return { ok: op.output === state, newState: state };
}

function stepCas(state: RegisterValue, op: RegisterOp): StepResult<RegisterValue> {
  const { expected, value } = casInput(op);
  const matches = state === expected;
  // An unknown CAS whose compare would fail had no effect, which omission already covers.
  if (op.status === 'unknown') return { ok: matches, newState: matches ? value : state };
  if (typeof op.output !== 'boolean') {
    throw new HistoryFormatError('HISTORY_BAD_OPERATION', 'ok cas output must be a boolean', op.id);
  }
  return { ok: op.output === matches, newState: matches ? value : state };
}

/** A write-like op's value if it (may have) set the register, for explanations. */
function writtenValue(op: RegisterOp): { value: RegisterValue } | undefined {
  switch (op.kind) {
    case 'write':
      return { value: writeInput(op) };
    case 'delete':
      return { value: null };
    case 'cas':
      if (op.status === 'ok' && op.output !== true) return undefined;
      return { value: casInput(op).value };
    default:
      return undefined;
  }
}

/**
 * Values a read over [invoke, complete] could return judging by real time alone: writes that
 * may have landed before it completed, minus those certainly overwritten before it began.
 * Used only to word explanations; the search is what decides.
 */
export function possibleValuesByTiming(
  read: RegisterOp,
  keyOps: readonly RegisterOp[],
): { value: RegisterValue; by: RegisterOp | null }[] {
  const readEnd = effectDeadline(read);
  // <= because a write invoked exactly when the read returned may still be ordered before it.
  const writes = keyOps.filter((op) => op.status !== 'fail' && op.invokeTime <= readEnd && writtenValue(op));
  const certain = writes.filter((op) => op.status === 'ok' && effectDeadline(op) < read.invokeTime);
  const overwritten = (w: RegisterOp): boolean =>
    certain.some((later) => later !== w && effectDeadline(w) < later.invokeTime);
  const possible: { value: RegisterValue; by: RegisterOp | null }[] = [];
  if (certain.length === 0) possible.push({ value: null, by: null });
  for (const w of writes) {
    if (!overwritten(w)) possible.push({ value: writtenValue(w)!.value, by: w });
  }
  return possible;
}

/**
 * The same necessary condition as possibleValuesByTiming, fast enough to run on every read:
 * ok writers sorted by completion with the two largest invocation times of each prefix, so
 * "some certain write began after w ended" is one comparison.
 */
class TimingIndex {
  private readonly completions: number[] = [];
  private readonly top1Invoke: number[] = [Number.NEGATIVE_INFINITY];
  private readonly top1Op: (RegisterOp | null)[] = [null];
  private readonly top2Invoke: number[] = [Number.NEGATIVE_INFINITY];
  private readonly writersByValue = new Map<RegisterValue, RegisterOp[]>();

  constructor(keyOps: readonly RegisterOp[]) {
    const certain: RegisterOp[] = [];
    for (const op of keyOps) {
      const written = op.status === 'fail' ? undefined : writtenValue(op);
      if (written === undefined) continue;
      const list = this.writersByValue.get(written.value);
      if (list) list.push(op);
      else this.writersByValue.set(written.value, [op]);
      if (op.status === 'ok') certain.push(op);
    }
    certain.sort((a, b) => effectDeadline(a) - effectDeadline(b));
    for (const op of certain) {
      const i = this.completions.length;
      this.completions.push(effectDeadline(op));
      const [t1, o1, t2] = [this.top1Invoke[i]!, this.top1Op[i]!, this.top2Invoke[i]!];
      if (op.invokeTime > t1) {
        this.top1Invoke.push(op.invokeTime);
        this.top1Op.push(op);
        this.top2Invoke.push(t1);
      } else {
        this.top1Invoke.push(t1);
        this.top1Op.push(o1);
        this.top2Invoke.push(Math.max(t2, op.invokeTime));
      }
    }
  }

  /** Number of certain writes completed strictly before time. */
  private certainBefore(time: number): number {
    let lo = 0;
    let hi = this.completions.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.completions[mid]! < time) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  isPossible(read: RegisterOp, value: RegisterValue): boolean {
    const k = this.certainBefore(read.invokeTime);
    if (k === 0 && value === null) return true;
    const readEnd = effectDeadline(read);
    for (const w of this.writersByValue.get(value) ?? []) {
      if (w.invokeTime > readEnd) continue;
      const latestOtherInvoke = this.top1Op[k] === w ? this.top2Invoke[k]! : this.top1Invoke[k]!;
      if (effectDeadline(w) >= latestOtherInvoke) return true;
    }
    return false;
  }
}

/** The earliest ok read whose value no write could have left in place at its time. */
function findImpossibleRead(
  keyOps: readonly RegisterOp[],
): { opId: number; explanation: string } | undefined {
  const index = new TimingIndex(keyOps);
  const reads = keyOps.filter((op) => op.kind === 'read' && op.status === 'ok');
  reads.sort((a, b) => a.invokeTime - b.invokeTime);
  for (const read of reads) {
    const value = read.output;
    if (!isRegisterValue(value)) {
      throw new HistoryFormatError(
        'HISTORY_BAD_OPERATION',
        'ok read output must be string, number or null',
        read.id,
      );
    }
    if (!index.isPossible(read, value))
      return { opId: read.id, explanation: explainRead(read, null, keyOps) };
  }
  return undefined;
}

function describeWriter(by: RegisterOp | null): string {
  if (by === null) return 'initial value';
  const when =
    by.status === 'ok'
      ? `completed at ${effectDeadline(by)}`
      : `invoked at ${by.invokeTime}, outcome unknown`;
  return `${by.kind} by ${formatProcess(by.process)} ${when}`;
}

function explainRead(op: RegisterOp, state: RegisterValue, keyOps: readonly RegisterOp[]): string {
  const possible = possibleValuesByTiming(op, keyOps);
  const observed = op.output as RegisterValue;
  const head = `read of "${op.key}" by ${formatProcess(op.process)} returned ${formatValue(observed)} at ${formatInterval(op)}`;
  const list = possible.map((p) => `${formatValue(p.value)} (${describeWriter(p.by)})`).join(', ');
  if (!possible.some((p) => p.value === observed)) {
    return `${head} but the only values possible then were ${list}`;
  }
  return (
    `${head}; by timing alone the values possible then were ${list}, but no single order of all ` +
    `operations allows it (after the longest linearizable prefix the value was ${formatValue(state)})` +
    latestOtherRead(op, keyOps)
  );
}

/** The most recent read that finished before this one began and saw something else: often the culprit. */
function latestOtherRead(read: RegisterOp, keyOps: readonly RegisterOp[]): string {
  let latest: RegisterOp | undefined;
  for (const op of keyOps) {
    if (op.kind !== 'read' || op.status !== 'ok' || op.output === read.output) continue;
    if (effectDeadline(op) >= read.invokeTime) continue;
    if (!latest || effectDeadline(op) > effectDeadline(latest)) latest = op;
  }
  if (!latest) return '';
  return `; before it began, ${formatProcess(latest.process)} had already read ${formatValue(latest.output)} at ${formatInterval(latest)}`;
}

interface Observations {
  /**
   * For each value some op depends on the register holding (ok reads, cas expectations): the
   * latest time such an op can take effect.
   */
  dependedUntil: Map<RegisterValue, number>;
  /** Latest completion of an ok cas whose compare failed: it observes "not X", which any write might explain. */
  compareFailedUntil: number;
}

const observationsByKeyOps = new WeakMap<readonly RegisterOp[], Observations>();

function observationsOf(keyOps: readonly RegisterOp[]): Observations {
  const found = observationsByKeyOps.get(keyOps);
  if (found) return found;
  const seen: Observations = { dependedUntil: new Map(), compareFailedUntil: Number.NEGATIVE_INFINITY };
  const depend = (value: RegisterValue, until: number): void => {
    seen.dependedUntil.set(value, Math.max(until, seen.dependedUntil.get(value) ?? Number.NEGATIVE_INFINITY));
  };
  for (const op of keyOps) {
    if (op.kind === 'read' && op.status === 'ok') depend(op.output as RegisterValue, effectDeadline(op));
    if (op.kind !== 'cas' || op.status === 'fail') continue;
    depend(casInput(op).expected, effectDeadline(op));
    if (op.status === 'ok' && op.output === false) {
      seen.compareFailedUntil = Math.max(seen.compareFailedUntil, effectDeadline(op));
    }
  }
  observationsByKeyOps.set(keyOps, seen);
  return seen;
}

/**
 * An unknown write (or cas, or delete) of v can be omitted when no op that could come after it
 * depends on the register holding v, and no failed compare could come after it: in any valid
 * order containing it, removing it only changes the value between it and the next write from v
 * back to the previous value, and no op in that stretch can tell. Ops that finished before it
 * was invoked cannot be in that stretch.
 */
function canOmitRegisterOp(op: RegisterOp, keyOps: readonly RegisterOp[]): boolean {
  if (op.status !== 'unknown') return false;
  const written = writtenValue(op);
  if (written === undefined) return op.kind === 'read';
  const seen = observationsOf(keyOps);
  const dependedUntil = seen.dependedUntil.get(written.value) ?? Number.NEGATIVE_INFINITY;
  return dependedUntil < op.invokeTime && seen.compareFailedUntil < op.invokeTime;
}

export const registerModel: Model<RegisterValue, RegisterInput, RegisterOutput> = {
  name: 'register',
  init: () => null,
  step(state, op) {
    switch (op.kind) {
      case 'read':
        return stepRead(state, op);
      case 'write':
        return { ok: true, newState: writeInput(op) };
      case 'delete':
        return { ok: true, newState: null };
      case 'cas':
        return stepCas(state, op);
      default:
        throw new HistoryFormatError('HISTORY_BAD_OPERATION', `register has no op kind "${op.kind}"`, op.id);
    }
  },
  equal: (a, b) => a === b,
  hash: (state) => (state === null ? 0x9e3779b9 : hashString(`${typeof state}:${state}`)),
  describeOp(op) {
    const who = `${formatProcess(op.process)} ${formatInterval(op)} ${op.status}`;
    switch (op.kind) {
      case 'read':
        return `read "${op.key}" -> ${op.status === 'ok' ? formatValue(op.output) : '?'} (${who})`;
      case 'write':
        return `write "${op.key}" := ${formatValue(op.input)} (${who})`;
      case 'delete':
        return `delete "${op.key}" (${who})`;
      case 'cas': {
        const { expected, value } = casInput(op);
        const outcome = op.status === 'ok' ? (op.output === true ? ' -> swapped' : ' -> compare failed') : '';
        return `cas "${op.key}" ${formatValue(expected)} -> ${formatValue(value)}${outcome} (${who})`;
      }
      default:
        return `${op.kind} "${op.key}" (${who})`;
    }
  },
  describeState: (state) => formatValue(state),
  isReadOnly: (op) => op.kind === 'read',
  canOmit: canOmitRegisterOp,
  findCertainViolation: findImpossibleRead,
  explainUnplaceable(op, state, keyOps) {
    if (op.kind === 'read' && op.status === 'ok') return explainRead(op, state, keyOps);
    if (op.kind === 'cas' && op.status === 'ok') {
      const { expected } = casInput(op);
      const claim =
        op.output === true ? `found ${formatValue(expected)} and swapped` : 'found a different value';
      return (
        `cas of "${op.key}" by ${formatProcess(op.process)} at ${formatInterval(op)} ${claim}, but after the ` +
        `longest linearizable prefix the value was ${formatValue(state)} and no reordering of the ` +
        'concurrent operations makes its outcome possible'
      );
    }
    return `${registerModel.describeOp(op)} has no place in any order consistent with the other operations`;
  },
};
