import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { CompactedError } from '../../src/mvcc/errors.js';
import type { Event, WriteOp } from '../../src/mvcc/types.js';
import type { WatchBatch, Watcher } from '../../src/mvcc/watch.js';
import { applyOps, b, openTemp } from './helpers.js';

const put = (key: string, value = 'v'): WriteOp => ({
  type: 'put',
  request: { key: b(key), value: b(value) },
});
const del = (key: string): WriteOp => ({ type: 'deleteRange', request: { key: b(key) } });

/** Compact text form of events: "put a@3=v" / "delete a@4" (+ " prev=x" when prevKv is set). */
function show(events: Event[]): string[] {
  return events.map((e) => {
    const base = `${e.type} ${e.kv.key.toString()}@${e.kv.modRevision}`;
    const v = e.type === 'put' ? `=${Buffer.from(e.kv.value).toString()}` : '';
    return e.prevKv ? `${base}${v} prev=${Buffer.from(e.prevKv.value).toString()}` : `${base}${v}`;
  });
}

function drain(w: Watcher): Event[] {
  const out: Event[] = [];
  for (let i = 0; i < 10_000; i++) {
    const batch = w.take();
    if (!batch) return out;
    assert.equal(batch.kind, 'events');
    out.push(...(batch as Extract<WatchBatch, { kind: 'events' }>).events);
  }
  throw new Error('watcher never drained');
}

describe('watch', () => {
  test('a defragment keeps an idle watcher synced, also across a compaction since its last event', async () => {
    const t = openTemp({ noSync: true });
    try {
      applyOps(t.ks, [put('a', '1')]);
      const w = t.ks.watchHub.watch({ key: b('a') }, () => {});
      for (let i = 0; i < 5; i++) applyOps(t.ks, [put('other', String(i))]);
      applyOps(t.ks, [{ type: 'compact', request: { revision: t.ks.currentRevision() } }]);
      await t.ks.defragment(join(t.dir, 'defrag.mdb'));
      applyOps(t.ks, [put('a', '2')]);
      assert.deepEqual(show(drain(w)), ['put a@7=2'], 'no compacted answer, the new event arrives');
    } finally {
      await t.cleanup();
    }
  });

  test("prev_kv is the key as of the revision before the event's txn (etcd), none for a create", async () => {
    const t = openTemp({ noSync: true });
    try {
      applyOps(t.ks, [put('b', 'old'), put('d', 'old')]);
      const live = t.ks.watchHub.watch({ key: b('a'), rangeEnd: b('z'), prevKv: true }, () => {});
      // One txn: c is created then removed by a from-key delete, b and d are removed, d recreated.
      const txn: WriteOp = {
        type: 'txn',
        request: {
          compare: [],
          success: [
            { type: 'put', request: { key: b('c'), value: b('new') } },
            { type: 'deleteRange', request: { key: b('b'), rangeEnd: b('\0') } },
            { type: 'put', request: { key: b('d'), value: b('again') } },
          ],
          failure: [],
        },
      };
      applyOps(t.ks, [txn]);
      const expected = [
        'put c@3=new',
        'delete b@3 prev=old',
        'delete c@3',
        'delete d@3 prev=old',
        'put d@3=again',
      ];
      assert.deepEqual(show(drain(live)), expected);
      const replayed = t.ks.watchHub.watch(
        { key: b('a'), rangeEnd: b('z'), prevKv: true, startRevision: 3 },
        () => {},
      );
      assert.deepEqual(show(drain(replayed)), expected, 'replayed from history alike');
    } finally {
      await t.cleanup();
    }
  });

  test('a watch starting at the compact revision still sees a delete made at that revision', async () => {
    const t = openTemp({ noSync: true });
    try {
      applyOps(t.ks, [put('a', '1'), put('b', '1'), del('a'), put('b', '2')]);
      // Revision 3 is the delete of a; compacting at 3 must keep that tombstone (etcd-io/etcd#18089).
      applyOps(t.ks, [{ type: 'compact', request: { revision: 3 } }]);
      while (t.ks.compactionPending()) t.ks.compactStep();
      const w = t.ks.watchHub.watch({ key: b('a'), rangeEnd: b('c'), startRevision: 3 }, () => {});
      assert.deepEqual(show(drain(w)), ['delete a@3', 'put b@4=2']);
      // A later compaction past it removes the tombstone for good.
      applyOps(t.ks, [put('c', '1'), { type: 'compact', request: { revision: 5 } }]);
      while (t.ks.compactionPending()) t.ks.compactStep();
      assert.equal(t.ks.storageStats().historyEntries, 2, 'only the latest puts of b and c remain');
    } finally {
      await t.cleanup();
    }
  });

  test('catches up from history at startRevision, then follows live commits in order', async () => {
    const t = openTemp({ noSync: true });
    try {
      applyOps(t.ks, [put('a', '1'), put('b', '1'), put('a', '2'), del('a'), put('x', '1')]);
      let readable = 0;
      const w = t.ks.watchHub.watch(
        { key: b('a'), rangeEnd: b('c'), startRevision: 2, prevKv: true },
        () => readable++,
      );
      assert.equal(w.state, 'unsynced');
      assert.deepEqual(show(drain(w)), ['put b@2=1', 'put a@3=2 prev=1', 'delete a@4 prev=2']);
      assert.equal(w.state, 'synced');
      readable = 0;
      applyOps(t.ks, [
        {
          type: 'txn',
          request: {
            compare: [],
            success: [
              { type: 'put', request: { key: b('b'), value: b('2') } },
              { type: 'put', request: { key: b('a'), value: b('3') } },
            ],
            failure: [],
          },
        },
      ]);
      assert.equal(readable, 1, 'onReadable fires after the commit');
      assert.deepEqual(
        show(drain(w)),
        ['put b@6=2 prev=1', 'put a@6=3'],
        'txn events ordered by sub-revision',
      );
      assert.equal(w.progressRevision(), 6);
    } finally {
      await t.cleanup();
    }
  });

  test('filters and cancel', async () => {
    const t = openTemp({ noSync: true });
    try {
      const noPut = t.ks.watchHub.watch({ key: b('k'), filters: ['noput'] }, () => {});
      const noDelete = t.ks.watchHub.watch({ key: b('k'), filters: ['nodelete'] }, () => {});
      const canceled = t.ks.watchHub.watch({ key: b('k') }, () => {});
      canceled.cancel();
      applyOps(t.ks, [put('k'), del('k')]);
      assert.deepEqual(show(drain(noPut)), ['delete k@2']);
      assert.deepEqual(show(drain(noDelete)), ['put k@1=v']);
      assert.equal(canceled.take(), undefined);
      assert.equal(t.ks.watchHub.watcherCount, 2);
    } finally {
      await t.cleanup();
    }
  });

  test('a slow watcher goes unsynced without blocking writers and later gets every event exactly once', async () => {
    const t = openTemp({ noSync: true, watch: { eventsBufferedMax: 4 } });
    try {
      const w = t.ks.watchHub.watch({ key: b('k'), rangeEnd: b('l') }, () => {});
      const expected: string[] = [];
      for (let i = 0; i < 60; i++) {
        const ops = [put(`k${i % 7}`, `${i}`), put(`k${(i + 3) % 7}`, `${i}`)];
        applyOps(t.ks, ops);
        expected.push(`put k${i % 7}@${2 * i + 1}=${i}`, `put k${(i + 3) % 7}@${2 * i + 2}=${i}`);
        assert.ok(w.bufferedEvents <= 4, 'buffer stays bounded');
      }
      assert.equal(w.state, 'unsynced');
      const got: Event[] = [];
      for (let i = 0; i < 3; i++) {
        const batch = w.take();
        assert.ok(batch && batch.kind === 'events');
        assert.ok(batch.events.length <= 5, 'catch-up reads are bounded');
        got.push(...batch.events);
      }
      applyOps(t.ks, [put('k1', 'late')]);
      expected.push('put k1@121=late');
      got.push(...drain(w));
      assert.deepEqual(show(got), expected);
      assert.equal(w.state, 'synced');
    } finally {
      await t.cleanup();
    }
  });

  test('start below the compaction point fails with the compact revision; lagging watchers learn it on take', async () => {
    const t = openTemp({ noSync: true, watch: { eventsBufferedMax: 1 } });
    try {
      applyOps(t.ks, [put('a'), put('a'), put('a')]);
      const lagging = t.ks.watchHub.watch({ key: b('a'), startRevision: 1 }, () => {});
      applyOps(t.ks, [{ type: 'compact', request: { revision: 3 } }]);
      assert.throws(
        () => t.ks.watchHub.watch({ key: b('a'), startRevision: 2 }, () => {}),
        (e: unknown) => e instanceof CompactedError && e.compactRevision === 3,
      );
      assert.deepEqual(lagging.take(), { kind: 'compacted', compactRevision: 3 });
      assert.equal(lagging.state, 'canceled');
      const atCompact = t.ks.watchHub.watch({ key: b('a'), startRevision: 3 }, () => {});
      assert.deepEqual(show(drain(atCompact)), ['put a@3=v']);
    } finally {
      await t.cleanup();
    }
  });

  test('a future start revision waits for that revision', async () => {
    const t = openTemp({ noSync: true });
    try {
      const w = t.ks.watchHub.watch({ key: b('a'), startRevision: 3 }, () => {});
      applyOps(t.ks, [put('a', '1'), put('a', '2'), put('a', '3')]);
      assert.deepEqual(show(drain(w)), ['put a@3=3']);
    } finally {
      await t.cleanup();
    }
  });
});

