import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { OpStatus } from '../../src/sim/check/history.js';
import { checkSet, type SetElement, type SetOp } from '../../src/sim/check/set.js';

class SetRecorder {
  readonly ops: SetOp[] = [];

  add(client: number, element: SetElement, invoke: number, complete?: number, status: OpStatus = 'ok'): this {
    const op: SetOp = {
      id: this.ops.length + 1,
      process: client,
      kind: 'add',
      key: 's',
      input: element,
      invokeTime: invoke,
      status,
    };
    if (status !== 'unknown' && complete !== undefined) op.completeTime = complete;
    this.ops.push(op);
    return this;
  }

  read(client: number, elements: SetElement[], invoke: number, complete: number): this {
    this.ops.push({
      id: this.ops.length + 1,
      process: client,
      kind: 'read',
      key: 's',
      input: undefined,
      output: elements,
      invokeTime: invoke,
      completeTime: complete,
      status: 'ok',
    });
    return this;
  }
}

describe('set checker', () => {
  it('accepts a final read holding every acknowledged add, with unknown adds present or absent', () => {
    const r = new SetRecorder()
      .add(1, 1, 0, 1)
      .add(2, 2, 0, 2)
      .add(3, 3, 1, undefined, 'unknown')
      .add(4, 4, 1, undefined, 'unknown')
      .add(5, 5, 2, 3, 'fail')
      .read(1, [1, 2, 3], 10, 11);
    const verdict = checkSet(r.ops);
    assert.equal(verdict.valid, true, verdict.explanation);
    assert.deepEqual(verdict.unknownPresent, [3]);
    assert.deepEqual(verdict.unknownAbsent, [4]);
    assert.equal(verdict.acknowledgedAdds, 2);
    assert.equal(verdict.finalReadId, 6);
  });

  it('accepts a final read missing an add that was still in flight when the read began', () => {
    const r = new SetRecorder().add(1, 1, 0, 1).add(2, 2, 5, 20).read(3, [1], 10, 12);
    assert.equal(checkSet(r.ops).valid, true);
  });

  it('reports an acknowledged add missing from the final read as lost', () => {
    const r = new SetRecorder().add(1, 1, 0, 1).add(2, 2, 0, 2).read(3, [1], 10, 12);
    const verdict = checkSet(r.ops);
    assert.equal(verdict.valid, false);
    assert.deepEqual(verdict.lost, [2]);
    assert.equal(verdict.anomalies[0]?.code, 'SET_LOST_ELEMENT');
    assert.match(verdict.anomalies[0]!.message, /lacks 2, but its add by client 2 was acknowledged at 2/);
  });

  it('reports an unknown add seen by one read and missing from the final read as lost', () => {
    const r = new SetRecorder().add(1, 7, 0, undefined, 'unknown').read(2, [7], 5, 6).read(3, [], 10, 12);
    const verdict = checkSet(r.ops);
    assert.deepEqual(verdict.lost, [7]);
  });

  it('reports an intermediate read missing an acknowledged element as stale', () => {
    const r = new SetRecorder().add(1, 1, 0, 1).read(2, [], 5, 6).read(3, [1], 10, 12);
    const verdict = checkSet(r.ops);
    assert.equal(verdict.valid, false);
    assert.deepEqual(
      verdict.anomalies.map((a) => a.code),
      ['SET_STALE_READ'],
    );
    assert.deepEqual(verdict.lost, []);
  });

  it('reports phantom elements never added, and elements whose only add failed', () => {
    const r = new SetRecorder().add(1, 1, 0, 1).add(2, 2, 0, 1, 'fail').read(3, [1, 2, 99], 10, 12);
    const verdict = checkSet(r.ops);
    assert.equal(verdict.valid, false);
    assert.deepEqual(verdict.phantom, [99]);
    assert.deepEqual(verdict.anomalies.map((a) => a.code).sort(), [
      'SET_FAILED_ADD_PRESENT',
      'SET_PHANTOM_ELEMENT',
    ]);
  });

  it('reports an element read before its add was invoked, and duplicates in one read', () => {
    const r = new SetRecorder().read(1, [5, 5], 0, 1).add(2, 5, 3, 4).read(1, [5], 10, 11);
    const codes = checkSet(r.ops)
      .anomalies.map((a) => a.code)
      .sort();
    assert.deepEqual(codes, ['SET_DUPLICATE_ELEMENT', 'SET_READ_BEFORE_ADD']);
  });

  it('is undecided without any completed read', () => {
    const verdict = checkSet(new SetRecorder().add(1, 1, 0, 1).ops);
    assert.equal(verdict.valid, 'unknown');
    assert.equal(verdict.anomalies[0]?.code, 'SET_NO_FINAL_READ');
  });
});
