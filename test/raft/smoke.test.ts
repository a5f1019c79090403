import assert from 'node:assert/strict';
import { test } from 'node:test';
import { enc, Network } from './helpers.js';

test('a three-node cluster elects one leader and replicates a proposal to all', () => {
  const net = new Network([1, 2, 3]);
  const leader = net.electLeader();
  assert.deepEqual(net.node(leader).propose(enc('x')), { ok: true });
  net.stabilize();
  for (const id of [1, 2, 3]) assert.deepEqual(net.appliedData(id), ['x']);
});
