// Lock and lease checker. A lock is held by whoever owns the lowest-revision key under the lock
// prefix; that key's revision is the fencing token (Chubby's sequencer). Since a holder can lose
// the lock without knowing it (lease expired while it was paused), real-time overlap of holds
// is expected; safety comes from the resource refusing writes with an older token. The rules:
//   - tokens of successive holders strictly increase (and no token is handed out twice);
//   - no two holders are certainly holding the lock at the same instant;
//   - the guarded resource never accepts a write whose token is lower than one it already
//     accepted;
//   - once a lease is known to be gone, no read sees a key still attached to it.

import {
  effectDeadline,
  formatInterval,
  formatProcess,
  type History,
  HistoryFormatError,
  type Operation,
  type ProcessId,
  validateHistory,
} from './history.js';
import { AnomalyCollector, type Verdict } from './verdict.js';

export type LeaseId = number | string;

/** One successful lock acquisition. */
export interface LockHold {
  id: number;
  holder: ProcessId;
  lock: string;
  token: number;
  acquireInvokeTime: number;
  acquireCompleteTime: number;
  /**
   * The latest time the holder certainly still held the lock: the invocation time of its last
   * successful keep-alive or of its successful unlock (the server acted at some moment after
   * that). Defaults to acquireCompleteTime.
   */
  heldAtLeastUntil?: number;
}

/** A write to the guarded resource: key is the resource, input carries the token presented. */
export type FencedWriteOp = Operation<{ token: number }, unknown>;

/** A read of a lease-attached key: output says whether it was present and with which lease. */
export type LeaseKeyReadOp = Operation<unknown, { present: boolean; lease?: LeaseId }>;

export interface LeaseExpiry {
  lease: LeaseId;
  /** When the lease was known gone: a revoke acknowledged, or TimeToLive answered "expired". */
  confirmedAt: number;
}

export interface FencingHistory {
  holds: readonly LockHold[];
  writes?: History<{ token: number }, unknown>;
  /**
   * Per resource, the ids of accepted writes in the order the resource applied them, when the
   * resource logs it. Without it, only real-time order between accepted writes is used.
   */
  acceptOrder?: Readonly<Record<string, readonly number[]>>;
  leaseExpiries?: readonly LeaseExpiry[];
  keyReads?: History<unknown, { present: boolean; lease?: LeaseId }>;
}

function describeHold(hold: LockHold): string {
  return `${formatProcess(hold.holder)} (token ${hold.token}, acquired [${hold.acquireInvokeTime}, ${hold.acquireCompleteTime}])`;
}

function validateHold(hold: LockHold): void {
  const until = hold.heldAtLeastUntil ?? hold.acquireCompleteTime;
  if (!(hold.acquireInvokeTime <= hold.acquireCompleteTime && hold.acquireCompleteTime <= until)) {
    throw new HistoryFormatError(
      'HISTORY_BAD_TIME',
      'need acquireInvokeTime <= acquireCompleteTime <= heldAtLeastUntil',
      hold.id,
    );
  }
}

function groupBy<T>(items: readonly T[], keyOf: (item: T) => string): Map<string, T[]> {
  const groups = new Map<string, T[]>();
  for (const item of items) {
    const key = keyOf(item);
    const group = groups.get(key);
    if (group) group.push(item);
    else groups.set(key, [item]);
  }
  return groups;
}

/** A hold acquired after another was granted must carry a larger token; no token twice. */
function checkTokenOrder(lock: string, holds: readonly LockHold[], anomalies: AnomalyCollector): void {
  const byToken = new Map<number, LockHold>();
  for (const hold of holds) {
    const twin = byToken.get(hold.token);
    if (twin) {
      anomalies.add({
        code: 'FENCING_DUPLICATE_TOKEN',
        subject: lock,
        opIds: [twin.id, hold.id],
        message: `lock "${lock}": token ${hold.token} granted to both ${describeHold(twin)} and ${describeHold(hold)}`,
      });
    } else {
      byToken.set(hold.token, hold);
    }
  }
  const byCompletion = [...holds].sort((a, b) => a.acquireCompleteTime - b.acquireCompleteTime);
  const byInvocation = [...holds].sort((a, b) => a.acquireInvokeTime - b.acquireInvokeTime);
  let next = 0;
  let highest: LockHold | undefined;
  for (const hold of byInvocation) {
    while (next < byCompletion.length && byCompletion[next]!.acquireCompleteTime < hold.acquireInvokeTime) {
      const earlier = byCompletion[next++]!;
      if (!highest || earlier.token > highest.token) highest = earlier;
    }
    if (highest && hold.token < highest.token) {
      anomalies.add({
        code: 'FENCING_TOKEN_REGRESSION',
        subject: lock,
        opIds: [highest.id, hold.id],
        message: `lock "${lock}": ${describeHold(hold)} got a token below that of the earlier holder ${describeHold(highest)}`,
      });
    }
  }
}

