import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SharedWal, type SnapshotFiles } from '../../src/node/group-log.js';
import { MemoryStorage } from '../../src/raft/memory-storage.js';
import type { HardState, Snapshot } from '../../src/raft/types.js';
import { RaftHost } from '../../src/replica/raft-host.js';
import { WalFailedError } from '../../src/storage/errors.js';
import { defaultWalIo, type WalIo } from '../../src/storage/wal.js';
import { noSender, quietEvents, ready, scriptedNode } from '../replica/host-fixtures.js';
import { entries, withTempDir } from '../storage/helpers.js';

/** WAL io whose fdatasyncs wait while the gate is held, and whose writes fail once `crash` is set. */
class DiskGate {
  held = false;
  crash = false;
  private waiting: Array<() => void> = [];
  readonly io: Partial<WalIo> = {
    datasync: async (fh) => {
      if (this.held) await new Promise<void>((resolve) => this.waiting.push(resolve));
      return defaultWalIo.datasync(fh);
    },
    write: async (fh, data, position) => {
      if (this.crash) throw new Error('simulated crash: the write never reached the disk');
      return defaultWalIo.write(fh, data, position);
    },
  };

  release(): void {
    this.held = false;
    for (const resolve of this.waiting.splice(0)) resolve();
  }
}

function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

function hardState(group: number): HardState {
  return { term: group + 1, vote: 1, commit: group };
}

function snapshotAt(index: number, term: number): Snapshot {
  const confState = { voters: [1], learners: [], votersOutgoing: [], learnersNext: [], autoLeave: false };
  return { metadata: { index, term, confState }, data: Uint8Array.of(index) };
}

