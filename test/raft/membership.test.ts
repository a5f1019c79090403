import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  type ConfChange,
  decodeConfChange,
  EMPTY_BYTES,
  emptyConfState,
  encodeConfChange,
  Role,
} from '../../src/raft/index.js';
import { enc, Network } from './helpers.js';

const cc = (transition: ConfChange['transition'], changes: ConfChange['changes']): ConfChange => ({
  transition,
  changes,
  context: EMPTY_BYTES,
});

test('conf change encoding round-trips and rejects garbage', () => {
  const c: ConfChange = {
    transition: 'joint-explicit',
    changes: [
      { type: 'add-node', nodeId: 4 },
      { type: 'remove-node', nodeId: 2 ** 40 + 3 },
      { type: 'add-learner', nodeId: 300 },
    ],
    context: enc('http://127.0.0.1:2380'),
  };
  assert.deepEqual(decodeConfChange(encodeConfChange(c)), c);
  const empty = cc('auto', []);
  assert.deepEqual(decodeConfChange(encodeConfChange(empty)), empty);
  assert.throws(() => decodeConfChange(new Uint8Array([9, 0, 0, 0])), { code: 'RAFT_CONF_CHANGE_INVALID' });
  const truncated = encodeConfChange(c).slice(0, 5);
  assert.throws(() => decodeConfChange(truncated), { code: 'RAFT_CONF_CHANGE_INVALID' });
});

test('single-step add: a new empty node joins, receives the log and becomes a voter', () => {
  const net = new Network([1, 2, 3]);
  net.campaign(1);
  net.node(1).propose(enc('before'));
  net.stabilize();
  net.addPeer(4);
  assert.deepEqual(net.node(1).proposeConfChange(cc('auto', [{ type: 'add-node', nodeId: 4 }])), {
    ok: true,
  });
  net.stabilize();
  net.tickAll(3);
  for (const id of [1, 2, 3, 4]) assert.deepEqual(net.peer(id).confState.voters, [1, 2, 3, 4], `node ${id}`);
  assert.deepEqual(net.appliedData(4), ['before']);
});

test('only one conf change may be pending at a time', () => {
  const net = new Network([1, 2, 3]);
  net.campaign(1);
  net.isolate(2);
  net.isolate(3);
  assert.deepEqual(net.node(1).proposeConfChange(cc('auto', [{ type: 'add-learner', nodeId: 4 }])), {
    ok: true,
  });
  assert.deepEqual(net.node(1).proposeConfChange(cc('auto', [{ type: 'add-learner', nodeId: 5 }])), {
    ok: false,
    reason: 'conf-change-pending',
    leaderHint: 1,
  });
  net.heal();
  net.tickAll(3);
  assert.deepEqual(net.node(1).proposeConfChange(cc('auto', [{ type: 'add-learner', nodeId: 5 }])), {
    ok: true,
  });
});

test('several changes in one ConfChange go through joint consensus; leaving a non-joint config is refused', () => {
  const net = new Network([1, 2, 3]);
  const twoVoters = cc('auto', [
    { type: 'remove-node', nodeId: 2 },
    { type: 'remove-node', nodeId: 3 },
  ]);
  // Two changes in 'auto' mean joint consensus; a single 'auto' step replacing a voter is fine.
  assert.deepEqual(net.node(1).applyConfChange(twoVoters).votersOutgoing, [1, 2, 3]);
  const net2 = new Network([1, 2, 3]);
  assert.throws(() => net2.node(1).applyConfChange(cc('auto', [])), { code: 'RAFT_CONF_CHANGE_INVALID' });
});

