// Placement: rendezvous hashing with bounded load, distinct hosts, zone spread, pins, determinism,
// and the ~1/N movement when a node joins or leaves.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { PlacementInvalidError } from '../../src/shard/errors.js';
import { murmur3_32 } from '../../src/shard/hash.js';
import {
  type PlacementNode,
  type PlacementResult,
  placeReplicas,
  rendezvousScore,
} from '../../src/shard/placement.js';

const utf8 = (s: string) => new TextEncoder().encode(s);
const range = (from: number, count: number) => Array.from({ length: count }, (_, i) => from + i);
const plainNodes = (ids: readonly number[]): PlacementNode[] => ids.map((id) => ({ id }));

/** Fraction of the replicas of `after` that are not where `before` had them. */
function movedFraction(before: PlacementResult, after: PlacementResult): number {
  let moved = 0;
  let total = 0;
  for (const [shard, nodes] of after.replicas) {
    const old = new Set(before.replicas.get(shard));
    total += nodes.length;
    moved += nodes.filter((n) => !old.has(n)).length;
  }
  return total === 0 ? 0 : moved / total;
}

test('MurmurHash3 x86_32 matches the reference vectors', () => {
  assert.equal(murmur3_32(utf8(''), 0), 0);
  assert.equal(murmur3_32(utf8(''), 1), 0x514e28b7);
  assert.equal(murmur3_32(utf8(''), 0xffffffff), 0x81f16f39);
  assert.equal(murmur3_32(utf8('test'), 0), 0xba6bd213);
  assert.equal(murmur3_32(utf8('hello'), 0), 0x248bfa47);
  assert.equal(murmur3_32(utf8('Hello, world!'), 1234), 0xfaf6cdb3);
  assert.equal(murmur3_32(utf8('The quick brown fox jumps over the lazy dog'), 0), 0x2e4ff723);
  assert.equal(rendezvousScore(1, 2), murmur3_32(utf8('1/2')));
});

test('each shard gets replicationFactor distinct nodes, best score first when there is room', () => {
  const result = placeReplicas({
    nodes: plainNodes(range(1, 5)),
    shards: range(1, 10),
    replicationFactor: 3,
  });
  assert.equal(result.replicas.size, 10);
  for (const nodes of result.replicas.values()) {
    assert.equal(nodes.length, 3);
    assert.equal(new Set(nodes).size, 3);
  }
  // With a bound that never binds, every shard gets exactly its three best-scoring nodes.
  const unbounded = placeReplicas({
    nodes: plainNodes(range(1, 5)),
    shards: range(1, 10),
    replicationFactor: 3,
    loadFactor: 100,
  });
  for (const [shard, nodes] of unbounded.replicas) {
    const byScore = range(1, 5).sort((a, b) => rendezvousScore(shard, b) - rendezvousScore(shard, a));
    assert.deepEqual(nodes, byScore.slice(0, 3));
  }
  assert.equal(
    [...result.loads.values()].reduce((a, b) => a + b, 0),
    30,
  );
  assert.equal(result.loadMax, Math.ceil((1.25 * 30) / 5));
  assert.deepEqual(result.overLoaded, []);
  assert.deepEqual(result.underReplicated, []);
});

test('no node above ⌈loadFactor × average⌉ (1.25 by default) when every node is its own host', () => {
  // Tight load factors (1, 1.05) make the greedy pass run out of room and exercise the repair step.
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 14 }),
      fc.integer({ min: 0, max: 150 }),
      fc.integer({ min: 1, max: 5 }),
      fc.integer({ min: 0, max: 10_000 }),
      fc.constantFrom(undefined, 1, 1.05, 1.1, 1.25, 2),
      (nodeCount, shardCount, replicationFactor, offset, loadFactor) => {
        const result = placeReplicas({
          nodes: plainNodes(range(offset + 1, nodeCount)),
          shards: range(offset * 3 + 1, shardCount),
          replicationFactor,
          ...(loadFactor === undefined ? {} : { loadFactor }),
        });
        const wanted = Math.min(replicationFactor, nodeCount);
        const placed = shardCount * wanted;
        assert.equal(result.loadMax, Math.ceil(((loadFactor ?? 1.25) * placed) / nodeCount - 1e-9));
        for (const load of result.loads.values()) assert.ok(load <= result.loadMax);
        assert.deepEqual(result.overLoaded, []);
        for (const nodes of result.replicas.values()) {
          assert.equal(nodes.length, wanted);
          assert.equal(new Set(nodes).size, wanted);
        }
        assert.equal(
          [...result.loads.values()].reduce((a, b) => a + b, 0),
          placed,
        );
        assert.equal(result.underReplicated.length, wanted < replicationFactor ? shardCount : 0);
      },
    ),
    { numRuns: 300 },
  );
});

