// The invariants of revisions across shards, checked by observation as the sharded simulation runs
// (each group's Raft invariants are checked by its own InvariantChecker):
//   - the oracle: no revision is released twice; a range released is above every range released
//     before it was asked for (real-time order across leader changes); no revision is above the
//     highest high-water mark the metadata group has committed (applied anywhere);
//   - the shards: no two writes are applied at one revision, on any shards; a shard applies each
//     write above its own revision (its store revision only goes up); no applied revision is above
//     the committed mark;
//   - the clients: a write acknowledged before another write started has a smaller revision;
//   - routing: a shard applies only writes routed at its current epoch whose keys are all in its
//     range (a stale route is refused and re-routed, never answered);
//   - at the end: every key of every acknowledged write reads back at its revision on every
//     caught-up replica of the shard owning the key now (after any splits), and each key's history
//     equals what one group applying those writes in revision order would hold; a shard holds
//     history only for keys in its range.

import { InvariantViolation } from './errors.js';
import {
  type AppliedWrite,
  branchOps,
  type KeyRange,
  type KeyState,
  rangeHolds,
  requestKeys,
  type ShardStateMachine,
  type WriteCommand,
  type WriteOutcome,
  type WriteRequest,
} from './shard-app.js';

interface AckedWrite {
  readonly shard: number;
  readonly index: number;
  readonly applied: AppliedWrite;
}

/** A caught-up replica of a shard, as the end-of-run check reads it. */
export interface ShardReplicaView {
  readonly shard: number;
  readonly node: number;
  readonly state: ShardStateMachine;
}

export class RevisionChecker {
  /** Highest mark applied by any replica of the metadata group. */
  private committedMark = 0;
  private releasedMax = 0;
  private readonly released = new Set<number>();
  /** Revision → the write first applied at it (any shard). */
  private readonly appliedAt = new Map<number, number>();
  /** Write id → what the client asked for. */
  private readonly issued = new Map<number, WriteRequest>();
  private readonly acked = new Map<number, AckedWrite>();
  private ackedMax = 0;

  get ackedCount(): number {
    return this.acked.size;
  }

  get releasedCount(): number {
    return this.released.size;
  }

  /** A metadata replica applied a raise: the mark it now holds is committed. */
  observeMark(mark: number): void {
    this.committedMark = Math.max(this.committedMark, mark);
  }

  /** Taken when the oracle is asked for a range: the range must be above this. */
  releaseFloor(): number {
    return this.releasedMax;
  }

  observeRelease(first: number, count: number, floor: number): void {
    const last = first + count - 1;
    if (first <= floor) {
      throw new InvariantViolation(
        'revision-order',
        `the oracle released ${first}..${last} after ${floor} had been released`,
      );
    }
    if (last > this.committedMark) {
      throw new InvariantViolation(
        'revision-above-mark',
        `the oracle released ${first}..${last} above the committed mark ${this.committedMark}`,
      );
    }
    for (let revision = first; revision <= last; revision++) {
      if (this.released.has(revision))
        throw new InvariantViolation('revision-reused', `the oracle released revision ${revision} twice`);
      this.released.add(revision);
    }
    this.releasedMax = Math.max(this.releasedMax, last);
  }

  /** A client starts a write: returns the floor its revision must be above. */
  startWrite(write: number, request: WriteRequest): number {
    this.issued.set(write, request);
    return this.ackedMax;
  }

  /** A replica of `shard` applied a write; `previous` is the shard's revision before it. */
  observeApply(
    shard: number,
    node: number,
    command: WriteCommand,
    outcome: WriteOutcome,
    previous: number,
    route: { readonly epoch: number; readonly confEpoch: number; readonly range: KeyRange },
  ): void {
    if (outcome.kind !== 'applied') return;
    const revision = outcome.write.revision;
    const where = `shard ${shard} n${node}`;
    const outside = requestKeys(command).find((key) => !rangeHolds(route.range, key));
    const staleConf = command.confEpoch !== undefined && command.confEpoch !== route.confEpoch;
    if (command.epoch !== route.epoch || staleConf || outside !== undefined) {
      throw new InvariantViolation(
        'stale-route',
        `${where} at epoch ${route.epoch}/${route.confEpoch} [${route.range.start}, ${route.range.end || '∞'}) applied write ${command.write} routed at epoch ${command.epoch}/${command.confEpoch}${outside === undefined ? '' : ` with key ${outside} outside its range`}`,
      );
    }
    const first = this.appliedAt.get(revision);
    if (first !== undefined && first !== command.write) {
      throw new InvariantViolation(
        'revision-reused',
        `${where} applied write ${command.write} at revision ${revision}, where write ${first} was applied`,
      );
    }
    this.appliedAt.set(revision, command.write);
    if (revision <= previous) {
      throw new InvariantViolation(
        'revision-order',
        `${where} applied write ${command.write} at revision ${revision}, not above its revision ${previous}`,
      );
    }
    if (revision > this.committedMark) {
      throw new InvariantViolation(
        'revision-above-mark',
        `${where} applied revision ${revision} above the committed mark ${this.committedMark}`,
      );
    }
    const asked = this.issued.get(command.write);
    const { write: _, revision: __, epoch: ___, confEpoch: ____, ...request } = command;
    if (asked === undefined || JSON.stringify(asked) !== JSON.stringify(request)) {
      throw new InvariantViolation('key-history', `${where} applied write ${command.write} nobody issued`);
    }
  }

