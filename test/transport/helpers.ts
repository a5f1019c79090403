// Test helpers: transports on 127.0.0.1 port 0, bounded waits, a byte-flipping TCP proxy.

import { createServer, type Server, type Socket, connect as tcpConnect } from 'node:net';
import { afterEach } from 'node:test';
import { type Message, MessageType, message, type NodeId } from '../../src/raft/types.js';
import type { TransportError } from '../../src/transport/errors.js';
import { encodeFrame, FrameDecoder, FrameType } from '../../src/transport/frame.js';
import { PeerTransport, type PeerTransportOptions } from '../../src/transport/peer-transport.js';
import { decodeHelloAck, encodeHello, type Hello, type HelloAck } from '../../src/transport/wire.js';

export interface Harness {
  transport: PeerTransport;
  received: Message[];
  unreachable: NodeId[];
  snapshotStatus: Array<{ peer: NodeId; ok: boolean }>;
  errors: Array<{ error: TransportError; peer: NodeId | undefined }>;
}

export async function startTransport(
  nodeId: NodeId,
  overrides: Partial<PeerTransportOptions> = {},
): Promise<Harness> {
  const harness: Harness = {
    transport: undefined as unknown as PeerTransport,
    received: [],
    unreachable: [],
    snapshotStatus: [],
    errors: [],
  };
  harness.transport = new PeerTransport({
    nodeId,
    clusterId: 'cluster-a',
    listenUrl: 'http://127.0.0.1:0',
    backoffMinMs: 10,
    backoffMaxMs: 100,
    onMessage: (m) => harness.received.push(m),
    onUnreachable: (peer) => harness.unreachable.push(peer),
    onSnapshotStatus: (peer, ok) => harness.snapshotStatus.push({ peer, ok }),
    onError: (error, peer) => harness.errors.push({ error, peer }),
    ...overrides,
  });
  await harness.transport.listen();
  return harness;
}

/** startTransport for a test file: every transport it starts is closed after each test. */
export function transportsClosedAfterEach(): (
  nodeId: NodeId,
  overrides?: Partial<PeerTransportOptions>,
) => Promise<Harness> {
  const started: Harness[] = [];
  afterEach(async () => {
    for (const harness of started.splice(0).reverse()) await harness.transport.close();
  });
  return async (nodeId, overrides = {}) => {
    const harness = await startTransport(nodeId, overrides);
    started.push(harness);
    return harness;
  };
}

/** A MsgSnap from → to of a snapshot at `index` (term 2, voters 1 and 2) with empty data. */
export function snapshotMessage(from: NodeId, to: NodeId, index: number): Message {
  return message({
    type: MessageType.Snapshot,
    from,
    to,
    term: 2,
    snapshot: {
      metadata: {
        index,
        term: 2,
        confState: { voters: [1, 2], learners: [], votersOutgoing: [], learnersNext: [], autoLeave: false },
      },
      data: new Uint8Array(0),
    },
  });
}

/**
 * Dials `transportUrl` with a hand-made Hello (any version, ids, kind) and returns the HelloAck
 * once the acceptor has answered and closed the connection.
 */
export async function rawHello(transportUrl: string, hello: Hello): Promise<HelloAck> {
  const socket = tcpConnect({ host: '127.0.0.1', port: Number(new URL(transportUrl).port) });
  try {
    socket.write(encodeFrame(FrameType.Hello, encodeHello(hello)));
    const acks: HelloAck[] = [];
    const decoder = new FrameDecoder(1 << 20, (type, payload) => {
      if (type !== FrameType.HelloAck) throw new Error(`expected HelloAck, got frame type ${type}`);
      acks.push(decodeHelloAck(payload));
    });
    socket.on('data', (chunk: Buffer) => decoder.push(chunk));
    let closed = false;
    socket.on('close', () => {
      closed = true;
    });
    await waitFor('ack and close', () => acks.length === 1 && closed);
    return acks[0]!;
  } finally {
    socket.destroy();
  }
}

/** Polls a condition every 5 ms; fails the test after timeoutMs instead of hanging. */
export async function waitFor(what: string, condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(5);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A port nothing listens on (bound, then released). */
export async function deadPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/**
 * TCP proxy to a target port. `corrupt` flips one byte of the client→target stream of the
 * connection with the given ordinal (0-based) at the given offset.
 */
export class FlakyProxy {
  corrupt: { connection: number; offset: number } | undefined;
  /** Swallow all bytes both ways without closing: a frozen or partitioned peer. */
  blackhole = false;
  connections = 0;
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  private readonly clients = new Set<Socket>();
  private stalled = false;
  /** Stop reading from a client once it has sent this many bytes (a peer freezing mid-stream). */
  stallAfterBytes: number | undefined;

  /** Stop (or resume) reading from clients: their writes back up into kernel buffers. */
  stall(on: boolean): void {
    this.stalled = on;
    this.stallAfterBytes = undefined;
    for (const client of this.clients) {
      if (on) client.pause();
      else client.resume();
    }
  }

  private constructor(private readonly targetPort: number) {
    this.server = createServer((client) => this.onClient(client));
  }

  static async start(targetPort: number): Promise<FlakyProxy> {
    const proxy = new FlakyProxy(targetPort);
    await new Promise<void>((resolve) => proxy.server.listen(0, '127.0.0.1', resolve));
    return proxy;
  }

  get url(): string {
    const address = this.server.address();
    if (typeof address !== 'object' || address === null) throw new Error('proxy not listening');
    return `http://127.0.0.1:${address.port}`;
  }

  private onClient(client: Socket): void {
    const ordinal = this.connections++;
    const upstream = tcpConnect({ host: '127.0.0.1', port: this.targetPort });
    this.sockets.add(client);
    this.sockets.add(upstream);
    this.clients.add(client);
    if (this.stalled) client.pause();
    let seen = 0;
    client.on('data', (chunk: Buffer) => {
      const c = this.corrupt;
      if (c !== undefined && c.connection === ordinal && c.offset >= seen && c.offset < seen + chunk.length) {
        chunk = Buffer.from(chunk);
        chunk[c.offset - seen]! ^= 0x5a;
      }
      seen += chunk.length;
      if (!this.blackhole) upstream.write(chunk);
      if (this.stallAfterBytes !== undefined && seen >= this.stallAfterBytes) client.pause();
    });
    upstream.on('data', (chunk: Buffer) => {
      if (!this.blackhole) client.write(chunk);
    });
    const teardown = (): void => {
      client.destroy();
      upstream.destroy();
      this.sockets.delete(client);
      this.sockets.delete(upstream);
      this.clients.delete(client);
    };
    client.on('close', teardown);
    upstream.on('close', teardown);
    client.on('error', teardown);
    upstream.on('error', teardown);
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
