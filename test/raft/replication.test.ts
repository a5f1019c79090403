import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type Message, MessageType, Role } from '../../src/raft/index.js';
import { dec, enc, Network } from './helpers.js';

test('figure 8: an entry of an older term replicated on a majority is not committed by counting', () => {
  const net = new Network([1, 2, 3, 4, 5]);
  // (a) S1 leads term 2 and gets X (index 3, term 2) only onto S2.
  net.campaign(1);
  assert.equal(net.term(1), 2);
  net.filters.push((m) => m.from === 1 && [3, 4, 5].includes(m.to));
  net.node(1).propose(enc('X'));
  net.stabilize();
  assert.equal(net.node(1).committedIndex, 2);
  // (b) S1 is cut off; S5 wins term 3 with S3, S4 and appends Y at index 3, which reaches nobody.
  net.heal();
  net.crash(1);
  net.filters.push(
    (m) => m.from === 5 && (m.type === MessageType.Append || m.type === MessageType.Heartbeat),
  );
  net.campaign(5);
  assert.equal(net.role(5), Role.Leader);
  assert.equal(net.term(5), 3);
  // (c) S5 is cut off; S1 wins term 4 and replicates X to S3 (and S4), but not its term-4 no-op.
  net.heal();
  net.restart(1);
  net.crash(5);
  net.transforms.push((m: Message) =>
    m.type === MessageType.Append ? { ...m, entries: m.entries.filter((e) => e.index < 4) } : m,
  );
  for (let i = 0; i < 5 && net.role(1) !== Role.Leader; i++) net.campaign(1);
  assert.equal(net.role(1), Role.Leader);
  assert.equal(net.term(1), 4);
  const progress = net.node(1).status().progress!;
  for (const id of [2, 3, 4]) assert.equal(progress.get(id)!.match, 3, `S${id} holds X`);
  assert.equal(net.node(1).committedIndex, 2, 'X is on 4 of 5 nodes but from term 2: not committed');
  // (d) S1 crashes; S5 can still win (its last term 3 beats term 2) and overwrites X with Y.
  net.crash(1);
  net.restart(5);
  net.transforms = [];
  for (let i = 0; i < 5 && net.role(5) !== Role.Leader; i++) net.campaign(5);
  assert.equal(net.role(5), Role.Leader);
  net.tickAll(3);
  for (const id of [2, 3, 4, 5]) {
    assert.equal(net.peer(id).storage.term(3), 3, `S${id} index 3 is Y (term 3)`);
    assert.ok(!net.appliedData(id).includes('X'), `S${id} never applied X`);
  }
});

test('commit counts the leader itself only once its entries are durable (advance), not when appended', () => {
  const net = new Network([1, 2, 3]);
  net.campaign(1);
  net.isolate(3);
  const leader = net.node(1);
  const committed = leader.committedIndex;
  leader.propose(enc('a'));
  const rd = leader.ready();
  assert.equal(rd.entries.length, 1);
  // Node 2 gets the append and acknowledges while the leader's own write is still in flight.
  for (const m of rd.messages) net.send(m);
  while (net.deliverOne()) {}
  net.processReady(2);
  for (const m of net.takeQueue()) if (m.to === 1) leader.step(m);
  // Node 2's ack + the leader's non-durable copy must not count: only 1 durable of 3.
  assert.equal(leader.committedIndex, committed);
  net.peer(1).storage.append(rd.entries);
  leader.advance(rd);
  assert.equal(leader.committedIndex, committed + 1);
});

test('follower append responses and votes are only sent after persisting (messagesAfterPersist)', () => {
  const net = new Network([1, 2, 3]);
  net.campaign(1);
  net.node(1).propose(enc('a'));
  net.processReady(1);
  const appends = net.takeQueue().filter((m) => m.to === 2);
  assert.ok(appends.length > 0);
  for (const m of appends) net.node(2).step(m);
  const rd = net.node(2).ready();
  assert.equal(rd.entries.length, 1);
  assert.ok(rd.messagesAfterPersist.some((m) => m.type === MessageType.AppendResponse));
  assert.ok(!rd.messages.some((m) => m.type === MessageType.AppendResponse));
  assert.equal(rd.mustSync, true);
});

