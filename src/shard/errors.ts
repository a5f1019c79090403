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
  | 'revision-space-exhausted';

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
