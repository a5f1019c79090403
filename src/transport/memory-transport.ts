// The seam between the Raft driver and the network, and an in-process implementation of it for
// tests of the layers above (server, api) that want real asynchrony without sockets. Same
// contract as PeerTransport: send() queues, delivery happens on a later turn, in order per pair,
// each message to the endpoint of its group, callbacks are never made from inside send(), and a
// closed transport goes quiet.

import { type Message, MessageType, type NodeId } from '../raft/types.js';
import { decodeBatch, encodeBatch, type GroupMessage } from './codec.js';
import { TransportError } from './errors.js';
import { checkGroupId, type GroupOptions, GroupRouter } from './group-router.js';
import type { SnapshotSourceProvider } from './snapshot.js';
import {
  DEFAULT_GROUP_ID,
  type GroupEndpoint,
  type GroupId,
  type LinkFilter,
  type LinkVerdict,
  type Transport,
} from './transport.js';

export interface MemoryTransportOptions extends GroupOptions {
  onUnreachable?: (peer: NodeId) => void;
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
  private outbox: Array<{ item: GroupMessage; verdict: LinkVerdict }> = [];
  private flushHandle: NodeJS.Immediate | undefined;
  private readonly timers = new Set<NodeJS.Timeout>();
  private linkFilter: LinkFilter | undefined;
  private closed = false;
  private readonly groups: GroupRouter;

  /** @internal use MemoryNetwork.join */
  constructor(
    readonly nodeId: NodeId,
    private readonly options: MemoryTransportOptions,
    private readonly network: MemoryNetwork,
  ) {
    this.groups = new GroupRouter(options);
  }

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

  addGroup(group: GroupId, endpoint: GroupEndpoint): void {
    this.checkOpen();
    this.groups.add(group, endpoint);
  }

  removeGroup(group: GroupId): void {
    this.groups.remove(group);
  }

  setLinkFilter(filter: LinkFilter | undefined): void {
    this.linkFilter = filter;
  }

  send(messages: readonly Message[], group: GroupId = DEFAULT_GROUP_ID): void {
    this.checkOpen();
    checkGroupId(group);
    for (const m of messages) {
      if (m.from !== this.nodeId || m.to === this.nodeId)
        throw new TypeError(`message ${m.from}→${m.to} sent by ${this.nodeId}`);
      // Round-trip through the codec so tests see exactly what the wire would deliver.
      const item = decodeBatch(encodeBatch([{ group, message: m }]))[0]!;
      this.outbox.push({ item, verdict: this.verdict(this.nodeId, m.to) });
    }
    if (this.flushHandle === undefined) this.flushHandle = setImmediate(() => this.flush());
  }

  /** Received messages for a group this node does not host (dropped). */
  stats(): { messagesDroppedUnknownGroup: number } {
    return { messagesDroppedUnknownGroup: this.groups.messagesDroppedUnknownGroup };
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.flushHandle !== undefined) clearImmediate(this.flushHandle);
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    this.outbox = [];
    this.network.leave(this);
  }

  /**
   * @internal delivery from a peer, after the sender's filter passed it; `done(false)` when it
   * was dropped (closed, filtered, or for a group this node does not host).
   */
  receive(item: GroupMessage, done: (delivered: boolean) => void): void {
    if (this.closed) return done(false);
    this.afterVerdict(
      this.verdict(item.message.from, this.nodeId),
      () => {
        if (this.closed) return done(false);
        done(this.groups.deliver(item.group, item.message));
      },
      () => done(false),
    );
  }

  private flush(): void {
    this.flushHandle = undefined;
    const batch = this.outbox;
    this.outbox = [];
    for (const { item, verdict } of batch) this.route(item, verdict);
  }

  private route(item: GroupMessage, verdict: LinkVerdict): void {
    const m = item.message;
    const target = this.peers.has(m.to) ? this.network.member(m.to) : undefined;
    const snapshotStatus = (ok: boolean): void => {
      if (!this.closed) this.groups.snapshotStatus(item.group, m.to, ok);
    };
    const failed = (): void => {
      if (this.closed) return;
      this.options.onUnreachable?.(m.to);
      if (m.type === MessageType.Snapshot) snapshotStatus(false);
    };
    if (target === undefined) return failed();
    this.afterVerdict(
      verdict,
      () => {
        if (m.type !== MessageType.Snapshot) {
          target.receive(item, () => {});
          return;
        }
        this.withSnapshotData(item).then((full) => target.receive(full, snapshotStatus), failed);
      },
      m.type === MessageType.Snapshot ? failed : () => {},
    );
  }

  private async withSnapshotData({ group, message }: GroupMessage): Promise<GroupMessage> {
    const snapshot = message.snapshot!;
    if (snapshot.data.length > 0) return { group, message };
    const source = this.options.snapshotSource?.(message, group);
    if (source === undefined) return { group, message };
    const pieces: Uint8Array[] = [];
    for await (const piece of source) pieces.push(Uint8Array.from(piece));
    const data = Buffer.concat(pieces);
    return { group, message: { ...message, snapshot: { metadata: snapshot.metadata, data } } };
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