test('log conflict: a follower with a long divergent suffix is repaired in a constant number of rejections', () => {
  const net = new Network([1, 2, 3]);
  net.campaign(1);
  // S1, alone, appends 100 entries of its term that will never commit.
  net.isolate(1);
  for (let i = 0; i < 100; i++) net.node(1).propose(enc(`old${i}`));
  net.stabilize();
  // S2 leads a newer term and commits 100 different entries with S3.
  net.campaign(2);
  assert.equal(net.role(2), Role.Leader);
  for (let i = 0; i < 100; i++) net.node(2).propose(enc(`new${i}`));
  net.stabilize();
  net.heal();
  net.recordDelivered = true;
  net.tickAll(5);
  const rejections = net.delivered.filter(
    (m) => m.type === MessageType.AppendResponse && m.reject && m.from === 1,
  );
  assert.ok(rejections.length <= 2, `${rejections.length} rejections`);
  assert.equal(net.appliedData(1).length, 100);
  assert.deepEqual(net.appliedData(1), net.appliedData(2));
  assert.ok(net.appliedData(1).every((s) => s.startsWith('new')));
});

test('findConflictByTerm hint: the rejection carries the follower last index of a term ≤ the probe term', () => {
  const net = new Network([1, 2, 3]);
  net.campaign(1);
  net.isolate(3);
  for (let i = 0; i < 5; i++) net.node(1).propose(enc(`a${i}`));
  net.stabilize();
  // Node 3 is 5 entries behind; a probe past its end must be rejected with a hint at its last index.
  const last3 = net.peer(3).storage.lastIndex();
  const leaderLast = net.peer(1).storage.lastIndex();
  net.node(3).step({
    type: MessageType.Append,
    to: 3,
    from: 1,
    term: net.term(1),
    logTerm: net.term(1),
    index: leaderLast,
    entries: [],
    commit: 0,
    reject: false,
    rejectHint: 0,
    context: new Uint8Array(0),
  });
  net.processReady(3);
  const resp = net.takeQueue().find((m) => m.type === MessageType.AppendResponse)!;
  assert.equal(resp.reject, true);
  assert.equal(resp.rejectHint, last3);
  assert.equal(resp.logTerm, net.peer(3).storage.term(last3));
});

function inflightScenario(overrides: { inflightMessagesMax?: number; inflightBytesMax?: number }): number {
  const net = new Network([1, 2, 3], { maxMessageBytes: 1, ...overrides });
  net.campaign(1);
  net.tickAll(2);
  assert.equal(net.node(1).status().progress!.get(2)!.state, 'replicate');
  // Node 2 stops answering: its acknowledgements are lost.
  net.filters.push((m) => m.from === 2);
  net.recordDelivered = true;
  for (let i = 0; i < 10; i++) {
    net.node(1).propose(new Uint8Array(60));
    net.stabilize();
  }
  return net.delivered.filter((m) => m.type === MessageType.Append && m.to === 2 && m.entries.length > 0)
    .length;
}

test('inflight window: at most inflightMessagesMax unacknowledged appends to a follower', () => {
  assert.equal(inflightScenario({ inflightMessagesMax: 2 }), 2);
  assert.equal(inflightScenario({ inflightMessagesMax: 4 }), 4);
});

test('inflight window: bounded by inflightBytesMax as well', () => {
  // Each append carries one 60-byte entry (84 bytes counted with overhead).
  assert.equal(inflightScenario({ inflightBytesMax: 100 }), 2);
  assert.equal(inflightScenario({ inflightBytesMax: 200 }), 3);
});