test('never two replicas of a shard on one host; the bound holds or the excess is reported', () => {
  fc.assert(
    fc.property(
      fc.array(fc.record({ host: fc.integer({ min: 0, max: 6 }), zone: fc.integer({ min: 0, max: 2 }) }), {
        minLength: 1,
        maxLength: 12,
      }),
      fc.integer({ min: 1, max: 80 }),
      fc.integer({ min: 1, max: 4 }),
      (labels, shardCount, replicationFactor) => {
        const nodes = labels.map((l, i) => ({ id: i + 1, host: `h${l.host}`, zone: `z${l.zone}` }));
        const hostOf = new Map(nodes.map((n) => [n.id, n.host]));
        const hosts = new Set(nodes.map((n) => n.host)).size;
        const result = placeReplicas({ nodes, shards: range(1, shardCount), replicationFactor });
        for (const replicas of result.replicas.values()) {
          assert.equal(replicas.length, Math.min(replicationFactor, hosts));
          assert.equal(new Set(replicas.map((n) => hostOf.get(n))).size, replicas.length);
        }
        const over = [...result.loads.values()].some((load) => load > result.loadMax);
        if (over) assert.ok(result.overLoaded.length > 0, 'a node above the bound must be reported');
      },
    ),
    { numRuns: 300 },
  );
});

test('a host with several nodes (one per core) still holds at most one replica of a shard', () => {
  // Two machines with three nodes each and one machine with one node: every shard must use all three machines.
  const nodes = [
    ...range(1, 3).map((id) => ({ id, host: 'a' })),
    ...range(4, 3).map((id) => ({ id, host: 'b' })),
    { id: 7, host: 'c' },
  ];
  const result = placeReplicas({ nodes, shards: range(1, 30), replicationFactor: 3 });
  for (const replicas of result.replicas.values()) assert.ok(replicas.includes(7));
  // Node 7 must hold all 30 while the bound is ⌈1.25 × 90 / 7⌉ = 17: reported, not hidden.
  assert.equal(result.loads.get(7), 30);
  assert.equal(result.loadMax, 17);
  assert.ok(result.overLoaded.length >= 13);
});

test('replicas spread over zones: three zones of three nodes give every shard all three zones', () => {
  const nodes = range(1, 9).map((id) => ({ id, zone: `z${id % 3}` }));
  const zoneOf = new Map(nodes.map((n) => [n.id, n.zone]));
  const result = placeReplicas({ nodes, shards: range(1, 200), replicationFactor: 3 });
  for (const replicas of result.replicas.values()) {
    assert.equal(new Set(replicas.map((n) => zoneOf.get(n))).size, 3);
  }
  for (const load of result.loads.values()) assert.ok(load <= result.loadMax);
});

test('the same input gives the same placement, whatever the order of nodes and shards', () => {
  fc.assert(
    fc.property(
      fc.uniqueArray(fc.integer({ min: 1, max: 500 }), { minLength: 1, maxLength: 10 }),
      fc.uniqueArray(fc.integer({ min: 1, max: 5000 }), { maxLength: 60 }),
      fc.integer({ min: 1, max: 3 }),
      (nodeIds, shards, replicationFactor) => {
        const a = placeReplicas({ nodes: plainNodes(nodeIds), shards, replicationFactor });
        const b = placeReplicas({
          nodes: plainNodes([...nodeIds].reverse()),
          shards: [...shards].reverse(),
          replicationFactor,
        });
        assert.deepEqual(
          [...a.replicas].sort((x, y) => x[0] - y[0]),
          [...b.replicas].sort((x, y) => x[0] - y[0]),
        );
        assert.deepEqual(a.loads, b.loads);
      },
    ),
    { numRuns: 200 },
  );
});

test('pins hold first, even above the bound; hashing fills the rest', () => {
  const shards = range(1, 20);
  const pinned = new Map(shards.map((s) => [s, [9]]));
  pinned.set(3, [9, 8]);
  const result = placeReplicas({ nodes: plainNodes(range(1, 9)), shards, replicationFactor: 3, pinned });
  for (const shard of shards) {
    const replicas = result.replicas.get(shard)!;
    assert.equal(replicas[0], 9);
    assert.equal(replicas.length, 3);
  }
  assert.equal(result.replicas.get(3)![1], 8);
  assert.equal(result.loads.get(9), 20);
  assert.ok(result.loadMax < 20);
  assert.ok(result.overLoaded.length > 0);
});

