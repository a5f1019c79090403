// The sharded simulation: shard groups and the metadata group (the timestamp oracle) on shared
// nodes, under every fault, with the revision invariants checked after every event. Also the
// pieces it is built from: the shard and metadata state machines, and a node's one disk.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { EntryType } from '../../src/raft/types.js';
import { MetaState } from '../../src/shard/meta-state.js';
import { entryKey } from '../../src/sim/app.js';
import { runShardedSeedRange } from '../../src/sim/cli.js';
import { SimDisk } from '../../src/sim/disk.js';
import { encodeMetaProposal, MetaGroupStateMachine } from '../../src/sim/meta-app.js';
import { NodeDisk } from '../../src/sim/node-disk.js';
import {
  encodeSplit,
  encodeWrite,
  ShardStateMachine,
  type WriteCommand,
  type WriteRequest,
} from '../../src/sim/shard-app.js';
import { RevisionChecker } from '../../src/sim/shard-invariants.js';
import { runShardedSimulation, ShardedSimFailure } from '../../src/sim/sharded-simulation.js';
import type { SimNode } from '../../src/sim/sim-node.js';

const CONF = { voters: [1, 2, 3], learners: [], votersOutgoing: [], learnersNext: [], autoLeave: false };

function applyWrite(
  machine: ShardStateMachine,
  index: number,
  proposalId: number,
  command: WriteCommand,
): void {
  const data = encodeWrite(proposalId, command);
  machine.apply(index, EntryType.Normal, data, entryKey(EntryType.Normal, data));
}

describe('sharded simulation under faults', () => {
  it('seeds 1..9 (3, 5 and 7 nodes, 4 shards, online splits): every invariant holds and the cluster converges', async () => {
    const report = await runShardedSeedRange({ seeds: 9, from: 1, shards: 4 });
    const failures = report.failures.map((f) => f.message).join('\n');
    assert.equal(report.failures.length, 0, `${report.failures.length} failing seeds:\n${failures}`);
    const results = report.results;
    assert.deepEqual([...new Set(results.map((r) => r.nodes))].sort(), [3, 5, 7]);
    // Every write is acked, or refused as cross-shard (a split put its keys in two shards).
    assert.ok(results.every((r) => r.acked > 0 && r.acked + r.crossShard === r.writes));
    assert.ok(results.every((r) => r.splits > 0));
    assert.ok(
      results.some((r) => r.rerouted > 0),
      'no write was refused at a stale epoch and re-routed',
    );
    assert.ok(results.some((r) => r.crashes > 0));
    assert.ok(
      results.some((r) => r.oracleLeaderships > 1),
      'no run changed the oracle leader',
    );
    assert.ok(
      results.some((r) => r.fsyncs < r.groupWrites),
      'no fsync covered two groups',
    );
  });

  it('one shard, and eight shards on five nodes', async () => {
    for (const [shards, nodes] of [
      [1, 3],
      [8, 5],
    ] as const) {
      const report = await runShardedSeedRange({
        seeds: 2,
        from: 100,
        shards,
        nodes,
        faultPhaseUs: 1_500_000,
      });
      assert.equal(report.failures.length, 0, report.failures.map((f) => f.message).join('\n'));
      assert.ok(report.results.every((r) => r.acked > 0));
    }
  });

  it('seeds 1..6 with replica moves and node add/remove under load: every invariant holds, the placement settles', async () => {
    const report = await runShardedSeedRange({
      seeds: 6,
      from: 1,
      shards: 4,
      faultPhaseUs: 1_500_000,
      moves: true,
      nodeChurn: true,
    });
    const failures = report.failures.map((f) => f.message).join('\n');
    assert.equal(report.failures.length, 0, `${report.failures.length} failing seeds:\n${failures}`);
    const results = report.results;
    const sum = (f: (r: (typeof results)[number]) => number) => results.reduce((n, r) => n + f(r), 0);
    assert.ok(results.every((r) => r.acked > 0 && r.acked + r.crossShard === r.writes));
    assert.ok(results.every((r) => r.moves > 0 && r.nodeAdds > 0));
    assert.ok(sum((r) => r.nodeRemoves) > 0, 'no node left the cluster');
    assert.ok(sum((r) => r.readds) > 0, 'no replica was added back to a node it left');
    // Every move is 3 membership changes (add learner, promote, remove).
    assert.ok(results.every((r) => r.confChanges === 3 * r.moves));
    assert.ok(sum((r) => r.crashesDuringMoves) > 0, 'no node crashed during a move');
    assert.ok(sum((r) => r.oracleCrashes) > 0, "no run killed the oracle's leader");
    assert.ok(
      results.some((r) => r.rerouted > 0),
      'no write was refused at a stale (conf) epoch and re-routed',
    );
    // A joined node gets replicas, on average its fair share (the average per up node; the
    // bound above it is checked by the placement invariant, and rendezvous hashing has no bound below).
    const shares = results.flatMap((r) => r.addedNodeShares);
    assert.ok(shares.length > 0 && shares.every((share) => share > 0), `shares ${shares.join(', ')}`);
    const mean = shares.reduce((a, b) => a + b, 0) / shares.length;
    assert.ok(mean >= 0.8 && mean <= 1.25, `mean share ${mean.toFixed(2)}`);
  });

  it('a seed replays exactly (same trace), another seed differs', async () => {
    const traceHash = async (seed: number) => {
      const hash = createHash('sha256');
      const result = await runShardedSimulation({
        seed,
        nodes: 5,
        shards: 3,
        faultPhaseUs: 1_000_000,
        trace: (line) => hash.update(`${line}\n`),
      });
      return hash.update(JSON.stringify(result)).digest('hex');
    };
    const first = await traceHash(7);
    assert.equal(await traceHash(7), first);
    assert.notEqual(await traceHash(8), first);
  });

  it('a failure names the seed and the replay command', async () => {
    await assert.rejects(
      runShardedSimulation({ seed: 3, nodes: 3, shards: 2, faultPhaseUs: 500_000, livenessBoundUs: 0 }),
      (error: unknown) =>
        error instanceof ShardedSimFailure &&
        /\[liveness\]/.test(error.message) &&
        error.replay === 'npm run sim -- --shards 2 --nodes 3 --seeds 1 --from 3',
    );
  });
});

