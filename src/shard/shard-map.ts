// The shard map: the ordered keyspace cut into contiguous ranges [start, end), one Raft group
// each, covering every key exactly once. A map value is immutable; split, merge and replica
// changes return a new map, so a router can hold one version while the metadata group moves on.
//
// Epochs follow TiKV's RegionEpoch: `epoch` (TiKV's "version") changes when a shard's range
// changes (split, merge) and `confEpoch` when its replica set changes. A request routed with a
// (shard id, epoch) the map no longer holds is refused with StaleEpochError and re-routed, never
// answered from a shard that may not own its keys any more.

import {
  ConfEpochMismatchError,
  MergeInvalidError,
  ShardMapInvariantError,
  ShardNotFoundError,
  SplitKeyInvalidError,
  StaleEpochError,
} from './errors.js';
import {
  boundaryInsideTagGroup,
  compareEnds,
  compareKeys,
  describeKey,
  KEYSPACE_EDGE,
  keyInRange,
  keysEqual,
  requestInterval,
} from './keys.js';
import type { NodeId, Replica, ShardId } from './types.js';

export interface ShardDescriptor {
  readonly id: ShardId;
  /** First key of the shard (inclusive); empty for the first shard. */
  readonly start: Uint8Array;
  /** First key after the shard (exclusive); empty for the last shard (+∞). */
  readonly end: Uint8Array;
  /** Bumped when the range changes (split, merge). Starts at 1. */
  readonly epoch: number;
  /** Bumped when the replica set changes (add, promote, remove). Starts at 1. */
  readonly confEpoch: number;
  readonly replicas: readonly Replica[];
  /** The node last known to lead the group; a hint for routing, not an authority. */
  readonly leaderHint: NodeId | undefined;
}

/** What a router stamps on a request it sends to a shard. */
export interface ShardRoute {
  readonly shardId: ShardId;
  readonly epoch: number;
}

/** The part of a request's key range that one shard serves. */
export interface ShardPiece {
  readonly shard: ShardDescriptor;
  readonly start: Uint8Array;
  /** Exclusive; empty = +∞. */
  readonly end: Uint8Array;
}

export class ShardMap {
  private readonly byId: ReadonlyMap<ShardId, ShardDescriptor>;

  private constructor(
    /** The shards in key order: the first starts at the empty key, the last ends at +∞. */
    readonly shards: readonly ShardDescriptor[],
    /** The id the next split gives its right half; ids are never reused. */
    readonly nextShardId: ShardId,
  ) {
    this.byId = new Map(shards.map((shard) => [shard.id, shard]));
  }

  /** A new cluster's map: one shard holding the whole keyspace. */
  static initial(replicas: readonly Replica[], shardId: ShardId = 1): ShardMap {
    return ShardMap.fromShards(
      [
        {
          id: shardId,
          start: KEYSPACE_EDGE,
          end: KEYSPACE_EDGE,
          epoch: 1,
          confEpoch: 1,
          replicas,
          leaderHint: undefined,
        },
      ],
      shardId + 1,
    );
  }

  /**
   * A map from stored shards (e.g. decoded from the metadata group's state). Throws
   * ShardMapInvariantError unless the shards cover the keyspace exactly once, in order.
   */
  static fromShards(shards: readonly ShardDescriptor[], nextShardId: ShardId): ShardMap {
    checkShards(shards, nextShardId);
    return new ShardMap([...shards], nextShardId);
  }

  get(shardId: ShardId): ShardDescriptor | undefined {
    return this.byId.get(shardId);
  }

  /** The shard with this id, or ShardNotFoundError. */
  require(shardId: ShardId): ShardDescriptor {
    const shard = this.byId.get(shardId);
    if (shard === undefined) throw new ShardNotFoundError(shardId);
    return shard;
  }

  /** The shard that owns `key`. */
  shardFor(key: Uint8Array): ShardDescriptor {
    return this.shards[this.indexFor(key)]!;
  }

