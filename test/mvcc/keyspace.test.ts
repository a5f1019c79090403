import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { CompactedError, FutureRevisionError } from '../../src/mvcc/errors.js';
import type { ApplyResult, RequestOp, TxnRequest, WriteOp } from '../../src/mvcc/types.js';
import { KEY_BYTES_MAX } from '../../src/mvcc/validate.js';
import { applyOps, b, norm, okResponse, openTemp, type TempKeyspace } from './helpers.js';

const put = (key: string, value = 'v', extra: object = {}): WriteOp => ({
  type: 'put',
  request: { key: b(key), value: b(value), ...extra },
});
const del = (key: string, rangeEnd?: string, prevKv = false): WriteOp => ({
  type: 'deleteRange',
  request: { key: b(key), rangeEnd: rangeEnd === undefined ? undefined : b(rangeEnd), prevKv },
});
const txn = (request: Partial<TxnRequest>): WriteOp => ({
  type: 'txn',
  request: { compare: [], success: [], failure: [], ...request },
});
const opPut = (key: string, value = 'v'): RequestOp => ({
  type: 'put',
  request: { key: b(key), value: b(value) },
});
const opDel = (key: string, rangeEnd?: string): RequestOp => ({
  type: 'deleteRange',
  request: { key: b(key), rangeEnd: rangeEnd === undefined ? undefined : b(rangeEnd) },
});
const errorCode = (r: ApplyResult): string =>
  r.status === 'error' ? r.error.code : `not an error: ${r.status}`;
const keys = (t: TempKeyspace, from = 'a', to = '\u0000'): string[] =>
  t.ks.range({ key: b(from), rangeEnd: b(to) }).kvs.map((kv) => Buffer.from(kv.key).toString());

describe('revisions', () => {
  const t = openTemp({ noSync: true });
  after(() => t.cleanup());

  test('each put gets the next revision; version counts puts; delete resets version', () => {
    applyOps(t.ks, [put('a'), put('a'), put('b')]);
    assert.equal(t.ks.currentRevision(), 3);
    const a = t.ks.range({ key: b('a') }).kvs[0]!;
    assert.deepEqual([a.createRevision, a.modRevision, a.version], [1, 2, 2]);
    applyOps(t.ks, [del('a'), put('a')]);
    const a2 = t.ks.range({ key: b('a') }).kvs[0]!;
    assert.deepEqual([a2.createRevision, a2.modRevision, a2.version], [5, 5, 1]);
  });

  test('a delete that deletes nothing does not bump the revision', () => {
    const before = t.ks.currentRevision();
    const [r] = applyOps(t.ks, [del('nothing-here')]);
    assert.deepEqual(norm(okResponse(r!)), {
      type: 'deleteRange',
      response: { revision: before, deleted: 0, prevKvs: [] },
    });
    assert.equal(t.ks.currentRevision(), before);
  });

  test('a txn is one revision for all of its writes', () => {
    const before = t.ks.currentRevision();
    const [r] = applyOps(t.ks, [txn({ success: [opPut('t1'), opPut('t2'), opDel('b')] })]);
    const resp = okResponse(r!);
    assert.equal(resp.type === 'txn' && resp.response.revision, before + 1);
    assert.equal(t.ks.currentRevision(), before + 1);
    for (const k of ['t1', 't2']) assert.equal(t.ks.range({ key: b(k) }).kvs[0]!.modRevision, before + 1);
  });

  test('historical reads see the keyspace as it was', () => {
    assert.deepEqual(
      t.ks.range({ key: b('a'), revision: 2 }).kvs.map((kv) => kv.value.toString()),
      ['v'],
    );
    assert.equal(t.ks.range({ key: b('a'), revision: 4 }).count, 0);
    assert.throws(() => t.ks.range({ key: b('a'), revision: 999 }), FutureRevisionError);
  });
});

