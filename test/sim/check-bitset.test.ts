import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { LinearizedSet } from '../../src/sim/check/bitset.js';
import { CheckerInvariantError } from '../../src/sim/check/verdict.js';

/** Applies toggles to a LinearizedSet and to a plain Set side by side. */
function build(finiteCount: number, size: number, toggles: readonly number[]): [LinearizedSet, Set<number>] {
  const set = new LinearizedSet(finiteCount, size);
  const reference = new Set<number>();
  for (const raw of toggles) {
    const index = raw % size;
    if (reference.has(index)) {
      set.clear(index);
      reference.delete(index);
    } else {
      set.set(index);
      reference.add(index);
    }
  }
  return [set, reference];
}

const shapeArb = fc
  .record({ finiteCount: fc.integer({ min: 0, max: 140 }), unknownCount: fc.integer({ min: 0, max: 70 }) })
  .filter(({ finiteCount, unknownCount }) => finiteCount + unknownCount > 0);

// Mostly near-prefix sets, like the search produces, plus arbitrary ones.
const togglesArb = (size: number) =>
  fc.oneof(
    fc.array(fc.nat({ max: size * 3 }), { maxLength: 300 }),
    fc.integer({ min: 0, max: size }).map((n) => Array.from({ length: n }, (_, i) => i)),
  );

describe('LinearizedSet (the memo key of the linearizability search)', () => {
  it('has() agrees with a plain set after any sequence of set/clear', () => {
    fc.assert(
      fc.property(
        shapeArb.chain((shape) =>
          fc.tuple(fc.constant(shape), togglesArb(shape.finiteCount + shape.unknownCount)),
        ),
        ([{ finiteCount, unknownCount }, toggles]) => {
          const size = finiteCount + unknownCount;
          const [set, reference] = build(finiteCount, size, toggles);
          for (let i = 0; i < size; i++) assert.equal(set.has(i), reference.has(i));
        },
      ),
      { numRuns: 300 },
    );
  });

  it('snapshots match exactly when the sets are equal, and equal sets hash equally', () => {
    fc.assert(
      fc.property(
        shapeArb.chain((shape) => {
          const size = shape.finiteCount + shape.unknownCount;
          return fc.tuple(fc.constant(shape), togglesArb(size), togglesArb(size));
        }),
        ([{ finiteCount, unknownCount }, togglesA, togglesB]) => {
          const size = finiteCount + unknownCount;
          const [a, refA] = build(finiteCount, size, togglesA);
          const [b, refB] = build(finiteCount, size, togglesB);
          const equal = refA.size === refB.size && [...refA].every((i) => refB.has(i));
          assert.equal(a.matches(b.snapshot()), equal);
          assert.equal(b.matches(a.snapshot()), equal);
          assert.ok(a.matches(a.snapshot()));
          if (equal) assert.equal(a.hash, b.hash);
        },
      ),
      { numRuns: 500 },
    );
  });

  it('keeps snapshots of near-prefix sets small', () => {
    const set = new LinearizedSet(10_000, 10_010);
    for (let i = 0; i < 5_000; i++) set.set(i);
    set.set(5_010);
    set.set(10_003);
    // [lowWord, windowLength, window words..., unknown words...]: a few words, not 313.
    assert.ok(set.snapshot().length <= 6, `snapshot has ${set.snapshot().length} words`);
  });

  it('refuses to set a bit twice or clear a clear bit', () => {
    const set = new LinearizedSet(4, 4);
    set.set(1);
    assert.throws(() => set.set(1), CheckerInvariantError);
    assert.throws(() => set.clear(2), CheckerInvariantError);
    assert.throws(() => set.set(4), CheckerInvariantError);
  });
});
