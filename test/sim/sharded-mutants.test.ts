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
  type ShardedSimResult,
} from '../../src/sim/sharded-simulation.js';

/** Healthy runs by their options, so mutants sharing a seed run the correct code once. */
const healthyRuns = new Map<string, Promise<ShardedSimResult>>();

async function assertCaught(
  base: ShardedSimOptions,
  mutation: Partial<ShardedSimOptions>,
  code: RegExp,
): Promise<void> {
  const key = JSON.stringify(base);
  if (!healthyRuns.has(key)) healthyRuns.set(key, runShardedSimulation(base));
  const healthy = await healthyRuns.get(key)!;
  assert.ok(healthy.acked > 0);
  if (base.moves || base.nodeChurn) assert.ok(healthy.moves > 0, 'the healthy run moved no replica');
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

describe('sharded simulation: broken replica moves and a broken scheduler are caught', () => {
  // Moves and node churn, 3 shards, 1.5 s of faults (seed → nodes as the CLI: 3, 5, 7 by seed % 3).
  const moving = (seed: number, nodes: number): ShardedSimOptions => ({
    seed,
    nodes,
    shards: 3,
    faultPhaseUs: 1_500_000,
    moves: true,
    nodeChurn: true,
  });

  it('a move that removes the leaving voter before adding and promoting the new one', async () => {
    await assertCaught(
      moving(6, 3),
      { unsafeRemoveBeforePromote: true },
      /\[move-quorum\] shard \d+'s membership at \d+ has 2 voters/,
    );
  });

  it('a move that promotes its learner before it caught up', async () => {
    await assertCaught(
      moving(6, 3),
      { unsafePromoteBeforeCaughtUp: true },
      /\[move-quorum\] shard \d+'s voter n\d+ .* holds its log only up to/,
    );
  });

  it('a snapshot for a moved-in replica that loses a write: the replicas disagree at one index', async () => {
    await assertCaught(moving(12, 3), { unsafeSnapshotDropsWrite: true }, /\[state-machine-safety\]/);
  });

  it('the same snapshot loss, replicas not compared by content: an acknowledged write is lost', async () => {
    await assertCaught(
      moving(12, 3),
      { unsafeSnapshotDropsWrite: true, uncheckedDigest: true },
      /\[acked-proposal-lost\] shard \d+ n\d+: acked write/,
    );
  });

  it('a replica added back to a node it left that reuses the old Raft id (term and vote kept)', async () => {
    // Seed 1003 moves shard 2's replica off n3 and back. The new learner installs the leader's
    // snapshot from before n3's removal, whose membership lists n3 as a voter: under the old id it
    // campaigns and wins with a lagging voter's vote. The correct code gives it a new Raft id.
    const base: ShardedSimOptions = { seed: 1003, nodes: 5, shards: 4, moves: true };
    const healthy = await runShardedSimulation(base);
    assert.ok(healthy.readds > 0, 'no replica was added back to a node it left');
    await assert.rejects(runShardedSimulation({ ...base, unsafeReuseReplicaIds: true }), (error: unknown) => {
      assert.ok(error instanceof ShardedSimFailure, String(error));
      assert.match(error.message, /\[leader-completeness\] node 3 became leader/);
      return true;
    });
  });

  it('a scheduler that places without the load bound', async () => {
    await assertCaught(
      moving(11, 7),
      { unsafeSchedulerIgnoresBound: true },
      /\[placement\] n\d+ holds \d+ replicas, above the bound/,
    );
  });

  it('a scheduler that places without host labels (nodes 1 and 2 share a host)', async () => {
    await assertCaught(
      moving(4, 5),
      { unsafeSchedulerIgnoresHosts: true },
      /\[placement\] shard \d+ has two replicas on host h1/,
    );
  });
});
