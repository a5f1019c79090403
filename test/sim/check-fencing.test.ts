import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  checkFencing,
  type FencedWriteOp,
  type LeaseKeyReadOp,
  type LockHold,
} from '../../src/sim/check/fencing.js';
import type { OpStatus } from '../../src/sim/check/history.js';
import type { AnomalyCode } from '../../src/sim/check/verdict.js';

function hold(
  id: number,
  holder: number,
  token: number,
  acquired: [number, number],
  heldAtLeastUntil?: number,
): LockHold {
  const h: LockHold = {
    id,
    holder,
    lock: 'L',
    token,
    acquireInvokeTime: acquired[0],
    acquireCompleteTime: acquired[1],
  };
  if (heldAtLeastUntil !== undefined) h.heldAtLeastUntil = heldAtLeastUntil;
  return h;
}

function write(
  id: number,
  client: number,
  token: number,
  invoke: number,
  complete: number,
  status: OpStatus = 'ok',
): FencedWriteOp {
  return {
    id,
    process: client,
    kind: 'write',
    key: 'R',
    input: { token },
    invokeTime: invoke,
    completeTime: complete,
    status,
  };
}

function codes(verdict: ReturnType<typeof checkFencing>): AnomalyCode[] {
  return verdict.anomalies.map((a) => a.code);
}

/** Client 1 holds token 10 until its lease lapses around t=20; client 2 takes over with token 15. */
const HANDOVER = [hold(1, 1, 10, [0, 1], 12), hold(2, 2, 15, [18, 25], 40)];

describe('fencing checker', () => {
  it('accepts a handover where the stale holder is fenced off by the resource', () => {
    const writes = [
      write(1, 1, 10, 2, 3),
      write(2, 2, 15, 26, 27),
      // Client 1 woke from a pause and tried again with its old token: refused, as it should be.
      write(3, 1, 10, 30, 31, 'fail'),
      write(4, 2, 15, 32, 33),
    ];
    const verdict = checkFencing({ holds: HANDOVER, writes });
    assert.equal(verdict.valid, true, verdict.explanation);
  });

  it('flags a token that goes down from one holder to the next', () => {
    const verdict = checkFencing({ holds: [hold(1, 1, 10, [0, 1], 12), hold(2, 2, 7, [18, 25])] });
    assert.deepEqual(codes(verdict), ['FENCING_TOKEN_REGRESSION']);
    assert.match(
      verdict.explanation,
      /client 2 \(token 7.*below that of the earlier holder client 1 \(token 10/,
    );
  });

  it('accepts any token order between acquisitions that overlapped in time', () => {
    const verdict = checkFencing({ holds: [hold(1, 1, 10, [0, 5]), hold(2, 2, 7, [1, 20])] });
    assert.deepEqual(codes(verdict), []);
  });

  it('flags the same token granted twice', () => {
    assert.deepEqual(codes(checkFencing({ holds: [hold(1, 1, 10, [0, 1]), hold(2, 2, 10, [5, 6])] })), [
      'FENCING_DUPLICATE_TOKEN',
    ]);
  });

  it('flags two holders that certainly held the lock at the same time', () => {
    const verdict = checkFencing({ holds: [hold(1, 1, 10, [0, 1], 30), hold(2, 2, 15, [18, 25], 40)] });
    assert.deepEqual(codes(verdict), ['LOCK_MUTUAL_EXCLUSION_VIOLATED']);
  });

  it('flags a resource that accepted an older token after a newer one (real-time order)', () => {
    const writes = [write(1, 2, 15, 26, 27), write(2, 1, 10, 30, 31)];
    const verdict = checkFencing({ holds: HANDOVER, writes });
    assert.deepEqual(codes(verdict), ['FENCING_STALE_WRITE_ACCEPTED']);
    assert.deepEqual(verdict.anomalies[0]?.opIds, [1, 2]);
  });

  it('uses the resource log order when given, even for writes concurrent in real time', () => {
    const writes = [write(1, 2, 15, 20, 40), write(2, 1, 10, 21, 41)];
    assert.deepEqual(codes(checkFencing({ holds: HANDOVER, writes })), []);
    assert.deepEqual(codes(checkFencing({ holds: HANDOVER, writes, acceptOrder: { R: [1, 2] } })), [
      'FENCING_STALE_WRITE_ACCEPTED',
    ]);
    assert.deepEqual(codes(checkFencing({ holds: HANDOVER, writes, acceptOrder: { R: [2, 1] } })), []);
  });

  it('flags a key still attached to a lease after the lease was known gone', () => {
    const read = (id: number, invoke: number, present: boolean): LeaseKeyReadOp => ({
      id,
      process: 3,
      kind: 'read',
      key: '/lock/L/1',
      input: undefined,
      output: { present, lease: 77 },
      invokeTime: invoke,
      completeTime: invoke + 1,
      status: 'ok',
    });
    const leaseExpiries = [{ lease: 77, confirmedAt: 20 }];
    const fine = checkFencing({
      holds: [],
      leaseExpiries,
      keyReads: [read(1, 10, true), read(2, 25, false)],
    });
    assert.equal(fine.valid, true);
    const bad = checkFencing({ holds: [], leaseExpiries, keyReads: [read(1, 25, true)] });
    assert.deepEqual(codes(bad), ['LEASE_KEY_SURVIVED_EXPIRY']);
  });
});
