import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, it } from 'node:test';
import { crc32 } from 'node:zlib';
import { type Message, MessageType, message } from '../../src/raft/types.js';
import { encodeBatch } from '../../src/transport/codec.js';
import { FrameType } from '../../src/transport/frame.js';
import {
  fileSnapshotSink,
  fileSnapshotSource,
  SnapshotReceiver,
  type SnapshotSink,
  type SnapshotSourceProvider,
} from '../../src/transport/snapshot.js';
import {
  encodeSnapshotEnd,
  snapshotChunkPayloadBytes,
  writeSnapshotChunk,
} from '../../src/transport/wire.js';
import { FlakyProxy, type Harness, sleep, startTransport, waitFor } from './helpers.js';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function node(id: number, overrides: Parameters<typeof startTransport>[1] = {}): Promise<Harness> {
  const harness = await startTransport(id, overrides);
  cleanups.push(() => harness.transport.close());
  return harness;
}

function pattern(bytes: number, seed: number): Buffer {
  const data = Buffer.allocUnsafe(bytes);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < bytes; i++) {
    if ((i & 3) === 0) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
    }
    data[i] = (x >>> ((i & 3) * 8)) & 0xff;
  }
  return data;
}

function msgSnap(from: number, to: number, data: Uint8Array, index = 1000): Message {
  return message({
    type: MessageType.Snapshot,
    from,
    to,
    term: 5,
    snapshot: {
      metadata: {
        index,
        term: 4,
        confState: {
          voters: [1, 2, 3],
          learners: [4],
          votersOutgoing: [],
          learnersNext: [],
          autoLeave: false,
        },
      },
      data,
    },
  });
}

/** Receiver 1 and sender 2; the sender reaches the receiver through a proxy it alone uses. */
async function pair(
  senderOptions: Parameters<typeof startTransport>[1] = {},
  receiverOptions: Parameters<typeof startTransport>[1] = {},
) {
  const receiver = await node(1, receiverOptions);
  const sender = await node(2, senderOptions);
  const proxy = await FlakyProxy.start(Number(new URL(receiver.transport.url).port));
  cleanups.push(() => proxy.close());
  receiver.transport.addPeer(2, sender.transport.url);
  sender.transport.addPeer(1, proxy.url);
  await waitFor('message link up', () => receiver.transport.stats().peers['2']?.connected === 1);
  return { receiver, sender, proxy };
}

const MiB = 1 << 20;

