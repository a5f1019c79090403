// Shard groups hosted side by side in every member: a split entry in a shard's own log makes every
// replica start the right half's group on the same members (one WAL, one keyspace, one
// transport); a split at a stale epoch or outside the shard is refused and changes nothing; a
// restart recovers every hosted group from the shared WAL and the keyspace's shard records.

import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { GroupReplica } from '../../src/replica/group-replica.js';
import { InProcessCluster } from './in-process-cluster.js';

async function until<T>(what: string, timeoutMs: number, probe: () => T | undefined): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(20);
  }
}

const text = (bytes: Uint8Array) => Buffer.from(bytes).toString();

/** The member index whose replica of `group` leads, once every member agrees on one. */
async function groupLeader(c: InProcessCluster, group: number): Promise<GroupReplica> {
  return until(`a leader of group ${group}`, 10_000, () => {
    const replicas = c.runningIndexes().map((i) => c.server(i).hosting.shardGroup(group));
    if (replicas.some((r) => r === undefined)) return undefined;
    const leaders = new Set(replicas.map((r) => r!.leaderId));
    if (leaders.size !== 1) return undefined;
    return replicas.find((r) => r!.isLeader);
  });
}

describe('shard groups in the server', () => {
  let cluster: InProcessCluster | undefined;
  after(() => cluster?.dispose());

  it('a split starts the right half on every member, refuses stale splits, and survives a restart', async () => {
    cluster = await InProcessCluster.start({ size: 3 });
    const c = cluster;
    const one = c.server(0).hosting.shardGroup(1)!;

    // A split at a wrong epoch, and one at the shard's start, are refused and change nothing.
    const stale = await one.propose({
      type: 'splitShard',
      shardId: 1,
      expectedEpoch: 7,
      splitKey: Buffer.from('m'),
      rightId: 2,
    });
    assert.equal(stale.status, 'error');
    assert.match((stale as { error: Error }).error.message, /epoch 1, not 7/);
    const atStart = await one.propose({
      type: 'splitShard',
      shardId: 1,
      expectedEpoch: 1,
      splitKey: new Uint8Array(0),
      rightId: 2,
    });
    assert.equal(atStart.status, 'error');
    for (const i of [0, 1, 2]) assert.equal(c.server(i).hosting.shardGroup(2), undefined);

    const done = await one.propose({
      type: 'splitShard',
      shardId: 1,
      expectedEpoch: 1,
      splitKey: Buffer.from('m'),
      rightId: 2,
    });
    assert.equal(done.status, 'done');
    const leaderOfTwo = await groupLeader(c, 2);
    for (const i of [0, 1, 2]) {
      const node = c.server(i).hosting;
      await until(`member ${i} applied the split`, 5000, () =>
        node.shardGroup(1)!.shardRecord.epoch === 2 ? true : undefined,
      );
      const left = node.shardGroup(1)!.shardRecord;
      const right = node.shardGroup(2)!.shardRecord;
      assert.deepEqual([text(left.start), text(left.end), left.epoch], ['', 'm', 2]);
      assert.deepEqual([text(right.start), text(right.end), right.epoch], ['m', '', 2]);
      assert.deepEqual([...node.shardGroup(2)!.voters].sort(), [...node.shardGroup(1)!.voters].sort());
    }

    // The new group splits in its own log (proposed on a follower, forwarded to its leader).
    const follower = c
      .runningIndexes()
      .map((i) => c.server(i).hosting.shardGroup(2)!)
      .find((r) => r !== leaderOfTwo)!;
    const second = await follower.propose({
      type: 'splitShard',
      shardId: 2,
      expectedEpoch: 2,
      splitKey: Buffer.from('t'),
      rightId: 3,
    });
    assert.equal(second.status, 'done');
    await groupLeader(c, 3);

    // Idle, the groups a split made hibernate on every member (group 1 does not).
    await until('groups 2 and 3 hibernating everywhere', 10_000, () =>
      [0, 1, 2].every((i) => [2, 3].every((g) => c.server(i).hosting.shardGroup(g)!.hibernating))
        ? true
        : undefined,
    );
    assert.ok([0, 1, 2].every((i) => !c.server(i).hosting.shardGroup(1)!.hibernating));

    // Every member restarts: every group comes back from the shared WAL with its record.
    for (const i of [0, 1, 2]) await c.stopMember(i);
    await Promise.all([0, 1, 2].map((i) => c.startMember(i)));
    for (const group of [1, 2, 3]) await groupLeader(c, group);
    for (const i of [0, 1, 2]) {
      const node = c.server(i).hosting;
      assert.deepEqual(
        node
          .hostedShardGroups()
          .map((g) => [g.groupId, text(g.shardRecord.start), text(g.shardRecord.end), g.shardRecord.epoch]),
        [
          [1, '', 'm', 2],
          [2, 'm', 't', 3],
          [3, 't', '', 3],
        ],
      );
    }
    // The restarted groups still take entries: a split replayed at the old epoch is refused.
    const replay = await c
      .server(0)
      .hosting.shardGroup(2)!
      .propose({
        type: 'splitShard',
        shardId: 2,
        expectedEpoch: 2,
        splitKey: Buffer.from('p'),
        rightId: 4,
      });
    assert.equal(replay.status, 'error');
  });
});

