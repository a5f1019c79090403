// The client port's protective limits: HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS (etcd's
// --max-concurrent-streams), open connections and watchers per Watch stream (Concord's), and
// refusal of oversized requests before their bodies are buffered. Each test checks that the limit
// bites and that the server keeps serving everyone else.

import assert from 'node:assert/strict';
import { connect as connectHttp2 } from 'node:http2';
import { connect, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type * as grpc from '@grpc/grpc-js';
import type { ClientLimit } from '../../src/api/limit-stats.js';
import { defaultValidationLimits } from '../../src/api/validate.js';
import { defaultWatchSessionOptions } from '../../src/api/watch-session.js';
import { type Harness, hostPort, type RawClient, rawCall, rawClient, startHarness } from './harness.js';

const b = (text: string) => Buffer.from(text);
/** Its own connection: grpc-js shares one connection between clients of a global pool. */
const ownConnection: grpc.ChannelOptions = { 'grpc.use_local_subchannel_pool': 1 };

interface WatchResponse {
  watch_id: string;
  created: boolean;
  canceled: boolean;
  cancel_reason: string;
}

function openWatch(client: RawClient): {
  call: grpc.ClientDuplexStream<object, WatchResponse>;
  responses: WatchResponse[];
} {
  const open = (client as unknown as { Watch: () => grpc.ClientDuplexStream<object, WatchResponse> }).Watch;
  const call = open.call(client);
  const responses: WatchResponse[] = [];
  call.on('data', (response: WatchResponse) => responses.push(response));
  call.on('error', () => {});
  return { call, responses };
}

async function waitFor(what: string, condition: () => boolean, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function http2Frame(type: number, flags: number, streamId: number, payload = Buffer.alloc(0)): Buffer {
  const header = Buffer.alloc(9);
  header.writeUIntBE(payload.length, 0, 3);
  header[3] = type;
  header[4] = flags;
  header.writeUInt32BE(streamId, 5);
  return Buffer.concat([header, payload]);
}

describe('--max-concurrent-streams: SETTINGS_MAX_CONCURRENT_STREAMS of the client port', () => {
  const concurrentStreamsMax = 2;
  let harness: Harness;

  before(async () => {
    harness = await startHarness({ grpc: { concurrentStreamsMax } });
  });
  after(async () => harness.close());

  it('is advertised in the server SETTINGS', async () => {
    const session = connectHttp2(`http://${hostPort(harness.server)}`);
    session.on('error', () => {});
    const settings = await new Promise<{ maxConcurrentStreams?: number }>((resolve) =>
      session.once('remoteSettings', resolve),
    );
    session.close();
    assert.equal(settings.maxConcurrentStreams, concurrentStreamsMax);
  });

  it('a gRPC client queues calls beyond the limit on its connection; other connections are served', async () => {
    const client = rawClient(hostPort(harness.server), 'etcdserverpb.Watch');
    const kvSame = rawClient(hostPort(harness.server), 'etcdserverpb.KV');
    const kvOther = rawClient(hostPort(harness.server), 'etcdserverpb.KV', ownConnection);
    try {
      // Shares the watch client's connection (grpc-js's global subchannel pool).
      await rawCall(kvSame, 'Put', { key: b('k'), value: b('v') });
      const watches = [openWatch(client), openWatch(client), openWatch(client)];
      for (const [i, watch] of watches.entries()) watch.call.write({ create_request: { key: b(`w${i}`) } });
      await waitFor('two watchers created', () => watches.filter((w) => w.responses.length > 0).length === 2);
      await sleep(300);
      assert.equal(watches.filter((w) => w.responses.length > 0).length, 2, 'the third stream waits');
      assert.equal(harness.backend.watcherCount, 2);
      // A unary call is a stream too: on the full connection it waits, elsewhere it is served.
      let sameAnswered = false;
      const same = rawCall(kvSame, 'Range', { key: b('k') }).then((r) => {
        sameAnswered = true;
        return r;
      });
      const other = await rawCall(kvOther, 'Range', { key: b('k') });
      assert.equal((other.kvs as unknown[]).length, 1);
      await sleep(100);
      assert.equal(sameAnswered, false, 'a unary call waits for a free stream on the full connection');
      // Two streams end: the queued watch and range start.
      watches[0]!.call.cancel();
      watches[1]!.call.cancel();
      await waitFor(
        'the queued watch and range served',
        () => watches[2]!.responses.length > 0 && sameAnswered,
      );
      assert.equal(watches[2]!.responses[0]!.created, true);
      assert.equal(((await same).kvs as unknown[]).length, 1);
      for (const watch of watches) watch.call.cancel();
    } finally {
      client.close();
      kvSame.close();
      kvOther.close();
    }
  });

  it('a client that ignores the setting loses its connection; the server keeps serving', async () => {
    const uncaught: unknown[] = [];
    const onUncaught = (error: unknown) => uncaught.push(error);
    process.on('uncaughtException', onUncaught);
    const socket = connect(harness.server.port, harness.server.host);
    socket.on('error', () => {});
    let received = Buffer.alloc(0);
    const frames: Array<{ type: number; streamId: number; code?: number }> = [];
    let settingsAcked = false;
    const ended = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    socket.on('data', (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      while (received.length >= 9 && received.length >= 9 + received.readUIntBE(0, 3)) {
        const length = received.readUIntBE(0, 3);
        const type = received[3]!;
        const flags = received[4]!;
        const payload = received.subarray(9, 9 + length);
        frames.push({
          type,
          streamId: received.readUInt32BE(5) & 0x7fffffff,
          code: type === 7 ? payload.readUInt32BE(4) : type === 3 ? payload.readUInt32BE(0) : undefined,
        });
        received = received.subarray(9 + length);
        if (type === 4 && (flags & 1) === 0 && !settingsAcked) {
          settingsAcked = true;
          socket.write(http2Frame(4, 1, 0));
          // Three streams at once where two are allowed. HPACK: :method POST, :scheme http,
          // :path /, then :authority as a literal.
          const block = Buffer.concat([Buffer.from([0x83, 0x86, 0x84, 0x01, 9]), b('127.0.0.1')]);
          for (const id of [1, 3, 5]) socket.write(http2Frame(1, 4, id, block));
        }
      }
    });
    socket.write(Buffer.concat([b('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), http2Frame(4, 0, 0)]));
    await ended;
    await sleep(50);
    process.off('uncaughtException', onUncaught);
    assert.deepEqual(uncaught, [], 'the server threw nothing');
    assert.ok(settingsAcked);
    // nghttp2 treats the third stream as a connection error: the connection ends, nothing is
    // answered on any of its streams (grpc-go refuses only that stream with REFUSED_STREAM).
    assert.ok(
      frames.every((frame) => frame.type !== 1),
      `no stream was answered (frames: ${JSON.stringify(frames)})`,
    );
    const kv = rawClient(hostPort(harness.server), 'etcdserverpb.KV', ownConnection);
    try {
      await rawCall(kv, 'Put', { key: b('after'), value: b('v') });
    } finally {
      kv.close();
    }
  });
});

/** An HTTP/1.1 exchange on an open socket: resolves with the first bytes of the answer. */
function getVersion(socket: Socket): Promise<string> {
  return new Promise((resolve, reject) => {
    socket.once('data', (chunk: Buffer) => resolve(chunk.toString('latin1')));
    socket.once('close', () => reject(new Error('closed before an answer')));
    socket.write('GET /version HTTP/1.1\r\nHost: x\r\n\r\n');
  });
}

function openSocket(harness: Harness): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect(harness.server.port, harness.server.host, () => resolve(socket));
    socket.once('error', reject);
  });
}

describe('--max-client-connections', () => {
  const refusals: ClientLimit[] = [];
  let harness: Harness;

  before(async () => {
    harness = await startHarness({
      clientConnectionsMax: 2,
      onLimitRefused: (limit) => refusals.push(limit),
    });
  });
  after(async () => harness.close());

  it('closes connections beyond the limit at accept, counts them, and accepts again once one closes', async () => {
    const first = await openSocket(harness);
    const second = await openSocket(harness);
    assert.match(await getVersion(first), /^HTTP\/1\.1 200/);
    assert.match(await getVersion(second), /^HTTP\/1\.1 200/);
    const third = await openSocket(harness);
    third.on('error', () => {});
    await assert.rejects(getVersion(third), /closed before an answer/);
    assert.equal(harness.server.limitStats.refused.connections, 1);
    assert.deepEqual(refusals, ['connections']);
    // gRPC clients are refused the same way while the port is full (UNAVAILABLE, they retry).
    const kv = rawClient(hostPort(harness.server), 'etcdserverpb.KV', ownConnection);
    try {
      await assert.rejects(
        new Promise((resolve, reject) =>
          (kv as unknown as grpc.Client & { Range: (...args: unknown[]) => void }).Range(
            { key: b('k') },
            { deadline: Date.now() + 500 },
            (error: Error | null, response: unknown) => (error ? reject(error) : resolve(response)),
          ),
        ),
      );
      // The connections already open keep being served.
      assert.match(await getVersion(first), /^HTTP\/1\.1 200/);
    } finally {
      kv.close();
    }
    // One closes: a new connection is accepted and served.
    second.destroy();
    await sleep(100);
    const kvLater = rawClient(hostPort(harness.server), 'etcdserverpb.KV', ownConnection);
    try {
      const answer = await rawCall(kvLater, 'Range', { key: b('k') });
      assert.ok(answer.header !== undefined);
    } finally {
      kvLater.close();
      first.destroy();
    }
  });
});

describe('--max-watchers-per-stream', () => {
  const refusals: ClientLimit[] = [];
  let harness: Harness;

  before(async () => {
    harness = await startHarness({
      grpc: { watch: { ...defaultWatchSessionOptions, watchersPerStreamMax: 2 } },
      onLimitRefused: (limit) => refusals.push(limit),
    });
  });
  after(async () => harness.close());

  it('refuses a create beyond the limit as etcd refuses a create (created, canceled, reason, id -1)', async () => {
    const client = rawClient(hostPort(harness.server), 'etcdserverpb.Watch');
    try {
      const stream = openWatch(client);
      for (const key of ['a', 'b', 'c']) stream.call.write({ create_request: { key: b(key) } });
      await waitFor('three answers', () => stream.responses.length === 3);
      assert.deepEqual(
        stream.responses.map((r) => [r.watch_id, r.created, r.canceled]),
        [
          ['0', true, false],
          ['1', true, false],
          ['-1', true, true],
        ],
      );
      assert.equal(
        stream.responses[2]!.cancel_reason,
        'concord: more than 2 watchers on one stream; open another stream',
      );
      assert.equal(harness.server.limitStats.refused['watchers-per-stream'], 1);
      assert.deepEqual(refusals, ['watchers-per-stream']);
      // The stream goes on: cancel one, and a create fits again; another stream has its own budget.
      stream.call.write({ cancel_request: { watch_id: '0' } });
      stream.call.write({ create_request: { key: b('d') } });
      await waitFor('cancel and create answered', () => stream.responses.length === 5);
      assert.equal(stream.responses[4]!.created, true);
      assert.equal(stream.responses[4]!.canceled, false);
      const other = openWatch(client);
      other.call.write({ create_request: { key: b('e') } });
      await waitFor('the other stream answered', () => other.responses.length === 1);
      assert.equal(other.responses[0]!.canceled, false);
      stream.call.cancel();
      other.call.cancel();
    } finally {
      client.close();
    }
  });
});

describe('oversized requests are refused before their bodies are buffered', () => {
  const requestBytesMax = 64 * 1024;
  let harness: Harness;
  let gc: () => void;

  before(async () => {
    setFlagsFromString('--expose-gc');
    gc = runInNewContext('gc') as () => void;
    harness = await startHarness({
      grpc: { limits: { ...defaultValidationLimits, requestBytesMax } },
    });
  });
  after(async () => harness.close());

  /** Bytes held after a full collection: the V8 heap and Buffers outside it. */
  const retainedBytes = async () => {
    // Buffers are freed by callbacks of a collection: collect, let them run, collect again.
    gc();
    await new Promise((resolve) => setImmediate(resolve));
    gc();
    const usage = process.memoryUsage();
    return usage.heapUsed + usage.arrayBuffers;
  };

  it('a burst of oversized gRPC messages leaves the server holding no more memory', async (t) => {
    const oversize = Buffer.alloc(2 * 1024 * 1024, 7);
    // The client's own nghttp2 memory bound (10 MB) would reset streams of this burst.
    const session = connectHttp2(`http://${hostPort(harness.server)}`, { maxSessionMemory: 1024 });
    session.on('error', () => {});
    // One message prefix announcing 2 MiB, then the body: refused from the prefix alone.
    const prefix = Buffer.alloc(5);
    prefix.writeUInt32BE(oversize.length, 1);
    const send = () =>
      new Promise<string>((resolve) => {
        const stream = session.request({
          ':method': 'POST',
          ':path': '/etcdserverpb.KV/Put',
          'content-type': 'application/grpc',
        });
        let status = '';
        stream.on('response', (headers) => {
          status = `${headers['grpc-status']} ${headers['grpc-message']}`;
        });
        stream.on('error', () => {});
        stream.on('close', () => resolve(status));
        stream.resume();
        stream.write(prefix);
        stream.end(oversize);
      });
    await send();
    const before = await retainedBytes();
    const statuses: string[] = [];
    for (let round = 0; round < 10; round++) {
      statuses.push(...(await Promise.all(Array.from({ length: 10 }, send))));
    }
    // The client's unsent bytes of refused calls sit in its own socket buffers until it closes.
    await new Promise<void>((resolve) => session.close(resolve));
    const grownBytes = (await retainedBytes()) - before;
    t.diagnostic(`retained ${grownBytes} bytes more after the burst`);
    assert.equal(statuses.length, 100);
    for (const status of statuses) {
      assert.match(status, /^8 grpc: received message larger than max \(\d+ vs\. \d+\)$/);
    }
    // 200 MiB offered; what stays is bounded by a few messages' worth, not by the burst.
    assert.ok(grownBytes < 16 * 1024 * 1024, `retained ${grownBytes} bytes more after the burst`);
    const kv = rawClient(hostPort(harness.server), 'etcdserverpb.KV', ownConnection);
    try {
      await rawCall(kv, 'Put', { key: b('small'), value: b('v') });
    } finally {
      kv.close();
    }
  });

  it('the gateway refuses a body announced too large without reading it', async () => {
    const socket = await openSocket(harness);
    socket.on('error', () => {});
    const answer = new Promise<string>((resolve) => {
      let text = '';
      socket.on('data', (chunk: Buffer) => {
        text += chunk.toString('latin1');
      });
      socket.once('close', () => resolve(text));
    });
    // Content-Length announces 1 GiB; only the headers are sent.
    socket.write(
      `POST /v3/kv/put HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${2 ** 30}\r\n\r\n`,
    );
    const text = await answer;
    assert.match(text, /^HTTP\/1\.1 \d{3}/);
    assert.match(text, /request is too large/);
  });
});