describe('snapshot streaming', () => {
  it('transfers a 20 MiB snapshot in verified chunks and reports success', async () => {
    const { receiver, sender } = await pair();
    const data = pattern(20 * MiB, 7);
    const m = msgSnap(2, 1, data);
    sender.transport.send([m]);
    await waitFor('snapshot status', () => sender.snapshotStatus.length === 1, 20_000);
    assert.deepEqual(sender.snapshotStatus, [{ peer: 1, ok: true }]);
    const got = receiver.received.filter((r) => r.type === MessageType.Snapshot);
    assert.equal(got.length, 1);
    assert.deepEqual(got[0]!.snapshot!.metadata, m.snapshot!.metadata);
    assert.equal(got[0]!.snapshot!.data.length, data.length);
    assert.equal(crc32(got[0]!.snapshot!.data), crc32(data));
    assert.ok(Buffer.from(got[0]!.snapshot!.data).equals(data));
    assert.equal(sender.transport.stats().peers['1']!.snapshotBytesSent, 20 * MiB);
    assert.equal(receiver.transport.stats().peers['2']!.snapshotsReceived, 1);
  });

  it('detects a corrupted chunk, delivers nothing, reports failure, and a retry succeeds', async () => {
    const { receiver, sender, proxy } = await pair();
    const data = pattern(4 * MiB, 11);
    // Connection 0 through the proxy is the first snapshot stream; 2.5 MiB is inside chunk 3.
    proxy.corrupt = { connection: 0, offset: 2.5 * MiB };
    sender.transport.send([msgSnap(2, 1, data)]);
    await waitFor('failure reported', () => sender.snapshotStatus.length === 1, 10_000);
    assert.deepEqual(sender.snapshotStatus, [{ peer: 1, ok: false }]);
    assert.ok(sender.unreachable.includes(1), 'a failed snapshot also reports the peer unreachable');
    assert.ok(receiver.errors.some((e) => e.error.code === 'FRAME_CRC_MISMATCH' && e.peer === 2));
    assert.equal(receiver.received.filter((r) => r.type === MessageType.Snapshot).length, 0);
    sender.transport.send([msgSnap(2, 1, data)]);
    await waitFor('retry reported', () => sender.snapshotStatus.length === 2, 10_000);
    assert.deepEqual(sender.snapshotStatus[1], { peer: 1, ok: true });
    const got = receiver.received.filter((r) => r.type === MessageType.Snapshot);
    assert.equal(got.length, 1);
    assert.ok(Buffer.from(got[0]!.snapshot!.data).equals(data));
  });

  it('streams snapshot data from a file through snapshotSource, without it in the message', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'concord-transport-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const path = join(dir, 'snap.mdb');
    const data = pattern(5 * MiB + 123, 3);
    await writeFile(path, data);
    const provider: SnapshotSourceProvider = (m) =>
      m.snapshot!.metadata.index === 77 ? fileSnapshotSource(path, 256 * 1024) : undefined;
    const { receiver, sender } = await pair({ snapshotSource: provider });
    sender.transport.send([msgSnap(2, 1, new Uint8Array(0), 77)]);
    await waitFor('snapshot status', () => sender.snapshotStatus.length === 1, 10_000);
    assert.deepEqual(sender.snapshotStatus, [{ peer: 1, ok: true }]);
    const got = receiver.received.find((r) => r.type === MessageType.Snapshot)!;
    assert.equal(got.snapshot!.metadata.index, 77);
    assert.ok(Buffer.from(got.snapshot!.data).equals(data));
  });

  it('streams received snapshot bytes into a file sink, never reassembling them in memory', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'concord-transport-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const path = join(dir, 'incoming.mdb');
    const { receiver, sender } = await pair(
      { chunkBytes: 256 * 1024 },
      { snapshotSink: () => fileSnapshotSink(path) },
    );
    const data = pattern(6 * MiB + 5, 21);
    sender.transport.send([msgSnap(2, 1, data, 99)]);
    await waitFor('snapshot status', () => sender.snapshotStatus.length === 1, 10_000);
    assert.deepEqual(sender.snapshotStatus, [{ peer: 1, ok: true }]);
    const got = receiver.received.find((r) => r.type === MessageType.Snapshot)!;
    assert.equal(got.snapshot!.metadata.index, 99);
    assert.equal(got.snapshot!.data.length, 0);
    assert.ok((await readFile(path)).equals(data));
    assert.equal(receiver.transport.stats().peers['2']!.snapshotBytesReceived, data.length);
  });

  it('holds the stream back while a slow sink catches up (writes never overlap)', async () => {
    let writing = 0;
    let overlapped = false;
    const pieces: Uint8Array[] = [];
    const slowSink = (): SnapshotSink => ({
      write: async (chunk) => {
        if (++writing > 1) overlapped = true;
        await sleep(3);
        pieces.push(Buffer.from(chunk));
        writing--;
      },
      finish: () => Buffer.concat(pieces),
      abort: () => {},
    });
    const { receiver, sender } = await pair({ chunkBytes: 64 * 1024 }, { snapshotSink: slowSink });
    const data = pattern(4 * MiB, 8);
    sender.transport.send([msgSnap(2, 1, data)]);
    await waitFor('snapshot status', () => sender.snapshotStatus.length === 1, 15_000);
    assert.deepEqual(sender.snapshotStatus, [{ peer: 1, ok: true }]);
    assert.equal(overlapped, false);
    assert.equal(pieces.length, 64);
    assert.ok(
      Buffer.from(receiver.received.find((r) => r.type === MessageType.Snapshot)!.snapshot!.data).equals(
        data,
      ),
    );
  });

  it('refuses the snapshot and aborts the sink when the sink fails', async () => {
    let aborted = false;
    let writes = 0;
    const failingSink = (): SnapshotSink => ({
      write: () => {
        if (++writes === 2) throw new Error('disk full');
      },
      finish: () => new Uint8Array(0),
      abort: () => {
        aborted = true;
      },
    });
    const { receiver, sender } = await pair({ chunkBytes: 64 * 1024 }, { snapshotSink: failingSink });
    sender.transport.send([msgSnap(2, 1, pattern(MiB, 4))]);
    await waitFor('failure reported', () => sender.snapshotStatus.length === 1, 10_000);
    assert.deepEqual(sender.snapshotStatus, [{ peer: 1, ok: false }]);
    assert.ok(aborted);
    assert.ok(
      receiver.errors.some((e) => e.error.code === 'SNAPSHOT_FAILED' && /disk full/.test(e.error.message)),
    );
    assert.equal(receiver.received.length, 0);
  });

  it('reports a failing snapshot source (missing file) as a failed snapshot with the reason', async () => {
    const provider: SnapshotSourceProvider = () => fileSnapshotSource('/nonexistent/concord/snap.mdb');
    const { receiver, sender } = await pair({ snapshotSource: provider });
    sender.transport.send([msgSnap(2, 1, new Uint8Array(0))]);
    await waitFor('failure reported', () => sender.snapshotStatus.length === 1);
    assert.deepEqual(sender.snapshotStatus, [{ peer: 1, ok: false }]);
    assert.ok(
      sender.errors.some((e) => e.error.code === 'SNAPSHOT_FAILED' && /ENOENT/.test(e.error.message)),
    );
    assert.equal(receiver.received.length, 0);
  });

  it('keeps heartbeats flowing while a snapshot streams on its own connection', async () => {
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const provider: SnapshotSourceProvider = () =>
      (async function* () {
        yield pattern(MiB, 1);
        await gate; // the snapshot stalls mid-stream until the heartbeats are through
        yield pattern(MiB, 2);
      })();
    const { receiver, sender } = await pair({ snapshotSource: provider });
    sender.transport.send([msgSnap(2, 1, new Uint8Array(0))]);
    await sleep(30); // the first MiB is on the wire; the rest waits for the gate
    for (let i = 0; i < 5; i++) {
      sender.transport.send([
        message({ type: MessageType.HeartbeatResponse, from: 2, to: 1, term: 5, index: i }),
      ]);
      await sleep(2);
    }
    await waitFor(
      'heartbeats delivered mid-snapshot',
      () => receiver.received.filter((m) => m.type === MessageType.HeartbeatResponse).length === 5,
    );
    assert.equal(sender.snapshotStatus.length, 0, 'snapshot still in flight');
    release();
    await waitFor('snapshot done', () => sender.snapshotStatus.length === 1, 10_000);
    assert.deepEqual(sender.snapshotStatus, [{ peer: 1, ok: true }]);
    const got = receiver.received.find((r) => r.type === MessageType.Snapshot)!;
    assert.ok(Buffer.from(got.snapshot!.data).equals(Buffer.concat([pattern(MiB, 1), pattern(MiB, 2)])));
  });

  it('fails a second snapshot to the same peer while one is in flight (SNAPSHOT_BUSY)', async () => {
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const provider: SnapshotSourceProvider = () =>
      (async function* () {
        await gate;
        yield Buffer.from('state');
      })();
    const { sender } = await pair({ snapshotSource: provider });
    sender.transport.send([msgSnap(2, 1, new Uint8Array(0))]);
    await sleep(10);
    sender.transport.send([msgSnap(2, 1, new Uint8Array(0))]);
    await waitFor('busy reported', () => sender.snapshotStatus.length === 1);
    assert.deepEqual(sender.snapshotStatus, [{ peer: 1, ok: false }]);
    assert.ok(sender.errors.some((e) => e.error.code === 'SNAPSHOT_BUSY'));
    release();
    await waitFor('first completes', () => sender.snapshotStatus.length === 2);
    assert.deepEqual(sender.snapshotStatus[1], { peer: 1, ok: true });
  });

  it('fails a snapshot whose receiver stops reading, then sends the next one', async () => {
    const { receiver, sender, proxy } = await pair({ snapshotIdleTimeoutMs: 300 });
    proxy.stallAfterBytes = 2 * MiB;
    const data = pattern(20 * MiB, 12);
    sender.transport.send([msgSnap(2, 1, data)]);
    await waitFor('stall detected', () => sender.snapshotStatus.length === 1, 10_000);
    assert.deepEqual(sender.snapshotStatus, [{ peer: 1, ok: false }]);
    assert.ok(
      sender.errors.some((e) => e.error.code === 'SNAPSHOT_FAILED' && /stalled/.test(e.error.message)),
    );
    proxy.stall(false);
    sender.transport.send([msgSnap(2, 1, data.subarray(0, MiB))]);
    await waitFor('next snapshot', () => sender.snapshotStatus.length === 2, 10_000);
    assert.deepEqual(sender.snapshotStatus[1], { peer: 1, ok: true });
    const got = receiver.received.filter((r) => r.type === MessageType.Snapshot);
    assert.equal(got.length, 1);
    assert.equal(got[0]!.snapshot!.data.length, MiB);
  });

  it('reports a snapshot dropped by the link filter as failed', async () => {
    const { receiver, sender } = await pair();
    sender.transport.setLinkFilter(() => 'drop');
    sender.transport.send([msgSnap(2, 1, pattern(1000, 9))]);
    await waitFor('failure reported', () => sender.snapshotStatus.length === 1);
    assert.deepEqual(sender.snapshotStatus, [{ peer: 1, ok: false }]);
    assert.equal(receiver.received.length, 0);
  });

  it('refuses a snapshot larger than the receiver snapshotBytesMax', async () => {
    const receiver = await node(1, { snapshotBytesMax: MiB });
    const sender = await node(2);
    receiver.transport.addPeer(2, sender.transport.url);
    sender.transport.addPeer(1, receiver.transport.url);
    sender.transport.send([msgSnap(2, 1, pattern(3 * MiB, 5))]);
    await waitFor('failure reported', () => sender.snapshotStatus.length === 1, 10_000);
    assert.deepEqual(sender.snapshotStatus, [{ peer: 1, ok: false }]);
    assert.ok(receiver.errors.some((e) => e.error.code === 'SNAPSHOT_TOO_LARGE'));
    assert.equal(receiver.received.length, 0);
  });
});

