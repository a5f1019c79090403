// The metadata snapshot: an exact round trip, and every kind of corruption (CRC, truncation,
// unknown format, a body that breaks the state's invariants) refused with meta-snapshot-corrupt.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { crc32 } from 'node:zlib';
import fc from 'fast-check';
import { MetaSnapshotCorruptError } from '../../src/shard/errors.js';
import { decodeMetaSnapshot, encodeMetaSnapshot } from '../../src/shard/meta-snapshot.js';
import { MetaState } from '../../src/shard/meta-state.js';
import { BinaryWriter } from '../../src/util/binary.js';
import { b } from './helpers.js';
import { acceptAll, nodeAttributes } from './meta-helpers.js';

/** A state using every field: labels, a draining node, a removed one, splits, a learner, a leader, pins. */
function busyState(): MetaState {
  return acceptAll(MetaState.bootstrap({ nodes: [1, 2, 3].map((id) => nodeAttributes(id)) }), [
    { type: 'addNode', node: nodeAttributes(4, { host: 'rack-a', zone: 'eu-1' }) },
    { type: 'addNode', node: nodeAttributes(5, { zone: 'eu-2' }) },
    { type: 'addNode', node: nodeAttributes(6) },
    { type: 'updateNode', node: nodeAttributes(5, { zone: 'eu-2' }), state: 'draining' },
    { type: 'removeNode', nodeId: 6 },
    { type: 'splitShard', shardId: 1, expectedEpoch: 1, splitKey: b('m') },
    { type: 'splitShard', shardId: 2, expectedEpoch: 2, splitKey: b('user{7}') },
    { type: 'changeReplicas', shardId: 2, expectedConfEpoch: 1, step: 'add-learner', nodeId: 4 },
    { type: 'setLeaderHint', shardId: 1, leader: 3 },
    { type: 'pinShard', shardId: 3, nodes: [4, 1] },
    { type: 'pinShard', shardId: 1, nodes: [2] },
    { type: 'raiseOracleMark', mark: 2 ** 40 },
    { type: 'setCompactionRevision', revision: 77 },
    { type: 'setReplicationFactor', replicationFactor: 5 },
  ]);
}

function withCrc(body: Uint8Array): Uint8Array {
  const out = new Uint8Array(body.length + 4);
  out.set(body);
  new DataView(out.buffer).setUint32(body.length, crc32(body), true);
  return out;
}

/** A hand-written snapshot body: one node (`nodeId`), one shard with a voter on `replicaNode`. */
function handBody(options: { format?: number; nodeIds?: number[]; replicaNode?: number } = {}): Uint8Array {
  const w = new BinaryWriter().u8(options.format ?? 1);
  w.uvarint(0).uvarint(3).uvarint(0).uvarint(0); // version, replication factor, compaction, mark
  const nodeIds = options.nodeIds ?? [1];
  w.uvarint(nodeIds.length);
  for (const id of nodeIds) w.u8(0).uvarint(id).strings(['http://p']).strings([]).u8(0).u8(0);
  w.uvarint(2).uvarint(1); // next shard id, one shard
  w.uvarint(1).bytes(new Uint8Array(0)).bytes(new Uint8Array(0)).uvarint(1).uvarint(1);
  w.uvarint(1)
    .uvarint(options.replicaNode ?? 1)
    .u8(0)
    .u8(0); // one voter, no leader
  w.uvarint(0); // no pins
  return w.finish();
}

const corrupt = { code: 'meta-snapshot-corrupt' };

test('a snapshot round-trips exactly: the same state, and the same bytes again', () => {
  const state = busyState();
  const bytes = encodeMetaSnapshot(state);
  const restored = decodeMetaSnapshot(bytes);
  assert.deepEqual(encodeMetaSnapshot(restored), bytes);
  assert.deepEqual(restored.nodes, state.nodes);
  assert.deepEqual(restored.shardMap.shards, state.shardMap.shards);
  assert.equal(restored.shardMap.nextShardId, state.shardMap.nextShardId);
  assert.deepEqual([...restored.pins], [...state.pins]);
  for (const field of ['compactionRevision', 'oracleMark', 'replicationFactor', 'version'] as const) {
    assert.equal(restored[field], state[field], field);
  }
  assert.deepEqual(restored.plan(), state.plan(), 'the derived views agree');
});

test('a hand-written snapshot in the documented format decodes', () => {
  const state = decodeMetaSnapshot(withCrc(handBody()));
  assert.deepEqual(state.shardMap.require(1).replicas, [{ node: 1, role: 'voter' }]);
  assert.deepEqual(encodeMetaSnapshot(state), withCrc(handBody()));
});

test('a snapshot whose CRC does not match is refused, whichever byte changed', () => {
  const bytes = encodeMetaSnapshot(busyState());
  for (let i = 0; i < bytes.length; i++) {
    const flipped = bytes.slice();
    flipped[i]! ^= 0x10;
    assert.throws(() => decodeMetaSnapshot(flipped), corrupt, `byte ${i}`);
  }
});

test('a truncated snapshot is refused', () => {
  const bytes = encodeMetaSnapshot(busyState());
  for (const length of [0, 3, 5, bytes.length - 1]) {
    assert.throws(() => decodeMetaSnapshot(bytes.subarray(0, length)), corrupt);
  }
  const body = bytes.subarray(0, bytes.length - 4);
  assert.throws(() => decodeMetaSnapshot(withCrc(body.subarray(0, body.length - 1))), corrupt);
});

test('an unknown format version is refused even with a valid CRC', () => {
  assert.throws(() => decodeMetaSnapshot(withCrc(handBody({ format: 2 }))), /format version 2/);
});

test('a snapshot whose state breaks the invariants is refused even with a valid CRC', () => {
  assert.throws(() => decodeMetaSnapshot(withCrc(handBody({ replicaNode: 2 }))), /replica on node 2/);
  assert.throws(() => decodeMetaSnapshot(withCrc(handBody({ nodeIds: [2, 1] }))), /ascending/);
  assert.throws(() => decodeMetaSnapshot(withCrc(handBody({ nodeIds: [1, 1] }))), corrupt);
});

test('decoding random bytes fails only with MetaSnapshotCorruptError', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 128 }), fc.boolean(), (bytes, fixCrc) => {
      const payload = fixCrc ? withCrc(Uint8Array.of(1, ...bytes)) : bytes;
      try {
        decodeMetaSnapshot(payload);
      } catch (error) {
        assert.ok(error instanceof MetaSnapshotCorruptError, String(error));
      }
    }),
    { numRuns: 3000 },
  );
});
