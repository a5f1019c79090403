// Linearizability checking by the Wing–Gong search with Lowe's memoization, the algorithm
// behind Knossos and Porcupine:
//   - P-compositionality: a history is linearizable iff each key's sub-history is, so keys are
//     checked one at a time (Herlihy & Wing 1990, locality).
//   - The sub-history becomes one doubly linked list of call and return events in time order.
//     The search walks it: at a call it tries to linearize that op now (model.step), removing
//     the op's call and return from the list; at a return of an op not yet linearized it must
//     undo the most recent choice and try the next candidate.
//   - Lowe's cache: having linearized the same set of ops reaching the same model state, the
//     rest of the search is identical, so that configuration is explored once.
// Unknown-outcome ops get their return at +∞: they may take effect at any point after their
// invocation. Once every op with a real return is linearized the search succeeds, which is
// exactly "the remaining unknown ops never took effect" (or took effect later, unobserved).

import { LinearizedSet } from './bitset.js';
import { formatInterval, groupByKey, type History, type Operation, validateHistory } from './history.js';
import type { Model } from './model.js';
import {
  type Anomaly,
  CheckerInvariantError,
  combineValidity,
  type Validity,
  type Verdict,
} from './verdict.js';

export interface LinearizabilityOptions<Input, Output> {
  /**
   * Model steps per key before that key is given up as 'unknown'. Per key, so one hard key
   * does not hide a violation on another.
   */
  stepsMax?: number;
  /** Wall-clock budget over all keys, measured with now(); keys not reached are 'unknown'. */
  timeBudgetMs?: number;
  /**
   * Memory for Lowe's cache of one key (estimated: snapshot words plus per-entry overhead; the
   * cache is dropped after each key). Reaching it gives the key up as 'unknown'.
   */
  memoBytesMax?: number;
  /** Clock for the time budget; injected so simulator runs can stay deterministic. */
  now?: () => number;
  /**
   * Run the model's findCertainViolation before the search (default true). Off only to test
   * the search itself.
   */
  precheck?: boolean;
  /** Splits the history into independent sub-histories; defaults to op.key. */
  partitionKey?: (op: Operation<Input, Output>) => string;
}

export const LINEARIZABILITY_STEPS_MAX_DEFAULT = 20_000_000;
export const LINEARIZABILITY_TIME_BUDGET_MS_DEFAULT = 60_000;
export const LINEARIZABILITY_MEMO_BYTES_MAX_DEFAULT = 256 * 1024 * 1024;
/** Rough V8 cost of one cache entry besides its snapshot words (object, typed array header, bucket slot). */
const MEMO_ENTRY_OVERHEAD_BYTES = 120;
/** How many of the last prefix ops an explanation lists. */
const EXPLANATION_PREFIX_OPS_MAX = 8;
/** How many other pending candidates an explanation lists. */
const EXPLANATION_CANDIDATES_MAX = 6;
/** The clock is read once per this many steps. */
const CLOCK_CHECK_INTERVAL_STEPS = 1024;

export interface KeyResult {
  key: string;
  valid: Validity;
  /** Ops searched, after dropping failed ops and unknown read-only ops. */
  opsChecked: number;
  steps: number;
  /** When not linearizable: ids of the longest linearizable prefix found, in order. */
  longestPrefix?: number[];
  /** When not linearizable: the op that could not be placed, then the other candidates then. */
  unplaced?: number[];
}

export interface LinearizabilityVerdict extends Verdict {
  keys: KeyResult[];
  steps: number;
  elapsedMs: number;
}

interface Event {
  isCall: boolean;
  opIndex: number;
  time: number;
  /** For a call: its return event. */
  match: Event | null;
  prev: Event | null;
  next: Event | null;
}

interface Budget {
  stepsMax: number;
  memoBytesMax: number;
  /** Reset for each key. */
  stepsLeft: number;
  memoBytesLeft: number;
  /** Why the search of the current key stopped, once it has. */
  reason: string;
  deadline: number;
  now: () => number;
  exhausted: boolean;
}

interface SearchFailure<State> {
  prefix: number[];
  state: State;
  blocking: number;
  candidates: number[];
}

type SearchOutcome<State> =
  | { kind: 'linearizable'; steps: number }
  | { kind: 'violation'; steps: number; failure: SearchFailure<State> }
  | { kind: 'budget'; steps: number };

