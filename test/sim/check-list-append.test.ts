// Hand-made list-append histories: each plants one anomaly, which must be caught with its class;
// the clean ones must pass.

import assert from 'node:assert/strict';
import { beforeEach, describe, test } from 'node:test';
import {
  type AnomalyCode,
  checkListAppend,
  HistoryFormatError,
  type ListAppendMop,
  type ListAppendOp,
  type ListAppendOptions,
  type OpStatus,
} from '../../src/sim/check/index.js';

type Mop = ['r', string, number[] | null] | ['append', string, number];

let nextId = 1;

/** A txn op; times [invoke, complete] (complete ignored for unknown). */
function txn(
  process: number,
  times: [number, number],
  status: OpStatus,
  mops: Mop[],
  id = nextId++,
): ListAppendOp {
  const toMop = ([f, key, value]: Mop, filled: boolean): ListAppendMop =>
    f === 'r' ? { f, key, value: filled ? value : null } : { f, key, value };
  return {
    id,
    process,
    kind: 'txn',
    key: '',
    input: mops.map((m) => toMop(m, false)),
    ...(status === 'ok' ? { output: mops.map((m) => toMop(m, true)) } : {}),
    invokeTime: times[0],
    ...(status === 'unknown' ? {} : { completeTime: times[1] }),
    status,
  };
}

// Every test's history numbers its ops from 1, so explanations name T1, T2, ...
beforeEach(() => {
  nextId = 1;
});

function codes(history: ListAppendOp[], options?: ListAppendOptions): AnomalyCode[] {
  return [...new Set(checkListAppend(history, options).anomalies.map((a) => a.code))].sort();
}

describe('list-append: clean histories pass', () => {
  test('a serial history of appends and reads over two keys is valid', () => {
    const history = [
      txn(1, [0, 1], 'ok', [
        ['append', 'x', 1],
        ['append', 'y', 1],
      ]),
      txn(2, [2, 3], 'ok', [
        ['r', 'x', [1]],
        ['append', 'x', 2],
      ]),
      txn(1, [4, 5], 'ok', [
        ['r', 'x', [1, 2]],
        ['r', 'y', [1]],
        ['append', 'y', 2],
        ['r', 'y', [1, 2]],
      ]),
      txn(3, [6, 7], 'ok', [
        ['r', 'y', [1, 2]],
        ['r', 'z', []],
      ]),
    ];
    const verdict = checkListAppend(history);
    assert.equal(verdict.valid, true, verdict.explanation);
    assert.equal(verdict.txnsChecked, 4);
    assert.ok(verdict.edges > 0);
  });

  test('concurrent transactions may be serialized in either order', () => {
    const history = [
      txn(1, [0, 10], 'ok', [
        ['append', 'x', 1],
        ['r', 'y', []],
      ]),
      txn(2, [0, 10], 'ok', [
        ['r', 'x', [1]],
        ['append', 'y', 1],
      ]),
      txn(3, [11, 12], 'ok', [
        ['r', 'x', [1]],
        ['r', 'y', [1]],
      ]),
    ];
    assert.deepEqual(codes(history), []);
  });

  test('an unknown transaction may have happened (read) or not (never read)', () => {
    const happened = [
      txn(1, [0, 1], 'unknown', [['append', 'x', 1]]),
      txn(2, [5, 6], 'ok', [['r', 'x', [1]]]),
    ];
    const verdict = checkListAppend(happened);
    assert.equal(verdict.valid, true, verdict.explanation);
    assert.equal(verdict.txnsChecked, 2, 'the unknown txn that was read is in the graph');
    const never = [txn(1, [0, 1], 'unknown', [['append', 'x', 1]]), txn(2, [5, 6], 'ok', [['r', 'x', []]])];
    assert.deepEqual(codes(never), []);
  });

  test('a failed transaction whose append nobody read is fine', () => {
    const history = [txn(1, [0, 1], 'fail', [['append', 'x', 1]]), txn(2, [2, 3], 'ok', [['r', 'x', []]])];
    assert.deepEqual(codes(history), []);
  });
});

