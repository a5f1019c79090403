// The metadata state machine as a replicated state machine: random command sequences (valid,
// stale, invalid and garbage entries, and the scheduler following the plan) applied on two
// replicas give byte-identical snapshots; a replica restored from a snapshot continues exactly as
// one that never stopped; the invariants hold after every entry; and decoding never throws.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { alignBoundaryToTagGroup } from '../../src/shard/keys.js';
import { encodeMetaCommand, type MetaCommand } from '../../src/shard/meta-commands.js';
import { decodeMetaSnapshot, encodeMetaSnapshot } from '../../src/shard/meta-snapshot.js';
import { MetaState } from '../../src/shard/meta-state.js';
import { ShardMap } from '../../src/shard/shard-map.js';
import { braceKeyArb } from './helpers.js';
import { commandsForStep, nodeAttributes } from './meta-helpers.js';

/** What a test entry does, chosen relative to the state it is applied to. */
interface Intent {
  readonly kind: number;
  readonly a: number;
  readonly b: number;
  readonly key: Uint8Array;
  /** Off by this much from the current epoch (0 most of the time). */
  readonly skew: number;
  readonly garbage: Uint8Array;
}

const intentArb: fc.Arbitrary<Intent> = fc.record({
  kind: fc.integer({ min: 0, max: 14 }),
  a: fc.nat(1000),
  b: fc.nat(1000),
  key: braceKeyArb,
  skew: fc.constantFrom(0, 0, 0, 0, 1, -1),
  garbage: fc.uint8Array({ maxLength: 24 }),
});

const founding = () =>
  MetaState.bootstrap({ nodes: [1, 2, 3].map((id) => nodeAttributes(id)), replicationFactor: 3 });

function pick<T>(items: readonly T[], index: number): T {
  return items[index % items.length]!;
}

/** The entry payload an intent becomes against `state` (mostly plausible commands, some not). */
function entryFor(state: MetaState, intent: Intent): Uint8Array {
  const command = commandFor(state, intent);
  return command === undefined ? intent.garbage : encodeMetaCommand(command);
}

function commandFor(state: MetaState, { kind, a, b, key, skew }: Intent): MetaCommand | undefined {
  const shards = state.shardMap.shards;
  const shard = pick(shards, a);
  const nodeIds = state.nodes.map((n) => n.id);
  const anyNode = 1 + (b % 9);
  const epoch = Math.max(1, shard.epoch + skew);
  const labels = { host: b % 3 === 0 ? undefined : `h${b % 5}`, zone: `z${b % 3}` };
  switch (kind) {
    case 0:
      return { type: 'addNode', node: nodeAttributes(anyNode, labels) };
    case 1:
      return {
        type: 'updateNode',
        node: nodeAttributes(pick(nodeIds, a), labels),
        state: b % 4 === 0 ? 'draining' : 'up',
      };
    case 2:
      return { type: 'removeNode', nodeId: pick(nodeIds, b) };
    case 3: {
      const splitKey = b % 2 === 0 ? alignBoundaryToTagGroup(key) : key;
      return { type: 'splitShard', shardId: shard.id, expectedEpoch: epoch, splitKey };
    }
    case 4: {
      const index = a % shards.length;
      const right = shards[index + 1] ?? shards[0]!;
      return {
        type: 'mergeShards',
        leftId: shards[index]!.id,
        leftEpoch: epoch,
        rightId: right.id,
        rightEpoch: right.epoch,
      };
    }
    case 5: {
      const step = pick(['add-learner', 'promote', 'remove'] as const, b);
      const nodeId = b % 3 === 0 ? anyNode : pick(shard.replicas, b).node;
      return {
        type: 'changeReplicas',
        shardId: shard.id,
        expectedConfEpoch: Math.max(1, shard.confEpoch + skew),
        step,
        nodeId,
      };
    }
    case 6:
      return {
        type: 'setLeaderHint',
        shardId: shard.id,
        leader: b % 5 === 0 ? undefined : pick(shard.replicas, b).node,
      };
    case 7:
      return {
        type: 'pinShard',
        shardId: shard.id,
        nodes: [anyNode, ...(b % 2 === 0 ? [pick(nodeIds, a)] : [])],
      };
    case 8:
      return { type: 'unpinShard', shardId: shard.id };
    case 9:
      return { type: 'raiseOracleMark', mark: a * 1000 + b };
    case 10:
      return { type: 'setCompactionRevision', revision: a };
    case 11:
      return { type: 'setReplicationFactor', replicationFactor: 1 + (b % 4) };
    case 12:
    case 13: {
      // The scheduler: the next step of the plan that proposes something.
      const move = state.plan().moves[0];
      if (move === undefined) return { type: 'raiseOracleMark', mark: a };
      const commands = move.steps.flatMap((step) => commandsForStep(state, move.shard, step));
      return commands[0] ?? { type: 'raiseOracleMark', mark: a };
    }
    default:
      return undefined; // garbage bytes
  }
}

/** Applies the entries, checking the invariants after each; returns the states after every entry. */
function replay(start: MetaState, entries: readonly Uint8Array[]): MetaState[] {
  const states: MetaState[] = [];
  let state = start;
  for (const entry of entries) {
    const { state: next, outcome } = state.applyEntry(entry);
    checkAfterEntry(state, next, outcome.ok);
    states.push(next);
    state = next;
  }
  return states;
}

