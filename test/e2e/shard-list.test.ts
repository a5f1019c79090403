// `concordctl shard list` against real `concord` processes: the metadata group (group 0) founds
// one shard over the whole keyspace with a replica on every member, any member answers, and a
// member killed with SIGKILL and restarted still has the map (recovered from its WAL and its
// snapshot file) before it could hear from a peer.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { rawCall, rawClient } from '../api/harness.js';
import { type ProcessCluster, startConcordCluster } from '../support/cluster.js';
import { runConcordctl } from '../support/concordctl.js';
import { pollUntil, requestJson } from '../support/process-cluster.js';

interface ShardListJson {
  header: { memberId: string; metaLeader: string; metaApplied: number; linearizable: boolean };
  shards: Array<{
    id: number;
    start: string;
    end: string;
    epoch: number;
    leader: string;
    replicas: Array<{ id: string; role: string }>;
    sizeBytes: number;
    qps: number;
  }>;
}

async function shardList(endpoint: string): Promise<ShardListJson> {
  const result = await runConcordctl(['--endpoints', endpoint, 'shard', 'list', '-w', 'json']);
  assert.equal(result.code, 0, result.stderr);
  return JSON.parse(result.stdout) as ShardListJson;
}

describe('concordctl shard list on real processes', { timeout: 120_000 }, () => {
  let cluster: ProcessCluster;

  before(async () => {
    cluster = await startConcordCluster({ size: 3 });
  });
  after(async () => {
    await cluster?.dispose();
  });

  it('shows one shard with 3 replicas from every member, also after a kill -9 and restart', async () => {
    await cluster.withLogsOnFailure(async () => {
      for (const index of [0, 1, 2]) {
        const list = await pollUntil(`member ${index}'s shard map`, 20_000, async () => {
          const l = await shardList(cluster.endpoint(index));
          return l.shards.length > 0 && l.shards[0]!.leader !== '' && l.header.metaLeader !== ''
            ? l
            : undefined;
        });
        assert.equal(list.shards.length, 1);
        const [shard] = list.shards;
        assert.equal(shard!.id, 1);
        assert.equal(shard!.start, '');
        assert.equal(shard!.end, '');
        assert.equal(shard!.epoch, 1);
        assert.equal(shard!.replicas.length, 3);
        assert.ok(shard!.replicas.every((r) => r.role === 'voter'));
        assert.ok(
          shard!.replicas.some((r) => r.id === shard!.leader),
          'the leader is one of the replicas',
        );
        assert.ok(shard!.sizeBytes > 0);
        assert.equal(list.header.linearizable, false);
      }

      const table = await runConcordctl(['--endpoints', cluster.endpoint(0), 'shard', 'list', '-w', 'table']);
      assert.equal(table.code, 0, table.stderr);
      assert.match(table.stdout, /ID.*RANGE.*EPOCH.*LEADER.*REPLICAS.*SIZE.*QPS/);
      assert.match(table.stdout, /\["", \+inf\)/);

      // The same map through the admin gRPC service and the JSON gateway (IDs in decimal there).
      const json = await shardList(cluster.endpoint(0));
      const hexIds = (ids: string[]) => ids.map((id) => BigInt(id).toString(16)).sort();
      const client = rawClient(new URL(cluster.endpoint(0)).host, 'concordpb.Shard');
      try {
        const answer = (await rawCall(client, 'List', {})) as unknown as {
          header: { member_id: string };
          shards: Array<{ ID: string; epoch: string; replicas: Array<{ ID: string; isLearner: boolean }> }>;
        };
        assert.equal(answer.shards.length, 1);
        assert.equal(answer.shards[0]!.ID, '1');
        assert.equal(answer.shards[0]!.epoch, '1');
        assert.deepEqual(
          hexIds(answer.shards[0]!.replicas.map((r) => r.ID)),
          json.shards[0]!.replicas.map((r) => r.id).sort(),
        );
        assert.equal(BigInt(answer.header.member_id).toString(16), json.header.memberId);
      } finally {
        client.close();
      }
      const gateway = await requestJson(`${cluster.endpoint(0)}/v3/concord/shard/list`, { body: {} });
      assert.equal(gateway.status, 200, JSON.stringify(gateway.body));
      const viaGateway = gateway.body as { shards: Array<{ ID: string; replicas: Array<{ ID: string }> }> };
      assert.equal(viaGateway.shards[0]!.ID, '1');
      assert.deepEqual(
        hexIds(viaGateway.shards[0]!.replicas.map((r) => r.ID)),
        json.shards[0]!.replicas.map((r) => r.id).sort(),
      );

      // Kill -9 a member and start it alone-first: it must show the map from its own disk.
      const before = await shardList(cluster.endpoint(2));
      await cluster.kill(2);
      await cluster.stop(0);
      await cluster.stop(1);
      await cluster.restart(2, { waitHealthy: false });
      const alone = await pollUntil('the restarted member to answer', 20_000, async () =>
        shardList(cluster.endpoint(2)).catch(() => undefined),
      );
      assert.equal(alone.shards.length, 1);
      assert.deepEqual(
        alone.shards[0]!.replicas.map((r) => r.id),
        before.shards[0]!.replicas.map((r) => r.id),
      );
      assert.ok(alone.header.metaApplied >= before.header.metaApplied);
      await cluster.restart(0, { waitHealthy: false });
      await cluster.restart(1, { waitHealthy: false });
      await cluster.waitHealthy();
    });
  });
});