  /** The shards that [start, end) touches (end empty = +∞), in key order; none for an empty interval. */
  shardsForInterval(start: Uint8Array, end: Uint8Array): ShardDescriptor[] {
    if (end.length > 0 && compareKeys(end, start) <= 0) return [];
    const touched: ShardDescriptor[] = [];
    for (let i = this.indexFor(start); i < this.shards.length; i++) {
      const shard = this.shards[i]!;
      if (end.length > 0 && compareKeys(shard.start, end) >= 0) break;
      touched.push(shard);
    }
    return touched;
  }

  /** The shards an etcd request with `key` and `range_end` touches, in key order (etcd's range_end rules, see `requestInterval`). */
  shardsForRequest(key: Uint8Array, rangeEnd: Uint8Array): ShardDescriptor[] {
    const interval = requestInterval(key, rangeEnd);
    return interval.empty ? [] : this.shardsForInterval(interval.start, interval.end);
  }

  /** The request's key range cut at shard boundaries: what to ask each shard, in key order. */
  piecesForRequest(key: Uint8Array, rangeEnd: Uint8Array): ShardPiece[] {
    const interval = requestInterval(key, rangeEnd);
    if (interval.empty) return [];
    return this.shardsForInterval(interval.start, interval.end).map((shard) => ({
      shard,
      start: compareKeys(shard.start, interval.start) > 0 ? shard.start : interval.start,
      end: compareEnds(shard.end, interval.end) < 0 ? shard.end : interval.end,
    }));
  }

  /**
   * Refuses a request routed with an old view of the map: the shard must still exist with the
   * same epoch and own all of [key, range_end) (etcd's rules; an empty range_end is the single
   * key). Admin requests that change replicas also pass the conf epoch they were computed with.
   * Throws StaleEpochError naming the shards that own the keys now.
   */
  checkRoute(
    route: ShardRoute & { readonly confEpoch?: number },
    key: Uint8Array,
    rangeEnd: Uint8Array,
  ): void {
    const shard = this.byId.get(route.shardId);
    const interval = requestInterval(key, rangeEnd);
    const owners = () =>
      (interval.empty ? [this.shardFor(key)] : this.shardsForInterval(interval.start, interval.end)).map(
        (s) => ({
          id: s.id,
          epoch: s.epoch,
        }),
      );
    if (shard === undefined) {
      throw new StaleEpochError(
        `shard ${route.shardId} no longer exists (split or merged away): re-route`,
        owners(),
      );
    }
    if (shard.epoch !== route.epoch) {
      throw new StaleEpochError(
        `shard ${route.shardId} is at epoch ${shard.epoch}, the request was routed at epoch ${route.epoch}: re-route`,
        owners(),
      );
    }
    if (route.confEpoch !== undefined && route.confEpoch !== shard.confEpoch) {
      throw new StaleEpochError(
        `shard ${route.shardId} is at conf epoch ${shard.confEpoch}, the request was made at conf epoch ${route.confEpoch}`,
        owners(),
      );
    }
    const inside =
      keyInRange(interval.start, shard.start, shard.end) &&
      (interval.empty || compareEnds(interval.end, shard.end) <= 0);
    if (!inside) {
      throw new StaleEpochError(
        `the keys from ${describeKey(key)} are not all in shard ${route.shardId}: re-route`,
        owners(),
      );
    }
  }