test('joint consensus: enter (explicit), require both majorities, then leave with an empty change', () => {
  const net = new Network([1, 2, 3]);
  net.campaign(1);
  net.addPeer(4);
  net.addPeer(5);
  const change = cc('joint-explicit', [
    { type: 'add-node', nodeId: 4 },
    { type: 'add-node', nodeId: 5 },
    { type: 'remove-node', nodeId: 3 },
  ]);
  assert.deepEqual(net.node(1).proposeConfChange(change), { ok: true });
  net.stabilize();
  net.tickAll(2);
  for (const id of [1, 2, 4, 5]) {
    const cs = net.peer(id).confState;
    assert.deepEqual(cs.voters, [1, 2, 4, 5], `node ${id}`);
    assert.deepEqual(cs.votersOutgoing, [1, 2, 3], `node ${id}`);
  }
  // While joint, a new change other than leaving is refused.
  assert.equal(net.node(1).proposeConfChange(cc('auto', [{ type: 'add-learner', nodeId: 6 }])).ok, false);
  // Both halves must agree: with 4 and 5 down, {1,2} is a majority of the old set but not the new.
  net.crash(4);
  net.crash(5);
  const before = net.node(1).committedIndex;
  net.node(1).propose(enc('joint-write'));
  net.tickAll(3);
  assert.equal(net.node(1).committedIndex, before);
  net.restart(4);
  net.restart(5);
  net.tickAll(3);
  assert.ok(net.node(1).committedIndex > before);
  assert.deepEqual(net.node(1).proposeConfChange(cc('auto', [])), { ok: true });
  net.stabilize();
  net.tickAll(2);
  for (const id of [1, 2, 4, 5]) {
    const cs = net.peer(id).confState;
    assert.deepEqual(cs.voters, [1, 2, 4, 5]);
    assert.deepEqual(cs.votersOutgoing, []);
  }
});

test('joint consensus: implicit transition leaves the joint config automatically', () => {
  const net = new Network([1, 2, 3]);
  net.campaign(1);
  net.addPeer(4);
  net.node(1).proposeConfChange(
    cc('joint-implicit', [
      { type: 'add-node', nodeId: 4 },
      { type: 'add-learner', nodeId: 3 },
    ]),
  );
  net.stabilize();
  net.tickAll(3);
  for (const id of [1, 2, 3, 4]) {
    const cs = net.peer(id).confState;
    assert.deepEqual(cs.voters, [1, 2, 4], `node ${id}`);
    assert.deepEqual(cs.learners, [3], `node ${id}: demoted voter becomes a learner on leaving`);
    assert.deepEqual(cs.votersOutgoing, []);
    assert.equal(cs.autoLeave, false);
  }
});

test('joint consensus survives a leader crash mid-change (restart from persisted storage)', () => {
  const net = new Network([1, 2, 3]);
  net.campaign(1);
  net.addPeer(4);
  // The joint entry reaches only node 2 before the leader crashes.
  net.filters.push((m) => m.from === 1 && m.to !== 2);
  net.node(1).proposeConfChange(
    cc('joint-explicit', [
      { type: 'add-node', nodeId: 4 },
      { type: 'remove-node', nodeId: 3 },
    ]),
  );
  net.processReady(1);
  net.stabilize();
  net.crash(1);
  net.heal();
  for (let i = 0; i < 5 && net.role(2) !== Role.Leader; i++) net.campaign(2);
  assert.equal(net.role(2), Role.Leader);
  net.tickAll(3);
  for (const id of [2, 3, 4])
    assert.deepEqual(net.peer(id).confState.votersOutgoing, [1, 2, 3], `node ${id}`);
  net.restart(1);
  net.tickAll(3);
  assert.deepEqual(net.peer(1).confState.votersOutgoing, [1, 2, 3]);
  // The new leader crashes too; after restart, leaving the joint config still works.
  net.crash(2);
  net.restart(2);
  const leader = net.electLeader();
  assert.deepEqual(net.node(leader).proposeConfChange(cc('auto', [])), { ok: true });
  net.tickAll(5);
  for (const id of [1, 2, 4]) {
    assert.deepEqual(net.peer(id).confState.voters, [1, 2, 4], `node ${id}`);
    assert.deepEqual(net.peer(id).confState.votersOutgoing, []);
  }
});

test('learner receives the log but does not vote or count toward commit', () => {
  const net = new Network([1, 2], {}, [3]);
  net.campaign(1);
  net.node(1).propose(enc('a'));
  net.stabilize();
  assert.deepEqual(net.appliedData(3), ['a']);
  // The learner never campaigns.
  const term = net.term(3);
  net.isolate(3);
  net.tickAll(60);
  assert.equal(net.role(3), Role.Follower);
  assert.equal(net.term(3), term);
  net.heal();
  // With voter 2 down, leader + learner are not a quorum of {1, 2}.
  net.crash(2);
  const before = net.node(1).committedIndex;
  net.node(1).propose(enc('b'));
  net.tickAll(3);
  assert.equal(net.node(1).committedIndex, before);
});

