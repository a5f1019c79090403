// Multi-Paxos under the simulator's every fault (loss, duplication, reordering, partitions both
// ways, crashes that lose unsynced data, pauses, slow disks, broken snapshot streams), with
// membership changes and leader transfers under load: 3- and 5-node clusters, majority and
// flexible quorums, the same invariants as Raft's (read as ballots) and the same liveness bound.
// Campaigns: `npm run sim -- --consensus multi-paxos [--paxos-phase2-quorum K] --seeds N`.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { runSeedRange } from '../../src/sim/cli.js';

const SEEDS_PER_BATCH = 75;

const CLUSTERS: { nodes: number; phase2Quorum?: number; batches: number; label: string }[] = [
  { nodes: 3, batches: 2, label: '3 nodes, majority quorums' },
  { nodes: 5, batches: 2, label: '5 nodes, majority quorums' },
  // Flexible: 5 voters choose with 2 acceptances and elect with 4 promises.
  { nodes: 5, phase2Quorum: 2, batches: 2, label: '5 nodes, phase-2 quorum 2 (phase 1 needs 4)' },
  // Flexible at the edge: one acceptance chooses, an election needs every voter.
  { nodes: 3, phase2Quorum: 1, batches: 2, label: '3 nodes, phase-2 quorum 1 (phase 1 needs 3)' },
];

describe('simulated Multi-Paxos cluster under faults', () => {
  for (const cluster of CLUSTERS) {
    for (let batch = 0; batch < cluster.batches; batch++) {
      // Each cluster shape runs its own seed range, so the shapes do not replay each other's runs.
      const from =
        10_000 * (1 + cluster.nodes) + 1000 * (cluster.phase2Quorum ?? 0) + batch * SEEDS_PER_BATCH;
      it(`${cluster.label}, seeds ${from}..${from + SEEDS_PER_BATCH - 1}: every invariant holds and the cluster converges`, async () => {
        const report = await runSeedRange({
          seeds: SEEDS_PER_BATCH,
          from,
          nodes: cluster.nodes,
          consensus: 'multi-paxos',
          phase2Quorum: cluster.phase2Quorum,
        });
        const failures = report.failures.map((f) => f.message).join('\n');
        assert.equal(report.failures.length, 0, `${report.failures.length} failing seeds:\n${failures}`);
        assert.ok(report.results.every((r) => r.acked > 0));
        assert.ok(report.results.some((r) => r.confChangesApplied > 0));
        assert.ok(report.results.some((r) => r.crashes > 0));
        assert.ok(report.results.some((r) => r.leaderTransfers > 0));
        assert.ok(report.results.some((r) => r.snapshotsSent > 0));
        assert.ok(report.results.some((r) => r.readsServed > 0));
      });
    }
  }
});
