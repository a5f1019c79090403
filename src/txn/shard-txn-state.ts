// The transaction side of one shard's replicated state machine: the lock table (participant),
// the transaction records this shard is primary for, the outcomes of txns finished here, the
// single-shard fast path, and the shard's replicated clock. Every replica applies the same
// commands in log order and reaches the same state: nothing here reads a clock or a random
// source; time comes in as each command's `nowMs`, stamped by its proposer.
//
// Time. The replicated clock is the largest `nowMs` of any command applied so far, so it never
// goes back and every replica agrees on it. TTLs are judged against it: a lock is "expired" when
// the shard's clock passes its prepare time + TTL, a record when the record shard's clock passes
// its last heartbeat + TTL. Expiry never decides an outcome by itself: it only permits a
// compare-and-set of the record from PENDING to ABORTED, and the coordinator's commit is a
// compare-and-set from PENDING to COMMITTED on the same record, so exactly one of them wins. A
// coordinator that is alive but slow (or a proposer whose clock runs ahead) can therefore only
// lose its txn to an abort, never commit half of it. Clock skew moves abort rates, not safety.

import { TxnInvariantError } from './errors.js';
import { type LockEntry, LockTable } from './lock-table.js';
import { buildTxnResponse, chooseBranch, compareResults, planTxn, singleShardRouter } from './plan.js';
import type {
  AbortReason,
  Compare,
  CompareOutcome,
  KeyInterval,
  LeafOp,
  LeafResponse,
  LockConflict,
  LockInterval,
  OpCheckFailure,
  PartOp,
  PartResponse,
  PrepareResult,
  PutRequest,
  RecordResult,
  Revision,
  ShardId,
  ShardTxnCommand,
  ShardTxnResult,
  SingleResult,
  TxnId,
  TxnMeta,
  TxnPart,
  TxnRecord,
  TxnRequest,
} from './types.js';

/** What the transaction layer needs from the shard's MVCC keyspace (mvcc's Keyspace on a server, a model in tests). */
export interface TxnKeyspace {
  /** A compare over the keys of its range on this shard: how many live keys it has and whether all of them hold. */
  evaluateCompare(compare: Compare): { keys: number; holds: boolean };
  /** etcd's checkTxnPut against the current state: a put with ignore_value/ignore_lease on a missing key, a missing lease. */
  checkPut(request: PutRequest): { code: string; message: string } | undefined;
  /**
   * Runs the ops in order, every write at `revision` (sub-revisions in op order), ranges at the
   * state after the earlier ops. `revision` may be below revisions already applied to other keys
   * of this shard: the locks kept the keys this txn touches unchanged since prepare.
   */
  applyOps(ops: readonly LeafOp[], revision: Revision): LeafResponse[];
}

export interface ShardTxnOptions {
  readonly shardId: ShardId;
  /** A lock's and a record's time to live without a heartbeat, in ms of the replicated clock. */
  readonly ttlMs: number;
  /**
   * How long decided outcomes and records are kept (ms). A prepare or record-begin of a txn that
   * began longer ago than this is refused, so a late message never finds its outcome forgotten.
   */
  readonly retainMs: number;
}

export interface Finished {
  readonly outcome: 'committed' | 'aborted';
  readonly atMs: number;
  readonly startedAtMs: number;
  /** The commit's piece responses, repeated to a re-driven commit. */
  readonly responses: readonly PartResponse[];
}

/** The plain-data image of the state (for snapshots and for comparing replicas). */
export interface ShardTxnSnapshot {
  readonly clockMs: number;
  readonly lastRevision: Revision;
  readonly locks: readonly { meta: TxnMeta; part: TxnPart; expiresAtMs: number }[];
  readonly finished: readonly { id: TxnId; outcome: string; atMs: number }[];
  readonly records: readonly TxnRecord[];
}

/**
 * The whole state, for a snapshot: everything `apply` reads, each list in the order that matters
 * (locks in acquisition order, which `conflict` reports first; outcomes and decided records in
 * decision order, which the retention drops oldest first). `ShardTxnState.restore` of an export
 * behaves exactly as the state it was exported from.
 */