export function checkLinearizability<State, Input, Output>(
  history: History<Input, Output>,
  model: Model<State, Input, Output>,
  options: LinearizabilityOptions<Input, Output> = {},
): LinearizabilityVerdict {
  validateHistory(history);
  const now = options.now ?? (() => performance.now());
  const started = now();
  const budget: Budget = {
    stepsMax: options.stepsMax ?? LINEARIZABILITY_STEPS_MAX_DEFAULT,
    memoBytesMax: options.memoBytesMax ?? LINEARIZABILITY_MEMO_BYTES_MAX_DEFAULT,
    stepsLeft: 0,
    memoBytesLeft: 0,
    reason: '',
    deadline: started + (options.timeBudgetMs ?? LINEARIZABILITY_TIME_BUDGET_MS_DEFAULT),
    now,
    exhausted: false,
  };
  const partitions = partition(history, options.partitionKey);
  const keys: KeyResult[] = [];
  const anomalies: Anomaly[] = [];
  const explanations: string[] = [];
  let valid: Validity = true;
  let steps = 0;
  for (const [key, keyOps] of partitions) {
    const { result, anomaly, explanation } = checkKey(key, keyOps, model, budget, options.precheck ?? true);
    keys.push(result);
    steps += result.steps;
    valid = combineValidity(valid, result.valid);
    if (anomaly) anomalies.push(anomaly);
    if (explanation) explanations.push(explanation);
  }
  const elapsedMs = now() - started;
  const summary = `linearizability (${model.name}): ${summarize(valid, keys)}`;
  return { valid, anomalies, explanation: [summary, ...explanations].join('\n'), keys, steps, elapsedMs };
}

function summarize(valid: Validity, keys: readonly KeyResult[]): string {
  const ops = keys.reduce((sum, k) => sum + k.opsChecked, 0);
  const bad = keys.filter((k) => k.valid === false).length;
  const undecided = keys.filter((k) => k.valid === 'unknown').length;
  if (valid === true) return `ok, ${keys.length} keys, ${ops} ops.`;
  return `${valid === false ? 'INVALID' : 'UNDECIDED'}: ${bad} keys not linearizable, ${undecided} undecided, of ${keys.length} keys (${ops} ops).`;
}