test('learner promotion: the promoted node counts toward the quorum', () => {
  const net = new Network([1, 2], {}, [3]);
  net.campaign(1);
  net.node(1).proposeConfChange(cc('auto', [{ type: 'add-node', nodeId: 3 }]));
  net.stabilize();
  for (const id of [1, 2, 3]) {
    assert.deepEqual(net.peer(id).confState.voters, [1, 2, 3]);
    assert.deepEqual(net.peer(id).confState.learners, []);
  }
  net.crash(2);
  const before = net.node(1).committedIndex;
  net.node(1).propose(enc('b'));
  net.tickAll(3);
  assert.ok(net.node(1).committedIndex > before, '{1, 3} is a majority of {1, 2, 3}');
});

test('leader removal: the leader steps down once the config without it commits, the rest go on', () => {
  const net = new Network([1, 2, 3], { preVote: true, checkQuorum: true });
  net.campaign(1);
  net.node(1).proposeConfChange(cc('auto', [{ type: 'remove-node', nodeId: 1 }]));
  net.stabilize();
  assert.notEqual(net.role(1), Role.Leader);
  for (const id of [2, 3]) assert.deepEqual(net.peer(id).confState.voters, [2, 3]);
  net.crash(1);
  const leader = net.electLeader();
  assert.ok(leader === 2 || leader === 3);
  net.node(leader).propose(enc('after-removal'));
  net.stabilize();
  assert.deepEqual(net.appliedData(2), ['after-removal']);
  // The removed node never campaigns again.
  net.restart(1);
  const term = net.term(1);
  for (let i = 0; i < 50; i++) net.tick(1);
  assert.equal(net.role(1), Role.Follower);
  assert.ok(net.term(1) >= term);
});

test('an invalid conf change is refused at proposal time, not when it would be applied', () => {
  const net = new Network([1]);
  net.campaign(1);
  assert.deepEqual(net.node(1).proposeConfChange(cc('auto', [{ type: 'remove-node', nodeId: 1 }])), {
    ok: false,
    reason: 'invalid-conf-change',
    leaderHint: 1,
  });
  assert.deepEqual(net.node(1).proposeConfChange(cc('auto', [])), {
    ok: false,
    reason: 'invalid-conf-change',
    leaderHint: 1,
  });
});

test('removing all voters is refused', () => {
  const net = new Network([1]);
  assert.throws(() => net.node(1).applyConfChange(cc('auto', [{ type: 'remove-node', nodeId: 1 }])), {
    code: 'RAFT_CONF_CHANGE_INVALID',
  });
  assert.deepEqual(net.node(1).status().confState, { ...emptyConfState(), voters: [1] });
});

test('a node whose log holds its own removal cannot win with the old voter set (sim seed 8891)', () => {
  const net = new Network([1, 2, 3, 4, 5]);
  net.addPeer(6);
  net.campaign(2);
  const base = net.node(2).committedIndex;
  // Nodes 1 and 5 fall behind; node 3 gets the entries but never learns they committed.
  net.filters.push((m) => m.from === 2 && (m.to === 1 || m.to === 5));
  net.transforms.push((m) => (m.to === 3 ? { ...m, commit: Math.min(m.commit, base) } : m));
  net.node(2).proposeConfChange(
    cc('joint-implicit', [
      { type: 'add-node', nodeId: 6 },
      { type: 'remove-node', nodeId: 3 },
    ]),
  );
  net.stabilize();
  assert.deepEqual(net.peer(2).confState.voters, [1, 2, 4, 5, 6]);
  assert.deepEqual(net.peer(2).confState.votersOutgoing, [], 'joint entered and left');
  // E commits under the new config with {2, 4, 6}; node 3 does not get it.
  net.filters.push((m) => m.to === 3);
  net.node(2).propose(enc('E'));
  net.stabilize();
  assert.deepEqual(net.appliedData(2), ['E']);
  // The leader dies. Node 3 still applies the old config, and 1 and 5 would vote for it.
  net.crash(2);
  net.heal();
  net.transforms = [];
  net.campaign(3);
  assert.notEqual(net.role(3), Role.Leader, 'node 3 knows from its log that it was removed');
  const leader = net.electLeader();
  assert.notEqual(leader, 3);
  net.tickAll(5);
  for (const id of [1, 4, 5, 6]) assert.deepEqual(net.appliedData(id), ['E'], `node ${id}`);
});
