import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import { EntryType, type Message, MessageType, message } from '../../src/raft/types.js';
import { TransportError } from '../../src/transport/errors.js';
import { backoffDelayMs, PeerTransport } from '../../src/transport/peer-transport.js';
import { ConnectionKind, PROTOCOL_VERSION } from '../../src/transport/wire.js';
import { deadPort, FlakyProxy, type Harness, rawHello, sleep, startTransport, waitFor } from './helpers.js';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function node(id: number, overrides: Parameters<typeof startTransport>[1] = {}): Promise<Harness> {
  const harness = await startTransport(id, overrides);
  cleanups.push(() => harness.transport.close());
  return harness;
}

function append(from: number, to: number, index: number, dataBytes = 16): Message {
  const data = new Uint8Array(dataBytes).map((_, i) => (index * 7 + i) & 0xff);
  return message({
    type: MessageType.Append,
    from,
    to,
    term: 3,
    logTerm: 2,
    index,
    commit: index - 1,
    entries: [{ term: 3, index: index + 1, type: EntryType.Normal, data }],
    context: Uint8Array.of(index & 0xff),
  });
}

function normalize(messages: Message[]): unknown {
  return JSON.parse(JSON.stringify(messages, (_k, v) => (v instanceof Uint8Array ? Array.from(v) : v)));
}

async function connectMesh(harnesses: Harness[]): Promise<void> {
  for (const a of harnesses) {
    for (const b of harnesses) if (a !== b) a.transport.addPeer(b.transport.nodeId, b.transport.url);
  }
  await waitFor('mesh connected', () =>
    harnesses.every((h) => {
      const peers = h.transport.stats().peers;
      return harnesses.every((o) => o === h || peers[String(o.transport.nodeId)]?.connected === 1);
    }),
  );
}

