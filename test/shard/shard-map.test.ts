// The shard map: lookups by key and by etcd range, splits and merges with epochs, the stale-route
// check, and the invariant that the map covers the keyspace exactly once, in order.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  ConfEpochMismatchError,
  MergeInvalidError,
  ShardMapInvariantError,
  SplitKeyInvalidError,
  StaleEpochError,
} from '../../src/shard/errors.js';
import {
  alignBoundaryToTagGroup,
  compareKeys,
  KEYSPACE_EDGE,
  requestInterval,
} from '../../src/shard/keys.js';
import { type ShardDescriptor, ShardMap } from '../../src/shard/shard-map.js';
import type { Replica } from '../../src/shard/types.js';
import { b, braceKeyArb, text } from './helpers.js';

const voters = (...nodes: number[]): Replica[] => nodes.map((node) => ({ node, role: 'voter' }));
const R = voters(1, 2, 3);

/** A map with shards [, c) [c, m) [m, t) [t, ). */
function fourShards(): ShardMap {
  let map = ShardMap.initial(R);
  for (const key of ['m', 'c', 't']) map = map.split(map.shardFor(b(key)).id, b(key)).map;
  return map;
}

const ids = (shards: readonly ShardDescriptor[]): number[] => shards.map((s) => s.id);

test('a new cluster has one shard over the whole keyspace', () => {
  const map = ShardMap.initial(R);
  assert.equal(map.shards.length, 1);
  const [only] = map.shards;
  assert.equal(only!.start.length, 0);
  assert.equal(only!.end.length, 0);
  assert.equal(only!.epoch, 1);
  assert.equal(only!.confEpoch, 1);
  assert.equal(map.shardFor(b('')).id, 1);
  assert.equal(map.shardFor(b('\xff\xff\xff')).id, 1);
  assert.deepEqual(ids(map.shardsForRequest(Uint8Array.of(0), Uint8Array.of(0))), [1]);
});

test('a split keeps the left id, gives the right a new id, and bumps both epochs', () => {
  const map = ShardMap.initial(R);
  const { map: next, left, right } = map.split(1, b('m'));
  assert.equal(left.id, 1);
  assert.equal(right.id, 2);
  assert.equal(left.epoch, 2);
  assert.equal(right.epoch, 2);
  assert.equal(left.confEpoch, 1);
  assert.deepEqual(right.replicas, R);
  assert.equal(text(left.end), 'm');
  assert.equal(text(right.start), 'm');
  assert.equal(next.nextShardId, 3);
  assert.equal(next.shardFor(b('l\xff')).id, 1);
  assert.equal(next.shardFor(b('m')).id, 2);
  // The old map value is untouched.
  assert.equal(map.shards.length, 1);
});

test('a split key must lie strictly inside the shard', () => {
  const map = ShardMap.initial(R).split(1, b('m')).map;
  assert.throws(() => map.split(1, b('m')), SplitKeyInvalidError);
  assert.throws(() => map.split(1, b('z')), SplitKeyInvalidError);
  assert.throws(() => map.split(2, b('m')), SplitKeyInvalidError);
  assert.throws(() => map.split(1, b('')), SplitKeyInvalidError);
  assert.throws(() => map.split(9, b('a')), /shard 9 is not in the shard map/);
});

test('a split never cuts a {…} hash-tag group', () => {
  const map = ShardMap.initial(R);
  assert.throws(() => map.split(1, b('user{42}/name')), /inside a \{…\} hash-tag group/);
  const aligned = alignBoundaryToTagGroup(b('user{42}/name'));
  const { right } = map.split(1, aligned);
  assert.equal(text(right.start), 'user{42}');
  // Empty tags do not count, as in Redis.
  assert.equal(text(map.split(1, b('user{}/name')).right.start), 'user{}/name');
});

test('a split with an expected epoch is refused when the shard changed', () => {
  const map = ShardMap.initial(R).split(1, b('m')).map;
  assert.throws(() => map.split(1, b('c'), 1), StaleEpochError);
  assert.equal(map.split(1, b('c'), 2).left.epoch, 3);
});