function partition<I, O>(
  history: History<I, O>,
  partitionKey: ((op: Operation<I, O>) => string) | undefined,
): [string, Operation<I, O>[]][] {
  const byKey =
    partitionKey === undefined
      ? groupByKey(history)
      : groupByKey(history.map((op) => ({ ...op, key: partitionKey(op) })));
  return [...byKey.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

function checkKey<State, I, O>(
  key: string,
  keyOps: readonly Operation<I, O>[],
  model: Model<State, I, O>,
  budget: Budget,
  precheck: boolean,
): { result: KeyResult; anomaly?: Anomaly; explanation?: string } {
  const certain = precheck ? model.findCertainViolation?.(keyOps) : undefined;
  if (certain) {
    const explanation = `key "${key}" is not linearizable (found before any search).\n  Could not place: ${certain.explanation}.`;
    return {
      result: {
        key,
        opsChecked: keyOps.length,
        valid: false,
        steps: 0,
        longestPrefix: [],
        unplaced: [certain.opId],
      },
      anomaly: {
        code: 'LINEARIZABILITY_VIOLATION',
        subject: key,
        opIds: [certain.opId],
        message: explanation,
      },
      explanation,
    };
  }
  const ops = searchOrder(
    keyOps.filter((op) => op.status === 'ok' || (op.status === 'unknown' && !omittable(model, op, keyOps))),
  );
  const base = { key, opsChecked: ops.length };
  if (budget.exhausted) {
    return {
      result: { ...base, valid: 'unknown', steps: 0 },
      anomaly: budgetAnomaly(key, 'not checked: the time budget was spent on earlier keys'),
    };
  }
  budget.stepsLeft = budget.stepsMax;
  budget.memoBytesLeft = budget.memoBytesMax;
  budget.reason = '';
  const outcome = search(ops, model, budget);
  switch (outcome.kind) {
    case 'linearizable':
      return { result: { ...base, valid: true, steps: outcome.steps } };
    case 'budget':
      return {
        result: { ...base, valid: 'unknown', steps: outcome.steps },
        anomaly: budgetAnomaly(key, `search gave up after ${outcome.steps} steps: ${budget.reason}`),
      };
    case 'violation': {
      const { failure } = outcome;
      const prefixIds = failure.prefix.map((i) => ops[i]!.id);
      const unplaced = [failure.blocking, ...failure.candidates].map((i) => ops[i]!.id);
      const explanation = explainViolation(key, ops, keyOps, model, failure);
      return {
        result: { ...base, valid: false, steps: outcome.steps, longestPrefix: prefixIds, unplaced },
        anomaly: { code: 'LINEARIZABILITY_VIOLATION', subject: key, opIds: unplaced, message: explanation },
        explanation,
      };
    }
  }
}

/** Known-outcome ops first, then unknown ones, each by invocation: the numbering LinearizedSet compresses well. */
function searchOrder<I, O>(ops: Operation<I, O>[]): Operation<I, O>[] {
  const rank = (op: Operation<I, O>): number => (op.status === 'ok' ? 0 : 1);
  return ops.sort((a, b) => rank(a) - rank(b) || a.invokeTime - b.invokeTime || a.id - b.id);
}

function omittable<State, I, O>(
  model: Model<State, I, O>,
  op: Operation<I, O>,
  keyOps: readonly Operation<I, O>[],
): boolean {
  return (model.isReadOnly?.(op) ?? false) || (model.canOmit?.(op, keyOps) ?? false);
}

function budgetAnomaly(key: string, why: string): Anomaly {
  return {
    code: 'SEARCH_BUDGET_EXHAUSTED',
    subject: key,
    opIds: [],
    message: `key "${key}": undecided, ${why} (raise stepsMax/timeBudgetMs to decide)`,
  };
}

/** Builds the time-ordered event list; unknown ops return at +∞. Calls sort before returns at equal times. */
function buildEvents<I, O>(ops: readonly Operation<I, O>[]): Event {
  const events: Event[] = [];
  ops.forEach((op, opIndex) => {
    const end = op.status === 'ok' ? op.completeTime! : Number.POSITIVE_INFINITY;
    const ret: Event = { isCall: false, opIndex, time: end, match: null, prev: null, next: null };
    events.push({ isCall: true, opIndex, time: op.invokeTime, match: ret, prev: null, next: null }, ret);
  });
  // Calls first at equal times: treating touching intervals as concurrent can only admit more
  // orders, so a shared timestamp never produces a false violation.
  events.sort((a, b) => a.time - b.time || Number(b.isCall) - Number(a.isCall) || a.opIndex - b.opIndex);
  const head: Event = {
    isCall: false,
    opIndex: -1,
    time: Number.NEGATIVE_INFINITY,
    match: null,
    prev: null,
    next: null,
  };
  let last = head;
  for (const event of events) {
    event.prev = last;
    last.next = event;
    last = event;
  }
  return head;
}

function unlink(event: Event): void {
  event.prev!.next = event.next;
  if (event.next) event.next.prev = event.prev;
}

function relink(event: Event): void {
  event.prev!.next = event;
  if (event.next) event.next.prev = event;
}

/** Removes an op's call and return from the list; undone by restore in LIFO order. */
function lift(call: Event): void {
  unlink(call);
  unlink(call.match!);
}

function restore(call: Event): void {
  relink(call.match!);
  relink(call);
}

interface CacheEntry<State> {
  linearized: Uint32Array;
  state: State;
}

/**
 * Lowe's memo: returns 0 when (linearized, state) was seen before, else records it and returns
 * the estimated bytes the new entry takes.
 */
function remember<State>(
  cache: Map<number, CacheEntry<State>[]>,
  model: Model<State, unknown, unknown>,
  linearized: LinearizedSet,
  state: State,
): number {
  const hash = (linearized.hash ^ Math.imul(model.hash(state) | 0, 0x27d4eb2d)) >>> 0;
  let bucket = cache.get(hash);
  if (bucket === undefined) {
    bucket = [];
    cache.set(hash, bucket);
  }
  for (const entry of bucket) {
    if (linearized.matches(entry.linearized) && model.equal(entry.state, state)) return 0;
  }
  const snapshot = linearized.snapshot();
  bucket.push({ linearized: snapshot, state });
  return snapshot.byteLength + MEMO_ENTRY_OVERHEAD_BYTES;
}

function spendStep(budget: Budget): boolean {
  budget.stepsLeft--;
  if (budget.stepsLeft < 0) return stop(budget, 'step budget (stepsMax) spent', false);
  if (budget.memoBytesLeft < 0) return stop(budget, 'memo cache reached memoBytesMax', false);
  if (budget.stepsLeft % CLOCK_CHECK_INTERVAL_STEPS === 0 && budget.now() > budget.deadline) {
    return stop(budget, 'time budget (timeBudgetMs) spent', true);
  }
  return true;
}

function stop(budget: Budget, reason: string, forAllKeys: boolean): false {
  budget.reason = reason;
  if (forAllKeys) budget.exhausted = true;
  return false;
}

function search<State, I, O>(
  ops: readonly Operation<I, O>[],
  model: Model<State, I, O>,
  budget: Budget,
): SearchOutcome<State> {
  const head = buildEvents(ops);
  const finiteCount = ops.findIndex((op) => op.status !== 'ok');
  const linearized = new LinearizedSet(finiteCount === -1 ? ops.length : finiteCount, ops.length);
  const cache = new Map<number, CacheEntry<State>[]>();
  const stack: { call: Event; stateBefore: State }[] = [];
  const untypedModel = model as Model<State, unknown, unknown>;
  let state = model.init();
  let steps = 0;
  let bestDepth = 0;
  let bestDirty = true;
  let failure: SearchFailure<State> | undefined;
  let event = head.next;
  while (event !== null) {
    if (event.isCall) {
      if (!spendStep(budget)) return { kind: 'budget', steps };
      steps++;
      const op = ops[event.opIndex]!;
      const { ok, newState } = model.step(state, op);
      if (ok) {
        linearized.set(event.opIndex);
        const entryBytes = remember(cache, untypedModel, linearized, newState);
        if (entryBytes > 0) {
          budget.memoBytesLeft -= entryBytes;
          stack.push({ call: event, stateBefore: state });
          state = newState;
          lift(event);
          if (stack.length > bestDepth) {
            bestDepth = stack.length;
            bestDirty = true;
          }
          event = head.next;
          continue;
        }
        linearized.clear(event.opIndex);
      }
      event = event.next;
      continue;
    }
    // A return: everything left before it has been tried. If it is at +∞, only unknown ops
    // remain, and leaving them out is allowed.
    if (event.time === Number.POSITIVE_INFINITY) return { kind: 'linearizable', steps };
    if (bestDirty) {
      // The first backtrack after reaching a new depth: the stack is exactly the longest prefix.
      failure = recordFailure(head, event, stack, state);
      bestDirty = false;
    }
    const top = stack.pop();
    if (top === undefined) break;
    state = top.stateBefore;
    linearized.clear(top.call.opIndex);
    restore(top.call);
    event = top.call.next;
  }
  if (event === null) return { kind: 'linearizable', steps };
  if (failure === undefined) throw new CheckerInvariantError('search failed without recording where');
  return { kind: 'violation', steps, failure };
}

function recordFailure<State>(
  head: Event,
  blockingReturn: Event,
  stack: readonly { call: Event }[],
  state: State,
): SearchFailure<State> {
  const candidates: number[] = [];
  for (let e = head.next; e !== null && e !== blockingReturn; e = e.next) {
    if (e.isCall && candidates.length < EXPLANATION_CANDIDATES_MAX) candidates.push(e.opIndex);
  }
  return {
    prefix: stack.map((frame) => frame.call.opIndex),
    state,
    blocking: blockingReturn.opIndex,
    candidates: candidates.filter((i) => i !== blockingReturn.opIndex),
  };
}

function explainViolation<State, I, O>(
  key: string,
  ops: readonly Operation<I, O>[],
  keyOps: readonly Operation<I, O>[],
  model: Model<State, I, O>,
  failure: SearchFailure<State>,
): string {
  const blocking = ops[failure.blocking]!;
  const lines = [`key "${key}" is not linearizable (${ops.length} ops searched).`];
  const why =
    model.explainUnplaceable?.(blocking, failure.state, keyOps) ??
    `${model.describeOp(blocking)} has no place in any order consistent with the other operations`;
  lines.push(`  Could not place: ${why}.`);
  const shown = failure.prefix.slice(-EXPLANATION_PREFIX_OPS_MAX);
  const omitted = failure.prefix.length - shown.length;
  lines.push(
    `  Longest linearizable prefix: ${failure.prefix.length} ops` +
      (omitted > 0 ? ` (first ${omitted} not shown), ending:` : ':'),
  );
  for (const i of shown) lines.push(`    #${ops[i]!.id} ${model.describeOp(ops[i]!)}`);
  lines.push(`  State after that prefix: ${model.describeState(failure.state)}.`);
  lines.push(`  Blocking op #${blocking.id} must take effect within ${formatInterval(blocking)}.`);
  if (failure.candidates.length > 0) {
    lines.push('  Other ops that could have come next, none of which leads to a valid order:');
    for (const i of failure.candidates) lines.push(`    #${ops[i]!.id} ${model.describeOp(ops[i]!)}`);
  }
  return lines.join('\n');
}
