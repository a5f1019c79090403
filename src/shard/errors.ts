// Typed errors of the sharding building blocks. `code` is stable (switch on it); messages say what
// went wrong and what the caller should do.

import type { NodeId, ShardId } from './types.js';

export type ShardErrorCode =
  | 'shard-map-invariant'
  | 'shard-not-found'
  | 'split-key-invalid'
  | 'merge-invalid'
  | 'conf-epoch-mismatch'
  | 'stale-epoch'
  | 'placement-invalid'
  | 'rebalance-invalid'
  | 'oracle-not-leader'
  | 'oracle-request-invalid'
  | 'revision-space-exhausted'
  | 'meta-command-invalid'
  | 'node-invalid'
  | 'node-exists'
  | 'node-not-found'
  | 'node-state-invalid'
  | 'node-in-use'
  | 'replica-change-invalid'
  | 'leader-hint-invalid'
  | 'pin-invalid'
  | 'compaction-revision-not-increasing'
  | 'replication-factor-invalid'
  | 'meta-state-invariant'
  | 'meta-snapshot-corrupt';

export abstract class ShardError extends Error {
  abstract readonly code: ShardErrorCode;
}

/** A shard map that does not cover the keyspace exactly once, in order: a bug, never user input. */
export class ShardMapInvariantError extends ShardError {
  readonly code = 'shard-map-invariant';
  constructor(message: string) {
    super(`shard map invariant violated: ${message}`);
  }
}

export class ShardNotFoundError extends ShardError {
  readonly code = 'shard-not-found';
  constructor(readonly shardId: ShardId) {
    super(`shard ${shardId} is not in the shard map`);
  }
}

/** A split key outside the shard, on its start, or inside a `{…}` hash-tag group. */
export class SplitKeyInvalidError extends ShardError {
  readonly code = 'split-key-invalid';
}

export class MergeInvalidError extends ShardError {
  readonly code = 'merge-invalid';
}

/** A replica change computed against an older replica set (compare-and-set on the conf epoch). */
export class ConfEpochMismatchError extends ShardError {
  readonly code = 'conf-epoch-mismatch';
  constructor(
    readonly shardId: ShardId,
    readonly expected: number,
    readonly actual: number,
  ) {
    super(`shard ${shardId} has conf epoch ${actual}, not ${expected}: re-read the shard map and retry`);
  }
}

/**
 * A request routed with a shard id and epoch the map no longer holds (the shard split, merged or
 * changed replicas since the router looked). The request was not executed; `current` lists the
 * shards that now own the request's keys, so the router can re-route without another lookup.
 */
export class StaleEpochError extends ShardError {
  readonly code = 'stale-epoch';
  constructor(
    message: string,
    readonly current: readonly { readonly id: ShardId; readonly epoch: number }[],
  ) {
    super(message);
  }
}

export class PlacementInvalidError extends ShardError {
  readonly code = 'placement-invalid';
}

export class RebalanceInvalidError extends ShardError {
  readonly code = 'rebalance-invalid';
}

/** The oracle is not (or no longer) the leader's: fetch revisions from the current leader. */
export class OracleNotLeaderError extends ShardError {
  readonly code = 'oracle-not-leader';
  constructor(readonly leaderHint?: NodeId) {
    super('the timestamp oracle is not served here (not the metadata leader): retry on the leader');
  }
}

export class OracleRequestInvalidError extends ShardError {
  readonly code = 'oracle-request-invalid';
}

/**
 * Handing out the requested revisions would pass the oracle's limit (2^53 − 1 by default, the
 * largest integer a JavaScript client can do exact arithmetic on). The cluster cannot take more
 * writes; nothing was handed out.
 */
export class RevisionSpaceExhaustedError extends ShardError {
  readonly code = 'revision-space-exhausted';
  constructor(
    readonly next: number,
    readonly count: number,
    readonly revisionMax: number,
  ) {
    super(
      `revision space exhausted: ${count} revision(s) from ${next} would pass the limit ${revisionMax} ` +
        '(revisions must stay exact JavaScript integers, below 2^53)',
    );
  }
}

// Refusals of the metadata group's state machine (meta-state.ts). Apply returns them, never throws
// them: a refused command changes nothing and the replica goes on.

/** A metadata entry that does not decode: unknown encoding version or tag, truncated, out-of-range field. */
export class MetaCommandInvalidError extends ShardError {
  readonly code = 'meta-command-invalid';
}

/** A node record that cannot be stored (id 0, no peer URL). */
export class NodeInvalidError extends ShardError {
  readonly code = 'node-invalid';
}

/** Adding a node whose id is taken, by a node in the cluster or one removed (ids are never reused). */
export class NodeExistsError extends ShardError {
  readonly code = 'node-exists';
  constructor(readonly nodeId: NodeId) {
    super(`node ${nodeId} already exists or was removed: node ids are never reused, pick a new one`);
  }
}

export class NodeNotFoundError extends ShardError {
  readonly code = 'node-not-found';
  constructor(readonly nodeId: NodeId) {
    super(`node ${nodeId} is not in the cluster`);
  }
}

/** The node's state does not allow this (updating a removed node, a replica on a draining node). */
export class NodeStateError extends ShardError {
  readonly code = 'node-state-invalid';
}

/**
 * Removing a node that still holds replicas or pins: drain it first (the scheduler moves its
 * replicas away) and unpin it, then remove it. `shards` lists what still holds it.
 */
export class NodeInUseError extends ShardError {
  readonly code = 'node-in-use';
  constructor(
    readonly nodeId: NodeId,
    readonly shards: readonly ShardId[],
    what: 'replicas' | 'pins',
  ) {
    super(
      what === 'replicas'
        ? `node ${nodeId} still holds replicas of shard(s) ${shards.join(', ')}: drain it and wait until they have moved`
        : `node ${nodeId} is still pinned by shard(s) ${shards.join(', ')}: unpin them first`,
    );
  }
}

/** A replica step that does not fit the shard's replicas (a learner twice, promoting a voter, the last voter). */
export class ReplicaChangeInvalidError extends ShardError {
  readonly code = 'replica-change-invalid';
}

export class LeaderHintInvalidError extends ShardError {
  readonly code = 'leader-hint-invalid';
}

export class PinInvalidError extends ShardError {
  readonly code = 'pin-invalid';
}

/** The cluster's compaction revision only goes up (etcd: "required revision has been compacted"). */
export class CompactionRevisionError extends ShardError {
  readonly code = 'compaction-revision-not-increasing';
  constructor(
    readonly requested: number,
    readonly current: number,
  ) {
    super(`compaction revision ${requested} is not above the current one (${current}): it only increases`);
  }
}

export class ReplicationFactorInvalidError extends ShardError {
  readonly code = 'replication-factor-invalid';
}

/** Metadata state that breaks its own rules (a replica on an unknown node, a pin on a retired shard): a bug. */
export class MetaStateInvariantError extends ShardError {
  readonly code = 'meta-state-invariant';
  constructor(message: string) {
    super(`metadata state invariant violated: ${message}`);
  }
}

/**
 * A metadata snapshot that fails its CRC, does not decode, or decodes to a state that breaks the
 * invariants. Unlike a bad command this is an error: the replica must not start from it.
 */
export class MetaSnapshotCorruptError extends ShardError {
  readonly code = 'meta-snapshot-corrupt';
  constructor(message: string) {
    super(`metadata snapshot is corrupt: ${message}`);
  }
}