test('ranges touch the shards they overlap, in key order, by etcd range_end rules', () => {
  const map = fourShards();
  const [s1, s2, s3, s4] = ids(map.shards);
  assert.deepEqual(ids(map.shardsForRequest(b('d'), b(''))), [s2]);
  assert.deepEqual(ids(map.shardsForRequest(b('c'), b(''))), [s2]);
  assert.deepEqual(ids(map.shardsForRequest(b('a'), b('c'))), [s1]);
  assert.deepEqual(ids(map.shardsForRequest(b('a'), b('c\x00'))), [s1, s2]);
  assert.deepEqual(ids(map.shardsForRequest(b('d'), Uint8Array.of(0))), [s2, s3, s4]);
  assert.deepEqual(ids(map.shardsForRequest(Uint8Array.of(0), Uint8Array.of(0))), [s1, s2, s3, s4]);
  assert.deepEqual(ids(map.shardsForRequest(b('n'), b('a'))), []);
  assert.deepEqual(ids(map.shardsForRequest(b('n'), b('n'))), []);
  // A prefix: "l" to "m" ends exactly at a boundary, so it stays in one shard.
  assert.deepEqual(ids(map.shardsForRequest(b('l'), b('m'))), [s2]);
});

test('pieces cut a request at shard boundaries', () => {
  const map = fourShards();
  const pieces = map.piecesForRequest(b('b'), b('n')).map((p) => [p.shard.id, text(p.start), text(p.end)]);
  assert.deepEqual(pieces, [
    [map.shards[0]!.id, 'b', 'c'],
    [map.shards[1]!.id, 'c', 'm'],
    [map.shards[2]!.id, 'm', 'n'],
  ]);
  const open = map.piecesForRequest(b('s'), Uint8Array.of(0)).map((p) => [text(p.start), text(p.end)]);
  assert.deepEqual(open, [
    ['s', 't'],
    ['t', ''],
  ]);
});

test('a request routed at an old epoch is refused and told the current owners', () => {
  const before = ShardMap.initial(R);
  const route = { shardId: 1, epoch: 1 };
  before.checkRoute(route, b('x'), b(''));
  const after = before.split(1, b('m')).map;
  assert.throws(
    () => after.checkRoute(route, b('x'), b('')),
    (error: unknown) => {
      assert.ok(error instanceof StaleEpochError);
      assert.equal(error.code, 'stale-epoch');
      assert.deepEqual(error.current, [{ id: 2, epoch: 2 }]);
      return true;
    },
  );
  after.checkRoute({ shardId: 2, epoch: 2 }, b('x'), b(''));
  // Right epoch, but the keys are not all in the shard.
  assert.throws(() => after.checkRoute({ shardId: 1, epoch: 2 }, b('a'), b('z')), /not all in shard 1/);
  after.checkRoute({ shardId: 1, epoch: 2 }, b('a'), b('m'));
  // An admin request carries the conf epoch too.
  assert.throws(
    () => after.checkRoute({ shardId: 1, epoch: 2, confEpoch: 7 }, b('a'), b('')),
    /conf epoch 1/,
  );
  // A merged-away shard.
  const merged = after.merge(1, 2).map;
  assert.throws(() => merged.checkRoute({ shardId: 2, epoch: 2 }, b('x'), b('')), /no longer exists/);
});

test('a merge joins neighbours with equal replicas and retires the right id', () => {
  const map = fourShards();
  const [s1, s2, s3] = map.shards;
  const { map: next, merged } = map.merge(s2!.id, s3!.id);
  assert.equal(merged.id, s2!.id);
  assert.equal(text(merged.start), 'c');
  assert.equal(text(merged.end), 't');
  assert.ok(merged.epoch > s2!.epoch && merged.epoch > s3!.epoch);
  assert.equal(next.get(s3!.id), undefined);
  assert.equal(next.nextShardId, map.nextShardId);
  assert.throws(() => map.merge(s1!.id, s3!.id), MergeInvalidError);
  const moved = map.withReplicas(s3!.id, voters(1, 2, 4), s3!.confEpoch);
  assert.throws(() => moved.merge(s2!.id, s3!.id), /different replicas/);
});

