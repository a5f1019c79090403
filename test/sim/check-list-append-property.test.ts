// Properties of the list-append checker: random strictly serializable executions (with lost and
// refused outcomes) always pass; a perturbation that plants a known anomaly is always caught;
// 10,000 transactions check in a few seconds.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import {
  checkListAppend,
  type ListAppendMop,
  type ListAppendOp,
  type ListElement,
  seededRandom,
} from '../../src/sim/check/index.js';
import {
  type ListAppendPlanOptions,
  randomListAppendHistory,
} from '../../src/sim/check/list-append-generate.js';

const planArbitrary = fc.record({
  seed: fc.integer({ min: 1, max: 2 ** 30 }),
  txns: fc.integer({ min: 1, max: 150 }),
  processes: fc.integer({ min: 1, max: 8 }),
  keysActive: fc.integer({ min: 1, max: 5 }),
  unknownRate: fc.constantFrom(0, 0.1, 0.3),
  failRate: fc.constantFrom(0, 0.1),
});

function historyOf(plan: { seed: number } & ListAppendPlanOptions): ListAppendOp[] {
  return randomListAppendHistory(seededRandom(plan.seed), plan);
}

interface ReadAt {
  op: ListAppendOp;
  mopIndex: number;
  list: readonly ListElement[];
}

function okReads(history: readonly ListAppendOp[]): ReadAt[] {
  const reads: ReadAt[] = [];
  for (const op of history) {
    if (op.status !== 'ok') continue;
    op.output!.forEach((mop, mopIndex) => {
      if (mop.f === 'r' && mop.value !== null) reads.push({ op, mopIndex, list: mop.value });
    });
  }
  return reads;
}

function replaceRead(read: ReadAt, list: ListElement[]): void {
  const output = [...read.op.output!];
  const mop = output[read.mopIndex]!;
  output[read.mopIndex] = { f: 'r', key: mop.key, value: list } satisfies ListAppendMop;
  read.op.output = output;
}

function writerOf(
  history: readonly ListAppendOp[],
  key: string,
  value: ListElement,
): ListAppendOp | undefined {
  return history.find((op) => op.input.some((m) => m.f === 'append' && m.key === key && m.value === value));
}

