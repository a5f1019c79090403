import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type Entry, EntryType } from '../../src/raft/types.js';
import { SimDisk } from '../../src/sim/disk.js';
import { SimulatorError } from '../../src/sim/errors.js';

function ent(index: number, term: number): Entry {
  return { index, term, type: EntryType.Normal, data: new Uint8Array([index]) };
}

const conf = { voters: [1, 2, 3], learners: [], votersOutgoing: [], learnersNext: [], autoLeave: false };

describe('SimDisk', () => {
  it('a bootstrapped disk holds the membership snapshot at index 1, term 1', () => {
    const disk = SimDisk.bootstrap(conf, new Uint8Array(0));
    assert.equal(disk.snapshot.metadata.index, 1);
    assert.deepEqual(disk.hardState, { term: 1, vote: 0, commit: 1 });
    assert.equal(disk.lastIndex(), 1);
  });

  it('persist appends and truncates a conflicting suffix', () => {
    const disk = SimDisk.bootstrap(conf, new Uint8Array(0));
    disk.persist({ term: 2, vote: 1, commit: 1 }, [ent(2, 2), ent(3, 2), ent(4, 2)], undefined);
    disk.persist(undefined, [ent(3, 3)], undefined);
    assert.deepEqual(
      disk.entries.map((x) => [x.index, x.term]),
      [
        [2, 2],
        [3, 3],
      ],
    );
    assert.equal(disk.hardState.vote, 1);
  });

  it('refuses an append that would leave a gap', () => {
    const disk = SimDisk.bootstrap(conf, new Uint8Array(0));
    assert.throws(() => disk.persist(undefined, [ent(5, 2)], undefined), SimulatorError);
  });

  it('an installed snapshot replaces the log', () => {
    const disk = SimDisk.bootstrap(conf, new Uint8Array(0));
    disk.persist(undefined, [ent(2, 2), ent(3, 2)], undefined);
    disk.persist(undefined, [ent(11, 4)], {
      metadata: { index: 10, term: 4, confState: conf },
      data: new Uint8Array(0),
    });
    assert.equal(disk.snapshot.metadata.index, 10);
    assert.deepEqual(
      disk.entriesAfterSnapshot().map((x) => x.index),
      [11],
    );
  });

  it('an application snapshot compacts only up to the compaction index', () => {
    const disk = SimDisk.bootstrap(conf, new Uint8Array(0));
    disk.persist(
      undefined,
      [2, 3, 4, 5, 6].map((i) => ent(i, 2)),
      undefined,
    );
    disk.saveSnapshot({ metadata: { index: 5, term: 2, confState: conf }, data: new Uint8Array(0) }, 3);
    assert.equal(disk.entriesFromIndex, 4);
    assert.deepEqual(
      disk.entriesAfterSnapshot().map((x) => x.index),
      [6],
    );
    assert.throws(
      () =>
        disk.saveSnapshot({ metadata: { index: 4, term: 2, confState: conf }, data: new Uint8Array(0) }, 4),
      SimulatorError,
    );
  });
});