describe('range', () => {
  const t = openTemp({ noSync: true });
  after(() => t.cleanup());
  applyOps(
    t.ks,
    ['a', 'ab', 'abc', 'b', 'c'].map((k, i) => put(k, `v${5 - i}`)),
  );

  test('empty range_end is one key, "\\0" is every key >= key, prefix end is a prefix scan', () => {
    assert.deepEqual(keys(t, 'ab', ''), ['ab']);
    assert.deepEqual(
      t.ks.range({ key: b('ab') }).kvs.map((kv) => kv.key.toString()),
      ['ab'],
    );
    assert.deepEqual(keys(t, 'ab', '\u0000'), ['ab', 'abc', 'b', 'c']);
    assert.deepEqual(keys(t, 'a', 'b'), ['a', 'ab', 'abc']);
    assert.deepEqual(keys(t, '\u0000', '\u0000'), ['a', 'ab', 'abc', 'b', 'c']);
  });

  test('limit sets more and count is the total', () => {
    const r = t.ks.range({ key: b('a'), rangeEnd: b('\u0000'), limit: 2 });
    assert.deepEqual([r.kvs.length, r.more, r.count], [2, true, 5]);
  });

  test('sort target other than key defaults to ascending; descend reverses', () => {
    const byValue = t.ks.range({ key: b('a'), rangeEnd: b('\u0000'), sortTarget: 'value' });
    assert.deepEqual(
      byValue.kvs.map((kv) => kv.key.toString()),
      ['c', 'b', 'abc', 'ab', 'a'],
    );
    const desc = t.ks.range({ key: b('a'), rangeEnd: b('\u0000'), sortOrder: 'descend', limit: 2 });
    assert.deepEqual(
      desc.kvs.map((kv) => kv.key.toString()),
      ['c', 'b'],
    );
  });

  test('keys_only drops values, count_only drops kvs, revision filters prune', () => {
    const ko = t.ks.range({ key: b('a'), rangeEnd: b('b'), keysOnly: true });
    assert.ok(ko.kvs.every((kv) => kv.value.length === 0));
    const co = t.ks.range({ key: b('a'), rangeEnd: b('\u0000'), countOnly: true });
    assert.deepEqual([co.kvs.length, co.count], [0, 5]);
    const f = t.ks.range({ key: b('a'), rangeEnd: b('\u0000'), minModRevision: 2, maxModRevision: 3 });
    assert.deepEqual(
      f.kvs.map((kv) => kv.key.toString()),
      ['ab', 'abc'],
    );
  });
});

describe('put and delete options', () => {
  const t = openTemp({ noSync: true });
  after(() => t.cleanup());

  test('ignore_value / ignore_lease errors match etcd', () => {
    const results = applyOps(t.ks, [
      put('k', 'x', { ignoreValue: true }),
      put('missing', '', { ignoreValue: true }),
      put('missing', '', { ignoreLease: true }),
      put('k', '', { ignoreLease: true, lease: 5n }),
      put('k', 'v', { lease: 77n }),
      put('', 'v'),
    ]);
    assert.deepEqual(results.map(errorCode), [
      'value-provided',
      'key-not-found',
      'key-not-found',
      'lease-provided',
      'lease-not-found',
      'key-not-provided',
    ]);
    assert.equal(
      results[0]!.status === 'error' && results[0]!.error.message,
      'etcdserver: value is provided',
    );
    assert.equal(t.ks.currentRevision(), 0, 'failed requests change nothing');
  });

  test('ignore_value keeps the value, prev_kv returns the old kv', () => {
    applyOps(t.ks, [put('k', 'one')]);
    const [r] = applyOps(t.ks, [put('k', '', { ignoreValue: true, prevKv: true })]);
    const resp = okResponse(r!);
    assert.equal(resp.type === 'put' && resp.response.prevKv?.value.toString(), 'one');
    const kv = t.ks.range({ key: b('k') }).kvs[0]!;
    assert.deepEqual([kv.value.toString(), kv.version], ['one', 2]);
  });

  test('delete range returns deleted count and prev kvs', () => {
    applyOps(t.ks, [put('k2', 'two')]);
    const [r] = applyOps(t.ks, [del('k', '\u0000', true)]);
    assert.deepEqual(norm(okResponse(r!)), {
      type: 'deleteRange',
      response: {
        revision: 4,
        deleted: 2,
        prevKvs: [
          { key: 'b:k', createRevision: 1, modRevision: 2, version: 2, value: 'b:one', lease: 'n:0' },
          { key: 'b:k2', createRevision: 3, modRevision: 3, version: 1, value: 'b:two', lease: 'n:0' },
        ],
      },
    });
  });
});

