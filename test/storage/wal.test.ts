import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { emptyConfState, type SnapshotMetadata } from '../../src/raft/types.js';
import {
  WalClosedError,
  WalCorruptionError,
  WalFailedError,
  WalInvalidAppendError,
  WalLockedError,
  WalOverloadError,
} from '../../src/storage/errors.js';
import { Wal } from '../../src/storage/wal.js';
import { entries, walFiles, withTempDir } from './helpers.js';

function marker(index: number, term: number): SnapshotMetadata {
  return { index, term, confState: { ...emptyConfState(), voters: [1, 2, 3], learners: [4] } };
}

describe('WAL round trip', () => {
  it('recovers hard state, snapshot marker and entries of every group after reopen', () =>
    withTempDir(async (dir) => {
      const { wal, recovered } = await Wal.open(dir);
      assert.equal(recovered.groups.size, 0);
      wal.saveHardState(1, { term: 3, vote: 2, commit: 5 });
      wal.appendEntries(1, entries(1, 10, 3));
      wal.saveSnapshotMarker(2, marker(100, 7));
      wal.appendEntries(2, entries(101, 105, 7));
      wal.saveHardState(2, { term: 7, vote: 1, commit: 104 });
      await wal.sync();
      await wal.close();

      const reopened = await Wal.open(dir);
      const g1 = reopened.recovered.groups.get(1)!;
      assert.deepEqual(g1.hardState, { term: 3, vote: 2, commit: 5 });
      assert.equal(g1.snapshot, null);
      assert.deepEqual(g1.entries, entries(1, 10, 3));
      const g2 = reopened.recovered.groups.get(2)!;
      assert.deepEqual(g2.snapshot, marker(100, 7));
      assert.deepEqual(g2.entries, entries(101, 105, 7));
      assert.deepEqual(g2.hardState, { term: 7, vote: 1, commit: 104 });
      assert.equal(reopened.recovered.tornTail, null);
      await reopened.wal.close();
    }));

  it('recovered entries own packed copies of their data: the segment buffer is not kept, and entries inside a snapshot are not copied', () =>
    withTempDir(async (dir) => {
      const { wal } = await Wal.open(dir);
      for (let first = 1; first <= 3000; first += 100) wal.appendEntries(1, entries(first, first + 99, 1));
      wal.saveSnapshotMarker(1, marker(2900, 1));
      await wal.close();
      const reopened = await Wal.open(dir);
      const kept = reopened.recovered.groups.get(1)!.entries;
      assert.deepEqual(kept, entries(2901, 3000, 1));
      const buffers = new Set(kept.map((e) => e.data.buffer));
      const copiedBytes = [...buffers].reduce((sum, buffer) => sum + buffer.byteLength, 0);
      const keptBytes = kept.reduce((sum, e) => sum + e.data.length, 0);
      assert.equal(
        copiedBytes,
        keptBytes,
        'exactly the surviving entries were copied, nothing else retained',
      );
      await reopened.wal.close();
    }));

  it('an entry rewritten at index i supersedes everything previously written at >= i', () =>
    withTempDir(async (dir) => {
      const { wal } = await Wal.open(dir);
      wal.appendEntries(1, entries(1, 10, 1));
      await wal.sync();
      wal.appendEntries(1, entries(6, 8, 2));
      await wal.close();
      const { wal: again, recovered } = await Wal.open(dir);
      assert.deepEqual(recovered.groups.get(1)!.entries, [...entries(1, 5, 1), ...entries(6, 8, 2)]);
      // The writer continues from the truncated log: 9 is next, 10 would be a gap.
      assert.throws(() => again.appendEntries(1, entries(10, 10, 2)), WalInvalidAppendError);
      again.appendEntries(1, entries(9, 9, 2));
      await again.close();
    }));

  it('a snapshot marker drops the entries it covers and keeps the ones after it', () =>
    withTempDir(async (dir) => {
      const { wal } = await Wal.open(dir);
      wal.appendEntries(1, entries(1, 20));
      wal.saveSnapshotMarker(1, marker(15, 1));
      await wal.close();
      const { wal: again, recovered } = await Wal.open(dir);
      assert.deepEqual(recovered.groups.get(1)!.entries, entries(16, 20));
      assert.deepEqual(recovered.groups.get(1)!.snapshot, marker(15, 1));
      await again.close();
    }));

  it('rejects appends that would break the log shape', () =>
    withTempDir(async (dir) => {
      const { wal } = await Wal.open(dir);
      wal.appendEntries(1, entries(1, 5));
      assert.throws(() => wal.appendEntries(1, entries(7, 8)), WalInvalidAppendError, 'gap');
      assert.throws(
        () => wal.appendEntries(1, [entries(1, 1)[0]!, entries(3, 3)[0]!]),
        WalInvalidAppendError,
      );
      wal.saveSnapshotMarker(1, marker(4, 1));
      assert.throws(() => wal.appendEntries(1, entries(4, 6)), WalInvalidAppendError, 'under snapshot');
      assert.throws(() => wal.saveSnapshotMarker(1, marker(3, 1)), WalInvalidAppendError, 'marker regress');
      await assert.rejects(wal.releaseTo(1, 5), WalInvalidAppendError, 'release past marker');
      await wal.close();
      assert.throws(() => wal.appendEntries(1, entries(6, 6)), WalClosedError);
    }));
});