test('replica changes are a compare-and-set on the conf epoch', () => {
  const map = ShardMap.initial(R).withLeaderHint(1, 3);
  const next = map.withReplicas(1, [...voters(1, 2, 3), { node: 4, role: 'learner' }], 1);
  assert.equal(next.require(1).confEpoch, 2);
  assert.equal(next.require(1).epoch, 1);
  assert.equal(next.require(1).leaderHint, 3);
  assert.throws(() => next.withReplicas(1, voters(1, 2, 4), 1), ConfEpochMismatchError);
  const without = next.withReplicas(1, voters(1, 2, 4), 2);
  assert.equal(without.require(1).leaderHint, undefined);
  assert.throws(() => without.withLeaderHint(1, 3), /not a voter/);
});

test('maps that do not cover the keyspace exactly once are refused', () => {
  const shard = (id: number, start: string, end: string): ShardDescriptor => ({
    id,
    start: b(start),
    end: b(end),
    epoch: 1,
    confEpoch: 1,
    replicas: R,
    leaderHint: undefined,
  });
  assert.throws(() => ShardMap.fromShards([], 1), ShardMapInvariantError);
  assert.throws(() => ShardMap.fromShards([shard(1, 'a', '')], 2), /start at the empty key/);
  assert.throws(() => ShardMap.fromShards([shard(1, '', 'm')], 2), /end at \+inf/);
  assert.throws(() => ShardMap.fromShards([shard(1, '', 'm'), shard(2, 'n', '')], 3), /gap or overlap/);
  assert.throws(() => ShardMap.fromShards([shard(1, '', 'n'), shard(2, 'm', '')], 3), /gap or overlap/);
  assert.throws(() => ShardMap.fromShards([shard(1, '', 'm'), shard(1, 'm', '')], 3), /appears twice/);
  assert.throws(() => ShardMap.fromShards([shard(1, '', 'm'), shard(2, 'm', '')], 2), /below 2/);
  assert.throws(() => ShardMap.fromShards([shard(1, '', 'a{x}b'), shard(2, 'a{x}b', '')], 3), /hash-tag/);
  assert.throws(
    () => ShardMap.fromShards([shard(1, '', 'm'), shard(2, 'm', 'm'), shard(3, 'm', '')], 4),
    /empty/,
  );
  const twice = { ...shard(1, '', ''), replicas: [...R, { node: 1, role: 'learner' as const }] };
  assert.throws(() => ShardMap.fromShards([twice], 2), /node twice/);
});

type Action = { kind: 'split'; key: Uint8Array } | { kind: 'merge'; at: number };
const actionArb: fc.Arbitrary<Action> = fc.oneof(
  { weight: 3, arbitrary: braceKeyArb.map((key): Action => ({ kind: 'split', key })) },
  { weight: 1, arbitrary: fc.nat(20).map((at): Action => ({ kind: 'merge', at })) },
);

/** The brute-force owner of a key: the one shard whose range contains it. */
function owners(map: ShardMap, key: Uint8Array): number[] {
  return map.shards
    .filter((s) => compareKeys(key, s.start) >= 0 && (s.end.length === 0 || compareKeys(key, s.end) < 0))
    .map((s) => s.id);
}

function applyAction(map: ShardMap, action: Action): ShardMap {
  if (action.kind === 'split') {
    const key = alignBoundaryToTagGroup(action.key);
    const shard = map.shardFor(key);
    if (compareKeys(key, shard.start) === 0) return map;
    return map.split(shard.id, key, shard.epoch).map;
  }
  if (map.shards.length < 2) return map;
  const index = action.at % (map.shards.length - 1);
  return map.merge(map.shards[index]!.id, map.shards[index + 1]!.id).map;
}

