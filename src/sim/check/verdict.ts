// The one result shape every history checker returns, so a fault test can run several checkers
// and report them uniformly. Anomaly codes are stable strings: tests and dashboards match on them.

export const ANOMALY_CODES = [
  // linearizability.ts
  'LINEARIZABILITY_VIOLATION',
  'SEARCH_BUDGET_EXHAUSTED',
  // set.ts
  'SET_NO_FINAL_READ',
  'SET_LOST_ELEMENT',
  'SET_STALE_READ',
  'SET_PHANTOM_ELEMENT',
  'SET_FAILED_ADD_PRESENT',
  'SET_READ_BEFORE_ADD',
  'SET_DUPLICATE_ELEMENT',
  // counter.ts
  'COUNTER_NO_READ',
  'COUNTER_READ_BELOW_LOWER_BOUND',
  'COUNTER_READ_ABOVE_UPPER_BOUND',
  'COUNTER_READ_NOT_MONOTONIC',
  // watch.ts
  'WATCH_DUPLICATE_EVENT',
  'WATCH_OUT_OF_ORDER',
  'WATCH_MISSING_EVENT',
  'WATCH_WRONG_RESUME',
  'WATCH_EVENT_BEFORE_START',
  'WATCH_UNKNOWN_EVENT',
  'WATCH_EVENT_MISMATCH',
  'WATCH_EVENT_OUT_OF_RANGE',
  'WATCH_COMPACTION_NOT_REPORTED',
  'WATCH_SPURIOUS_COMPACTION',
  'WATCH_EVENTS_AFTER_COMPACTION',
  // revision.ts
  'REVISION_WENT_BACKWARDS',
  'REVISION_REUSED',
  // fencing.ts
  'FENCING_TOKEN_REGRESSION',
  'FENCING_DUPLICATE_TOKEN',
  'FENCING_STALE_WRITE_ACCEPTED',
  'LOCK_MUTUAL_EXCLUSION_VIOLATED',
  'LEASE_KEY_SURVIVED_EXPIRY',
  // list-append.ts
  'LIST_APPEND_G0',
  'LIST_APPEND_G1C',
  'LIST_APPEND_G_SINGLE',
  'LIST_APPEND_G2',
  'LIST_APPEND_G0_REALTIME',
  'LIST_APPEND_G1C_REALTIME',
  'LIST_APPEND_G_SINGLE_REALTIME',
  'LIST_APPEND_G2_REALTIME',
  'LIST_APPEND_G1A',
  'LIST_APPEND_G1B',
  'LIST_APPEND_GARBAGE_READ',
  'LIST_APPEND_DUPLICATE_ELEMENT',
  'LIST_APPEND_INCOMPATIBLE_ORDER',
  'LIST_APPEND_INTERNAL',
  // bank.ts
  'BANK_WRONG_ACCOUNTS',
  'BANK_WRONG_TOTAL',
  'BANK_NEGATIVE_BALANCE',
] as const;

export type AnomalyCode = (typeof ANOMALY_CODES)[number];

export interface Anomaly {
  code: AnomalyCode;
  /** One readable sentence with the times and values involved. */
  message: string;
  /** The key, element, watcher or lock the anomaly is about, when there is one. */
  subject?: string;
  /** Ids of the operations involved (history op ids), possibly empty. */
  opIds: readonly number[];
}

/** true: no anomaly exists. false: at least one certain anomaly. 'unknown': could not decide. */
export type Validity = true | false | 'unknown';

export interface Verdict {
  valid: Validity;
  anomalies: Anomaly[];
  explanation: string;
}

/** A certain failure outranks an undecided part, which outranks success. */
export function combineValidity(a: Validity, b: Validity): Validity {
  if (a === false || b === false) return false;
  if (a === 'unknown' || b === 'unknown') return 'unknown';
  return true;
}

/** Merges the verdicts of several checkers run over one test. */
export function combineVerdicts(verdicts: readonly Verdict[]): Verdict {
  let valid: Validity = true;
  const anomalies: Anomaly[] = [];
  const lines: string[] = [];
  for (const verdict of verdicts) {
    valid = combineValidity(valid, verdict.valid);
    anomalies.push(...verdict.anomalies);
    lines.push(verdict.explanation);
  }
  return { valid, anomalies, explanation: lines.join('\n') };
}

/**
 * Bounds how many anomalies of one code a checker lists: a badly broken run can produce
 * millions, and the first few already say what is wrong.
 */
export const ANOMALIES_PER_CODE_MAX = 50;

/** Collects anomalies, keeping at most ANOMALIES_PER_CODE_MAX per code but counting them all. */
export class AnomalyCollector {
  readonly anomalies: Anomaly[] = [];
  private readonly countsByCode = new Map<AnomalyCode, number>();

  add(anomaly: Anomaly): void {
    const count = (this.countsByCode.get(anomaly.code) ?? 0) + 1;
    this.countsByCode.set(anomaly.code, count);
    if (count <= ANOMALIES_PER_CODE_MAX) this.anomalies.push(anomaly);
  }

  get isEmpty(): boolean {
    return this.countsByCode.size === 0;
  }

  /** One line per code: "SET_LOST_ELEMENT ×3: <first message>". */
  summary(): string {
    const lines: string[] = [];
    for (const [code, count] of this.countsByCode) {
      const first = this.anomalies.find((a) => a.code === code);
      const shown = count > ANOMALIES_PER_CODE_MAX ? ` (first ${ANOMALIES_PER_CODE_MAX} listed)` : '';
      lines.push(`${code} ×${count}${shown}: ${first?.message ?? ''}`);
    }
    return lines.join('\n');
  }

  toVerdict(checkerName: string, okExplanation: string): Verdict {
    if (this.isEmpty)
      return { valid: true, anomalies: [], explanation: `${checkerName}: ok. ${okExplanation}` };
    return {
      valid: false,
      anomalies: this.anomalies,
      explanation: `${checkerName}: INVALID.\n${this.summary()}`,
    };
  }
}

export class CheckerInvariantError extends Error {
  readonly code = 'CHECKER_INVARIANT';
  constructor(message: string) {
    super(`checker invariant violated: ${message}`);
    this.name = 'CheckerInvariantError';
  }
}

export function assertNever(value: never): never {
  throw new CheckerInvariantError(`unexpected value ${JSON.stringify(value)}`);
}
