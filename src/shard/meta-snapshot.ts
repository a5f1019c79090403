// The metadata group's state as one snapshot payload, and back. The replica layer stores it in its
// snapshot file (which records the log index and term); this is only the state machine's part.
//
//   u8 format version (1)
//   uvarint version | replication factor | compaction revision | oracle mark
//   uvarint node count, then per node: u8 state | uvarint id | peer URLs | client URLs | host? | zone?
//   uvarint next shard id | uvarint shard count, then per shard in key order:
//     uvarint id | bytes start | bytes end | uvarint epoch | uvarint conf epoch
//     uvarint replica count, then per replica: uvarint node | u8 role (0 voter, 1 learner) | leader?
//   uvarint pin count, then per pin in shard id order: uvarint shard | uvarint count, node ids
//   u32 LE CRC32 (zlib) of every byte before it
//
// The encoding is canonical (nodes by id, shards in key order, pins by shard id), so
// decode → encode gives back the same bytes. A snapshot that fails its CRC, does not decode or
// breaks the state's invariants is refused with MetaSnapshotCorruptError: the replica must not
// start from it.

import { crc32 } from 'node:zlib';
import { type BinaryReader, BinaryWriter, DecodeError } from '../util/binary.js';
import { MetaSnapshotCorruptError, ShardError } from './errors.js';
import {
  decoding,
  readEnum,
  readInteger,
  readIntegers,
  readList,
  readNode,
  readOptionalInteger,
  writeIntegers,
  writeNode,
  writeOptionalInteger,
} from './meta-commands.js';
import { MetaState } from './meta-state.js';
import { type ShardDescriptor, ShardMap } from './shard-map.js';
import type { NodeId, Replica, ShardId } from './types.js';

export const META_SNAPSHOT_FORMAT_VERSION = 1;

const CRC_BYTES = 4;
const ROLES: readonly Replica['role'][] = ['voter', 'learner'];

export function encodeMetaSnapshot(state: MetaState): Uint8Array {
  const w = new BinaryWriter(1024).u8(META_SNAPSHOT_FORMAT_VERSION);
  w.uvarint(state.version)
    .uvarint(state.replicationFactor)
    .uvarint(state.compactionRevision)
    .uvarint(state.oracleMark);
  w.uvarint(state.nodes.length);
  for (const node of state.nodes) writeNode(w, node);
  w.uvarint(state.shardMap.nextShardId).uvarint(state.shardMap.shards.length);
  for (const shard of state.shardMap.shards) writeShard(w, shard);
  w.uvarint(state.pins.size);
  for (const [shardId, nodes] of state.pins) writeIntegers(w.uvarint(shardId), nodes);
  const body = w.finish();
  const out = new Uint8Array(body.length + CRC_BYTES);
  out.set(body);
  new DataView(out.buffer).setUint32(body.length, crc32(body), true);
  return out;
}

/** The state in a snapshot payload; throws MetaSnapshotCorruptError on anything but a valid one. */
export function decodeMetaSnapshot(payload: Uint8Array): MetaState {
  if (payload.length < 1 + CRC_BYTES) {
    throw new MetaSnapshotCorruptError(`${payload.length} bytes is shorter than any snapshot`);
  }
  const body = payload.subarray(0, payload.length - CRC_BYTES);
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  const stored = view.getUint32(body.length, true);
  const computed = crc32(body);
  if (stored !== computed) {
    throw new MetaSnapshotCorruptError(`CRC32 ${hex(computed)} does not match the stored ${hex(stored)}`);
  }
  const state = readSnapshotBody(body);
  try {
    return MetaState.fromFields(state);
  } catch (error) {
    if (error instanceof ShardError) throw new MetaSnapshotCorruptError(error.message);
    throw error;
  }
}

const readSnapshotBody = decoding('metadata snapshot', MetaSnapshotCorruptError, (r) => {
  const format = r.u8();
  if (format !== META_SNAPSHOT_FORMAT_VERSION) {
    throw new DecodeError(`unknown metadata snapshot format version ${format}`);
  }
  const version = readInteger(r);
  const replicationFactor = readInteger(r);
  const compactionRevision = readInteger(r);
  const oracleMark = readInteger(r);
  const nodes = readList(r, readNode);
  const nextShardId = readInteger(r);
  const shards = readList(r, readShard);
  const pinList = readList(r, (pr) => [readInteger(pr), readIntegers(pr)] as const);
  checkAscending(
    nodes.map((node) => node.id),
    'node ids',
  );
  checkAscending(
    pinList.map(([shardId]) => shardId),
    'pinned shard ids',
  );
  const pins = new Map<ShardId, readonly NodeId[]>(pinList);
  const shardMap = fromShards(shards, nextShardId);
  return { version, replicationFactor, compactionRevision, oracleMark, nodes, shardMap, pins };
});

/** ShardMap.fromShards, its invariant error reported as a corrupt snapshot. */
function fromShards(shards: readonly ShardDescriptor[], nextShardId: ShardId): ShardMap {
  try {
    return ShardMap.fromShards(shards, nextShardId);
  } catch (error) {
    if (error instanceof ShardError) throw new MetaSnapshotCorruptError(error.message);
    throw error;
  }
}

function writeShard(w: BinaryWriter, shard: ShardDescriptor): void {
  w.uvarint(shard.id).bytes(shard.start).bytes(shard.end).uvarint(shard.epoch).uvarint(shard.confEpoch);
  w.uvarint(shard.replicas.length);
  for (const replica of shard.replicas) w.uvarint(replica.node).u8(ROLES.indexOf(replica.role));
  writeOptionalInteger(w, shard.leaderHint);
}

function readShard(r: BinaryReader): ShardDescriptor {
  return {
    id: readInteger(r),
    start: r.bytes().slice(),
    end: r.bytes().slice(),
    epoch: readInteger(r),
    confEpoch: readInteger(r),
    replicas: readList(r, (rr) => ({ node: readInteger(rr), role: readEnum(rr, ROLES, 'replica role') })),
    leaderHint: readOptionalInteger(r),
  };
}

/** The encoding is canonical: a list out of order (or with a repeat) was not written by this code. */
function checkAscending(ids: readonly number[], what: string): void {
  for (let i = 1; i < ids.length; i++) {
    if (ids[i]! <= ids[i - 1]!) throw new DecodeError(`${what} are not in ascending order`);
  }
}

const hex = (value: number) => `0x${value.toString(16).padStart(8, '0')}`;