describe('shard split through the admin call', () => {
  let cluster: InProcessCluster | undefined;
  after(() => cluster?.dispose());

  it('the metadata leader splits: the shard log first, then the metadata map, at matching ids and epochs', async () => {
    cluster = await InProcessCluster.start({ size: 3 });
    const c = cluster;
    const metaLeader = await until('a metadata leader with a map', 10_000, () =>
      c.runningIndexes().find((i) => c.server(i).meta.isLeader && c.server(i).meta.metaState !== undefined),
    );
    // (A member that does not lead the metadata group passes the call on over its client URL,
    // which members in one process do not serve: test/e2e/shard-split.test.ts covers that.)
    const split = await c.server(metaLeader).shards.split(Buffer.from('m'));
    assert.deepEqual(
      [split.left.id, text(split.left.start), text(split.left.end), split.left.epoch],
      [1, '', 'm', 2],
    );
    assert.deepEqual(
      [split.right.id, text(split.right.start), text(split.right.end), split.right.epoch],
      [2, 'm', '', 2],
    );
    await groupLeader(c, 2);

    // A key at a shard's start, or inside a {…} tag group, is refused and changes nothing.
    await assert.rejects(c.server(metaLeader).shards.split(Buffer.from('m')), /not strictly inside/);
    await assert.rejects(c.server(metaLeader).shards.split(Buffer.from('t{x}y')), /hash-tag group/);

    const second = await c.server(metaLeader).shards.split(Buffer.from('t'));
    assert.deepEqual([second.left.id, second.right.id, second.right.epoch], [2, 3, 3]);
    await groupLeader(c, 3);
    for (const i of [0, 1, 2]) {
      const map = await until(`member ${i}'s map with 3 shards`, 5000, () => {
        const m = c.server(i).meta.metaState?.shardMap;
        return m !== undefined && m.shards.length === 3 ? m : undefined;
      });
      const node = c.server(i).hosting;
      await until(`member ${i} hosting 3 groups`, 5000, () =>
        node.hostedShardGroups().length === 3 ? true : undefined,
      );
      // The map and each hosted group's own record agree on range and epoch.
      for (const shard of map.shards) {
        const record = node.shardGroup(shard.id)!.shardRecord;
        assert.deepEqual(
          [text(record.start), text(record.end), record.epoch],
          [text(shard.start), text(shard.end), shard.epoch],
        );
      }
      assert.deepEqual(
        c
          .server(i)
          .shards.list()
          .shards.map((s) => [s.id, s.leader !== '']),
        [
          [1, true],
          [2, true],
          [3, true],
        ],
      );
    }
  });
});

