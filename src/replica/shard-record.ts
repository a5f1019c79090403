// What a shard group's replica keeps about its own shard in the node's keyspace: the key range,
// the epoch (bumped by every split, as the metadata group's ShardMap does), the voters the group
// was founded with, and, for a group other than 1, the index it applied. Each record is a
// server meta record `shard.<id>` in the keyspace (written in the LMDB transaction of the entries
// that changed it); `shard.ids` lists the groups this member hosts besides group 1.
//
// Group 1 holds the whole keyspace until its first split and has no record until then; its
// applied index is the keyspace's own. A split is applied here (splitRecord), in the shard's own
// log, before the metadata group's map takes it.

import { boundaryInsideTagGroup, compareKeys, describeKey, keyInRange } from '../shard/keys.js';
import type { SplitOp } from './proposal.js';

export const SHARD_IDS_META_NAME = 'shard.ids';
/** The group that holds the cluster-wide etcd state (members, auth, leases, alarms). */
export const FIRST_SHARD_ID = 1;

export interface ShardRecord {
  id: number;
  start: Uint8Array;
  /** Exclusive; empty: +inf. */
  end: Uint8Array;
  epoch: number;
  /** The voters the group was founded with (group 1: empty, it has its own membership). */
  voters: number[];
  /** The last index the group applied (group 1: unused, the keyspace keeps it). */
  applied: number;
  /**
   * The split that made this shard: the shard it came from and that shard's epoch before it
   * (what the metadata group's splitShard compares). Absent for group 1.
   */
  parent?: { id: number; epoch: number };
  /**
   * The keyspace's revision when the split that made this shard applied: every revision the data
   * group handed out densely before the cluster had two shards is at or below it (the oracle's floor).
   */
  revisionAtSplit?: number;
  /**
   * The range end and epoch the split gave this shard, before its own splits changed them: what
   * a member that founds the group late (from its parent's snapshot) starts from, so replaying
   * the group's log gives the same record as everywhere else.
   */
  founding?: { end: Uint8Array; epoch: number };
}

/** The record a shard group starts from when a member founds it: as its split made it, nothing applied. */
export function foundingRecord(record: ShardRecord): ShardRecord {
  if (record.founding === undefined) return { ...record, applied: 0 };
  return { ...record, end: record.founding.end, epoch: record.founding.epoch, applied: 0 };
}

/** A split the shard's log refused (stale epoch, bad key): nothing changed. */
export class ShardSplitRefusedError extends Error {
  readonly code = 'shard-split-refused';
  constructor(message: string) {
    super(`concord: shard split refused: ${message}`);
    this.name = 'ShardSplitRefusedError';
  }
}

export function shardMetaName(id: number): string {
  return `shard.${id}`;
}

/** Group 1 before any split: the whole keyspace at epoch 1, as MetaState.bootstrap's shard 1. */
export function initialShardRecord(): ShardRecord {
  return {
    id: FIRST_SHARD_ID,
    start: new Uint8Array(0),
    end: new Uint8Array(0),
    epoch: 1,
    voters: [],
    applied: 0,
  };
}

export function encodeShardRecord(record: ShardRecord): Uint8Array {
  return Buffer.from(
    JSON.stringify({
      id: record.id,
      start: Buffer.from(record.start).toString('base64'),
      end: Buffer.from(record.end).toString('base64'),
      epoch: record.epoch,
      voters: record.voters,
      applied: record.applied,
      parent: record.parent,
      revisionAtSplit: record.revisionAtSplit,
      founding:
        record.founding === undefined
          ? undefined
          : { end: Buffer.from(record.founding.end).toString('base64'), epoch: record.founding.epoch },
    }),
  );
}

export function decodeShardRecord(data: Uint8Array): ShardRecord {
  const raw = JSON.parse(Buffer.from(data).toString()) as {
    id: number;
    start: string;
    end: string;
    epoch: number;
    voters: number[];
    applied: number;
    parent?: { id: number; epoch: number };
    revisionAtSplit?: number;
    founding?: { end: string; epoch: number };
  };
  return {
    id: raw.id,
    start: new Uint8Array(Buffer.from(raw.start, 'base64')),
    end: new Uint8Array(Buffer.from(raw.end, 'base64')),
    epoch: raw.epoch,
    voters: raw.voters,
    applied: raw.applied,
    ...(raw.parent === undefined ? {} : { parent: raw.parent }),
    ...(raw.revisionAtSplit === undefined ? {} : { revisionAtSplit: raw.revisionAtSplit }),
    ...(raw.founding === undefined
      ? {}
      : {
          founding: {
            end: new Uint8Array(Buffer.from(raw.founding.end, 'base64')),
            epoch: raw.founding.epoch,
          },
        }),
  };
}

export function encodeShardIds(ids: readonly number[]): Uint8Array {
  return Buffer.from(JSON.stringify([...ids].sort((a, b) => a - b)));
}

export function decodeShardIds(data: Uint8Array | undefined): number[] {
  return data === undefined ? [] : (JSON.parse(Buffer.from(data).toString()) as number[]);
}

/**
 * A split of `record` as `op` asks for: the two halves (both at epoch + 1, the right one founded
 * with `voters`), or why it is refused (another shard, another epoch, a key not strictly inside
 * the range or inside a {…} tag group) — the same rules as ShardMap.split, so the shard's log and
 * the metadata group's map agree.
 */
export function splitRecord(
  record: ShardRecord,
  op: SplitOp,
  voters: readonly number[],
  revision: number,
): { left: ShardRecord; right: ShardRecord } | { refused: string } {
  if (op.shardId !== record.id) return { refused: `the split is for shard ${op.shardId}, not ${record.id}` };
  if (op.expectedEpoch !== record.epoch)
    return { refused: `shard ${record.id} is at epoch ${record.epoch}, not ${op.expectedEpoch}` };
  if (compareKeys(op.splitKey, record.start) <= 0 || !keyInRange(op.splitKey, record.start, record.end))
    return { refused: `split key ${describeKey(op.splitKey)} is not strictly inside shard ${record.id}` };
  if (boundaryInsideTagGroup(op.splitKey))
    return { refused: `split key ${describeKey(op.splitKey)} is inside a {…} hash-tag group` };
  const key = new Uint8Array(op.splitKey);
  return {
    left: { ...record, end: key, epoch: record.epoch + 1 },
    right: {
      id: op.rightId,
      start: key,
      end: record.end,
      epoch: record.epoch + 1,
      voters: [...voters],
      applied: 0,
      parent: { id: record.id, epoch: record.epoch },
      revisionAtSplit: revision,
      founding: { end: record.end, epoch: record.epoch + 1 },
    },
  };
}