export interface ShardTxnImage {
  readonly clockMs: number;
  readonly lastRevision: Revision;
  readonly locks: readonly LockEntry[];
  readonly finished: readonly ({ readonly id: TxnId } & Finished)[];
  readonly pendingRecords: readonly TxnRecord[];
  readonly decidedRecords: readonly TxnRecord[];
}

export class ShardTxnState {
  readonly locks = new LockTable();
  private readonly finished = new Map<TxnId, Finished>();
  private readonly pendingRecords = new Map<TxnId, TxnRecord>();
  /** Decided records in decision order, so the oldest are dropped first. */
  private readonly decidedRecords = new Map<TxnId, TxnRecord>();
  private clock = 0;
  private last: Revision = 0;

  constructor(
    protected readonly keyspace: TxnKeyspace,
    readonly options: ShardTxnOptions,
  ) {}

  get clockMs(): number {
    return this.clock;
  }

  /** The highest revision this shard applied a write or a commit at. */
  get lastRevision(): Revision {
    return this.last;
  }

  apply(cmd: ShardTxnCommand): ShardTxnResult {
    this.clock = Math.max(this.clock, cmd.nowMs);
    this.dropExpiredOutcomes();
    switch (cmd.type) {
      case 'prepare':
        return { type: 'prepare', ...this.prepare(cmd.meta, cmd.part) };
      case 'commit':
        return {
          type: 'commit',
          status: 'committed',
          responses: this.commit(cmd.meta, cmd.revision, cmd.executed),
        };
      case 'abort':
        this.abort(cmd.meta);
        return { type: 'abort', status: 'aborted' };
      case 'record-begin':
        return { type: 'record', ...this.recordBegin(cmd.meta) };
      case 'record-heartbeat':
        return { type: 'record', ...this.recordHeartbeat(cmd.txnId) };
      case 'record-commit':
        return { type: 'record', ...this.recordCommit(cmd.txnId, cmd.revision, cmd.executed) };
      case 'record-forget':
        return { type: 'record', ...this.recordForget(cmd.txnId) };
      case 'record-abort':
        return { type: 'record', ...this.recordAbort(cmd.meta, cmd.reason) };
      case 'single':
        return { type: 'single', ...this.single(cmd.request, cmd.revision) };
    }
  }

  // --- participant -------------------------------------------------------------------------

  private tooOld(meta: TxnMeta): boolean {
    return meta.startedAtMs + this.options.retainMs < this.clock;
  }

  private prepare(meta: TxnMeta, part: TxnPart): PrepareResult {
    const done = this.finished.get(meta.id);
    if (done) return { status: 'refused', reason: done.outcome };
    const held = this.locks.get(meta.id);
    if (held) return held.prepared;
    if (this.tooOld(meta)) return { status: 'refused', reason: 'too-old' };
    const conflict = this.conflictFor(part.locks, meta.id);
    if (conflict) return { status: 'conflict', conflict };
    const compares: CompareOutcome[] = part.compares.map(({ id, compare }) => ({
      id,
      ...this.keyspace.evaluateCompare(compare),
    }));
    const failures = this.checkOps(part.ops);
    const prepared = { status: 'prepared', compares, failures } as const;
    this.locks.add({ meta, part, expiresAtMs: this.clock + this.options.ttlMs, prepared });
    return prepared;
  }

  /** A lock of another txn over any of the intervals (overridable so tests can plant faults). */
  protected conflictFor(
    intervals: readonly LockInterval[],
    self: TxnId | undefined,
  ): LockConflict | undefined {
    return this.locks.conflict(intervals, self, this.clock);
  }

  private checkOps(ops: readonly PartOp[]): OpCheckFailure[] {
    const failures: OpCheckFailure[] = [];
    for (const { id, op } of ops) {
      if (op.type !== 'put') continue;
      const failure = this.keyspace.checkPut(op.request);
      if (failure) failures.push({ id, ...failure });
    }
    return failures;
  }