describe('PeerTransport', () => {
  it('delivers batches between three nodes exactly and in order per sender', async () => {
    const nodes = [await node(1), await node(2), await node(3)];
    await connectMesh(nodes);
    const sent = new Map<string, Message[]>();
    for (let turn = 0; turn < 20; turn++) {
      for (const from of nodes) {
        const batch: Message[] = [];
        for (const to of nodes) {
          if (to === from) continue;
          for (let k = 0; k < 5; k++) {
            const m = append(
              from.transport.nodeId,
              to.transport.nodeId,
              turn * 5 + k + 1,
              (turn * 13 + k) % 300,
            );
            batch.push(m);
            const key = `${m.from}->${m.to}`;
            sent.set(key, [...(sent.get(key) ?? []), m]);
          }
        }
        from.transport.send(batch);
      }
      await sleep(turn % 3 === 0 ? 1 : 0);
    }
    await waitFor('all delivered', () => nodes.every((n) => n.received.length === 200));
    for (const to of nodes) {
      for (const from of nodes) {
        if (from === to) continue;
        const got = to.received.filter((m) => m.from === from.transport.nodeId);
        assert.deepEqual(
          normalize(got),
          normalize(sent.get(`${from.transport.nodeId}->${to.transport.nodeId}`)!),
        );
      }
    }
  });

  it('flushes everything queued in one event-loop turn with ONE write per peer', async () => {
    const [a, b] = [await node(1), await node(2)];
    await connectMesh([a, b]);
    const before = a.transport.stats().peers['2']!;
    for (let i = 1; i <= 100; i++) a.transport.send([append(1, 2, i)]);
    await waitFor('100 delivered', () => b.received.length === 100);
    const after = a.transport.stats().peers['2']!;
    assert.equal(after.writes - before.writes, 1);
    assert.equal(after.messagesSent - before.messagesSent, 100);
    assert.deepEqual(
      b.received.map((m) => m.index),
      Array.from({ length: 100 }, (_, i) => i + 1),
    );
  });

  it('lets the higher id answer over the connection the lower id dialed (one connection per pair)', async () => {
    const [a, b] = [await node(1), await node(2)];
    await connectMesh([a, b]);
    b.transport.send([message({ type: MessageType.HeartbeatResponse, from: 2, to: 1, term: 9 })]);
    await waitFor('response delivered', () => a.received.length === 1);
    assert.equal(a.received[0]!.term, 9);
    assert.equal(a.transport.stats().peers['2']!.connects, 1);
    assert.equal(b.transport.stats().peers['1']!.connects, 1);
  });

  it('reconnects after the peer transport is closed and recreated on the same port', async () => {
    const a = await node(1);
    let b = await startTransport(2);
    const url = b.transport.url;
    await connectMesh([a, b]);
    await b.transport.close();
    await waitFor('a sees the link down', () => a.transport.stats().peers['2']!.connected === 0);
    await waitFor('losing the connection reports the peer unreachable', () => a.unreachable.includes(2));
    b = await startTransport(2, { listenUrl: url });
    cleanups.push(() => b.transport.close());
    b.transport.addPeer(1, a.transport.url);
    await waitFor('reconnected', () => a.transport.stats().peers['2']!.connected === 1, 5000);
    a.transport.send([append(1, 2, 42)]);
    await waitFor('delivered after reconnect', () => b.received.length === 1);
    assert.equal(b.received[0]!.index, 42);
    assert.ok(a.transport.stats().peers['2']!.reconnects >= 1);
  });

  it('rejects a handshake from another cluster with CLUSTER_ID_MISMATCH on both sides', async () => {
    const a = await node(1, { clusterId: 'cluster-a' });
    const b = await node(2, { clusterId: 'cluster-b' });
    a.transport.addPeer(2, b.transport.url);
    b.transport.addPeer(1, a.transport.url);
    a.transport.send([append(1, 2, 1)]);
    await waitFor('both sides report the mismatch', () =>
      [a, b].every((h) => h.errors.some((e) => e.error.code === 'CLUSTER_ID_MISMATCH')),
    );
    const dialerError = a.errors.find((e) => e.error.code === 'CLUSTER_ID_MISMATCH')!;
    assert.equal(dialerError.peer, 2);
    assert.match(dialerError.error.message, /cluster ID mismatch/);
    await sleep(50);
    assert.equal(b.received.length, 0);
    assert.equal(a.transport.stats().peers['2']!.connected, 0);
    assert.ok(b.transport.stats().connectionsRejected >= 1);
  });

  it('drops beyond queuedMessagesMax and reports the peer unreachable while it is down', async () => {
    const a = await node(1, { queuedMessagesMax: 10 });
    a.transport.addPeer(2, `http://127.0.0.1:${await deadPort()}`);
    a.transport.send(Array.from({ length: 15 }, (_, i) => append(1, 2, i + 1)));
    await waitFor('unreachable reported', () => a.unreachable.includes(2));
    const stats = a.transport.stats().peers['2']!;
    assert.equal(stats.queuedMessages, 10);
    assert.equal(stats.messagesDropped, 5);
    assert.deepEqual(a.unreachable, [2], 'one report per turn, not one per dropped message');
    assert.ok(stats.dialFailures >= 1);
  });

  it('drops a proposal forwarded to a peer it has no connection to instead of queuing it', async () => {
    const a = await node(1);
    a.transport.addPeer(2, `http://127.0.0.1:${await deadPort()}`);
    a.transport.send([
      message({
        type: MessageType.Propose,
        from: 1,
        to: 2,
        entries: [{ term: 0, index: 0, type: EntryType.Normal, data: new Uint8Array(8) }],
      }),
      append(1, 2, 1),
    ]);
    await waitFor('unreachable reported', () => a.unreachable.includes(2));
    const stats = a.transport.stats().peers['2']!;
    assert.equal(stats.messagesDropped, 1, 'the proposal is dropped');
    assert.equal(stats.queuedMessages, 1, 'the append still waits for the connection');
  });

  it('drops beyond queuedBytesMax', async () => {
    const a = await node(1, { queuedBytesMax: 10_000 });
    a.transport.addPeer(2, `http://127.0.0.1:${await deadPort()}`);
    a.transport.send(Array.from({ length: 10 }, (_, i) => append(1, 2, i + 1, 3000)));
    await waitFor('unreachable reported', () => a.unreachable.includes(2));
    const stats = a.transport.stats().peers['2']!;
    assert.ok(stats.queuedBytes <= 10_000);
    assert.equal(stats.queuedMessages + stats.messagesDropped, 10);
    assert.ok(stats.messagesDropped >= 7);
  });

  it('drops the connection on a corrupt frame, delivers nothing from it, and reconnects', async () => {
    const b = await node(2);
    const proxy = await FlakyProxy.start(Number(new URL(b.transport.url).port));
    cleanups.push(() => proxy.close());
    const a = await node(1);
    a.transport.addPeer(2, proxy.url);
    b.transport.addPeer(1, a.transport.url);
    await waitFor('connected', () => a.transport.stats().peers['2']!.connected === 1);
    proxy.corrupt = { connection: 0, offset: 50_000 };
    const big = append(1, 2, 7, 100_000);
    a.transport.send([big]);
    await waitFor('corruption detected', () => b.errors.some((e) => e.error.code === 'FRAME_CRC_MISMATCH'));
    await waitFor('reconnected', () => a.transport.stats().peers['2']!.reconnects >= 1);
    a.transport.send([append(1, 2, 8, 100_000)]);
    await waitFor('delivered after reconnect', () => b.received.some((m) => m.index === 8));
    assert.ok(!b.received.some((m) => m.index === 7), 'the corrupted batch must not be delivered');
    assert.deepEqual(normalize(b.received), normalize([append(1, 2, 8, 100_000)]));
    assert.ok(proxy.connections >= 2);
  });

  it('queues behind a full socket until drain, drops beyond the bound, and keeps order', async () => {
    const b = await node(2);
    const proxy = await FlakyProxy.start(Number(new URL(b.transport.url).port));
    cleanups.push(() => proxy.close());
    const a = await node(1, { queuedBytesMax: 2 << 20 });
    a.transport.addPeer(2, proxy.url);
    b.transport.addPeer(1, a.transport.url);
    await waitFor('connected', () => a.transport.stats().peers['2']!.connected === 1);
    proxy.stall(true);
    for (let i = 1; i <= 300; i++) {
      a.transport.send([append(1, 2, i, 100_000)]);
      await sleep(0);
    }
    await waitFor('overflow reported', () => a.unreachable.includes(2));
    const stalled = a.transport.stats().peers['2']!;
    assert.ok(stalled.messagesDropped > 0, 'a stalled peer must cost drops, not unbounded memory');
    assert.ok(stalled.queuedBytes <= 2 << 20);
    assert.ok(stalled.writes < 300, 'writes are held back while the socket is full');
    proxy.stall(false);
    const expected = 300 - stalled.messagesDropped;
    await waitFor('queued messages flushed after drain', () => b.received.length === expected, 10_000);
    const indexes = b.received.map((m) => m.index);
    assert.ok(
      indexes.every((index, i) => i === 0 || index > indexes[i - 1]!),
      'delivered in send order',
    );
    assert.equal(a.transport.stats().peers['2']!.queuedMessages, 0);
  });

  it('drops a silent connection after idleTimeoutMs and reconnects once the peer answers again', async () => {
    const fast = { pingIntervalMs: 50, idleTimeoutMs: 300, handshakeTimeoutMs: 300 };
    // Only a has a short idle timeout, so it is a that notices the silence.
    const b = await node(2, { ...fast, idleTimeoutMs: 10_000 });
    const proxy = await FlakyProxy.start(Number(new URL(b.transport.url).port));
    cleanups.push(() => proxy.close());
    const a = await node(1, fast);
    a.transport.addPeer(2, proxy.url);
    b.transport.addPeer(1, a.transport.url);
    await waitFor('connected', () => a.transport.stats().peers['2']!.connected === 1);
    await sleep(400);
    assert.equal(a.transport.stats().peers['2']!.connected, 1, 'keepalives hold an idle link open');
    proxy.blackhole = true;
    await waitFor(
      'silence detected',
      () => a.errors.some((e) => e.error.code === 'PEER_SILENT' && e.peer === 2),
      3000,
    );
    await waitFor('silent peer reported unreachable', () => a.unreachable.includes(2));
    await waitFor(
      'b drops its side too (by its own idle timeout or by the close that a propagates)',
      () => b.transport.stats().peers['1']!.connected === 0,
      3000,
    );
    proxy.blackhole = false;
    await waitFor('reconnected', () => a.transport.stats().peers['2']!.connected === 1, 3000);
    a.transport.send([append(1, 2, 5)]);
    await waitFor('delivered', () => b.received.some((m) => m.index === 5));
  });

  it('applies the link filter on send and on receive (drop, delay)', async () => {
    const [a, b] = [await node(1), await node(2)];
    await connectMesh([a, b]);
    a.transport.setLinkFilter((from, to) => (from === 1 && to === 2 ? 'drop' : 'pass'));
    a.transport.send([append(1, 2, 1)]);
    a.transport.setLinkFilter(undefined);
    b.transport.setLinkFilter(() => ({ delayMs: 80 }));
    const start = Date.now();
    a.transport.send([append(1, 2, 2)]);
    await waitFor('delayed delivery', () => b.received.length === 1);
    assert.ok(Date.now() - start >= 70, 'receive-side delay applied');
    assert.equal(b.received[0]!.index, 2);
    b.transport.setLinkFilter(() => 'drop');
    a.transport.send([append(1, 2, 3)]);
    await sleep(50);
    assert.equal(b.received.length, 1);
    assert.equal(a.transport.stats().peers['2']!.messagesDropped, 1);
    assert.equal(b.transport.stats().peers['1']!.messagesDropped, 1);
  });

  it('refuses local message types and messages to itself', async () => {
    const a = await node(1);
    assert.throws(() => a.transport.send([message({ type: MessageType.Hup, to: 2, from: 1 })]), TypeError);
    assert.throws(() => a.transport.send([message({ type: MessageType.Append, to: 1, from: 1 })]), TypeError);
    assert.throws(() => a.transport.send([message({ type: MessageType.Append, to: 2, from: 3 })]), TypeError);
  });

  it('rejects a dial that reaches the wrong node with NODE_ID_MISMATCH', async () => {
    const low = await node(4);
    const high = await node(5);
    // high believes the URL belongs to node 6 (so it dials, 5 < 6), but node 4 answers.
    high.transport.addPeer(6, low.transport.url);
    await waitFor('rejected', () => high.errors.some((e) => e.error.code === 'NODE_ID_MISMATCH'));
    assert.ok(low.errors.some((e) => e.error.code === 'NODE_ID_MISMATCH'));
    assert.equal(high.transport.stats().peers['6']!.connected, 0);
  });

  it('rejects a message connection dialed by the higher id with DIAL_DIRECTION', async () => {
    const low = await node(4);
    const ack = await rawHello(low.transport.url, {
      protocolVersion: PROTOCOL_VERSION,
      kind: ConnectionKind.Messages,
      from: 5,
      to: 4,
      clusterId: 'cluster-a',
    });
    assert.equal(ack.accepted, false);
    assert.equal(ack.errorCode, 'DIAL_DIRECTION');
    assert.ok(low.errors.some((e) => e.error.code === 'DIAL_DIRECTION' && e.peer === 5));
  });

  it('redials towards a new address after updatePeer', async () => {
    const a = await node(1);
    const b = await node(2);
    await connectMesh([a, b]);
    const b2 = await node(2);
    b2.transport.addPeer(1, a.transport.url);
    a.transport.updatePeer(2, b2.transport.url);
    await waitFor('b2 connected', () => b2.transport.stats().peers['1']?.connected === 1);
    a.transport.send([append(1, 2, 3)]);
    await waitFor('delivered to the new address', () => b2.received.length === 1);
    assert.equal(b.received.length, 0);
    assert.throws(
      () => a.transport.updatePeer(7, b2.transport.url),
      (e: unknown) => e instanceof TransportError && e.code === 'UNKNOWN_PEER',
    );
  });

  it('removePeer closes the connection and later messages count as unknown-peer drops', async () => {
    const [a, b] = [await node(1), await node(2)];
    await connectMesh([a, b]);
    a.transport.removePeer(2);
    await waitFor('b sees the link down', () => b.transport.stats().peers['1']!.connected === 0);
    a.transport.send([append(1, 2, 1)]);
    await waitFor('reported unreachable', () => a.unreachable.includes(2));
    assert.equal(a.transport.stats().messagesDroppedUnknownPeer, 1);
    assert.equal(a.transport.stats().peers['2'], undefined);
    await sleep(100);
    assert.equal(b.transport.stats().peers['1']!.connected, 0, 'a removed peer is not redialed');
  });

  it('backs off exponentially from backoffMinMs to backoffMaxMs with jitter in [base/2, base]', () => {
    assert.equal(backoffDelayMs(0, 50, 2000, 1), 50);
    assert.equal(backoffDelayMs(0, 50, 2000, 0), 25);
    assert.equal(backoffDelayMs(3, 50, 2000, 1), 400);
    assert.equal(backoffDelayMs(6, 50, 2000, 1), 2000);
    assert.equal(backoffDelayMs(30, 50, 2000, 0.5), 1500);
  });

  it('rejects a peer URL it cannot use with BAD_PEER_URL', () => {
    assert.throws(
      () =>
        new PeerTransport({
          nodeId: 1,
          clusterId: 'c',
          listenUrl: 'https://127.0.0.1:1',
          onMessage: () => {},
        }),
      (e: unknown) => e instanceof TransportError && e.code === 'BAD_PEER_URL',
    );
  });
});