test('inflight window: acknowledgements reopen the window and everything is replicated', () => {
  const net = new Network([1, 2, 3], { maxMessageBytes: 1, inflightMessagesMax: 2 });
  net.campaign(1);
  for (let i = 0; i < 20; i++) net.node(1).propose(enc(`e${i}`));
  net.stabilize();
  for (const id of [1, 2, 3]) assert.equal(net.appliedData(id).length, 20);
  assert.equal(dec(net.peer(3).applied[19]!.data), 'e19');
});

test('probe state sends one append at a time until the follower answers', () => {
  const net = new Network([1, 2, 3], { maxMessageBytes: 1 });
  net.campaign(1);
  net.crash(3);
  for (let i = 0; i < 5; i++) net.node(1).propose(enc(`p${i}`));
  net.stabilize();
  net.restart(3);
  net.node(1).reportUnreachable(3);
  assert.equal(net.node(1).status().progress!.get(3)!.state, 'probe');
  net.recordDelivered = true;
  net.filters.push((m) => m.from === 3);
  for (let i = 0; i < 3; i++) {
    net.node(1).propose(enc(`q${i}`));
    net.stabilize();
  }
  const appendsTo3 = net.delivered.filter((m) => m.type === MessageType.Append && m.to === 3);
  assert.equal(appendsTo3.length, 1, 'one probe in flight, no pipelining');
  net.heal();
  net.tickAll(3);
  assert.equal(net.appliedData(3).length, 8);
});

test('commit only advances for current-term entries and never goes back', () => {
  const net = new Network([1, 2, 3]);
  net.campaign(1);
  let last = 0;
  for (let round = 0; round < 5; round++) {
    net.node(1).propose(enc(`r${round}`));
    net.stabilize();
    const c = net.node(1).committedIndex;
    assert.ok(c > last);
    last = c;
  }
});

test('a follower that lost in-flight appends (crash) is re-probed on heartbeat responses (sim bug 1)', () => {
  const net = new Network([1, 2, 3], { inflightMessagesMax: 4, maxMessageBytes: 1 });
  net.campaign(1);
  net.tickAll(2);
  net.crash(3);
  // Appends to node 3 are lost while it is down, filling the inflight window.
  for (let i = 0; i < 10; i++) {
    net.node(1).propose(enc(`e${i}`));
    net.stabilize();
  }
  net.restart(3);
  // No new proposals: only heartbeats can get node 3 going again.
  net.tickAll(10);
  assert.equal(net.appliedData(3).length, 10);
});

test('a leader that crashes before its fsync (appends already sent) loses nothing that was acknowledged', () => {
  const net = new Network([1, 2, 3]);
  net.campaign(1);
  net.node(1).propose(enc('acked'));
  net.stabilize();
  const leader = net.node(1);
  leader.propose(enc('in-flight'));
  const rd = leader.ready();
  // The appends go out while the leader's write is in flight; then it crashes before persisting.
  net.crash(1);
  for (const m of rd.messages) net.send(m);
  net.stabilize();
  assert.equal(net.peer(1).storage.lastIndex() < net.peer(2).storage.lastIndex(), true);
  // Nodes 2 and 3 hold the entry and elect a leader among themselves; the entry survives.
  for (let i = 0; i < 5 && net.leaders().length === 0; i++) net.campaign(2);
  net.restart(1);
  net.tickAll(5);
  for (const id of [1, 2, 3]) assert.deepEqual(net.appliedData(id), ['acked', 'in-flight'], `node ${id}`);
});

test('a leader that crashes before its fsync while only it has the entry: the entry is simply lost', () => {
  const net = new Network([1, 2, 3]);
  net.campaign(1);
  net.node(1).propose(enc('acked'));
  net.stabilize();
  const leader = net.node(1);
  leader.propose(enc('lost'));
  leader.ready();
  net.crash(1);
  net.restart(1);
  net.tickAll(30);
  const l = net.leader();
  net.node(l).propose(enc('next'));
  net.stabilize();
  for (const id of [1, 2, 3]) assert.deepEqual(net.appliedData(id), ['acked', 'next'], `node ${id}`);
});
