import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DEFAULT_NETWORK, Network } from '../../src/sim/network.js';
import { SimRng } from '../../src/sim/rng.js';

function net(overrides: Partial<typeof DEFAULT_NETWORK> = {}): Network {
  return new Network(new SimRng(1), { ...DEFAULT_NETWORK, lossRate: 0, duplicateRate: 0, ...overrides });
}

describe('Network', () => {
  it('a symmetric partition cuts both directions between groups only', () => {
    const n = net();
    n.partition([1, 2], [3]);
    assert.equal(n.isLinkUp(1, 3), false);
    assert.equal(n.isLinkUp(3, 1), false);
    assert.equal(n.isLinkUp(2, 3), false);
    assert.equal(n.isLinkUp(1, 2), true);
    assert.deepEqual(n.planDelivery(1, 3), []);
  });

  it('a one-way cut drops one direction and keeps the other', () => {
    const n = net();
    n.cutOneWay(1, 2);
    assert.equal(n.isLinkUp(1, 2), false);
    assert.equal(n.isLinkUp(2, 1), true);
    assert.equal(n.planDelivery(2, 1).length, 1);
  });

  it('healing restores every link; each cut bumps the link epoch', () => {
    const n = net();
    assert.equal(n.linkEpoch(1, 2), 0);
    n.isolate(1, [2, 3]);
    assert.equal(n.linkEpoch(1, 2), 1);
    n.cutOneWay(1, 2); // already cut: not a new interruption
    assert.equal(n.linkEpoch(1, 2), 1);
    n.healAll();
    assert.equal(n.cutLinks, 0);
    assert.equal(n.isLinkUp(1, 2), true);
    n.cutOneWay(1, 2);
    assert.equal(n.linkEpoch(1, 2), 2);
  });

  it('latency is at least the minimum and varies (so messages reorder)', () => {
    const n = net();
    const delays = Array.from({ length: 200 }, () => n.planDelivery(1, 2)[0]!);
    assert.ok(delays.every((d) => d >= DEFAULT_NETWORK.latencyMinUs));
    assert.ok(new Set(delays).size > 100);
  });

  it('loss and duplication happen at roughly their configured rates', () => {
    const n = net({ lossRate: 0.1, duplicateRate: 0.2 });
    let lost = 0;
    let duplicated = 0;
    for (let i = 0; i < 10_000; i++) {
      const copies = n.planDelivery(1, 2).length;
      if (copies === 0) lost++;
      if (copies === 2) duplicated++;
    }
    assert.ok(lost > 800 && lost < 1200, `lost ${lost}`);
    assert.ok(duplicated > 1500 && duplicated < 2100, `duplicated ${duplicated}`);
  });

  it('snapshot transfers take longer the bigger they are, in chunks', () => {
    const n = net({ snapshotChunkFailRate: 0, latencyTailMeanUs: 0 });
    const small = n.planSnapshotTransfer(100);
    const big = n.planSnapshotTransfer(100 * DEFAULT_NETWORK.snapshotChunkBytes);
    assert.equal(small.chunks, 1);
    assert.equal(big.chunks, 100);
    assert.ok(big.durationUs > small.durationUs + 90 * DEFAULT_NETWORK.snapshotChunkUs);
    assert.equal(big.chunkFails, false);
    const flaky = net({ snapshotChunkFailRate: 1 });
    assert.equal(flaky.planSnapshotTransfer(10).chunkFails, true);
  });
});
