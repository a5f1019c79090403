// The metadata group's state machine, rule by rule: every command's result, every refusal with
// its stable code (and the state left exactly as it was), and the derived placement and plan.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decodeMetaCommand, encodeMetaCommand } from '../../src/shard/meta-commands.js';
import { MetaState } from '../../src/shard/meta-state.js';
import { REVISION_MAX } from '../../src/shard/oracle.js';
import { b, text } from './helpers.js';
import { accept, acceptAll, nodeAttributes, refuse, runPlan } from './meta-helpers.js';

/** Three founding nodes, replication factor 3. */
const founded = () => MetaState.bootstrap({ nodes: [1, 2, 3].map((id) => nodeAttributes(id)) });

const withNode4 = () => accept(founded(), { type: 'addNode', node: nodeAttributes(4) }).state;

/** Shard 1 split at "m": shard 1 = [, m), shard 2 = [m, ), both at epoch 2. */
const splitAtM = () =>
  accept(founded(), { type: 'splitShard', shardId: 1, expectedEpoch: 1, splitKey: b('m') }).state;

// Bootstrap

test('a new cluster has its founding nodes up and one shard over everything with a voter on each', () => {
  const state = MetaState.bootstrap({
    nodes: [3, 1, 2].map((id) => nodeAttributes(id)),
    replicationFactor: 3,
  });
  assert.deepEqual(
    state.nodes.map((n) => [n.id, n.state]),
    [
      [1, 'up'],
      [2, 'up'],
      [3, 'up'],
    ],
  );
  assert.equal(state.shardMap.shards.length, 1);
  const [shard] = state.shardMap.shards;
  assert.equal(shard!.id, 1);
  assert.equal(shard!.start.length + shard!.end.length, 0);
  assert.deepEqual(
    shard!.replicas.map((r) => [r.node, r.role]),
    [
      [1, 'voter'],
      [2, 'voter'],
      [3, 'voter'],
    ],
  );
  assert.equal(state.version, 0);
  assert.equal(state.oracleMark, 0);
  assert.equal(state.compactionRevision, 0);
  assert.equal(state.pins.size, 0);
});

test('bootstrap refuses no founding node, a repeated id and a bad replication factor', () => {
  assert.throws(() => MetaState.bootstrap({ nodes: [] }), { code: 'node-invalid' });
  assert.throws(() => MetaState.bootstrap({ nodes: [nodeAttributes(1), nodeAttributes(1)] }), {
    code: 'node-invalid',
  });
  assert.throws(() => MetaState.bootstrap({ nodes: [nodeAttributes(1)], replicationFactor: 0 }), {
    code: 'replication-factor-invalid',
  });
});

test('a cluster founded on more nodes than the replication factor plans its first shard down to it', () => {
  const state = MetaState.bootstrap({
    nodes: [1, 2, 3, 4, 5].map((id) => nodeAttributes(id)),
    replicationFactor: 3,
  });
  const after = runPlan(state);
  const voters = after.shardMap.require(1).replicas.filter((r) => r.role === 'voter');
  assert.equal(voters.length, 3);
  assert.deepEqual(after.plan().moves, [], 'the placement reached the target');
});

// Nodes

test('an added node is up; adding an id in use is refused', () => {
  const { state, result } = accept(founded(), {
    type: 'addNode',
    node: nodeAttributes(4, { host: 'rack-a', zone: 'z1' }),
  });
  assert.deepEqual(result, {
    type: 'node',
    node: { ...nodeAttributes(4, { host: 'rack-a', zone: 'z1' }), state: 'up' },
  });
  assert.equal(state.node(4)?.state, 'up');
  refuse(state, { type: 'addNode', node: nodeAttributes(4) }, 'node-exists');
});

test('a node id is never reused, even after the node was removed', () => {
  const state = acceptAll(withNode4(), [{ type: 'removeNode', nodeId: 4 }]);
  assert.equal(state.node(4)?.state, 'removed');
  refuse(state, { type: 'addNode', node: nodeAttributes(4) }, 'node-exists');
});

test('a node needs a positive id and a peer URL', () => {
  refuse(founded(), { type: 'addNode', node: nodeAttributes(0) }, 'node-invalid');
  refuse(founded(), { type: 'addNode', node: { ...nodeAttributes(5), peerUrls: [] } }, 'node-invalid');
});

