// The set workload: clients add unique elements and read the whole set; the final read comes
// after the faults have healed. Every acknowledged add must survive, and nothing may appear
// that was never added. Elements are never removed, so once an element is known to be in the
// set (its add was acknowledged, or a read saw it) every later read must contain it.

import {
  effectDeadline,
  formatInterval,
  formatProcess,
  formatValue,
  type History,
  HistoryFormatError,
  type Operation,
  validateHistory,
} from './history.js';
import { AnomalyCollector, type Verdict } from './verdict.js';

export type SetElement = string | number;

/** kind 'add': input is the element. kind 'read': output is every element the read returned. */
export type SetOp = Operation<SetElement | undefined, readonly SetElement[]>;

export interface SetVerdict extends Verdict {
  /** Elements known present before the final read began but missing from it. */
  lost: SetElement[];
  /** Elements in some read that no add ever tried to insert. */
  phantom: SetElement[];
  /** Unknown-outcome adds whose element the final read contains. */
  unknownPresent: SetElement[];
  /** Unknown-outcome adds whose element the final read lacks (allowed). */
  unknownAbsent: SetElement[];
  acknowledgedAdds: number;
  finalReadId: number | null;
}

interface ElementFacts {
  adds: SetOp[];
  /** Earliest time by which the element is certainly in the set. */
  knownSince: number;
}

function elementOf(op: SetOp): SetElement {
  if (typeof op.input !== 'string' && typeof op.input !== 'number') {
    throw new HistoryFormatError('HISTORY_BAD_OPERATION', 'add input must be a string or number', op.id);
  }
  return op.input;
}

function readElements(op: SetOp): readonly SetElement[] {
  if (!Array.isArray(op.output)) {
    throw new HistoryFormatError('HISTORY_BAD_OPERATION', 'ok read output must be an array', op.id);
  }
  return op.output;
}

function collectFacts(adds: readonly SetOp[], reads: readonly SetOp[]): Map<SetElement, ElementFacts> {
  const facts = new Map<SetElement, ElementFacts>();
  const factsOf = (element: SetElement): ElementFacts => {
    let found = facts.get(element);
    if (!found) facts.set(element, (found = { adds: [], knownSince: Number.POSITIVE_INFINITY }));
    return found;
  };
  for (const add of adds) {
    const f = factsOf(elementOf(add));
    f.adds.push(add);
    if (add.status === 'ok') f.knownSince = Math.min(f.knownSince, effectDeadline(add));
  }
  for (const read of reads) {
    for (const element of readElements(read)) {
      const f = factsOf(element);
      f.knownSince = Math.min(f.knownSince, effectDeadline(read));
    }
  }
  return facts;
}

/** The final read: the ok read that completed last. */
function finalReadOf(reads: readonly SetOp[]): SetOp | undefined {
  let last: SetOp | undefined;
  for (const read of reads) {
    if (!last || effectDeadline(read) > effectDeadline(last)) last = read;
  }
  return last;
}

function checkReadContents(
  read: SetOp,
  facts: Map<SetElement, ElementFacts>,
  anomalies: AnomalyCollector,
): void {
  const seen = new Set<SetElement>();
  for (const element of readElements(read)) {
    const where = `read by ${formatProcess(read.process)} at ${formatInterval(read)}`;
    if (seen.has(element)) {
      anomalies.add({
        code: 'SET_DUPLICATE_ELEMENT',
        subject: String(element),
        opIds: [read.id],
        message: `${where} returned ${formatValue(element)} twice`,
      });
      continue;
    }
    seen.add(element);
    const adds = facts.get(element)!.adds;
    const attempted = adds.filter((a) => a.status !== 'fail');
    if (adds.length === 0) {
      anomalies.add({
        code: 'SET_PHANTOM_ELEMENT',
        subject: String(element),
        opIds: [read.id],
        message: `${where} returned ${formatValue(element)}, which no client ever tried to add`,
      });
    } else if (attempted.length === 0) {
      anomalies.add({
        code: 'SET_FAILED_ADD_PRESENT',
        subject: String(element),
        opIds: [read.id, ...adds.map((a) => a.id)],
        message: `${where} returned ${formatValue(element)}, but every add of it failed (certainly not applied)`,
      });
    } else if (attempted.every((a) => a.invokeTime > effectDeadline(read))) {
      anomalies.add({
        code: 'SET_READ_BEFORE_ADD',
        subject: String(element),
        opIds: [read.id, ...attempted.map((a) => a.id)],
        message: `${where} returned ${formatValue(element)} before any add of it was invoked (first at ${attempted[0]!.invokeTime})`,
      });
    }
  }
}

