import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MessageType, Role } from '../../src/raft/index.js';
import { enc, Network } from './helpers.js';

test('leader transfer: an up-to-date target becomes leader in the next term', () => {
  const net = new Network([1, 2, 3], { preVote: true, checkQuorum: true });
  net.campaign(1);
  const term = net.term(1);
  net.node(1).transferLeadership(3);
  net.stabilize();
  assert.equal(net.leader(), 3);
  assert.equal(net.term(3), term + 1, 'TimeoutNow bypasses pre-vote and leader stickiness');
});

test('leader transfer: a lagging target is caught up first; proposals are dropped meanwhile', () => {
  const net = new Network([1, 2, 3]);
  net.campaign(1);
  net.crash(3);
  for (let i = 0; i < 10; i++) net.node(1).propose(enc(`e${i}`));
  net.stabilize();
  net.restart(3);
  net.node(1).transferLeadership(3);
  assert.deepEqual(net.node(1).propose(enc('during')), {
    ok: false,
    reason: 'leader-transfer-in-progress',
    leaderHint: 1,
  });
  assert.equal(net.node(1).status().leadTransferee, 3);
  net.tickAll(3);
  assert.equal(net.leader(), 3);
  assert.equal(net.appliedData(3).length, 10);
  assert.deepEqual(net.node(3).propose(enc('after')), { ok: true });
});

test('leader transfer: aborted when not done within an election timeout', () => {
  const net = new Network([1, 2, 3]);
  net.campaign(1);
  net.isolate(3);
  net.node(1).transferLeadership(3);
  assert.equal(net.node(1).status().leadTransferee, 3);
  for (let i = 0; i < 10; i++) {
    net.tick(1);
    net.stabilize();
  }
  assert.equal(net.node(1).status().leadTransferee, 0);
  assert.equal(net.leader(), 1);
  assert.deepEqual(net.node(1).propose(enc('ok-again')), { ok: true });
});

test('leader transfer: a request on a follower is forwarded to the leader', () => {
  const net = new Network([1, 2, 3]);
  net.campaign(1);
  net.node(2).transferLeadership(2);
  net.stabilize();
  assert.equal(net.leader(), 2);
});

test('leader transfer to a learner or to itself is ignored', () => {
  const net = new Network([1, 2], {}, [3]);
  net.campaign(1);
  net.recordDelivered = true;
  net.node(1).transferLeadership(3);
  net.node(1).transferLeadership(1);
  net.stabilize();
  assert.equal(net.leader(), 1);
  assert.equal(net.node(1).status().leadTransferee, 0);
  assert.ok(!net.delivered.some((m) => m.type === MessageType.TimeoutNow));
  assert.equal(net.role(3), Role.Follower);
});