describe('list-append checker properties', () => {
  test('random serializable executions pass, with real-time and client order', () => {
    fc.assert(
      fc.property(planArbitrary, (plan) => {
        const history = historyOf(plan);
        const verdict = checkListAppend(history, { processOrder: true });
        assert.equal(verdict.valid, true, verdict.explanation);
      }),
      { numRuns: 300 },
    );
  });

  test('a read given a value nobody appended is a garbage read', () => {
    fc.assert(
      fc.property(planArbitrary, fc.nat(), (plan, pick) => {
        const history = historyOf(plan);
        const reads = okReads(history);
        fc.pre(reads.length > 0);
        const read = reads[pick % reads.length]!;
        replaceRead(read, [...read.list, -1]);
        const verdict = checkListAppend(history);
        assert.equal(verdict.valid, false);
        assert.ok(
          verdict.anomalies.some((a) => a.code === 'LIST_APPEND_GARBAGE_READ'),
          verdict.explanation,
        );
      }),
      { numRuns: 200 },
    );
  });

  test('marking the writer of a read element as failed is an aborted read (G1a)', () => {
    fc.assert(
      fc.property(planArbitrary, fc.nat(), (plan, pick) => {
        const history = historyOf(plan);
        const reads = okReads(history).filter((r) => r.list.length > 0);
        fc.pre(reads.length > 0);
        const read = reads[pick % reads.length]!;
        const key = read.op.output![read.mopIndex]!.key;
        const writer = writerOf(history, key, read.list[read.list.length - 1]!)!;
        fc.pre(writer !== read.op);
        writer.status = 'fail';
        writer.completeTime ??= writer.invokeTime + 1;
        delete writer.output;
        const verdict = checkListAppend(history);
        assert.ok(
          verdict.anomalies.some((a) => a.code === 'LIST_APPEND_G1A'),
          verdict.explanation,
        );
      }),
      { numRuns: 200 },
    );
  });

  test('a read that drops an element acknowledged before it began is caught', () => {
    fc.assert(
      fc.property(planArbitrary, fc.nat(), (plan, pick) => {
        const history = historyOf(plan);
        const candidates = okReads(history).filter((r) => {
          const last = r.list[r.list.length - 1];
          if (last === undefined) return false;
          const writer = writerOf(history, r.op.output![r.mopIndex]!.key, last)!;
          return writer !== r.op && writer.status === 'ok' && writer.completeTime! < r.op.invokeTime;
        });
        fc.pre(candidates.length > 0);
        const read = candidates[pick % candidates.length]!;
        replaceRead(read, read.list.slice(0, -1));
        const verdict = checkListAppend(history);
        assert.equal(verdict.valid, false, 'a stale read passed');
        assert.ok(verdict.cycles.length > 0 || verdict.anomalies.length > 0);
      }),
      { numRuns: 200 },
    );
  });

  test('a read listing two appends against their real-time order is caught', () => {
    fc.assert(
      fc.property(planArbitrary, fc.nat(), (plan, pick) => {
        const history = historyOf(plan);
        const keyOf = (r: ReadAt): string => r.op.output![r.mopIndex]!.key;
        // The last two elements, appended by two ok transactions, the first done before the second began.
        const candidates = okReads(history).filter((r) => {
          if (r.list.length < 2) return false;
          const first = writerOf(history, keyOf(r), r.list[r.list.length - 2]!)!;
          const second = writerOf(history, keyOf(r), r.list[r.list.length - 1]!)!;
          return (
            first.status === 'ok' &&
            second.status === 'ok' &&
            first.completeTime! < second.invokeTime &&
            second !== r.op
          );
        });
        fc.pre(candidates.length > 0);
        const read = candidates[pick % candidates.length]!;
        const list = [...read.list];
        const i = list.length - 2;
        [list[i], list[i + 1]] = [list[i + 1]!, list[i]!];
        replaceRead(read, list);
        const verdict = checkListAppend(history);
        assert.equal(verdict.valid, false, 'a reordered read passed');
      }),
      { numRuns: 200 },
    );
  });
});

type PlantedMop = ['r', string, number[]] | ['append', string, number];

interface PlantedTxn {
  /** Offsets from the plant's start time. */
  times: [number, number];
  mops: PlantedMop[];
}

/** Anomaly patterns over fresh keys x, y; each must be reported with exactly its class. */
const PLANTS: Record<string, { code: string; txns: PlantedTxn[] }> = {
  G0: {
    code: 'LIST_APPEND_G0',
    txns: [
      {
        times: [0, 10],
        mops: [
          ['append', 'x', 1],
          ['append', 'y', 1],
        ],
      },
      {
        times: [0, 10],
        mops: [
          ['append', 'x', 2],
          ['append', 'y', 2],
        ],
      },
      {
        times: [20, 21],
        mops: [
          ['r', 'x', [1, 2]],
          ['r', 'y', [2, 1]],
        ],
      },
    ],
  },
  G1c: {
    code: 'LIST_APPEND_G1C',
    txns: [
      {
        times: [0, 10],
        mops: [
          ['append', 'x', 1],
          ['r', 'y', [1]],
        ],
      },
      {
        times: [0, 10],
        mops: [
          ['append', 'y', 1],
          ['r', 'x', [1]],
        ],
      },
    ],
  },
  'G-single': {
    code: 'LIST_APPEND_G_SINGLE',
    txns: [
      {
        times: [0, 10],
        mops: [
          ['append', 'x', 1],
          ['append', 'y', 1],
        ],
      },
      {
        times: [0, 10],
        mops: [
          ['r', 'x', []],
          ['r', 'y', [1]],
        ],
      },
      { times: [20, 21], mops: [['r', 'x', [1]]] },
    ],
  },
  G2: {
    code: 'LIST_APPEND_G2',
    txns: [
      {
        times: [0, 10],
        mops: [
          ['r', 'x', []],
          ['append', 'y', 1],
        ],
      },
      {
        times: [0, 10],
        mops: [
          ['r', 'y', []],
          ['append', 'x', 1],
        ],
      },
      {
        times: [20, 21],
        mops: [
          ['r', 'x', [1]],
          ['r', 'y', [1]],
        ],
      },
    ],
  },
  'G-single-realtime': {
    code: 'LIST_APPEND_G_SINGLE_REALTIME',
    txns: [
      { times: [0, 1], mops: [['append', 'x', 1]] },
      { times: [2, 3], mops: [['r', 'x', []]] },
      { times: [4, 5], mops: [['r', 'x', [1]]] },
    ],
  },
};