describe('txn', () => {
  const t = openTemp({ noSync: true });
  after(() => t.cleanup());
  applyOps(t.ks, [put('a', '1'), put('b', '2')]);

  test('compares over a range require every key to match', () => {
    const cmp = (v: number) =>
      txn({
        compare: [{ target: 'version', key: b('a'), rangeEnd: b('c'), result: 'equal', version: v }],
        success: [{ type: 'range', request: { key: b('a') } }],
      });
    const [yes, no] = applyOps(t.ks, [cmp(1), cmp(2)]);
    assert.equal(
      okResponse(yes!).type === 'txn' &&
        (okResponse(yes!) as { response: { succeeded: boolean } }).response.succeeded,
      true,
    );
    assert.equal((okResponse(no!) as { response: { succeeded: boolean } }).response.succeeded, false);
  });

  test('a missing key fails a value compare but has version 0', () => {
    const [v, ver] = applyOps(t.ks, [
      txn({ compare: [{ target: 'value', key: b('zz'), result: 'not-equal', value: b('x') }] }),
      txn({ compare: [{ target: 'version', key: b('zz'), result: 'equal', version: 0 }] }),
    ]);
    assert.equal((okResponse(v!) as { response: { succeeded: boolean } }).response.succeeded, false);
    assert.equal((okResponse(ver!) as { response: { succeeded: boolean } }).response.succeeded, true);
  });

  test('reads inside a txn see its earlier writes; nested compares see the state before the txn', () => {
    const rev = t.ks.currentRevision();
    const [r] = applyOps(t.ks, [
      txn({
        success: [
          opPut('new', 'n'),
          { type: 'range', request: { key: b('new') } },
          {
            type: 'txn',
            request: {
              compare: [{ target: 'version', key: b('new'), result: 'equal', version: 0 }],
              success: [opPut('nested-saw-old-state')],
              failure: [opPut('nested-saw-new-state')],
            },
          },
        ],
      }),
    ]);
    const resp = okResponse(r!);
    assert.equal(resp.type, 'txn');
    const responses = (resp as { response: { responses: { type: string; response: unknown }[] } }).response
      .responses;
    assert.deepEqual(norm(responses[1]), {
      type: 'range',
      response: {
        revision: rev + 1,
        kvs: [
          {
            key: 'b:new',
            createRevision: rev + 1,
            modRevision: rev + 1,
            version: 1,
            value: 'b:n',
            lease: 'n:0',
          },
        ],
        more: false,
        count: 1,
      },
    });
    assert.equal(t.ks.range({ key: b('nested-saw-old-state') }).count, 1);
    assert.equal(
      (responses[2]!.response as { revision: number }).revision,
      0,
      'nested txn header revision is 0',
    );
  });

  test('duplicate keys are rejected before anything is applied (etcd checkIntervals)', () => {
    const rev = t.ks.currentRevision();
    const nested = (success: RequestOp[], failure: RequestOp[] = []): RequestOp => ({
      type: 'txn',
      request: { compare: [], success, failure },
    });
    const results = applyOps(t.ks, [
      txn({ success: [opPut('x'), opPut('x')] }),
      txn({ success: [opPut('x'), opDel('w', 'y')] }),
      txn({ success: [opDel('x'), nested([opPut('x')])] }),
      txn({ success: [opPut('x'), nested([opDel('x')])] }),
      txn({ success: [nested([opDel('x')]), nested([opPut('x')])] }),
      txn({ success: [nested([opPut('x')]), nested([opPut('x')])] }),
    ]);
    assert.deepEqual(results.map(errorCode), Array(6).fill('duplicate-key'));
    assert.equal(t.ks.currentRevision(), rev);
    const allowed = applyOps(t.ks, [
      txn({ success: [nested([opPut('x')], [opPut('x')])] }),
      txn({ success: [nested([opPut('y')]), nested([opDel('y')])] }),
      txn({ success: [opDel('a', '\u0000'), opPut('z')] }),
    ]);
    assert.deepEqual(
      allowed.map((r) => r.status),
      ['ok', 'ok', 'ok'],
    );
    assert.equal(
      t.ks.range({ key: b('y') }).count,
      0,
      'put then delete of y in one revision leaves it deleted',
    );
    assert.deepEqual(keys(t), ['z']);
  });

  test('too many operations', () => {
    const ops = Array.from({ length: 129 }, (_, i) => opPut(`k${i}`));
    const [r] = applyOps(t.ks, [txn({ success: ops })]);
    assert.equal(errorCode(r!), 'too-many-ops');
    assert.equal(r!.status === 'error' && r!.error.message, 'etcdserver: too many operations in txn request');
  });

  test('range revisions inside a txn are checked before writing', () => {
    const rev = t.ks.currentRevision();
    const [r] = applyOps(t.ks, [
      txn({ success: [opPut('q'), { type: 'range', request: { key: b('q'), revision: rev + 1 } }] }),
    ]);
    assert.equal(errorCode(r!), 'future-revision');
    assert.equal(t.ks.range({ key: b('q') }).count, 0);
  });
});