  /**
   * Splits a shard at `splitKey`: the left half keeps the shard's id and holds [start, splitKey),
   * the right half gets `nextShardId` and holds [splitKey, end). Both get epoch + 1 (so requests
   * routed at the old epoch to either are refused) and keep the replicas, conf epoch and leader.
   * The key must lie strictly inside the shard and must not cut a `{…}` tag group
   * (`alignBoundaryToTagGroup` moves a key to the nearest allowed boundary). With
   * `expectedEpoch`, the split is refused if the shard changed since the caller looked.
   */
  split(
    shardId: ShardId,
    splitKey: Uint8Array,
    expectedEpoch?: number,
  ): { map: ShardMap; left: ShardDescriptor; right: ShardDescriptor } {
    const shard = this.require(shardId);
    if (expectedEpoch !== undefined && expectedEpoch !== shard.epoch) {
      throw new StaleEpochError(
        `shard ${shardId} is at epoch ${shard.epoch}, not ${expectedEpoch}: re-plan the split`,
        [{ id: shard.id, epoch: shard.epoch }],
      );
    }
    if (compareKeys(splitKey, shard.start) <= 0 || !keyInRange(splitKey, shard.start, shard.end)) {
      throw new SplitKeyInvalidError(
        `split key ${describeKey(splitKey)} is not strictly inside shard ${shardId} ` +
          `[${describeKey(shard.start)}, ${shard.end.length === 0 ? '+inf' : describeKey(shard.end)})`,
      );
    }
    if (boundaryInsideTagGroup(splitKey)) {
      throw new SplitKeyInvalidError(
        `split key ${describeKey(splitKey)} is inside a {…} hash-tag group: split at the group's start instead`,
      );
    }
    // A plain copy: `slice` on a Buffer would share its memory with the caller.
    const boundary = new Uint8Array(splitKey);
    const left: ShardDescriptor = { ...shard, end: boundary, epoch: shard.epoch + 1 };
    const right: ShardDescriptor = {
      ...shard,
      id: this.nextShardId,
      start: boundary,
      epoch: shard.epoch + 1,
    };
    const index = this.indexOfId(shardId);
    const shards = [...this.shards.slice(0, index), left, right, ...this.shards.slice(index + 1)];
    return { map: ShardMap.fromShards(shards, this.nextShardId + 1), left, right };
  }

  /**
   * Merges a shard with its right neighbour into one shard that keeps the left id (the right id
   * is retired). Both must have the same replica set (the scheduler aligns replicas first, as
   * TiKV does). The result gets an epoch and a conf epoch above both (TiKV's PrepareMerge bumps
   * both), so requests and replica changes computed against either half are refused.
   */
  merge(leftId: ShardId, rightId: ShardId): { map: ShardMap; merged: ShardDescriptor } {
    const left = this.require(leftId);
    const right = this.require(rightId);
    if (!keysEqual(left.end, right.start) || left.end.length === 0) {
      throw new MergeInvalidError(
        `shard ${rightId} does not directly follow shard ${leftId}: only neighbours merge`,
      );
    }
    if (!sameReplicas(left.replicas, right.replicas)) {
      throw new MergeInvalidError(
        `shards ${leftId} and ${rightId} have different replicas: move them onto the same nodes before merging`,
      );
    }
    const merged: ShardDescriptor = {
      ...left,
      end: right.end,
      epoch: Math.max(left.epoch, right.epoch) + 1,
      confEpoch: Math.max(left.confEpoch, right.confEpoch) + 1,
    };
    const index = this.indexOfId(leftId);
    const shards = [...this.shards.slice(0, index), merged, ...this.shards.slice(index + 2)];
    return { map: ShardMap.fromShards(shards, this.nextShardId), merged };
  }

  /**
   * Replaces a shard's replica set after a membership change, as a compare-and-set on the conf
   * epoch the change was computed against; the conf epoch goes up by one. The leader hint is kept
   * only if that node is still a voter.
   */
  withReplicas(shardId: ShardId, replicas: readonly Replica[], expectedConfEpoch: number): ShardMap {
    const shard = this.require(shardId);
    if (shard.confEpoch !== expectedConfEpoch) {
      throw new ConfEpochMismatchError(shardId, expectedConfEpoch, shard.confEpoch);
    }
    const leaderStays = replicas.some((r) => r.node === shard.leaderHint && r.role === 'voter');
    return this.replace({
      ...shard,
      replicas: [...replicas],
      confEpoch: shard.confEpoch + 1,
      leaderHint: leaderStays ? shard.leaderHint : undefined,
    });
  }