test('updating a node changes its URLs, labels and up/draining state; an unknown or removed node is refused', () => {
  const updated = { ...nodeAttributes(2, { host: 'h', zone: 'z' }), clientUrls: ['http://new:2379'] };
  const { state } = accept(founded(), { type: 'updateNode', node: updated, state: 'draining' });
  assert.deepEqual(state.node(2), { ...updated, state: 'draining' });
  refuse(state, { type: 'updateNode', node: nodeAttributes(9), state: 'up' }, 'node-not-found');
  const removed = acceptAll(withNode4(), [{ type: 'removeNode', nodeId: 4 }]);
  refuse(removed, { type: 'updateNode', node: nodeAttributes(4), state: 'up' }, 'node-state-invalid');
});

test('removing a node that still holds replicas is refused, naming the shards', () => {
  const state = splitAtM();
  const applied = state.apply({ type: 'removeNode', nodeId: 2 });
  assert.equal(applied.outcome.ok, false);
  if (!applied.outcome.ok) {
    assert.equal(applied.outcome.refusal.code, 'node-in-use');
    assert.deepEqual((applied.outcome.refusal as unknown as { shards: number[] }).shards, [1, 2]);
  }
  refuse(state, { type: 'removeNode', nodeId: 2 }, 'node-in-use');
});

test('a node that held a learner only is still refused until the learner is removed', () => {
  const state = acceptAll(withNode4(), [
    { type: 'changeReplicas', shardId: 1, expectedConfEpoch: 1, step: 'add-learner', nodeId: 4 },
  ]);
  refuse(state, { type: 'removeNode', nodeId: 4 }, 'node-in-use');
  const drained = acceptAll(state, [
    { type: 'changeReplicas', shardId: 1, expectedConfEpoch: 2, step: 'remove', nodeId: 4 },
    { type: 'removeNode', nodeId: 4 },
  ]);
  assert.equal(drained.node(4)?.state, 'removed');
});

test('a drained node is removed once the plan has moved its replicas away', () => {
  let state = acceptAll(withNode4(), [{ type: 'updateNode', node: nodeAttributes(1), state: 'draining' }]);
  refuse(state, { type: 'removeNode', nodeId: 1 }, 'node-in-use');
  state = runPlan(state);
  assert.ok(!state.shardMap.require(1).replicas.some((r) => r.node === 1), 'node 1 holds nothing');
  const { state: after } = accept(state, { type: 'removeNode', nodeId: 1 });
  assert.equal(after.node(1)?.state, 'removed');
  refuse(after, { type: 'removeNode', nodeId: 1 }, 'node-state-invalid');
});

test('removing a pinned node is refused until it is unpinned', () => {
  const state = acceptAll(withNode4(), [{ type: 'pinShard', shardId: 1, nodes: [4] }]);
  refuse(state, { type: 'removeNode', nodeId: 4 }, 'node-in-use');
  acceptAll(state, [
    { type: 'unpinShard', shardId: 1 },
    { type: 'removeNode', nodeId: 4 },
  ]);
});

// Splits and merges

test('a split keeps the left id, gives the right the next id, and bumps both epochs', () => {
  const { state, result } = accept(founded(), {
    type: 'splitShard',
    shardId: 1,
    expectedEpoch: 1,
    splitKey: b('m'),
  });
  assert.equal(result.type, 'split');
  if (result.type === 'split') {
    assert.deepEqual([result.left.id, result.left.epoch, result.right.id, result.right.epoch], [1, 2, 2, 2]);
  }
  assert.equal(text(state.shardMap.shardFor(b('m')).start), 'm');
  assert.equal(state.shardMap.shardFor(b('a')).id, 1);
});

test('a stale split is refused (compare-and-set on the epoch)', () => {
  const state = splitAtM();
  refuse(state, { type: 'splitShard', shardId: 1, expectedEpoch: 1, splitKey: b('c') }, 'stale-epoch');
  accept(state, { type: 'splitShard', shardId: 1, expectedEpoch: 2, splitKey: b('c') });
});