describe('compaction', () => {
  const t = openTemp({ noSync: true });
  after(() => t.cleanup());

  test('physically removes superseded versions and tombstoned keys, keeps what reads need', () => {
    applyOps(t.ks, [put('a', '1'), put('a', '2'), put('b', '1'), del('b'), put('c', '1'), put('a', '3')]);
    assert.equal(t.ks.storageStats().revisions, 6);
    const [r] = applyOps(t.ks, [{ type: 'compact', request: { revision: 5 } }]);
    assert.equal(r!.status, 'ok');
    // left: a@2 (latest ≤ 5), c@5, a@6
    const stats = t.ks.storageStats();
    assert.deepEqual([stats.revisions, stats.historyEntries], [3, 3]);
    assert.deepEqual(
      t.ks
        .range({ key: b('a'), rangeEnd: b('\u0000'), revision: 5 })
        .kvs.map((kv) => [kv.key.toString(), kv.value.toString()]),
      [
        ['a', '2'],
        ['c', '1'],
      ],
    );
    assert.throws(() => t.ks.range({ key: b('a'), revision: 4 }), CompactedError);
    assert.throws(
      () => t.ks.range({ key: b('a'), revision: 4 }),
      /mvcc: required revision has been compacted/,
    );
  });

  test('compacting at or below the compact revision or above current fails', () => {
    const results = applyOps(t.ks, [
      { type: 'compact', request: { revision: 5 } },
      { type: 'compact', request: { revision: 99 } },
    ]);
    assert.deepEqual(results.map(errorCode), ['compacted', 'future-revision']);
  });
});

describe('applyBatch atomicity', () => {
  test('applied index is stored with the data; replay is ignored; a failing request changes nothing', async () => {
    const t = openTemp();
    try {
      const results = t.ks.applyBatch([
        { index: 1, op: put('a') },
        { index: 2, op: put('b', '', { ignoreValue: true }) },
        { index: 3, op: put('c') },
        { index: 4, op: { type: 'noop' } },
      ]);
      assert.deepEqual(
        results.map((r) => r.status),
        ['ok', 'error', 'ok', 'ok'],
      );
      const ks = await t.reopen();
      assert.equal(ks.appliedIndex(), 4);
      assert.equal(ks.currentRevision(), 2);
      const replay = ks.applyBatch([
        { index: 3, op: put('c') },
        { index: 4, op: { type: 'noop' } },
        { index: 5, op: put('d') },
      ]);
      assert.deepEqual(
        replay.map((r) => r.status),
        ['skipped', 'skipped', 'ok'],
      );
      assert.deepEqual(keys(t), ['a', 'c', 'd']);
      assert.equal(ks.appliedIndex(), 5);
    } finally {
      await t.cleanup();
    }
  });

  test('an invariant failure aborts the whole batch, data and applied index', async () => {
    const t = openTemp({ noSync: true });
    try {
      applyOps(t.ks, [put('a')]);
      assert.throws(() =>
        t.ks.applyBatch([
          { index: 2, op: put('b') },
          { index: 2, op: put('c') },
        ]),
      );
      assert.equal(t.ks.appliedIndex(), 1);
      assert.equal(t.ks.currentRevision(), 1);
      assert.deepEqual(keys(t), ['a']);
    } finally {
      await t.cleanup();
    }
  });
});

describe('hashKV', () => {
  test('equal across keyspaces that applied the same ops, different otherwise', async () => {
    const x = openTemp({ noSync: true });
    const y = openTemp({ noSync: true });
    try {
      const ops: WriteOp[] = [
        put('a', '1'),
        put('b', '2'),
        del('a'),
        txn({ success: [opPut('c'), opPut('d')] }),
      ];
      applyOps(x.ks, ops);
      applyOps(y.ks, ops);
      assert.deepEqual(x.ks.hashKV(0), y.ks.hashKV(0));
      assert.deepEqual(x.ks.hashKV(2), y.ks.hashKV(2));
      assert.notEqual(x.ks.hashKV(2).hash, x.ks.hashKV(0).hash);
      applyOps(x.ks, [{ type: 'compact', request: { revision: 3 } }]);
      applyOps(y.ks, [{ type: 'compact', request: { revision: 3 } }]);
      assert.deepEqual(x.ks.hashKV(0), y.ks.hashKV(0));
      assert.throws(() => x.ks.hashKV(2), CompactedError);
      applyOps(y.ks, [put('e')]);
      assert.notEqual(x.ks.hashKV(0).hash, y.ks.hashKV(0).hash);
    } finally {
      await x.cleanup();
      await y.cleanup();
    }
  });
});