describe('ShardStateMachine', () => {
  it('applies a write at its revision, refuses one not above the shard revision, applies a write id once', () => {
    const machine = new ShardStateMachine();
    applyWrite(machine, 1, 1, { write: 1, revision: 5, epoch: 1, ops: [{ key: 'a', op: 'put' }] });
    assert.deepEqual(machine.lastWrite?.outcome, {
      kind: 'applied',
      write: { revision: 5, succeeded: true },
    });
    applyWrite(machine, 2, 2, { write: 2, revision: 5, epoch: 1, ops: [{ key: 'a', op: 'put' }] });
    assert.deepEqual(machine.lastWrite?.outcome, { kind: 'refused', revision: 5 });
    applyWrite(machine, 3, 3, { write: 2, revision: 9, epoch: 1, ops: [{ key: 'a', op: 'put' }] });
    assert.deepEqual(machine.lastWrite?.outcome, {
      kind: 'applied',
      write: { revision: 9, succeeded: true },
    });
    applyWrite(machine, 4, 4, { write: 1, revision: 12, epoch: 1, ops: [{ key: 'a', op: 'put' }] });
    assert.deepEqual(machine.lastWrite?.outcome, {
      kind: 'duplicate',
      write: { revision: 5, succeeded: true },
    });
    applyWrite(machine, 5, 5, { write: 3, revision: 14, epoch: 1, ops: [{ key: 'a', op: 'delete' }] });
    assert.deepEqual(machine.keys.get('a'), undefined);
    assert.equal(machine.revision, 14);
    assert.equal(machine.versionAt('a', 4), undefined);
    assert.equal(machine.versionAt('a', 5)?.write, 1);
    assert.equal(machine.versionAt('a', 13)?.write, 2);
    assert.equal(machine.versionAt('a', 14), undefined);
  });

  it('a split entry hands [splitKey, end) to the new shard, bumps both epochs, and stale routes are refused', () => {
    const machine = new ShardStateMachine({}, { start: 'a', end: 'z' });
    applyWrite(machine, 1, 1, { write: 1, revision: 5, epoch: 1, ops: [{ key: 'b', op: 'put' }] });
    applyWrite(machine, 2, 2, { write: 2, revision: 6, epoch: 1, ops: [{ key: 'm', op: 'put' }] });
    const split = (index: number, epoch: number) => {
      const data = encodeSplit(index, { splitKey: 'k', rightId: 7, epoch });
      machine.apply(index, EntryType.Normal, data, entryKey(EntryType.Normal, data));
    };
    split(3, 1);
    const applied = machine.lastSplit!;
    assert.ok(applied !== undefined);
    assert.deepEqual(machine.range, { start: 'a', end: 'k' });
    assert.equal(machine.epoch, 2);
    assert.deepEqual([...machine.keys.keys()], ['b']);
    const right = ShardStateMachine.restoreInto(new ShardStateMachine(), 1, CONF, applied.rightBoot);
    assert.deepEqual(right.range, { start: 'k', end: 'z' });
    assert.equal(right.epoch, 2);
    assert.equal(right.revision, 6);
    assert.equal(right.keys.get('m')?.write, 2);
    assert.equal(right.writes.get(1)?.revision, 5, 'write ids stay known on both sides');
    split(4, 1);
    assert.equal(machine.lastSplit, undefined, 'a duplicate split (planned at the old epoch) is a no-op');
    applyWrite(machine, 5, 5, { write: 3, revision: 9, epoch: 1, ops: [{ key: 'b', op: 'put' }] });
    assert.deepEqual(machine.lastWrite?.outcome, { kind: 'stale-epoch', epoch: 2, confEpoch: 1 });
    applyWrite(machine, 6, 6, { write: 3, revision: 9, epoch: 2, ops: [{ key: 'm', op: 'put' }] });
    assert.deepEqual(machine.lastWrite?.outcome, { kind: 'stale-epoch', epoch: 2, confEpoch: 1 });
    applyWrite(machine, 7, 7, { write: 3, revision: 9, epoch: 2, ops: [{ key: 'c', op: 'put' }] });
    assert.equal(machine.lastWrite?.outcome.kind, 'applied');
  });

  it('a membership change bumps the conf epoch (a no-op change does not); a write routed at another conf epoch is refused', () => {
    const machine = ShardStateMachine.restoreInto(new ShardStateMachine(), 1, CONF, new Uint8Array(0));
    applyWrite(machine, 2, 2, {
      write: 1,
      revision: 5,
      epoch: 1,
      confEpoch: 1,
      ops: [{ key: 'a', op: 'put' }],
    });
    assert.equal(machine.lastWrite?.outcome.kind, 'applied');
    machine.confState = { ...CONF, learners: [4] };
    machine.onConfChange(CONF);
    assert.equal(machine.confEpoch, 2);
    machine.onConfChange(machine.confState);
    assert.equal(machine.confEpoch, 2, 'the same membership again is not a change');
    applyWrite(machine, 3, 3, {
      write: 2,
      revision: 6,
      epoch: 1,
      confEpoch: 1,
      ops: [{ key: 'a', op: 'put' }],
    });
    assert.deepEqual(machine.lastWrite?.outcome, { kind: 'stale-epoch', epoch: 1, confEpoch: 2 });
    applyWrite(machine, 4, 4, {
      write: 2,
      revision: 6,
      epoch: 1,
      confEpoch: 2,
      ops: [{ key: 'a', op: 'put' }],
    });
    assert.equal(machine.lastWrite?.outcome.kind, 'applied');
    const restored = ShardStateMachine.restoreInto(
      new ShardStateMachine(),
      4,
      machine.confState,
      machine.encode(),
    );
    assert.equal(restored.confEpoch, 2);
    assert.equal(restored.stateHash, machine.stateHash);
  });

  it('the state hash covers the content, recomputed on restore: a snapshot that lost a version differs', () => {
    const machine = new ShardStateMachine();
    applyWrite(machine, 1, 1, { write: 1, revision: 3, epoch: 1, ops: [{ key: 'a', op: 'put' }] });
    applyWrite(machine, 2, 2, { write: 2, revision: 4, epoch: 1, ops: [{ key: 'a', op: 'put' }] });
    const state = JSON.parse(new TextDecoder().decode(machine.encode())) as {
      history: [string, unknown[]][];
    };
    state.history[0]![1].pop();
    const lossy = new TextEncoder().encode(JSON.stringify(state));
    const restored = ShardStateMachine.restoreInto(new ShardStateMachine(), 2, CONF, lossy);
    assert.equal(restored.hash, machine.hash, 'the rolling hash travels in the snapshot');
    assert.notEqual(restored.stateHash, machine.stateHash);
    const intact = ShardStateMachine.restoreInto(new ShardStateMachine(), 2, CONF, machine.encode());
    assert.equal(intact.stateHash, machine.stateHash);
  });

  it('a txn takes the branch its compare gives, every key it writes at its revision', () => {
    const machine = new ShardStateMachine();
    const moveAToB = (write: number, revision: number): WriteCommand => ({
      write,
      revision,
      epoch: 1,
      ifExists: 'a',
      ops: [
        { key: 'b', op: 'put' },
        { key: 'a', op: 'delete' },
      ],
      orElse: [{ key: 'a', op: 'put' }],
    });
    applyWrite(machine, 1, 1, moveAToB(1, 3));
    assert.deepEqual(machine.lastWrite?.outcome, {
      kind: 'applied',
      write: { revision: 3, succeeded: false },
    });
    assert.equal(machine.keys.get('a')?.modRevision, 3);
    applyWrite(machine, 2, 2, moveAToB(2, 6));
    assert.deepEqual(machine.lastWrite?.outcome, {
      kind: 'applied',
      write: { revision: 6, succeeded: true },
    });
    assert.equal(machine.keys.get('a'), undefined);
    assert.equal(machine.keys.get('b')?.modRevision, 6);
    assert.deepEqual(machine.history.get('a'), [
      { revision: 3, write: 1, op: 'put' },
      { revision: 6, write: 2, op: 'delete' },
    ]);
  });

  it('keeps create revision and version as etcd does', () => {
    const machine = new ShardStateMachine();
    applyWrite(machine, 1, 1, { write: 1, revision: 3, epoch: 1, ops: [{ key: 'k', op: 'put' }] });
    applyWrite(machine, 2, 2, { write: 2, revision: 7, epoch: 1, ops: [{ key: 'k', op: 'put' }] });
    assert.deepEqual(machine.keys.get('k'), { createRevision: 3, modRevision: 7, version: 2, write: 2 });
  });

  it('a snapshot restores the same state and hash; an outcome changes the hash', () => {
    const machine = new ShardStateMachine();
    applyWrite(machine, 1, 1, { write: 1, revision: 5, epoch: 1, ops: [{ key: 'a', op: 'put' }] });
    applyWrite(machine, 2, 2, { write: 2, revision: 8, epoch: 1, ops: [{ key: 'b', op: 'put' }] });
    const copy = ShardStateMachine.restoreInto(new ShardStateMachine(), 2, CONF, machine.encode());
    assert.equal(copy.hash, machine.hash);
    assert.equal(copy.revision, 8);
    assert.deepEqual([...copy.keys], [...machine.keys]);
    assert.deepEqual([...copy.history], [...machine.history]);
    assert.deepEqual([...copy.writes], [...machine.writes]);
    const lenient = new ShardStateMachine({ unsafeAcceptStaleRevision: true });
    const strict = new ShardStateMachine();
    for (const m of [lenient, strict]) {
      applyWrite(m, 1, 1, { write: 1, revision: 5, epoch: 1, ops: [{ key: 'a', op: 'put' }] });
      applyWrite(m, 2, 2, { write: 2, revision: 4, epoch: 1, ops: [{ key: 'a', op: 'put' }] });
    }
    assert.notEqual(lenient.hash, strict.hash);
  });
});

