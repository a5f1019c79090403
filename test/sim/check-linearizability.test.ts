import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { HistoryFormatError, type OpStatus } from '../../src/sim/check/history.js';
import { checkLinearizability } from '../../src/sim/check/linearizability.js';
import type { Model } from '../../src/sim/check/model.js';
import { type RegisterOp, type RegisterValue, registerModel } from '../../src/sim/check/register.js';

/** Builds register histories tersely; ids count up from 1. */
class Recorder {
  readonly ops: RegisterOp[] = [];

  private add(op: Omit<RegisterOp, 'id'>): this {
    const full: RegisterOp = { id: this.ops.length + 1, ...op };
    if (full.status === 'unknown') delete full.completeTime;
    this.ops.push(full);
    return this;
  }

  write(
    client: number,
    value: RegisterValue,
    invoke: number,
    complete?: number,
    status: OpStatus = 'ok',
    key = 'k',
  ) {
    return this.add({
      process: client,
      kind: 'write',
      key,
      input: value,
      invokeTime: invoke,
      completeTime: complete,
      status,
    });
  }

  read(client: number, value: RegisterValue, invoke: number, complete: number, key = 'k') {
    return this.add({
      process: client,
      kind: 'read',
      key,
      input: undefined,
      output: value,
      invokeTime: invoke,
      completeTime: complete,
      status: 'ok',
    });
  }

  cas(
    client: number,
    expected: RegisterValue,
    value: RegisterValue,
    swapped: boolean | undefined,
    invoke: number,
    complete?: number,
  ) {
    return this.add({
      process: client,
      kind: 'cas',
      key: 'k',
      input: { expected, value },
      output: swapped,
      invokeTime: invoke,
      completeTime: complete,
      status: swapped === undefined ? 'unknown' : 'ok',
    });
  }
}

function check(recorder: Recorder) {
  return checkLinearizability(recorder.ops, registerModel);
}

describe('linearizability: histories that must be accepted', () => {
  it('accepts an empty history', () => {
    assert.equal(check(new Recorder()).valid, true);
  });

  it('accepts overlapping writes whose order is decided by a later read', () => {
    // write 2 may take effect before write 1 since both overlap; the read then sees 1.
    const r = new Recorder().write(1, 1, 0, 10).write(2, 2, 5, 15).read(3, 1, 16, 20).read(4, 1, 21, 22);
    assert.equal(check(r).valid, true);
  });

  it('accepts reads concurrent with a write returning either the old or the new value', () => {
    const r = new Recorder().write(1, 1, 0, 1).write(2, 2, 10, 30).read(3, 2, 12, 14).read(4, 2, 15, 16);
    assert.equal(check(r).valid, true);
    const r2 = new Recorder().write(1, 1, 0, 1).write(2, 2, 10, 30).read(3, 1, 12, 14).read(4, 2, 15, 16);
    assert.equal(check(r2).valid, true);
  });

  it('treats intervals that touch at one instant as concurrent', () => {
    const r = new Recorder().write(1, 1, 0, 5).read(2, null, 5, 6);
    assert.equal(check(r).valid, true);
  });

  it('accepts an unknown write observed later', () => {
    const r = new Recorder().write(1, 1, 0, 5).write(2, 2, 6, undefined, 'unknown').read(3, 2, 20, 25);
    assert.equal(check(r).valid, true);
  });

  it('accepts an unknown write that takes effect long after other reads saw the old value', () => {
    const r = new Recorder()
      .write(1, 1, 0, 5)
      .write(2, 2, 6, undefined, 'unknown')
      .read(3, 1, 20, 25)
      .read(4, 1, 30, 31)
      .read(3, 2, 40, 45);
    assert.equal(check(r).valid, true);
  });

  it('accepts unknown writes that never took effect', () => {
    const r = new Recorder()
      .write(1, 1, 0, 5)
      .write(2, 2, 6, undefined, 'unknown')
      .write(4, 3, 7, undefined, 'unknown')
      .read(3, 1, 20, 25)
      .read(3, 1, 30, 35);
    assert.equal(check(r).valid, true);
  });

  it('accepts a chain of compare-and-sets including a failed compare', () => {
    const r = new Recorder()
      .write(1, 0, 0, 1)
      .cas(2, 0, 1, true, 2, 10)
      .cas(3, 1, 2, true, 4, 12)
      .cas(4, 1, 3, false, 13, 14)
      .cas(5, 0, 9, undefined, 3)
      .read(1, 2, 15, 16);
    assert.equal(check(r).valid, true);
  });

  it('omits an unknown write nobody could observe, and keeps one that explains a failed compare', () => {
    const unobserved = new Recorder()
      .write(1, 1, 0, 5)
      .write(2, 2, 6, undefined, 'unknown')
      .read(3, 1, 20, 25);
    const verdict = check(unobserved);
    assert.equal(verdict.valid, true);
    assert.equal(verdict.keys[0]?.opsChecked, 2);
    // Only the unknown write of 5 can make this compare fail, so it must stay in the search.
    const explains = new Recorder()
      .write(1, 0, 0, 1)
      .write(2, 5, 2, undefined, 'unknown')
      .cas(3, 0, 1, false, 10, 11);
    const explained = check(explains);
    assert.equal(explained.valid, true);
    assert.equal(explained.keys[0]?.opsChecked, 3);
    const unexplained = new Recorder()
      .write(1, 0, 0, 1)
      .write(2, 5, 20, undefined, 'unknown')
      .cas(3, 0, 1, false, 10, 11);
    assert.equal(check(unexplained).valid, false);
  });

  it('drops failed operations: a failed write is neither required nor allowed to be seen', () => {
    const r = new Recorder().write(1, 1, 0, 1).write(2, 9, 2, 3, 'fail').read(3, 1, 4, 5);
    assert.equal(check(r).valid, true);
    const seen = new Recorder().write(1, 1, 0, 1).write(2, 9, 2, 3, 'fail').read(3, 9, 4, 5);
    assert.equal(check(seen).valid, false);
  });
});

