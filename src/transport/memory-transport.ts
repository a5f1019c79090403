// The seam between the Raft driver and the network, and an in-process implementation of it for
// tests of the layers above (server, api) that want real asynchrony without sockets. Same
// contract as PeerTransport: send() queues, delivery happens on a later turn, in order per pair,
// callbacks are never made from inside send(), and a closed transport goes quiet.

import { type Message, MessageType, type NodeId } from '../raft/types.js';
import { decodeBatch, encodeBatch } from './codec.js';
import { TransportError } from './errors.js';
import type { SnapshotSourceProvider } from './snapshot.js';
import type { LinkFilter, LinkVerdict, Transport } from './transport.js';

export interface MemoryTransportOptions {
  onMessage: (message: Message) => void;
  onUnreachable?: (peer: NodeId) => void;
  onSnapshotStatus?: (peer: NodeId, ok: boolean) => void;
  snapshotSource?: SnapshotSourceProvider;
}

/** Connects MemoryTransports by node id; the "URL" a peer is added with is not used. */
export class MemoryNetwork {
  private readonly members = new Map<NodeId, MemoryTransport>();

  join(nodeId: NodeId, options: MemoryTransportOptions): MemoryTransport {
    if (this.members.has(nodeId)) throw new TypeError(`node ${nodeId} already joined this network`);
    const transport = new MemoryTransport(nodeId, options, this);
    this.members.set(nodeId, transport);
    return transport;
  }

  /** @internal */
  member(nodeId: NodeId): MemoryTransport | undefined {
    return this.members.get(nodeId);
  }

  /** @internal */
  leave(transport: MemoryTransport): void {
    if (this.members.get(transport.nodeId) === transport) this.members.delete(transport.nodeId);
  }
}

export class MemoryTransport implements Transport {
  private readonly peers = new Set<NodeId>();
  /** Each message with the send-side verdict, decided at send() time as PeerTransport does. */
  private outbox: Array<{ m: Message; verdict: LinkVerdict }> = [];
  private flushHandle: NodeJS.Immediate | undefined;
  private readonly timers = new Set<NodeJS.Timeout>();
  private linkFilter: LinkFilter | undefined;
  private closed = false;

  /** @internal use MemoryNetwork.join */
  constructor(
    readonly nodeId: NodeId,
    private readonly options: MemoryTransportOptions,
    private readonly network: MemoryNetwork,
  ) {}

  addPeer(id: NodeId, _url: string): void {
    this.checkOpen();
    this.peers.add(id);
  }

  updatePeer(id: NodeId, _url: string): void {
    this.checkOpen();
    if (!this.peers.has(id))
      throw new TransportError('UNKNOWN_PEER', `peer ${id} is not known; addPeer it first`);
  }

  removePeer(id: NodeId): void {
    this.peers.delete(id);
  }

  setLinkFilter(filter: LinkFilter | undefined): void {
    this.linkFilter = filter;
  }

  send(messages: readonly Message[]): void {
    this.checkOpen();
    for (const m of messages) {
      if (m.from !== this.nodeId || m.to === this.nodeId)
        throw new TypeError(`message ${m.from}→${m.to} sent by ${this.nodeId}`);
      // Round-trip through the codec so tests see exactly what the wire would deliver.
      this.outbox.push({ m: decodeBatch(encodeBatch([m]))[0]!, verdict: this.verdict(this.nodeId, m.to) });
    }
    if (this.flushHandle === undefined) this.flushHandle = setImmediate(() => this.flush());
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.flushHandle !== undefined) clearImmediate(this.flushHandle);
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    this.outbox = [];
    this.network.leave(this);
  }

  /** @internal delivery from a peer, after the sender's filter passed it. */
  receive(m: Message, done: (delivered: boolean) => void): void {
    if (this.closed) return done(false);
    this.afterVerdict(
      this.verdict(m.from, this.nodeId),
      () => {
        if (this.closed) return done(false);
        this.options.onMessage(m);
        done(true);
      },
      () => done(false),
    );
  }

  private flush(): void {
    this.flushHandle = undefined;
    const batch = this.outbox;
    this.outbox = [];
    for (const { m, verdict } of batch) this.route(m, verdict);
  }

  private route(m: Message, verdict: LinkVerdict): void {
    const target = this.peers.has(m.to) ? this.network.member(m.to) : undefined;
    const failed = (): void => {
      if (this.closed) return;
      this.options.onUnreachable?.(m.to);
      if (m.type === MessageType.Snapshot) this.options.onSnapshotStatus?.(m.to, false);
    };
    if (target === undefined) return failed();
    this.afterVerdict(
      verdict,
      () => {
        if (m.type !== MessageType.Snapshot) {
          target.receive(m, () => {});
          return;
        }
        this.withSnapshotData(m).then(
          (full) =>
            target.receive(full, (ok) => {
              if (!this.closed) this.options.onSnapshotStatus?.(m.to, ok);
            }),
          failed,
        );
      },
      m.type === MessageType.Snapshot ? failed : () => {},
    );
  }

  private async withSnapshotData(m: Message): Promise<Message> {
    const snapshot = m.snapshot!;
    if (snapshot.data.length > 0) return m;
    const source = this.options.snapshotSource?.(m);
    if (source === undefined) return m;
    const pieces: Uint8Array[] = [];
    for await (const piece of source) pieces.push(Uint8Array.from(piece));
    return { ...m, snapshot: { metadata: snapshot.metadata, data: Buffer.concat(pieces) } };
  }

  private verdict(from: NodeId, to: NodeId): LinkVerdict {
    return this.linkFilter === undefined ? 'pass' : this.linkFilter(from, to);
  }

  private afterVerdict(verdict: LinkVerdict, pass: () => void, drop: () => void): void {
    if (verdict === 'pass') return pass();
    if (verdict === 'drop') return drop();
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      if (!this.closed) pass();
    }, verdict.delayMs);
    this.timers.add(timer);
  }

  private checkOpen(): void {
    if (this.closed) throw new TransportError('CLOSED', 'transport is closed');
  }
}
