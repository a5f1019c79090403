import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { historyFromPlan, randomPlan, seededRandom } from '../../src/sim/check/generate.js';
import { checkLinearizability } from '../../src/sim/check/linearizability.js';
import { registerModel } from '../../src/sim/check/register.js';

// 5 keys × 2,000 ops each, 10 concurrent clients, 1% unknown and 1% failed ops. The check took
// 40-300 ms on the shared 2-core dev box (generation excluded; see the diagnostic line). The
// bound leaves room for a loaded CI machine while still catching an exponential blow-up.
const SCALE_CHECK_MS_MAX = 5_000;

describe('linearizability at scale', () => {
  it('checks 5 keys x 2,000 ops from 10 concurrent clients within a few seconds', (t) => {
    const plan = randomPlan(seededRandom(20261125), {
      ops: 10_000,
      clients: 10,
      keys: 5,
      valueDomain: 5,
      unknownRate: 0.01,
      failRate: 0.01,
      latencyMax: 20,
    });
    const history = historyFromPlan(plan);
    const started = performance.now();
    const verdict = checkLinearizability(history, registerModel);
    const elapsedMs = performance.now() - started;
    assert.equal(verdict.valid, true, verdict.explanation);
    assert.equal(verdict.keys.length, 5);
    t.diagnostic(`check took ${elapsedMs.toFixed(0)} ms, ${verdict.steps} steps`);
    assert.ok(elapsedMs < SCALE_CHECK_MS_MAX, `took ${elapsedMs.toFixed(0)} ms`);
  });

  it('finds a single corrupted read among 10,000 ops', (t) => {
    const plan = randomPlan(seededRandom(7), {
      ops: 10_000,
      clients: 10,
      keys: 5,
      valueDomain: 5,
      unknownRate: 0.01,
      failRate: 0.01,
      latencyMax: 20,
    });
    const history = historyFromPlan(plan);
    const victim = history.filter((op) => op.kind === 'read' && op.status === 'ok')[1500]!;
    const corrupted = history.map((op) => (op === victim ? { ...op, output: 'corrupted' } : op));
    const started = performance.now();
    const verdict = checkLinearizability(corrupted, registerModel);
    const elapsedMs = performance.now() - started;
    assert.equal(verdict.valid, false);
    assert.deepEqual(
      verdict.keys.filter((k) => k.valid === false).map((k) => k.key),
      [victim.key],
    );
    t.diagnostic(`check took ${elapsedMs.toFixed(0)} ms, ${verdict.steps} steps`);
    assert.ok(elapsedMs < SCALE_CHECK_MS_MAX, `took ${elapsedMs.toFixed(0)} ms`);
  });
});