describe('linearizability: histories that must be rejected', () => {
  it('rejects a stale read after a completed write and says which values were possible', () => {
    const r = new Recorder().write(1, 1, 0, 5).write(2, 2, 6, 10).read(3, 1, 11, 12);
    const verdict = check(r);
    assert.equal(verdict.valid, false);
    assert.equal(verdict.anomalies[0]?.code, 'LINEARIZABILITY_VIOLATION');
    assert.equal(verdict.anomalies[0]?.subject, 'k');
    assert.match(verdict.explanation, /read of "k" by client 3 returned 1 at \[11, 12\]/);
    assert.match(
      verdict.explanation,
      /only values possible then were 2 \(write by client 2 completed at 10\)/,
    );
    assert.deepEqual(verdict.keys[0]?.unplaced?.[0], 3);
  });

  it('rejects the same stale read by search alone when the timing precheck is off', () => {
    const r = new Recorder().write(1, 1, 0, 5).write(2, 2, 6, 10).read(3, 1, 11, 12);
    const verdict = checkLinearizability(r.ops, registerModel, { precheck: false });
    assert.equal(verdict.valid, false);
    assert.deepEqual(verdict.keys[0]?.longestPrefix, [1, 2]);
    assert.match(verdict.explanation, /only values possible then were 2/);
  });

  it('rejects a lost write (a later read sees the key absent)', () => {
    const r = new Recorder().write(1, 1, 0, 5).read(2, null, 10, 12);
    assert.equal(check(r).valid, false);
  });

  it('rejects a read of a value never written', () => {
    const verdict = check(new Recorder().write(1, 1, 0, 5).read(2, 7, 10, 12));
    assert.equal(verdict.valid, false);
    assert.match(verdict.explanation, /returned 7/);
  });

  it('rejects two compare-and-sets that both swapped from the same old value', () => {
    const r = new Recorder().write(1, 0, 0, 1).cas(2, 0, 1, true, 2, 10).cas(3, 0, 2, true, 3, 11);
    const verdict = check(r);
    assert.equal(verdict.valid, false);
    assert.match(verdict.explanation, /cas of "k" by client [23]/);
  });

  it('accepts the same pair when one of the two compare-and-sets has an unknown outcome', () => {
    const r = new Recorder().write(1, 0, 0, 1).cas(2, 0, 1, true, 2, 10).cas(3, 0, 2, undefined, 3);
    assert.equal(check(r).valid, true);
  });

  it('rejects non-monotonic reads across clients ordered in real time', () => {
    // Client 3 saw 2, so write 2 took effect by t=20; client 4 reading 1 afterwards is stale.
    const r = new Recorder().write(1, 1, 0, 5).write(2, 2, 6, 100).read(3, 2, 10, 20).read(4, 1, 30, 40);
    const verdict = check(r);
    assert.equal(verdict.valid, false);
    assert.deepEqual(verdict.keys[0]?.longestPrefix, [1, 2, 3]);
    assert.match(verdict.explanation, /before it began, client 3 had already read 2 at \[10, 20\]/);
  });

  it('rejects a value from an unknown write seen before that write was invoked', () => {
    const r = new Recorder().read(1, 5, 0, 2).write(2, 5, 3, undefined, 'unknown');
    assert.equal(check(r).valid, false);
  });

  it('checks keys independently and blames only the broken key', () => {
    const r = new Recorder()
      .write(1, 1, 0, 1, 'ok', 'a')
      .read(2, 1, 2, 3, 'a')
      .write(1, 1, 0, 1, 'ok', 'b')
      .read(2, null, 2, 3, 'b');
    const verdict = check(r);
    assert.equal(verdict.valid, false);
    assert.deepEqual(
      verdict.keys.map((k) => [k.key, k.valid]),
      [
        ['a', true],
        ['b', false],
      ],
    );
    assert.equal(verdict.anomalies.length, 1);
    assert.equal(verdict.anomalies[0]?.subject, 'b');
  });
});

