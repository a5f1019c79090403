import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MessageType } from '../../src/raft/index.js';
import { READ_REQUESTS_BATCH_MAX } from '../../src/raft/read-index.js';
import { dec, enc, Network } from './helpers.js';

test('ReadIndex batching: N reads share one heartbeat round and are released together', () => {
  const net = new Network([1, 2, 3]);
  net.campaign(1);
  net.node(1).propose(enc('w'));
  net.stabilize();
  net.recordDelivered = true;
  const n = 100;
  for (let i = 0; i < n; i++) assert.deepEqual(net.node(1).readIndex(enc(`r${i}`)), { ok: true });
  assert.equal(net.peer(1).readStates.length, 0, 'not before a quorum confirmed leadership');
  net.stabilize();
  const states = net.peer(1).readStates;
  assert.equal(states.length, n);
  assert.deepEqual(
    states.map((s) => dec(s.context)),
    Array.from({ length: n }, (_, i) => `r${i}`),
  );
  const committed = net.node(1).committedIndex;
  assert.ok(states.every((s) => s.index === committed));
  const heartbeats = net.delivered.filter((m) => m.type === MessageType.Heartbeat);
  assert.equal(heartbeats.length, 2, 'one heartbeat per follower for the whole batch');
});

test('ReadIndex: a read is not released without a quorum of acknowledgements', () => {
  const net = new Network([1, 2, 3]);
  net.campaign(1);
  net.isolate(2);
  net.isolate(3);
  net.node(1).readIndex(enc('r'));
  net.tickAll(5);
  assert.equal(net.peer(1).readStates.length, 0);
  net.heal();
  net.tickAll(2);
  assert.equal(net.peer(1).readStates.length, 1);
});

test('ReadIndex: a new leader serves reads only after committing an entry of its term', () => {
  const net = new Network([1, 2, 3]);
  net.filters.push((m) => m.from === 1 && m.type === MessageType.Append);
  net.campaign(1);
  assert.equal(net.leader(), 1);
  const noopIndex = net.peer(1).storage.lastIndex();
  assert.ok(net.node(1).committedIndex < noopIndex);
  assert.deepEqual(net.node(1).readIndex(enc('early')), { ok: true });
  net.tickAll(3);
  assert.equal(net.peer(1).readStates.length, 0, 'queued until the no-op commits');
  net.heal();
  net.tickAll(3);
  const states = net.peer(1).readStates;
  assert.equal(states.length, 1);
  assert.ok(states[0]!.index >= noopIndex);
});

test('ReadIndex on a follower is forwarded to the leader and answered with its commit index', () => {
  const net = new Network([1, 2, 3]);
  net.campaign(1);
  net.node(1).propose(enc('w'));
  net.stabilize();
  assert.deepEqual(net.node(2).readIndex(enc('f')), { ok: true });
  net.stabilize();
  const states = net.peer(2).readStates;
  assert.equal(states.length, 1);
  assert.equal(dec(states[0]!.context), 'f');
  assert.equal(states[0]!.index, net.node(1).committedIndex);
});

test('ReadIndex without a known leader is refused', () => {
  const net = new Network([1, 2, 3]);
  assert.deepEqual(net.node(2).readIndex(enc('x')), { ok: false, reason: 'no-leader', leaderHint: 0 });
});

test('ReadIndex lease-based (with check-quorum): answered without a heartbeat round', () => {
  const net = new Network([1, 2, 3], { checkQuorum: true, readOnlyOption: 'lease-based' });
  const leader = net.electLeader();
  net.tickAll(1);
  net.recordDelivered = true;
  net.node(leader).readIndex(enc('lease'));
  net.processReady(leader);
  assert.equal(net.peer(leader).readStates.length, 1);
  assert.equal(net.delivered.length, 0);
});

test('ReadIndex lease-based: the lease lapses electionTicks after the last acknowledged heartbeat', () => {
  const net = new Network([1, 2, 3], { checkQuorum: true, readOnlyOption: 'lease-based' });
  const leader = net.electLeader();
  net.tickAll(1);
  net.isolate(leader);
  // Still leader (check-quorum has not fired yet) but followers may vote for others by now.
  for (let i = 0; i < 10; i++) net.tick(leader);
  net.stabilize();
  net.node(leader).readIndex(enc('late'));
  net.processReady(leader);
  assert.equal(
    net.peer(leader).readStates.length,
    0,
    'falls back to a heartbeat round, which cannot complete',
  );
});

test('lease-based: a restarted node refuses votes for one election timeout (it may have promised a lease)', () => {
  const net = new Network([1, 2, 3], { checkQuorum: true, readOnlyOption: 'lease-based' });
  const leader = net.electLeader();
  const other = [1, 2, 3].find((id) => id !== leader)!;
  const third = [1, 2, 3].find((id) => id !== leader && id !== other)!;
  net.crash(other);
  net.restart(other);
  net.isolate(leader);
  const term = net.term(third);
  net.campaign(third);
  assert.equal(net.term(other), term, 'the restarted node ignored the vote request');
  assert.notEqual(net.role(third), 'leader');
});

test('lease-based: no lease reads during a leader transfer', () => {
  const net = new Network([1, 2, 3], { checkQuorum: true, readOnlyOption: 'lease-based' });
  const leader = net.electLeader();
  net.tickAll(1);
  const target = leader === 1 ? 2 : 1;
  net.isolate(target);
  net.node(leader).transferLeadership(target);
  net.node(leader).readIndex(enc('during-transfer'));
  net.processReady(leader);
  assert.equal(net.peer(leader).readStates.length, 0);
});

test('ReadIndex lease-based is ignored without check-quorum (falls back to a heartbeat round)', () => {
  const net = new Network([1, 2, 3], { readOnlyOption: 'lease-based' });
  net.campaign(1);
  net.node(1).readIndex(enc('x'));
  net.processReady(1);
  assert.equal(net.peer(1).readStates.length, 0);
  net.stabilize();
  assert.equal(net.peer(1).readStates.length, 1);
});

test('ReadIndex in a single-voter cluster is answered at once', () => {
  const net = new Network([1]);
  net.campaign(1);
  net.node(1).readIndex(enc('solo'));
  net.processReady(1);
  assert.equal(net.peer(1).readStates.length, 1);
});

test('ReadIndex: the pending read queue is bounded (read-index-queue-full)', () => {
  const net = new Network([1, 2, 3]);
  net.campaign(1);
  const ctx = enc('r');
  for (let i = 0; i < READ_REQUESTS_BATCH_MAX; i++) assert.equal(net.node(1).readIndex(ctx).ok, true);
  assert.deepEqual(net.node(1).readIndex(ctx), { ok: false, reason: 'read-index-queue-full', leaderHint: 1 });
  net.stabilize();
  assert.equal(net.peer(1).readStates.length, READ_REQUESTS_BATCH_MAX);
  assert.equal(net.node(1).readIndex(ctx).ok, true, 'the queue drains with each round');
});