/** Adds the plant's transactions, on keys no other op uses, at `start` in the history's time. */
function plant(history: ListAppendOp[], txns: readonly PlantedTxn[], start: number, tag: number): void {
  const key = (name: string): string => `planted-${tag}-${name}`;
  let id = Math.max(0, ...history.map((op) => op.id));
  for (const { times, mops } of txns) {
    const output = mops.map(
      ([f, k, value]): ListAppendMop => (f === 'r' ? { f, key: key(k), value } : { f, key: key(k), value }),
    );
    history.push({
      id: ++id,
      process: `planted-${id}`,
      kind: 'txn',
      key: '',
      input: output.map((m) => (m.f === 'r' ? { ...m, value: null } : m)),
      output,
      invokeTime: start + times[0],
      completeTime: start + times[1],
      status: 'ok',
    });
  }
}

describe('list-append checker: a planted cycle in random traffic keeps its class', () => {
  for (const [name, { code, txns }] of Object.entries(PLANTS)) {
    test(`${name} among random serializable transactions`, () => {
      fc.assert(
        fc.property(planArbitrary, fc.double({ min: 0, max: 1, noNaN: true }), (plan, where) => {
          const history = historyOf(plan);
          const end = Math.max(0, ...history.map((op) => op.completeTime ?? op.invokeTime));
          plant(history, txns, Math.floor(where * end), plan.seed);
          const verdict = checkListAppend(history, { processOrder: true });
          assert.deepEqual([...new Set(verdict.anomalies.map((a) => a.code))], [code], verdict.explanation);
        }),
        { numRuns: 100 },
      );
    });
  }
});

describe('list-append checker scale', () => {
  test('10,000 transactions check in a few seconds', () => {
    const history = historyOf({ seed: 7, txns: 10_000, processes: 10, unknownRate: 0.05, failRate: 0.02 });
    const started = performance.now();
    const verdict = checkListAppend(history, { processOrder: true });
    const elapsedMs = performance.now() - started;
    assert.equal(verdict.valid, true, verdict.explanation);
    assert.ok(verdict.txnsChecked > 9000, `only ${verdict.txnsChecked} txns in the graph`);
    process.stdout.write(
      `# 10,000 txns: ${verdict.txnsChecked} in graph, ${verdict.edges} edges, ${elapsedMs.toFixed(0)} ms\n`,
    );
    assert.ok(elapsedMs < 10_000, `took ${elapsedMs} ms`);
  });

  test('a stale read planted in 10,000 transactions is found quickly', () => {
    const history = historyOf({ seed: 8, txns: 10_000, processes: 10 });
    const reads = okReads(history).filter((r) => {
      const last = r.list[r.list.length - 1];
      if (last === undefined) return false;
      const writer = writerOf(history, r.op.output![r.mopIndex]!.key, last)!;
      return writer !== r.op && writer.completeTime! < r.op.invokeTime;
    });
    const read = reads[Math.floor(reads.length / 2)]!;
    replaceRead(read, read.list.slice(0, -1));
    const started = performance.now();
    const verdict = checkListAppend(history);
    const elapsedMs = performance.now() - started;
    assert.equal(verdict.valid, false);
    assert.ok(
      verdict.anomalies.some((a) => a.opIds.includes(read.op.id)),
      verdict.explanation,
    );
    process.stdout.write(
      `# planted stale read in 10,000 txns found in ${elapsedMs.toFixed(0)} ms: ${verdict.anomalies.map((a) => a.code).join(', ')}\n`,
    );
    assert.ok(elapsedMs < 10_000);
  });
});