describe('leases', () => {
  test('revoke deletes every attached key in one revision; index follows puts and deletes', async () => {
    const t = openTemp({ noSync: true });
    try {
      const results = applyOps(t.ks, [
        { type: 'leaseGrant', request: { id: 7n, ttlSeconds: 30 } },
        { type: 'leaseGrant', request: { id: 7n, ttlSeconds: 30 } },
        put('a', 'v', { lease: 7n }),
        put('b', 'v', { lease: 7n }),
        put('c', 'v', { lease: 7n }),
        put('c', 'v'),
        put('d', 'v', { lease: 7n }),
        del('d'),
        { type: 'leaseCheckpoint', request: { id: 7n, remainingTtlSeconds: 12 } },
      ]);
      assert.equal(errorCode(results[1]!), 'lease-exists');
      assert.deepEqual(
        t.ks.leaseKeys(7n).map((k) => k.toString()),
        ['a', 'b'],
      );
      const ks = await t.reopen();
      assert.deepEqual(norm(ks.leases()), [{ id: 'n:7', ttlSeconds: 30, remainingTtlSeconds: 12 }]);
      const rev = ks.currentRevision();
      const [r] = applyOps(ks, [{ type: 'leaseRevoke', request: { id: 7n } }]);
      assert.deepEqual(norm(okResponse(r!)), { type: 'leaseRevoke', response: { revision: rev + 1 } });
      assert.deepEqual(keys(t), ['c']);
      assert.equal(ks.lease(7n), undefined);
      const [again] = applyOps(ks, [{ type: 'leaseRevoke', request: { id: 7n } }]);
      assert.equal(errorCode(again!), 'lease-not-found');
      assert.equal(
        again!.status === 'error' && again!.error.message,
        'etcdserver: requested lease not found',
      );
    } finally {
      await t.cleanup();
    }
  });
});

describe('reads outside raft', () => {
  test('readTxn serves read-only txns and refuses txns that write', async () => {
    const t = openTemp({ noSync: true });
    try {
      applyOps(t.ks, [put('a', '1'), put('a', '2')]);
      const r = t.ks.readTxn({
        compare: [{ target: 'value', key: b('a'), result: 'equal', value: b('2') }],
        success: [
          { type: 'range', request: { key: b('a') } },
          { type: 'range', request: { key: b('a'), revision: 1 } },
        ],
        failure: [],
      });
      assert.equal(r.succeeded, true);
      assert.equal(r.revision, 2);
      assert.deepEqual(
        r.responses.map((x) => x.type === 'range' && x.response.kvs[0]!.value.toString()),
        ['2', '1'],
      );
      assert.throws(
        () => t.ks.readTxn({ compare: [], success: [opPut('x')], failure: [] }),
        /must go through raft/,
      );
      assert.throws(
        () =>
          t.ks.readTxn({
            compare: [],
            success: [{ type: 'range', request: { key: b('a'), revision: 9 } }],
            failure: [],
          }),
        FutureRevisionError,
      );
    } finally {
      await t.cleanup();
    }
  });
});

describe('server metadata', () => {
  test('meta written with a batch commits atomically with it and survives reopen', async () => {
    const t = openTemp({ noSync: true });
    try {
      t.ks.applyBatch([{ index: 1, op: { type: 'noop' } }], { meta: { members: b('m1') } });
      assert.throws(() =>
        t.ks.applyBatch(
          [
            { index: 2, op: put('a') },
            { index: 2, op: put('b') },
          ],
          { meta: { members: b('m2') } },
        ),
      );
      const ks = await t.reopen();
      assert.equal(Buffer.from(ks.getMeta('members')!).toString(), 'm1', 'aborted batch wrote no meta');
      ks.putMeta('other', b('x'));
      assert.equal(Buffer.from(ks.getMeta('other')!).toString(), 'x');
      assert.equal(ks.getMeta('missing'), undefined);
    } finally {
      await t.cleanup();
    }
  });
});

