// The harness must catch a real bug on real processes: with --experimental-stale-reads a member
// answers linearizable reads from its own state, so a leader cut off from the majority keeps
// serving the old value while the majority elects a new leader and moves on. The register
// workload under the isolated-leader partition must be judged not linearizable.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runJepsen } from './runner.js';

// Seed 8 over 12 s isolates the leader three times for 1.7–2.6 s each (longer than an election
// under load), so the old leader serves stale values while the majority commits new ones.
const staleSeed = 8;
const staleRunMs = 12_000;

test('register workload with stale reads under a leader partition is reported as a linearizability violation', {
  timeout: 120_000,
}, async (t) => {
  const result = await runJepsen({
    workload: 'register',
    nemesis: 'partition-leader',
    seed: staleSeed,
    nodes: 3,
    timeMs: staleRunMs,
    staleReads: true,
  });
  t.diagnostic(result.summary);
  assert.ok(
    result.nemesisLog.some((line) => line.includes('partition isolated-leader')),
    `the leader was never isolated:\n${result.nemesisLog.join('\n')}`,
  );
  assert.equal(result.verdict.valid, false, result.summary);
  assert.ok(
    result.verdict.anomalies.some((a) => a.code === 'LINEARIZABILITY_VIOLATION'),
    `expected a LINEARIZABILITY_VIOLATION, got ${result.verdict.anomalies.map((a) => a.code).join(', ')}`,
  );
  assert.match(result.summary, /verdict=INVALID/);
});

test('the same run without the bug keeps a valid history', { timeout: 120_000 }, async (t) => {
  const result = await runJepsen({
    workload: 'register',
    nemesis: 'partition-leader',
    seed: staleSeed,
    nodes: 3,
    timeMs: staleRunMs,
  });
  t.diagnostic(result.summary);
  assert.equal(result.verdict.valid, true, result.summary);
});
