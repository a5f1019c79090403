// A deterministic in-memory world for the cross-shard txn protocol: several shards (each a
// ShardTxnState over a ModelKeyspace, applying commands atomically when they are delivered), an
// oracle, a virtual clock with per-actor skew, and a seeded scheduler that delays, drops,
// duplicates and loses the replies of proposals. Clients run concurrent txns through the real
// coordinator; some coordinators crash at a chosen effect; sweepers resolve expired locks. At the
// end the committed history is replayed against the reference model and compared.

import assert from 'node:assert/strict';
import { SimRng } from '../../src/sim/rng.js';
import {
  type CoordinatorOptions,
  type CoordinatorStep,
  deleteRangeAsTxn,
  leaseRevokeAsTxn,
  runTxn,
} from '../../src/txn/coordinator.js';
import { ProposeFailedError, type TxnEffects } from '../../src/txn/effects.js';
import {
  TxnAbortedError,
  TxnInvariantError,
  TxnOpFailedError,
  TxnOutcomeUnknownError,
} from '../../src/txn/errors.js';
import type { Router } from '../../src/txn/plan.js';
import { sweepShard } from '../../src/txn/resolver.js';
import { type ShardTxnOptions, ShardTxnState, type TxnKeyspace } from '../../src/txn/shard-txn-state.js';
import type {
  LockConflict,
  LockInterval,
  RequestOp,
  Revision,
  ShardId,
  ShardTxnCommand,
  ShardTxnResult,
  TxnId,
  TxnRecord,
  TxnRequest,
  TxnResponse,
} from '../../src/txn/types.js';
import { bytes, ModelKeyspace, referenceCheckFails, referenceTxn } from './model-keyspace.js';
import { textRouter } from './router.js';

export type Mutant =
  | 'commit-without-record'
  | 'resolver-rolls-back'
  | 'ttl-ignored'
  | 'lock-ttl-ignored'
  | 'fast-path-ignores-locks'
  | 'prepare-ignores-locks'
  | 'writes-ignore-read-locks';

export interface HarnessOptions {
  readonly seed: number;
  readonly clients: number;
  /** Shard boundaries: shard 1 is ['', first), …, the last [last, +∞). */
  readonly boundaries: readonly string[];
  readonly keys: readonly string[];
  readonly ttlMs: number;
  readonly heartbeatMs: number;
  readonly sweepMs: number;
  readonly delayMaxMs: number;
  readonly dropP: number;
  readonly lostReplyP: number;
  readonly duplicateP: number;
  readonly skewMaxMs: number;
  /** Probability that a client's first coordinator crashes at some effect. */
  readonly crashP: number;
  /**
   * Where a crashing coordinator dies: at its `offset`-th effect (propose or oracle call, counted
   * from 0) after it reached `step`; the call is either never sent or applied with its reply lost.
   * Unset: a random step and an offset in [0, 4).
   */
  readonly crashAt?: CrashPoint;
  /** Probability that a txn's keys are all on one shard (the fast path). */
  readonly singleShardP: number;
  readonly retriesMax: number;
  readonly timeLimitMs: number;
  readonly mutant?: Mutant;
  /** A client waits a random time up to this × 2^attempt (capped at 64×) before retrying an aborted txn. */
  readonly retryBackoffMs?: number;
  /**
   * Shard outages (a participant's or the primary's leader lost, no new leader yet): each picks
   * a shard, a start in the first 300 ms and a length of 20–150 ms; proposals reaching the shard
   * meanwhile are not applied and fail, and its sweeper does not run.
   */
  readonly outages?: number;
  /**
   * A client may give up after `retriesMax` aborts (counted, not a failure): for configurations
   * that break liveness on purpose, such as heartbeats slower than the TTL.
   */
  readonly livenessNotExpected?: boolean;
}

