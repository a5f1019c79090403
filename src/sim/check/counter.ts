// The counter workload: clients add non-negative amounts and read the total. Each read must lie
// between what had certainly been added before it began (acknowledged adds completed by then)
// and what could possibly have been added before it ended (acknowledged or unknown adds invoked
// by then). Since the counter only grows, a read must also be at least any value a read that
// finished before it began already returned. The final read is the special case where every
// add has finished: [acknowledged, acknowledged + unknown].

import {
  effectDeadline,
  formatInterval,
  formatProcess,
  type History,
  HistoryFormatError,
  type Operation,
  validateHistory,
} from './history.js';
import { AnomalyCollector, type Verdict } from './verdict.js';

/** kind 'add': input is the amount (>= 0). kind 'read': output is the counter's value. */
export type CounterOp = Operation<number | undefined, number>;

export interface CounterReadBounds {
  readId: number;
  value: number;
  lower: number;
  upper: number;
}

export interface CounterVerdict extends Verdict {
  /** Sum of acknowledged adds. */
  acknowledgedSum: number;
  /** Sum of unknown-outcome adds. */
  unknownSum: number;
  /** The ok read that completed last, with its bounds; null when there was no read. */
  finalRead: CounterReadBounds | null;
}

function amountOf(op: CounterOp): number {
  if (typeof op.input !== 'number' || !Number.isFinite(op.input) || op.input < 0) {
    throw new HistoryFormatError(
      'HISTORY_BAD_OPERATION',
      'counter add input must be a finite number >= 0',
      op.id,
    );
  }
  return op.input;
}

function readValue(op: CounterOp): number {
  if (typeof op.output !== 'number') {
    throw new HistoryFormatError('HISTORY_BAD_OPERATION', 'counter read output must be a number', op.id);
  }
  return op.output;
}

/** Sorted times with prefix sums, for O(log n) bounds per read. */
class PrefixSums {
  private readonly times: number[];
  private readonly sums: number[];

  constructor(entries: { time: number; amount: number }[]) {
    entries.sort((a, b) => a.time - b.time);
    this.times = entries.map((e) => e.time);
    this.sums = [0];
    for (const e of entries) this.sums.push(this.sums[this.sums.length - 1]! + e.amount);
  }

  /** Total of entries with time < t, or <= t when inclusive. */
  sumBefore(time: number, inclusive = false): number {
    let lo = 0;
    let hi = this.times.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const t = this.times[mid]!;
      if (t < time || (inclusive && t === time)) lo = mid + 1;
      else hi = mid;
    }
    return this.sums[lo]!;
  }
}

function boundsOf(read: CounterOp, certain: PrefixSums, possible: PrefixSums): CounterReadBounds {
  return {
    readId: read.id,
    value: readValue(read),
    lower: certain.sumBefore(read.invokeTime),
    // An add invoked exactly when the read completed counts as concurrent (may be included).
    upper: possible.sumBefore(effectDeadline(read), true),
  };
}

function checkBounds(read: CounterOp, bounds: CounterReadBounds, anomalies: AnomalyCollector): void {
  const where = `read by ${formatProcess(read.process)} at ${formatInterval(read)} returned ${bounds.value}`;
  if (bounds.value < bounds.lower) {
    anomalies.add({
      code: 'COUNTER_READ_BELOW_LOWER_BOUND',
      opIds: [read.id],
      message: `${where}, but acknowledged adds completed before it began already total ${bounds.lower}`,
    });
  }
  if (bounds.value > bounds.upper) {
    anomalies.add({
      code: 'COUNTER_READ_ABOVE_UPPER_BOUND',
      opIds: [read.id],
      message: `${where}, but all adds (acknowledged or unknown) invoked before it ended total only ${bounds.upper}`,
    });
  }
}

/** Reads certainly ordered in real time must not go backwards. */
function checkMonotonic(reads: readonly CounterOp[], anomalies: AnomalyCollector): void {
  const byCompletion = [...reads].sort((a, b) => effectDeadline(a) - effectDeadline(b));
  const byInvocation = [...reads].sort((a, b) => a.invokeTime - b.invokeTime);
  let next = 0;
  let highest: CounterOp | undefined;
  for (const read of byInvocation) {
    while (next < byCompletion.length && effectDeadline(byCompletion[next]!) < read.invokeTime) {
      const candidate = byCompletion[next++]!;
      if (!highest || readValue(candidate) > readValue(highest)) highest = candidate;
    }
    if (highest && readValue(read) < readValue(highest)) {
      anomalies.add({
        code: 'COUNTER_READ_NOT_MONOTONIC',
        opIds: [highest.id, read.id],
        message:
          `read by ${formatProcess(read.process)} at ${formatInterval(read)} returned ${readValue(read)} after ` +
          `${formatProcess(highest.process)} had already read ${readValue(highest)} at ${formatInterval(highest)}`,
      });
    }
  }
}

export function checkCounter(history: History<number | undefined, number>): CounterVerdict {
  validateHistory(history);
  const adds = history.filter((op) => op.kind === 'add');
  const reads = history.filter((op) => op.kind === 'read' && op.status === 'ok');
  const ackedAdds = adds.filter((a) => a.status === 'ok');
  const unknownAdds = adds.filter((a) => a.status === 'unknown');
  const certain = new PrefixSums(ackedAdds.map((a) => ({ time: effectDeadline(a), amount: amountOf(a) })));
  const possible = new PrefixSums(
    [...ackedAdds, ...unknownAdds].map((a) => ({ time: a.invokeTime, amount: amountOf(a) })),
  );
  const acknowledgedSum = ackedAdds.reduce((sum, a) => sum + amountOf(a), 0);
  const unknownSum = unknownAdds.reduce((sum, a) => sum + amountOf(a), 0);
  const anomalies = new AnomalyCollector();
  if (reads.length === 0) {
    anomalies.add({
      code: 'COUNTER_NO_READ',
      opIds: [],
      message: 'no read completed, so nothing can be checked',
    });
    return {
      valid: 'unknown',
      anomalies: anomalies.anomalies,
      explanation: `counter: UNDECIDED. ${anomalies.summary()}`,
      acknowledgedSum,
      unknownSum,
      finalRead: null,
    };
  }
  let finalRead: CounterReadBounds | null = null;
  let finalCompletion = Number.NEGATIVE_INFINITY;
  for (const read of reads) {
    const bounds = boundsOf(read, certain, possible);
    checkBounds(read, bounds, anomalies);
    if (effectDeadline(read) > finalCompletion) {
      finalCompletion = effectDeadline(read);
      finalRead = bounds;
    }
  }
  checkMonotonic(reads, anomalies);
  const verdict = anomalies.toVerdict(
    'counter',
    `${reads.length} reads within bounds and monotonic; final value ${finalRead!.value} in [${finalRead!.lower}, ${finalRead!.upper}].`,
  );
  return { ...verdict, acknowledgedSum, unknownSum, finalRead };
}