describe('WAL segments', () => {
  it('rolls over to new segments and replays across all of them in order', () =>
    withTempDir(async (dir) => {
      const { wal } = await Wal.open(dir, { segmentBytes: 4096 });
      for (let i = 1; i <= 200; i += 10) {
        wal.appendEntries(1, entries(i, i + 9));
        wal.saveHardState(1, { term: 1, vote: 1, commit: i + 9 });
        await wal.sync();
      }
      await wal.close();
      const names = (await walFiles(dir)).sort();
      assert.ok(names.length >= 5, `expected several segments, got ${names.length}`);
      assert.ok(names.every((n) => /^[0-9a-f]{16}\.wal$/.test(n)));
      const { wal: again, recovered } = await Wal.open(dir, { segmentBytes: 4096 });
      assert.equal(recovered.segmentCount, names.length);
      assert.deepEqual(recovered.groups.get(1)!.entries, entries(1, 200));
      assert.deepEqual(recovered.groups.get(1)!.hardState, { term: 1, vote: 1, commit: 200 });
      await again.close();
    }));

  it('zero-filled segments are fully allocated and replay like sparse ones', () =>
    withTempDir(async (dir) => {
      const { wal } = await Wal.open(dir, { segmentBytes: 64 * 1024, preallocate: 'zero-fill' });
      for (let i = 1; i <= 2000; i += 100) {
        wal.appendEntries(1, entries(i, i + 99));
        await wal.sync();
      }
      await wal.close();
      const names = (await walFiles(dir)).sort();
      assert.ok(names.length > 1);
      for (const name of names) {
        const info = await stat(join(dir, name));
        assert.ok(info.blocks * 512 >= info.size, `${name} is allocated, not sparse`);
      }
      const { wal: again, recovered } = await Wal.open(dir, { preallocate: 'zero-fill' });
      assert.deepEqual(recovered.groups.get(1)!.entries, entries(1, 2000));
      await again.close();
    }));

  it('releasing old segments deletes them but keeps every group hard state and marker', () =>
    withTempDir(async (dir) => {
      const { wal } = await Wal.open(dir, { segmentBytes: 4096 });
      wal.saveHardState(2, { term: 9, vote: 3, commit: 0 });
      wal.saveSnapshotMarker(3, marker(50, 2));
      for (let i = 1; i <= 300; i += 10) {
        wal.appendEntries(1, entries(i, i + 9));
        wal.saveHardState(1, { term: 1, vote: 2, commit: i });
        await wal.sync();
      }
      const before = wal.segmentSeqs();
      wal.saveSnapshotMarker(1, marker(250, 1));
      const deleted = await wal.releaseTo(1, 250);
      assert.ok(deleted > 0, 'some segments deleted');
      assert.deepEqual(wal.segmentSeqs(), before.slice(deleted));
      assert.equal((await walFiles(dir)).length, before.length - deleted);
      await wal.close();

      const { wal: again, recovered } = await Wal.open(dir, { segmentBytes: 4096 });
      assert.deepEqual(recovered.groups.get(1)!.hardState, { term: 1, vote: 2, commit: 291 });
      assert.deepEqual(recovered.groups.get(1)!.snapshot, marker(250, 1));
      assert.deepEqual(recovered.groups.get(1)!.entries, entries(251, 300));
      assert.deepEqual(recovered.groups.get(2)!.hardState, { term: 9, vote: 3, commit: 0 });
      assert.deepEqual(recovered.groups.get(3)!.snapshot, marker(50, 2));
      await again.close();
    }));

  it('segments deleted behind an older head marker still recover: the newer marker heals the gap', () =>
    withTempDir(async (dir) => {
      const { wal } = await Wal.open(dir, { segmentBytes: 4096 });
      wal.saveSnapshotMarker(1, marker(10, 1));
      for (let i = 11; i <= 300; i += 10) {
        wal.appendEntries(1, entries(i, i + 9));
        await wal.sync();
      }
      wal.saveSnapshotMarker(1, marker(250, 1));
      assert.ok((await wal.releaseTo(1, 250)) > 0);
      await wal.close();
      const { wal: again, recovered } = await Wal.open(dir, { segmentBytes: 4096 });
      assert.deepEqual(recovered.groups.get(1)!.snapshot, marker(250, 1));
      assert.deepEqual(recovered.groups.get(1)!.entries, entries(251, 300));
      await again.close();
    }));

  it('a lost oldest segment that no marker covers fails recovery instead of hiding the gap', () =>
    withTempDir(async (dir) => {
      const { wal } = await Wal.open(dir, { segmentBytes: 4096 });
      wal.saveSnapshotMarker(1, marker(10, 1));
      for (let i = 11; i <= 300; i += 10) {
        wal.appendEntries(1, entries(i, i + 9));
        await wal.sync();
      }
      await wal.close();
      const names = (await walFiles(dir)).sort();
      await rm(join(dir, names[0]!));
      await assert.rejects(
        Wal.open(dir, { segmentBytes: 4096 }),
        (err: unknown) => err instanceof WalCorruptionError && err.file === join(dir, names[1]!),
      );
    }));

  it('keeps a segment while any group still needs entries in it', () =>
    withTempDir(async (dir) => {
      const { wal } = await Wal.open(dir, { segmentBytes: 4096 });
      for (let i = 1; i <= 200; i += 10) {
        wal.appendEntries(1, entries(i, i + 9));
        wal.appendEntries(2, entries(i, i + 9));
        await wal.sync();
      }
      wal.saveSnapshotMarker(1, marker(200, 1));
      wal.appendEntries(2, entries(201, 240));
      await wal.sync();
      assert.equal(await wal.releaseTo(1, 200), 0, 'group 2 still needs every segment');
      wal.saveSnapshotMarker(2, marker(100, 1));
      wal.appendEntries(2, entries(241, 280));
      await wal.sync();
      await wal.releaseTo(2, 100);
      assert.ok(wal.stats().segmentsDeleted > 0);
      await wal.close();
      const { wal: again, recovered } = await Wal.open(dir, { segmentBytes: 4096 });
      assert.deepEqual(recovered.groups.get(2)!.entries, entries(101, 280));
      assert.deepEqual(recovered.groups.get(1)!.entries, []);
      await again.close();
    }));
});

