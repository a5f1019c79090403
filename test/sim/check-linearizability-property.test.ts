import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { historyFromPlan, type PlannedOp } from '../../src/sim/check/generate.js';
import { checkLinearizability } from '../../src/sim/check/linearizability.js';
import { type RegisterOp, registerModel } from '../../src/sim/check/register.js';

// Mostly a tiny domain (values repeat, CAS succeeds often), sometimes wide (values unique, so
// unknown writes are often unobserved and omitted before the search).
const valueArb = fc.oneof(
  fc.constant(null),
  fc.integer({ min: 0, max: 3 }),
  fc.integer({ min: 0, max: 1000 }),
);

const plannedOpArb: fc.Arbitrary<PlannedOp> = fc.record({
  client: fc.integer({ min: 0, max: 4 }),
  key: fc.constantFrom('a', 'b'),
  kind: fc.constantFrom('read', 'read', 'write', 'cas', 'delete'),
  value: valueArb,
  expected: valueArb,
  thinkTime: fc.integer({ min: 0, max: 3 }),
  latencyBefore: fc.integer({ min: 0, max: 12 }),
  latencyAfter: fc.integer({ min: 0, max: 12 }),
  outcome: fc.constantFrom('ok', 'ok', 'ok', 'ok', 'ok', 'unknown-applied', 'unknown-lost', 'fail'),
});

const planArb = fc.array(plannedOpArb, { minLength: 1, maxLength: 60 });

const NEVER_WRITTEN = 'never-written';

/** The history with one ok read changed to return a value no op ever wrote. */
function corruptOneRead(history: RegisterOp[], pick: number): RegisterOp[] | undefined {
  const reads = history.filter((op) => op.kind === 'read' && op.status === 'ok');
  if (reads.length === 0) return undefined;
  const victim = reads[pick % reads.length]!;
  return history.map((op) => (op === victim ? { ...op, output: NEVER_WRITTEN } : op));
}

describe('linearizability property: the checker agrees with executions it can see', () => {
  it('accepts every history produced by a real sequential execution with random consistent timings', () => {
    fc.assert(
      fc.property(planArb, (plan) => {
        const verdict = checkLinearizability(historyFromPlan(plan), registerModel);
        assert.equal(verdict.valid, true, verdict.explanation);
      }),
      { numRuns: 500 },
    );
  });

  it('rejects such a history once one read is changed to a value never written', () => {
    fc.assert(
      fc.property(planArb, fc.nat(), (plan, pick) => {
        const corrupted = corruptOneRead(historyFromPlan(plan), pick);
        fc.pre(corrupted !== undefined);
        const verdict = checkLinearizability(corrupted!, registerModel);
        assert.equal(verdict.valid, false, 'a read of a never-written value was accepted');
        assert.equal(verdict.anomalies[0]?.code, 'LINEARIZABILITY_VIOLATION');
        assert.match(verdict.explanation, /never-written/);
      }),
      { numRuns: 500 },
    );
  });
});
