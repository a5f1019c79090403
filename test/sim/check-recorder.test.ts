import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkLinearizability } from '../../src/sim/check/linearizability.js';
import { HistoryRecorder } from '../../src/sim/check/recorder.js';
import { type RegisterInput, type RegisterOutput, registerModel } from '../../src/sim/check/register.js';
import { CheckerInvariantError } from '../../src/sim/check/verdict.js';

describe('history recorder', () => {
  it('records invocation and completion times from the injected clock, feeding the checker', () => {
    let tick = 0;
    const recorder = new HistoryRecorder<RegisterInput, RegisterOutput>(() => tick++);
    const w = recorder.invoke(1, 'write', 'k', 5);
    const lost = recorder.invoke(2, 'write', 'k', 6);
    w.ok();
    lost.unknown();
    const r = recorder.invoke(3, 'read', 'k', undefined);
    const refused = recorder.invoke(4, 'write', 'k', 7);
    refused.fail();
    r.ok(5);
    const history = recorder.history();
    assert.deepEqual(
      history.map((op) => [op.id, op.status, op.invokeTime, op.completeTime]),
      [
        [1, 'ok', 0, 2],
        [2, 'unknown', 1, undefined],
        [3, 'ok', 3, 6],
        [4, 'fail', 4, 5],
      ],
    );
    assert.equal(checkLinearizability(history, registerModel).valid, true);
  });

  it('reports unsettled ops as unknown and refuses to settle an op twice', () => {
    const recorder = new HistoryRecorder<RegisterInput, RegisterOutput>(() => 0);
    const op = recorder.invoke(1, 'write', 'k', 1);
    recorder.invoke(2, 'write', 'k', 2);
    assert.equal(recorder.pending, 2);
    op.ok();
    assert.equal(recorder.pending, 1);
    assert.equal(recorder.history()[1]?.status, 'unknown');
    assert.throws(() => op.fail(), CheckerInvariantError);
  });

  it('bounds the number of recorded ops', () => {
    const recorder = new HistoryRecorder<RegisterInput, RegisterOutput>(() => 0, 2);
    recorder.invoke(1, 'write', 'k', 1);
    recorder.invoke(1, 'write', 'k', 2);
    assert.throws(() => recorder.invoke(1, 'write', 'k', 3), /opsMax 2/);
  });
});
