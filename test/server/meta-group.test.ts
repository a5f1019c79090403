// The metadata group (group 0) hosted next to group 1 in every member: it elects a leader, the
// leader founds the shard map (one shard over the whole keyspace, a replica per member), it
// survives a restart from the shared WAL and its snapshot files, and it follows group 1's
// membership (a member added to group 1 becomes a voter of group 0, a node and a replica of
// shard 1).

import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { formatId } from '../../src/replica/ids.js';
import type { ConcordServer } from '../../src/server/server.js';
import type { Wal } from '../../src/storage/wal.js';
import { InProcessCluster } from './in-process-cluster.js';

async function until<T>(
  what: string,
  timeoutMs: number,
  probe: () => T | undefined,
  state: () => string = () => '',
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${state()}`);
    await sleep(20);
  }
}

/** etcd's strict reconfiguration check refuses a change until a restarted member counts as started again. */
async function reconfigure<T>(change: () => Promise<T>): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await change();
    } catch (error) {
      if (attempt > 50 || !/not enough started members/.test((error as Error).message)) throw error;
      await sleep(200);
    }
  }
}

describe('metadata group in the server', () => {
  let cluster: InProcessCluster | undefined;
  after(() => cluster?.dispose());

  it('elects a leader, founds one shard with every member as replica, recovers from the WAL, follows member add', async () => {
    cluster = await InProcessCluster.start({ size: 3 });
    const c = cluster;
    const ids = [0, 1, 2].map((i) => c.server(i).memberId).sort((a, b) => a - b);

    // One meta leader that all members agree on, and the initial state applied everywhere.
    const metaLeader = await until('a metadata leader', 10_000, () => {
      const leaders = new Set([0, 1, 2].map((i) => c.server(i).meta.leaderId));
      const [leader] = [...leaders];
      return leaders.size === 1 && leader !== 0 ? leader : undefined;
    });
    assert.ok(ids.includes(metaLeader!));
    for (const i of [0, 1, 2]) {
      const list = await until(`member ${i}'s shard map`, 10_000, () => {
        const l = c.server(i).shards.list();
        return l.shards.length > 0 ? l : undefined;
      });
      assert.equal(list.shards.length, 1);
      const [shard] = list.shards;
      assert.equal(shard!.id, 1);
      assert.equal(shard!.start, '');
      assert.equal(shard!.end, '');
      assert.equal(shard!.epoch, 1);
      assert.deepEqual(
        shard!.replicas.map((r) => r.id),
        ids.map(formatId),
      );
      assert.ok(shard!.replicas.every((r) => r.role === 'voter'));
      assert.deepEqual(
        [...c.server(i).meta.voters].sort((a, b) => a - b),
        ids,
      );
      assert.equal(c.server(i).meta.metaState?.nodes.length, 3);
    }

    // Restart a member: group 0 comes back from the WAL and the snapshot file, before any peer talks to it.
    const victim = [0, 1, 2].find((i) => c.server(i).memberId !== metaLeader)!;
    const appliedBefore = c.server(victim).meta.appliedIndex;
    assert.ok(appliedBefore > 1, `applied ${appliedBefore}`);
    await c.stopMember(victim);
    const snaps = readdirSync(join(c.members[victim]!.dataDir, 'member', 'meta')).filter((f) =>
      f.endsWith('.snap'),
    );
    assert.equal(snaps.length, 1, `snapshot files: ${snaps.join(',')}`);
    await c.startMember(victim);
    const restarted = c.server(victim);
    assert.ok(
      restarted.meta.appliedIndex >= appliedBefore,
      `applied ${restarted.meta.appliedIndex} < ${appliedBefore}`,
    );
    assert.equal(restarted.shards.list().shards.length, 1);
    assert.deepEqual(
      restarted.shards.list().shards[0]!.replicas.map((r) => r.id),
      ids.map(formatId),
    );

    // Idle and caught up, group 0 sleeps on every member (no ticks, no heartbeats) while group 1
    // keeps its leader; the member add below wakes it.
    await until(
      'group 0 to hibernate on every member',
      20_000,
      () => ([0, 1, 2].every((i) => c.server(i).meta.hibernating) ? true : undefined),
      () =>
        ` (${[0, 1, 2].map((i) => `${i}: hibernating ${c.server(i).meta.hibernating}, leader ${c.server(i).meta.leaderId}, applied ${c.server(i).meta.appliedIndex}`).join('; ')})`,
    );
    assert.equal(new Set([0, 1, 2].map((i) => c.server(i).meta.leaderId)).size, 1);

    // A member added to group 1 (not started) becomes a voter of group 0, a node, and a replica of shard 1.
    const leader = await c.leader();
    // etcd's strict reconfiguration check refuses a voter add until the restarted member counts as started.
    let added: Awaited<ReturnType<ConcordServer['memberAdd']>> | undefined;
    for (let attempt = 0; added === undefined; attempt++) {
      try {
        added = await c.server(leader).memberAdd(['http://127.0.0.1:21999'], false);
      } catch (error) {
        if (attempt > 50 || !/not enough started members/.test((error as Error).message)) throw error;
        await sleep(200);
      }
    }
    const newHex = added.member.id.toString(16);
    const isNew = (id: number) => formatId(id) === newHex;
    for (const i of [0, 1, 2]) {
      await until(
        `member ${i} sees the new member in group 0`,
        15_000,
        () => {
          const meta = c.server(i).meta;
          const shard = c.server(i).shards.list().shards[0];
          const replica = shard?.replicas.find((r) => r.id === newHex);
          return meta.voters.some(isNew) &&
            meta.metaState?.nodes.some((n) => isNew(n.id)) === true &&
            replica?.role === 'voter'
            ? true
            : undefined;
        },
        () =>
          JSON.stringify({
            voters: c.server(i).meta.voters,
            nodes: c.server(i).meta.metaState?.nodes.map((n) => [n.id, n.state]),
            list: c.server(i).shards.list(),
          }),
      );
    }
    // And removed again: it leaves group 0's voters, shard 1 and the node list.
    await reconfigure(async () => c.server(await c.leader()).memberRemove(added.member.id));
    for (const i of [0, 1, 2]) {
      await until(`member ${i} sees the member gone from group 0`, 15_000, () => {
        const meta = c.server(i).meta;
        const shard = c.server(i).shards.list().shards[0];
        return !meta.voters.some(isNew) &&
          meta.metaState?.nodes.find((n) => isNew(n.id))?.state === 'removed' &&
          shard?.replicas.every((r) => r.id !== newHex)
          ? true
          : undefined;
      });
    }
  });

  it("a hibernating group 0 elects a new leader when its leader's member stops", async () => {
    await cluster?.dispose();
    cluster = await InProcessCluster.start({ size: 3 });
    const c = cluster;
    await until('group 0 to hibernate on every member', 20_000, () =>
      [0, 1, 2].every((i) => c.server(i).meta.hibernating && c.server(i).meta.leaderId !== 0)
        ? true
        : undefined,
    );
    const oldLeader = c.server(0).meta.leaderId;
    const victim = [0, 1, 2].find((i) => c.server(i).memberId === oldLeader)!;
    await c.stopMember(victim);
    const others = [0, 1, 2].filter((i) => i !== victim);
    const newLeader = await until(
      'a new metadata leader on the two left',
      30_000,
      () => {
        const leaders = new Set(others.map((i) => c.server(i).meta.leaderId));
        const [leader] = [...leaders];
        return leaders.size === 1 && leader !== 0 && leader !== oldLeader ? leader : undefined;
      },
      () => ` (leaders: ${others.map((i) => c.server(i).meta.leaderId).join(', ')})`,
    );
    assert.ok(others.some((i) => c.server(i).memberId === newLeader));
  });

  it('a data dir with no group-0 records (made before the metadata group) founds it at restart', async () => {
    // The first run writes nothing of group 0 to the WAL: what a data dir from before group 0 holds.
    let dropGroupZero = true;
    const dropping = (wal: Wal): Wal =>
      new Proxy(wal, {
        get(target, prop, receiver) {
          const value = Reflect.get(target, prop, receiver) as unknown;
          if (typeof value !== 'function') return value;
          const writes = [
            'saveSnapshotMarker',
            'appendEntries',
            'saveHardState',
            'saveHardStateLazily',
            'releaseTo',
          ];
          return (...args: unknown[]) => {
            if (dropGroupZero && writes.includes(String(prop)) && args[0] === 0)
              return prop === 'releaseTo' ? Promise.resolve(0) : undefined;
            return (value as (...a: unknown[]) => unknown).apply(target, args);
          };
        },
      });
    const old = await InProcessCluster.start({
      size: 3,
      hooks: [0, 1, 2].map(() => ({ wrapWal: dropping })),
    });
    try {
      await old
        .server(await old.leader())
        .put({ key: new TextEncoder().encode('k'), value: new TextEncoder().encode('v') });
      for (const i of [0, 1, 2]) await old.stopMember(i);
      dropGroupZero = false;
      await Promise.all([0, 1, 2].map((i) => old.startMember(i)));
      for (const i of [0, 1, 2]) {
        // Nothing of group 0 came back from the WAL: the map comes from a new founding.
        const list = await until(`member ${i}'s shard map after the upgrade`, 15_000, () => {
          const l = old.server(i).shards.list();
          return l.shards.length > 0 ? l : undefined;
        });
        assert.equal(list.shards.length, 1);
        assert.equal(list.shards[0]!.replicas.length, 3);
      }
      const range = await old.server(0).range({ key: new TextEncoder().encode('k') });
      assert.equal(range.kvs.length, 1);
    } finally {
      await old.dispose();
    }
  });

  it('a member that joins gets group 0 from the leader (a snapshot) and keeps it across a restart', async () => {
    const joined = await InProcessCluster.start({ size: 3 });
    try {
      await until('the shard map', 10_000, () =>
        joined.server(0).shards.list().shards.length > 0 ? true : undefined,
      );
      const { index, peerUrl } = await joined.prepareJoiner();
      const leader = await joined.leader();
      for (let attempt = 0; ; attempt++) {
        try {
          await joined.server(leader).memberAdd([peerUrl], false);
          break;
        } catch (error) {
          if (attempt > 50 || !/not enough started members/.test((error as Error).message)) throw error;
          await sleep(200);
        }
      }
      await joined.startMember(index);
      const newcomer = joined.server(index);
      const list = await until('the newcomer to apply the shard map with 4 replicas', 15_000, () => {
        const l = newcomer.shards.list();
        return l.shards[0]?.replicas.length === 4 ? l : undefined;
      });
      assert.ok(list.shards[0]!.replicas.some((r) => r.id === formatId(newcomer.memberId)));
      assert.ok(newcomer.meta.voters.includes(newcomer.memberId));
      await joined.stopMember(index);
      await joined.startMember(index);
      assert.equal(joined.server(index).shards.list().shards[0]?.replicas.length, 4);
    } finally {
      await joined.dispose();
    }
  });

  it("runs on the cluster's engine: with --consensus multi-paxos it founds the map and follows a member add", async () => {
    const paxos = await InProcessCluster.start({ size: 3, consensus: 'multi-paxos' });
    try {
      for (const i of [0, 1, 2]) {
        await until(`member ${i}'s shard map`, 15_000, () =>
          paxos.server(i).shards.list().shards[0]?.replicas.length === 3 ? true : undefined,
        );
      }
      const leader = await paxos.leader();
      let added: Awaited<ReturnType<ConcordServer['memberAdd']>> | undefined;
      for (let attempt = 0; added === undefined; attempt++) {
        try {
          added = await paxos.server(leader).memberAdd(['http://127.0.0.1:21998'], false);
        } catch (error) {
          if (attempt > 50 || !/not enough started members/.test((error as Error).message)) throw error;
          await sleep(200);
        }
      }
      const newHex = added.member.id.toString(16);
      for (const i of [0, 1, 2]) {
        await until(`member ${i} sees the new member in group 0`, 15_000, () =>
          paxos.server(i).meta.voters.some((id) => formatId(id) === newHex) &&
          paxos
            .server(i)
            .shards.list()
            .shards[0]?.replicas.some((r) => r.id === newHex)
            ? true
            : undefined,
        );
      }
    } finally {
      await paxos.dispose();
    }
  });
});