describe('WAL group commit', () => {
  it('appends made in one event-loop turn go out as exactly one write and one fdatasync', () =>
    withTempDir(async (dir) => {
      let hookSyncs = 0;
      const { wal } = await Wal.open(dir, {
        io: {
          datasync: (fh) => {
            hookSyncs++;
            return fh.datasync();
          },
        },
      });
      const base = wal.stats();
      const syncsBefore = hookSyncs;
      const promises: Promise<void>[] = [];
      for (let i = 1; i <= 1000; i++) {
        wal.appendEntries(1, entries(i, i));
        promises.push(wal.sync());
      }
      assert.ok(
        promises.every((p) => p === promises[0]),
        'one promise for the whole batch',
      );
      await Promise.all(promises);
      const after = wal.stats();
      assert.equal(hookSyncs - syncsBefore, 1, 'injected datasync hook saw one call');
      assert.equal(after.datasyncs - base.datasyncs, 1);
      assert.equal(after.writes - base.writes, 1);
      assert.equal(after.batches - base.batches, 1);
      assert.equal(after.recordsWritten - base.recordsWritten, 1000);
      await wal.close();
    }));

  it('a lazily saved hard state costs no write of its own and rides with the next batch', () =>
    withTempDir(async (dir) => {
      const { wal } = await Wal.open(dir);
      wal.appendEntries(1, entries(1, 2));
      await wal.sync();
      const base = wal.stats();
      wal.saveHardStateLazily(1, { term: 1, vote: 0, commit: 2 });
      for (let turn = 0; turn < 3; turn++) await new Promise((resolve) => setImmediate(resolve));
      assert.equal(wal.stats().writes - base.writes, 0, 'no write for a lazy record alone');
      wal.appendEntries(1, entries(3, 3));
      await wal.sync();
      const after = wal.stats();
      assert.equal(after.writes - base.writes, 1);
      assert.equal(after.datasyncs - base.datasyncs, 1);
      assert.equal(after.recordsWritten - base.recordsWritten, 2, 'the lazy record went with the entries');
      // A waiter makes a batch of lazy records only go out.
      wal.saveHardStateLazily(1, { term: 1, vote: 0, commit: 3 });
      await wal.sync();
      assert.equal(wal.stats().writes - after.writes, 1);
      await wal.close();
      const reopened = await Wal.open(dir);
      assert.deepEqual(reopened.recovered.groups.get(1)?.hardState, { term: 1, vote: 0, commit: 3 });
      await reopened.wal.close();
    }));

  it('syncNow writes the buffered batch before the turn ends; later appends form the next batch', () =>
    withTempDir(async (dir) => {
      const { wal } = await Wal.open(dir);
      const base = wal.stats();
      for (let i = 1; i <= 10; i++) wal.appendEntries(1, entries(i, i));
      const first = wal.syncNow();
      // Written synchronously by syncNow: the write is counted before any turn has passed.
      assert.equal(wal.stats().writes - base.writes, 1);
      wal.appendEntries(1, entries(11, 11));
      const second = wal.sync();
      assert.notEqual(first, second, 'an append after syncNow waits for the next batch');
      await Promise.all([first, second]);
      const after = wal.stats();
      assert.equal(after.batches - base.batches, 2);
      assert.equal(after.recordsWritten - base.recordsWritten, 11);
      await wal.close();
      const reopened = await Wal.open(dir);
      assert.equal(reopened.recovered.groups.get(1)?.entries.length, 11);
      await reopened.wal.close();
    }));

  it('appends made while a batch is in flight form the next batch', () =>
    withTempDir(async (dir) => {
      const { wal } = await Wal.open(dir);
      wal.appendEntries(1, entries(1, 1));
      const first = wal.sync();
      await new Promise((resolve) => setImmediate(resolve));
      wal.appendEntries(1, entries(2, 2));
      const second = wal.sync();
      assert.notEqual(first, second);
      await Promise.all([first, second]);
      assert.equal(wal.stats().batches, 2);
      await wal.close();
      const { wal: again, recovered } = await Wal.open(dir);
      assert.deepEqual(recovered.groups.get(1)!.entries, entries(1, 2));
      await again.close();
    }));

  it('refuses to buffer more than pendingBytesMax until a sync drains it', () =>
    withTempDir(async (dir) => {
      const { wal } = await Wal.open(dir, { pendingBytesMax: 4096 });
      let index = 0;
      assert.throws(() => {
        for (;;) {
          index++;
          wal.appendEntries(1, entries(index, index));
        }
      }, WalOverloadError);
      await wal.sync();
      wal.appendEntries(1, entries(index, index)); // the refused entry was not recorded
      await wal.close();
      const again = await Wal.open(dir);
      assert.deepEqual(again.recovered.groups.get(1)!.entries, entries(1, index));
      await again.wal.close();
    }));

  it('a failed fdatasync fails the batch and the WAL refuses every later write', () =>
    withTempDir(async (dir) => {
      let failNext = false;
      const { wal } = await Wal.open(dir, {
        io: {
          datasync: (fh) => (failNext ? Promise.reject(new Error('EIO: injected')) : fh.datasync()),
        },
      });
      wal.appendEntries(1, entries(1, 3));
      await wal.sync();
      failNext = true;
      wal.appendEntries(1, entries(4, 4));
      const failed = wal.sync();
      await assert.rejects(
        failed,
        (err: unknown) => err instanceof WalFailedError && /EIO/.test(err.message),
      );
      failNext = false;
      assert.throws(() => wal.appendEntries(1, entries(5, 5)), WalFailedError);
      assert.throws(() => wal.saveHardState(1, { term: 1, vote: 0, commit: 1 }), WalFailedError);
      await assert.rejects(wal.sync(), WalFailedError);
      await assert.rejects(wal.close(), WalFailedError);
    }));
});

describe('WAL directory lock', () => {
  it('a second open of a directory in use fails until the first closes', () =>
    withTempDir(async (dir) => {
      const { wal } = await Wal.open(dir);
      await assert.rejects(
        Wal.open(dir),
        (err: unknown) => err instanceof WalLockedError && err.ownerPid === process.pid,
      );
      await wal.close();
      const again = await Wal.open(dir);
      await again.wal.close();
    }));

  it('a lock left by a process that died is taken over', () =>
    withTempDir(async (dir) => {
      const dead = spawnSync(process.execPath, ['-e', 'process.exit(0)']).pid!;
      await writeFile(join(dir, 'LOCK'), `${dead}\n`);
      const { wal } = await Wal.open(dir);
      assert.equal((await readFile(join(dir, 'LOCK'), 'utf8')).trim(), String(process.pid));
      await wal.close();
    }));

  it('a lock held by another live process is refused', () =>
    withTempDir(async (dir) => {
      await writeFile(join(dir, 'LOCK'), `${process.ppid}\n`);
      await assert.rejects(
        Wal.open(dir),
        (err: unknown) => err instanceof WalLockedError && err.ownerPid === process.ppid,
      );
    }));
});
