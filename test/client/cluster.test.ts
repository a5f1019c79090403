// The client against a real 3-node cluster: KV with its options, txn, compaction errors, watch
// resuming across the death of the member it streams from, leases kept alive and lost.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  type Client,
  CompactedError,
  compare,
  type LeaseLostError,
  op,
  type WatchEvent,
} from '../../src/client/index.js';
import type { ProcessCluster } from '../support/process-cluster.js';
import { clientFor, startCluster, waitUntil } from './support.js';

describe('client against a 3-node cluster', { timeout: 90_000 }, () => {
  let cluster: ProcessCluster;
  let client: Client;

  before(async () => {
    cluster = await startCluster({ size: 3, electionTimeoutMs: 1000 });
    client = clientFor(cluster);
  });

  after(async () => {
    client?.close();
    await cluster?.dispose();
  });

  test('put/get/delete honour prefix, range, limit, sort, revision and prevKv', async () => {
    const first = await client.put('kv/a', '1');
    await client.put('kv/b', '2');
    await client.put('kv/c', '3');
    await client.put('kv/a', '4');
    assert.equal(await client.getString('kv/a'), '4');
    const old = await client.get('kv/a', { revision: first.header.revision });
    assert.equal(old.kvs[0]?.value.toString(), '1', 'a read at an old revision sees the old value');
    const all = await client.get('kv/', { prefix: true });
    assert.deepEqual(
      all.kvs.map((kv) => kv.key.toString()),
      ['kv/a', 'kv/b', 'kv/c'],
    );
    const range = await client.get('kv/a', { rangeEnd: 'kv/c' });
    assert.deepEqual(
      range.kvs.map((kv) => kv.key.toString()),
      ['kv/a', 'kv/b'],
    );
    const limited = await client.get('kv/', { prefix: true, limit: 2 });
    assert.equal(limited.kvs.length, 2);
    assert.equal(limited.more, true);
    assert.equal(limited.count, 3n);
    const byMod = await client.get('kv/', { prefix: true, sort: { target: 'mod', order: 'descend' } });
    assert.deepEqual(
      byMod.kvs.map((kv) => kv.key.toString()),
      ['kv/a', 'kv/c', 'kv/b'],
    );
    const counted = await client.get('kv/', { prefix: true, countOnly: true });
    assert.equal(counted.count, 3n);
    assert.equal(counted.kvs.length, 0);
    const single = await client.get('kv/b');
    assert.equal(single.kvs.length, 1, 'a plain get reads one key, not a range');
    const deleted = await client.delete('kv/', { prefix: true, prevKv: true });
    assert.equal(deleted.deleted, 3n);
    assert.deepEqual(deleted.prevKvs.map((kv) => kv.value.toString()).sort(), ['2', '3', '4']);
    assert.equal(await client.getString('kv/a'), undefined);
  });

  test('txn applies the then-branch only when every compare holds', async () => {
    await client.put('txn/x', '1');
    const hit = await client
      .txn()
      .if(compare.value('txn/x', '=', '1'), compare.version('txn/x', '>', 0))
      .then(op.put('txn/y', 'then'), op.get('txn/x'))
      .else(op.put('txn/y', 'else'))
      .commit();
    assert.equal(hit.succeeded, true);
    assert.equal(hit.responses[1]?.type, 'get');
    assert.equal(await client.getString('txn/y'), 'then');
    const miss = await client
      .txn()
      .if(compare.missing('txn/x'))
      .then(op.put('txn/y', 'then2'))
      .else(op.delete('txn/y'))
      .commit();
    assert.equal(miss.succeeded, false);
    assert.equal(await client.getString('txn/y'), undefined);
  });

  test('reading or watching a compacted revision fails with CompactedError', async () => {
    const put = await client.put('compact/k', 'v1');
    await client.put('compact/k', 'v2');
    const latest = await client.put('compact/k', 'v3');
    await client.compact(latest.header.revision);
    await assert.rejects(client.get('compact/k', { revision: put.header.revision }), CompactedError);
    const watcher = client.watch('compact/k', { fromRevision: put.header.revision });
    await assert.rejects(
      (async () => {
        for await (const _ of watcher) {
        }
      })(),
      (error: unknown) => error instanceof CompactedError && error.compactRevision === latest.header.revision,
    );
  });

  test('a watch resumes on another member when its member is killed, without repeating or skipping events', async () => {
    const watcher = client.watch('resume/', { prefix: true });
    await watcher.ready;
    const seen: WatchEvent[] = [];
    const consumer = (async () => {
      for await (const event of watcher) seen.push(event);
    })();
    const writer = clientFor(cluster);
    const total = 60;
    let killed = -1;
    try {
      for (let i = 0; i < total; i++) {
        if (i === 20) {
          const endpoint = watcher.currentEndpoint;
          killed = cluster.members.findIndex((m) => m.clientUrl === endpoint);
          assert.ok(killed >= 0, `watcher endpoint ${endpoint} is a member`);
          await cluster.kill(killed);
          // The watch is under test, not failover latency: if the leader died, wait for the new
          // one instead of letting a write time out (a timed-out write is never retried).
          await cluster.waitHealthy(20_000, cluster.runningIndexes());
        }
        await writer.put(`resume/${String(i).padStart(3, '0')}`, String(i));
      }
      await waitUntil('all events', 20_000, () => seen.length >= total);
      await sleep(200);
      assert.equal(seen.length, total, 'no event repeated');
      assert.deepEqual(
        seen.map((e) => e.kv.value.toString()),
        Array.from({ length: total }, (_, i) => String(i)),
        'every event once, in order',
      );
      for (let i = 1; i < seen.length; i++) {
        assert.ok(
          (seen[i]?.kv.modRevision ?? 0n) > (seen[i - 1]?.kv.modRevision ?? 0n),
          'revisions strictly increase',
        );
      }
      assert.ok(watcher.reconnects >= 1, 'the watcher reconnected');
      assert.notEqual(watcher.currentEndpoint, cluster.members[killed]?.clientUrl);
    } finally {
      watcher.close();
      await consumer;
      writer.close();
      if (killed >= 0) await cluster.restart(killed);
    }
  });

  test('a kept-alive lease outlives its TTL; its keys vanish when revoked and on-loss fires', async () => {
    const losses: LeaseLostError[] = [];
    const lease = await client.lease(2, { onLoss: (error) => losses.push(error) });
    await client.put('lease/k', 'v', { lease: lease.id });
    await sleep(3500);
    assert.ok(lease.renewals >= 3, `renewed ${lease.renewals} times in 3.5 s with TTL 2 s (every TTL/3)`);
    assert.equal(await client.getString('lease/k'), 'v', 'the key outlived the TTL');
    const info = await client.leaseTimeToLive(lease.id, { keys: true });
    assert.equal(info.grantedTtl, 2n);
    assert.deepEqual(
      info.keys.map((k) => k.toString()),
      ['lease/k'],
    );
    // Revoked by someone else: the keep-alive learns the lease is gone and reports the loss.
    const other = clientFor(cluster);
    await other.leaseRevoke(lease.id);
    other.close();
    await waitUntil('on-loss', 5000, () => losses.length === 1);
    assert.equal(losses[0]?.reason, 'expired');
    assert.equal(await client.getString('lease/k'), undefined);
  });

  test('a lease whose keep-alive stops expires and takes its keys', async () => {
    const lease = await client.lease(1);
    await client.put('lease/short', 'v', { lease: lease.id });
    lease.close();
    await waitUntil('lease expiry', 6000, async () => (await client.getString('lease/short')) === undefined);
    const info = await client.leaseTimeToLive(lease.id);
    assert.equal(info.ttl, -1n);
  });

  test('on-loss fires ("unrenewable") when no member can renew the lease before it expires', async () => {
    const losses: LeaseLostError[] = [];
    const lease = await client.lease(2, { onLoss: (error) => losses.push(error) });
    await waitUntil('a first renewal', 3000, () => lease.renewals >= 1);
    const running = cluster.runningIndexes();
    for (const index of running) cluster.pause(index);
    try {
      await waitUntil('on-loss while the cluster is frozen', 6000, () => losses.length === 1);
      assert.equal(losses[0]?.reason, 'unrenewable');
      assert.equal(lease.lost, losses[0]);
    } finally {
      for (const index of running) cluster.resume(index);
    }
    await cluster.waitHealthy();
  });

  test('writes fail over from a killed member and the leader is learned for writes', async () => {
    await client.refreshLeader();
    const leaderIndex = await cluster.leaderIndex();
    assert.equal(client.pool.leaderKnown, cluster.members[leaderIndex]?.clientUrl);
    const victim = (leaderIndex + 1) % 3;
    await cluster.kill(victim);
    try {
      for (let i = 0; i < 20; i++) await client.put(`failover/${i}`, String(i));
      const got = await client.get('failover/', { prefix: true, countOnly: true });
      assert.equal(got.count, 20n);
    } finally {
      await cluster.restart(victim);
    }
  });
});
