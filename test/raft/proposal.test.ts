import assert from 'node:assert/strict';
import { test } from 'node:test';
import { EMPTY_BYTES } from '../../src/raft/index.js';
import { enc, Network } from './helpers.js';

test('proposal on a follower is forwarded to the leader and committed', () => {
  const net = new Network([1, 2, 3]);
  net.campaign(1);
  assert.deepEqual(net.node(2).propose(enc('via-follower')), { ok: true });
  net.stabilize();
  for (const id of [1, 2, 3]) assert.deepEqual(net.appliedData(id), ['via-follower']);
});

test('proposal with no known leader is dropped with reason no-leader', () => {
  const net = new Network([1, 2, 3]);
  assert.deepEqual(net.node(1).propose(enc('x')), { ok: false, reason: 'no-leader', leaderHint: 0 });
});

test('proposal on a follower with forwarding disabled is rejected with a leader hint', () => {
  const net = new Network([1, 2, 3], { disableProposalForwarding: true });
  net.campaign(1);
  assert.deepEqual(net.node(3).propose(enc('x')), {
    ok: false,
    reason: 'not-leader-forwarding-disabled',
    leaderHint: 1,
  });
});

test('uncommittedBytesMax: the leader refuses proposals beyond the uncommitted budget', () => {
  const net = new Network([1, 2, 3], { uncommittedBytesMax: 100 });
  net.campaign(1);
  net.isolate(2);
  net.isolate(3);
  assert.deepEqual(net.node(1).propose(new Uint8Array(60)), { ok: true });
  assert.deepEqual(net.node(1).propose(new Uint8Array(60)), {
    ok: false,
    reason: 'uncommitted-bytes-max',
    leaderHint: 1,
  });
  // A single proposal larger than the budget is still accepted when nothing is uncommitted,
  // otherwise it could never be proposed at all; once entries commit the budget frees up.
  net.heal();
  net.tickAll(3);
  assert.deepEqual(net.node(1).propose(new Uint8Array(60)), { ok: true });
});

test('committedBytesPerReadyMax bounds the committed entries handed out in one Ready', () => {
  const net = new Network([1], { committedBytesPerReadyMax: 300 });
  net.campaign(1);
  for (let i = 0; i < 10; i++) net.node(1).propose(new Uint8Array(100));
  const n = net.node(1);
  const rd = n.ready();
  net.peer(1).storage.append(rd.entries);
  n.advance(rd);
  let readies = 0;
  let applied = 0;
  while (n.hasReady()) {
    const r = n.ready();
    assert.ok(r.committedEntries.length <= 3, `${r.committedEntries.length} entries in one ready`);
    applied += r.committedEntries.filter((e) => e.data.byteLength > 0).length;
    n.advance(r);
    readies++;
  }
  assert.equal(applied, 10);
  assert.ok(readies >= 4);
});

test('ready() twice without advance() is a usage error', () => {
  const net = new Network([1]);
  net.campaign(1);
  net.node(1).propose(EMPTY_BYTES);
  net.node(1).ready();
  assert.throws(() => net.node(1).ready(), { code: 'RAFT_USAGE' });
});