test('a split inside a hash-tag group is refused; at the group start it is accepted', () => {
  refuse(
    founded(),
    { type: 'splitShard', shardId: 1, expectedEpoch: 1, splitKey: b('user{42}/name') },
    'split-key-invalid',
  );
  accept(founded(), { type: 'splitShard', shardId: 1, expectedEpoch: 1, splitKey: b('user{42}') });
});

test('a split key outside the shard or on its start is refused', () => {
  const state = splitAtM();
  refuse(state, { type: 'splitShard', shardId: 2, expectedEpoch: 2, splitKey: b('c') }, 'split-key-invalid');
  refuse(state, { type: 'splitShard', shardId: 2, expectedEpoch: 2, splitKey: b('m') }, 'split-key-invalid');
  refuse(
    founded(),
    { type: 'splitShard', shardId: 1, expectedEpoch: 1, splitKey: b('') },
    'split-key-invalid',
  );
});

test('splitting or merging an unknown shard is refused', () => {
  refuse(
    founded(),
    { type: 'splitShard', shardId: 7, expectedEpoch: 1, splitKey: b('m') },
    'shard-not-found',
  );
  refuse(
    founded(),
    { type: 'mergeShards', leftId: 1, leftEpoch: 1, rightId: 7, rightEpoch: 1 },
    'shard-not-found',
  );
});

test('a split copies the pin to both halves; a merge retires the right one with its pin', () => {
  let state = acceptAll(founded(), [
    { type: 'pinShard', shardId: 1, nodes: [2] },
    { type: 'splitShard', shardId: 1, expectedEpoch: 1, splitKey: b('m') },
  ]);
  assert.deepEqual(
    [...state.pins],
    [
      [1, [2]],
      [2, [2]],
    ],
  );
  state = acceptAll(state, [
    { type: 'pinShard', shardId: 2, nodes: [3] },
    { type: 'mergeShards', leftId: 1, leftEpoch: 2, rightId: 2, rightEpoch: 2 },
  ]);
  assert.deepEqual([...state.pins], [[1, [2]]]);
  assert.equal(state.shardMap.shards.length, 1);
  assert.equal(state.shardMap.require(1).epoch, 3);
});

test('a stale merge is refused (compare-and-set on both epochs)', () => {
  const state = splitAtM();
  refuse(state, { type: 'mergeShards', leftId: 1, leftEpoch: 1, rightId: 2, rightEpoch: 2 }, 'stale-epoch');
  refuse(state, { type: 'mergeShards', leftId: 1, leftEpoch: 2, rightId: 2, rightEpoch: 1 }, 'stale-epoch');
});

test('only neighbours with the same replicas merge', () => {
  const three = acceptAll(splitAtM(), [
    { type: 'splitShard', shardId: 2, expectedEpoch: 2, splitKey: b('t') },
  ]);
  refuse(three, { type: 'mergeShards', leftId: 1, leftEpoch: 2, rightId: 3, rightEpoch: 3 }, 'merge-invalid');
  refuse(three, { type: 'mergeShards', leftId: 2, leftEpoch: 3, rightId: 1, rightEpoch: 2 }, 'merge-invalid');
  const apart = acceptAll(three, [
    { type: 'changeReplicas', shardId: 2, expectedConfEpoch: 1, step: 'remove', nodeId: 3 },
  ]);
  refuse(apart, { type: 'mergeShards', leftId: 1, leftEpoch: 2, rightId: 2, rightEpoch: 3 }, 'merge-invalid');
});

// Replica changes

test('a replica move runs as add learner, promote, remove, each bumping the conf epoch', () => {
  let state = withNode4();
  const step = (kind: 'add-learner' | 'promote' | 'remove', nodeId: number, confEpoch: number) =>
    accept(state, { type: 'changeReplicas', shardId: 1, expectedConfEpoch: confEpoch, step: kind, nodeId });
  state = step('add-learner', 4, 1).state;
  assert.deepEqual(state.shardMap.require(1).replicas.at(-1), { node: 4, role: 'learner' });
  state = step('promote', 4, 2).state;
  assert.deepEqual(state.shardMap.require(1).replicas.at(-1), { node: 4, role: 'voter' });
  const { state: after, result } = step('remove', 1, 3);
  assert.equal(result.type === 'shard' && result.shard.confEpoch, 4);
  assert.deepEqual(
    after.shardMap.require(1).replicas.map((r) => r.node),
    [2, 3, 4],
  );
});