describe('snapshot receiver and its sink', () => {
  /** A receiver for a MsgSnap 2 → 1 whose sink records what happens to it. */
  function receiverWithSink(finish: () => Promise<Uint8Array>) {
    const calls: string[] = [];
    const sink: SnapshotSink = {
      write: () => {
        calls.push('write');
      },
      finish: async () => {
        calls.push('finish');
        return finish();
      },
      abort: () => {
        calls.push('abort');
      },
    };
    const hooks = {
      admit: () => true,
      pause: () => undefined,
      resume: () => undefined,
      fail: () => undefined,
    };
    const receiver = new SnapshotReceiver(2, 1, 1 << 20, () => sink, hooks);
    const data = pattern(1000, 3);
    const chunk = Buffer.alloc(snapshotChunkPayloadBytes(0, data.length));
    writeSnapshotChunk(chunk, 0, 0, data);
    receiver.onFrame(
      FrameType.SnapshotBegin,
      Buffer.from(encodeBatch([{ group: 1, message: msgSnap(2, 1, new Uint8Array(0)) }])),
    );
    receiver.onFrame(FrameType.SnapshotChunk, chunk);
    const end = encodeSnapshotEnd(data.length, crc32(data));
    return { calls, receiver, end: () => receiver.onFrame(FrameType.SnapshotEnd, end)! };
  }

  it('a finished snapshot that is not delivered after all is handed back to the sink to drop', async () => {
    const { calls, receiver, end } = receiverWithSink(async () => new Uint8Array([1]));
    const delivered = await end();
    assert.deepEqual([...delivered.message.snapshot!.data], [1]);
    receiver.abort(new Error('closed')); // settled: no effect
    assert.deepEqual(calls, ['write', 'finish']);
    receiver.discardFinished(new Error('connection closed before delivery'));
    assert.deepEqual(calls, ['write', 'finish', 'abort']);
  });

  it('a stream aborted while the sink finishes is not delivered', async () => {
    let release = () => {};
    const { calls, receiver, end } = receiverWithSink(
      () => new Promise<Uint8Array>((resolve) => (release = () => resolve(new Uint8Array([1])))),
    );
    const delivered = end();
    await sleep(10);
    receiver.abort(new Error('closed'));
    release();
    await assert.rejects(delivered, /abandoned/);
    assert.deepEqual(calls, ['write', 'finish', 'abort']);
  });
});