  /** Records which node leads a shard (no epoch change: leadership does not change ownership). */
  withLeaderHint(shardId: ShardId, leader: NodeId | undefined): ShardMap {
    const shard = this.require(shardId);
    if (leader !== undefined && !shard.replicas.some((r) => r.node === leader && r.role === 'voter')) {
      throw new ShardMapInvariantError(
        `node ${leader} is not a voter of shard ${shardId} and cannot lead it`,
      );
    }
    return this.replace({ ...shard, leaderHint: leader });
  }

  private replace(shard: ShardDescriptor): ShardMap {
    const shards = this.shards.map((s) => (s.id === shard.id ? shard : s));
    return ShardMap.fromShards(shards, this.nextShardId);
  }

  /** Index of the last shard whose start is at or below `key` (binary search). */
  private indexFor(key: Uint8Array): number {
    let low = 0;
    let high = this.shards.length - 1;
    while (low < high) {
      const mid = (low + high + 1) >> 1;
      if (compareKeys(this.shards[mid]!.start, key) <= 0) low = mid;
      else high = mid - 1;
    }
    return low;
  }

  private indexOfId(shardId: ShardId): number {
    return this.indexFor(this.require(shardId).start);
  }
}

function sameReplicas(a: readonly Replica[], b: readonly Replica[]): boolean {
  if (a.length !== b.length) return false;
  const roles = new Map(a.map((r) => [r.node, r.role]));
  return b.every((r) => roles.get(r.node) === r.role);
}

function checkShards(shards: readonly ShardDescriptor[], nextShardId: ShardId): void {
  if (shards.length === 0) throw new ShardMapInvariantError('a shard map needs at least one shard');
  if (shards[0]!.start.length !== 0)
    throw new ShardMapInvariantError('the first shard must start at the empty key');
  if (shards[shards.length - 1]!.end.length !== 0) {
    throw new ShardMapInvariantError('the last shard must end at +inf (the empty key)');
  }
  const ids = new Set<ShardId>();
  let previous: ShardDescriptor | undefined;
  for (const shard of shards) {
    if (!Number.isSafeInteger(shard.id) || shard.id <= 0 || shard.id >= nextShardId) {
      throw new ShardMapInvariantError(
        `shard id ${shard.id} must be a positive integer below ${nextShardId}`,
      );
    }
    if (ids.has(shard.id)) throw new ShardMapInvariantError(`shard id ${shard.id} appears twice`);
    ids.add(shard.id);
    if (
      !Number.isSafeInteger(shard.epoch) ||
      shard.epoch < 1 ||
      !Number.isSafeInteger(shard.confEpoch) ||
      shard.confEpoch < 1
    ) {
      throw new ShardMapInvariantError(
        `shard ${shard.id} has epochs ${shard.epoch}/${shard.confEpoch}; both start at 1`,
      );
    }
    if (shard.end.length > 0 && compareKeys(shard.start, shard.end) >= 0) {
      throw new ShardMapInvariantError(`shard ${shard.id} is empty or reversed`);
    }
    if (previous !== undefined) {
      if (previous.end.length === 0 || !keysEqual(previous.end, shard.start)) {
        throw new ShardMapInvariantError(
          `shard ${shard.id} does not start where shard ${previous.id} ends (gap or overlap)`,
        );
      }
      if (boundaryInsideTagGroup(shard.start)) {
        throw new ShardMapInvariantError(`the boundary before shard ${shard.id} cuts a {…} hash-tag group`);
      }
    }
    const nodes = new Set(shard.replicas.map((r) => r.node));
    if (nodes.size !== shard.replicas.length) {
      throw new ShardMapInvariantError(`shard ${shard.id} lists a node twice in its replicas`);
    }
    if (
      shard.leaderHint !== undefined &&
      !shard.replicas.some((r) => r.node === shard.leaderHint && r.role === 'voter')
    ) {
      throw new ShardMapInvariantError(
        `shard ${shard.id}'s leader hint ${shard.leaderHint} is not one of its voters`,
      );
    }
    previous = shard;
  }
}