test('a replica change computed against an old conf epoch is refused (compare-and-set)', () => {
  const state = acceptAll(withNode4(), [
    { type: 'changeReplicas', shardId: 1, expectedConfEpoch: 1, step: 'add-learner', nodeId: 4 },
  ]);
  refuse(
    state,
    { type: 'changeReplicas', shardId: 1, expectedConfEpoch: 1, step: 'promote', nodeId: 4 },
    'conf-epoch-mismatch',
  );
  refuse(
    state,
    { type: 'changeReplicas', shardId: 1, expectedConfEpoch: 3, step: 'promote', nodeId: 4 },
    'conf-epoch-mismatch',
  );
});

test('a replica step that does not fit the shard is refused', () => {
  const state = withNode4();
  const change = (step: 'add-learner' | 'promote' | 'remove', nodeId: number) =>
    ({ type: 'changeReplicas', shardId: 1, expectedConfEpoch: 1, step, nodeId }) as const;
  refuse(state, change('add-learner', 1), 'replica-change-invalid');
  refuse(state, change('promote', 1), 'replica-change-invalid');
  refuse(state, change('promote', 4), 'replica-change-invalid');
  refuse(state, change('remove', 4), 'replica-change-invalid');
  refuse(state, change('add-learner', 9), 'node-not-found');
});

test('the last voter of a shard cannot be removed', () => {
  const single = MetaState.bootstrap({ nodes: [nodeAttributes(1), nodeAttributes(2)], replicationFactor: 1 });
  const state = acceptAll(single, [
    { type: 'changeReplicas', shardId: 1, expectedConfEpoch: 1, step: 'remove', nodeId: 2 },
  ]);
  refuse(
    state,
    { type: 'changeReplicas', shardId: 1, expectedConfEpoch: 2, step: 'remove', nodeId: 1 },
    'replica-change-invalid',
  );
});

test('a draining node receives no new replica and is not promoted', () => {
  const state = acceptAll(withNode4(), [
    { type: 'changeReplicas', shardId: 1, expectedConfEpoch: 1, step: 'add-learner', nodeId: 4 },
    { type: 'updateNode', node: nodeAttributes(4), state: 'draining' },
  ]);
  refuse(
    state,
    { type: 'changeReplicas', shardId: 1, expectedConfEpoch: 2, step: 'promote', nodeId: 4 },
    'node-state-invalid',
  );
  const other = acceptAll(founded(), [
    { type: 'addNode', node: nodeAttributes(5) },
    { type: 'updateNode', node: nodeAttributes(5), state: 'draining' },
  ]);
  refuse(
    other,
    { type: 'changeReplicas', shardId: 1, expectedConfEpoch: 1, step: 'add-learner', nodeId: 5 },
    'node-state-invalid',
  );
});

// Leader hints and pins

test('the leader hint names a voter; removing that voter clears it', () => {
  const state = acceptAll(withNode4(), [
    { type: 'setLeaderHint', shardId: 1, leader: 2 },
    { type: 'changeReplicas', shardId: 1, expectedConfEpoch: 1, step: 'add-learner', nodeId: 4 },
  ]);
  assert.equal(state.shardMap.require(1).leaderHint, 2);
  refuse(state, { type: 'setLeaderHint', shardId: 1, leader: 4 }, 'leader-hint-invalid');
  refuse(state, { type: 'setLeaderHint', shardId: 1, leader: 9 }, 'leader-hint-invalid');
  const after = acceptAll(state, [
    { type: 'changeReplicas', shardId: 1, expectedConfEpoch: 2, step: 'remove', nodeId: 2 },
  ]);
  assert.equal(after.shardMap.require(1).leaderHint, undefined);
  assert.equal(
    accept(after, { type: 'setLeaderHint', shardId: 1, leader: undefined }).state.version,
    after.version + 1,
  );
});