describe('list-append: planted anomalies are caught with their class', () => {
  test('G0: two transactions append to x and y in opposite orders', () => {
    const history = [
      txn(1, [0, 10], 'ok', [
        ['append', 'x', 1],
        ['append', 'y', 1],
      ]),
      txn(2, [0, 10], 'ok', [
        ['append', 'x', 2],
        ['append', 'y', 2],
      ]),
      txn(3, [20, 21], 'ok', [
        ['r', 'x', [1, 2]],
        ['r', 'y', [2, 1]],
      ]),
    ];
    const verdict = checkListAppend(history);
    assert.deepEqual(codes(history), ['LIST_APPEND_G0']);
    assert.equal(verdict.cycles.length, 1);
    assert.deepEqual(
      verdict.cycles[0]!.steps.map((s) => s.type),
      ['ww', 'ww'],
    );
    const message = verdict.anomalies[0]!.message;
    assert.match(message, /^G0: write cycle/);
    assert.match(message, /T1 appended 1 to x, and T2 appended 2 right after it/);
    assert.match(message, /T2 appended 2 to y, and T1 appended 1 right after it/);
  });

  test("G1c: each transaction reads the other one's append", () => {
    const history = [
      txn(1, [0, 10], 'ok', [
        ['append', 'x', 1],
        ['r', 'y', [1]],
      ]),
      txn(2, [0, 10], 'ok', [
        ['append', 'y', 1],
        ['r', 'x', [1]],
      ]),
    ];
    assert.deepEqual(codes(history), ['LIST_APPEND_G1C']);
    const [cycle] = checkListAppend(history).cycles;
    assert.deepEqual(
      cycle!.steps.map((s) => s.type),
      ['wr', 'wr'],
    );
  });

  test('G-single: a read sees y after T1 but x before it (read skew)', () => {
    const history = [
      txn(1, [0, 10], 'ok', [
        ['append', 'x', 1],
        ['append', 'y', 1],
      ]),
      txn(2, [0, 10], 'ok', [
        ['r', 'x', []],
        ['r', 'y', [1]],
      ]),
      txn(3, [20, 21], 'ok', [['r', 'x', [1]]]),
    ];
    assert.deepEqual(codes(history), ['LIST_APPEND_G_SINGLE']);
    const verdict = checkListAppend(history);
    assert.deepEqual(verdict.cycles[0]!.steps.map((s) => s.type).sort(), ['rw', 'wr']);
    assert.match(verdict.anomalies[0]!.message, /T2 read x = \[\], which lacks T1's append of 1/);
  });

  test('G2: write skew, each reads the key the other appends to, empty', () => {
    const history = [
      txn(1, [0, 10], 'ok', [
        ['r', 'x', []],
        ['append', 'y', 1],
      ]),
      txn(2, [0, 10], 'ok', [
        ['r', 'y', []],
        ['append', 'x', 1],
      ]),
      txn(3, [20, 21], 'ok', [
        ['r', 'x', [1]],
        ['r', 'y', [1]],
      ]),
    ];
    assert.deepEqual(codes(history), ['LIST_APPEND_G2']);
    assert.deepEqual(
      checkListAppend(history).cycles[0]!.steps.map((s) => s.type),
      ['rw', 'rw'],
    );
  });

  test('G2 is serializable only if the cycle is not there: with T2 reading y = [1] it passes', () => {
    const history = [
      txn(1, [0, 10], 'ok', [
        ['r', 'x', []],
        ['append', 'y', 1],
      ]),
      txn(2, [0, 10], 'ok', [
        ['r', 'y', [1]],
        ['append', 'x', 1],
      ]),
      txn(3, [20, 21], 'ok', [
        ['r', 'x', [1]],
        ['r', 'y', [1]],
      ]),
    ];
    assert.deepEqual(codes(history), []);
  });

  test('G-single-realtime: a stale read after an acknowledged append; fine without real-time order', () => {
    const history = [
      txn(1, [0, 1], 'ok', [['append', 'x', 1]]),
      txn(2, [2, 3], 'ok', [['r', 'x', []]]),
      txn(3, [4, 5], 'ok', [['r', 'x', [1]]]),
    ];
    assert.deepEqual(codes(history), ['LIST_APPEND_G_SINGLE_REALTIME']);
    assert.deepEqual(codes(history, { realtime: false }), []);
    const message = checkListAppend(history).anomalies[0]!.message;
    assert.match(message, /T1 completed at 1, before T2 was invoked at 2/);
    assert.match(message, /violates strict serializability/);
  });

  test('a lost acknowledged append (final read lacks it) is a real-time cycle', () => {
    const history = [
      txn(1, [0, 1], 'ok', [['append', 'x', 1]]),
      txn(2, [0, 1], 'ok', [['append', 'x', 2]]),
      txn(3, [5, 6], 'ok', [['r', 'x', [1]]]),
    ];
    assert.deepEqual(codes(history), ['LIST_APPEND_G_SINGLE_REALTIME']);
  });

  test('an unknown append nobody read does not make the final read stale', () => {
    const history = [
      txn(1, [0, 1], 'ok', [['append', 'x', 1]]),
      txn(2, [0, 1], 'unknown', [['append', 'x', 2]]),
      txn(3, [5, 6], 'ok', [['r', 'x', [1]]]),
    ];
    assert.deepEqual(codes(history), []);
  });

  test('an unknown transaction seen to happen takes part in cycles', () => {
    const history = [
      txn(1, [0, 10], 'unknown', [
        ['append', 'x', 1],
        ['append', 'y', 1],
      ]),
      txn(2, [0, 10], 'ok', [
        ['r', 'x', []],
        ['r', 'y', [1]],
      ]),
      txn(3, [20, 21], 'ok', [['r', 'x', [1]]]),
    ];
    assert.deepEqual(codes(history), ['LIST_APPEND_G_SINGLE']);
  });

  test('client order: consecutive ops of one client with touching intervals', () => {
    const history = [
      txn(1, [0, 10], 'ok', [['append', 'x', 1]]),
      txn(1, [10, 20], 'ok', [['r', 'x', []]]),
      txn(2, [30, 40], 'ok', [['r', 'x', [1]]]),
    ];
    assert.deepEqual(codes(history), [], 'touching intervals are concurrent in real time');
    assert.deepEqual(codes(history, { processOrder: true }), ['LIST_APPEND_G_SINGLE_REALTIME']);
    const [cycle] = checkListAppend(history, { processOrder: true }).cycles;
    assert.ok(cycle!.steps.some((s) => s.type === 'process'));
  });

  test('G1a: a read sees the append of a failed transaction', () => {
    const history = [txn(1, [0, 1], 'fail', [['append', 'x', 1]]), txn(2, [2, 3], 'ok', [['r', 'x', [1]]])];
    assert.deepEqual(codes(history), ['LIST_APPEND_G1A']);
  });

  test('G1b: a read ends in an append its writer followed with another', () => {
    const history = [
      txn(1, [0, 10], 'ok', [
        ['append', 'x', 1],
        ['append', 'x', 2],
      ]),
      txn(2, [0, 10], 'ok', [['r', 'x', [1]]]),
      txn(3, [20, 21], 'ok', [['r', 'x', [1, 2]]]),
    ];
    // The read also sits between T1's two appends of x: a one-rw cycle with T1.
    assert.deepEqual(codes(history), ['LIST_APPEND_G1B', 'LIST_APPEND_G_SINGLE']);
  });

  test('garbage read: a value nobody appended', () => {
    const history = [txn(1, [0, 1], 'ok', [['append', 'x', 1]]), txn(2, [2, 3], 'ok', [['r', 'x', [1, 7]]])];
    assert.deepEqual(codes(history), ['LIST_APPEND_GARBAGE_READ']);
  });

  test('duplicate element: one append applied twice', () => {
    const history = [txn(1, [0, 1], 'ok', [['append', 'x', 1]]), txn(2, [2, 3], 'ok', [['r', 'x', [1, 1]]])];
    assert.ok(codes(history).includes('LIST_APPEND_DUPLICATE_ELEMENT'));
  });

  test('incompatible orders: two reads disagree on the order of x', () => {
    const history = [
      txn(1, [0, 1], 'ok', [['append', 'x', 1]]),
      txn(2, [0, 1], 'ok', [['append', 'x', 2]]),
      txn(3, [2, 3], 'ok', [['r', 'x', [1, 2]]]),
      txn(4, [2, 3], 'ok', [['r', 'x', [2, 1]]]),
    ];
    assert.deepEqual(codes(history), ['LIST_APPEND_INCOMPATIBLE_ORDER']);
  });

  test('internal: a transaction does not see its own append', () => {
    const history = [
      txn(1, [0, 1], 'ok', [
        ['append', 'x', 1],
        ['r', 'x', []],
      ]),
    ];
    assert.deepEqual(codes(history), ['LIST_APPEND_INTERNAL']);
  });

  test('internal: a second read differs from the first with no own append between', () => {
    const history = [
      txn(1, [0, 1], 'ok', [['append', 'x', 1]]),
      txn(2, [0, 3], 'ok', [
        ['r', 'x', []],
        ['r', 'x', [1]],
      ]),
    ];
    // T2 is both before T1 (first read) and after it (second read): also a one-rw cycle.
    assert.deepEqual(codes(history), ['LIST_APPEND_G_SINGLE', 'LIST_APPEND_INTERNAL']);
  });

  test('the same value appended twice to one key is a malformed history', () => {
    const history = [txn(1, [0, 1], 'ok', [['append', 'x', 1]]), txn(2, [2, 3], 'ok', [['append', 'x', 1]])];
    assert.throws(() => checkListAppend(history), HistoryFormatError);
  });
});
