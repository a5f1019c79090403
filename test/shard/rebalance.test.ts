// Rebalance plans: etcd-style move steps (learner → snapshot → promote → transfer → remove), never
// fewer voters than the replication factor, and the plan reaches the target exactly.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { RebalanceInvalidError } from '../../src/shard/errors.js';
import { placeReplicas } from '../../src/shard/placement.js';
import { type CurrentReplicas, type Move, planRebalance } from '../../src/shard/rebalance.js';

interface ShardState {
  voters: Set<number>;
  learners: Set<number>;
  leader: number;
}

/**
 * Runs a plan step by step against a model of each shard's membership, checking every step is
 * legal and that no removal leaves fewer than `replicationFactor` voters. Returns the final states
 * and each node's highest replica count along the way.
 */
function execute(
  current: ReadonlyMap<number, CurrentReplicas>,
  plan: readonly Move[],
  replicationFactor: number,
): { states: Map<number, ShardState>; peak: Map<number, number> } {
  const states = new Map(
    [...current].map(([shard, c]) => [
      shard,
      // A leader the planner does not know still exists: the model makes it the highest voter.
      {
        voters: new Set(c.voters),
        learners: new Set(c.learners ?? []),
        leader: c.leader ?? Math.max(...c.voters),
      },
    ]),
  );
  const load = new Map<number, number>();
  const peak = new Map<number, number>();
  const bump = (node: number, by: number) => {
    load.set(node, (load.get(node) ?? 0) + by);
    peak.set(node, Math.max(peak.get(node) ?? 0, load.get(node)!));
  };
  for (const s of states.values()) for (const node of [...s.voters, ...s.learners]) bump(node, 1);
  for (const move of plan) {
    const s = states.get(move.shard)!;
    const votersBefore = s.voters.size;
    for (const step of move.steps) {
      switch (step.kind) {
        case 'add-learner':
          assert.ok(
            !s.voters.has(step.node) && !s.learners.has(step.node),
            `node ${step.node} is already a member`,
          );
          s.learners.add(step.node);
          bump(step.node, 1);
          break;
        case 'snapshot':
          assert.ok(s.learners.has(step.node), 'only a learner catches up from a snapshot');
          break;
        case 'promote':
          assert.ok(s.learners.has(step.node), 'only a learner is promoted');
          s.learners.delete(step.node);
          s.voters.add(step.node);
          break;
        case 'transfer-leader':
          assert.ok(s.voters.has(step.to) && step.to !== step.from, 'leadership goes to another voter');
          if (s.leader === step.from) s.leader = step.to;
          break;
        case 'remove':
          assert.notEqual(s.leader, step.node, 'the leader is never removed while it leads');
          if (s.voters.has(step.node)) {
            s.voters.delete(step.node);
            assert.ok(
              s.voters.size >= replicationFactor,
              `shard ${move.shard} dropped to ${s.voters.size} voters`,
            );
          } else {
            assert.ok(s.learners.delete(step.node), `node ${step.node} is not a member`);
          }
          bump(step.node, -1);
          break;
      }
      assert.ok(
        s.voters.size >= Math.min(votersBefore, replicationFactor),
        'voters never go below where they were',
      );
    }
  }
  return { states, peak };
}

const kinds = (move: Move) => move.steps.map((s) => s.kind).join(' ');

test('a move is learner, snapshot, promote, then remove', () => {
  const current = new Map([[1, { voters: [1, 2, 3], leader: 1 }]]);
  const plan = planRebalance({ current, target: new Map([[1, [1, 2, 4]]]), replicationFactor: 3 });
  assert.equal(plan.length, 1);
  assert.equal(plan[0]!.from, 3);
  assert.equal(plan[0]!.to, 4);
  assert.equal(kinds(plan[0]!), 'add-learner snapshot promote remove');
});