  /** A client was told its write succeeded as `applied` (at log `index` of `shard`). */
  observeAck(write: number, shard: number, index: number, applied: AppliedWrite, floor: number): void {
    if (!this.issued.has(write))
      throw new InvariantViolation('key-history', `write ${write} acked, never issued`);
    const revision = applied.revision;
    if (revision <= floor) {
      throw new InvariantViolation(
        'revision-order',
        `write ${write} acked at revision ${revision}, but a write acked before it started has ${floor}`,
      );
    }
    if (this.appliedAt.get(revision) !== write) {
      throw new InvariantViolation(
        'revision-reused',
        `write ${write} acked at revision ${revision}, not applied there`,
      );
    }
    this.acked.set(write, { shard, index, applied });
    this.ackedMax = Math.max(this.ackedMax, revision);
  }

  /** End of run, on every caught-up replica of every shard. */
  checkReplicas(replicas: readonly ShardReplicaView[]): void {
    for (const replica of replicas) {
      this.checkAckedReadable(replica);
      this.checkWrites(replica);
      this.checkKeyHistories(replica);
    }
  }

  /** Every acked write is applied as acked, and each key it wrote reads back at its revision. */
  private checkAckedReadable({ shard, node, state }: ShardReplicaView): void {
    for (const [write, ack] of this.acked) {
      if (ack.shard === shard && state.appliedIndex < ack.index) continue;
      const { revision, succeeded } = ack.applied;
      const ops = branchOps(this.issued.get(write)!, succeeded).filter(({ key }) => state.owns(key));
      if (ops.length === 0) continue;
      const applied = state.writes.get(write);
      const lost = (detail: string) =>
        new InvariantViolation(
          'acked-proposal-lost',
          `shard ${shard} n${node}: acked write ${write} at revision ${revision}: ${detail}`,
        );
      if (applied?.revision !== revision || applied.succeeded !== succeeded) throw lost('not applied so');
      for (const { key, op } of ops) {
        const seen = state.versionAt(key, revision);
        if (op === 'put' ? seen?.write !== write : seen !== undefined)
          throw lost(`${op} ${key} not readable`);
      }
    }
  }

  /**
   * Each applied write took the branch its compare gives on the shard's state just below its
   * revision, and wrote exactly that branch's keys at its revision.
   */
  private checkWrites({ shard, node, state }: ShardReplicaView): void {
    for (const [write, applied] of state.writes) {
      const request = this.issued.get(write)!;
      const { revision, succeeded } = applied;
      const where = `shard ${shard} n${node}: write ${write} at ${revision}`;
      if (request.ifExists !== undefined && state.owns(request.ifExists)) {
        const existed = state.versionAt(request.ifExists, revision - 1) !== undefined;
        if (existed !== succeeded)
          throw new InvariantViolation(
            'key-history',
            `${where} took the wrong branch (${request.ifExists} existed: ${existed})`,
          );
      }
      for (const { key, op } of branchOps(request, succeeded)) {
        if (!state.owns(key)) continue;
        const version = state.history.get(key)?.find((v) => v.revision === revision);
        if (version?.write !== write || version.op !== op)
          throw new InvariantViolation('key-history', `${where}: ${key} lacks its ${op}`);
      }
    }
  }

  /**
   * Each key's history holds only versions of applied writes that wrote the key, in increasing
   * revisions, and replayed by a one-group model gives the key's state.
   */
  private checkKeyHistories({ shard, node, state }: ShardReplicaView): void {
    const where = `shard ${shard} n${node}`;
    for (const [key, versions] of state.history) {
      if (!state.owns(key))
        throw new InvariantViolation('stale-route', `${where}: holds history of ${key}, outside its range`);
      let model: KeyState | undefined;
      let last = 0;
      for (const version of versions) {
        const applied = state.writes.get(version.write);
        const request = this.issued.get(version.write);
        const wrote =
          applied?.revision === version.revision &&
          request !== undefined &&
          branchOps(request, applied.succeeded).some((o) => o.key === key && o.op === version.op);
        if (version.revision <= last || !wrote) {
          throw new InvariantViolation(
            'key-history',
            `${where}: ${key} has ${version.op} ${version.write} at ${version.revision} after revision ${last}`,
          );
        }
        last = version.revision;
        model =
          version.op === 'delete'
            ? undefined
            : {
                createRevision: model?.createRevision ?? version.revision,
                modRevision: version.revision,
                version: (model?.version ?? 0) + 1,
                write: version.write,
              };
      }
      if (JSON.stringify(state.keys.get(key)) !== JSON.stringify(model)) {
        throw new InvariantViolation(
          'key-history',
          `${where}: ${key} is ${JSON.stringify(state.keys.get(key))}, its history gives ${JSON.stringify(model)}`,
        );
      }
    }
  }
}