export const DEFAULT_OPTIONS: Omit<HarnessOptions, 'seed'> = {
  clients: 8,
  boundaries: ['e', 'i'],
  keys: ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l'],
  ttlMs: 120,
  heartbeatMs: 40,
  sweepMs: 30,
  delayMaxMs: 6,
  dropP: 0.03,
  lostReplyP: 0.03,
  duplicateP: 0.05,
  skewMaxMs: 10,
  crashP: 0.3,
  singleShardP: 0.3,
  retriesMax: 60,
  timeLimitMs: 120_000,
};

export interface HarnessReport {
  readonly committed: number;
  readonly fastPath: number;
  readonly aborts: number;
  readonly opFailed: number;
  readonly unknown: number;
  readonly gaveUp: number;
  readonly crashed: number;
  /** The longest a lock was seen held after its coordinator stopped (crashed or returned), ms. */
  readonly lockAgeAfterStopMaxMs: number;
  /** Crashes by the last protocol step the coordinator reached. */
  /** Crashes by where they happened: `step+effect`. */
  readonly crashPoints: Map<string, number>;
  readonly events: number;
  readonly endMs: number;
  /** A hash of the trace, to check that one seed replays identically. */
  readonly traceHash: number;
}

export type CrashStep = CoordinatorStep | 'begin';

export interface CrashPoint {
  readonly step: CrashStep;
  readonly offset: number;
}

export const CRASH_STEPS: readonly CrashStep[] = [
  'begin',
  'fast-path',
  'start-revision',
  'prepared',
  'commit-revision',
  'committed-record',
  'aborted',
];

interface Actor {
  readonly name: string;
  readonly skewMs: number;
  crashAt: CrashPoint | undefined;
  /** Effects since the last step reached. */
  effects: number;
  crashed: boolean;
  /** When it stopped working: crashed, or its txn settled. */
  stoppedAtMs: number | undefined;
  lastStep: CrashStep;
  /** Where it crashed: the step and the effect after it. */
  crashedAt: string | undefined;
}

/** A participant state with a planted fault, for the mutant tests. */
class MutantShardState extends ShardTxnState {
  constructor(
    keyspace: TxnKeyspace,
    options: ShardTxnOptions,
    private readonly mutant: Mutant | undefined,
  ) {
    super(keyspace, options);
  }
  protected override conflictFor(
    intervals: readonly LockInterval[],
    self: TxnId | undefined,
  ): LockConflict | undefined {
    if (this.mutant === 'fast-path-ignores-locks' && self === undefined) return undefined;
    if (this.mutant === 'prepare-ignores-locks' && self !== undefined) return undefined;
    const wanted =
      this.mutant === 'writes-ignore-read-locks' ? intervals.map((i) => ({ ...i, write: false })) : intervals;
    const conflict = super.conflictFor(wanted, self);
    if (this.mutant === 'lock-ttl-ignored' && conflict) return { ...conflict, expired: false };
    return conflict;
  }
  override expiredLocks(nowMs: number) {
    return this.mutant === 'lock-ttl-ignored' ? [] : super.expiredLocks(nowMs);
  }
  protected override recordExpired(record: TxnRecord): boolean {
    if (this.mutant === 'ttl-ignored') return false;
    return super.recordExpired(record);
  }
}

interface Shard {
  readonly id: ShardId;
  readonly start: string;
  readonly end: string; // '' = +∞
  readonly keyspace: ModelKeyspace;
  readonly state: ShardTxnState;
  readonly log: ShardTxnCommand[];
  sweeping: boolean;
}

interface Event {
  readonly atMs: number;
  readonly seq: number;
  readonly run: () => void;
}