test('moving the leader away transfers leadership first, to the preferred node', () => {
  const current = new Map([[1, { voters: [1, 2, 3], leader: 3 }]]);
  const plan = planRebalance({ current, target: new Map([[1, [2, 1, 4]]]), replicationFactor: 3 });
  assert.equal(kinds(plan[0]!), 'add-learner snapshot promote transfer-leader remove');
  assert.deepEqual(plan[0]!.steps[3], { kind: 'transfer-leader', from: 3, to: 2 });
});

test('with the leader unknown, every removal carries a conditional transfer', () => {
  const current = new Map([[1, { voters: [1, 2, 3] }]]);
  const plan = planRebalance({ current, target: new Map([[1, [4, 5, 1]]]), replicationFactor: 3 });
  assert.equal(plan.length, 2);
  assert.deepEqual(plan[0]!.steps[3], { kind: 'transfer-leader', from: 2, to: 4 });
  // The first transfer may have been skipped (2 did not lead), so the leader is still unknown.
  assert.deepEqual(plan[1]!.steps[3], { kind: 'transfer-leader', from: 3, to: 4 });
});

test('an under-replicated shard is topped up before anything leaves it', () => {
  const current = new Map([[1, { voters: [1], leader: 1 }]]);
  const plan = planRebalance({ current, target: new Map([[1, [2, 3, 4]]]), replicationFactor: 3 });
  assert.deepEqual(
    plan.map((m) => [m.from, m.to]),
    [
      [undefined, 3],
      [undefined, 4],
      [1, 2],
    ],
  );
  const { states } = execute(current, plan, 3);
  assert.deepEqual([...states.get(1)!.voters].sort(), [2, 3, 4]);
  assert.equal(states.get(1)!.leader, 2);
});

test('surplus voters are removed last, and learners are promoted or removed', () => {
  const current = new Map([[1, { voters: [1, 2, 3, 4], learners: [5, 6], leader: 1 }]]);
  const plan = planRebalance({ current, target: new Map([[1, [1, 2, 5]]]), replicationFactor: 3 });
  assert.deepEqual(
    plan.map((m) => [m.from, m.to, kinds(m)]),
    [
      [6, undefined, 'remove'],
      [3, 5, 'snapshot promote remove'],
      [4, undefined, 'remove'],
    ],
  );
  const { states } = execute(current, plan, 3);
  assert.deepEqual([...states.get(1)!.voters].sort(), [1, 2, 5]);
  assert.equal(states.get(1)!.learners.size, 0);
});

test('a shard already in place needs no move', () => {
  const current = new Map([[1, { voters: [3, 1, 2], leader: 2 }]]);
  assert.deepEqual(planRebalance({ current, target: new Map([[1, [1, 2, 3]]]), replicationFactor: 3 }), []);
});

test('bad plans are refused', () => {
  const current = new Map([[1, { voters: [1, 2, 3], leader: 1 }]]);
  const plan =
    (target: Map<number, number[]>, c: Map<number, CurrentReplicas> = current, rf = 3) =>
    () =>
      planRebalance({ current: c, target, replicationFactor: rf });
  assert.throws(plan(new Map([[1, [1, 2]]])), RebalanceInvalidError);
  assert.throws(plan(new Map([[1, [1, 1, 2]]])), /twice/);
  assert.throws(plan(new Map()), /no target/);
  assert.throws(
    plan(
      new Map([
        [1, [1, 2, 3]],
        [2, [1, 2, 3]],
      ]),
    ),
    /create it/,
  );
  assert.throws(plan(new Map([[1, [1, 2, 3]]]), current, 0), /replication factor/);
  assert.throws(
    plan(new Map([[1, [1, 2, 3]]]), new Map([[1, { voters: [1, 2], leader: 5 }]])),
    /not one of its voters/,
  );
  assert.throws(
    plan(new Map([[1, [1, 2, 3]]]), new Map([[1, { voters: [1, 2], learners: [2] }]])),
    /learners/,
  );
  assert.throws(plan(new Map([[1, [1, 2, 3]]]), new Map([[1, { voters: [] }]])), /at least one/);
});

