// Patroni 3 (Debian's `patroni`) with PostgreSQL 15 runs a two-node HA cluster with a 3-member
// Concord cluster as its etcd3 DCS. Patroni talks to its DCS only through the JSON gateway:
// /version, member list, range, put, txn, lease grant and keep-alive, and a long-lived watch.
// The test asserts one leader and one streaming replica (pg_stat_replication, as Patroni's REST
// API reports it), then kill -9s the leader's Patroni and its postmaster (PID from
// postmaster.pid) with every backend, and asserts the replica is promoted: its REST API answers
// /primary with 200 and the leader key in Concord names it.
//
// PATRONI_DCS=etcd runs the same scenario against a real etcd 3.4 (to check the test itself).
// Skipped, saying why, where patroni or PostgreSQL 15 is not installed (.ci/run installs both).

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startConcordCluster } from '../support/cluster.js';
import { startEtcdCluster } from '../support/etcd-cluster.js';
import { PatroniCluster, patroniUnavailable } from '../support/patroni.js';
import { gatewayPost, type ProcessCluster, pollUntil } from '../support/process-cluster.js';

const scope = 'concord-ha';
const leaderKey = `/service/${scope}/leader`;
const bootstrapTimeoutMs = 90_000;
/** ttl 10 s: the old leader key expires within 10 s, the replica takes over at its next loop. */
const failoverTimeoutMs = 45_000;

const b64 = (text: string) => Buffer.from(text).toString('base64');

/** The leader key's value (the leader's Patroni name) as the DCS holds it. */
async function dcsLeader(dcs: ProcessCluster): Promise<string | undefined> {
  for (const endpoint of dcs.endpoints()) {
    try {
      const range = await gatewayPost(endpoint, '/v3/kv/range', { key: b64(leaderKey) });
      const kvs = (range.kvs ?? []) as Array<{ value?: string }>;
      return kvs[0]?.value === undefined ? undefined : Buffer.from(kvs[0].value, 'base64').toString();
    } catch {
      // try the next member
    }
  }
  return undefined;
}

const skip = patroniUnavailable();

describe('Patroni HA on Concord as its etcd3 DCS', { skip: skip ?? false }, () => {
  let dcs: ProcessCluster;
  let patroni: PatroniCluster;

  before(async () => {
    // node:test does not print why a before hook failed: say it here.
    try {
      await setUp();
    } catch (error) {
      process.stderr.write(
        `Patroni test set-up failed: ${error instanceof Error ? error.stack : String(error)}\n`,
      );
      throw error;
    }
  });

  const setUp = async () => {
    dcs =
      process.env.PATRONI_DCS === 'etcd'
        ? await startEtcdCluster({ size: 3 })
        : await startConcordCluster({ size: 3 });
    patroni = await PatroniCluster.create({
      scope,
      dcsHosts: dcs.endpoints().map((url) => url.slice('http://'.length)),
      names: ['pg1', 'pg2'],
    });
  };

  after(async () => {
    await patroni?.dispose();
    await dcs?.dispose();
  });

  it('elects one leader with a streaming replica, and promotes the replica when the leader is killed', async () => {
    try {
      await Promise.all([patroni.start('pg1'), patroni.start('pg2')]);

      // One leader, one replica streaming from it.
      const { leader, replica } = await pollUntil(
        'a Patroni leader with a streaming replica',
        bootstrapTimeoutMs,
        async () => {
          for (const [leader, replica] of [
            ['pg1', 'pg2'],
            ['pg2', 'pg1'],
          ] as const) {
            const primary = await patroni.rest(leader, '/primary');
            if (primary?.status !== 200) continue;
            const standby = await patroni.rest(replica, '/replica');
            const status = await patroni.rest(leader, '/patroni');
            const replication = (status?.body.replication ?? []) as Array<{
              application_name?: string;
              state?: string;
            }>;
            const streaming = replication.some(
              (r) => r.application_name === replica && r.state === 'streaming',
            );
            if (standby?.status === 200 && streaming) return { leader, replica };
          }
          return undefined;
        },
      );
      assert.equal(await dcsLeader(dcs), leader, 'the DCS leader key names the leader');
      assert.equal((await patroni.rest(replica, '/primary'))?.status, 503, 'only one primary');

      // kill -9 of the leader's Patroni and PostgreSQL.
      const postmaster = patroni.postmasterPid(leader);
      assert.ok(postmaster !== undefined, 'the leader runs a postmaster');
      const killedAt = Date.now();
      patroni.killHard(leader);

      await pollUntil(`${replica} promoted`, failoverTimeoutMs, async () => {
        const primary = await patroni.rest(replica, '/primary');
        return primary?.status === 200 && (await dcsLeader(dcs)) === replica ? true : undefined;
      });
      const failoverMs = Date.now() - killedAt;
      assert.ok(failoverMs < failoverTimeoutMs, `failover took ${failoverMs} ms`);
      const cluster = await patroni.rest(replica, '/cluster');
      const members = (cluster?.body.members ?? []) as Array<{ name: string; role: string }>;
      assert.deepEqual(
        members.filter((m) => m.role === 'leader').map((m) => m.name),
        [replica],
      );
    } catch (error) {
      process.stderr.write(patroni.dumpLogs());
      process.stderr.write(dcs.dumpLogs());
      throw error;
    }
  });
});