/** Two holds whose certainly-held intervals overlap mean two owners at once. */
function checkMutualExclusion(lock: string, holds: readonly LockHold[], anomalies: AnomalyCollector): void {
  const sorted = [...holds].sort((a, b) => a.acquireCompleteTime - b.acquireCompleteTime);
  let longest: LockHold | undefined;
  for (const hold of sorted) {
    const until = (h: LockHold): number => h.heldAtLeastUntil ?? h.acquireCompleteTime;
    if (longest && hold.acquireCompleteTime < until(longest)) {
      anomalies.add({
        code: 'LOCK_MUTUAL_EXCLUSION_VIOLATED',
        subject: lock,
        opIds: [longest.id, hold.id],
        message:
          `lock "${lock}": ${describeHold(hold)} held it from ${hold.acquireCompleteTime} while ` +
          `${describeHold(longest)} certainly still held it until ${until(longest)}`,
      });
    }
    if (!longest || until(hold) > until(longest)) longest = hold;
  }
}

function tokenOf(op: FencedWriteOp): number {
  if (typeof op.input?.token !== 'number') {
    throw new HistoryFormatError(
      'HISTORY_BAD_OPERATION',
      'fenced write input must be {token: number}',
      op.id,
    );
  }
  return op.input.token;
}

function staleWrite(
  resource: string,
  write: FencedWriteOp,
  newer: FencedWriteOp,
  how: string,
): Parameters<AnomalyCollector['add']>[0] {
  return {
    code: 'FENCING_STALE_WRITE_ACCEPTED',
    subject: resource,
    opIds: [newer.id, write.id],
    message:
      `resource "${resource}": write by ${formatProcess(write.process)} with token ${tokenOf(write)} at ${formatInterval(write)} ` +
      `was accepted ${how} write by ${formatProcess(newer.process)} with token ${tokenOf(newer)} at ${formatInterval(newer)}`,
  };
}

/** Accepted writes in the resource's own order must never go back to an older token. */
function checkAcceptOrder(
  resource: string,
  order: readonly number[],
  writes: readonly FencedWriteOp[],
  anomalies: AnomalyCollector,
): void {
  const byId = new Map(writes.map((w) => [w.id, w]));
  let highest: FencedWriteOp | undefined;
  for (const id of order) {
    const write = byId.get(id);
    if (!write)
      throw new HistoryFormatError('HISTORY_BAD_OPERATION', `acceptOrder names unknown write ${id}`, id);
    if (highest && tokenOf(write) < tokenOf(highest))
      anomalies.add(staleWrite(resource, write, highest, 'after the'));
    if (!highest || tokenOf(write) > tokenOf(highest)) highest = write;
  }
}

/** Without the resource's log: an accepted write must not carry a lower token than one accepted before it began. */
function checkRealTimeOrder(
  resource: string,
  writes: readonly FencedWriteOp[],
  anomalies: AnomalyCollector,
): void {
  const accepted = writes.filter((w) => w.status === 'ok');
  const byCompletion = [...accepted].sort((a, b) => effectDeadline(a) - effectDeadline(b));
  const byInvocation = [...accepted].sort((a, b) => a.invokeTime - b.invokeTime);
  let next = 0;
  let highest: FencedWriteOp | undefined;
  for (const write of byInvocation) {
    while (next < byCompletion.length && effectDeadline(byCompletion[next]!) < write.invokeTime) {
      const earlier = byCompletion[next++]!;
      if (!highest || tokenOf(earlier) > tokenOf(highest)) highest = earlier;
    }
    if (highest && tokenOf(write) < tokenOf(highest))
      anomalies.add(staleWrite(resource, write, highest, 'after the completed'));
  }
}

function checkLeaseKeys(history: FencingHistory, anomalies: AnomalyCollector): void {
  const goneAt = new Map<LeaseId, number>();
  for (const expiry of history.leaseExpiries ?? []) {
    goneAt.set(
      expiry.lease,
      Math.min(expiry.confirmedAt, goneAt.get(expiry.lease) ?? Number.POSITIVE_INFINITY),
    );
  }
  for (const read of history.keyReads ?? []) {
    if (read.status !== 'ok' || !read.output?.present || read.output.lease === undefined) continue;
    const confirmedAt = goneAt.get(read.output.lease);
    if (confirmedAt === undefined || read.invokeTime <= confirmedAt) continue;
    anomalies.add({
      code: 'LEASE_KEY_SURVIVED_EXPIRY',
      subject: read.key,
      opIds: [read.id],
      message:
        `read of "${read.key}" by ${formatProcess(read.process)} at ${formatInterval(read)} found it still attached to ` +
        `lease ${String(read.output.lease)}, which was known gone at ${confirmedAt}`,
    });
  }
}

export function checkFencing(history: FencingHistory): Verdict {
  const anomalies = new AnomalyCollector();
  history.holds.forEach(validateHold);
  validateHistory(history.writes ?? []);
  validateHistory(history.keyReads ?? []);
  for (const [lock, holds] of groupBy(history.holds, (h) => h.lock)) {
    checkTokenOrder(lock, holds, anomalies);
    checkMutualExclusion(lock, holds, anomalies);
  }
  const writes = history.writes ?? [];
  for (const [resource, resourceWrites] of groupBy(writes, (w) => w.key)) {
    const order = history.acceptOrder?.[resource];
    if (order) checkAcceptOrder(resource, order, resourceWrites, anomalies);
    else checkRealTimeOrder(resource, resourceWrites, anomalies);
  }
  checkLeaseKeys(history, anomalies);
  return anomalies.toVerdict(
    'fencing',
    `${history.holds.length} lock holds with increasing tokens, ${writes.length} fenced writes never went back to an older token.`,
  );
}
