// Streaming and coordination services over raw gRPC: LeaseKeepAlive, Snapshot, Lock, Election,
// Maintenance.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type * as grpc from '@grpc/grpc-js';
import { type Harness, hostPort, type RawClient, rawCall, rawClient, startHarness } from './harness.js';

const b = (text: string) => Buffer.from(text);

function collect<T>(
  stream: grpc.ClientReadableStream<T> | grpc.ClientDuplexStream<object, T>,
  count: number,
): Promise<T[]> {
  return new Promise((resolve, reject) => {
    const items: T[] = [];
    stream.on('data', (item: T) => {
      items.push(item);
      if (items.length === count) resolve(items);
    });
    stream.on('error', reject);
    stream.on('end', () => resolve(items));
  });
}

describe('lease keep-alive, snapshot, lock, election and maintenance services', () => {
  let harness: Harness;
  let lease: RawClient;
  let maintenance: RawClient;
  let lock: RawClient;
  let election: RawClient;

  before(async () => {
    harness = await startHarness();
    const address = hostPort(harness.server);
    lease = rawClient(address, 'etcdserverpb.Lease');
    maintenance = rawClient(address, 'etcdserverpb.Maintenance');
    lock = rawClient(address, 'v3lockpb.Lock');
    election = rawClient(address, 'v3electionpb.Election');
  });

  after(async () => {
    for (const client of [lease, maintenance, lock, election]) client.close();
    await harness.close();
  });

  it('keep-alive answers in request order; an unknown lease gets TTL 0, not an error', async () => {
    await rawCall(lease, 'LeaseGrant', { TTL: '15', ID: '501' });
    const open = (
      lease as unknown as {
        LeaseKeepAlive: () => grpc.ClientDuplexStream<object, { ID: string; TTL: string }>;
      }
    ).LeaseKeepAlive;
    const stream = open.call(lease);
    const replies = collect(stream, 3);
    stream.write({ ID: '501' });
    stream.write({ ID: '999' });
    stream.write({ ID: '501' });
    const got = await replies;
    stream.end();
    assert.deepEqual(
      got.map((r) => [r.ID, r.TTL]),
      [
        ['501', '15'],
        ['999', '0'],
        ['501', '15'],
      ],
    );
  });

  it('snapshot streams the backend chunks followed by their sha256', async () => {
    await harness.backend.put({ key: b('snap-key'), value: b('v') });
    const open = (
      maintenance as unknown as {
        Snapshot: (r: object) => grpc.ClientReadableStream<{ blob: Buffer; remaining_bytes: string }>;
      }
    ).Snapshot;
    const messages = await collect(open.call(maintenance, {}), 100);
    const data = Buffer.concat(messages.slice(0, -1).map((m) => m.blob));
    const trailer = messages.at(-1)!;
    assert.equal(data.length % 512, 0);
    assert.ok(data.toString().includes(b('snap-key').toString('hex')));
    assert.deepEqual(trailer.blob, createHash('sha256').update(data).digest());
    assert.equal(trailer.remaining_bytes, '0');
  });

  it('lock returns a key under the name; a second locker waits until unlock', async () => {
    for (const ID of ['1', '2']) await rawCall(lease, 'LeaseGrant', { TTL: '30', ID });
    const first = await rawCall(lock, 'Lock', { name: b('L'), lease: '1' });
    assert.match((first.key as Buffer).toString(), /^L\//);
    let secondDone = false;
    const second = rawCall(lock, 'Lock', { name: b('L'), lease: '2' }).then((r) => {
      secondDone = true;
      return r;
    });
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(secondDone, false, 'second locker must wait');
    await rawCall(lock, 'Unlock', { key: first.key });
    const got = await second;
    assert.notDeepEqual(got.key, first.key);
    await rawCall(lock, 'Unlock', { key: got.key });
  });

  it('lock without a name is refused with etcd text', async () => {
    await assert.rejects(rawCall(lock, 'Lock', { name: b('') }), {
      details: '"name" field must be provided',
    });
  });

  it('campaign, leader, proclaim, observe and resign', async () => {
    await assert.rejects(rawCall(election, 'Leader', { name: b('E') }), { details: 'election: no leader' });
    await rawCall(lease, 'LeaseGrant', { TTL: '30', ID: '7' });
    const won = await rawCall(election, 'Campaign', { name: b('E'), lease: '7', value: b('first') });
    const leaderKey = won.leader as { key: Buffer; rev: string };
    assert.match(leaderKey.key.toString(), /^E\//);
    const open = (
      election as unknown as { Observe: (r: object) => grpc.ClientReadableStream<{ kv: { value: Buffer } }> }
    ).Observe;
    const observed = open.call(election, { name: b('E') });
    const values = collect(observed, 2);
    await new Promise((resolve) => setTimeout(resolve, 50));
    await rawCall(election, 'Proclaim', { leader: won.leader, value: b('second') });
    assert.deepEqual(
      (await values).map((r) => r.kv.value.toString()),
      ['first', 'second'],
    );
    observed.cancel();
    const current = await rawCall(election, 'Leader', { name: b('E') });
    assert.equal((current.kv as { value: Buffer }).value.toString(), 'second');
    await assert.rejects(rawCall(election, 'Proclaim', { value: b('x') }), {
      details: '"leader" field must be provided',
    });
    await rawCall(election, 'Resign', { leader: won.leader });
    await assert.rejects(rawCall(election, 'Leader', { name: b('E') }), { details: 'election: no leader' });
  });

  it('status, alarm, hashkv, defragment and move-leader answer with headers', async () => {
    const status = await rawCall(maintenance, 'Status', {});
    assert.equal(status.leader, harness.backend.memberId.toString());
    assert.equal(status.version, '3.4.0');
    const alarms = await rawCall(maintenance, 'Alarm', { action: 'GET' });
    assert.deepEqual(alarms.alarms, []);
    const hash = await rawCall(maintenance, 'HashKV', { revision: 0 });
    assert.equal(hash.hash, 5678);
    await rawCall(maintenance, 'Defragment', {});
    await assert.rejects(rawCall(maintenance, 'MoveLeader', { targetID: '3' }), {
      details: 'etcdserver: member not found',
    });
  });
});