export class TxnHarness {
  readonly rng: SimRng;
  private nowMs = 0;
  private seq = 0;
  private queue: Event[] = [];
  private oracle = 0;
  private trace = 2166136261;
  readonly shards: Shard[] = [];
  private readonly route: Router;
  private readonly coordinator: CoordinatorOptions;
  private readonly requests = new Map<TxnId, TxnRequest>();
  private readonly actorOfTxn = new Map<TxnId, Actor>();
  private readonly singles: { revision: Revision; request: TxnRequest }[] = [];
  private readonly responses: TxnResponse[] = [];
  private readonly crashedActors: Actor[] = [];
  private failure: unknown;
  /** The longest a lock was seen held after its coordinator stopped. */
  private lockAgeAfterStopMaxMs = 0;
  /** Attempts whose client was told nothing was applied. */
  private readonly answeredNotApplied = new Set<TxnId>();
  /** Why attempts aborted (digits folded), for the contention report. */
  readonly abortReasons = new Map<string, number>();
  private counts = { committed: 0, fastPath: 0, aborts: 0, opFailed: 0, unknown: 0, gaveUp: 0, events: 0 };

  constructor(readonly options: HarnessOptions) {
    this.rng = new SimRng(options.seed);
    const bounds = ['', ...options.boundaries];
    bounds.forEach((start, i) => {
      const keyspace = new ModelKeyspace();
      const shardOptions = { shardId: i + 1, ttlMs: options.ttlMs, retainMs: 10 * options.timeLimitMs };
      this.shards.push({
        id: i + 1,
        start,
        end: bounds[i + 1] ?? '',
        keyspace,
        state: new MutantShardState(keyspace, shardOptions, options.mutant),
        log: [],
        sweeping: false,
      });
    });
    this.route = textRouter(options.boundaries);
    this.coordinator = {
      route: this.route,
      ttlMs: options.ttlMs,
      heartbeatMs: options.heartbeatMs,
      proposeAttemptsMax: 8,
      backoffMs: 5,
      lockWaitsMax: 40,
    };
  }

