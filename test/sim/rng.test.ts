import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SimRng } from '../../src/sim/rng.js';

function draw(rng: SimRng, n: number): number[] {
  return Array.from({ length: n }, () => rng.nextU32());
}

describe('SimRng', () => {
  it('one seed reproduces the same stream', () => {
    assert.deepEqual(draw(new SimRng(42), 100), draw(new SimRng(42), 100));
  });

  it('different seeds and different streams give different sequences', () => {
    assert.notDeepEqual(draw(new SimRng(42), 20), draw(new SimRng(43), 20));
    assert.notDeepEqual(draw(new SimRng(42, 1), 20), draw(new SimRng(42, 2), 20));
  });

  it('nextInt stays in [0, bound) and covers every value', () => {
    const rng = new SimRng(7);
    const seen = new Array<number>(10).fill(0);
    for (let i = 0; i < 10_000; i++) {
      const x = rng.nextInt(10);
      assert.ok(Number.isInteger(x) && x >= 0 && x < 10);
      seen[x]!++;
    }
    // Uniform: each bucket within 20% of the expected 1000.
    for (const count of seen) assert.ok(count > 800 && count < 1200, `bucket count ${count}`);
  });

  it('between is inclusive at both ends', () => {
    const rng = new SimRng(9);
    const values = new Set<number>();
    for (let i = 0; i < 1000; i++) values.add(rng.between(3, 5));
    assert.deepEqual([...values].sort(), [3, 4, 5]);
  });

  it('nextInt rejects bounds that are not positive integers', () => {
    const rng = new SimRng(1);
    assert.throws(() => rng.nextInt(0), RangeError);
    assert.throws(() => rng.nextInt(1.5), RangeError);
    assert.throws(() => rng.nextInt(-3), RangeError);
  });

  it('nextFloat is in [0, 1) and chance honours its probability', () => {
    const rng = new SimRng(11);
    let hits = 0;
    for (let i = 0; i < 10_000; i++) {
      const f = rng.nextFloat();
      assert.ok(f >= 0 && f < 1);
      if (rng.chance(0.25)) hits++;
    }
    assert.ok(hits > 2200 && hits < 2800, `hits ${hits}`);
    assert.equal(rng.chance(0), false);
  });

  it('forked generators are deterministic given the parent seed', () => {
    const a = new SimRng(5).fork(3);
    const b = new SimRng(5).fork(3);
    assert.deepEqual(draw(a, 10), draw(b, 10));
  });
});