test('bad input is refused with a reason', () => {
  const nodes = plainNodes([1, 2, 3]);
  const place = (overrides: object) => () =>
    placeReplicas({ nodes, shards: [1], replicationFactor: 3, ...overrides });
  assert.throws(place({ replicationFactor: 0 }), PlacementInvalidError);
  assert.throws(place({ loadFactor: 0.9 }), /load factor/);
  assert.throws(place({ nodes: plainNodes([1, 1]) }), /listed twice/);
  assert.throws(place({ shards: [1, 1] }), /listed twice/);
  assert.throws(place({ pinned: new Map([[2, [1]]]) }), /pinned but not placed/);
  assert.throws(place({ pinned: new Map([[1, [7]]]) }), /unknown node 7/);
  assert.throws(place({ pinned: new Map([[1, [1, 2, 3, 1]]]) }), /more than the replication factor/);
  const shared = [
    { id: 1, host: 'm' },
    { id: 2, host: 'm' },
  ];
  assert.throws(place({ nodes: shared, pinned: new Map([[1, [1, 2]]]) }), /two nodes on one host/);
  // No nodes: nothing placed, every shard under-replicated.
  const empty = placeReplicas({ nodes: [], shards: [1, 2], replicationFactor: 3 });
  assert.deepEqual([...empty.replicas.values()], [[], []]);
  assert.deepEqual(empty.underReplicated, [1, 2]);
});

// Adding a node should move ~1/(N+1) of the replicas and removing one ~1/N. The bound allows
// for chance: with S shards and replication factor r, about S·q shards change (q = r/N, one
// replica each), a binomial count with standard deviation √(S·q(1−q)); the bound is
// 1/N + 0.03 + 4 standard deviations as a fraction of the S·r replicas.
function movementBound(nodeCount: number, shardCount: number, replicationFactor: number): number {
  const q = Math.min(1, replicationFactor / nodeCount);
  return 1 / nodeCount + 0.03 + (4 * Math.sqrt(shardCount * q * (1 - q))) / (shardCount * replicationFactor);
}

test('adding or removing a node moves about 1/N of the replicas', () => {
  const excess: number[] = [];
  fc.assert(
    fc.property(
      fc.integer({ min: 4, max: 12 }),
      fc.integer({ min: 50, max: 200 }),
      fc.integer({ min: 1, max: 3 }),
      fc.integer({ min: 0, max: 100_000 }),
      fc.nat(),
      (nodeCount, shardCount, replicationFactor, offset, which) => {
        const ids = range(offset + 1, nodeCount);
        const shards = range(offset * 2 + 1, shardCount);
        const before = placeReplicas({ nodes: plainNodes(ids), shards, replicationFactor });
        const added = placeReplicas({
          nodes: plainNodes([...ids, offset + 10_000]),
          shards,
          replicationFactor,
        });
        const gone = ids[which % ids.length]!;
        const removed = placeReplicas({
          nodes: plainNodes(ids.filter((id) => id !== gone)),
          shards,
          replicationFactor,
        });
        const addMoved = movedFraction(before, added);
        const removeMoved = movedFraction(before, removed);
        assert.ok(
          addMoved <= movementBound(nodeCount + 1, shardCount, replicationFactor),
          `adding the ${nodeCount + 1}th node moved ${addMoved.toFixed(3)} of the replicas`,
        );
        assert.ok(
          removeMoved <= movementBound(nodeCount, shardCount, replicationFactor),
          `removing one of ${nodeCount} nodes moved ${removeMoved.toFixed(3)} of the replicas`,
        );
        // Every replica on the removed node moves, and the new node actually gets a share.
        assert.ok(removeMoved * shardCount * replicationFactor >= (before.loads.get(gone) ?? 0) - 1e-9);
        assert.ok((added.loads.get(offset + 10_000) ?? 0) > 0);
        excess.push(addMoved - 1 / (nodeCount + 1), removeMoved - 1 / nodeCount);
      },
    ),
    { numRuns: 150 },
  );
  // On average the movement is the ideal one, within 2 percentage points.
  const mean = excess.reduce((a, b) => a + b, 0) / excess.length;
  assert.ok(mean <= 0.02, `mean movement above the ideal: ${mean.toFixed(4)}`);
});