describe('MetaGroupStateMachine', () => {
  const boot = () =>
    MetaState.bootstrap({
      nodes: [1, 2, 3].map((id) => ({
        id,
        peerUrls: [`sim://n${id}`],
        clientUrls: [],
        host: undefined,
        zone: undefined,
      })),
    });

  it('applies the real metadata commands: raises the mark, never lowers it, refuses a bad split, restores from a snapshot', () => {
    const machine = new MetaGroupStateMachine(boot());
    const propose = (index: number, data: Uint8Array) =>
      machine.apply(index, EntryType.Normal, data, entryKey(EntryType.Normal, data));
    propose(1, encodeMetaProposal(1, { type: 'raiseOracleMark', mark: 10 }));
    propose(2, encodeMetaProposal(2, { type: 'raiseOracleMark', mark: 4 }));
    assert.equal(machine.highWaterMark, 10);
    propose(
      3,
      encodeMetaProposal(3, {
        type: 'splitShard',
        shardId: 1,
        expectedEpoch: 99,
        splitKey: new Uint8Array([0x6b]),
      }),
    );
    assert.equal(machine.lastOutcome?.ok, false);
    assert.equal(machine.shardMap.shards.length, 1);
    propose(
      4,
      encodeMetaProposal(4, {
        type: 'splitShard',
        shardId: 1,
        expectedEpoch: 1,
        splitKey: new Uint8Array([0x6b]),
      }),
    );
    assert.equal(machine.lastOutcome?.ok, true);
    assert.equal(machine.shardMap.shards.length, 2);
    propose(5, encodeMetaProposal(5, { type: 'raiseOracleMark', mark: 30 }));
    const copy = MetaGroupStateMachine.restoreInto(
      new MetaGroupStateMachine(boot()),
      5,
      CONF,
      machine.encode(),
    );
    assert.equal(copy.highWaterMark, 30);
    assert.equal(copy.hash, machine.hash);
    assert.equal(copy.shardMap.shards.length, 2);
    assert.equal(copy.state.version, machine.state.version);
  });
});

