import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  jointCommittedIndex,
  jointVoteResult,
  majorityCommittedIndex,
  majorityVoteResult,
  VoteResult,
} from '../../src/raft/quorum.js';

const acked = (m: Record<number, number>) => (id: number) => m[id] ?? 0;

test('majority committed index is the highest index a majority has acknowledged', () => {
  const cases: { voters: number[]; acks: Record<number, number>; want: number }[] = [
    { voters: [1], acks: { 1: 5 }, want: 5 },
    { voters: [1, 2], acks: { 1: 5, 2: 3 }, want: 3 },
    { voters: [1, 2, 3], acks: { 1: 5, 2: 3, 3: 1 }, want: 3 },
    { voters: [1, 2, 3], acks: { 1: 5 }, want: 0 },
    { voters: [1, 2, 3, 4], acks: { 1: 9, 2: 8, 3: 7, 4: 1 }, want: 7 },
    { voters: [1, 2, 3, 4, 5], acks: { 1: 9, 2: 8, 3: 7, 4: 1, 5: 2 }, want: 7 },
    { voters: [1, 2, 3, 4, 5], acks: { 1: 9, 2: 9, 3: 2, 4: 2, 5: 2 }, want: 2 },
  ];
  for (const c of cases) {
    assert.equal(majorityCommittedIndex(new Set(c.voters), acked(c.acks)), c.want, JSON.stringify(c));
  }
});

test('an empty majority config imposes no bound on the committed index', () => {
  assert.equal(majorityCommittedIndex(new Set(), acked({})), Number.MAX_SAFE_INTEGER);
});

test('joint committed index is the minimum over both halves', () => {
  const cases: { incoming: number[]; outgoing: number[]; acks: Record<number, number>; want: number }[] = [
    { incoming: [1, 2, 3], outgoing: [], acks: { 1: 5, 2: 5, 3: 1 }, want: 5 },
    { incoming: [1, 2, 3], outgoing: [1, 4, 5], acks: { 1: 5, 2: 5, 3: 5, 4: 1, 5: 1 }, want: 1 },
    { incoming: [1, 2, 3], outgoing: [1, 4, 5], acks: { 1: 5, 2: 5, 3: 5, 4: 4, 5: 1 }, want: 4 },
    { incoming: [4, 5], outgoing: [1, 2, 3], acks: { 1: 7, 2: 7, 3: 7, 4: 7, 5: 2 }, want: 2 },
  ];
  for (const c of cases) {
    const cfg = { incoming: new Set(c.incoming), outgoing: new Set(c.outgoing) };
    assert.equal(jointCommittedIndex(cfg, acked(c.acks)), c.want, JSON.stringify(c));
  }
});

test('majority vote result: won with a quorum of grants, lost when a quorum is out of reach', () => {
  const W = VoteResult.Won;
  const L = VoteResult.Lost;
  const P = VoteResult.Pending;
  const cases: { voters: number[]; votes: [number, boolean][]; want: VoteResult }[] = [
    { voters: [], votes: [], want: W },
    { voters: [1], votes: [], want: P },
    { voters: [1], votes: [[1, true]], want: W },
    { voters: [1], votes: [[1, false]], want: L },
    { voters: [1, 2], votes: [[1, true]], want: P },
    {
      voters: [1, 2],
      votes: [
        [1, true],
        [2, false],
      ],
      want: L,
    },
    {
      voters: [1, 2, 3],
      votes: [
        [1, true],
        [2, true],
      ],
      want: W,
    },
    {
      voters: [1, 2, 3],
      votes: [
        [1, true],
        [2, false],
      ],
      want: P,
    },
    {
      voters: [1, 2, 3],
      votes: [
        [1, false],
        [2, false],
      ],
      want: L,
    },
    {
      voters: [1, 2, 3, 4],
      votes: [
        [1, true],
        [2, true],
      ],
      want: P,
    },
    {
      voters: [1, 2, 3, 4],
      votes: [
        [1, true],
        [2, true],
        [3, false],
        [4, false],
      ],
      want: L,
    },
    {
      voters: [1, 2, 3],
      votes: [
        [1, true],
        [9, true],
      ],
      want: P,
    },
  ];
  for (const c of cases) assert.equal(majorityVoteResult(new Set(c.voters), new Map(c.votes)), c.want);
});

test('joint vote result needs both halves to win; either half losing loses', () => {
  const cfg = { incoming: new Set([1, 2, 3]), outgoing: new Set([3, 4, 5]) };
  const r = (votes: [number, boolean][]) => jointVoteResult(cfg, new Map(votes));
  assert.equal(
    r([
      [1, true],
      [2, true],
    ]),
    VoteResult.Pending,
  );
  assert.equal(
    r([
      [1, true],
      [2, true],
      [3, true],
    ]),
    VoteResult.Pending,
  );
  assert.equal(
    r([
      [1, true],
      [2, true],
      [3, true],
      [4, true],
    ]),
    VoteResult.Won,
  );
  assert.equal(
    r([
      [1, true],
      [2, true],
      [4, false],
      [5, false],
    ]),
    VoteResult.Lost,
  );
  assert.equal(
    r([
      [3, true],
      [4, true],
    ]),
    VoteResult.Pending,
  );
});