describe('shard groups catch a member up by snapshot', () => {
  let cluster: InProcessCluster | undefined;
  after(() => cluster?.dispose());

  it('a member that was down while a new group split gets its records by snapshot and hosts the child', async () => {
    cluster = await InProcessCluster.start({ size: 3 });
    const c = cluster;
    const metaLeader = await until('a metadata leader with a map', 10_000, () =>
      c.runningIndexes().find((i) => c.server(i).meta.isLeader && c.server(i).meta.metaState !== undefined),
    );
    await c.server(metaLeader).shards.split(Buffer.from('m'));
    await groupLeader(c, 2);
    const down = [0, 1, 2].find((i) => i !== metaLeader)!;
    await c.stopMember(down);
    // A proposal forwarded to a leader that is gone is lost (as in etcd): wait for a live one.
    await groupLeader(c, 2);

    // Group 2 splits without the stopped member; its log is released up to what it applied.
    await c.server(metaLeader).shards.split(Buffer.from('t'));
    // Group 2 keeps no log behind what it applied, on every running member.
    await until('group 2 released its log on the running members', 10_000, () =>
      c
        .runningIndexes()
        .map((i) => c.server(i).hosting.shardGroup(2)!)
        .every((g) => g.shardRecord.epoch === 3 && g.snapshotLogIndex() === g.lastIndex())
        ? true
        : undefined,
    );

    // The others restart (their transports drop what they queued for the stopped member, and the
    // leader's snapshot is rebuilt from the keyspace's records), then the stopped member returns.
    const others = c.runningIndexes();
    for (const i of others) await c.stopMember(i);
    await Promise.all(others.map((i) => c.startMember(i)));
    await groupLeader(c, 2);
    await c.startMember(down);
    const node = c.server(down).hosting;
    try {
      await until('the restarted member hosting group 3', 15_000, () =>
        node.shardGroup(3) !== undefined && node.shardGroup(2)!.shardRecord.epoch === 3 ? true : undefined,
      );
    } catch (error) {
      throw new Error(`${(error as Error).message}; its log:\n${c.logText(down)}`);
    }
    await groupLeader(c, 3);
    assert.deepEqual(
      node
        .hostedShardGroups()
        .map((g) => [g.groupId, text(g.shardRecord.start), text(g.shardRecord.end), g.shardRecord.epoch]),
      [
        [1, '', 'm', 2],
        [2, 'm', 't', 3],
        [3, 't', '', 3],
      ],
    );
    assert.match(c.logText(down), /installed a shard snapshot from the leader/);
  });
});

describe('two splits in one batch', () => {
  let cluster: InProcessCluster | undefined;
  after(() => cluster?.dispose());

  it('both new groups are listed and come back after a restart', async () => {
    cluster = await InProcessCluster.start({ size: 3 });
    const c = cluster;
    const leader = c.server(await c.leader()).hosting.shardGroup(1)!;
    // Proposed in one turn, so they commit and apply together.
    const [first, second] = await Promise.all([
      leader.propose({
        type: 'splitShard',
        shardId: 1,
        expectedEpoch: 1,
        splitKey: Buffer.from('m'),
        rightId: 2,
      }),
      leader.propose({
        type: 'splitShard',
        shardId: 1,
        expectedEpoch: 2,
        splitKey: Buffer.from('f'),
        rightId: 3,
      }),
    ]);
    assert.deepEqual([first.status, second.status], ['done', 'done']);
    await groupLeader(c, 2);
    await groupLeader(c, 3);
    for (const i of [0, 1, 2]) await c.stopMember(i);
    await Promise.all([0, 1, 2].map((i) => c.startMember(i)));
    for (const group of [1, 2, 3]) await groupLeader(c, group);
    for (const i of [0, 1, 2]) {
      assert.deepEqual(
        c
          .server(i)
          .hosting.hostedShardGroups()
          .map((g) => [g.groupId, text(g.shardRecord.start), text(g.shardRecord.end), g.shardRecord.epoch]),
        [
          [1, '', 'f', 3],
          [2, 'm', '', 2],
          [3, 'f', 'm', 3],
        ],
      );
    }
  });
});
