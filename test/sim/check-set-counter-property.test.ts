import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { type CounterOp, checkCounter } from '../../src/sim/check/counter.js';
import type { OpStatus } from '../../src/sim/check/history.js';
import { checkSet, type SetOp } from '../../src/sim/check/set.js';

type Outcome = 'ok' | 'unknown-applied' | 'unknown-lost' | 'fail';

interface Step {
  client: number;
  read: boolean;
  amount: number;
  think: number;
  before: number;
  after: number;
  outcome: Outcome;
}

const stepArb: fc.Arbitrary<Step> = fc.record({
  client: fc.integer({ min: 0, max: 4 }),
  read: fc.boolean(),
  amount: fc.integer({ min: 0, max: 5 }),
  think: fc.integer({ min: 0, max: 3 }),
  before: fc.integer({ min: 0, max: 10 }),
  after: fc.integer({ min: 0, max: 10 }),
  outcome: fc.constantFrom<Outcome>('ok', 'ok', 'ok', 'unknown-applied', 'unknown-lost', 'fail'),
});

interface Timed {
  step: Step;
  id: number;
  invoke: number;
  point: number;
  complete: number;
  status: OpStatus;
}

/** Schedules steps per client, then a final read by a fresh client after everything settled. */
function schedule(steps: readonly Step[]): Timed[] {
  const free = new Map<number, number>();
  const timed = steps.map((step, id) => {
    const invoke = (free.get(step.client) ?? 0) + step.think;
    const point = invoke + step.before + (id + 1) / (steps.length + 2);
    const complete = Math.ceil(point + step.after);
    free.set(step.client, complete);
    const status: OpStatus = step.read
      ? 'ok'
      : step.outcome === 'ok'
        ? 'ok'
        : step.outcome === 'fail'
          ? 'fail'
          : 'unknown';
    return { step, id, invoke, point, complete, status };
  });
  const end = Math.max(0, ...timed.map((t) => t.complete + t.step.before)) + 1;
  const finalRead: Step = { client: 99, read: true, amount: 0, think: 0, before: 0, after: 1, outcome: 'ok' };
  timed.push({
    step: finalRead,
    id: steps.length,
    invoke: end,
    point: end + 0.5,
    complete: end + 1,
    status: 'ok',
  });
  return timed;
}

const applies = (t: Timed): boolean => t.step.outcome === 'ok' || t.step.outcome === 'unknown-applied';

function setHistory(steps: readonly Step[]): SetOp[] {
  const timed = schedule(steps);
  const contents: number[] = [];
  const outputs = new Map<number, number[]>();
  for (const t of [...timed].sort((a, b) => a.point - b.point)) {
    if (t.step.read) outputs.set(t.id, [...contents]);
    else if (applies(t)) contents.push(t.id);
  }
  return timed.map((t) => {
    const op: SetOp = {
      id: t.id,
      process: t.step.client,
      kind: t.step.read ? 'read' : 'add',
      key: 's',
      input: t.step.read ? undefined : t.id,
      invokeTime: t.invoke,
      status: t.status,
    };
    if (t.status !== 'unknown') op.completeTime = t.complete;
    if (t.step.read) op.output = outputs.get(t.id)!;
    return op;
  });
}

function counterHistory(steps: readonly Step[]): CounterOp[] {
  const timed = schedule(steps);
  let total = 0;
  const outputs = new Map<number, number>();
  for (const t of [...timed].sort((a, b) => a.point - b.point)) {
    if (t.step.read) outputs.set(t.id, total);
    else if (applies(t)) total += t.step.amount;
  }
  return timed.map((t) => {
    const op: CounterOp = {
      id: t.id,
      process: t.step.client,
      kind: t.step.read ? 'read' : 'add',
      key: 'c',
      input: t.step.read ? undefined : t.step.amount,
      invokeTime: t.invoke,
      status: t.status,
    };
    if (t.status !== 'unknown') op.completeTime = t.complete;
    if (t.step.read) op.output = outputs.get(t.id)!;
    return op;
  });
}

const stepsArb = fc.array(stepArb, { minLength: 1, maxLength: 40 });

describe('set and counter checkers against real executions', () => {
  it('accept every set history produced by an execution', () => {
    fc.assert(
      fc.property(stepsArb, (steps) => {
        const verdict = checkSet(setHistory(steps));
        assert.equal(verdict.valid, true, verdict.explanation);
      }),
      { numRuns: 300 },
    );
  });

  it('report an acknowledged element dropped from the final read as lost', () => {
    fc.assert(
      fc.property(stepsArb, fc.nat(), (steps, pick) => {
        const history = setHistory(steps);
        const acked = history.filter((op) => op.kind === 'add' && op.status === 'ok');
        fc.pre(acked.length > 0);
        const victim = acked[pick % acked.length]!.input!;
        const final = history[history.length - 1]!;
        const mutated = history.map((op) =>
          op === final ? { ...op, output: final.output!.filter((e) => e !== victim) } : op,
        );
        const verdict = checkSet(mutated);
        assert.equal(verdict.valid, false);
        assert.ok(verdict.lost.includes(victim));
      }),
      { numRuns: 300 },
    );
  });

  it('accept every counter history produced by an execution', () => {
    fc.assert(
      fc.property(stepsArb, (steps) => {
        const verdict = checkCounter(counterHistory(steps));
        assert.equal(verdict.valid, true, verdict.explanation);
      }),
      { numRuns: 300 },
    );
  });

  it('reject a final counter value outside [acknowledged, acknowledged + unknown]', () => {
    fc.assert(
      fc.property(stepsArb, fc.boolean(), (steps, over) => {
        const history = counterHistory(steps);
        const final = history[history.length - 1]!;
        const probe = checkCounter(history);
        fc.pre(over || probe.acknowledgedSum > 0);
        const value = over ? probe.acknowledgedSum + probe.unknownSum + 1 : probe.acknowledgedSum - 1;
        const verdict = checkCounter(history.map((op) => (op === final ? { ...op, output: value } : op)));
        assert.equal(verdict.valid, false);
      }),
      { numRuns: 300 },
    );
  });
});
