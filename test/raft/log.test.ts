import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type Entry, EntryType, MemoryStorage } from '../../src/raft/index.js';
import { RaftLog } from '../../src/raft/log.js';
import { Inflights } from '../../src/raft/progress.js';

const ent = (index: number, term: number): Entry => ({
  index,
  term,
  type: EntryType.Normal,
  data: new Uint8Array(0),
});

/** A log whose durable part holds the given terms at indices 1.. (storage bootstrapped empty). */
function logWithTerms(terms: number[]): RaftLog {
  const storage = new MemoryStorage();
  storage.append(terms.map((t, i) => ent(i + 1, t)));
  return new RaftLog(storage);
}

test('findConflict: first index whose term differs, or the first new index, or 0', () => {
  const log = logWithTerms([1, 2, 3]);
  assert.equal(log.findConflict([]), 0);
  assert.equal(log.findConflict([ent(1, 1), ent(2, 2), ent(3, 3)]), 0);
  assert.equal(log.findConflict([ent(2, 2), ent(3, 3), ent(4, 4)]), 4);
  assert.equal(log.findConflict([ent(2, 2), ent(3, 4)]), 3);
  assert.equal(log.findConflict([ent(1, 4), ent(2, 4)]), 1);
});

test('findConflictByTerm: the last index of a term ≤ the given term, at or before index', () => {
  // terms by index: 1:1 2:1 3:2 4:2 5:5 6:5
  const log = logWithTerms([1, 1, 2, 2, 5, 5]);
  const cases: [number, number, number, number][] = [
    // [index, term, wantIndex, wantTerm]
    [6, 5, 6, 5],
    [6, 4, 4, 2],
    [6, 2, 4, 2],
    [6, 1, 2, 1],
    [6, 0, 0, 0],
    [3, 1, 2, 1],
    [4, 3, 4, 2],
  ];
  for (const [index, term, wi, wt] of cases) {
    assert.deepEqual(log.findConflictByTerm(index, term), { index: wi, term: wt }, `(${index}, ${term})`);
  }
});

test('maybeAppend: a mismatched previous entry is refused; a conflicting suffix is replaced', () => {
  const log = logWithTerms([1, 1, 2]);
  assert.equal(log.maybeAppend(3, 1, 0, [ent(4, 3)]), -1, 'prev term mismatch');
  assert.equal(log.maybeAppend(2, 1, 3, [ent(3, 3), ent(4, 3)]), 4);
  assert.equal(log.term(3), 3);
  assert.equal(log.lastIndex(), 4);
  assert.equal(log.committed, 3);
  assert.equal(log.stableLastIndex(), 2, 'the replaced entry 3 is no longer durable');
});

test('maybeAppend: overwriting a committed entry is an invariant violation', () => {
  const log = logWithTerms([1, 1, 2]);
  log.commitTo(3);
  assert.throws(() => log.maybeAppend(2, 1, 3, [ent(3, 9)]), { code: 'RAFT_INVARIANT' });
});

test('commitTo beyond the last index and appliedTo beyond commit throw', () => {
  const log = logWithTerms([1, 1]);
  assert.throws(() => log.commitTo(5), /beyond the last index/);
  log.commitTo(2);
  log.commitTo(1);
  assert.equal(log.committed, 2, 'commit never goes back');
  assert.throws(() => log.appliedTo(3), /applied 3 is beyond committed 2/);
});

test('slice spans storage and unstable entries and honours maxBytes', () => {
  const log = logWithTerms([1, 1, 1]);
  log.append([ent(4, 2), ent(5, 2)]);
  assert.deepEqual(
    log.slice(2, 6, Number.POSITIVE_INFINITY).map((e) => e.index),
    [2, 3, 4, 5],
  );
  assert.deepEqual(
    log.slice(3, 6, 50).map((e) => e.index),
    [3, 4],
  );
  assert.deepEqual(
    log.slice(4, 6, 1).map((e) => e.index),
    [4],
  );
});

test('stableTo ignores an acknowledgement for an entry that was replaced meanwhile', () => {
  const log = logWithTerms([1]);
  log.append([ent(2, 1), ent(3, 1)]);
  log.append([ent(3, 2)]);
  log.unstable.stableTo(3, 1);
  assert.equal(log.stableLastIndex(), 1);
  log.unstable.stableTo(3, 2);
  assert.equal(log.stableLastIndex(), 3);
});

test('inflights: bounded by count and bytes, freed in order', () => {
  const inf = new Inflights(3, 100);
  inf.add(1, 10);
  inf.add(2, 10);
  assert.equal(inf.full(), false);
  inf.add(3, 10);
  assert.equal(inf.full(), true, 'count bound');
  inf.freeLE(2);
  assert.equal(inf.count, 1);
  assert.equal(inf.bytes, 10);
  inf.add(4, 95);
  assert.equal(inf.full(), true, 'byte bound');
  inf.freeFirst();
  assert.equal(inf.count, 1);
  assert.throws(() => {
    inf.add(5, 1);
    inf.add(6, 1);
    inf.add(7, 1);
  }, /overflow/);
});