  private commit(meta: TxnMeta, revision: Revision, executed: readonly number[]): readonly PartResponse[] {
    const txnId = meta.id;
    const done = this.finished.get(txnId);
    if (done?.outcome === 'committed') return done.responses;
    if (done)
      throw new TxnInvariantError(
        `shard ${this.options.shardId}: commit of ${txnId}, which was aborted here`,
      );
    const lock = this.locks.get(txnId);
    if (!lock) {
      // Past the retention the outcome may have been forgotten after it was applied; a commit is
      // only ever sent after every prepare succeeded, so within it a missing lock is a bug.
      if (this.tooOld(meta)) return [];
      throw new TxnInvariantError(`shard ${this.options.shardId}: commit of ${txnId}, never prepared here`);
    }
    if (revision <= lock.meta.startRevision) {
      throw new TxnInvariantError(
        `${txnId} commits at ${revision}, not above its start revision ${lock.meta.startRevision}`,
      );
    }
    const chosen = new Set(executed);
    const ops = lock.part.ops.filter((o) => chosen.has(o.id));
    const results = this.keyspace.applyOps(
      ops.map((o) => o.op),
      revision,
    );
    const responses = ops.map((o, i) => ({ id: o.id, response: results[i]! }));
    this.last = Math.max(this.last, revision);
    this.locks.delete(txnId);
    this.finished.set(txnId, {
      outcome: 'committed',
      atMs: this.clock,
      startedAtMs: lock.meta.startedAtMs,
      responses,
    });
    return responses;
  }

  private abort(meta: TxnMeta): void {
    const txnId = meta.id;
    const done = this.finished.get(txnId);
    if (done?.outcome === 'committed') {
      throw new TxnInvariantError(`shard ${this.options.shardId}: abort of ${txnId}, which committed here`);
    }
    if (done) return;
    this.locks.delete(txnId);
    this.finished.set(txnId, {
      outcome: 'aborted',
      atMs: this.clock,
      startedAtMs: meta.startedAtMs,
      responses: [],
    });
  }

  // --- transaction records (on the txn's primary shard) --------------------------------------

  private record(txnId: TxnId): TxnRecord | undefined {
    return this.pendingRecords.get(txnId) ?? this.decidedRecords.get(txnId);
  }

  private recordResult(record: TxnRecord): RecordResult {
    const state = record.state;
    switch (state.status) {
      case 'pending':
        return { status: 'pending', expiresAtMs: state.heartbeatAtMs + this.options.ttlMs };
      case 'committed':
        return { status: 'committed', revision: state.revision, executed: state.executed };
      case 'aborted':
        return { status: 'aborted' };
    }
  }

  private decide(meta: TxnMeta, state: TxnRecord['state']): TxnRecord {
    const record: TxnRecord = { meta, state, touchedAtMs: this.clock };
    this.pendingRecords.delete(meta.id);
    this.decidedRecords.set(meta.id, record);
    return record;
  }

  private recordBegin(meta: TxnMeta): RecordResult {
    const existing = this.record(meta.id);
    if (existing?.state.status === 'pending') return this.recordHeartbeat(meta.id);
    if (existing) return this.recordResult(existing);
    if (this.tooOld(meta)) return { status: 'refused', reason: 'too-old' };
    const record: TxnRecord = {
      meta,
      state: { status: 'pending', heartbeatAtMs: this.clock },
      touchedAtMs: this.clock,
    };
    this.pendingRecords.set(meta.id, record);
    return this.recordResult(record);
  }

  private recordHeartbeat(txnId: TxnId): RecordResult {
    const existing = this.record(txnId);
    if (!existing) return { status: 'refused', reason: 'no-record' };
    if (existing.state.status !== 'pending') return this.recordResult(existing);
    const record: TxnRecord = {
      ...existing,
      state: { status: 'pending', heartbeatAtMs: this.clock },
      touchedAtMs: this.clock,
    };
    this.pendingRecords.set(txnId, record);
    return this.recordResult(record);
  }