const clusterArb = fc
  .record({
    nodeCount: fc.integer({ min: 3, max: 9 }),
    shardCount: fc.integer({ min: 1, max: 25 }),
    replicationFactor: fc.integer({ min: 1, max: 3 }),
    seed: fc.array(fc.nat(), { minLength: 200, maxLength: 200 }),
  })
  .map(({ nodeCount, shardCount, replicationFactor, seed }) => {
    let i = 0;
    const next = (bound: number) => seed[i++ % seed.length]! % bound;
    const pickDistinct = (count: number) => {
      const pool = Array.from({ length: nodeCount }, (_, k) => k + 1);
      const out: number[] = [];
      while (out.length < count && pool.length > 0) out.push(pool.splice(next(pool.length), 1)[0]!);
      return out;
    };
    const current = new Map<number, CurrentReplicas>();
    const target = new Map<number, number[]>();
    for (let shard = 1; shard <= shardCount; shard++) {
      const members = pickDistinct(1 + next(Math.min(nodeCount, 5)));
      const learnerCount = next(2);
      const voters = members.slice(0, Math.max(1, members.length - learnerCount));
      const learners = members.slice(voters.length);
      const leaderKnown = next(3) > 0;
      current.set(shard, {
        voters,
        learners,
        ...(leaderKnown ? { leader: voters[next(voters.length)]! } : {}),
      });
      target.set(shard, pickDistinct(replicationFactor + next(2)));
    }
    return { current, target, replicationFactor };
  });

test('any plan reaches the target, never removes below the replication factor, and never removes a leader', () => {
  fc.assert(
    fc.property(clusterArb, ({ current, target, replicationFactor }) => {
      const plan = planRebalance({ current, target, replicationFactor });
      const { states } = execute(current, plan, replicationFactor);
      for (const [shard, nodes] of target) {
        const s = states.get(shard)!;
        assert.deepEqual(
          [...s.voters].sort((a, b) => a - b),
          [...nodes].sort((a, b) => a - b),
        );
        assert.equal(s.learners.size, 0);
        assert.ok(s.voters.has(s.leader));
      }
      // Each shard's moves keep their order, and a shard with the right voters gets none.
      for (const [shard, c] of current) {
        const same =
          (c.learners ?? []).length === 0 &&
          c.voters.length === target.get(shard)!.length &&
          c.voters.every((n) => target.get(shard)!.includes(n));
        if (same) assert.ok(!plan.some((m) => m.shard === shard));
      }
    }),
    { numRuns: 500 },
  );
});

test('from one placement to the next, no node ever holds more than one replica above its bound', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 3, max: 10 }),
      fc.integer({ min: 1, max: 60 }),
      fc.integer({ min: 1, max: 3 }),
      fc.boolean(),
      (nodeCount, shardCount, replicationFactor, grow) => {
        const shards = Array.from({ length: shardCount }, (_, i) => i + 1);
        const ids = Array.from({ length: nodeCount }, (_, i) => i + 1);
        const after = grow ? [...ids, nodeCount + 1] : ids.slice(1);
        const rf = Math.min(replicationFactor, after.length);
        const before = placeReplicas({ nodes: ids.map((id) => ({ id })), shards, replicationFactor: rf });
        const next = placeReplicas({ nodes: after.map((id) => ({ id })), shards, replicationFactor: rf });
        const current = new Map(
          [...before.replicas].map(([shard, nodes]) => [shard, { voters: nodes, leader: nodes[0]! }]),
        );
        const plan = planRebalance({ current, target: next.replicas, replicationFactor: rf });
        const { peak } = execute(current, plan, rf);
        for (const [node, high] of peak) {
          const bound = Math.max(before.loads.get(node) ?? 0, next.loads.get(node) ?? 0);
          assert.ok(high <= bound + 1, `node ${node} reached ${high} replicas, bound ${bound}`);
        }
      },
    ),
    { numRuns: 300 },
  );
});
