// The keyspace rules the shard map relies on: key order, etcd's range_end forms and the Redis
// Cluster hash-tag rule that decides which keys a split must keep together.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  alignBoundaryToTagGroup,
  boundaryInsideTagGroup,
  compareEnds,
  compareKeys,
  describeKey,
  hashTag,
  prefixRangeEnd,
  requestInterval,
  tagGroup,
} from '../../src/shard/keys.js';
import { b, braceKeyArb, concatBytes, text } from './helpers.js';

test('prefix range ends follow etcd clientv3 GetPrefixRangeEnd', () => {
  assert.equal(text(prefixRangeEnd(b('abc'))), 'abd');
  assert.equal(text(prefixRangeEnd(b('a\xff'))), 'b');
  assert.equal(text(prefixRangeEnd(b('a\xfe\xff\xff'))), 'a\xff');
  assert.deepEqual(prefixRangeEnd(b('\xff\xff')), Uint8Array.of(0));
  assert.deepEqual(prefixRangeEnd(b('')), Uint8Array.of(0));
});

test('a prefix range end bounds exactly the keys with the prefix', () => {
  fc.assert(
    fc.property(braceKeyArb, braceKeyArb, (prefix, key) => {
      const end = prefixRangeEnd(prefix);
      const interval = requestInterval(prefix, end);
      const inside =
        compareKeys(key, interval.start) >= 0 &&
        (interval.end.length === 0 || compareKeys(key, interval.end) < 0);
      const hasPrefix =
        key.length >= prefix.length && compareKeys(key.subarray(0, prefix.length), prefix) === 0;
      assert.equal(inside, hasPrefix);
    }),
  );
});

test('request intervals follow etcd range_end rules: empty = one key, "\\0" = from key, at or below key = nothing', () => {
  const single = requestInterval(b('k'), b(''));
  assert.equal(text(single.start), 'k');
  assert.equal(text(single.end), 'k\x00');
  assert.equal(single.empty, false);
  const fromKey = requestInterval(b('k'), Uint8Array.of(0));
  assert.equal(fromKey.end.length, 0);
  assert.equal(fromKey.empty, false);
  const all = requestInterval(Uint8Array.of(0), Uint8Array.of(0));
  assert.equal(text(all.start), '\x00');
  assert.equal(all.end.length, 0);
  assert.equal(requestInterval(b('k'), b('l')).empty, false);
  assert.equal(requestInterval(b('k'), b('k')).empty, true);
  assert.equal(requestInterval(b('k'), b('a')).empty, true);
});

test('ends compare with the empty end as +inf', () => {
  assert.equal(compareEnds(b(''), b('')), 0);
  assert.equal(compareEnds(b(''), b('\xff')), 1);
  assert.equal(compareEnds(b('a'), b('')), -1);
  assert.equal(compareEnds(b('a'), b('b')), -1);
});

test('hash tags follow Redis Cluster: first "{", next "}", non-empty between', () => {
  // The examples of the Redis Cluster specification, "Hash tags".
  assert.equal(text(hashTag(b('{user1000}.following'))), 'user1000');
  assert.equal(text(hashTag(b('{user1000}.followers'))), 'user1000');
  assert.equal(text(hashTag(b('foo{}{bar}'))), undefined);
  assert.equal(text(hashTag(b('foo{{bar}}zap'))), '{bar');
  assert.equal(text(hashTag(b('foo{bar}{zap}'))), 'bar');
  assert.equal(text(hashTag(b('foo'))), undefined);
  assert.equal(text(hashTag(b('foo{bar'))), undefined);
  assert.equal(text(hashTag(b('foo}bar{'))), undefined);
  assert.equal(text(hashTag(b('}{x}'))), 'x');
});

test('a tag group is the key up to its closing brace', () => {
  assert.equal(text(tagGroup(b('user{42}/name'))), 'user{42}');
  assert.equal(text(tagGroup(b('user{42}'))), 'user{42}');
  assert.equal(text(tagGroup(b('{42}'))), '{42}');
  assert.equal(text(tagGroup(b('user{}x'))), undefined);
  assert.equal(text(tagGroup(b('plain'))), undefined);
});

test('boundaries inside a group are refused and aligned to the group start', () => {
  assert.equal(boundaryInsideTagGroup(b('user{42}/name')), true);
  assert.equal(boundaryInsideTagGroup(b('user{42}')), false);
  assert.equal(boundaryInsideTagGroup(b('user{42')), false);
  assert.equal(boundaryInsideTagGroup(b('user{}/x')), false);
  assert.equal(boundaryInsideTagGroup(b('plain')), false);
  assert.equal(text(alignBoundaryToTagGroup(b('user{42}/name'))), 'user{42}');
  assert.equal(text(alignBoundaryToTagGroup(b('plain'))), 'plain');
});

test('every key of a tag group has the same tag, and starts with the group', () => {
  fc.assert(
    fc.property(braceKeyArb, (key) => {
      const group = tagGroup(key);
      if (group === undefined) {
        assert.equal(hashTag(key), undefined);
        return;
      }
      assert.deepEqual(hashTag(group), hashTag(key));
      assert.equal(compareKeys(key.subarray(0, group.length), group), 0);
    }),
  );
});

test('a boundary that is not inside a tag group never separates two keys of one group', () => {
  fc.assert(
    fc.property(braceKeyArb, braceKeyArb, braceKeyArb, (boundary, x, suffix) => {
      const group = tagGroup(x);
      if (group === undefined || boundaryInsideTagGroup(boundary)) return;
      const y = concatBytes(group, suffix);
      assert.deepEqual(tagGroup(y), group);
      assert.equal(compareKeys(x, boundary) < 0, compareKeys(y, boundary) < 0);
    }),
  );
  // The aligned boundary is always allowed and never above the key.
  fc.assert(
    fc.property(braceKeyArb, (key) => {
      const aligned = alignBoundaryToTagGroup(key);
      assert.equal(boundaryInsideTagGroup(aligned), false);
      assert.ok(compareKeys(aligned, key) <= 0);
    }),
  );
});

test('keys are described readably in messages', () => {
  assert.equal(describeKey(b('a/b')), '"a/b"');
  assert.equal(describeKey(Uint8Array.of(0, 0xff, 0x22)), '"\\x00\\xff\\x22"');
});
