// The simulator's main safety net: 1,000 seeds with every fault on (loss, duplication, reordering,
// partitions both ways, crashes that lose unsynced data, slow disks, snapshot streams that break),
// membership changes (learners, promotions, removals, joint changes) and leader transfers under
// load, in 3- and 5-node clusters. Any failing seed is listed with its replay command.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { runSeedRange } from '../../src/sim/cli.js';

const SEEDS_TOTAL = 1000;
const SEEDS_PER_BATCH = 100;
const FIRST_SEED = 1;

describe('simulated cluster under faults', () => {
  for (let from = FIRST_SEED; from < FIRST_SEED + SEEDS_TOTAL; from += SEEDS_PER_BATCH) {
    it(`seeds ${from}..${from + SEEDS_PER_BATCH - 1}: every invariant holds and the cluster converges`, async () => {
      const report = await runSeedRange({ seeds: SEEDS_PER_BATCH, from });
      const failures = report.failures.map((f) => f.message).join('\n');
      assert.equal(report.failures.length, 0, `${report.failures.length} failing seeds:\n${failures}`);
      const sizes = new Set(report.results.map((r) => r.nodes));
      assert.deepEqual([...sizes].sort(), [3, 5]);
      assert.ok(report.results.every((r) => r.acked > 0));
      assert.ok(report.results.some((r) => r.confChangesApplied > 0));
      assert.ok(report.results.some((r) => r.crashes > 0));
    });
  }
});
