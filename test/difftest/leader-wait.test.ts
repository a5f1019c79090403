// Found by the differential fuzzer (kv seed 737131309): a LeaseKeepAlive sent to a follower that
// knew no leader yet got "etcdserver: no leader" at once from Concord, where etcd waits for a
// leader (waitLeader, up to the request timeout) and then answers. Here the follower loses its
// leader (the two other members are paused), gets a keep-alive and a time-to-live, and answers
// both once the others are back.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { startConcordCluster } from '../support/cluster.js';
import { decodeResponse, encodeRequest, grpcPath } from './requests.js';
import { WireConnection } from './wire-client.js';

const leaseId = '4242';
const timeoutMs = 20_000;

async function call(connection: WireConnection, method: string, request: Record<string, unknown>) {
  const outcome = await connection.unary(grpcPath(method), encodeRequest(method, request), timeoutMs);
  if (!outcome.ok) return { error: `${outcome.code} ${outcome.details}` };
  return decodeResponse(method, outcome.bytes);
}

function keepAlive(connection: WireConnection): Promise<unknown> {
  const method = 'etcdserverpb.Lease/LeaseKeepAlive';
  const stream = connection.bidi(grpcPath(method));
  return new Promise((resolve) => {
    stream.on('data', (bytes: Buffer) => {
      resolve(decodeResponse(method, bytes));
      stream.cancel();
    });
    stream.on('error', (error: { code: number; details: string }) =>
      resolve({ error: `${error.code} ${error.details}` }),
    );
    stream.write(encodeRequest(method, { ID: leaseId }));
  });
}

describe('a follower that knows no leader', () => {
  it('waits for one before it answers a lease keep-alive or time-to-live', async () => {
    const cluster = await startConcordCluster({ size: 3, heartbeatIntervalMs: 100, electionTimeoutMs: 1000 });
    const connections: WireConnection[] = [];
    const connect = (index: number) => {
      const connection = new WireConnection(cluster.member(index).clientUrl.replace(/^https?:\/\//, ''));
      connections.push(connection);
      return connection;
    };
    try {
      const leader = await cluster.leaderIndex();
      const [follower, other] = cluster.runningIndexes().filter((i) => i !== leader) as [number, number];
      await call(connect(leader), 'etcdserverpb.Lease/LeaseGrant', { ID: leaseId, TTL: '3600' });
      const survivor = connect(follower);
      cluster.pause(leader);
      cluster.pause(other);
      for (let status: Record<string, unknown> = {}; String(status.leader) !== '0'; await sleep(50)) {
        status = await call(survivor, 'etcdserverpb.Maintenance/Status', {});
      }
      const renewed = keepAlive(survivor);
      const timeToLive = call(survivor, 'etcdserverpb.Lease/LeaseTimeToLive', { ID: leaseId });
      const early = await Promise.race([renewed, sleep(500, 'pending')]);
      assert.equal(early, 'pending', `answered with no leader: ${JSON.stringify(early)}`);
      cluster.resume(leader);
      cluster.resume(other);
      const [renewedAnswer, ttlAnswer] = (await Promise.all([renewed, timeToLive])) as Record<
        string,
        unknown
      >[];
      assert.equal(String(renewedAnswer!.TTL), '3600', JSON.stringify(renewedAnswer));
      assert.equal(String(ttlAnswer!.grantedTTL), '3600', JSON.stringify(ttlAnswer));
    } finally {
      for (const connection of connections) connection.close();
      await cluster.dispose();
    }
  });
});
