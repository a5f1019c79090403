import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MessageType } from '../../src/raft/index.js';
import { dec, enc, Network } from './helpers.js';

/** The leader's application snapshots its state (the list of applied strings) and compacts its log. */
function snapshotAndCompact(net: Network, id: number): number {
  const p = net.peer(id);
  const index = p.appliedIndex;
  const data = enc(JSON.stringify(p.applied.map((e) => dec(e.data))));
  p.storage.createSnapshot(index, p.confState, data);
  p.storage.compact(index);
  return index;
}

test('snapshot catch-up: a follower behind the compacted log gets a snapshot, then entries', () => {
  const net = new Network([1, 2, 3]);
  net.campaign(1);
  net.crash(3);
  for (let i = 0; i < 20; i++) net.node(1).propose(enc(`e${i}`));
  net.stabilize();
  const snapIndex = snapshotAndCompact(net, 1);
  assert.equal(net.peer(1).storage.firstIndex(), snapIndex + 1);
  net.node(1).propose(enc('after'));
  net.stabilize();
  net.restart(3);
  net.recordDelivered = true;
  net.tickAll(5);
  const snaps = net.delivered.filter((m) => m.type === MessageType.Snapshot && m.to === 3);
  assert.equal(snaps.length, 1, 'exactly one snapshot message');
  const p3 = net.peer(3);
  assert.equal(p3.storage.snapshot().metadata.index, snapIndex);
  assert.equal(JSON.parse(dec(p3.snapshotData!)).length, 20);
  assert.deepEqual(net.appliedData(3), ['after']);
  assert.equal(p3.appliedIndex, net.peer(1).appliedIndex);
  assert.equal(net.node(1).status().progress!.get(3)!.state, 'replicate');
});

test('snapshot: a failed snapshot transfer returns the follower to probe and is retried', () => {
  const net = new Network([1, 2, 3]);
  net.campaign(1);
  net.crash(3);
  for (let i = 0; i < 5; i++) net.node(1).propose(enc(`e${i}`));
  net.stabilize();
  const snapIndex = snapshotAndCompact(net, 1);
  net.restart(3);
  net.autoReportSnapshots = false;
  net.filters.push((m) => m.type === MessageType.Snapshot);
  net.tickAll(2);
  assert.equal(net.node(1).status().progress!.get(3)!.state, 'snapshot');
  net.tickAll(2);
  net.node(1).reportSnapshot(3, false);
  assert.equal(net.node(1).status().progress!.get(3)!.state, 'probe');
  net.heal();
  net.autoReportSnapshots = true;
  net.tickAll(5);
  assert.equal(net.peer(3).storage.snapshot().metadata.index, snapIndex);
  assert.equal(net.peer(3).appliedIndex, net.peer(1).appliedIndex);
});

test('MemoryStorage: compaction keeps the term of the compacted index and rejects reads below it', () => {
  const net = new Network([1, 2, 3]);
  net.campaign(1);
  for (let i = 0; i < 5; i++) net.node(1).propose(enc(`e${i}`));
  net.stabilize();
  const s = net.peer(1).storage;
  const term4 = s.term(4);
  s.createSnapshot(4, net.peer(1).confState, new Uint8Array(0));
  s.compact(4);
  assert.equal(s.firstIndex(), 5);
  assert.equal(s.term(4), term4);
  assert.throws(() => s.term(3), { code: 'RAFT_COMPACTED' });
  assert.throws(() => s.entries(4, 6, Number.POSITIVE_INFINITY), { code: 'RAFT_COMPACTED' });
  assert.equal(s.entries(5, 7, Number.POSITIVE_INFINITY).length, 2);
  assert.throws(() => s.createSnapshot(3, net.peer(1).confState, new Uint8Array(0)), {
    code: 'RAFT_SNAPSHOT_OUT_OF_DATE',
  });
});

test('MemoryStorage: append truncates a conflicting suffix and refuses gaps', () => {
  const net = new Network([1]);
  const s = net.peer(1).storage;
  const e = (index: number, term: number) => ({ index, term, type: 0, data: new Uint8Array(0) });
  s.append([e(2, 1), e(3, 1), e(4, 1)]);
  s.append([e(3, 2)]);
  assert.equal(s.lastIndex(), 3);
  assert.equal(s.term(3), 2);
  assert.throws(() => s.append([e(9, 2)]), { code: 'RAFT_INVARIANT' });
  assert.equal(s.entries(2, 4, 1).length, 1, 'maxBytes still returns one entry');
});

test('a snapshot arriving while older committed entries are being applied is refused, then retried (sim seed 1156)', () => {
  const net = new Network([1, 2, 3]);
  net.campaign(1);
  net.crash(3);
  for (let i = 0; i < 5; i++) net.node(1).propose(enc(`e${i}`));
  net.stabilize();
  net.restart(3);
  // Node 3 receives the missing entries with a commit index, and its driver starts applying them.
  net.tickAll(1);
  assert.ok(net.peer(3).appliedIndex > 2);
  net.crash(3);
  for (let i = 0; i < 5; i++) net.node(1).propose(enc(`f${i}`));
  net.stabilize();
  net.restart(3);
  const leaderLast = net.peer(1).storage.lastIndex();
  const n3 = net.node(3);
  const heartbeat = {
    type: MessageType.Append,
    to: 3,
    from: 1,
    term: net.term(1),
    logTerm: net.peer(1).storage.term(net.peer(3).storage.lastIndex()),
    index: net.peer(3).storage.lastIndex(),
    entries: net
      .peer(1)
      .storage.entries(net.peer(3).storage.lastIndex() + 1, leaderLast - 1, Number.POSITIVE_INFINITY),
    commit: leaderLast - 2,
    reject: false,
    rejectHint: 0,
    context: new Uint8Array(0),
  };
  n3.step(heartbeat);
  const rd = n3.ready();
  assert.ok(rd.committedEntries.length > 0);
  // While rd is being applied, a snapshot from the leader arrives.
  const snapIndex = snapshotAndCompact(net, 1);
  n3.step({
    ...heartbeat,
    type: MessageType.Snapshot,
    entries: [],
    snapshot: net.peer(1).storage.snapshot(),
  });
  assert.ok(snapIndex > n3.status().hardState.commit, 'the snapshot is ahead of what node 3 committed');
  assert.equal(n3.status().hardState.commit, leaderLast - 2);
  net.peer(3).storage.append(rd.entries);
  if (rd.hardState) net.peer(3).storage.setHardState(rd.hardState);
  n3.advance(rd);
  const next = n3.ready();
  assert.equal(next.snapshot, undefined, 'snapshot refused while entries were being applied');
  n3.advance(next);
  // Once applied, the same snapshot is accepted.
  n3.step({
    ...heartbeat,
    type: MessageType.Snapshot,
    entries: [],
    snapshot: net.peer(1).storage.snapshot(),
  });
  assert.equal(n3.ready().snapshot?.metadata.index, snapIndex);
});
