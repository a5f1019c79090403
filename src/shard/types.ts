// The vocabulary shared by the sharding modules (plain data).

/** A member id, as Raft uses it (`raft/types.ts` NodeId is the same number). */
export type NodeId = number;

/** A shard id: unique in a cluster, never reused (a merged-away id stays retired). */
export type ShardId = number;

/** One replica of a shard on a node. Learners receive the log but do not vote. */
export interface Replica {
  readonly node: NodeId;
  readonly role: 'voter' | 'learner';
}