  private at(delayMs: number, run: () => void): void {
    const event = { atMs: this.nowMs + delayMs, seq: this.seq++, run };
    // Binary insertion by (atMs, seq): events at one instant run in the order they were scheduled.
    let lo = 0;
    let hi = this.queue.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      const e = this.queue[mid]!;
      if (e.atMs < event.atMs || (e.atMs === event.atMs && e.seq < event.seq)) lo = mid + 1;
      else hi = mid;
    }
    this.queue.splice(lo, 0, event);
  }

  private hash(s: string): void {
    for (let i = 0; i < s.length; i++) this.trace = Math.imul(this.trace ^ s.charCodeAt(i), 16777619) >>> 0;
  }

  private applyTo(shardId: ShardId, cmd: ShardTxnCommand): ShardTxnResult {
    const shard = this.shards[shardId - 1]!;
    const locksBefore = shard.state.locks.size;
    shard.log.push(cmd);
    const result = shard.state.apply(cmd);
    this.hash(`${shardId}:${cmd.type}:${result.type}:${'status' in result ? result.status : ''}`);
    if (cmd.type === 'single') {
      assert.equal(shard.state.locks.size, locksBefore, 'the fast path takes no lock');
      if (result.type === 'single' && result.status === 'applied') {
        this.singles.push({ revision: cmd.revision, request: cmd.request });
      }
    }
    return result;
  }

  private effectsFor(actor: Actor): TxnEffects {
    const never = new Promise<never>(() => {});
    const maybeCrash = (): 'run' | 'crash-before' | 'crash-after' => {
      if (actor.crashed) return 'crash-before';
      const index = actor.effects++;
      if (actor.crashAt?.step !== actor.lastStep || actor.crashAt.offset !== index) return 'run';
      actor.crashed = true;
      actor.crashedAt = `${actor.lastStep}+${index}`;
      actor.stoppedAtMs = this.nowMs;
      this.crashedActors.push(actor);
      return this.rng.chance(0.5) ? 'crash-before' : 'crash-after';
    };
    const delay = () => this.rng.between(1, this.options.delayMaxMs);
    const effects: TxnEffects = {
      propose: (shard, cmd) => {
        const mode = maybeCrash();
        if (mode === 'crash-before') return never;
        return new Promise<ShardTxnResult>((resolve, reject) => {
          const roll = this.rng.nextFloat();
          const dup = this.rng.chance(this.options.duplicateP);
          this.at(delay(), () => {
            if (roll < this.options.dropP || this.inOutage(shard)) {
              if (!actor.crashed) reject(new Error('proposal dropped'));
              return;
            }
            const result = this.applyTo(shard, cmd);
            if (dup)
              this.at(this.rng.between(1, 3 * this.options.delayMaxMs), () => this.applyTo(shard, cmd));
            if (actor.crashed) return;
            if (roll < this.options.dropP + this.options.lostReplyP) reject(new Error('reply lost'));
            else resolve(result);
          });
        });
      },
      nextRevision: () => {
        if (maybeCrash() !== 'run') return never;
        const fails = this.rng.chance(this.options.dropP);
        return new Promise<Revision>((resolve, reject) => {
          this.at(delay(), () => {
            if (actor.crashed) return;
            if (fails) reject(new Error('oracle leader lost'));
            else resolve(++this.oracle);
          });
        });
      },
      nowMs: () => this.nowMs + actor.skewMs,
      sleep: (ms) =>
        actor.crashed
          ? never
          : new Promise<void>((resolve) => {
              this.at(Math.max(1, ms), () => {
                if (!actor.crashed) resolve();
              });
            }),
    };
    if (this.options.mutant === 'commit-without-record' || this.options.mutant === 'resolver-rolls-back') {
      const propose = effects.propose;
      effects.propose = async (shard, cmd) => {
        if (this.options.mutant === 'commit-without-record' && cmd.type === 'record-commit') {
          return { type: 'record', status: 'committed', revision: cmd.revision, executed: cmd.executed };
        }
        const result = await propose(shard, cmd);
        if (
          this.options.mutant === 'resolver-rolls-back' &&
          cmd.type === 'record-abort' &&
          cmd.reason.kind !== 'coordinator' &&
          result.type === 'record' &&
          result.status === 'committed'
        ) {
          return { type: 'record', status: 'aborted' };
        }
        return result;
      };
    }
    return effects;
  }

  private readonly outageWindows: { shard: ShardId; fromMs: number; toMs: number }[] = [];

  private inOutage(shard: ShardId): boolean {
    return this.outageWindows.some((w) => w.shard === shard && this.nowMs >= w.fromMs && this.nowMs < w.toMs);
  }

  private newActor(name: string, crashAt: CrashPoint | undefined): Actor {
    const skewMs = this.rng.between(-this.options.skewMaxMs, this.options.skewMaxMs);
    return {
      name,
      skewMs,
      crashAt,
      effects: 0,
      crashed: false,
      stoppedAtMs: undefined,
      lastStep: 'begin',
      crashedAt: undefined,
    };
  }

  // --- workload -------------------------------------------------------------------------------

  private pickKeys(count: number, within?: Shard): string[] {
    const pool = within
      ? this.options.keys.filter((k) => k >= within.start && (within.end === '' || k < within.end))
      : this.options.keys;
    const chosen = new Set<string>();
    while (chosen.size < Math.min(count, pool.length)) chosen.add(this.rng.pick(pool));
    return [...chosen].sort();
  }

  private compareOn(key: string): TxnRequest['compare'][number] {
    const k = bytes(key);
    switch (this.rng.nextInt(4)) {
      case 0:
        return {
          target: 'version',
          result: this.rng.pick(['greater', 'equal'] as const),
          key: k,
          version: this.rng.nextInt(3),
        };
      case 1:
        return { target: 'value', result: 'equal', key: k, value: bytes(`v${this.rng.nextInt(4)}`) };
      case 2:
        return { target: 'mod', result: 'less', key: k, modRevision: this.rng.between(1, this.oracle + 5) };
      default:
        return { target: 'create', result: 'greater', key: k, createRevision: 0 };
    }
  }

  /** A branch's ops: writes to distinct keys or one deleteRange (etcd refuses overlapping writes), and ranges. */
  private branch(keys: readonly string[], within?: Shard, readOnly = false): RequestOp[] {
    const ops: RequestOp[] = [];
    const rangeOf = (): { key: Uint8Array; rangeEnd: Uint8Array } => {
      const [a, b] = this.pickKeys(2, within);
      const end = b && b > a! ? b : `${a}\xff`;
      return { key: bytes(a!), rangeEnd: bytes(end) };
    };
    if (this.rng.chance(0.3))
      ops.push({ type: 'range', request: { ...rangeOf(), limit: this.rng.nextInt(3) } });
    if (readOnly) {
      // Nested txns only read here: a write overlapping the outer branch's is invalid in etcd.
    } else if (this.rng.chance(0.2)) {
      ops.push({ type: 'deleteRange', request: { ...rangeOf(), prevKv: this.rng.chance(0.5) } });
    } else {
      for (const key of keys) {
        ops.push({
          type: 'put',
          request: {
            key: bytes(key),
            value: bytes(`v${this.rng.nextInt(4)}`),
            prevKv: this.rng.chance(0.3),
            ignoreLease: this.rng.chance(0.05),
          },
        });
      }
    }
    if (this.rng.chance(0.5)) {
      const r = rangeOf();
      ops.push({
        type: 'range',
        request: {
          ...r,
          sortOrder: this.rng.pick(['none', 'descend'] as const),
          sortTarget: 'mod',
          countOnly: this.rng.chance(0.1),
        },
      });
    }
    return ops;
  }

  private generate(): TxnRequest {
    const shape = this.rng.nextFloat();
    if (shape < 0.08) return leaseRevokeAsTxn(this.pickKeys(this.rng.between(2, 4)).map(bytes));
    if (shape < 0.12) {
      const [from, to] = this.pickKeys(2);
      return deleteRangeAsTxn({
        key: bytes(from!),
        rangeEnd: to ? bytes(to) : Uint8Array.of(0),
        prevKv: true,
      });
    }
    const within = this.rng.chance(this.options.singleShardP) ? this.rng.pick(this.shards) : undefined;
    const keys = this.pickKeys(this.rng.between(1, 3), within);
    const compare = this.pickKeys(this.rng.between(0, 2), within).map((k) => this.compareOn(k));
    const success = this.branch(keys, within);
    const failure = this.rng.chance(0.5) ? this.branch(this.pickKeys(1, within), within) : [];
    if (this.rng.chance(0.15)) {
      const inner = this.pickKeys(1, within);
      success.push({
        type: 'txn',
        request: {
          compare: inner.map((k) => this.compareOn(k)),
          success: [],
          failure: this.branch([], within, true),
        },
      });
    }
    return { compare, success, failure };
  }

  private async client(index: number): Promise<void> {
    const request = this.generate();
    const priority = this.nowMs * 1000 + index;
    for (let attempt = 0; attempt <= this.options.retriesMax; attempt++) {
      const crash =
        attempt === 0 && this.rng.chance(this.options.crashP)
          ? (this.options.crashAt ?? { step: this.rng.pick(CRASH_STEPS), offset: this.rng.nextInt(4) })
          : undefined;
      const actor = this.newActor(`c${index}a${attempt}`, crash);
      const id = `c${index}a${attempt}`;
      this.requests.set(id, request);
      this.actorOfTxn.set(id, actor);
      try {
        const response = await runTxn(
          this.effectsFor(actor),
          this.coordinator,
          request,
          { id, priority },
          (step) => {
            actor.lastStep = step;
            actor.effects = 0;
          },
        );
        this.responses.push(response);
        if (actor.lastStep === 'fast-path') this.counts.fastPath++;
        this.counts.committed++;
        actor.stoppedAtMs = this.nowMs;
        return;
      } catch (error) {
        actor.stoppedAtMs = this.nowMs;
        if (error instanceof TxnAbortedError || error instanceof TxnOpFailedError)
          this.answeredNotApplied.add(id);
        if (error instanceof TxnAbortedError) {
          this.counts.aborts++;
          const reason = error.reason.replace(/\d+/g, 'N');
          this.abortReasons.set(reason, (this.abortReasons.get(reason) ?? 0) + 1);
          const backoffMs = this.options.retryBackoffMs ?? 0;
          if (backoffMs > 0) {
            const waitMs = this.rng.between(0, backoffMs * 2 ** Math.min(attempt, 6));
            await new Promise<void>((resolve) => this.at(waitMs, resolve));
          }
          continue;
        }
        if (error instanceof TxnOpFailedError) this.counts.opFailed++;
        else if (error instanceof TxnOutcomeUnknownError || error instanceof ProposeFailedError)
          this.counts.unknown++;
        else this.failure ??= error;
        return;
      }
    }
    if (this.options.livenessNotExpected) this.counts.gaveUp++;
    else this.failure ??= new Error(`client ${index} aborted ${this.options.retriesMax + 1} times`);
  }

  // --- checks -------------------------------------------------------------------------------

  /**
   * Every lock and PENDING record of a stopped coordinator is gone within TTL + skew + one
   * resolution round of its stop.
   */
  private checkLockLifetimes(): void {
    const o = this.options;
    const outageMs = this.outageWindows.reduce((n, w) => n + (w.toMs - w.fromMs), 0);
    const boundMs = o.ttlMs + 2 * o.skewMaxMs + 3 * o.sweepMs + 40 * o.delayMaxMs + outageMs;
    for (const shard of this.shards) {
      for (const record of shard.state.pendingRecordList()) {
        const actor = this.actorOfTxn.get(record.meta.id);
        if (actor?.stoppedAtMs !== undefined && this.nowMs > actor.stoppedAtMs + boundMs) {
          throw new Error(
            `record of ${record.meta.id} stayed PENDING past ${boundMs} ms after its coordinator stopped at ${actor.stoppedAtMs}: now ${this.nowMs}`,
          );
        }
      }
      for (const lock of shard.state.locks.entries()) {
        const actor = this.actorOfTxn.get(lock.meta.id);
        if (actor?.stoppedAtMs === undefined) continue;
        this.lockAgeAfterStopMaxMs = Math.max(this.lockAgeAfterStopMaxMs, this.nowMs - actor.stoppedAtMs);
        if (this.nowMs > actor.stoppedAtMs + boundMs) {
          throw new Error(
            `lock of ${lock.meta.id} on shard ${shard.id} outlived its coordinator (stopped at ${actor.stoppedAtMs}) past ${boundMs} ms: now ${this.nowMs}`,
          );
        }
      }
    }
  }

  private sweep(): void {
    const resolver = this.newActor('resolver', undefined);
    const effects = this.effectsFor(resolver);
    for (const shard of this.shards) {
      if (shard.sweeping || this.inOutage(shard.id)) continue;
      shard.sweeping = true;
      sweepShard(effects, shard.id, shard.state, { attemptsMax: 8, backoffMs: 5 })
        .catch((error) => {
          if (!(error instanceof ProposeFailedError)) this.failure ??= error;
        })
        .finally(() => {
          shard.sweeping = false;
        });
    }
    this.at(this.options.sweepMs, () => this.sweep());
  }

  async run(): Promise<HarnessReport> {
    for (let i = 0; i < (this.options.outages ?? 0); i++) {
      const fromMs = this.rng.between(0, 300);
      this.outageWindows.push({
        shard: this.rng.pick(this.shards).id,
        fromMs,
        toMs: fromMs + this.rng.between(20, 150),
      });
    }
    let settled = 0;
    for (let i = 0; i < this.options.clients; i++) {
      this.at(this.rng.between(0, 40), () => {
        void this.client(i)
          .catch((error: unknown) => {
            this.failure ??= error;
          })
          .finally(() => settled++);
      });
    }
    this.at(this.options.sweepMs, () => this.sweep());
    const turn = () => new Promise<void>((resolve) => setImmediate(resolve));
    for (;;) {
      const event = this.queue.shift();
      if (!event) break;
      this.nowMs = event.atMs;
      this.counts.events++;
      try {
        event.run();
      } catch (error) {
        this.failure ??= error;
      }
      await turn();
      if (this.failure) throw this.failure;
      this.checkLockLifetimes();
      const locks = this.shards.reduce((n, s) => n + s.state.locks.size, 0);
      if (locks === 0 && this.pendingRecords() === 0 && this.allClientsSettledOrCrashed(settled)) break;
      if (this.nowMs > this.options.timeLimitMs) {
        throw new Error(
          `no progress: ${settled} of ${this.options.clients} clients settled, ${locks} locks held at ${this.nowMs} ms`,
        );
      }
    }
    this.checkHistory();
    this.checkReplay();
    const crashPoints = new Map<string, number>();
    for (const a of this.crashedActors)
      crashPoints.set(a.crashedAt!, (crashPoints.get(a.crashedAt!) ?? 0) + 1);
    return {
      ...this.counts,
      crashed: this.crashedActors.length,
      lockAgeAfterStopMaxMs: this.lockAgeAfterStopMaxMs,
      crashPoints,
      endMs: this.nowMs,
      traceHash: this.trace,
    };
  }

  private pendingRecords(): number {
    let pending = 0;
    for (const shard of this.shards) {
      for (const r of shard.state.snapshot().records) if (r.state.status === 'pending') pending++;
    }
    return pending;
  }

  private allClientsSettledOrCrashed(settled: number): boolean {
    // A client whose coordinator crashed never settles; every other client must have.
    const crashedClients = new Set(this.crashedActors.map((a) => a.name.split('a')[0]));
    return settled + crashedClients.size >= this.options.clients;
  }

  /** Replays every committed txn in revision order on one reference keyspace and compares. */
  private checkHistory(): void {
    const committed: { revision: Revision; request: TxnRequest; what: string }[] = this.singles.map((s) => ({
      ...s,
      what: `single@${s.revision}`,
    }));
    for (const shard of this.shards) {
      for (const record of shard.state.snapshot().records) {
        if (record.state.status !== 'committed') continue;
        committed.push({
          revision: record.state.revision,
          request: this.requests.get(record.meta.id)!,
          what: record.meta.id,
        });
      }
    }
    for (const c of committed) {
      assert.ok(
        !this.answeredNotApplied.has(c.what),
        `${c.what} committed after its client was told it did not`,
      );
    }
    committed.sort((a, b) => a.revision - b.revision);
    const reference = new ModelKeyspace();
    const expected = new Map<Revision, TxnResponse>();
    let previous = 0;
    for (const c of committed) {
      assert.ok(c.revision > previous, `two commits at revision ${c.revision}`);
      previous = c.revision;
      assert.ok(!referenceCheckFails(reference, c.request), `${c.what} committed a branch whose checks fail`);
      expected.set(c.revision, referenceTxn(reference, c.request, c.revision));
    }
    for (const response of this.responses) {
      assert.deepStrictEqual(
        response,
        expected.get(response.revision),
        `response at revision ${response.revision}`,
      );
    }
    const sharded = new Map<string, string[]>();
    for (const shard of this.shards) for (const [k, v] of shard.keyspace.dump()) sharded.set(k, v);
    assert.deepStrictEqual(
      new Map([...sharded.entries()].sort()),
      new Map([...reference.dump().entries()].sort()),
      'the shards hold exactly the committed txns, each at its one revision',
    );
    for (const shard of this.shards)
      assert.equal(shard.state.locks.size, 0, `shard ${shard.id} still holds locks`);
  }

  /** A shard re-driven from its log (a restarted replica) reaches the same state. */
  private checkReplay(): void {
    for (const shard of this.shards) {
      const keyspace = new ModelKeyspace();
      const state = new MutantShardState(keyspace, shard.state.options, this.options.mutant);
      for (const cmd of shard.log) state.apply(cmd);
      assert.deepStrictEqual(
        state.snapshot(),
        shard.state.snapshot(),
        `shard ${shard.id} replayed from its log`,
      );
      assert.deepStrictEqual(keyspace.dump(), shard.keyspace.dump());
    }
  }
}

export { TxnInvariantError };
