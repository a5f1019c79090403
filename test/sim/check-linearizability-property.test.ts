import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { historyFromPlan, type PlannedOp } from '../../src/sim/check/generate.js';
import type { OpStatus } from '../../src/sim/check/history.js';
import { checkLinearizability, type LinearizabilityVerdict } from '../../src/sim/check/linearizability.js';
import { type RegisterOp, type RegisterValue, registerModel } from '../../src/sim/check/register.js';

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
        const history = historyFromPlan(plan);
        for (const precheck of [true, false]) {
          const verdict: LinearizabilityVerdict = checkLinearizability(history, registerModel, { precheck });
          assert.equal(verdict.valid, true, verdict.explanation);
        }
      }),
      { numRuns: 500 },
    );
  });

  it('rejects such a history once one read is changed to a value never written', () => {
    fc.assert(
      fc.property(planArb, fc.nat(), (plan, pick) => {
        const corrupted = corruptOneRead(historyFromPlan(plan), pick);
        fc.pre(corrupted !== undefined);
        // Both the timing precheck and the search on its own must catch it.
        for (const precheck of [true, false]) {
          const verdict: LinearizabilityVerdict = checkLinearizability(corrupted!, registerModel, {
            precheck,
          });
          assert.equal(
            verdict.valid,
            false,
            `a read of a never-written value was accepted (precheck ${precheck})`,
          );
          assert.equal(verdict.anomalies[0]?.code, 'LINEARIZABILITY_VIOLATION');
          assert.match(verdict.explanation, /never-written/);
        }
      }),
      { numRuns: 500 },
    );
  });
});

/** Tries every order of every subset of unknown ops: the definition, for tiny histories. */
function linearizableByBruteForce(history: readonly RegisterOp[]): boolean {
  const live = history.filter((op) => op.status === 'ok' || (op.status === 'unknown' && op.kind !== 'read'));
  const placed = new Set<RegisterOp>();
  const mustPrecede = (p: RegisterOp, op: RegisterOp): boolean =>
    p.status === 'ok' && p.completeTime! < op.invokeTime;
  const search = (state: RegisterValue): boolean => {
    if (live.every((op) => op.status !== 'ok' || placed.has(op))) return true;
    for (const op of live) {
      if (placed.has(op) || live.some((p) => p !== op && !placed.has(p) && mustPrecede(p, op))) continue;
      const { ok, newState } = registerModel.step(state, op);
      if (!ok) continue;
      placed.add(op);
      if (search(newState)) return true;
      placed.delete(op);
    }
    return false;
  };
  return search(null);
}

const smallValueArb = fc.constantFrom<RegisterValue>(null, 0, 1);

interface OpSpec {
  kind: 'read' | 'write' | 'cas';
  value: RegisterValue;
  expected: RegisterValue;
  swapped: boolean;
  invokeTime: number;
  duration: number;
  status: OpStatus;
}

/** Arbitrary (often not linearizable) single-key histories with made-up outputs. */
const randomOpsArb: fc.Arbitrary<OpSpec[]> = fc.array(
  fc.record({
    kind: fc.constantFrom<OpSpec['kind']>('read', 'write', 'cas'),
    value: smallValueArb,
    expected: smallValueArb,
    swapped: fc.boolean(),
    invokeTime: fc.integer({ min: 0, max: 12 }),
    duration: fc.integer({ min: 0, max: 6 }),
    status: fc.constantFrom<OpStatus>('ok', 'ok', 'ok', 'unknown', 'fail'),
  }),
  { minLength: 1, maxLength: 7 },
);

function toHistory(specs: readonly OpSpec[]): RegisterOp[] {
  return specs.map((spec, i) => {
    const op: RegisterOp = {
      id: i + 1,
      process: i,
      kind: spec.kind,
      key: 'k',
      input:
        spec.kind === 'write'
          ? spec.value
          : spec.kind === 'cas'
            ? { expected: spec.expected, value: spec.value }
            : undefined,
      invokeTime: spec.invokeTime,
      status: spec.status,
    };
    if (spec.status !== 'unknown') op.completeTime = spec.invokeTime + spec.duration;
    if (spec.status === 'ok' && spec.kind === 'read') op.output = spec.value;
    if (spec.status === 'ok' && spec.kind === 'cas') op.output = spec.swapped;
    return op;
  });
}

describe('linearizability property: the checker agrees with brute force on tiny histories', () => {
  it('gives the same verdict as trying every order, with and without the precheck', () => {
    fc.assert(
      fc.property(randomOpsArb, (specs) => {
        const history = toHistory(specs);
        const expected = linearizableByBruteForce(history);
        for (const precheck of [true, false]) {
          const verdict: LinearizabilityVerdict = checkLinearizability(history, registerModel, { precheck });
          assert.equal(verdict.valid, expected, verdict.explanation);
        }
      }),
      { numRuns: 1000 },
    );
  });
});
