// Fan-out: many watchers of one commit get the very same Event objects (so the API layer converts
// and encodes each event once), watchers of one range are matched together, and grouping never
// changes who gets what.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Event, WriteOp } from '../../src/mvcc/types.js';
import type { WatchBatch, Watcher } from '../../src/mvcc/watch.js';
import { applyOps, b, openTemp } from './helpers.js';

const put = (key: string, value = 'v'): WriteOp => ({
  type: 'put',
  request: { key: b(key), value: b(value) },
});

function take(w: Watcher): Event[] {
  const batch = w.take();
  if (batch === undefined) return [];
  assert.equal(batch.kind, 'events');
  return (batch as Extract<WatchBatch, { kind: 'events' }>).events;
}

const keys = (events: Event[]) => events.map((e) => `${e.kv.key.toString()}@${e.kv.modRevision}`);

describe('watch fan-out', () => {
  test('every watcher of a commit gets the same Event objects; non-prevKv watchers share one stripped copy', async () => {
    const t = openTemp({ noSync: true });
    try {
      applyOps(t.ks, [put('p/a', 'old')]);
      const hub = t.ks.watchHub;
      const plain = Array.from({ length: 50 }, () =>
        hub.watch({ key: b('p/'), rangeEnd: b('p0') }, () => {}),
      );
      const exact = Array.from({ length: 5 }, () => hub.watch({ key: b('p/a') }, () => {}));
      const withPrev = Array.from({ length: 5 }, () =>
        hub.watch({ key: b('p/'), rangeEnd: b('p0'), prevKv: true }, () => {}),
      );
      applyOps(t.ks, [put('p/a', 'new')]);
      const plainEvents = [...plain, ...exact].map(take);
      const prevEvents = withPrev.map(take);
      const first = plainEvents[0]![0]!;
      assert.equal(first.prevKv, undefined, 'a watcher that did not ask gets no prevKv');
      for (const events of plainEvents) assert.equal(events[0], first);
      const firstPrev = prevEvents[0]![0]!;
      assert.equal(Buffer.from(firstPrev.prevKv!.value).toString(), 'old');
      for (const events of prevEvents) assert.equal(events[0], firstPrev);
    } finally {
      await t.cleanup();
    }
  });

  test('watchers of different ranges sharing a prefix each get exactly their keys', async () => {
    const t = openTemp({ noSync: true });
    try {
      const hub = t.ks.watchHub;
      const ab = [
        hub.watch({ key: b('a'), rangeEnd: b('c') }, () => {}),
        hub.watch({ key: b('a'), rangeEnd: b('c') }, () => {}),
      ];
      // Same start, different end: must not fall into the group of [a, c).
      const aTob = hub.watch({ key: b('a'), rangeEnd: b('b') }, () => {});
      // Start "ab" + end "c" against start "a" + end "bc": the same concatenation, different ranges.
      const abToC = hub.watch({ key: b('ab'), rangeEnd: b('c') }, () => {});
      const aToBc = hub.watch({ key: b('a'), rangeEnd: b('bc') }, () => {});
      const all = hub.watch({ key: b('\0'), rangeEnd: b('\0') }, () => {});
      applyOps(t.ks, [put('a'), put('aa'), put('b'), put('bb'), put('bd'), put('c')]);
      for (const w of ab) assert.deepEqual(keys(take(w)), ['a@1', 'aa@2', 'b@3', 'bb@4', 'bd@5']);
      assert.deepEqual(keys(take(aTob)), ['a@1', 'aa@2']);
      assert.deepEqual(keys(take(abToC)), ['b@3', 'bb@4', 'bd@5']);
      assert.deepEqual(keys(take(aToBc)), ['a@1', 'aa@2', 'b@3', 'bb@4']);
      assert.deepEqual(keys(take(all)), ['a@1', 'aa@2', 'b@3', 'bb@4', 'bd@5', 'c@6']);
    } finally {
      await t.cleanup();
    }
  });

  test('canceling one watcher of a range leaves the rest of its group watching', async () => {
    const t = openTemp({ noSync: true });
    try {
      const hub = t.ks.watchHub;
      const [gone, kept] = [0, 1].map(() => hub.watch({ key: b('g/'), rangeEnd: b('g0') }, () => {}));
      gone!.cancel();
      applyOps(t.ks, [put('g/1')]);
      assert.deepEqual(keys(take(kept!)), ['g/1@1']);
      assert.equal(gone!.take(), undefined);
      kept!.cancel();
      assert.equal(hub.watcherCount, 0);
      // A new watcher of the emptied range still works (the group is rebuilt).
      const again = hub.watch({ key: b('g/'), rangeEnd: b('g0') }, () => {});
      applyOps(t.ks, [put('g/2')]);
      assert.deepEqual(keys(take(again)), ['g/2@2']);
    } finally {
      await t.cleanup();
    }
  });

  test('a watcher that already delivered a revision does not get it again from a shared list', async () => {
    const t = openTemp({ noSync: true });
    try {
      const hub = t.ks.watchHub;
      applyOps(t.ks, [put('r/1')]);
      // One watcher starting in the past (catching up), one live: both in the same group.
      const past = hub.watch({ key: b('r/'), rangeEnd: b('r0'), startRevision: 1 }, () => {});
      const live = hub.watch({ key: b('r/'), rangeEnd: b('r0') }, () => {});
      assert.deepEqual(keys(take(past)), ['r/1@1']);
      applyOps(t.ks, [put('r/2'), put('r/3')]);
      assert.deepEqual(keys(take(past)), ['r/2@2', 'r/3@3']);
      assert.deepEqual(keys(take(live)), ['r/2@2', 'r/3@3']);
      assert.deepEqual(take(past), []);
    } finally {
      await t.cleanup();
    }
  });
});
