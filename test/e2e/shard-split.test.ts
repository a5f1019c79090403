// `concordctl shard split KEY` against real `concord` processes: a member that does not lead the
// metadata group passes the split on to the one that does; the shard's log takes the split, then
// the metadata group's map; every member starts the new shard's group, with a leader; the admin
// gRPC call and the JSON gateway route split too and refuse a key that is not strictly inside a
// shard; a member killed with SIGKILL and restarted hosts every group again. The data path is
// still group 1's (src/node/README.md): etcdctl reads and writes keys on both sides of a split.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { rawCall, rawClient } from '../api/harness.js';
import { type ProcessCluster, startConcordCluster } from '../support/cluster.js';
import { runConcordctl } from '../support/concordctl.js';
import { etcdctlOk } from '../support/etcdctl.js';
import { pollUntil, requestJson } from '../support/process-cluster.js';

interface ShardListJson {
  header: { memberId: string; metaLeader: string };
  shards: Array<{
    id: number;
    start: string;
    end: string;
    epoch: number;
    leader: string;
    replicas: unknown[];
  }>;
}

async function shardList(endpoint: string): Promise<ShardListJson> {
  const result = await runConcordctl(['--endpoints', endpoint, 'shard', 'list', '-w', 'json']);
  assert.equal(result.code, 0, result.stderr);
  return JSON.parse(result.stdout) as ShardListJson;
}

const b64 = (text: string) => Buffer.from(text).toString('base64');

/** Every member's map, once it has `count` shards and each a known leader. */
async function mapsWith(cluster: ProcessCluster, count: number): Promise<ShardListJson[]> {
  const maps: ShardListJson[] = [];
  for (const index of [0, 1, 2]) {
    maps.push(
      await pollUntil(`member ${index}'s map with ${count} shards and their leaders`, 20_000, async () => {
        const list = await shardList(cluster.endpoint(index)).catch(() => undefined);
        return list !== undefined && list.shards.length === count && list.shards.every((s) => s.leader !== '')
          ? list
          : undefined;
      }),
    );
  }
  return maps;
}

