import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runSeedRange } from '../../src/sim/cli.js';

// The simulator's seeds with Raft quiescence on every node: crashes, pauses, partitions, slow
// disks and membership changes, then the liveness bound after the faults stop. Safety is checked
// after every event as in every run; liveness needs the simulated transport's liveness reports
// (SimOptions.quiesce) to wake hibernating followers whose leader went away.

test('sim seeds with quiescence: no invariant violated, every run converges after the faults', async () => {
  const report = await runSeedRange({ seeds: 12, from: 1, quiesce: true });
  assert.deepEqual(
    report.failures.map((f) => f.message),
    [],
  );
  assert.equal(report.results.length, 12);
});
