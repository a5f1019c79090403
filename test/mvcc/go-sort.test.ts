import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { goSort } from '../../src/mvcc/go-sort.js';

describe('goSort (Go sort.Sort order)', () => {
  it('sorts: any input ends ordered by the comparison, a permutation of the input', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 20 }), { maxLength: 600 }), (values) => {
        const items = values.map((v, i) => ({ v, i }));
        goSort(items, (a, b) => a.v < b.v);
        for (let k = 1; k < items.length; k++) assert.ok(items[k - 1]!.v <= items[k]!.v);
        assert.deepEqual(
          items.map((x) => x.i).sort((a, b) => a - b),
          values.map((_, i) => i),
        );
      }),
      { numRuns: 300 },
    );
  });

  it('keeps the input order of ties up to 12 elements (insertion sort), not beyond', () => {
    const small = Array.from({ length: 12 }, (_, i) => ({ v: i % 2, i }));
    goSort(small, (a, b) => a.v < b.v);
    assert.deepEqual(
      small.map((x) => x.i),
      [0, 2, 4, 6, 8, 10, 1, 3, 5, 7, 9, 11],
    );
    // Past 12 elements the partitions move ties out of input order.
    const ties = Array.from({ length: 60 }, (_, i) => ({ v: i % 3, i }));
    goSort(ties, (a, b) => a.v < b.v);
    const firstGroup = ties.filter((x) => x.v === 0).map((x) => x.i);
    assert.notDeepEqual(
      firstGroup,
      [...firstGroup].sort((a, b) => a - b),
    );
  });
});