test('a filtered catch-up keeps reading history until it finds events or is synced', async () => {
  const t = openTemp({ noSync: true, watch: { eventsBufferedMax: 2 } });
  try {
    applyOps(t.ks, [put('a'), put('a'), put('a'), put('a'), put('a'), del('a')]);
    const w = t.ks.watchHub.watch({ key: b('a'), startRevision: 1, filters: ['noput'] }, () => {});
    assert.deepEqual(show(drain(w)), ['delete a@6']);
    assert.equal(w.state, 'synced');
  } finally {
    await t.cleanup();
  }
});

test('catch-up work per take() is bounded: a quiet key in a busy history yields and resumes', async () => {
  const t = openTemp({ noSync: true });
  try {
    for (let batch = 0; batch < 5; batch++) {
      applyOps(
        t.ks,
        Array.from({ length: 5000 }, (_, i) => put(`busy/${i}`)),
      );
    }
    applyOps(t.ks, [put('quiet', 'here')]);
    let signalled = 0;
    let wake: () => void = () => {};
    const w = t.ks.watchHub.watch({ key: b('quiet'), startRevision: 1 }, () => {
      signalled++;
      wake();
    });
    await new Promise<void>((resolve) => queueMicrotask(resolve));
    assert.equal(w.take(), undefined, 'first take scans a bounded slice and yields');
    assert.equal(w.state, 'unsynced');
    await new Promise<void>((resolve) => {
      wake = resolve;
    });
    assert.ok(signalled >= 2);
    assert.deepEqual(show(drain(w)), ['put quiet@25001=here']);
    assert.equal(w.state, 'synced');
  } finally {
    await t.cleanup();
  }
});
