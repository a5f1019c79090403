// The coordinator: runs one etcd Txn (or a DeleteRange or lease revoke phrased as one) over the
// shards it touches, as the node that received the request. Pure over injected effects.
//
// Single shard: the fast path, one `single` command at a fresh oracle revision, no lock, no record.
// Several shards: two-phase commit whose decision is replicated in the txn's record on the primary
// shard (the shard of its first key):
//   1. a start revision from the oracle (every lock's commit revision is above it);
//   2. in parallel: `record-begin` on the primary (PENDING) and `prepare` on every shard (lock
//      the part's intervals, evaluate its compares and put checks under the lock); a lock held
//      by another txn is met by wound-wait (below); heartbeats keep the record alive meanwhile;
//   3. the branch from all compare outcomes; a failing check on it aborts with etcd's error;
//   4. the commit revision from the oracle;
//   5. `record-commit` (PENDING → COMMITTED{revision, branch}): the commit point;
//   6. `commit` on every shard in parallel (apply the branch's ops at the revision, release);
//      their piece responses merged into etcd's TxnResponse.
// Before the commit point any failure aborts: `record-abort` first (the decision), then `abort`
// on every shard (release). A crash anywhere leaves locks that resolvers finish from the record.
//
// Wound-wait: priorities order txns by age (lower = older). A prepare that meets the lock of a
// younger txn wounds it (record-abort with reason wound, which aborts it only while PENDING) and
// resolves that lock; one that meets an older txn's lock waits for it (or resolves it once it has
// expired). Waits only go from younger to older, so there is no cycle and no deadlock; a retried
// txn keeps its priority, so it becomes the oldest in time and is no longer wounded.

import { proposeIdempotent, type TxnEffects } from './effects.js';
import { TxnAbortedError, TxnInvariantError, TxnOpFailedError, TxnOutcomeUnknownError } from './errors.js';
import {
  buildTxnResponse,
  chooseBranch,
  collectPieces,
  compareResults,
  planTxn,
  type Router,
  type TxnPlan,
} from './plan.js';
import { resolveLock } from './resolver.js';
import type {
  CompareOutcome,
  LockConflict,
  PartResponse,
  RequestOp,
  ShardId,
  TxnMeta,
  TxnRequest,
  TxnResponse,
} from './types.js';

export interface CoordinatorOptions {
  readonly route: Router;
  /** The locks' and record's TTL (ms); must match the shards' ShardTxnOptions.ttlMs. */
  readonly ttlMs: number;
  /** Heartbeat period of the record (ms), well below the TTL (a third of it is usual). */
  readonly heartbeatMs: number;
  /** Attempts per idempotent proposal whose outcome stays unknown. */
  readonly proposeAttemptsMax: number;
  /** Wait between attempts and between looks at a lock being waited for (ms). */
  readonly backoffMs: number;
  /** Looks at a held lock before giving up and aborting (the txn is then retried by the client). */
  readonly lockWaitsMax: number;
}

/** Who runs the txn: a fresh id per attempt, and a priority kept across the client's retries. */
export interface TxnIdentity {
  readonly id: string;
  readonly priority: number;
}

/** What the coordinator reached, for tests and metrics (the response or error is the result). */
export type CoordinatorStep =
  | 'fast-path'
  | 'start-revision'
  | 'prepared'
  | 'commit-revision'
  | 'committed-record'
  | 'applied'
  | 'aborted';

export async function runTxn(
  effects: TxnEffects,
  options: CoordinatorOptions,
  request: TxnRequest,
  identity: TxnIdentity,
  onStep?: (step: CoordinatorStep) => void,
): Promise<TxnResponse> {
  const plan = planTxn(request, options.route);
  if (plan.shards.length <= 1) {
    onStep?.('fast-path');
    return runSingle(effects, options, plan, identity);
  }
  return new CrossShardTxn(effects, options, plan, identity, onStep).run();
}

/** A DeleteRange over any number of shards: a txn with that one op (etcd's response shape). */
export function deleteRangeAsTxn(
  request: Extract<RequestOp, { type: 'deleteRange' }>['request'],
): TxnRequest {
  return { compare: [], success: [{ type: 'deleteRange', request }], failure: [] };
}

/** A lease's revoke or expiry: its attached keys, wherever they live, deleted at one revision. */
export function leaseRevokeAsTxn(keys: readonly Uint8Array[]): TxnRequest {
  return {
    compare: [],
    success: keys.map((key) => ({ type: 'deleteRange', request: { key } })),
    failure: [],
  };
}