function checkAfterEntry(before: MetaState, after: MetaState, ok: boolean): void {
  if (ok) assert.equal(after.version, before.version + 1);
  else assert.equal(after, before, 'a refused entry changes nothing');
  // The shard map's invariants (a fresh build re-checks them) and the state's own.
  ShardMap.fromShards(after.shardMap.shards, after.shardMap.nextShardId);
  MetaState.fromFields(after);
  assert.ok(after.compactionRevision >= before.compactionRevision, 'the compaction revision never decreases');
  assert.ok(after.oracleMark >= before.oracleMark, 'the oracle mark never decreases');
  assert.ok(after.shardMap.nextShardId >= before.shardMap.nextShardId, 'shard ids are never reused');
  for (const node of before.nodes) assert.ok(after.node(node.id) !== undefined, 'node records are kept');
  after.plan(); // the derived views are total on every state
}

/** Entries generated against one replica's states, so they are plausible for every replica. */
function generateEntries(intents: readonly Intent[]): Uint8Array[] {
  const entries: Uint8Array[] = [];
  let state = founding();
  for (const intent of intents) {
    const entry = entryFor(state, intent);
    entries.push(entry);
    state = state.applyEntry(entry).state;
  }
  return entries;
}

const RUNS = 150;

test('two replicas applying the same entries hold byte-identical snapshots after every entry', () => {
  fc.assert(
    fc.property(fc.array(intentArb, { minLength: 1, maxLength: 80 }), (intents) => {
      const entries = generateEntries(intents);
      const first = replay(founding(), entries);
      const second = replay(founding(), entries);
      for (let i = 0; i < entries.length; i++) {
        assert.deepEqual(encodeMetaSnapshot(second[i]!), encodeMetaSnapshot(first[i]!), `after entry ${i}`);
      }
    }),
    { numRuns: RUNS },
  );
});

test('snapshot, restore and continue ends where continuing without the snapshot ends', () => {
  fc.assert(
    fc.property(fc.array(intentArb, { minLength: 1, maxLength: 80 }), fc.nat(), (intents, cut) => {
      const entries = generateEntries(intents);
      const at = cut % entries.length;
      const straight = replay(founding(), entries);
      const snapshot = encodeMetaSnapshot(straight[at]!);
      const restored = decodeMetaSnapshot(snapshot);
      assert.deepEqual(encodeMetaSnapshot(restored), snapshot, 'decode → encode gives the same bytes');
      const continued = replay(restored, entries.slice(at + 1));
      const last = continued.at(-1) ?? restored;
      assert.deepEqual(encodeMetaSnapshot(last), encodeMetaSnapshot(straight.at(-1)!));
      assert.equal(last.version, straight.at(-1)!.version);
    }),
    { numRuns: RUNS },
  );
});

test('the generated histories exercise every command, accepted and refused', () => {
  const accepted = new Set<string>();
  const refused = new Set<string>();
  fc.assert(
    fc.property(fc.array(intentArb, { minLength: 40, maxLength: 80 }), (intents) => {
      let state = founding();
      for (const intent of intents) {
        const command = commandFor(state, intent);
        const applied = state.applyEntry(command === undefined ? intent.garbage : encodeMetaCommand(command));
        const label = command?.type ?? 'garbage';
        (applied.outcome.ok ? accepted : refused).add(
          applied.outcome.ok ? label : `${label}:${applied.outcome.refusal.code}`,
        );
        state = applied.state;
      }
    }),
    { numRuns: 60, seed: 42 },
  );
  for (const type of ['addNode', 'updateNode', 'removeNode', 'splitShard', 'mergeShards', 'changeReplicas']) {
    assert.ok(accepted.has(type), `no ${type} was accepted`);
  }
  for (const type of [
    'setLeaderHint',
    'pinShard',
    'unpinShard',
    'setCompactionRevision',
    'setReplicationFactor',
  ]) {
    assert.ok(accepted.has(type), `no ${type} was accepted`);
  }
  for (const refusal of [
    'splitShard:stale-epoch',
    'splitShard:split-key-invalid',
    'changeReplicas:conf-epoch-mismatch',
    'removeNode:node-in-use',
    'mergeShards:merge-invalid',
    'garbage:meta-command-invalid',
  ]) {
    assert.ok(refused.has(refusal), `no ${refusal} refusal: ${[...refused].join(' ')}`);
  }
});

test('applying random bytes never throws; a refusal changes nothing', () => {
  const state = founding();
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 64 }), (payload) => {
      const applied = state.applyEntry(payload);
      if (!applied.outcome.ok) assert.equal(applied.state, state);
    }),
    { numRuns: 2000 },
  );
  // Payloads that start like an entry reach every command's decoder.
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 13 }), fc.uint8Array({ maxLength: 32 }), (tag, rest) => {
      const applied = state.applyEntry(Uint8Array.of(1, tag, ...rest));
      if (!applied.outcome.ok) assert.equal(applied.state, state);
    }),
    { numRuns: 2000 },
  );
});