test('a pin names 1 to replication-factor up nodes on distinct hosts', () => {
  const state = acceptAll(founded(), [
    { type: 'addNode', node: nodeAttributes(4, { host: 'box' }) },
    { type: 'addNode', node: nodeAttributes(5, { host: 'box' }) },
    { type: 'addNode', node: nodeAttributes(6) },
    { type: 'updateNode', node: nodeAttributes(6), state: 'draining' },
  ]);
  refuse(state, { type: 'pinShard', shardId: 1, nodes: [] }, 'pin-invalid');
  refuse(state, { type: 'pinShard', shardId: 1, nodes: [1, 2, 3, 4] }, 'pin-invalid');
  refuse(state, { type: 'pinShard', shardId: 1, nodes: [4, 5] }, 'pin-invalid');
  refuse(state, { type: 'pinShard', shardId: 1, nodes: [1, 1] }, 'pin-invalid');
  refuse(state, { type: 'pinShard', shardId: 1, nodes: [9] }, 'node-not-found');
  refuse(state, { type: 'pinShard', shardId: 1, nodes: [6] }, 'node-state-invalid');
  refuse(state, { type: 'pinShard', shardId: 9, nodes: [1] }, 'shard-not-found');
  refuse(state, { type: 'unpinShard', shardId: 1 }, 'pin-invalid');
  const { state: pinned, result } = accept(state, { type: 'pinShard', shardId: 1, nodes: [4, 1] });
  assert.deepEqual(result, { type: 'pin', shardId: 1, nodes: [4, 1] });
  assert.deepEqual(pinned.targetPlacement().replicas.get(1)!.slice(0, 2), [4, 1]);
});

test('a pin on a node that has since drained is ignored by the target placement', () => {
  const state = acceptAll(withNode4(), [
    { type: 'pinShard', shardId: 1, nodes: [4] },
    { type: 'updateNode', node: nodeAttributes(4), state: 'draining' },
  ]);
  assert.ok(!state.targetPlacement().replicas.get(1)!.includes(4));
});

test('a pin whose nodes have since been labelled one host keeps the first of them', () => {
  const state = acceptAll(withNode4(), [
    { type: 'pinShard', shardId: 1, nodes: [4, 2] },
    { type: 'updateNode', node: nodeAttributes(4, { host: 'box' }), state: 'up' },
    { type: 'updateNode', node: nodeAttributes(2, { host: 'box' }), state: 'up' },
  ]);
  const target = state.targetPlacement().replicas.get(1)!;
  assert.equal(target[0], 4);
  assert.ok(!target.includes(2), 'no two replicas on host "box"');
});

// Oracle mark, compaction revision, replication factor

test('the oracle mark never decreases: a lower raise is accepted and keeps the higher mark', () => {
  let state = accept(founded(), { type: 'raiseOracleMark', mark: 100 }).state;
  const { state: after, result } = accept(state, { type: 'raiseOracleMark', mark: 50 });
  assert.deepEqual(result, { type: 'oracleMark', mark: 100 });
  assert.equal(after.oracleMark, 100);
  state = accept(after, { type: 'raiseOracleMark', mark: 101 }).state;
  assert.equal(state.oracleMark, 101);
  refuse(state, { type: 'raiseOracleMark', mark: REVISION_MAX + 1 }, 'oracle-request-invalid');
});

test('the compaction revision never decreases: an equal or lower one is refused', () => {
  const state = accept(founded(), { type: 'setCompactionRevision', revision: 10 }).state;
  refuse(state, { type: 'setCompactionRevision', revision: 5 }, 'compaction-revision-not-increasing');
  refuse(state, { type: 'setCompactionRevision', revision: 10 }, 'compaction-revision-not-increasing');
  assert.equal(accept(state, { type: 'setCompactionRevision', revision: 11 }).state.compactionRevision, 11);
});

test('the replication factor is 1 to 7 and not below a pin', () => {
  refuse(founded(), { type: 'setReplicationFactor', replicationFactor: 0 }, 'replication-factor-invalid');
  refuse(founded(), { type: 'setReplicationFactor', replicationFactor: 8 }, 'replication-factor-invalid');
  const pinned = acceptAll(founded(), [{ type: 'pinShard', shardId: 1, nodes: [1, 2] }]);
  refuse(pinned, { type: 'setReplicationFactor', replicationFactor: 1 }, 'replication-factor-invalid');
  assert.equal(
    accept(pinned, { type: 'setReplicationFactor', replicationFactor: 2 }).state.replicationFactor,
    2,
  );
});

