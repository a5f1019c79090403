import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MessageType } from '../../src/raft/index.js';
import { dec, enc, Network } from './helpers.js';

// Quiescence (RaftConfig.quiesce): an idle group stops ticking and heartbeating, and wakes on a
// proposal, a read, a message, or its leader being reported unreachable.

const QUIESCE = { quiesce: true, checkQuorum: true, preVote: true } as const;

/** A 3-node group with leader 1, one write applied everywhere, ticked until it hibernates. */
function idleGroup(): Network {
  const net = new Network([1, 2, 3], QUIESCE);
  net.campaign(1);
  net.node(1).propose(enc('w'));
  net.stabilize();
  net.tickAll(2);
  return net;
}

function allQuiesced(net: Network): boolean {
  return [1, 2, 3].every((id) => net.node(id).quiesced === true);
}

test('quiesce: a caught-up idle group hibernates and then sends nothing however long it ticks', () => {
  const net = idleGroup();
  assert.ok(allQuiesced(net), 'leader and both followers hibernate');
  net.recordDelivered = true;
  net.tickAll(200);
  assert.equal(net.delivered.length, 0, 'no heartbeat, no election');
  assert.equal(net.leader(), 1);
});

test('quiesce: off by default, a leader keeps heartbeating', () => {
  const net = new Network([1, 2, 3], { checkQuorum: true, preVote: true });
  net.campaign(1);
  net.tickAll(5);
  assert.equal(net.node(1).quiesced, false);
  net.recordDelivered = true;
  net.tickAll(3);
  assert.ok(net.delivered.some((m) => m.type === MessageType.Heartbeat));
});

test('quiesce: not while a follower lacks entries', () => {
  const net = new Network([1, 2, 3], QUIESCE);
  net.campaign(1);
  net.isolate(3);
  net.node(1).propose(enc('w'));
  net.stabilize();
  net.tickAll(5);
  assert.equal(net.node(1).quiesced, false, 'follower 3 is behind');
  net.heal();
  net.tickAll(3);
  assert.ok(allQuiesced(net), 'once 3 caught up');
  assert.deepEqual(net.appliedData(3), ['w']);
});

test('quiesce: not while a proposal is uncommitted or a read is pending', () => {
  const net = idleGroup();
  net.filters.push((m) => m.type === MessageType.AppendResponse);
  net.node(1).propose(enc('x'));
  net.stabilize();
  net.tickAll(5);
  assert.equal(net.node(1).quiesced, false, 'uncommitted entry');
  net.heal();
  net.tickAll(3);
  assert.ok(allQuiesced(net));
  net.filters.push((m) => m.type === MessageType.HeartbeatResponse);
  net.node(1).readIndex(enc('r'));
  net.tickAll(5);
  assert.equal(net.node(1).quiesced, false, 'read round unanswered');
  assert.equal(net.peer(1).readStates.length, 0);
  net.heal();
  net.tickAll(3);
  assert.equal(net.peer(1).readStates.length, 1);
  assert.ok(allQuiesced(net));
});

test('quiesce: a proposal on the leader wakes the group and commits everywhere', () => {
  const net = idleGroup();
  assert.deepEqual(net.node(1).propose(enc('p')), { ok: true });
  assert.equal(net.node(1).quiesced, false);
  net.stabilize();
  assert.equal(net.node(2).quiesced, false, 'the wake-up heartbeat woke the followers');
  for (const id of [1, 2, 3]) assert.deepEqual(net.appliedData(id), ['w', 'p']);
  net.tickAll(3);
  assert.ok(allQuiesced(net), 'and it hibernates again once idle');
});

test('quiesce: a proposal on a follower wakes it and, through the forwarded message, the leader', () => {
  const net = idleGroup();
  assert.deepEqual(net.node(3).propose(enc('f')), { ok: true });
  assert.equal(net.node(3).quiesced, false);
  net.stabilize();
  assert.equal(net.node(1).quiesced, false);
  for (const id of [1, 2, 3]) assert.deepEqual(net.appliedData(id), ['w', 'f']);
});

test('quiesce: a read on a hibernating follower is answered', () => {
  const net = idleGroup();
  assert.deepEqual(net.node(2).readIndex(enc('r')), { ok: true });
  net.stabilize();
  net.tickAll(2);
  assert.equal(net.peer(2).readStates.length, 1);
});

test('quiesce: any message wakes a hibernating node', () => {
  const net = idleGroup();
  // A heartbeat response from before the quiescence carries no work and does not wake the leader.
  net.send({ ...heartbeatResponse(2, 1, net.term(1)) });
  net.stabilize();
  assert.equal(net.node(1).quiesced, true);
  // An ordinary heartbeat (a leader that woke) wakes a follower, whose timer then runs again.
  net.node(2).step({ ...heartbeatResponse(1, 2, net.term(1)), type: MessageType.Heartbeat, commit: 0 });
  assert.equal(net.node(2).quiesced, false);
});

function heartbeatResponse(from: number, to: number, term: number) {
  return {
    type: MessageType.HeartbeatResponse,
    from,
    to,
    term,
    logTerm: 0,
    index: 0,
    entries: [],
    commit: 0,
    reject: false,
    rejectHint: 0,
    context: new Uint8Array(0),
  };
}

test('quiesce: a follower whose leader is reported unreachable wakes and a new leader is elected', () => {
  const net = idleGroup();
  net.crash(1);
  net.tickAll(100);
  assert.deepEqual(net.leaders(), [], 'nobody notices a silent crash by ticks alone');
  // The transport's per-node-pair liveness (keep-alives, idle timeout) reports the leader's node.
  net.node(2).reportUnreachable(1);
  net.node(3).reportUnreachable(1);
  assert.equal(net.node(2).quiesced, false);
  const leader = net.electLeader();
  assert.ok(leader === 2 || leader === 3);
  assert.deepEqual(net.node(leader).propose(enc('after')), { ok: true });
  net.stabilize();
  for (const id of [2, 3]) assert.deepEqual(net.appliedData(id), ['w', 'after']);
});