describe('key size', () => {
  test('keys up to the LMDB layout limit are stored; longer ones are refused without applying', async () => {
    const t = openTemp({ noSync: true });
    try {
      const longest = 'k'.repeat(KEY_BYTES_MAX);
      const results = applyOps(t.ks, [
        put(longest),
        put(`${longest}x`),
        put('\u0000'.repeat(KEY_BYTES_MAX / 2 + 1)),
      ]);
      assert.deepEqual(
        results.map((r) => r.status),
        ['ok', 'error', 'error'],
      );
      assert.equal(t.ks.range({ key: b(longest) }).count, 1);
      assert.equal(t.ks.range({ key: b(longest), revision: 1 }).count, 1);
      assert.equal(t.ks.currentRevision(), 1);
    } finally {
      await t.cleanup();
    }
  });
});

describe('incremental physical compaction', () => {
  test('reads, hashKV and watch history do not depend on how far physical compaction got', async () => {
    const slow = openTemp({ noSync: true, compactionRecordsPerBatchMax: 1 });
    const fast = openTemp({ noSync: true });
    try {
      const ops: WriteOp[] = [];
      for (let i = 0; i < 30; i++) ops.push(put(`k${i % 4}`, `${i}`));
      ops.push(del('k1'), put('k9'), { type: 'compact', request: { revision: 31 } }, put('k0', 'after'));
      applyOps(slow.ks, ops);
      applyOps(fast.ks, ops);
      assert.equal(slow.ks.compactionPending(), true);
      assert.equal(fast.ks.compactionPending(), false);
      assert.ok(slow.ks.storageStats().revisions > fast.ks.storageStats().revisions);
      const all = { key: b('\u0000'), rangeEnd: b('\u0000') };
      for (const revision of [31, 32, 33]) {
        assert.deepEqual(
          norm(slow.ks.range({ ...all, revision })),
          norm(fast.ks.range({ ...all, revision })),
        );
      }
      assert.deepEqual(slow.ks.hashKV(0), fast.ks.hashKV(0));
      assert.deepEqual(slow.ks.hashKV(32), fast.ks.hashKV(32));
      // etcd's HashByRev refuses the compact revision itself, not only those below it.
      assert.throws(() => slow.ks.hashKV(31), /required revision has been compacted/);
      const history = (t: TempKeyspace) => norm(t.ks.readEvents(b('\u0000'), b('\u0000'), 31, 33, true, 100));
      assert.deepEqual(history(slow), history(fast));
      let steps = 0;
      while (slow.ks.compactStep(5)) steps++;
      assert.ok(steps > 0);
      assert.deepEqual(slow.ks.storageStats(), fast.ks.storageStats());
      assert.deepEqual(slow.ks.hashKV(0), fast.ks.hashKV(0));
    } finally {
      await slow.cleanup();
      await fast.cleanup();
    }
  });
});

test('sync resolves with the applied index it made durable', async () => {
  const t = openTemp({ noSync: true });
  try {
    applyOps(t.ks, [put('a'), put('b')]);
    assert.equal(await t.ks.sync(), 2);
  } finally {
    await t.cleanup();
  }
});

test('a closed keyspace refuses work with a typed error', async () => {
  const t = openTemp({ noSync: true });
  await t.ks.close();
  assert.throws(
    () => t.ks.range({ key: b('a') }),
    (e: unknown) => (e as { code?: string }).code === 'closed',
  );
  assert.throws(
    () => applyOps(t.ks, [put('a')]),
    (e: unknown) => (e as { code?: string }).code === 'closed',
  );
  await t.cleanup();
});

describe('memory', () => {
  test('the database file is mapped once however much it grows (each remap kept its pages resident again)', async (t) => {
    if (process.platform !== 'linux') return t.skip('reads /proc/self/maps');
    const temp = openTemp();
    try {
      const value = 'v'.repeat(2048);
      for (let batch = 0; batch < 20; batch++) {
        applyOps(
          temp.ks,
          Array.from({ length: 500 }, (_, i) => put(`key-${batch}-${i}`, value)),
        );
      }
      const dataFile = `${join(temp.dir, 'ks')}/data.mdb`;
      assert.ok(statSync(dataFile).size > 20 * 1024 * 1024, 'the file grew well past a small map');
      const mappings = readFileSync('/proc/self/maps', 'utf8')
        .split('\n')
        .filter((line) => line.endsWith(dataFile));
      assert.equal(mappings.length, 1, mappings.join('\n'));
    } finally {
      await temp.cleanup();
    }
  });
});