async function runSingle(
  effects: TxnEffects,
  options: CoordinatorOptions,
  plan: TxnPlan,
  identity: TxnIdentity,
): Promise<TxnResponse> {
  const shard = plan.shards[0];
  if (shard === undefined) {
    // No key at all (no compare, no op with a non-empty range): nothing to lock or apply.
    const revision = await revisionOrAbort(effects);
    return buildTxnResponse(plan, compareResults(plan, []), new Map(), revision);
  }
  let waits = 0;
  for (;;) {
    const revision = await revisionOrAbort(effects);
    let result: Awaited<ReturnType<TxnEffects['propose']>>;
    try {
      // Not idempotent: an unknown outcome is the client's to handle, as in etcd.
      result = await effects.propose(shard, {
        type: 'single',
        request: plan.request,
        revision,
        nowMs: effects.nowMs(),
      });
    } catch {
      throw new TxnOutcomeUnknownError(identity.id);
    }
    if (result.type !== 'single')
      throw new Error(`shard ${shard} answered ${result.type} to a single command`);
    switch (result.status) {
      case 'applied':
        return result.response;
      case 'failed':
        throw new TxnOpFailedError(result.failure.code, result.failure.message);
      case 'stale-revision':
        continue;
      case 'conflict':
        if (++waits > options.lockWaitsMax) throw new TxnAbortedError('a lock stayed held');
        await meetLock(effects, options, shard, result.conflict, undefined);
        continue;
    }
  }
}

/** A revision from the oracle; an oracle that does not answer aborts the txn (nothing is applied yet). */
async function revisionOrAbort(effects: TxnEffects): Promise<number> {
  try {
    return await effects.nextRevision();
  } catch (error) {
    throw new TxnAbortedError(`no revision from the oracle: ${(error as Error).message}`);
  }
}

/** Resolves an expired lock, wounds a younger holder (if `self` is given), or waits a backoff. */
async function meetLock(
  effects: TxnEffects,
  options: CoordinatorOptions,
  shard: ShardId,
  conflict: LockConflict,
  self: TxnMeta | undefined,
): Promise<void> {
  const resolver = { attemptsMax: options.proposeAttemptsMax, backoffMs: options.backoffMs };
  if (self && self.priority < conflict.holder.priority) {
    const r = await resolveLock(
      effects,
      shard,
      conflict.holder,
      { kind: 'wound', byPriority: self.priority },
      resolver,
    );
    if (r.outcome !== 'pending') return;
  } else if (conflict.expired) {
    const r = await resolveLock(effects, shard, conflict.holder, { kind: 'expired' }, resolver);
    if (r.outcome !== 'pending') return;
  }
  await effects.sleep(options.backoffMs);
}

class CrossShardTxn {
  private meta!: TxnMeta;
  /** Set once the txn is known to be aborting (wounded, refused, a failed check): loops stop. */
  private aborting: Error | undefined;
  private heartbeating = false;

  constructor(
    private readonly effects: TxnEffects,
    private readonly options: CoordinatorOptions,
    private readonly plan: TxnPlan,
    private readonly identity: TxnIdentity,
    private readonly onStep: ((step: CoordinatorStep) => void) | undefined,
  ) {}

  private propose<T extends Parameters<typeof proposeIdempotent>[2]>(
    shard: ShardId,
    type: T,
    make: Parameters<typeof proposeIdempotent>[3],
  ) {
    return proposeIdempotent(
      this.effects,
      shard,
      type,
      make,
      this.options.proposeAttemptsMax,
      this.options.backoffMs,
    );
  }

  async run(): Promise<TxnResponse> {
    try {
      return await this.runSteps();
    } finally {
      // Whatever ends the run, the record stops being kept alive: resolvers take over.
      this.heartbeating = false;
    }
  }

  private async runSteps(): Promise<TxnResponse> {
    const startRevision = await revisionOrAbort(this.effects);
    this.meta = {
      id: this.identity.id,
      priority: this.identity.priority,
      primary: this.plan.shards[0]!,
      startRevision,
      startedAtMs: this.effects.nowMs(),
    };
    this.onStep?.('start-revision');
    let outcomes: CompareOutcome[];
    try {
      outcomes = await this.prepareAll();
    } catch (error) {
      return this.abort(error);
    }
    this.onStep?.('prepared');
    const results = compareResults(this.plan, outcomes);
    const branch = chooseBranch(this.plan, results);
    const failure = this.failures.find((f) => branch.executed.includes(f.id));
    if (failure) return this.abort(new TxnOpFailedError(failure.code, failure.message));

    let revision: number;
    try {
      revision = await revisionOrAbort(this.effects);
    } catch (error) {
      return this.abort(error);
    }
    this.onStep?.('commit-revision');
    // etcd's checkTxn refuses a Range at a revision above the one the txn runs at.
    const future = branch.executed.some((id) => {
      const op = this.plan.ops[id]!;
      return op.type === 'range' && (op.request.revision ?? 0) > revision;
    });
    if (future)
      return this.abort(
        new TxnOpFailedError('future-revision', 'mvcc: required revision is a future revision'),
      );
    let decision: Awaited<ReturnType<typeof proposeIdempotent<'record'>>>;
    try {
      decision = await this.propose(this.meta.primary, 'record', (nowMs) => ({
        type: 'record-commit',
        txnId: this.meta.id,
        revision,
        executed: branch.executed,
        nowMs,
      }));
    } catch {
      this.heartbeating = false;
      throw new TxnOutcomeUnknownError(this.meta.id);
    }
    this.heartbeating = false;
    if (decision.status !== 'committed')
      return this.abort(new TxnAbortedError(`record is ${decision.status}`));
    if (decision.revision !== revision)
      throw new Error(`record of ${this.meta.id} committed at another revision`);
    this.onStep?.('committed-record');

    const byShard = new Map<ShardId, readonly PartResponse[]>();
    try {
      await Promise.all(
        this.plan.shards.map(async (shard) => {
          const r = await this.propose(shard, 'commit', (nowMs) => ({
            type: 'commit',
            meta: this.meta,
            revision,
            executed: branch.executed,
            nowMs,
          }));
          byShard.set(shard, r.responses);
        }),
      );
    } catch {
      // Committed; a shard that did not answer is rolled forward by whoever meets its lock.
      throw new TxnOutcomeUnknownError(this.meta.id);
    }
    this.onStep?.('applied');
    // Every participant applied the commit: the record may go once the retention has passed.
    this.propose(this.meta.primary, 'record', (nowMs) => ({
      type: 'record-forget',
      txnId: this.meta.id,
      nowMs,
    })).catch(() => {
      // Kept until the retention's end regardless; a leftover committed record is only garbage.
    });
    return buildTxnResponse(this.plan, results, collectPieces(this.plan, byShard), revision);
  }

