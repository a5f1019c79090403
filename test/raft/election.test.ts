import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MessageType, message, RaftInvariantError, Role } from '../../src/raft/index.js';
import { enc, Network } from './helpers.js';

test('election basics: one leader per term, its no-op entry commits on every node', () => {
  const net = new Network([1, 2, 3]);
  const leader = net.electLeader();
  const term = net.term(leader);
  for (const id of [1, 2, 3]) {
    assert.equal(net.term(id), term);
    assert.equal(net.node(id).status().softState.leader, leader);
    assert.equal(net.node(id).committedIndex, 2, 'bootstrap index 1 + the new leader no-op');
  }
});

test('election timeout is randomized in [electionTicks, 2*electionTicks)', () => {
  for (let seed = 1; seed <= 20; seed++) {
    const net = new Network([1, 2, 3]);
    const n = net.node(seed % 3 === 0 ? 3 : seed % 3);
    let ticks = 0;
    while (n.status().softState.role === Role.Follower && ticks < 100) {
      n.tick();
      ticks++;
    }
    assert.ok(ticks >= 10 && ticks < 20, `campaigned after ${ticks} ticks`);
  }
});

test('fast-forwarded election: a leaderless follower campaigns within one election timeout', () => {
  for (let seed = 1; seed <= 20; seed++) {
    const net = new Network([1, 2, 3]);
    const n = net.node(seed % 3 === 0 ? 3 : seed % 3);
    assert.equal(n.fastForwardElection(), true);
    let ticks = 0;
    while (n.status().softState.role === Role.Follower && ticks < 100) {
      n.tick();
      ticks++;
    }
    assert.ok(ticks >= 1 && ticks <= 10, `campaigned after ${ticks} ticks`);
  }
});

test('fast-forward is refused with a known leader, and with lease reads (the boot guard stays)', () => {
  const net = new Network([1, 2, 3]);
  const leader = net.electLeader();
  const follower = leader === 1 ? 2 : 1;
  assert.equal(net.node(follower).fastForwardElection(), false, 'a follower with a leader keeps its clock');
  assert.equal(net.node(leader).fastForwardElection(), false, 'a leader has no election to bring near');
  const leased = new Network([1, 2, 3], { checkQuorum: true, readOnlyOption: 'lease-based' });
  assert.equal(leased.node(1).fastForwardElection(), false);
});

test('a single-node cluster elects itself and commits only after its own entries are durable', () => {
  const net = new Network([1]);
  net.campaign(1);
  assert.equal(net.role(1), Role.Leader);
  const n = net.node(1);
  const before = n.committedIndex;
  n.propose(enc('a'));
  const rd = n.ready();
  assert.equal(rd.entries.length, 1);
  assert.equal(rd.committedEntries.length, 0, 'not committed before the leader persisted it');
  assert.equal(n.committedIndex, before);
  net.peer(1).storage.append(rd.entries);
  n.advance(rd);
  assert.equal(n.committedIndex, before + 1);
  net.stabilize();
  assert.deepEqual(net.appliedData(1), ['a']);
});

test('split vote: no leader in that term, a later term elects one', () => {
  const net = new Network([1, 2, 3]);
  net.crash(3);
  // Both time out together: each votes for itself and rejects the other.
  net.node(1).step(message({ type: MessageType.Hup }));
  net.node(2).step(message({ type: MessageType.Hup }));
  net.stabilize();
  assert.equal(net.term(1), 2);
  assert.equal(net.term(2), 2);
  assert.deepEqual(net.leaders(), []);
  const leader = net.electLeader();
  assert.ok(net.term(leader) > 2);
  assert.ok(leader === 1 || leader === 2);
});

test('a candidate with a stale log does not win', () => {
  const net = new Network([1, 2, 3]);
  net.campaign(1);
  net.isolate(3);
  net.node(1).propose(enc('x'));
  net.stabilize();
  net.heal();
  net.crash(1);
  net.campaign(3);
  assert.notEqual(net.role(3), Role.Leader, 'node 3 lacks a committed entry');
  net.campaign(2);
  assert.equal(net.role(2), Role.Leader);
});

test('pre-vote: a rejoining partitioned node does not inflate terms or disrupt the leader', () => {
  const net = new Network([1, 2, 3], { preVote: true });
  net.campaign(1);
  const term = net.term(1);
  net.isolate(3);
  net.tickAll(100);
  assert.equal(net.term(3), term, 'pre-vote failed, so the term never moved');
  net.heal();
  net.tickAll(5);
  assert.equal(net.leader(), 1);
  assert.equal(net.term(1), term);
});

test('without pre-vote the same rejoining node disrupts the cluster (the problem pre-vote solves)', () => {
  const net = new Network([1, 2, 3]);
  net.campaign(1);
  const term = net.term(1);
  net.isolate(3);
  net.tickAll(100);
  assert.ok(net.term(3) > term + 1);
  net.heal();
  net.tickAll(20);
  assert.ok(net.term(1) > term, 'the leader learned a higher term and stepped down');
});