describe('NodeDisk', () => {
  function replica(log: string[], name: string): SimNode {
    let waiting = true;
    return {
      get awaitingFsync() {
        return waiting;
      },
      completeFsync() {
        waiting = false;
        log.push(name);
      },
    } as unknown as SimNode;
  }

  it('one fsync covers every group written in a turn; later writes wait for the next', () => {
    const disk = new NodeDisk(new Map([[1, new SimDisk()]]));
    const log: string[] = [];
    disk.request(replica(log, 'g0'));
    disk.request(replica(log, 'g1'));
    assert.equal(disk.startSync(), true);
    disk.request(replica(log, 'g2'));
    assert.equal(disk.startSync(), false, 'a second fsync started while one is in flight');
    disk.completeSync();
    assert.deepEqual(log, ['g0', 'g1']);
    assert.equal(disk.startSync(), true);
    disk.completeSync();
    assert.deepEqual(log, ['g0', 'g1', 'g2']);
    assert.equal(disk.syncs, 2);
    assert.equal(disk.groupWrites, 3);
  });

  it('a crash drops the writes not yet synced', () => {
    const disk = new NodeDisk(new Map());
    const log: string[] = [];
    disk.request(replica(log, 'g0'));
    disk.startSync();
    disk.request(replica(log, 'g1'));
    disk.crash();
    assert.equal(disk.startSync(), false);
    assert.throws(() => disk.completeSync());
    assert.deepEqual(log, []);
  });
});