describe('concordctl shard split on real processes', { timeout: 180_000 }, () => {
  let cluster: ProcessCluster;

  before(async () => {
    cluster = await startConcordCluster({ size: 3 });
  });
  after(async () => {
    await cluster?.dispose();
  });

  it('splits through any member, starts the new groups everywhere, and keeps them across kill -9', async () => {
    await cluster.withLogsOnFailure(async () => {
      const endpoints = [0, 1, 2].map((i) => cluster.endpoint(i));
      await etcdctlOk(['put', 'apple', 'a1'], { endpoints });
      await etcdctlOk(['put', 'pear', 'p1'], { endpoints });
      const revisionOf = async (key: string) =>
        Number(JSON.parse(await etcdctlOk(['get', key, '-w', 'json'], { endpoints })).header.revision);
      const beforeSplit = await revisionOf('pear');

      await mapsWith(cluster, 1);
      // A member that does not lead the metadata group passes the split on.
      const notLeader = await pollUntil(
        'a member that does not lead the metadata group',
        10_000,
        async () => {
          for (const i of [0, 1, 2]) {
            const list = await shardList(cluster.endpoint(i));
            if (list.header.metaLeader !== '' && list.header.memberId !== list.header.metaLeader) return i;
          }
          return undefined;
        },
      );
      const split = await runConcordctl(['--endpoints', cluster.endpoint(notLeader), 'shard', 'split', 'm']);
      assert.equal(split.code, 0, split.stderr);
      assert.match(
        split.stdout,
        /split shard 1 at "m": shard 1 \["", "m"\) epoch 2, shard 2 \["m", \+inf\) epoch 2/,
      );

      for (const map of await mapsWith(cluster, 2)) {
        assert.deepEqual(
          map.shards.map((s) => [s.id, s.start, s.end, s.epoch, s.replicas.length]),
          [
            [1, '', b64('m'), 2, 3],
            [2, b64('m'), '', 2, 3],
          ],
        );
      }

      // The admin gRPC call refuses a key at a shard's start (and splits nothing).
      const client = rawClient(new URL(cluster.endpoint(0)).host, 'concordpb.Shard');
      try {
        await assert.rejects(
          rawCall(client, 'Split', { key: Buffer.from('m') }),
          (error: grpc.ServiceError) => {
            assert.equal(error.code, grpc.status.INVALID_ARGUMENT);
            assert.match(error.details, /not strictly inside/);
            return true;
          },
        );
      } finally {
        client.close();
      }
      // The JSON gateway route splits shard 2 at "t".
      const gateway = await requestJson(`${cluster.endpoint(1)}/v3/concord/shard/split`, {
        body: { key: b64('t') },
      });
      assert.equal(gateway.status, 200, JSON.stringify(gateway.body));
      const answer = gateway.body as {
        left: { ID: string; epoch: string };
        right: { ID: string; start: string };
      };
      assert.deepEqual(
        [answer.left.ID, answer.left.epoch, answer.right.ID, answer.right.start],
        ['2', '3', '3', b64('t')],
      );
      await mapsWith(cluster, 3);

      // Reads and writes on both sides (served by group 1 still).
      await etcdctlOk(['put', 'zebra', 'z1'], { endpoints: [cluster.endpoint(2)] });
      const all = await etcdctlOk(['get', '', '--prefix', '--keys-only'], { endpoints });
      assert.deepEqual(
        all.split('\n').filter((l) => l !== ''),
        ['apple', 'pear', 'zebra'],
      );

      // The timestamp oracle on the metadata leader: ranges above the keyspace's revision at the
      // first split, strictly increasing, also from the next leader after a kill -9 of this one.
      const handedOut: number[] = [];
      const oracleAt = async (index: number) => {
        const c = rawClient(new URL(cluster.endpoint(index)).host, 'concordpb.Shard');
        try {
          return (await rawCall(c, 'Revisions', { count: '5' })) as unknown as {
            first: string;
            count: string;
          };
        } finally {
          c.close();
        }
      };
      // Whoever leads the metadata group serves; leadership may move under a loaded machine
      // between finding the leader and asking it, so each fetch asks the members in turn.
      const fetchAny = () =>
        pollUntil('a member that serves revisions', 30_000, async () => {
          for (const i of cluster.runningIndexes()) {
            const range = await oracleAt(i).catch(() => undefined);
            if (range !== undefined) return { index: i, range };
          }
          return undefined;
        });
      let metaLeader = -1;
      for (let round = 0; round < 3; round++) {
        const { index, range } = await fetchAny();
        assert.equal(range.count, '5');
        handedOut.push(Number(range.first));
        metaLeader = index;
      }
      assert.ok(
        handedOut[0]! > beforeSplit,
        `first oracle revision ${handedOut[0]} is above the revision before the split, ${beforeSplit}`,
      );
      assert.deepEqual(
        handedOut,
        [...handedOut].sort((a, b) => a - b),
      );
      assert.equal(new Set(handedOut).size, 3);
      // The others refuse — unless leadership moved to one of them meanwhile, when it must hand
      // out revisions above every earlier one.
      for (const i of [0, 1, 2].filter((i) => i !== metaLeader)) {
        const outcome = await oracleAt(i).then(
          (range) => ({ range }),
          (error: grpc.ServiceError) => ({ error }),
        );
        if ('error' in outcome) assert.equal(outcome.error.code, grpc.status.FAILED_PRECONDITION);
        else
          assert.ok(
            Number(outcome.range.first) > handedOut.at(-1)!,
            'a new leader hands out higher revisions',
          );
      }
      await cluster.kill(metaLeader);
      const next = await pollUntil('a new metadata leader that serves revisions', 30_000, async () => {
        for (const i of cluster.runningIndexes()) {
          const range = await oracleAt(i).catch(() => undefined);
          if (range !== undefined) return Number(range.first);
        }
        return undefined;
      });
      assert.ok(next > handedOut.at(-1)! + 4, `the next leader's ${next} is above ${handedOut.at(-1)! + 4}`);
      await cluster.restart(metaLeader);

      // kill -9 a member and restart it: it hosts every group again and the map agrees.
      await cluster.kill(1);
      await cluster.restart(1);
      const maps = await mapsWith(cluster, 3);
      assert.deepEqual(
        maps[1]!.shards.map((s) => [s.id, s.start, s.end]),
        [
          [1, '', b64('m')],
          [2, b64('m'), b64('t')],
          [3, b64('t'), ''],
        ],
      );
      const after = await etcdctlOk(['get', '', '--prefix'], { endpoints: [cluster.endpoint(1)] });
      assert.deepEqual(
        after.split('\n').filter((l) => l !== ''),
        ['apple', 'a1', 'pear', 'p1', 'zebra', 'z1'],
      );
    });
  });
});