test('check-quorum: a leader that cannot hear a quorum steps down within an election timeout', () => {
  const net = new Network([1, 2, 3], { checkQuorum: true });
  net.campaign(1);
  net.isolate(1);
  for (let i = 0; i < 2 * 10; i++) net.tick(1);
  net.stabilize();
  assert.equal(net.role(1), Role.Follower);
});

test('check-quorum: a leader hearing from a quorum stays leader', () => {
  const net = new Network([1, 2, 3], { checkQuorum: true });
  net.campaign(1);
  net.isolate(3);
  net.tickAll(50);
  assert.equal(net.role(1), Role.Leader);
});

test('leader stickiness: followers with a live leader ignore a disruptive vote request', () => {
  const net = new Network([1, 2, 3], { checkQuorum: true });
  net.campaign(1);
  const term = net.term(1);
  // Node 3 cannot hear the leader but can reach node 2.
  net.partition([1], [3]);
  for (let i = 0; i < 30; i++) net.tickAll(1);
  assert.ok(net.term(3) > term);
  assert.equal(net.term(2), term, 'node 2 ignored the vote requests');
  assert.equal(net.leader(), 1);
});

test('stale leader: writes proposed in a minority partition never commit and are overwritten', () => {
  const net = new Network([1, 2, 3, 4, 5]);
  net.campaign(1);
  net.partition([1, 2], [3, 4, 5]);
  assert.deepEqual(net.node(1).propose(enc('stale')), { ok: true });
  net.stabilize();
  const committedBefore = net.node(1).committedIndex;
  net.campaign(3);
  assert.equal(net.role(3), Role.Leader);
  net.node(3).propose(enc('fresh'));
  net.stabilize();
  net.tickAll(3);
  assert.equal(net.node(1).committedIndex, committedBefore, 'the stale leader committed nothing');
  net.heal();
  net.tickAll(5);
  for (const id of [1, 2, 3, 4, 5]) assert.deepEqual(net.appliedData(id), ['fresh'], `node ${id}`);
});

test('invariant: a leader receiving an append from another leader of its term throws', () => {
  const net = new Network([1, 2, 3]);
  net.campaign(1);
  const term = net.term(1);
  assert.throws(
    () => net.node(1).step(message({ type: MessageType.Append, from: 2, to: 1, term })),
    RaftInvariantError,
  );
  assert.throws(
    () => net.node(3).step(message({ type: MessageType.Heartbeat, from: 2, to: 3, term })),
    /two leaders in term/,
  );
});

test('vote requests and vote grants are sent only after the term and vote are persisted', () => {
  const net = new Network([1, 2, 3]);
  net.node(1).step(message({ type: MessageType.Hup }));
  const rd = net.node(1).ready();
  assert.equal(rd.hardState?.vote, 1);
  assert.equal(rd.mustSync, true);
  assert.equal(rd.messages.length, 0);
  assert.deepEqual(
    rd.messagesAfterPersist.map((m) => [m.type, m.to]),
    [
      [MessageType.Vote, 2],
      [MessageType.Vote, 3],
    ],
  );
  net.node(2).step(rd.messagesAfterPersist[0]!);
  const rd2 = net.node(2).ready();
  assert.equal(rd2.hardState?.vote, 1);
  assert.deepEqual(
    rd2.messagesAfterPersist.map((m) => [m.type, m.reject]),
    [[MessageType.VoteResponse, false]],
  );
});

test('a node votes at most once per term', () => {
  const net = new Network([1, 2, 3]);
  net.crash(3);
  net.node(1).step(message({ type: MessageType.Hup }));
  net.processReady(1);
  const [toTwo] = net.takeQueue().filter((m) => m.to === 2);
  net.node(2).step(toTwo!);
  // Another candidate of the same term asks too and is refused.
  net
    .node(2)
    .step(message({ type: MessageType.Vote, from: 3, to: 2, term: toTwo!.term, index: 99, logTerm: 99 }));
  net.processReady(2);
  const responses = net.takeQueue().filter((m) => m.type === MessageType.VoteResponse);
  assert.deepEqual(
    responses.map((m) => [m.to, m.reject]),
    [
      [1, false],
      [3, true],
    ],
  );
});

test('a pre-vote from a lower term is rejected with our term, and the pre-candidate adopts it', () => {
  const net = new Network([1, 2, 3], { preVote: true });
  net.campaign(1);
  const term = net.term(1);
  // Node 3 is stuck in an older term (it missed the election) and pre-campaigns.
  net
    .node(2)
    .step(message({ type: MessageType.PreVote, from: 3, to: 2, term: term - 1, index: 1, logTerm: 1 }));
  net.processReady(2);
  const [resp] = net.takeQueue().filter((m) => m.type === MessageType.PreVoteResponse);
  assert.equal(resp!.reject, true);
  assert.equal(resp!.term, term);
});