describe('RevisionChecker end-of-run checks', () => {
  const move: WriteRequest = {
    ifExists: 'a',
    ops: [
      { key: 'b', op: 'put' },
      { key: 'a', op: 'delete' },
    ],
    orElse: [{ key: 'a', op: 'put' }],
  };

  /** A checker that saw write 1 (put a) and write 2 (the txn) applied on shard 1, and acked. */
  function scenario(ackTxn = true): { checker: RevisionChecker; state: ShardStateMachine } {
    const checker = new RevisionChecker();
    const state = new ShardStateMachine();
    checker.observeMark(100);
    const commands: WriteCommand[] = [
      { write: 1, revision: 4, epoch: 1, ops: [{ key: 'a', op: 'put' }] },
      { write: 2, revision: 9, epoch: 1, ...move },
    ];
    commands.forEach((command, i) => {
      const { write, revision: _, epoch: __, ...request } = command;
      const floor = checker.startWrite(write, request);
      applyWrite(state, i + 1, i + 1, command);
      const applied = state.lastWrite!;
      checker.observeApply(1, 1, applied.command, applied.outcome, applied.previous, state);
      assert.equal(applied.outcome.kind, 'applied');
      if (applied.outcome.kind === 'applied' && (ackTxn || write === 1))
        checker.observeAck(write, 1, i + 1, applied.outcome.write, floor);
    });
    return { checker, state };
  }

  it('passes a replica that applied the acked writes', () => {
    const { checker, state } = scenario();
    checker.checkReplicas([{ shard: 1, node: 1, state }]);
    assert.equal(state.keys.get('b')?.write, 2);
  });

  it('catches an acked write missing from a replica', () => {
    const { checker, state } = scenario();
    state.history.set('b', []);
    assert.throws(() => checker.checkReplicas([{ shard: 1, node: 1, state }]), /acked-proposal-lost/);
  });

  it('catches a txn that took the branch its compare does not give', () => {
    const acked = scenario();
    acked.state.writes.set(2, { revision: 9, succeeded: false });
    const replicas = [{ shard: 1, node: 1, state: acked.state }];
    assert.throws(() => acked.checker.checkReplicas(replicas), /acked-proposal-lost/);
    const { checker, state } = scenario(false);
    state.writes.set(2, { revision: 9, succeeded: false });
    assert.throws(() => checker.checkReplicas([{ shard: 1, node: 1, state }]), /key-history.*wrong branch/);
  });

  it('catches a key whose state differs from its history', () => {
    const { checker, state } = scenario();
    state.keys.set('b', { createRevision: 9, modRevision: 9, version: 2, write: 2 });
    assert.throws(() => checker.checkReplicas([{ shard: 1, node: 1, state }]), /key-history/);
  });

  it('catches a write acked at a revision not above one acked before it started', () => {
    const checker = new RevisionChecker();
    checker.observeMark(100);
    const floor = checker.startWrite(1, { ops: [{ key: 'a', op: 'put' }] });
    assert.throws(
      () => checker.observeAck(1, 1, 1, { revision: floor, succeeded: true }, floor),
      /revision-order/,
    );
  });
});
