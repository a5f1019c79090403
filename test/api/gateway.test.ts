// The HTTP/1.1 JSON gateway, /health, /version and /metrics, on the same port as gRPC.

import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { type Harness, hostPort, rawCall, rawClient, startHarness } from './harness.js';

const b64 = (text: string) => Buffer.from(text).toString('base64');

describe('JSON gateway', () => {
  let harness: Harness;
  let healthy = true;

  before(async () => {
    harness = await startHarness({
      health: async () => (healthy ? { healthy: true, reason: '' } : { healthy: false, reason: 'no leader' }),
      metrics: async () => ({ contentType: 'text/plain; version=0.0.4', body: 'concord_up 1\n' }),
    });
  });

  after(async () => {
    await harness.close();
  });

  const post = async (path: string, body: unknown) => {
    const response = await fetch(`${harness.server.url}${path}`, {
      method: 'POST',
      body: JSON.stringify(body),
    });
    return { status: response.status, json: (await response.json()) as Record<string, unknown> };
  };

  it('put and range speak base64 bytes and string int64s, omitting defaults', async () => {
    const put = await post('/v3/kv/put', { key: b64('gw'), value: b64('hello') });
    assert.equal(put.status, 200);
    const header = put.json.header as Record<string, unknown>;
    assert.equal(header.revision, String(harness.backend.revision));
    assert.equal(header.cluster_id, harness.backend.clusterId.toString());
    const range = await post('/v3/kv/range', { key: b64('gw') });
    assert.deepEqual(range.json.kvs, [
      {
        key: b64('gw'),
        create_revision: header.revision,
        mod_revision: header.revision,
        version: '1',
        value: b64('hello'),
      },
    ]);
    assert.equal(range.json.count, '1');
    assert.equal('more' in range.json, false);
  });

  it('camelCase field names are accepted as jsonpb does', async () => {
    await post('/v3/kv/put', { key: b64('camel/a'), value: b64('1') });
    const range = await post('/v3/kv/range', {
      key: b64('camel/'),
      rangeEnd: b64('camel0'),
      countOnly: true,
    });
    assert.equal(range.json.count, '1');
    assert.equal(range.json.kvs, undefined);
  });

  it('txn, deleterange and compaction work through the gateway', async () => {
    const txn = await post('/v3/kv/txn', {
      compare: [{ key: b64('gw'), target: 'VALUE', result: 'EQUAL', value: b64('hello') }],
      success: [{ request_put: { key: b64('gw'), value: b64('swapped') } }],
    });
    assert.equal(txn.json.succeeded, true);
    const deleted = await post('/v3/kv/deleterange', { key: b64('gw'), prev_kv: true });
    assert.equal(deleted.json.deleted, '1');
    assert.equal((deleted.json.prev_kvs as Array<{ value: string }>)[0]!.value, b64('swapped'));
    const compaction = await post('/v3/kv/compaction', { revision: String(harness.backend.revision) });
    assert.equal(compaction.status, 200);
  });

  it('errors carry the gRPC code and etcd message with the gateway HTTP status', async () => {
    const empty = await post('/v3/kv/put', { value: b64('x') });
    assert.equal(empty.status, 400);
    assert.deepEqual(empty.json, {
      error: 'etcdserver: key is not provided',
      code: 3,
      message: 'etcdserver: key is not provided',
    });
    const lease = await post('/v3/lease/revoke', { ID: '31337' });
    assert.equal(lease.status, 404);
    assert.equal(lease.json.error, 'etcdserver: requested lease not found');
    const bad = await fetch(`${harness.server.url}/v3/kv/range`, { method: 'POST', body: '{not json' });
    assert.equal(bad.status, 400);
  });

  it('a put over max-request-bytes is refused through the gateway too; a huge body is cut off', async () => {
    const value = Buffer.alloc(1.5 * 1024 * 1024 + 1, 7).toString('base64');
    const big = await post('/v3/kv/put', { key: b64('gw-big'), value });
    assert.equal(big.status, 400);
    assert.equal(big.json.error, 'etcdserver: request is too large');
    const huge = await post('/v3/kv/put', { key: b64('gw-big'), value: 'A'.repeat(4 * 1024 * 1024) });
    assert.equal(huge.json.error, 'etcdserver: request is too large');
    const range = await post('/v3/kv/range', { key: b64('gw-big') });
    assert.equal(range.json.kvs, undefined);
  });

  it('lease grant, timetolive and leases keep 64-bit IDs as strings', async () => {
    const granted = await post('/v3/lease/grant', { TTL: '20', ID: '9007199254740993' });
    assert.equal(granted.json.ID, '9007199254740993');
    assert.equal(granted.json.TTL, '20');
    await post('/v3/kv/put', { key: b64('leased'), value: b64('v'), lease: '9007199254740993' });
    const ttl = await post('/v3/lease/timetolive', { ID: '9007199254740993', keys: true });
    assert.deepEqual(ttl.json.keys, [b64('leased')]);
    const leases = await post('/v3/lease/leases', {});
    assert.ok((leases.json.leases as Array<{ ID: string }>).some((l) => l.ID === '9007199254740993'));
  });

  it('maintenance status and member list answer in gateway JSON', async () => {
    const status = await post('/v3/maintenance/status', {});
    assert.equal(status.json.version, '3.4.0');
    assert.equal(status.json.leader, harness.backend.memberId.toString());
    const members = await post('/v3/cluster/member/list', {});
    assert.deepEqual(members.json.members, [
      {
        ID: harness.backend.memberId.toString(),
        name: 'n1',
        peerURLs: ['http://127.0.0.1:2380'],
        clientURLs: ['http://127.0.0.1:2379'],
      },
    ]);
  });

  it('/health, /version and /metrics answer GET like etcd', async () => {
    const health = await fetch(`${harness.server.url}/health`);
    assert.equal(health.status, 200);
    assert.deepEqual(await health.json(), { health: 'true' });
    healthy = false;
    const sick = await fetch(`${harness.server.url}/health`);
    assert.equal(sick.status, 503);
    assert.deepEqual(await sick.json(), { health: 'false', reason: 'no leader' });
    healthy = true;
    const version = await fetch(`${harness.server.url}/version`);
    assert.deepEqual(await version.json(), { etcdserver: '3.4.0', etcdcluster: '3.4.0' });
    const metrics = await fetch(`${harness.server.url}/metrics`);
    assert.equal(await metrics.text(), 'concord_up 1\n');
    assert.equal((await fetch(`${harness.server.url}/nope`)).status, 404);
  });

  it('/v3/watch streams created and event results as JSON lines', async () => {
    const lines: Array<Record<string, unknown>> = [];
    const request = httpRequest(`${harness.server.url}/v3/watch`, { method: 'POST' });
    const gotEvent = new Promise<void>((resolve, reject) => {
      request.on('response', (response) => {
        let buffer = '';
        response.on('data', (chunk: Buffer) => {
          buffer += chunk.toString();
          let newline = buffer.indexOf('\n');
          while (newline >= 0) {
            lines.push(JSON.parse(buffer.slice(0, newline)) as Record<string, unknown>);
            buffer = buffer.slice(newline + 1);
            newline = buffer.indexOf('\n');
          }
          if (lines.length >= 2) resolve();
        });
      });
      request.on('error', reject);
    });
    request.write(JSON.stringify({ create_request: { key: b64('streamed') } }));
    await new Promise((resolve) => setTimeout(resolve, 100));
    await post('/v3/kv/put', { key: b64('streamed'), value: b64('v1') });
    await gotEvent;
    request.destroy();
    const created = lines[0]!.result as Record<string, unknown>;
    assert.equal(created.created, true);
    const events = (lines[1]!.result as { events: Array<{ kv: { value: string }; type?: string }> }).events;
    assert.equal(events[0]!.kv.value, b64('v1'));
    assert.equal(events[0]!.type, undefined, 'PUT is the enum default and is omitted');
  });

  it('/v3/lease/keepalive answers each request line with a result line', async () => {
    await post('/v3/lease/grant', { TTL: '45', ID: '4242' });
    const request = httpRequest(`${harness.server.url}/v3/lease/keepalive`, { method: 'POST' });
    const lines = new Promise<string[]>((resolve, reject) => {
      request.on('response', (response) => {
        let buffer = '';
        response.on('data', (chunk: Buffer) => {
          buffer += chunk.toString();
          const complete = buffer.split('\n').filter((l) => l !== '');
          if (complete.length >= 2 && buffer.endsWith('\n')) resolve(complete);
        });
      });
      request.on('error', reject);
    });
    request.write(JSON.stringify({ ID: '4242' }));
    request.write(JSON.stringify({ ID: '777' }));
    const [known, unknown] = (await lines).map(
      (l) => (JSON.parse(l) as { result: Record<string, unknown> }).result,
    );
    request.destroy();
    assert.equal(known!.ID, '4242');
    assert.equal(known!.TTL, '45');
    assert.equal(unknown!.ID, '777');
    assert.equal(unknown!.TTL, undefined, 'TTL 0 is the default and is omitted');
  });

  it('gRPC and HTTP share the port: a gRPC put is visible through the gateway', async () => {
    const kv = rawClient(hostPort(harness.server), 'etcdserverpb.KV');
    await rawCall(kv, 'Put', { key: Buffer.from('shared'), value: Buffer.from('both') });
    kv.close();
    const range = await post('/v3/kv/range', { key: b64('shared') });
    assert.equal((range.json.kvs as Array<{ value: string }>)[0]!.value, b64('both'));
  });
});
