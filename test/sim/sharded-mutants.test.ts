// The sharded simulation's revision, routing and watch invariants catch a broken oracle, node or shard: each mutant
// runs a seed that the correct code passes (checked here too), and must fail it with the
// invariant named. The seeds were found by running each mutant over seeds 1..30 (catch rates are
// in src/sim/README.md); a change to the simulator that reshuffles seeds may need new ones.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  runShardedSimulation,
  ShardedSimFailure,
  type ShardedSimOptions,
} from '../../src/sim/sharded-simulation.js';

async function assertCaught(
  base: ShardedSimOptions,
  mutation: Partial<ShardedSimOptions>,
  code: RegExp,
): Promise<void> {
  const healthy = await runShardedSimulation(base);
  assert.ok(healthy.acked > 0);
  await assert.rejects(runShardedSimulation({ ...base, ...mutation }), (error: unknown) => {
    assert.ok(error instanceof ShardedSimFailure, String(error));
    assert.match(error.message, code);
    return true;
  });
}

describe('sharded simulation: broken revision handling is caught', () => {
  it('an oracle that releases a range without confirming its leadership (a deposed leader serves)', async () => {
    await assertCaught(
      { seed: 2, nodes: 3, shards: 3 },
      { oracleMutation: 'skip-confirm' },
      /\[revision-order\] the oracle released/,
    );
  });

  it('a new oracle leader that starts at the persisted mark instead of above it', async () => {
    await assertCaught(
      { seed: 3, nodes: 3, shards: 3 },
      { oracleMutation: 'start-at-mark' },
      /\[revision-(order|reused)\]/,
    );
  });

  it('a node that hands a fetched range out twice (two writes stamped with one revision)', async () => {
    await assertCaught(
      { seed: 1, nodes: 5, shards: 4, faultPhaseUs: 1_500_000 },
      { unsafeReuseRevisions: true },
      /\[revision-reused\]/,
    );
  });

  it('a shard that applies a write whose revision is not above its own', async () => {
    await assertCaught(
      { seed: 4, nodes: 5, shards: 4, faultPhaseUs: 1_500_000 },
      { unsafeAcceptStaleRevision: true },
      /\[revision-order\] shard/,
    );
  });

  it('a shard that applies a write routed at a stale epoch (after a split) instead of refusing it', async () => {
    await assertCaught(
      { seed: 1, nodes: 3, shards: 2 },
      { unsafeIgnoreEpoch: true },
      /\[stale-route\] shard/,
    );
  });

  it('a merged watch that releases up to the highest resolved revision of the shards, not the lowest', async () => {
    await assertCaught({ seed: 1, nodes: 3, shards: 2 }, { unsafeReleaseAtMax: true }, /\[watch-gap\]/);
  });

  it('a new shard leader that reports its resolved revision before applying its commit', async () => {
    await assertCaught(
      { seed: 1, nodes: 3, shards: 2 },
      { unsafeResolveBeforeCaughtUp: true },
      /\[resolved-regressed\]/,
    );
  });
});