test('quiesce: one follower told of the leader loss is enough; the other wakes on its pre-vote and votes', () => {
  const net = idleGroup();
  net.crash(1);
  net.node(2).reportUnreachable(1);
  assert.equal(net.node(3).quiesced, true);
  const leader = net.electLeader();
  assert.ok(leader === 2 || leader === 3, 'follower 3, hibernating, still took part in the election');
});

test('quiesce: an unreachable report about another node leaves the group hibernating', () => {
  const net = idleGroup();
  net.node(2).reportUnreachable(3);
  net.node(1).reportUnreachable(3);
  net.stabilize();
  assert.ok(allQuiesced(net));
});

test('quiesce: a hibernating follower grants a forced vote (leader transfer) at once', () => {
  const net = idleGroup();
  net.node(1).transferLeadership(3);
  net.stabilize();
  assert.equal(net.leader(), 3);
  net.tickAll(3);
  assert.ok(allQuiesced(net));
  assert.deepEqual(net.node(3).propose(enc('t')), { ok: true });
  net.stabilize();
  for (const id of [1, 2, 3]) assert.deepEqual(net.appliedData(id), ['w', 't']);
});

test('quiesce: a lost quiesce heartbeat leaves that follower awake; its pre-vote wakes the leader, which stays leader', () => {
  const net = new Network([1, 2, 3], QUIESCE);
  net.filters.push((m) => m.to === 3 && m.type === MessageType.Heartbeat);
  net.campaign(1);
  net.tickAll(1);
  net.heal();
  assert.equal(net.node(1).quiesced, true);
  assert.equal(net.node(3).quiesced, false);
  const term = net.term(1);
  for (let i = 0; i < 60 && !allQuiesced(net); i++) net.tickAll(1);
  assert.ok(allQuiesced(net), 'all hibernate after the leader woke and quiesced again');
  assert.equal(net.leader(), 1);
  assert.equal(net.term(3), term, 'no election was won against the live leader');
});

test('quiesce: a woken leader does not serve a lease read from a lease older than its sleep', () => {
  const net = new Network([1, 2, 3], { ...QUIESCE, readOnlyOption: 'lease-based' });
  net.tickAll(12); // past the boot guard
  net.campaign(1);
  net.node(1).readIndex(enc('first'));
  net.stabilize(); // a heartbeat round: the followers' acks start a lease
  net.tickAll(3);
  assert.ok(allQuiesced(net));
  net.isolate(1);
  net.node(1).readIndex(enc('r'));
  net.stabilize();
  assert.deepEqual(
    net.peer(1).readStates.map((r) => dec(r.context)),
    ['first'],
    'the second read needs a fresh quorum round',
  );
});

test('quiesce: safety and liveness in random runs with crashes, partitions and wake-ups', () => {
  for (let seed = 1; seed <= 30; seed++) {
    const net = new Network([1, 2, 3, 4, 5], QUIESCE);
    let rnd = seed * 2654435761;
    const next = (n: number): number => {
      rnd = (rnd * 1103515245 + 12345) >>> 0;
      return rnd % n;
    };
    for (let step = 0; step < 300; step++) {
      const r = next(100);
      const id = 1 + next(5);
      if (r < 10) {
        const l = net.leaders()[0];
        if (l !== undefined) net.node(l).propose(enc(`v${seed}-${step}`));
      } else if (r < 13 && net.peer(id).alive) {
        net.crash(id);
        for (const p of net.peers.values()) if (p.alive) p.node.reportUnreachable(id);
      } else if (r < 18 && !net.peer(id).alive) {
        net.restart(id);
      }
      net.tickAll(1);
      const leadersByTerm = new Map<number, number>();
      for (const l of net.leaders()) {
        const t = net.term(l);
        assert.ok(!leadersByTerm.has(t), `seed ${seed}: two leaders in term ${t}`);
        leadersByTerm.set(t, l);
      }
    }
    for (const p of net.peers.values()) if (!p.alive) net.restart(p.id);
    const leader = net.electLeader(400);
    assert.ok(net.node(leader).propose(enc('final')).ok);
    net.stabilize();
    net.tickAll(5);
    const logs = [1, 2, 3, 4, 5].map((id) => net.appliedData(id));
    for (const log of logs) assert.deepEqual(log, logs[0], `seed ${seed}: replicas agree`);
    assert.equal(logs[0]!.at(-1), 'final');
    assert.ok(allQuiescedN(net, 5), `seed ${seed}: idle again`);
  }
});

function allQuiescedN(net: Network, n: number): boolean {
  for (let id = 1; id <= n; id++) if (net.node(id).quiesced !== true) return false;
  return true;
}

test('quiesce: a caught-up follower reported unreachable and back (probe state, nothing to send) does not keep the leader awake', () => {
  const net = new Network([1, 2, 3], QUIESCE);
  net.campaign(1);
  net.node(1).propose(enc('w'));
  net.stabilize();
  // A connection blip while awake: the leader probes follower 3, which already holds everything,
  // so no append goes out and only heartbeat answers come back.
  net.node(1).reportUnreachable(3);
  net.tickAll(5);
  assert.ok(allQuiesced(net), 'the heartbeat answer of a caught-up follower ends its probe');
  assert.deepEqual(net.appliedData(3), ['w']);
});
