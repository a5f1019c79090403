// Lock workload: clients take one lock through the v3lock service (each with its own short
// lease), write a guarded resource, unlock and revoke. The fencing token is the lock key's
// create revision. The guarded write is a Txn that only applies while the holder's lock key
// still exists with that create revision and the resource holds no newer token, so the
// resource itself refuses stale holders (Chubby's sequencer). checkFencing then checks the
// tokens, mutual exclusion by certainly-held intervals, the resource's accept order, and that
// keys of revoked leases are gone.

import { setTimeout as sleep } from 'node:timers/promises';
import {
  type Anomaly,
  checkFencing,
  combineVerdicts,
  type FencedWriteOp,
  HistoryRecorder,
  type LeaseExpiry,
  type LeaseId,
  type LockHold,
  type Verdict,
} from '../../src/sim/check/index.js';
import { classifyError, revisionOf, type TxnResponse } from './rpc.js';
import { retryIdempotent, type Workload, type WorkloadContext, type WorkloadResult } from './workload.js';

const lockName = '/jepsen/lock';
const resourceKey = '/jepsen/lock-resource';
const leaseTtlSeconds = 2;
const lockTimeoutMs = 3000;
const tokenDigits = 12;
/** Guarded writes per hold. */
const writesPerHold = 2;
/** Share of holds that stall past the lease TTL before their last guarded write. */
const stallProbability = 0.1;
const stallExtraMs = 700;

function padToken(token: number): string {
  return String(token).padStart(tokenDigits, '0');
}

interface Acquired {
  lockKey: Buffer;
  token: number;
  acquireInvokeTime: number;
  acquireCompleteTime: number;
}

export class LockWorkload implements Workload {
  readonly name = 'lock';
  private readonly writes: HistoryRecorder<{ token: number }, number>;
  private readonly keyReads: HistoryRecorder<unknown, { present: boolean; lease?: LeaseId }>;
  private readonly holds: LockHold[] = [];
  /** Certain double-holding seen by a refused guarded write (see judgeRefusal). */
  private readonly usurped: Anomaly[] = [];
  /** Guarded writes refused because the holder's lock key was gone (lease expired): allowed. */
  private refusedLostLock = 0;
  private readonly leaseExpiries: LeaseExpiry[] = [];
  /** Lock attempts (including failed ones), for the summary counts. */
  private readonly attempts: HistoryRecorder<string, string>;

  constructor(private readonly now: () => number) {
    this.writes = new HistoryRecorder(now);
    this.keyReads = new HistoryRecorder(now);
    this.attempts = new HistoryRecorder(now);
  }

  async setup(ctx: WorkloadContext): Promise<void> {
    await retryIdempotent('resource init', 20, () =>
      ctx.rpc.put(ctx.anyEndpoint(), resourceKey, padToken(0), ctx.requestTimeoutMs),
    );
  }

  async runClient(ctx: WorkloadContext, process: number, stop: AbortSignal): Promise<void> {
    const random = ctx.random(process);
    while (!stop.aborted) {
      await this.cycle(ctx, process, random);
      await ctx.pace(process, stop);
    }
  }

  private async cycle(ctx: WorkloadContext, process: number, random: () => number): Promise<void> {
    const endpoint = ctx.endpointFor(process);
    let lease: string;
    try {
      const granted = await ctx.rpc.unary<{ ID: string }>(
        endpoint,
        'etcdserverpb.Lease',
        'LeaseGrant',
        { TTL: String(leaseTtlSeconds), ID: '0' },
        ctx.requestTimeoutMs,
      );
      lease = granted.ID;
    } catch {
      return;
    }
    const acquired = await this.acquire(ctx, process, endpoint, lease);
    if (acquired !== undefined) {
      let heldUntil: number | undefined;
      // Some holders stall past their lease TTL (a GC pause, say) before the last write: by then
      // another client may hold the lock, and the resource must refuse the stale token.
      const stalls = random() < stallProbability;
      for (let i = 0; i < writesPerHold; i++) {
        if (stalls && i === writesPerHold - 1) await sleep(leaseTtlSeconds * 1000 + stallExtraMs);
        const provedAt = await this.guardedWrite(ctx, process, endpoint, acquired);
        if (provedAt !== undefined) heldUntil = provedAt;
      }
      this.holds.push({
        id: this.holds.length + 1,
        holder: process,
        lock: lockName,
        token: acquired.token,
        acquireInvokeTime: acquired.acquireInvokeTime,
        acquireCompleteTime: acquired.acquireCompleteTime,
        ...(heldUntil === undefined ? {} : { heldAtLeastUntil: heldUntil }),
      });
      await ctx.rpc
        .unary(endpoint, 'v3lockpb.Lock', 'Unlock', { key: acquired.lockKey }, ctx.requestTimeoutMs)
        .catch(() => undefined);
    }
    await this.revoke(ctx, process, endpoint, lease, acquired?.lockKey);
  }

  private async acquire(
    ctx: WorkloadContext,
    process: number,
    endpoint: string,
    lease: string,
  ): Promise<Acquired | undefined> {
    const attempt = this.attempts.invoke(process, 'lock', lockName, lease);
    const acquireInvokeTime = this.now();
    let lockKey: Buffer;
    try {
      const locked = await ctx.rpc.unary<{ key: Buffer }>(
        endpoint,
        'v3lockpb.Lock',
        'Lock',
        { name: Buffer.from(lockName), lease },
        lockTimeoutMs,
      );
      lockKey = locked.key;
      attempt.ok(lockKey.toString('utf8'));
    } catch (error) {
      if (classifyError(error) === 'fail') attempt.fail();
      else attempt.unknown();
      return undefined;
    }
    const acquireCompleteTime = this.now();
    try {
      const range = await ctx.rpc.range(endpoint, { key: lockKey }, ctx.requestTimeoutMs);
      const kv = range.kvs[0];
      // The key is gone already (lease expired while we were slow): no token to check against.
      if (kv === undefined) return undefined;
      return { lockKey, token: Number(kv.create_revision), acquireInvokeTime, acquireCompleteTime };
    } catch {
      return undefined; // held, but its token is unknown: nothing to check this hold against
    }
  }

