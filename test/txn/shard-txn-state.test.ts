// The shard side of cross-shard txns, one rule per test: locks and conflicts, idempotent
// re-drives, the record's compare-and-set transitions, TTLs on the replicated clock, the fast
// path, and what reads and the resolved revision must do with a held lock.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TxnInvariantError } from '../../src/txn/errors.js';
import { planTxn } from '../../src/txn/plan.js';
import { ShardTxnState } from '../../src/txn/shard-txn-state.js';
import type { ShardTxnResult, TxnMeta, TxnPart, TxnRequest } from '../../src/txn/types.js';
import { bytes, ModelKeyspace } from './model-keyspace.js';

const TTL = 100;

function shard() {
  const keyspace = new ModelKeyspace();
  const state = new ShardTxnState(keyspace, { shardId: 1, ttlMs: TTL, retainMs: 10_000 });
  return { keyspace, state };
}

function meta(id: string, priority = 1, startRevision = 10): TxnMeta {
  return { id, primary: 1, priority, startRevision, startedAtMs: 0 };
}

const everything = (key: Uint8Array, rangeEnd: Uint8Array) => [
  { shardId: 1, start: key, end: rangeEnd.length === 0 ? new Uint8Array([...key, 0]) : rangeEnd },
];

function partOf(request: TxnRequest): TxnPart {
  return planTxn(request, everything).parts.get(1)!;
}

const putA: TxnRequest = {
  compare: [],
  success: [{ type: 'put', request: { key: bytes('a'), value: bytes('1') } }],
  failure: [],
};
const putAB: TxnRequest = {
  compare: [{ target: 'version', result: 'equal', key: bytes('b'), version: 0 }],
  success: [{ type: 'put', request: { key: bytes('a'), value: bytes('2') } }],
  failure: [],
};
const readRange: TxnRequest = {
  compare: [],
  success: [{ type: 'range', request: { key: bytes('a'), rangeEnd: bytes('c') } }],
  failure: [],
};

function status(r: ShardTxnResult): string {
  return r.status;
}

test('prepare locks the part and evaluates its compares under the lock', () => {
  const { state } = shard();
  const r = state.apply({ type: 'prepare', meta: meta('t1'), part: partOf(putAB), nowMs: 1 });
  assert.ok(r.type === 'prepare' && r.status === 'prepared');
  assert.deepEqual(r.compares, [{ id: 0, keys: 0, holds: true }]);
  assert.equal(state.locks.size, 1);
});

test('a lock held by another txn refuses an overlapping prepare; compared keys and read ranges lock too', () => {
  const { state } = shard();
  state.apply({ type: 'prepare', meta: meta('t1'), part: partOf(putAB), nowMs: 1 });
  const onCompared = state.apply({
    type: 'prepare',
    meta: meta('t2', 2),
    part: partOf({ compare: [], success: [{ type: 'put', request: { key: bytes('b') } }], failure: [] }),
    nowMs: 2,
  });
  assert.equal(status(onCompared), 'conflict');
  const onRange = state.apply({ type: 'prepare', meta: meta('t3', 3), part: partOf(readRange), nowMs: 2 });
  assert.equal(status(onRange), 'conflict');
  assert.equal(
    onRange.type === 'prepare' && onRange.status === 'conflict' && onRange.conflict.holder.id,
    't1',
  );
  const disjoint = state.apply({
    type: 'prepare',
    meta: meta('t4', 4),
    part: partOf({ compare: [], success: [{ type: 'put', request: { key: bytes('z') } }], failure: [] }),
    nowMs: 2,
  });
  assert.equal(status(disjoint), 'prepared');
});

test('a re-driven prepare answers the same; a prepare after the abort is refused', () => {
  const { state } = shard();
  const first = state.apply({ type: 'prepare', meta: meta('t1'), part: partOf(putA), nowMs: 1 });
  const again = state.apply({ type: 'prepare', meta: meta('t1'), part: partOf(putA), nowMs: 5 });
  assert.deepEqual(again, first);
  state.apply({ type: 'abort', meta: meta('t1'), nowMs: 6 });
  assert.equal(state.locks.size, 0);
  const late = state.apply({ type: 'prepare', meta: meta('t1'), part: partOf(putA), nowMs: 7 });
  assert.deepEqual(late, { type: 'prepare', status: 'refused', reason: 'aborted' });
});