test('after any splits and merges the map covers the keyspace exactly once, in order', () => {
  fc.assert(
    fc.property(
      fc.array(actionArb, { maxLength: 30 }),
      fc.array(braceKeyArb, { maxLength: 20 }),
      (actions, probes) => {
        let map = ShardMap.initial(R);
        const epochs = new Map<number, number>([[1, 1]]);
        for (const action of actions) {
          map = applyAction(map, action);
          // Epochs of a surviving id never go back; ids only grow.
          for (const shard of map.shards) {
            assert.ok(shard.epoch >= (epochs.get(shard.id) ?? 1));
            epochs.set(shard.id, shard.epoch);
          }
        }
        assert.equal(map.shards[0]!.start.length, 0);
        assert.equal(map.shards[map.shards.length - 1]!.end.length, 0);
        for (let i = 1; i < map.shards.length; i++) {
          assert.equal(compareKeys(map.shards[i - 1]!.end, map.shards[i]!.start), 0);
          assert.ok(
            compareKeys(map.shards[i]!.start, map.shards[i]!.end) < 0 || map.shards[i]!.end.length === 0,
          );
        }
        for (const key of probes) {
          assert.deepEqual(owners(map, key), [map.shardFor(key).id]);
        }
      },
    ),
    { numRuns: 300 },
  );
});

test('range lookups return exactly the shards the range overlaps, in key order', () => {
  fc.assert(
    fc.property(
      fc.array(braceKeyArb, { maxLength: 12 }),
      braceKeyArb,
      fc.oneof(braceKeyArb, fc.constant(Uint8Array.of(0)), fc.constant(KEYSPACE_EDGE)),
      (splits, key, rangeEnd) => {
        let map = ShardMap.initial(R);
        for (const split of splits) map = applyAction(map, { kind: 'split', key: split });
        const interval = requestInterval(key, rangeEnd);
        const expected = interval.empty
          ? []
          : map.shards
              .filter(
                (s) =>
                  (s.end.length === 0 || compareKeys(interval.start, s.end) < 0) &&
                  (interval.end.length === 0 || compareKeys(s.start, interval.end) < 0),
              )
              .map((s) => s.id);
        assert.deepEqual(ids(map.shardsForRequest(key, rangeEnd)), expected);
        const pieces = map.piecesForRequest(key, rangeEnd);
        assert.deepEqual(
          pieces.map((p) => p.shard.id),
          expected,
        );
        // Pieces tile the request's interval with no gap or overlap.
        if (pieces.length > 0) {
          assert.equal(compareKeys(pieces[0]!.start, interval.start), 0);
          assert.equal(compareKeys(pieces[pieces.length - 1]!.end, interval.end), 0);
          for (let i = 1; i < pieces.length; i++)
            assert.equal(compareKeys(pieces[i - 1]!.end, pieces[i]!.start), 0);
        }
      },
    ),
    { numRuns: 300 },
  );
});

test('a route taken before a split or merge is refused after it, for every key it covered', () => {
  fc.assert(
    fc.property(fc.array(actionArb, { minLength: 1, maxLength: 10 }), braceKeyArb, (actions, key) => {
      let map = ShardMap.initial(R);
      for (const action of actions.slice(0, -1)) map = applyAction(map, action);
      const shard = map.shardFor(key);
      const next = applyAction(map, actions[actions.length - 1]!);
      const now = next.shardFor(key);
      const unchanged = now.id === shard.id && now.epoch === shard.epoch;
      if (unchanged) {
        next.checkRoute({ shardId: shard.id, epoch: shard.epoch }, key, KEYSPACE_EDGE);
      } else {
        assert.throws(
          () => next.checkRoute({ shardId: shard.id, epoch: shard.epoch }, key, KEYSPACE_EDGE),
          StaleEpochError,
        );
      }
    }),
    { numRuns: 300 },
  );
});

test('a split copies its key: changing the caller’s Buffer afterwards does not move the boundary', () => {
  const key = Buffer.from('m');
  const { map } = ShardMap.initial(R).split(1, key);
  key[0] = 0x7a;
  assert.equal(text(map.require(2).start), 'm');
  assert.equal(text(map.require(1).end), 'm');
});
