// The timestamp oracle in a member (src/shard/oracle.ts: TimestampOracle, RevisionBatcher), wired
// to the metadata group's replica as src/sim/oracle-host.ts wires it in the simulator:
// `persistHighWater(mark)` is a raiseOracleMark proposal to group 0, resolved once this replica
// applied a mark at least that high; `confirmLeadership()` is a ReadIndex round on group 0; the
// oracle leads while the replica leads and has applied an entry of its own term (every mark an
// earlier leader raised is then in its state), and steps down when it does not.
//
// Every member has a RevisionBatcher: `next()` calls of one event-loop turn become one fetch,
// served by the local oracle on the metadata leader and by concordpb.Shard/Revisions on the
// leader's client URL elsewhere (retried while the leader is unknown or changes, until the
// request timeout).
//
// The floor: once writes take their revisions from the oracle, those must be above every revision
// the data group gave out densely before. A split records the keyspace's revision at the split
// entry (replica/shard-record.ts); the metadata leader raises the persisted mark to it before the
// map takes the split (shard-admin.ts), and an oracle that leads from an older mark restarts
// above the floor before it hands out a revision at or below it. No request takes revisions from
// the oracle yet, and group 1 keeps giving dense revisions after a split (it serves every
// request), so today's oracle revisions are not disjoint from the data's: the switch of the data
// path to oracle revisions must stop group 1's dense revisions at the split entry (refuse
// unstamped writes after it) for this floor to hold.

import * as grpc from '@grpc/grpc-js';
import type { MetaReplica } from '../replica/meta-replica.js';
import { OracleNotLeaderError } from '../shard/errors.js';
import { RevisionBatcher, type RevisionRange, TimestampOracle } from '../shard/oracle.js';
import { sleep } from '../util/sleep.js';

/** How far above what is needed a raise of the persisted mark goes. */
const ORACLE_WINDOW_REVISIONS = 100_000;
const ORACLE_REFILL_BELOW_REVISIONS = 20_000;
/** The most revisions one fetch asks for (and one allocation gives). */
export const ORACLE_BATCH_REVISIONS_MAX = 1024;

export interface OracleServiceContext {
  meta(): MetaReplica;
  /** The metadata leader's client URL, if known. */
  leaderUrl(): string | undefined;
  /** concordpb.Shard/Revisions on `url`. */
  fetchRemote(url: string, count: number): Promise<RevisionRange>;
  /** Every revision handed out must be above this (the dense revisions before the first split). */
  floor(): number;
  requestTimeoutMs: number;
  retryIntervalMs: number;
  isStopped(): boolean;
}

export class OracleService {
  private readonly oracle: TimestampOracle;
  /** The group-0 term this oracle leads in (0: not leading). */
  private leadingTerm = 0;
  readonly batcher: RevisionBatcher;

  constructor(private readonly context: OracleServiceContext) {
    this.oracle = new TimestampOracle({
      persistHighWater: (mark) => context.meta().raiseOracleMark(mark),
      confirmLeadership: () => context.meta().confirmLeadership(),
      windowRevisions: ORACLE_WINDOW_REVISIONS,
      refillBelowRevisions: ORACLE_REFILL_BELOW_REVISIONS,
      allocateRevisionsMax: ORACLE_BATCH_REVISIONS_MAX,
    });
    this.batcher = new RevisionBatcher({
      fetch: (count) => this.fetch(count),
      batchRevisionsMax: ORACLE_BATCH_REVISIONS_MAX,
    });
  }

  /** One revision from the oracle (one fetch per event-loop turn for all callers). */
  next(): Promise<number> {
    return this.batcher.next();
  }

  /**
   * Every heartbeat: an oracle that leads steps down when its replica no longer leads in that
   * term. An oracle starts leading only when asked for revisions (allocate), so a cluster that
   * never asks (one shard) writes no mark raises to the metadata group.
   */
  onTick(): void {
    if (this.leadingTerm !== 0) this.followRole();
  }

  /** Follows the metadata replica's role (before each allocation, and from onTick). */
  followRole(): void {
    const meta = this.context.meta();
    const term = meta.leadingCaughtUpTerm();
    if (this.leadingTerm !== 0 && this.leadingTerm !== term) {
      this.leadingTerm = 0;
      this.oracle.stepDown();
    }
    if (term === 0 || this.leadingTerm !== 0 || this.context.isStopped()) return;
    this.leadingTerm = term;
    this.oracle.becomeLeader(Math.max(meta.metaState?.oracleMark ?? 0, this.context.floor()));
  }

  /** Hands out `count` revisions here, on the metadata leader (concordpb.Shard/Revisions). */
  async allocate(count: number): Promise<RevisionRange> {
    this.followRole();
    if (this.leadingTerm === 0) throw new OracleNotLeaderError();
    const floor = this.context.floor();
    if (this.oracle.lastRevision < floor) {
      // Leading from a mark below the dense revisions of the first split: start again above them.
      this.oracle.stepDown();
      this.oracle.becomeLeader(Math.max(this.context.meta().metaState?.oracleMark ?? 0, floor));
    }
    return this.oracle.allocate(count);
  }

  stop(): void {
    this.batcher.close();
    if (this.leadingTerm !== 0) this.oracle.stepDown();
    this.leadingTerm = 0;
  }

  private async fetch(count: number): Promise<RevisionRange> {
    const deadline = Date.now() + this.context.requestTimeoutMs;
    for (;;) {
      if (this.context.isStopped()) throw new OracleNotLeaderError();
      let error: unknown;
      try {
        if (this.context.meta().isLeader) return await this.allocate(count);
        const url = this.context.leaderUrl();
        if (url !== undefined) return await this.context.fetchRemote(url, count);
      } catch (caught) {
        error = caught;
        const code = (caught as { code?: unknown }).code;
        const retry =
          caught instanceof OracleNotLeaderError ||
          code === grpc.status.UNAVAILABLE ||
          code === grpc.status.FAILED_PRECONDITION ||
          /not the metadata leader|leadership round|mark raise/.test((caught as Error).message ?? '');
        if (!retry) throw caught;
      }
      if (Date.now() >= deadline) throw error ?? new OracleNotLeaderError();
      await sleep(this.context.retryIntervalMs);
    }
  }
}