test('an abort that arrives before the prepare makes the late prepare refused', () => {
  const { state } = shard();
  state.apply({ type: 'abort', meta: meta('t1'), nowMs: 1 });
  assert.equal(
    status(state.apply({ type: 'prepare', meta: meta('t1'), part: partOf(putA), nowMs: 2 })),
    'refused',
  );
  assert.equal(state.locks.size, 0);
});

test('commit applies the chosen ops at the revision, releases the lock, and is idempotent', () => {
  const { state, keyspace } = shard();
  state.apply({ type: 'prepare', meta: meta('t1'), part: partOf(putA), nowMs: 1 });
  const c1 = state.apply({ type: 'commit', meta: meta('t1'), revision: 12, executed: [0], nowMs: 2 });
  const c2 = state.apply({ type: 'commit', meta: meta('t1'), revision: 12, executed: [0], nowMs: 3 });
  assert.deepEqual(c2, c1);
  assert.equal(state.locks.size, 0);
  assert.deepEqual(keyspace.dump().get('a'), ['12:1:c12:v1']);
  assert.equal(state.lastRevision, 12);
});

test('commit after abort, abort after commit, and commit without prepare stop loudly', () => {
  const { state } = shard();
  state.apply({ type: 'abort', meta: meta('t1'), nowMs: 1 });
  assert.throws(
    () => state.apply({ type: 'commit', meta: meta('t1'), revision: 12, executed: [], nowMs: 2 }),
    TxnInvariantError,
  );
  state.apply({ type: 'prepare', meta: meta('t2'), part: partOf(putA), nowMs: 1 });
  state.apply({ type: 'commit', meta: meta('t2'), revision: 13, executed: [0], nowMs: 2 });
  assert.throws(() => state.apply({ type: 'abort', meta: meta('t2'), nowMs: 3 }), TxnInvariantError);
  assert.throws(
    () => state.apply({ type: 'commit', meta: meta('t3'), revision: 14, executed: [], nowMs: 3 }),
    TxnInvariantError,
  );
});

test('a commit revision not above the start revision stops loudly', () => {
  const { state } = shard();
  state.apply({ type: 'prepare', meta: meta('t1', 1, 20), part: partOf(putA), nowMs: 1 });
  assert.throws(
    () => state.apply({ type: 'commit', meta: meta('t1', 1, 20), revision: 20, executed: [0], nowMs: 2 }),
    TxnInvariantError,
  );
});

test('record: PENDING → COMMITTED once; a later abort of any kind finds it committed', () => {
  const { state } = shard();
  assert.equal(status(state.apply({ type: 'record-begin', meta: meta('t1'), nowMs: 1 })), 'pending');
  const committed = state.apply({
    type: 'record-commit',
    txnId: 't1',
    revision: 15,
    executed: [0],
    nowMs: 2,
  });
  assert.deepEqual(committed, { type: 'record', status: 'committed', revision: 15, executed: [0] });
  for (const reason of [
    { kind: 'coordinator' },
    { kind: 'expired' },
    { kind: 'wound', byPriority: 0 },
  ] as const) {
    assert.equal(
      status(state.apply({ type: 'record-abort', meta: meta('t1'), reason, nowMs: 10_000 })),
      'committed',
    );
  }
});

test('record: an expired abort waits for the TTL past the last heartbeat, by the replicated clock', () => {
  const { state } = shard();
  state.apply({ type: 'record-begin', meta: meta('t1'), nowMs: 0 });
  state.apply({ type: 'record-heartbeat', txnId: 't1', nowMs: 80 });
  const early = state.apply({
    type: 'record-abort',
    meta: meta('t1'),
    reason: { kind: 'expired' },
    nowMs: 150,
  });
  assert.deepEqual(early, { type: 'record', status: 'pending', expiresAtMs: 180 });
  const due = state.apply({
    type: 'record-abort',
    meta: meta('t1'),
    reason: { kind: 'expired' },
    nowMs: 180,
  });
  assert.equal(status(due), 'aborted');
  assert.equal(
    status(state.apply({ type: 'record-commit', txnId: 't1', revision: 20, executed: [], nowMs: 181 })),
    'aborted',
  );
});