  /** The commit point: PENDING → COMMITTED, once. */
  private recordCommit(txnId: TxnId, revision: Revision, executed: readonly number[]): RecordResult {
    const existing = this.record(txnId);
    if (!existing) return { status: 'refused', reason: 'no-record' };
    if (existing.state.status !== 'pending') return this.recordResult(existing);
    return this.recordResult(
      this.decide(existing.meta, { status: 'committed', revision, executed: [...executed] }),
    );
  }

  /**
   * Marks a COMMITTED record as droppable after the retention. Until then it still answers
   * late or duplicated record commands; a missing record would read as "abort".
   */
  private recordForget(txnId: TxnId): RecordResult {
    const existing = this.decidedRecords.get(txnId);
    if (!existing) return { status: 'refused', reason: 'no-record' };
    if (existing.state.status === 'committed' && !existing.forgotten) {
      this.decidedRecords.set(txnId, { ...existing, forgotten: true, touchedAtMs: this.clock });
    }
    return this.recordResult(existing);
  }

  /** Whether a pending record's heartbeat is older than the TTL (overridable so tests can plant faults). */
  protected recordExpired(record: TxnRecord): boolean {
    return record.state.status === 'pending' && record.state.heartbeatAtMs + this.options.ttlMs <= this.clock;
  }

  /** PENDING → ABORTED when the reason allows it; no record → ABORTED, so a late record-begin finds the txn aborted. */
  private recordAbort(meta: TxnMeta, reason: AbortReason): RecordResult {
    const existing = this.record(meta.id);
    if (!existing) return this.recordResult(this.decide(meta, { status: 'aborted' }));
    if (existing.state.status !== 'pending') return this.recordResult(existing);
    const allowed =
      reason.kind === 'coordinator' ||
      (reason.kind === 'expired' && this.recordExpired(existing)) ||
      (reason.kind === 'wound' && reason.byPriority < existing.meta.priority);
    if (!allowed) return this.recordResult(existing);
    return this.recordResult(this.decide(existing.meta, { status: 'aborted' }));
  }

  // --- single-shard fast path ------------------------------------------------------------------

  /**
   * A txn whose keys are all on this shard: one command, no lock, no record. It must not touch a
   * locked interval (the holder may commit below this revision), and its revision must be above
   * every revision this shard applied (a commit may have been applied at a revision above the one
   * this command was stamped with).
   */
  private single(request: TxnRequest, revision: Revision): SingleResult {
    const plan = planTxn(request, singleShardRouter(this.options.shardId));
    const part = plan.parts.get(this.options.shardId) ?? { compares: [], ops: [], locks: [] };
    const conflict = this.conflictFor(part.locks, undefined);
    if (conflict) return { status: 'conflict', conflict };
    if (revision <= this.last) return { status: 'stale-revision', lastRevision: this.last };
    const outcomes = part.compares.map(({ id, compare }) => ({
      id,
      ...this.keyspace.evaluateCompare(compare),
    }));
    const results = compareResults(plan, outcomes);
    const branch = chooseBranch(plan, results);
    const chosen = new Set(branch.executed);
    const failure = this.checkOps(part.ops.filter((o) => chosen.has(o.id)))[0];
    if (failure) return { status: 'failed', failure };
    const ops = part.ops.filter((o) => chosen.has(o.id));
    const applied = this.keyspace.applyOps(
      ops.map((o) => o.op),
      revision,
    );
    this.last = revision;
    const pieces = new Map<number, LeafResponse[]>(ops.map((o, i) => [o.id, [applied[i]!]]));
    return { status: 'applied', response: buildTxnResponse(plan, results, pieces, revision) };
  }

  // --- queries (not commands: a leader answers them from its applied state) ---------------------

  /** Locks whose TTL has passed by `nowMs` (or the replicated clock, if later): candidates for resolution. */
  expiredLocks(nowMs: number): TxnMeta[] {
    const at = Math.max(nowMs, this.clock);
    return [...this.locks.entries()].filter((l) => l.expiresAtMs <= at).map((l) => l.meta);
  }

