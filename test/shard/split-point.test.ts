// Split-point choice: the most even boundary that keeps every `{…}` tag group whole.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { SplitKeyInvalidError } from '../../src/shard/errors.js';
import { boundaryInsideTagGroup, compareKeys, keysEqual, tagGroup } from '../../src/shard/keys.js';
import { ShardMap } from '../../src/shard/shard-map.js';
import { chooseSplitKey, type WeightedKey } from '../../src/shard/split-point.js';
import { b, braceKeyArb, text } from './helpers.js';

const whole = ShardMap.initial([{ node: 1, role: 'voter' }]).require(1);
const w = (key: string, weight: number): WeightedKey => ({ key: b(key), weight });

test('the split key divides the weight most evenly', () => {
  assert.equal(text(chooseSplitKey(whole, [w('a', 1), w('b', 1), w('c', 1), w('d', 1)])), 'c');
  assert.equal(text(chooseSplitKey(whole, [w('a', 10), w('b', 1), w('c', 1), w('d', 1)])), 'b');
  // Samples arrive in any order and repeat; repeats are summed.
  assert.equal(text(chooseSplitKey(whole, [w('d', 1), w('a', 1), w('a', 5), w('c', 1)])), 'c');
  // Ties go to the smaller key.
  assert.equal(text(chooseSplitKey(whole, [w('a', 1), w('b', 0), w('c', 1)])), 'b');
});

test('no split without two separable keys', () => {
  assert.equal(chooseSplitKey(whole, []), undefined);
  assert.equal(chooseSplitKey(whole, [w('a', 5)]), undefined);
  assert.equal(chooseSplitKey(whole, [w('a', 5), w('a', 5)]), undefined);
  assert.equal(chooseSplitKey(whole, [w('u{1}a', 5), w('u{1}b', 5), w('u{1}c', 5)]), undefined);
});

test('a tag group stays whole: the boundary moves to the group start', () => {
  const samples = [w('a', 1), w('u{1}a', 1), w('u{1}b', 1), w('u{1}c', 1), w('z', 1)];
  assert.equal(text(chooseSplitKey(whole, samples)), 'u{1}');
  const heavyTail = [w('u{1}a', 1), w('u{1}b', 1), w('u{2}a', 1), w('u{2}b', 1), w('u{2}c', 1)];
  assert.equal(text(chooseSplitKey(whole, heavyTail)), 'u{2}');
});

test('samples outside the shard or with bad weights are refused', () => {
  const right = ShardMap.initial([{ node: 1, role: 'voter' }]).split(1, b('m')).right;
  assert.throws(() => chooseSplitKey(right, [w('a', 1), w('n', 1)]), SplitKeyInvalidError);
  assert.throws(() => chooseSplitKey(whole, [w('a', -1), w('n', 1)]), /finite number/);
  assert.throws(() => chooseSplitKey(whole, [w('a', Number.NaN), w('n', 1)]), /finite number/);
});

test('the chosen key is strictly inside the shard, cuts no group, and is the most even allowed cut', () => {
  fc.assert(
    fc.property(
      fc.array(fc.record({ key: braceKeyArb, weight: fc.nat(100) }), { maxLength: 25 }),
      braceKeyArb,
      (samples, boundary) => {
        let map = ShardMap.initial([{ node: 1, role: 'voter' }]);
        if (boundary.length > 0 && !boundaryInsideTagGroup(boundary)) map = map.split(1, boundary).map;
        // Use the samples that fall in the shard that owns the most of them.
        const shard = map.shards.reduce((best, s) =>
          samples.filter((x) => map.shardFor(x.key).id === s.id).length >
          samples.filter((x) => map.shardFor(x.key).id === best.id).length
            ? s
            : best,
        );
        const inShard = samples.filter((x) => map.shardFor(x.key).id === shard.id);
        const key = chooseSplitKey(shard, inShard);
        const units = new Set(inShard.map((x) => text(tagGroup(x.key) ?? x.key)));
        if (units.size < 2) {
          assert.equal(key, undefined);
          return;
        }
        assert.ok(key !== undefined);
        assert.equal(boundaryInsideTagGroup(key), false);
        const { left, right } = map.split(shard.id, key);
        // No two samples of one tag group on different sides.
        for (const x of inShard) {
          for (const y of inShard) {
            const gx = tagGroup(x.key);
            const gy = tagGroup(y.key);
            if (gx !== undefined && gy !== undefined && keysEqual(gx, gy)) {
              assert.equal(compareKeys(x.key, key) < 0, compareKeys(y.key, key) < 0);
            }
          }
        }
        // Both halves hold at least one sample.
        assert.ok(inShard.some((x) => compareKeys(x.key, left.end) < 0));
        assert.ok(inShard.some((x) => compareKeys(x.key, right.start) >= 0));
        // No allowed boundary among the samples' group starts is more even.
        const total = inShard.reduce((sum, x) => sum + x.weight, 0);
        const imbalance = (cut: Uint8Array) =>
          Math.abs(
            total - 2 * inShard.filter((x) => compareKeys(x.key, cut) < 0).reduce((s, x) => s + x.weight, 0),
          );
        for (const x of inShard) {
          const cut = tagGroup(x.key) ?? x.key;
          if (compareKeys(cut, shard.start) <= 0) continue;
          assert.ok(imbalance(key) <= imbalance(cut));
        }
      },
    ),
    { numRuns: 500 },
  );
});