test('the replicated clock never goes back: a proposer with a slow clock cannot revive a record', () => {
  const { state } = shard();
  state.apply({ type: 'record-begin', meta: meta('t1'), nowMs: 0 });
  state.apply({ type: 'record-abort', meta: meta('t2'), reason: { kind: 'coordinator' }, nowMs: 500 });
  const r = state.apply({ type: 'record-abort', meta: meta('t1'), reason: { kind: 'expired' }, nowMs: 10 });
  assert.equal(status(r), 'aborted');
  assert.equal(state.clockMs, 500);
});

test('record: a wound aborts only a younger pending txn', () => {
  const { state } = shard();
  state.apply({ type: 'record-begin', meta: meta('young', 50), nowMs: 0 });
  const byYounger = state.apply({
    type: 'record-abort',
    meta: meta('young', 50),
    reason: { kind: 'wound', byPriority: 60 },
    nowMs: 1,
  });
  assert.equal(status(byYounger), 'pending');
  const byOlder = state.apply({
    type: 'record-abort',
    meta: meta('young', 50),
    reason: { kind: 'wound', byPriority: 40 },
    nowMs: 1,
  });
  assert.equal(status(byOlder), 'aborted');
});

test('record: no record → an abort writes ABORTED, and a late record-begin finds it', () => {
  const { state } = shard();
  assert.equal(
    status(state.apply({ type: 'record-abort', meta: meta('t1'), reason: { kind: 'expired' }, nowMs: 1 })),
    'aborted',
  );
  assert.equal(status(state.apply({ type: 'record-begin', meta: meta('t1'), nowMs: 2 })), 'aborted');
});

test('prepares and record-begins older than the retention are refused', () => {
  const { state } = shard();
  state.apply({ type: 'record-abort', meta: meta('other'), reason: { kind: 'coordinator' }, nowMs: 20_000 });
  assert.equal(
    status(state.apply({ type: 'prepare', meta: meta('t1'), part: partOf(putA), nowMs: 20_001 })),
    'refused',
  );
  assert.deepEqual(state.apply({ type: 'record-begin', meta: meta('t1'), nowMs: 20_001 }), {
    type: 'record',
    status: 'refused',
    reason: 'too-old',
  });
});

test('fast path: one command, no lock; refused on a locked key and on a stale revision', () => {
  const { state, keyspace } = shard();
  const ok = state.apply({ type: 'single', request: putA, revision: 5, nowMs: 1 });
  assert.equal(status(ok), 'applied');
  assert.equal(state.locks.size, 0);
  assert.equal(
    status(state.apply({ type: 'single', request: putA, revision: 5, nowMs: 1 })),
    'stale-revision',
  );
  state.apply({ type: 'prepare', meta: meta('t1'), part: partOf(readRange), nowMs: 2 });
  assert.equal(status(state.apply({ type: 'single', request: putA, revision: 9, nowMs: 3 })), 'conflict');
  const elsewhere: TxnRequest = {
    compare: [],
    success: [{ type: 'put', request: { key: bytes('x') } }],
    failure: [],
  };
  assert.equal(status(state.apply({ type: 'single', request: elsewhere, revision: 9, nowMs: 3 })), 'applied');
  assert.deepEqual(keyspace.dump().get('a'), ['5:1:c5:v1']);
});

test('fast path answers etcd check failures without applying', () => {
  const { state, keyspace } = shard();
  const ignoreValue: TxnRequest = {
    compare: [],
    success: [{ type: 'put', request: { key: bytes('a'), ignoreValue: true } }],
    failure: [],
  };
  const r = state.apply({ type: 'single', request: ignoreValue, revision: 5, nowMs: 1 });
  assert.equal(status(r), 'failed');
  assert.equal(keyspace.dump().size, 0);
});

