// etcdctl's lock and elect against the same cluster as the client's Mutex and Election: both
// use etcd's key layout, so mutual exclusion and leadership hold across the two implementations.

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { type Client, Election, Mutex } from '../../src/client/index.js';
import { EtcdctlProcess, etcdctlPath } from '../support/etcdctl.js';
import type { ProcessCluster } from '../support/process-cluster.js';
import { clientFor, startCluster, waitUntil } from './support.js';

describe('interop with etcdctl lock and elect', {
  timeout: 90_000,
  skip: !existsSync(etcdctlPath) && `no etcdctl at ${etcdctlPath}`,
}, () => {
  let cluster: ProcessCluster;
  let client: Client;
  const processes: EtcdctlProcess[] = [];
  const etcdctl = (args: string[]) => {
    const p = new EtcdctlProcess(args, cluster.endpoints());
    processes.push(p);
    return p;
  };

  before(async () => {
    cluster = await startCluster({ size: 3, electionTimeoutMs: 1000 });
    client = clientFor(cluster);
  });

  after(async () => {
    for (const p of processes) await p.stop();
    client?.close();
    await cluster?.dispose();
  });

  test('a Mutex waits while etcdctl holds the lock and gets it when etcdctl dies (its lease expires)', async () => {
    const holder = etcdctl(['lock', '--ttl=2', 'interop/lock']);
    await holder.waitFor('etcdctl to hold the lock', (out) => /^interop\/lock\/[0-9a-f]+\n/.test(out));
    const etcdKey = holder.stdout.trim();
    const owner = await client.get('interop/lock/', {
      prefix: true,
      sort: { target: 'create', order: 'ascend' },
      limit: 1,
    });
    assert.equal(owner.kvs[0]?.key.toString(), etcdKey, "etcdctl's key is the holder in the shared layout");
    const mutex = new Mutex(client, 'interop/lock', { ttlSeconds: 5 });
    let locked = false;
    const locking = mutex.lock().then(() => {
      locked = true;
    });
    await sleep(700);
    assert.equal(locked, false, 'no overlap with the etcdctl holder');
    await holder.stop();
    await locking;
    assert.ok(mutex.token > (owner.kvs[0]?.createRevision ?? 0n));
    await mutex.unlock();
  });

  test('etcdctl lock waits while a Mutex holds the lock and gets it on unlock', async () => {
    const mutex = new Mutex(client, 'interop/lock2', { ttlSeconds: 5 });
    await mutex.lock();
    const waiter = etcdctl(['lock', '--ttl=5', 'interop/lock2']);
    await sleep(1000);
    assert.equal(waiter.stdout, '', 'etcdctl is still waiting');
    await mutex.unlock();
    await waiter.waitFor('etcdctl to get the lock', (out) => /^interop\/lock2\/[0-9a-f]+\n/.test(out));
    await waiter.stop();
  });

  test("etcdctl elect and Election see one leader; the candidate takes over when etcdctl's session ends; etcdctl elect -l observes", async () => {
    const leader = etcdctl(['elect', 'interop/election', 'from-etcdctl']);
    await leader.waitFor('etcdctl to win', (out) => out.includes('from-etcdctl'));
    const observer = new Election(client, 'interop/election');
    assert.equal((await observer.leader())?.value.toString(), 'from-etcdctl');
    const listener = etcdctl(['elect', '-l', 'interop/election']);
    await listener.waitFor('listener to print the first leader', (out) => out.includes('from-etcdctl'));
    const candidate = new Election(client, 'interop/election', { ttlSeconds: 5 });
    const campaigning = candidate.campaign('from-client');
    await sleep(500);
    assert.equal(candidate.isLeader, false);
    // etcdctl elect has no --ttl (60 s sessions): end its session by revoking its lease, as its
    // expiry would after a crash.
    const leaderKv = (
      await client.get('interop/election/', {
        prefix: true,
        sort: { target: 'create', order: 'ascend' },
        limit: 1,
      })
    ).kvs[0];
    assert.ok(leaderKv !== undefined && leaderKv.lease !== 0n);
    await client.leaseRevoke(leaderKv.lease);
    await campaigning;
    await leader.stop();
    assert.equal((await observer.leader())?.value.toString(), 'from-client');
    await listener.waitFor('listener to see the client leader', (out) => out.includes('from-client'));
    await candidate.proclaim('from-client-v2');
    await listener.waitFor('listener to see the proclamation', (out) => out.includes('from-client-v2'));
    await candidate.resign();
    await waitUntil('no leader', 3000, async () => (await observer.leader()) === undefined);
  });
});