// Entries that do not decode

test('an entry that does not decode is refused as meta-command-invalid and changes nothing', () => {
  const state = founded();
  const valid = encodeMetaCommand({ type: 'raiseOracleMark', mark: 5 });
  const bad = [
    new Uint8Array(0),
    Uint8Array.of(2, ...valid.subarray(1)), // unknown encoding version
    Uint8Array.of(1, 200), // unknown tag
    Uint8Array.of(...valid, 0), // trailing byte
    valid.subarray(0, 2), // truncated
    Uint8Array.of(1, 10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f), // mark above 2^53
    Uint8Array.of(1, 2, 2, 1), // update that sets a node removed
    Uint8Array.of(1, 1, 5, 1, 2, 0xc3, 0x28), // a peer URL that is not UTF-8
  ];
  for (const payload of bad) {
    const applied = state.applyEntry(payload);
    assert.equal(applied.state, state);
    assert.equal(applied.outcome.ok, false);
    if (!applied.outcome.ok) assert.equal(applied.outcome.refusal.code, 'meta-command-invalid');
  }
  assert.equal(state.applyEntry(valid).state.oracleMark, 5);
});

// Derived views

test('the target placement uses up nodes only, and the plan moves replicas off a draining node', () => {
  const state = acceptAll(withNode4(), [{ type: 'updateNode', node: nodeAttributes(2), state: 'draining' }]);
  assert.deepEqual([...state.targetPlacement().replicas.get(1)!].sort(), [1, 3, 4]);
  const { moves } = state.plan();
  assert.deepEqual(
    moves.map((m) => [m.from, m.to]),
    [[2, 4]],
  );
  const after = runPlan(state);
  assert.deepEqual(
    after.shardMap
      .require(1)
      .replicas.map((r) => r.node)
      .sort(),
    [1, 3, 4],
  );
});

test('with fewer up hosts than the replication factor the plan aims for one replica per host', () => {
  const state = acceptAll(founded(), [
    { type: 'updateNode', node: nodeAttributes(2, { host: 'box' }), state: 'up' },
    { type: 'updateNode', node: nodeAttributes(3, { host: 'box' }), state: 'up' },
  ]);
  const plan = state.plan();
  assert.deepEqual(plan.placement.underReplicated, [1]);
  assert.equal(runPlan(state).shardMap.require(1).replicas.length, 2);
});

test('with no up node the plan is empty', () => {
  const state = acceptAll(MetaState.bootstrap({ nodes: [nodeAttributes(1)], replicationFactor: 1 }), [
    { type: 'updateNode', node: nodeAttributes(1), state: 'draining' },
  ]);
  assert.deepEqual(state.plan().moves, []);
});

test('a new node gets a share of the replicas through the plan', () => {
  let state = founded();
  for (const key of ['d', 'h', 'm', 'r', 'w']) {
    const shard = state.shardMap.shardFor(b(key));
    state = accept(state, {
      type: 'splitShard',
      shardId: shard.id,
      expectedEpoch: shard.epoch,
      splitKey: b(key),
    }).state;
  }
  state = runPlan(acceptAll(state, [{ type: 'addNode', node: nodeAttributes(4) }]));
  const { loads, loadMax } = state.targetPlacement();
  for (const node of [1, 2, 3, 4]) {
    const held = state.shardMap.shards.filter((s) => s.replicas.some((r) => r.node === node)).length;
    assert.equal(held, loads.get(node), `node ${node} holds what the placement says`);
    assert.ok(held <= loadMax, `node ${node} holds ${held}, above the bound ${loadMax}`);
  }
  assert.ok(loads.get(4)! > 0, 'the new node holds replicas');
  assert.deepEqual(state.plan().moves, []);
});

test('a label that starts with U+FEFF reads back unchanged', () => {
  const command = {
    type: 'addNode',
    node: { id: 9, peerUrls: ['http://a'], clientUrls: [], host: '\uFEFFrack-1', zone: '\uFEFF' },
  } as const;
  assert.deepEqual(decodeMetaCommand(encodeMetaCommand(command)), command);
});
