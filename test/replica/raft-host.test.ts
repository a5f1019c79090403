import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { WalLog } from '../../src/node/durable-log.js';
import type { Ready } from '../../src/raft/api.js';
import { MemoryStorage } from '../../src/raft/memory-storage.js';
import type { Entry } from '../../src/raft/types.js';
import { RaftHost } from '../../src/replica/raft-host.js';
import type { SnapshotStore } from '../../src/storage/snapshot-store.js';
import { Wal } from '../../src/storage/wal.js';
import { entries, withTempDir } from '../storage/helpers.js';
import { noSender, quietEvents, ready, scriptedNode } from './host-fixtures.js';

/**
 * Runs one Ready through a RaftHost over a real WAL in `dir`. The state machine applies as the
 * server's does (its transaction in a later microtask, synchronously); `onApply` sees the WAL at
 * that moment.
 */
async function runReady(
  dir: string,
  storage: MemoryStorage,
  one: Ready,
  onApply: (wal: Wal, batch: Entry[]) => void,
): Promise<void> {
  const { wal } = await Wal.open(dir);
  const node = scriptedNode([one]);
  const stateMachine = {
    restoreSnapshot: async () => {},
    applyEntries: (batch: Entry[]) => Promise.resolve().then(() => onApply(wal, batch)),
  };
  const host = new RaftHost(
    node,
    storage,
    new WalLog(wal, {} as SnapshotStore),
    noSender,
    stateMachine,
    quietEvents,
    1000,
  );
  host.schedule();
  try {
    while (node.advanced === 0) await new Promise((resolve) => setTimeout(resolve, 1));
  } finally {
    host.stop();
    await wal.close();
  }
}

describe('RaftHost', () => {
  it("hands the WAL's fdatasync to the disk before it applies entries already durable, so the two overlap", () =>
    withTempDir(async (dir) => {
      const storage = new MemoryStorage();
      storage.append(entries(1, 1, 1));
      storage.setHardState({ term: 1, vote: 1, commit: 0 });
      const fsyncsWhenApplying: number[] = [];
      const applied: Entry[] = [];
      // Entry 1 is on our disk and now committed; entry 2 arrives in the same Ready.
      const one = ready({
        hardState: { term: 1, vote: 1, commit: 1 },
        entries: entries(2, 2, 1),
        committedEntries: entries(1, 1, 1),
      });
      await runReady(dir, storage, one, (wal, batch) => {
        fsyncsWhenApplying.push(wal.stats().datasyncs);
        applied.push(...batch);
      });
      assert.deepEqual(
        applied.map((e) => e.index),
        [1],
      );
      assert.deepEqual(fsyncsWhenApplying, [1], 'the fdatasync was issued before the apply ran');
      assert.equal(storage.lastIndex(), 2);
    }));

  it("does not apply early an entry this Ready overwrites (a deposed leader's tail replaced and committed at once)", () =>
    withTempDir(async (dir) => {
      // Our disk holds 2@term1 (written while we led); the new leader's 2@term2 replaces it and
      // commits in the same Ready. Applying "early" would apply while storage still says term 1
      // (the simulator's seed 46 with quiescence: a snapshot at 2 recorded the wrong term).
      const storage = new MemoryStorage();
      storage.append(entries(1, 2, 1));
      storage.setHardState({ term: 1, vote: 1, commit: 1 });
      const termsWhenApplying: number[] = [];
      const one = ready({
        hardState: { term: 2, vote: 0, commit: 2 },
        entries: entries(2, 2, 2),
        committedEntries: entries(2, 2, 2),
      });
      await runReady(dir, storage, one, () => {
        termsWhenApplying.push(storage.term(2));
      });
      assert.deepEqual(termsWhenApplying, [2], 'applied once the replacing entry is in storage');
    }));

  it('applies entries committed in the Ready that brings them only after they are durable', () =>
    withTempDir(async (dir) => {
      const recordsWhenApplying: number[] = [];
      const one = ready({
        hardState: { term: 1, vote: 1, commit: 1 },
        entries: entries(1, 1, 1),
        committedEntries: entries(1, 1, 1),
      });
      await runReady(dir, new MemoryStorage(), one, (wal) => {
        recordsWhenApplying.push(wal.stats().recordsWritten);
      });
      assert.equal(recordsWhenApplying.length, 1);
      assert.ok(recordsWhenApplying[0]! >= 2, 'entry and hard state were written before the apply');
    }));

  it('stops on a WAL failure with that error, while an early apply that also fails stays handled', async () => {
    const storage = new MemoryStorage();
    storage.append(entries(1, 1, 1));
    const node = scriptedNode([
      ready({
        hardState: { term: 1, vote: 1, commit: 1 },
        entries: entries(2, 2, 1),
        committedEntries: entries(1, 1, 1),
      }),
    ]);
    const diskError = new Error('EIO: the WAL write failed');
    const log = {
      persist: () => new Promise<void>((_, reject) => setImmediate(() => reject(diskError))),
      persistCommit: () => {},
    };
    const stateMachine = {
      restoreSnapshot: async () => {},
      applyEntries: () =>
        new Promise<void>((_, reject) => setTimeout(() => reject(new Error('apply failed')), 5)),
    };
    const fatal: Error[] = [];
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      const events = { ...quietEvents, onFatal: (error: Error) => fatal.push(error) };
      const host = new RaftHost(node, storage, log, noSender, stateMachine, events, 1000);
      host.schedule();
      while (fatal.length === 0) await new Promise((resolve) => setTimeout(resolve, 1));
      await new Promise((resolve) => setTimeout(resolve, 20));
      assert.deepEqual(fatal, [diskError]);
      assert.deepEqual(unhandled, []);
      assert.equal(node.advanced, 0, 'a Ready whose entries are not durable is not advanced');
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });
});