describe('linearizability: partitioning', () => {
  it('checks independently only what partitionKey separates', () => {
    const r = new Recorder().write(1, 1, 0, 1, 'ok', 'a').read(2, null, 2, 3, 'b');
    assert.equal(check(r).valid, true);
    const merged = checkLinearizability(r.ops, registerModel, { partitionKey: () => 'one register' });
    assert.equal(merged.valid, false);
    assert.deepEqual(
      merged.keys.map((k) => k.key),
      ['one register'],
    );
  });
});

describe('linearizability: budget and input checks', () => {
  it('returns unknown, never ok, when the step budget runs out', () => {
    const r = new Recorder();
    for (let i = 0; i < 20; i++) r.write(i, i, 0, 100);
    r.read(99, 7, 101, 102);
    const verdict = checkLinearizability(r.ops, registerModel, { stepsMax: 10 });
    assert.equal(verdict.valid, 'unknown');
    assert.equal(verdict.anomalies[0]?.code, 'SEARCH_BUDGET_EXHAUSTED');
  });

  it('still finds a violation on one key when another key exhausts its step budget', () => {
    const r = new Recorder();
    for (let i = 0; i < 20; i++) r.write(i, i, 0, 100, 'ok', 'a-hard');
    r.read(99, 7, 101, 102, 'a-hard');
    r.write(1, 1, 0, 1, 'ok', 'b-broken').read(2, 2, 3, 4, 'b-broken');
    const verdict = checkLinearizability(r.ops, registerModel, { stepsMax: 10 });
    assert.equal(verdict.valid, false);
    assert.deepEqual(
      verdict.keys.map((k) => [k.key, k.valid]),
      [
        ['a-hard', 'unknown'],
        ['b-broken', false],
      ],
    );
    assert.deepEqual(verdict.anomalies.map((a) => a.code).sort(), [
      'LINEARIZABILITY_VIOLATION',
      'SEARCH_BUDGET_EXHAUSTED',
    ]);
  });

  it('returns unknown when the time budget runs out, read from the injected clock', () => {
    let clock = 0;
    const r = new Recorder();
    for (let i = 0; i < 20; i++) r.write(i, i, 0, 100);
    r.read(99, 7, 101, 102);
    const verdict = checkLinearizability(r.ops, registerModel, {
      timeBudgetMs: 5,
      now: () => (clock += 1),
    });
    assert.equal(verdict.valid, 'unknown');
  });

  it('returns unknown when the memo cache reaches its memory bound', () => {
    const r = new Recorder();
    for (let i = 0; i < 20; i++) r.write(i, i, 0, 100);
    r.read(99, 7, 101, 102);
    const verdict = checkLinearizability(r.ops, registerModel, { memoBytesMax: 10_000 });
    assert.equal(verdict.valid, 'unknown');
    assert.match(verdict.anomalies[0]!.message, /memoBytesMax/);
  });

  it('rejects malformed histories with a typed error', () => {
    const r = new Recorder().write(1, 1, 0, 5);
    r.ops.push({ ...r.ops[0]! });
    assert.throws(
      () => check(r),
      (e: unknown) => e instanceof HistoryFormatError && e.code === 'HISTORY_DUPLICATE_ID',
    );
    const backwards = new Recorder().write(1, 1, 5, 4);
    assert.throws(
      () => check(backwards),
      (e: unknown) => e instanceof HistoryFormatError && e.code === 'HISTORY_BAD_TIME',
    );
    const noOutput = new Recorder().read(1, null, 0, 1);
    delete noOutput.ops[0]!.output;
    assert.throws(
      () => check(noOutput),
      (e: unknown) => e instanceof HistoryFormatError && e.code === 'HISTORY_BAD_OPERATION',
    );
  });

  it('accepts a pluggable model (a counter) through the same search', () => {
    const counter: Model<number, number, number> = {
      name: 'counter',
      init: () => 0,
      step: (state, op) =>
        op.kind === 'add'
          ? { ok: true, newState: state + op.input }
          : { ok: op.status !== 'ok' || op.output === state, newState: state },
      equal: (a, b) => a === b,
      hash: (s) => s | 0,
      describeOp: (op) => `${op.kind} ${op.input}`,
      describeState: (s) => String(s),
    };
    const base = { key: 'c', process: 1, status: 'ok' as const };
    const ok = [
      { ...base, id: 1, kind: 'add', input: 2, invokeTime: 0, completeTime: 10 },
      { ...base, id: 2, kind: 'add', input: 3, invokeTime: 0, completeTime: 10 },
      { ...base, id: 3, kind: 'read', input: 0, output: 3, invokeTime: 1, completeTime: 2 },
    ];
    assert.equal(checkLinearizability(ok, counter).valid, true);
    const bad = [
      ...ok,
      { ...base, id: 4, kind: 'read', input: 0, output: 4, invokeTime: 11, completeTime: 12 },
    ];
    assert.equal(checkLinearizability(bad, counter).valid, false);
  });
});
