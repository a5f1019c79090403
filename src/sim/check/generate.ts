// Builds register histories that are linearizable by construction: every op gets a
// linearization point inside its [invoke, complete] interval, outputs are computed by applying
// the ops in linearization-point order. Used to test the checker itself (property tests, scale
// tests) and by anyone who needs a known-good history to compare against.

import type { OpStatus } from './history.js';
import type { RegisterOp, RegisterValue } from './register.js';

/** What became of an op: answered, timed out after taking effect, timed out without, or refused. */
export type PlannedOutcome = 'ok' | 'unknown-applied' | 'unknown-lost' | 'fail';

export interface PlannedOp {
  client: number;
  key: string;
  kind: 'read' | 'write' | 'cas' | 'delete';
  /** Value written (write) or swapped in (cas). */
  value: RegisterValue;
  /** Expected value (cas only). */
  expected: RegisterValue;
  /** Idle time of the client before invoking. */
  thinkTime: number;
  /** Invocation to linearization point. */
  latencyBefore: number;
  /** Linearization point to reply (or to timeout). */
  latencyAfter: number;
  outcome: PlannedOutcome;
}

interface Timed {
  plan: PlannedOp;
  id: number;
  invokeTime: number;
  pointTime: number;
  completeTime: number;
}

function schedule(plans: readonly PlannedOp[]): Timed[] {
  const clientFree = new Map<number, number>();
  return plans.map((plan, id) => {
    const invokeTime = (clientFree.get(plan.client) ?? 0) + plan.thinkTime;
    // Fractional offsets keep linearization points distinct without biasing the order.
    const pointTime = invokeTime + plan.latencyBefore + (id + 1) / (plans.length + 1);
    const completeTime = Math.ceil(pointTime + plan.latencyAfter);
    clientFree.set(plan.client, completeTime);
    return { plan, id, invokeTime, pointTime, completeTime };
  });
}

function statusOf(outcome: PlannedOutcome): OpStatus {
  switch (outcome) {
    case 'ok':
      return 'ok';
    case 'fail':
      return 'fail';
    case 'unknown-applied':
    case 'unknown-lost':
      return 'unknown';
  }
}

/** Applies one op at its linearization point; returns its output and the new value. */
function apply(
  plan: PlannedOp,
  value: RegisterValue,
): { output: RegisterValue | boolean | undefined; next: RegisterValue } {
  const applies = plan.outcome === 'ok' || plan.outcome === 'unknown-applied';
  switch (plan.kind) {
    case 'read':
      return { output: value, next: value };
    case 'write':
      return { output: undefined, next: applies ? plan.value : value };
    case 'delete':
      return { output: undefined, next: applies ? null : value };
    case 'cas': {
      const swapped = value === plan.expected;
      return { output: swapped, next: applies && swapped ? plan.value : value };
    }
  }
}

function inputOf(plan: PlannedOp): RegisterOp['input'] {
  switch (plan.kind) {
    case 'read':
    case 'delete':
      return undefined;
    case 'write':
      return plan.value;
    case 'cas':
      return { expected: plan.expected, value: plan.value };
  }
}

/** A linearizable history of the planned ops (op ids are plan indexes). */
export function historyFromPlan(plans: readonly PlannedOp[]): RegisterOp[] {
  const timed = schedule(plans);
  const outputs = new Map<number, RegisterValue | boolean | undefined>();
  const values = new Map<string, RegisterValue>();
  for (const t of [...timed].sort((a, b) => a.pointTime - b.pointTime)) {
    const { output, next } = apply(t.plan, values.get(t.plan.key) ?? null);
    outputs.set(t.id, output);
    values.set(t.plan.key, next);
  }
  return timed.map((t) => {
    const status = statusOf(t.plan.outcome);
    const op: RegisterOp = {
      id: t.id,
      process: t.plan.client,
      kind: t.plan.kind,
      key: t.plan.key,
      input: inputOf(t.plan),
      invokeTime: t.invokeTime,
      status,
    };
    if (status !== 'unknown') op.completeTime = t.completeTime;
    if (status === 'ok') op.output = outputs.get(t.id)!;
    return op;
  });
}

/** mulberry32: a small seeded PRNG, so generated histories replay from a seed. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface RandomPlanOptions {
  ops: number;
  clients: number;
  keys: number;
  /** Register values are drawn from 0..valueDomain-1; small domains make CAS succeed often. */
  valueDomain: number;
  /** Probability an op times out (half of those still take effect). */
  unknownRate: number;
  failRate: number;
  latencyMax: number;
}

export function randomPlan(random: () => number, options: RandomPlanOptions): PlannedOp[] {
  const pick = (n: number): number => Math.floor(random() * n);
  const kinds = ['read', 'read', 'write', 'cas', 'delete'] as const;
  const plans: PlannedOp[] = [];
  for (let i = 0; i < options.ops; i++) {
    const roll = random();
    let outcome: PlannedOutcome = 'ok';
    if (roll < options.unknownRate) outcome = random() < 0.5 ? 'unknown-applied' : 'unknown-lost';
    else if (roll < options.unknownRate + options.failRate) outcome = 'fail';
    plans.push({
      client: pick(options.clients),
      key: `k${pick(options.keys)}`,
      kind: kinds[pick(kinds.length)]!,
      value: pick(options.valueDomain),
      expected: pick(options.valueDomain),
      thinkTime: pick(3),
      latencyBefore: pick(options.latencyMax),
      latencyAfter: pick(options.latencyMax),
      outcome,
    });
  }
  return plans;
}
