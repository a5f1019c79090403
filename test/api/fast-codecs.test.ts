// The hot KV methods decode requests with our own codec (wire/etcd-codecs.ts); malformed bytes
// must still end as protobufjs' failures do: INTERNAL, and the server keeps serving.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { type Harness, hostPort, type RawClient, rawCall, rawClient, startHarness } from './harness.js';

const callDeadlineMs = 5000;

function rawBytesCall(client: grpc.Client, path: string, body: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest(
      path,
      (bytes: Buffer) => bytes,
      (bytes: Buffer) => bytes,
      body,
      new grpc.Metadata(),
      { deadline: new Date(Date.now() + callDeadlineMs) },
      (error, value) => (error ? reject(error) : resolve(value as Buffer)),
    );
  });
}

describe('fast request codecs on the gRPC server', () => {
  let harness: Harness;
  let kv: RawClient;

  before(async () => {
    harness = await startHarness();
    kv = rawClient(hostPort(harness.server), 'etcdserverpb.KV');
  });

  after(async () => {
    kv.close();
    await harness.close();
  });

  const malformed: Array<[string, Buffer]> = [
    ['a truncated length-delimited key', Buffer.from([0x0a, 0x05, 0x61])],
    ['an unterminated varint', Buffer.from([0x18, 0xff, 0xff])],
    ['wire type 7', Buffer.from([0x0f])],
    ['a known field with the wrong wire type', Buffer.from([0x08, 0x01])],
  ];

  for (const method of ['Put', 'Range', 'DeleteRange', 'Txn']) {
    for (const [what, body] of malformed) {
      it(`${method} with ${what} fails with INTERNAL`, async () => {
        await assert.rejects(rawBytesCall(kv, `/etcdserverpb.KV/${method}`, body), {
          code: grpc.status.INTERNAL,
        });
      });
    }
  }

  it('valid requests still work after malformed ones', async () => {
    await rawCall(kv, 'Put', { key: Buffer.from('after-garbage'), value: Buffer.from('v') });
    const got = await rawCall(kv, 'Range', { key: Buffer.from('after-garbage') });
    const kvs = got.kvs as Array<{ value: Buffer }>;
    assert.equal(kvs.length, 1);
    assert.deepEqual(kvs[0]?.value, Buffer.from('v'));
  });
});
