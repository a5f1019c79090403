// etcd's revision is one counter for the whole keyspace, so it must agree with real time
// across all keys: an operation that starts after another finished sees (reads) or creates
// (writes) a revision at least as new, and every write creates its own revision. This catches
// stale linearizable reads and lost or reordered commits that per-key checks can miss, at
// O(n log n). Serializable reads are allowed to be stale: leave them out.

import {
  effectDeadline,
  formatInterval,
  formatProcess,
  type History,
  type Operation,
  validateHistory,
} from './history.js';
import { AnomalyCollector, type Verdict } from './verdict.js';

export interface RevisionFacts {
  /** For a write: the revision it created. For a read: the header revision it was served at. */
  revision: number;
  /** True when the op changed the keyspace (put, delete, successful txn with writes). */
  mutation: boolean;
}

interface Revisioned {
  op: Operation;
  facts: RevisionFacts;
}

function describe(entry: Revisioned): string {
  const what = entry.facts.mutation ? 'created' : 'read at';
  return `${entry.op.kind} by ${formatProcess(entry.op.process)} at ${formatInterval(entry.op)} ${what} revision ${entry.facts.revision}`;
}

function checkReuse(entries: readonly Revisioned[], anomalies: AnomalyCollector): void {
  const creator = new Map<number, Revisioned>();
  for (const entry of entries) {
    if (!entry.facts.mutation) continue;
    const first = creator.get(entry.facts.revision);
    if (!first) {
      creator.set(entry.facts.revision, entry);
      continue;
    }
    anomalies.add({
      code: 'REVISION_REUSED',
      subject: String(entry.facts.revision),
      opIds: [first.op.id, entry.op.id],
      message: `${describe(entry)}, but ${describe(first)} too`,
    });
  }
}

function checkRealTime(entries: readonly Revisioned[], anomalies: AnomalyCollector): void {
  const byCompletion = [...entries].sort((a, b) => effectDeadline(a.op) - effectDeadline(b.op));
  const byInvocation = [...entries].sort((a, b) => a.op.invokeTime - b.op.invokeTime);
  let next = 0;
  let newest: Revisioned | undefined;
  for (const entry of byInvocation) {
    while (next < byCompletion.length && effectDeadline(byCompletion[next]!.op) < entry.op.invokeTime) {
      const done = byCompletion[next++]!;
      if (!newest || done.facts.revision > newest.facts.revision) newest = done;
    }
    if (!newest) continue;
    const floor = newest.facts.revision;
    const backwards = entry.facts.mutation ? entry.facts.revision <= floor : entry.facts.revision < floor;
    if (!backwards) continue;
    anomalies.add({
      code: 'REVISION_WENT_BACKWARDS',
      opIds: [newest.op.id, entry.op.id],
      message: `${describe(entry)}, after ${describe(newest)} had already finished`,
    });
  }
}

/**
 * revisionOf returns the facts for an ok op, or undefined to leave it out (e.g. serializable
 * reads, or ops that carry no revision). Non-ok ops are always left out.
 */
export function checkRevisions<I, O>(
  history: History<I, O>,
  revisionOf: (op: Operation<I, O>) => RevisionFacts | undefined,
): Verdict {
  validateHistory(history);
  const entries: Revisioned[] = [];
  for (const op of history) {
    if (op.status !== 'ok') continue;
    const facts = revisionOf(op);
    if (facts) entries.push({ op, facts });
  }
  const anomalies = new AnomalyCollector();
  checkReuse(entries, anomalies);
  checkRealTime(entries, anomalies);
  return anomalies.toVerdict(
    'revisions',
    `${entries.length} ops: revisions unique per write and never behind real time.`,
  );
}