describe('GroupLog over one shared WAL', () => {
  it('N groups persisting in one turn share one write and one fdatasync; each resolves only after it', () =>
    withTempDir(async (dir) => {
      const gate = new DiskGate();
      const shared = await SharedWal.open(dir, { io: gate.io });
      const groupCount = 20;
      const logs = Array.from({ length: groupCount }, (_, g) => shared.groupLog(g));
      const before = shared.stats();
      gate.held = true;
      const resolved: number[] = [];
      const persists = logs.map((log, g) =>
        log.persist({ hardState: hardState(g), entries: entries(1, 3, g + 1) }).then(() => resolved.push(g)),
      );
      while (shared.stats().datasyncs === before.datasyncs) await nextTurn();
      for (let i = 0; i < 5; i++) await nextTurn();
      assert.deepEqual(resolved, [], 'no persist resolves while the fdatasync is in flight');
      gate.release();
      await Promise.all(persists);
      const after = shared.stats();
      assert.equal(after.datasyncs - before.datasyncs, 1, 'one fdatasync for all groups');
      assert.equal(after.writes - before.writes, 1, 'one write for all groups');
      assert.equal(after.recordsWritten - before.recordsWritten, 2 * groupCount);
      assert.equal(resolved.length, groupCount);
      await shared.close();
    }));

  it('RaftHosts of N groups whose Readies run in one turn share one fdatasync', () =>
    withTempDir(async (dir) => {
      const shared = await SharedWal.open(dir);
      const before = shared.stats();
      const groupCount = 10;
      const nodes = Array.from({ length: groupCount }, (_, g) => {
        const node = scriptedNode([ready({ hardState: hardState(g), entries: entries(1, 2, g + 1) })]);
        const stateMachine = { restoreSnapshot: async () => {}, applyEntries: async () => {} };
        const log = shared.groupLog(g);
        const host = new RaftHost(node, new MemoryStorage(), log, noSender, stateMachine, quietEvents, 1000);
        host.schedule();
        return node;
      });
      while (nodes.some((node) => node.advanced === 0)) await nextTurn();
      assert.equal(shared.stats().datasyncs - before.datasyncs, 1);
      await shared.close();
    }));

  it('after a crash each group recovers its own hard state, entries and snapshot marker', () =>
    withTempDir(async (dir) => {
      const gate = new DiskGate();
      const saved: number[] = [];
      const files: SnapshotFiles = {
        save: async (snapshot) => {
          saved.push(snapshot.metadata.index);
        },
      };
      let shared = await SharedWal.open(dir, { io: gate.io });
      const logs = [0, 1, 2, 3].map((g) => shared.groupLog(g, files));
      await Promise.all([
        logs[0]!.persist({ hardState: hardState(0), entries: entries(1, 5, 1) }),
        logs[1]!.persist({ hardState: hardState(1), entries: entries(1, 2, 2) }),
        logs[2]!.persist({ hardState: hardState(2), entries: entries(4, 6, 3), snapshot: snapshotAt(3, 3) }),
        logs[3]!.persist({ hardState: hardState(3), entries: [] }),
      ]);
      assert.deepEqual(saved, [3], 'the snapshot data was saved before its marker');
      // Acknowledged above; what follows is lost in the crash and must not show up.
      logs[1]!.persistCommit({ term: 2, vote: 1, commit: 2 });
      gate.crash = true;
      const lost = Promise.all([
        logs[0]!.persist({ hardState: { term: 9, vote: 1, commit: 5 }, entries: entries(6, 8, 9) }),
        logs[3]!.persist({ hardState: hardState(3), entries: entries(1, 1, 4) }),
      ]);
      await assert.rejects(lost, WalFailedError);
      await assert.rejects(shared.close(), WalFailedError);

      shared = await SharedWal.open(dir);
      assert.deepEqual(shared.groups(), [0, 1, 2, 3]);
      const indexes = (g: number): Array<[number, number]> =>
        shared.recovered(g).entries.map((e) => [e.index, e.term]);
      assert.deepEqual(shared.recovered(0).hardState, hardState(0));
      assert.deepEqual(indexes(0), [
        [1, 1],
        [2, 1],
        [3, 1],
        [4, 1],
        [5, 1],
      ]);
      assert.deepEqual(shared.recovered(1).hardState, hardState(1));
      assert.deepEqual(indexes(1), [
        [1, 2],
        [2, 2],
      ]);
      assert.equal(shared.recovered(1).snapshot, null);
      assert.equal(shared.recovered(2).snapshot?.index, 3);
      assert.deepEqual(indexes(2), [
        [4, 3],
        [5, 3],
        [6, 3],
      ]);
      assert.deepEqual(shared.recovered(3).hardState, hardState(3));
      assert.deepEqual(indexes(3), []);
      assert.deepEqual(shared.recovered(7), { groupId: 7, hardState: null, snapshot: null, entries: [] });
      await shared.close();
    }));

  it('releases per group: a segment goes only when every group that wrote to it released it', () =>
    withTempDir(async (dir) => {
      let shared = await SharedWal.open(dir, { segmentBytes: 4096 });
      const a = shared.groupLog(1);
      const b = shared.groupLog(2);
      for (let i = 1; i <= 40; i++) {
        await Promise.all([
          a.persist({ hardState: { term: 1, vote: 1, commit: i }, entries: entries(i, i, 1) }),
          b.persist({ hardState: { term: 1, vote: 2, commit: i }, entries: entries(i, i, 1) }),
        ]);
      }
      const segments = shared.wal.segmentSeqs().length;
      assert.ok(segments >= 4, `entries spread over ${segments} segments`);
      await a.persist({ entries: [], snapshot: snapshotAt(40, 1) });
      assert.equal(await a.releaseTo(40), 0, 'group 2 still needs every segment');
      await b.persist({ entries: [], snapshot: snapshotAt(30, 1) });
      const deleted = await b.releaseTo(30);
      assert.ok(deleted > 0, 'both groups released the old segments');
      assert.equal(shared.wal.segmentSeqs().length, segments - deleted);
      await shared.close();

      shared = await SharedWal.open(dir);
      assert.equal(shared.recovered(1).snapshot?.index, 40);
      assert.deepEqual(shared.recovered(1).entries, []);
      assert.deepEqual(shared.recovered(1).hardState, { term: 1, vote: 1, commit: 40 });
      assert.equal(shared.recovered(2).snapshot?.index, 30);
      assert.deepEqual(
        shared.recovered(2).entries.map((e) => e.index),
        [31, 32, 33, 34, 35, 36, 37, 38, 39, 40],
      );
      assert.deepEqual(shared.recovered(2).hardState, { term: 1, vote: 2, commit: 40 });
      await shared.close();
    }));

  it('gives each group one log', () =>
    withTempDir(async (dir) => {
      const shared = await SharedWal.open(dir);
      shared.groupLog(5);
      assert.throws(() => shared.groupLog(5), /group 5 already has a log/);
      await shared.close();
    }));
});
