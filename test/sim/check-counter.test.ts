import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type CounterOp, checkCounter } from '../../src/sim/check/counter.js';
import { HistoryFormatError, type OpStatus } from '../../src/sim/check/history.js';

class CounterRecorder {
  readonly ops: CounterOp[] = [];

  add(client: number, amount: number, invoke: number, complete?: number, status: OpStatus = 'ok'): this {
    const op: CounterOp = {
      id: this.ops.length + 1,
      process: client,
      kind: 'add',
      key: 'c',
      input: amount,
      invokeTime: invoke,
      status,
    };
    if (status !== 'unknown' && complete !== undefined) op.completeTime = complete;
    this.ops.push(op);
    return this;
  }

  read(client: number, value: number, invoke: number, complete: number): this {
    this.ops.push({
      id: this.ops.length + 1,
      process: client,
      kind: 'read',
      key: 'c',
      input: undefined,
      output: value,
      invokeTime: invoke,
      completeTime: complete,
      status: 'ok',
    });
    return this;
  }
}

/** Three acknowledged adds of 1, one unknown add of 5, one failed add of 100. */
function base(): CounterRecorder {
  return new CounterRecorder()
    .add(1, 1, 0, 1)
    .add(2, 1, 0, 2)
    .add(3, 1, 1, 3)
    .add(4, 5, 2, undefined, 'unknown')
    .add(5, 100, 2, 4, 'fail');
}

describe('counter checker', () => {
  it('accepts a final value anywhere in [acknowledged, acknowledged + unknown]', () => {
    for (const value of [3, 8]) {
      const verdict = checkCounter(base().read(1, value, 10, 11).ops);
      assert.equal(verdict.valid, true, verdict.explanation);
      assert.deepEqual(verdict.finalRead, { readId: 6, value, lower: 3, upper: 8 });
      assert.equal(verdict.acknowledgedSum, 3);
      assert.equal(verdict.unknownSum, 5);
    }
  });

  it('rejects a final value below the acknowledged sum (a lost increment)', () => {
    const verdict = checkCounter(base().read(1, 2, 10, 11).ops);
    assert.equal(verdict.valid, false);
    assert.equal(verdict.anomalies[0]?.code, 'COUNTER_READ_BELOW_LOWER_BOUND');
  });

  it('rejects a final value above every possible sum (a double-applied or failed increment)', () => {
    for (const value of [9, 103]) {
      const verdict = checkCounter(base().read(1, value, 10, 11).ops);
      assert.equal(verdict.valid, false);
      assert.equal(verdict.anomalies[0]?.code, 'COUNTER_READ_ABOVE_UPPER_BOUND');
    }
  });

  it('bounds an intermediate read by what had finished and what had started at its time', () => {
    // At [1.5, 1.6] only add #1 had completed; adds #1-#2 had been invoked (and #3 at 1).
    const r = new CounterRecorder().add(1, 1, 0, 1).add(2, 1, 0, 2).add(3, 1, 1, 3).add(4, 1, 5, 6);
    assert.equal(checkCounter(r.read(9, 2, 1.5, 1.6).read(9, 4, 10, 11).ops).valid, true);
    const tooHigh = new CounterRecorder().add(1, 1, 0, 1).add(2, 1, 0, 2).add(3, 1, 1, 3).add(4, 1, 5, 6);
    const verdict = checkCounter(tooHigh.read(9, 4, 1.5, 1.6).ops);
    assert.deepEqual(
      verdict.anomalies.map((a) => a.code),
      ['COUNTER_READ_ABOVE_UPPER_BOUND'],
    );
  });

  it('rejects reads that go backwards in real time across clients', () => {
    const r = new CounterRecorder().add(1, 1, 0, 10).add(2, 1, 0, 10).read(3, 2, 1, 2).read(4, 1, 3, 4);
    const verdict = checkCounter(r.ops);
    assert.equal(verdict.valid, false);
    assert.deepEqual(
      verdict.anomalies.map((a) => [a.code, a.opIds]),
      [['COUNTER_READ_NOT_MONOTONIC', [3, 4]]],
    );
  });

  it('accepts concurrent reads that disagree in either direction', () => {
    const r = new CounterRecorder().add(1, 1, 0, 10).read(3, 1, 1, 5).read(4, 0, 2, 6);
    assert.equal(checkCounter(r.ops).valid, true);
  });

  it('is undecided without reads and refuses negative amounts', () => {
    assert.equal(checkCounter(new CounterRecorder().add(1, 1, 0, 1).ops).valid, 'unknown');
    assert.throws(
      () => checkCounter(new CounterRecorder().add(1, -1, 0, 1).read(1, 0, 2, 3).ops),
      (e: unknown) => e instanceof HistoryFormatError && e.code === 'HISTORY_BAD_OPERATION',
    );
  });
});