function checkReadCompleteness(
  read: SetOp,
  isFinal: boolean,
  facts: Map<SetElement, ElementFacts>,
  anomalies: AnomalyCollector,
  lost: SetElement[],
): void {
  const contents = new Set(readElements(read));
  for (const [element, f] of facts) {
    if (f.knownSince >= read.invokeTime || contents.has(element)) continue;
    if (isFinal) lost.push(element);
    const ack = f.adds.find((a) => a.status === 'ok' && effectDeadline(a) === f.knownSince);
    const because = ack
      ? `its add by ${formatProcess(ack.process)} was acknowledged at ${f.knownSince}`
      : `a read completed at ${f.knownSince} already returned it`;
    anomalies.add({
      code: isFinal ? 'SET_LOST_ELEMENT' : 'SET_STALE_READ',
      subject: String(element),
      opIds: [read.id, ...(ack ? [ack.id] : [])],
      message: `${isFinal ? 'final ' : ''}read by ${formatProcess(read.process)} at ${formatInterval(read)} lacks ${formatValue(element)}, but ${because}`,
    });
  }
}

export function checkSet(history: History<SetElement | undefined, readonly SetElement[]>): SetVerdict {
  validateHistory(history);
  const adds = history.filter((op) => op.kind === 'add');
  const reads = history.filter((op) => op.kind === 'read' && op.status === 'ok');
  const anomalies = new AnomalyCollector();
  const facts = collectFacts(adds, reads);
  const finalRead = finalReadOf(reads);
  const acknowledgedAdds = adds.filter((a) => a.status === 'ok').length;
  const base = { acknowledgedAdds, unknownPresent: [], unknownAbsent: [], lost: [], phantom: [] };
  if (!finalRead) {
    anomalies.add({
      code: 'SET_NO_FINAL_READ',
      opIds: [],
      message: 'no read completed, so nothing can be checked',
    });
    return {
      ...base,
      finalReadId: null,
      valid: 'unknown',
      anomalies: anomalies.anomalies,
      explanation: `set: UNDECIDED. ${anomalies.summary()}`,
    };
  }
  const lost: SetElement[] = [];
  for (const read of reads) {
    checkReadContents(read, facts, anomalies);
    checkReadCompleteness(read, read === finalRead, facts, anomalies, lost);
  }
  const finalContents = new Set(readElements(finalRead));
  const phantom = [...facts].filter(([, f]) => f.adds.length === 0).map(([e]) => e);
  const unknownElements = [...facts]
    .filter(([, f]) => f.adds.some((a) => a.status === 'unknown') && !f.adds.some((a) => a.status === 'ok'))
    .map(([e]) => e);
  const verdict = anomalies.toVerdict(
    'set',
    `${acknowledgedAdds} acknowledged adds all present in the final read (op ${finalRead.id}).`,
  );
  return {
    ...verdict,
    lost,
    phantom,
    unknownPresent: unknownElements.filter((e) => finalContents.has(e)),
    unknownAbsent: unknownElements.filter((e) => !finalContents.has(e)),
    acknowledgedAdds,
    finalReadId: finalRead.id,
  };
}