  /** The PENDING records this shard holds. */
  pendingRecordList(): TxnRecord[] {
    return [...this.pendingRecords.values()];
  }

  /** PENDING records whose heartbeat is older than the TTL by `nowMs` (or the replicated clock, if later). */
  expiredRecords(nowMs: number): TxnMeta[] {
    const at = Math.max(nowMs, this.clock);
    const expired: TxnMeta[] = [];
    for (const r of this.pendingRecords.values()) {
      if (r.state.status === 'pending' && r.state.heartbeatAtMs + this.options.ttlMs <= at)
        expired.push(r.meta);
    }
    return expired;
  }

  /** Locks a read of `interval` at `revision` must wait for (their txn may commit at or below it). */
  readBlockers(interval: KeyInterval, revision: Revision): TxnMeta[] {
    return this.locks.blocking(interval, revision).map((l) => l.meta);
  }

  /**
   * The highest revision this shard may call resolved as far as locks go: below every held lock's
   * start revision (its txn commits above that), or +∞ with no lock. The shard's own applied
   * revision bounds it as well; that part is the host's.
   */
  resolvedRevisionCap(): Revision {
    return this.locks.minStartRevision() - 1;
  }

  /** The record of a txn this shard is primary for, if kept. */
  recordOf(txnId: TxnId): TxnRecord | undefined {
    return this.record(txnId);
  }

  outcomeOf(txnId: TxnId): 'committed' | 'aborted' | undefined {
    return this.finished.get(txnId)?.outcome;
  }

  snapshot(): ShardTxnSnapshot {
    return {
      clockMs: this.clock,
      lastRevision: this.last,
      locks: [...this.locks.entries()].map((l) => ({
        meta: l.meta,
        part: l.part,
        expiresAtMs: l.expiresAtMs,
      })),
      finished: [...this.finished.entries()].map(([id, f]) => ({ id, outcome: f.outcome, atMs: f.atMs })),
      records: [...this.pendingRecords.values(), ...this.decidedRecords.values()],
    };
  }

  /** The whole state (shares its immutable values with this state: do not mutate them). */
  exportImage(): ShardTxnImage {
    return {
      clockMs: this.clock,
      lastRevision: this.last,
      locks: [...this.locks.entries()],
      finished: [...this.finished.entries()].map(([id, f]) => ({ id, ...f })),
      pendingRecords: [...this.pendingRecords.values()],
      decidedRecords: [...this.decidedRecords.values()],
    };
  }

  /** Replaces the whole state by an image (from `exportImage`, or a decoded snapshot). */
  restore(image: ShardTxnImage): void {
    for (const id of [...this.locks.entries()].map((l) => l.meta.id)) this.locks.delete(id);
    for (const lock of image.locks) this.locks.add(lock);
    this.finished.clear();
    for (const { id, ...f } of image.finished) this.finished.set(id, f);
    this.pendingRecords.clear();
    for (const r of image.pendingRecords) this.pendingRecords.set(r.meta.id, r);
    this.decidedRecords.clear();
    for (const r of image.decidedRecords) this.decidedRecords.set(r.meta.id, r);
    this.clock = image.clockMs;
    this.last = image.lastRevision;
  }

  /** Forgets outcomes and decided records past the retention (the oldest first; insertion order is decision order). */
  private dropExpiredOutcomes(): void {
    const limit = this.clock - this.options.retainMs;
    for (const [id, f] of this.finished) {
      if (Math.max(f.atMs, f.startedAtMs) >= limit) break;
      this.finished.delete(id);
    }
    // A missing record reads as "abort", so a committed record is dropped only once its
    // coordinator said every participant applied the commit (record-forget) and the retention passed.
    for (const [id, r] of this.decidedRecords) {
      if (Math.max(r.touchedAtMs, r.meta.startedAtMs) >= limit) break;
      if (r.state.status === 'aborted' || r.forgotten) this.decidedRecords.delete(id);
    }
  }
}