  /** Returns the invocation time when the write applied (which proves the lock key still existed then). */
  private async guardedWrite(
    ctx: WorkloadContext,
    process: number,
    endpoint: string,
    acquired: Acquired,
  ): Promise<number | undefined> {
    const op = this.writes.invoke(process, 'write', resourceKey, { token: acquired.token });
    const invokedAt = this.now();
    try {
      const response = await ctx.rpc.txn(
        endpoint,
        [
          {
            result: 'EQUAL',
            target: 'CREATE',
            key: acquired.lockKey,
            create_revision: String(acquired.token),
          },
          {
            result: 'LESS',
            target: 'VALUE',
            key: Buffer.from(resourceKey),
            value: Buffer.from(padToken(acquired.token + 1)),
          },
        ],
        [{ request_put: { key: Buffer.from(resourceKey), value: Buffer.from(padToken(acquired.token)) } }],
        // On refusal, read both keys in the same snapshot to tell a lost lock from a usurper.
        [{ request_range: { key: acquired.lockKey } }, { request_range: { key: Buffer.from(resourceKey) } }],
        ctx.requestTimeoutMs,
      );
      if (!response.succeeded) {
        op.fail(); // the compare refused it: certainly not applied
        this.judgeRefusal(process, op.id, acquired, response);
        return undefined;
      }
      op.ok(revisionOf(response.header));
      return invokedAt;
    } catch (error) {
      if (classifyError(error) === 'fail') op.fail();
      else op.unknown();
      return undefined;
    }
  }

  /**
   * A refusal read in one snapshot. Our lock key still there with our token while the resource
   * holds a newer token means a later holder was granted the lock while ours was still the
   * lowest key: two owners at once, certain because the Txn is atomic.
   */
  private judgeRefusal(process: number, opId: number, acquired: Acquired, response: TxnResponse): void {
    const lockKv = response.responses[0]?.response_range?.kvs[0];
    const resourceKv = response.responses[1]?.response_range?.kvs[0];
    const stillOurs = lockKv !== undefined && Number(lockKv.create_revision) === acquired.token;
    if (!stillOurs) {
      this.refusedLostLock++;
      return;
    }
    const resourceToken = Number(resourceKv?.value.toString('utf8') ?? '0');
    this.usurped.push({
      code: 'LOCK_MUTUAL_EXCLUSION_VIOLATED',
      subject: lockName,
      opIds: [opId],
      message:
        `lock "${lockName}": client ${process} (token ${acquired.token}) still had its lock key at revision ` +
        `${response.header.revision}, yet the resource already held token ${resourceToken} from a later holder`,
    });
  }

  /** Revokes the lease; once that is acknowledged, a read of the lock key must not find it. */
  private async revoke(
    ctx: WorkloadContext,
    process: number,
    endpoint: string,
    lease: string,
    lockKey: Buffer | undefined,
  ): Promise<void> {
    try {
      await ctx.rpc.unary(endpoint, 'etcdserverpb.Lease', 'LeaseRevoke', { ID: lease }, ctx.requestTimeoutMs);
    } catch {
      return; // the lease expires by itself within its TTL
    }
    this.leaseExpiries.push({ lease, confirmedAt: this.now() });
    if (lockKey === undefined) return;
    const read = this.keyReads.invoke(process, 'read', lockKey.toString('utf8'), undefined);
    try {
      const range = await ctx.rpc.range(endpoint, { key: lockKey }, ctx.requestTimeoutMs);
      const kv = range.kvs[0];
      read.ok(kv === undefined ? { present: false } : { present: true, lease: kv.lease });
    } catch {
      read.unknown();
    }
  }

  async finish(): Promise<void> {}

  check(): WorkloadResult {
    const writes: FencedWriteOp[] = this.writes.history();
    const acceptOrder = writes
      .filter((w) => w.status === 'ok')
      .sort((a, b) => Number(a.output) - Number(b.output))
      .map((w) => w.id);
    const fencing = checkFencing({
      holds: this.holds,
      writes,
      acceptOrder: { [resourceKey]: acceptOrder },
      leaseExpiries: this.leaseExpiries,
      keyReads: this.keyReads.history(),
    });
    const snapshots: Verdict =
      this.usurped.length === 0
        ? { valid: true, anomalies: [], explanation: 'lock snapshots: ok.' }
        : {
            valid: false,
            anomalies: this.usurped,
            explanation: `lock snapshots: INVALID. ${this.usurped.length} refused writes saw two owners at once.`,
          };
    const verdict = combineVerdicts([fencing, snapshots]);
    const accepted = acceptOrder.length;
    const refused = writes.filter((w) => w.status === 'fail').length;
    return {
      verdict,
      operations: [...this.attempts.history(), ...writes],
      notes: `holds=${this.holds.length} fenced-writes-accepted=${accepted} refused=${refused} (lock lost: ${this.refusedLostLock})`,
    };
  }

  dispose(): void {}
}