test('a read at R waits for a lock only if its txn may commit at or below R; the resolved revision stays below it', () => {
  const { state } = shard();
  assert.equal(state.resolvedRevisionCap(), Number.POSITIVE_INFINITY);
  state.apply({ type: 'prepare', meta: meta('t1', 1, 30), part: partOf(putA), nowMs: 1 });
  const a = { start: bytes('a'), end: bytes('b') };
  assert.deepEqual(state.readBlockers(a, 30), []);
  assert.deepEqual(
    state.readBlockers(a, 31).map((m) => m.id),
    ['t1'],
  );
  assert.deepEqual(state.readBlockers({ start: bytes('b'), end: bytes('c') }, 31), []);
  assert.equal(state.resolvedRevisionCap(), 29);
});

test('locks expire on the shard clock, for the sweeper to resolve', () => {
  const { state } = shard();
  state.apply({ type: 'prepare', meta: meta('t1'), part: partOf(putA), nowMs: 10 });
  assert.deepEqual(state.expiredLocks(109), []);
  assert.deepEqual(
    state.expiredLocks(110).map((m) => m.id),
    ['t1'],
  );
});

test('a forgotten COMMITTED record keeps answering until the retention, then goes; aborted records go too', () => {
  const { state } = shard();
  state.apply({ type: 'record-begin', meta: meta('t1'), nowMs: 1 });
  state.apply({ type: 'record-commit', txnId: 't1', revision: 15, executed: [], nowMs: 2 });
  state.apply({ type: 'record-abort', meta: meta('t2'), reason: { kind: 'coordinator' }, nowMs: 3 });
  state.apply({ type: 'record-begin', meta: meta('t3'), nowMs: 4 });
  state.apply({ type: 'record-commit', txnId: 't3', revision: 16, executed: [], nowMs: 5 });
  assert.equal(status(state.apply({ type: 'record-forget', txnId: 't1', nowMs: 6 })), 'committed');
  assert.equal(
    status(state.apply({ type: 'record-abort', meta: meta('t1'), reason: { kind: 'expired' }, nowMs: 7 })),
    'committed',
  );
  state.apply({ type: 'record-abort', meta: meta('other'), reason: { kind: 'coordinator' }, nowMs: 10_007 });
  assert.equal(state.recordOf('t1'), undefined);
  assert.equal(state.recordOf('t2'), undefined);
  assert.equal(state.recordOf('t3')?.state.status, 'committed', 'a committed record not forgotten stays');
});

test('pending records past their TTL are listed for the sweeper', () => {
  const { state } = shard();
  state.apply({ type: 'record-begin', meta: meta('t1'), nowMs: 10 });
  assert.deepEqual(state.expiredRecords(109), []);
  assert.deepEqual(
    state.expiredRecords(110).map((m) => m.id),
    ['t1'],
  );
});

test('read locks are shared: two txns that only read a key both prepare; a writer is refused', () => {
  const { state } = shard();
  const compareB = (id: string, priority: number) =>
    state.apply({
      type: 'prepare',
      meta: meta(id, priority),
      part: partOf({
        compare: [{ target: 'version', result: 'equal', key: bytes('b'), version: 0 }],
        success: [{ type: 'put', request: { key: bytes(`${id}-own`) } }],
        failure: [],
      }),
      nowMs: 1,
    });
  assert.equal(status(compareB('r1', 1)), 'prepared');
  assert.equal(status(compareB('r2', 2)), 'prepared');
  const writeB: TxnRequest = {
    compare: [],
    success: [{ type: 'put', request: { key: bytes('b') } }],
    failure: [],
  };
  assert.equal(
    status(state.apply({ type: 'prepare', meta: meta('w', 3), part: partOf(writeB), nowMs: 2 })),
    'conflict',
  );
  assert.equal(status(state.apply({ type: 'single', request: writeB, revision: 20, nowMs: 2 })), 'conflict');
  const readB: TxnRequest = {
    compare: [],
    success: [{ type: 'range', request: { key: bytes('b') } }],
    failure: [],
  };
  assert.equal(status(state.apply({ type: 'single', request: readB, revision: 21, nowMs: 2 })), 'applied');
});

test('only write locks hold readers and the resolved revision back', () => {
  const { state } = shard();
  state.apply({ type: 'prepare', meta: meta('reader', 1, 5), part: partOf(readRange), nowMs: 1 });
  assert.deepEqual(state.readBlockers({ start: bytes('a'), end: bytes('c') }, 50), []);
  assert.equal(state.resolvedRevisionCap(), Number.POSITIVE_INFINITY);
});