  private failures: { id: number; code: string; message: string }[] = [];

  /** record-begin and every prepare in parallel; all settle before this returns or throws. */
  private async prepareAll(): Promise<CompareOutcome[]> {
    this.heartbeating = true;
    void this.heartbeat();
    const outcomes: CompareOutcome[] = [];
    const tasks = [
      this.beginRecord(),
      ...this.plan.shards.map(async (shard) => {
        const prepared = await this.prepare(shard);
        outcomes.push(...prepared.compares);
        this.failures.push(...prepared.failures);
      }),
    ].map((task) =>
      task.catch((error: Error) => {
        this.aborting ??= error;
      }),
    );
    await Promise.all(tasks);
    if (this.aborting) throw this.aborting;
    return outcomes;
  }

  private async beginRecord(): Promise<void> {
    const r = await this.propose(this.meta.primary, 'record', (nowMs) => ({
      type: 'record-begin',
      meta: this.meta,
      nowMs,
    }));
    if (r.status !== 'pending')
      throw new TxnAbortedError(
        `record-begin found the record ${r.status === 'refused' ? r.reason : r.status}`,
      );
  }

  private async prepare(shard: ShardId) {
    const part = this.plan.parts.get(shard)!;
    let waits = 0;
    for (;;) {
      if (this.aborting) throw this.aborting;
      const r = await this.propose(shard, 'prepare', (nowMs) => ({
        type: 'prepare',
        meta: this.meta,
        part,
        nowMs,
      }));
      switch (r.status) {
        case 'prepared':
          return r;
        case 'refused':
          throw new TxnAbortedError(`shard ${shard} refused the prepare: ${r.reason}`);
        case 'conflict':
          if (++waits > this.options.lockWaitsMax)
            throw new TxnAbortedError(`a lock on shard ${shard} stayed held`);
          await meetLock(this.effects, this.options, shard, r.conflict, this.meta);
      }
    }
  }

  private async heartbeat(): Promise<void> {
    while (this.heartbeating) {
      await this.effects.sleep(this.options.heartbeatMs);
      if (!this.heartbeating) return;
      try {
        const r = await this.effects.propose(this.meta.primary, {
          type: 'record-heartbeat',
          txnId: this.meta.id,
          nowMs: this.effects.nowMs(),
        });
        if (r.type === 'record' && r.status === 'aborted')
          this.aborting ??= new TxnAbortedError('wounded or expired');
      } catch {
        // The next beat tries again; a record that misses beats past its TTL may be aborted, which is safe.
      }
    }
  }

  /** Before the commit point: decide ABORTED on the record, then release every shard; rethrow. */
  private async abort(error: unknown): Promise<never> {
    this.heartbeating = false;
    this.onStep?.('aborted');
    // No record-commit was proposed (or it found the record ABORTED), so the txn can never
    // commit: whatever went wrong, the client learns that nothing was applied.
    const cause =
      error instanceof TxnAbortedError || error instanceof TxnOpFailedError
        ? error
        : new TxnAbortedError(error instanceof Error ? error.message : String(error));
    let decided: Awaited<ReturnType<typeof proposeIdempotent<'record'>>>;
    try {
      decided = await this.propose(this.meta.primary, 'record', (nowMs) => ({
        type: 'record-abort',
        meta: this.meta,
        reason: { kind: 'coordinator' },
        nowMs,
      }));
    } catch {
      // The record stays PENDING until it expires; resolvers abort it then.
      throw cause;
    }
    if (decided.status === 'committed') {
      throw new TxnInvariantError(`record of ${this.meta.id} is committed while its coordinator aborts`);
    }
    await Promise.all(
      this.plan.shards.map((shard) =>
        this.propose(shard, 'abort', (nowMs) => ({ type: 'abort', meta: this.meta, nowMs })).catch(() => {
          // A lock left behind is resolved from the ABORTED record by whoever meets it.
        }),
      ),
    );
    throw cause;
  }
}
