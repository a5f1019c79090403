// Quorum arithmetic of Flexible Paxos, table-driven and checked exhaustively on small clusters.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  checkIntersection,
  isQuorum,
  isQuorumImpossible,
  QuorumConfigError,
  quorumIndex,
  quorumSizes,
} from '../../src/paxos/index.js';

describe('quorum sizes', () => {
  const table: { voters: number; phase2?: number; phase1: number; expected2: number }[] = [
    { voters: 1, phase1: 1, expected2: 1 },
    { voters: 2, phase1: 2, expected2: 2 },
    { voters: 3, phase1: 2, expected2: 2 },
    { voters: 4, phase1: 3, expected2: 3 },
    { voters: 5, phase1: 3, expected2: 3 },
    { voters: 7, phase1: 4, expected2: 4 },
    // The example: 5 nodes commit with 2 acceptances, elections need 4 promises.
    { voters: 5, phase2: 2, phase1: 4, expected2: 2 },
    { voters: 5, phase2: 1, phase1: 5, expected2: 1 },
    { voters: 3, phase2: 1, phase1: 3, expected2: 1 },
    { voters: 3, phase2: 2, phase1: 2, expected2: 2 },
    // A phase-2 quorum above a majority buys nothing: phase 1 stays a majority (ballots need it).
    { voters: 5, phase2: 4, phase1: 3, expected2: 4 },
    { voters: 4, phase2: 2, phase1: 3, expected2: 2 },
    { voters: 7, phase2: 3, phase1: 5, expected2: 3 },
  ];
  for (const row of table) {
    test(`${row.voters} voters, phase-2 quorum ${row.phase2 ?? 'majority'} → phase 1 needs ${row.phase1}`, () => {
      assert.deepEqual(quorumSizes(row.voters, row.phase2), { phase1: row.phase1, phase2: row.expected2 });
    });
  }

  test('quorum intersection is refused when it cannot hold: K = 0, K > N, no voters', () => {
    for (const [voters, k] of [
      [3, 0],
      [3, 4],
      [5, 6],
      [0, undefined],
      [3, 1.5],
    ] as [number, number | undefined][]) {
      assert.throws(() => quorumSizes(voters, k), QuorumConfigError, `${voters} voters, K=${k}`);
    }
  });

  test('quorum intersection: checkIntersection rejects pairs that miss each other', () => {
    assert.throws(() => checkIntersection(5, { phase1: 3, phase2: 2 }), /do not intersect/);
    assert.throws(() => checkIntersection(4, { phase1: 2, phase2: 3 }), /two phase-1 quorums/);
    assert.doesNotThrow(() => checkIntersection(5, { phase1: 4, phase2: 2 }));
  });

  test('quorum intersection, exhaustively: every Q1 meets every Q2 and every other Q1 (N ≤ 7)', () => {
    for (let n = 1; n <= 7; n++) {
      for (const k of [undefined, ...Array.from({ length: n }, (_, i) => i + 1)]) {
        const { phase1, phase2 } = quorumSizes(n, k);
        const subsets = (size: number): number[] => {
          const out: number[] = [];
          for (let mask = 0; mask < 1 << n; mask++) if (popcount(mask) === size) out.push(mask);
          return out;
        };
        const q1s = subsets(phase1);
        const q2s = subsets(phase2);
        for (const a of q1s) {
          for (const b of q2s) assert.notEqual(a & b, 0, `N=${n} K=${k}: Q1 ${a} misses Q2 ${b}`);
          for (const c of q1s) assert.notEqual(a & c, 0, `N=${n} K=${k}: Q1 ${a} misses Q1 ${c}`);
        }
      }
    }
  });
});

describe('quorum over a configuration (joint: both halves)', () => {
  const simple = { incoming: new Set([1, 2, 3, 4, 5]), outgoing: new Set<number>() };
  const joint = { incoming: new Set([1, 2, 3]), outgoing: new Set([3, 4, 5]) };

  test('phase-2 quorum of 2 in 5 voters: two acceptances choose, three promises do not elect', () => {
    const has = (ids: number[]) => (id: number) => ids.includes(id);
    assert.equal(isQuorum(simple, 'phase2', 2, has([1, 4])), true);
    assert.equal(isQuorum(simple, 'phase2', 2, has([1])), false);
    assert.equal(isQuorum(simple, 'phase1', 2, has([1, 2, 3])), false);
    assert.equal(isQuorum(simple, 'phase1', 2, has([1, 2, 3, 5])), true);
  });

  test('a joint configuration needs a quorum in each half', () => {
    const has = (ids: number[]) => (id: number) => ids.includes(id);
    assert.equal(isQuorum(joint, 'phase2', undefined, has([1, 2])), false);
    assert.equal(isQuorum(joint, 'phase2', undefined, has([1, 3, 4])), true);
    assert.equal(isQuorum(joint, 'phase1', 1, has([1, 2, 3])), false, 'K=1 needs every voter of both halves');
    assert.equal(isQuorum(joint, 'phase1', 1, has([1, 2, 3, 4, 5])), true);
  });

  test('an election is lost once rejections leave no quorum in some half', () => {
    const rejected = (ids: number[]) => (id: number) => ids.includes(id);
    assert.equal(isQuorumImpossible(simple, 'phase1', 2, rejected([1, 2])), true, 'needs 4 of 5');
    assert.equal(isQuorumImpossible(simple, 'phase1', 2, rejected([1])), false);
    assert.equal(isQuorumImpossible(joint, 'phase1', undefined, rejected([4, 5])), true);
  });

  test('quorumIndex is the K-th highest acceptance, the minimum over halves', () => {
    const acked = new Map([
      [1, 10],
      [2, 7],
      [3, 5],
      [4, 9],
      [5, 2],
    ]);
    const of = (id: number) => acked.get(id) ?? 0;
    assert.equal(quorumIndex(simple, 'phase2', undefined, of), 7);
    assert.equal(quorumIndex(simple, 'phase2', 2, of), 9);
    assert.equal(quorumIndex(simple, 'phase2', 1, of), 10);
    assert.equal(quorumIndex(joint, 'phase2', undefined, of), Math.min(7, 5));
  });
});

function popcount(x: number): number {
  let c = 0;
  for (let v = x; v > 0; v &= v - 1) c++;
  return c;
}
