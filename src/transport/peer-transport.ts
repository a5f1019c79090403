// PeerTransport: how Raft messages travel between the nodes of one cluster.
//
// Connections. Exactly one long-lived TCP connection per node pair carries message batches of
// every group the two nodes host, in both directions (each message tagged with its group id):
// the node with the LOWER id dials, the higher one accepts (and rejects a dial from a higher id
// with DIAL_DIRECTION), so simultaneous dials cannot happen. A fresh dial from the same
// peer replaces an older accepted connection (the dialer only redials once its old one is dead).
// Snapshots use their own short-lived connection, dialed by the sender whatever the ids.
//
// Handshake. Dialer sends Hello {protocolVersion, kind, from, to, clusterId}; the acceptor answers
// HelloAck accepted or rejected with a code (CLUSTER_ID_MISMATCH, NODE_ID_MISMATCH,
// PROTOCOL_VERSION_MISMATCH, DIAL_DIRECTION) and closes. Rejections reach onError on both sides.
//
// Batching. send() only queues; one setImmediate per turn flushes every dirty peer with ONE
// socket write holding all messages queued that turn (split into frames ≤ frameBytesMax inside
// that one buffer). Queues are bounded by queuedMessagesMax and queuedBytesMax; when full, the
// message is dropped and the peer reported unreachable, as etcd's rafthttp does when its stream
// buffer is full. While the socket is not draining, messages keep queuing (same bound). While a
// peer has no connection, Raft messages queue (same bound) for when it comes back, but a
// forwarded proposal is dropped at once: delivered later it could still commit, seconds after
// its client timed out (a follower's put forwarded to a killed leader did, once it restarted).
//
// Callbacks into the Raft driver (onUnreachable, onSnapshotStatus) are never made from inside
// send(): they are deferred to the flush tick, so the driver is not re-entered mid-Ready.
//
// Groups. Received messages go to the endpoint registered for their group (addGroup), through
// GroupRouter; onUnreachable is about a node, so it is reported once per peer, not per group. A
// snapshot the receiver refuses (its sink failed, it does not host the group) fails for its group
// only; a snapshot whose connection failed also reports the peer unreachable.

import { createServer, type Server, type Socket, connect as tcpConnect } from 'node:net';
import {
  createServer as createTlsServer,
  type SecureContextOptions,
  Server as TlsServer,
  connect as tlsConnect,
} from 'node:tls';
import { type Message, MessageType, type NodeId } from '../raft/types.js';
import { decodeBatch, type GroupMessage, groupMessageBytes } from './codec.js';
import { Connection } from './connection.js';
import { assertNever, invariant, TransportError, type TransportErrorCode } from './errors.js';
import { encodeMessageFrames, FRAME_OVERHEAD_BYTES, FrameType } from './frame.js';
import { checkGroupId, type GroupOptions, GroupRouter } from './group-router.js';
import {
  memorySnapshotSink,
  SnapshotReceiver,
  type SnapshotSinkProvider,
  type SnapshotSource,
  type SnapshotSourceProvider,
  streamSnapshot,
} from './snapshot.js';
import {
  DEFAULT_GROUP_ID,
  type GroupEndpoint,
  type GroupId,
  type LinkFilter,
  type LinkVerdict,
  type Transport,
} from './transport.js';
import { formatPeerUrl, type PeerAddress, parsePeerUrl } from './url.js';
import {
  ConnectionKind,
  decodeHello,
  decodeHelloAck,
  decodeSnapshotAck,
  encodeHello,
  encodeHelloAck,
  encodeSnapshotAck,
  type Hello,
  PROTOCOL_VERSION,
} from './wire.js';

export type { LinkFilter, LinkVerdict } from './transport.js';

export interface PeerTransportOptions extends GroupOptions {
  nodeId: NodeId;
  clusterId: string;
  /** Where to accept peer connections, e.g. http://127.0.0.1:2380 (port 0: ephemeral). */
  listenUrl: string;
  /** Every group with this peer should call raft reportUnreachable(peer). */
  onUnreachable?: (peer: NodeId) => void;
  /** A message connection to peer is up (either side dialed); e.g. to start the first election. */
  onPeerConnected?: (peer: NodeId) => void;
  /** Protocol problems worth logging (handshake rejections, CRC mismatches, oversize messages). */
  onError?: (error: TransportError, peer: NodeId | undefined) => void;
  /** Data for outgoing MsgSnap whose snapshot.data is empty; see SnapshotSourceProvider. */
  snapshotSource?: SnapshotSourceProvider;
  /** Where incoming snapshot bytes go; default reassembles in memory. See SnapshotSink. */
  snapshotSink?: SnapshotSinkProvider;
  /** Largest frame payload accepted or produced. Default 32 MiB. */
  frameBytesMax?: number;
  /** Per-peer send queue bounds. Defaults 4096 messages, 64 MiB. */
  queuedMessagesMax?: number;
  queuedBytesMax?: number;
  /** Snapshot chunk size. Default 1 MiB. */
  chunkBytes?: number;
  /**
   * Largest snapshot a receiver accepts. Default 2 GiB: the default sink reassembles it in
   * memory; with a file sink (snapshotSink) only the disk bounds it.
   */
  snapshotBytesMax?: number;
  /** Redial backoff: doubles from min to max, with jitter in [base/2, base]. Defaults 50 ms, 2 s. */
  backoffMinMs?: number;
  backoffMaxMs?: number;
  handshakeTimeoutMs?: number;
  /** A snapshot stream with no frame for this long (or no ack after the end) fails. */
  snapshotIdleTimeoutMs?: number;
  keepAliveDelayMs?: number;
  /** Send a KeepAlive frame on a message connection idle (nothing written) this long. Default 1 s. */
  pingIntervalMs?: number;
  /**
   * Drop a message connection that received nothing for this long (a frozen or partitioned peer
   * whose TCP connection never closes). Must exceed pingIntervalMs. Default 5 s.
   */
  idleTimeoutMs?: number;
  /**
   * Mutual TLS for peer connections (etcd's --peer-cert-file, --peer-key-file,
   * --peer-trusted-ca-file with client cert auth). When set, every peer URL, including
   * listenUrl, must be https://; when unset, https:// URLs are refused.
   */
  tls?: PeerTlsOptions;
  /** Jitter source, injectable for reproducible tests. */
  random?: () => number;
  /**
   * Serves plain HTTP/1.1 on the peer port (a joining member asks a peer for the member list,
   * as etcd serves /members on its peer URL). A connection whose first byte is an ASCII letter
   * is HTTP (every frame starts with a big-endian length below 2^25, so its first byte is tiny);
   * the socket, with its first bytes pushed back, goes to this handler.
   */
  httpConnection?: (socket: Socket) => void;
}

export interface PeerTlsOptions {
  /** PEM certificate of this node; used both as server and as client certificate. */
  cert: string | Buffer;
  key: string | Buffer;
  /** PEM CA bundle that peers' certificates must chain to (the system roots when absent). */
  ca?: string | Buffer;
  /**
   * Accept only dialers with a certificate that chains to `ca` (etcd's --peer-client-cert-auth,
   * implied by --peer-trusted-ca-file). Default true.
   */
  requestCert?: boolean;
  /** Dial without verifying the peer's certificate (etcd's --peer-auto-tls). Default false. */
  insecureSkipVerify?: boolean;
  minVersion?: 'TLSv1.2' | 'TLSv1.3';
  /** OpenSSL cipher list. */
  ciphers?: string;
}

export interface PeerStats {
  messagesSent: number;
  bytesSent: number;
  /** Socket writes on the message connection: at most one per event-loop turn. */
  writes: number;
  messagesReceived: number;
  bytesReceived: number;
  messagesDropped: number;
  queuedMessages: number;
  queuedBytes: number;
  connected: number;
  connects: number;
  /** Connections established after the first one. */
  reconnects: number;
  dialFailures: number;
  snapshotsSent: number;
  snapshotsFailed: number;
  snapshotsReceived: number;
  snapshotBytesSent: number;
  snapshotBytesReceived: number;
}

export interface TransportStats {
  peers: Record<string, PeerStats>;
  /** Messages for peers never added (no address, no connection). */
  messagesDroppedUnknownPeer: number;
  /** Received messages (snapshots included) for a group this node does not host. */
  messagesDroppedUnknownGroup: number;
  connectionsRejected: number;
  protocolErrors: number;
}

const DEFAULTS = {
  frameBytesMax: 32 << 20,
  queuedMessagesMax: 4096,
  queuedBytesMax: 64 << 20,
  chunkBytes: 1 << 20,
  snapshotBytesMax: 2 ** 31,
  backoffMinMs: 50,
  backoffMaxMs: 2000,
  handshakeTimeoutMs: 5000,
  snapshotIdleTimeoutMs: 30_000,
  keepAliveDelayMs: 10_000,
  pingIntervalMs: 1000,
  idleTimeoutMs: 5000,
};

type Settings = typeof DEFAULTS;

/** Message types the core hands out for the network (MsgProp is forwarded to the leader). */
function isNetworkMessage(type: MessageType): boolean {
  switch (type) {
    case MessageType.Hup:
    case MessageType.Beat:
    case MessageType.Unreachable:
    case MessageType.SnapshotStatus:
    case MessageType.CheckQuorum:
      return false;
    case MessageType.Propose:
    case MessageType.Append:
    case MessageType.AppendResponse:
    case MessageType.Vote:
    case MessageType.VoteResponse:
    case MessageType.PreVote:
    case MessageType.PreVoteResponse:
    case MessageType.Snapshot:
    case MessageType.Heartbeat:
    case MessageType.HeartbeatResponse:
    case MessageType.TimeoutNow:
    case MessageType.ReadIndex:
    case MessageType.ReadIndexResponse:
    case MessageType.TransferLeader:
      return true;
    default:
      return assertNever(type, 'message type');
  }
}

function emptyStats(): PeerStats {
  return {
    messagesSent: 0,
    bytesSent: 0,
    writes: 0,
    messagesReceived: 0,
    bytesReceived: 0,
    messagesDropped: 0,
    queuedMessages: 0,
    queuedBytes: 0,
    connected: 0,
    connects: 0,
    reconnects: 0,
    dialFailures: 0,
    snapshotsSent: 0,
    snapshotsFailed: 0,
    snapshotsReceived: 0,
    snapshotBytesSent: 0,
    snapshotBytesReceived: 0,
  };
}

class Peer {
  address: PeerAddress | undefined;
  conn: Connection | undefined;
  dialing: Connection | undefined;
  redialTimer: NodeJS.Timeout | undefined;
  backoffAttempt = 0;
  queue: GroupMessage[] = [];
  queueSizes: number[] = [];
  queuedBytes = 0;
  writeBlocked = false;
  /** Snapshots being sent to this peer, one per group at most (the connection once dialed). */
  readonly snapshots = new Map<GroupId, Connection | undefined>();
  readonly stats = emptyStats();
  constructor(readonly id: NodeId) {}
}

export class PeerTransport implements Transport {
  private readonly settings: Settings;
  private readonly listenAddress: PeerAddress;
  private readonly peers = new Map<NodeId, Peer>();
  private readonly connections = new Set<Connection>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly dirty = new Set<Peer>();
  private deferred: Array<() => void> = [];
  private readonly unreachablePending = new Set<NodeId>();
  private keepAliveTimer: NodeJS.Timeout | undefined;
  private lastLivenessCheckMs = Date.now();
  private flushHandle: NodeJS.Immediate | undefined;
  private server: Server | undefined;
  private boundAddress: PeerAddress | undefined;
  private linkFilter: LinkFilter | undefined;
  private closed = false;
  private readonly random: () => number;
  private readonly groups: GroupRouter;
  private readonly totals = { messagesDroppedUnknownPeer: 0, connectionsRejected: 0, protocolErrors: 0 };

  constructor(private readonly options: PeerTransportOptions) {
    if (!Number.isSafeInteger(options.nodeId) || options.nodeId <= 0) {
      throw new TypeError(`nodeId must be a positive safe integer, got ${options.nodeId}`);
    }
    const settings = { ...DEFAULTS };
    for (const key of Object.keys(DEFAULTS) as Array<keyof Settings>) {
      const value = options[key];
      if (value === undefined) continue;
      if (!Number.isFinite(value) || value <= 0)
        throw new TypeError(`${key} must be a positive number, got ${value}`);
      settings[key] = value;
    }
    invariant(settings.backoffMinMs <= settings.backoffMaxMs, 'backoffMinMs must not exceed backoffMaxMs');
    invariant(settings.chunkBytes + 16 <= settings.frameBytesMax, 'chunkBytes must fit in a frame');
    invariant(settings.pingIntervalMs < settings.idleTimeoutMs, 'pingIntervalMs must be below idleTimeoutMs');
    this.settings = settings;
    this.listenAddress = this.parseUrl(options.listenUrl);
    this.random = options.random ?? Math.random;
    this.groups = new GroupRouter(options);
  }

  get nodeId(): NodeId {
    return this.options.nodeId;
  }

  /** The URL actually listened on (with the real port when port 0 was asked for). */
  get url(): string {
    if (this.boundAddress === undefined) throw new TransportError('CLOSED', 'transport is not listening');
    return formatPeerUrl(this.boundAddress);
  }

  async listen(): Promise<string> {
    invariant(this.server === undefined, 'listen() called twice');
    if (this.closed) throw new TransportError('CLOSED', 'transport is closed');
    const tls = this.options.tls;
    const server =
      tls === undefined
        ? createServer((socket) => this.accept(socket))
        : createTlsServer(
            {
              ...tlsContextOptions(tls),
              requestCert: tls.requestCert ?? true,
              rejectUnauthorized: tls.requestCert ?? true,
            },
            (socket) => this.accept(socket),
          );
    // A peer whose certificate does not verify never reaches accept(); count it and move on.
    server.on('tlsClientError', (error: Error) => {
      this.totals.connectionsRejected++;
      this.reportError(
        new TransportError('TLS_FAILED', `peer TLS handshake failed: ${error.message}`),
        undefined,
      );
    });
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.listenAddress.port, this.listenAddress.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const bound = server.address();
    invariant(bound !== null && typeof bound === 'object', 'TCP server has an address');
    this.boundAddress = { ...this.listenAddress, port: bound.port };
    this.keepAliveTimer = setInterval(() => this.checkLiveness(), this.settings.pingIntervalMs / 2);
    return this.url;
  }

  addPeer(id: NodeId, url: string): void {
    this.checkOpen();
    if (id === this.nodeId) throw new TypeError(`cannot add self (${id}) as a peer`);
    if (!Number.isSafeInteger(id) || id <= 0)
      throw new TypeError(`peer id must be a positive safe integer, got ${id}`);
    const address = this.parseUrl(url);
    const peer = this.peers.get(id) ?? new Peer(id);
    this.peers.set(id, peer);
    this.setAddress(peer, address);
  }

  updatePeer(id: NodeId, url: string): void {
    this.checkOpen();
    const peer = this.peers.get(id);
    if (peer === undefined)
      throw new TransportError('UNKNOWN_PEER', `peer ${id} is not known; addPeer it first`);
    this.setAddress(peer, this.parseUrl(url));
  }

  removePeer(id: NodeId): void {
    const peer = this.peers.get(id);
    if (peer === undefined) return;
    this.peers.delete(id);
    this.dirty.delete(peer);
    this.clearRedial(peer);
    peer.queue = [];
    peer.queueSizes = [];
    peer.queuedBytes = 0;
    peer.dialing?.close(new TransportError('CLOSED', `peer ${id} removed`));
    peer.conn?.close(new TransportError('CLOSED', `peer ${id} removed`));
    for (const conn of peer.snapshots.values())
      conn?.close(new TransportError('CLOSED', `peer ${id} removed`));
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

  /** Queue messages; they leave in one write per peer at the end of this event-loop turn. */
  send(messages: readonly Message[], group: GroupId = DEFAULT_GROUP_ID): void {
    this.checkOpen();
    checkGroupId(group);
    for (const m of messages) {
      if (!isNetworkMessage(m.type))
        throw new TypeError(`message type ${MessageType[m.type]} is local, not sendable`);
      if (m.to === this.nodeId || m.to <= 0)
        throw new TypeError(`message to ${m.to} from node ${this.nodeId}`);
      // The receiver drops a connection carrying a message not from its peer, so catch it here.
      if (m.from !== this.nodeId) throw new TypeError(`message from ${m.from} sent by node ${this.nodeId}`);
      const verdict = this.verdict(this.nodeId, m.to);
      const item = { group, message: m };
      if (verdict === 'drop') {
        this.countDrop(m.to);
        // Raft waits for a snapshot's outcome; a dropped one must still be reported as failed.
        if (m.type === MessageType.Snapshot) this.defer(() => this.groups.snapshotStatus(group, m.to, false));
      } else if (verdict === 'pass') {
        this.route(item);
      } else {
        this.later(verdict.delayMs, () => this.route(item));
      }
    }
  }

  /**
   * Writes what is queued now rather than at the end of the turn: for a caller about to wait
   * (a Raft loop starting its fsync), so the peers can start on it meanwhile. Still one write per
   * peer for everything queued; callbacks into the driver keep waiting for the turn's end.
   */
  flush(): void {
    for (const peer of this.dirty) this.flushPeer(peer);
    this.dirty.clear();
  }

  stats(): TransportStats {
    const peers: Record<string, PeerStats> = {};
    for (const [id, peer] of this.peers) {
      peers[String(id)] = {
        ...peer.stats,
        queuedMessages: peer.queue.length,
        queuedBytes: peer.queuedBytes,
        connected: peer.conn === undefined ? 0 : 1,
      };
    }
    return { peers, ...this.totals, messagesDroppedUnknownGroup: this.groups.messagesDroppedUnknownGroup };
  }

  /** Releases every socket and timer; no callback fires afterwards. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.flushHandle !== undefined) clearImmediate(this.flushHandle);
    this.flushHandle = undefined;
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    if (this.keepAliveTimer !== undefined) clearInterval(this.keepAliveTimer);
    this.keepAliveTimer = undefined;
    for (const peer of this.peers.values()) this.clearRedial(peer);
    for (const conn of [...this.connections]) {
      conn.close(new TransportError('CLOSED', 'transport closed'));
      conn.socket.destroy();
    }
    const server = this.server;
    if (server !== undefined) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  // ---- sending ------------------------------------------------------------------------------

  private route(item: GroupMessage): void {
    if (this.closed) return;
    const m = item.message;
    const peer = this.peers.get(m.to);
    if (peer === undefined) {
      this.totals.messagesDroppedUnknownPeer++;
      this.reportUnreachableId(m.to);
      if (m.type === MessageType.Snapshot)
        this.defer(() => this.groups.snapshotStatus(item.group, m.to, false));
      return;
    }
    if (m.type === MessageType.Snapshot) {
      this.startSnapshot(peer, item);
      return;
    }
    this.enqueue(peer, item);
  }

  private enqueue(peer: Peer, item: GroupMessage): void {
    if (item.message.type === MessageType.Propose && peer.conn === undefined) {
      // A proposal forwarded to a leader we cannot reach is dropped, not kept for its return:
      // queued, it could commit seconds later, long after its client gave up on it.
      peer.stats.messagesDropped++;
      this.reportUnreachable(peer);
      return;
    }
    const size = groupMessageBytes(item);
    if (size + FRAME_OVERHEAD_BYTES + 6 > this.settings.frameBytesMax) {
      peer.stats.messagesDropped++;
      this.reportError(
        new TransportError(
          'MESSAGE_TOO_LARGE',
          `message of ${size} bytes exceeds frameBytesMax ${this.settings.frameBytesMax}`,
        ),
        peer.id,
      );
      this.reportUnreachable(peer);
      return;
    }
    if (
      peer.queue.length >= this.settings.queuedMessagesMax ||
      peer.queuedBytes + size > this.settings.queuedBytesMax
    ) {
      peer.stats.messagesDropped++;
      this.reportUnreachable(peer);
      return;
    }
    peer.queue.push(item);
    peer.queueSizes.push(size);
    peer.queuedBytes += size;
    this.markDirty(peer);
  }

  private markDirty(peer: Peer): void {
    this.dirty.add(peer);
    this.scheduleFlush();
  }

  private scheduleFlush(): void {
    if (this.flushHandle !== undefined || this.closed) return;
    this.flushHandle = setImmediate(() => this.flushTick());
  }

  private flushTick(): void {
    this.flushHandle = undefined;
    this.flush();
    const callbacks = this.deferred;
    this.deferred = [];
    for (const callback of callbacks) callback();
  }

  private flushPeer(peer: Peer): void {
    const conn = peer.conn;
    if (conn === undefined || peer.writeBlocked || peer.queue.length === 0) return;
    const frames = encodeMessageFrames(peer.queue, peer.queueSizes, this.settings.frameBytesMax);
    const count = peer.queue.length;
    peer.queue = [];
    peer.queueSizes = [];
    peer.queuedBytes = 0;
    peer.stats.writes++;
    peer.stats.messagesSent += count;
    peer.stats.bytesSent += frames.length;
    conn.lastWriteMs = Date.now();
    if (!conn.socket.write(frames)) {
      // Keep queuing (bounded) until the kernel takes more; then flush everything at once.
      peer.writeBlocked = true;
      conn.socket.once('drain', () => {
        peer.writeBlocked = false;
        if (peer.conn === conn) this.markDirty(peer);
      });
    }
  }

  private defer(callback: () => void): void {
    this.deferred.push(() => {
      if (!this.closed) callback();
    });
    this.scheduleFlush();
  }

  private reportUnreachable(peer: Peer): void {
    this.reportUnreachableId(peer.id);
  }

  /** At most one report per peer per turn: a full queue drops many messages at once. */
  private reportUnreachableId(id: NodeId): void {
    if (this.unreachablePending.has(id)) return;
    this.unreachablePending.add(id);
    this.defer(() => {
      this.unreachablePending.delete(id);
      this.options.onUnreachable?.(id);
    });
  }

  private countDrop(to: NodeId): void {
    const peer = this.peers.get(to);
    if (peer !== undefined) peer.stats.messagesDropped++;
  }

  // ---- message connection -------------------------------------------------------------------

  private setAddress(peer: Peer, address: PeerAddress): void {
    const changed =
      peer.address === undefined || peer.address.host !== address.host || peer.address.port !== address.port;
    peer.address = address;
    if (!changed || !this.dials(peer.id)) return;
    // A new address invalidates the current connection and any backoff towards the old one.
    // Closing schedules a redial towards the old backoff; clear it afterwards and dial now.
    peer.dialing?.close(new TransportError('CLOSED', 'peer address changed'));
    peer.conn?.close(new TransportError('CLOSED', 'peer address changed'));
    this.clearRedial(peer);
    peer.backoffAttempt = 0;
    this.dial(peer);
  }

  /** Lower id dials: the rule that makes one connection per pair without dial races. */
  private dials(peerId: NodeId): boolean {
    return this.nodeId < peerId;
  }

  private dial(peer: Peer): void {
    if (this.closed || peer.address === undefined || peer.dialing !== undefined || peer.conn !== undefined)
      return;
    if (this.peers.get(peer.id) !== peer) return;
    const conn = this.openConnection(peer.address);
    peer.dialing = conn;
    conn.onClose((error) => {
      if (peer.dialing !== conn) return;
      peer.dialing = undefined;
      peer.stats.dialFailures++;
      if (error instanceof TransportError) this.reportError(error, peer.id);
      else if (error !== undefined && isTlsError(error)) {
        this.reportError(
          new TransportError('TLS_FAILED', `TLS to peer ${peer.id} failed: ${error.message}`),
          peer.id,
        );
      }
      this.scheduleRedial(peer);
    });
    this.handshakeAsDialer(conn, peer.id, ConnectionKind.Messages, () => {
      peer.dialing = undefined;
      this.attach(peer, conn);
    });
  }

  private openConnection(address: PeerAddress): Connection {
    const tls = this.options.tls;
    const socket =
      tls === undefined
        ? tcpConnect({ host: address.host, port: address.port })
        : tlsConnect({
            ...tlsContextOptions(tls),
            host: address.host,
            port: address.port,
            rejectUnauthorized: !(tls.insecureSkipVerify ?? false),
          });
    return this.track(new Connection(socket, this.settings.frameBytesMax, this.settings.keepAliveDelayMs));
  }

  private track(conn: Connection): Connection {
    this.connections.add(conn);
    // Until the socket itself is gone: a rejected connection lingers briefly to flush its reason.
    conn.socket.once('close', () => this.connections.delete(conn));
    return conn;
  }

  /** Sends Hello; calls onReady synchronously from the HelloAck frame so no later frame is missed. */
  private handshakeAsDialer(
    conn: Connection,
    peerId: NodeId,
    kind: ConnectionKind,
    onReady: () => void,
  ): void {
    const hello: Hello = {
      protocolVersion: PROTOCOL_VERSION,
      kind,
      from: this.nodeId,
      to: peerId,
      clusterId: this.options.clusterId,
    };
    conn.writeFrame(FrameType.Hello, encodeHello(hello));
    conn.setDeadline(
      this.settings.handshakeTimeoutMs,
      () => new TransportError('HANDSHAKE_TIMEOUT', `no handshake answer from peer ${peerId}`),
    );
    conn.handler = (type, payload) => {
      if (type !== FrameType.HelloAck)
        throw new TransportError('FRAME_UNEXPECTED', `expected HelloAck, got frame type ${type}`);
      const ack = decodeHelloAck(payload);
      if (!ack.accepted)
        throw new TransportError(
          rejectionCode(ack.errorCode),
          `peer ${peerId} rejected the connection: ${ack.reason}`,
        );
      if (ack.nodeId !== peerId) {
        throw new TransportError(
          'NODE_ID_MISMATCH',
          `dialed peer ${peerId} but node ${ack.nodeId} answered; check the peer URL`,
        );
      }
      if (ack.clusterId !== this.options.clusterId) {
        throw new TransportError(
          'CLUSTER_ID_MISMATCH',
          `peer ${peerId} is in cluster ${ack.clusterId}, this node in ${this.options.clusterId}`,
        );
      }
      conn.clearDeadline();
      onReady();
    };
  }

  private attach(peer: Peer, conn: Connection): void {
    invariant(peer.conn === undefined, `peer ${peer.id} already has a message connection`);
    peer.conn = conn;
    peer.writeBlocked = false;
    peer.backoffAttempt = 0;
    if (peer.stats.connects > 0) peer.stats.reconnects++;
    peer.stats.connects++;
    conn.handler = (type, payload) => this.onPeerFrame(peer, type, payload);
    this.defer(() => this.options.onPeerConnected?.(peer.id));
    conn.onClose((error) => {
      if (peer.conn !== conn) return;
      peer.conn = undefined;
      peer.writeBlocked = false;
      if (error instanceof TransportError && error.code !== 'CLOSED') this.reportError(error, peer.id);
      if (this.closed || this.peers.get(peer.id) !== peer) return;
      this.reportUnreachable(peer);
      if (this.dials(peer.id)) this.scheduleRedial(peer);
    });
    this.markDirty(peer);
  }

  private scheduleRedial(peer: Peer): void {
    if (this.closed || this.peers.get(peer.id) !== peer || peer.redialTimer !== undefined) return;
    const { backoffMinMs, backoffMaxMs } = this.settings;
    const delayMs = backoffDelayMs(peer.backoffAttempt, backoffMinMs, backoffMaxMs, this.random());
    peer.backoffAttempt = Math.min(peer.backoffAttempt + 1, BACKOFF_ATTEMPTS_MAX);
    peer.redialTimer = setTimeout(() => {
      peer.redialTimer = undefined;
      this.dial(peer);
    }, delayMs);
  }

  private clearRedial(peer: Peer): void {
    if (peer.redialTimer !== undefined) clearTimeout(peer.redialTimer);
    peer.redialTimer = undefined;
  }

  private onPeerFrame(peer: Peer, type: FrameType, payload: Buffer): void {
    if (type === FrameType.KeepAlive) return;
    if (type !== FrameType.Messages)
      throw new TransportError('FRAME_UNEXPECTED', `frame type ${type} on a message connection`);
    const items = decodeBatch(payload);
    for (const { message: m } of items) {
      if (m.from !== peer.id || m.to !== this.nodeId) {
        throw new TransportError(
          'CODEC_INVALID',
          `message ${m.from}→${m.to} on the connection between ${peer.id} and ${this.nodeId}`,
        );
      }
    }
    peer.stats.messagesReceived += items.length;
    peer.stats.bytesReceived += payload.length + FRAME_OVERHEAD_BYTES;
    for (const item of items) this.receive(peer, item);
  }

  private receive(peer: Peer, item: GroupMessage): void {
    const verdict = this.verdict(item.message.from, this.nodeId);
    if (verdict === 'pass') {
      this.deliver(item);
    } else if (verdict === 'drop') {
      peer.stats.messagesDropped++;
    } else {
      this.later(verdict.delayMs, () => this.deliver(item));
    }
  }

  /** Hands the message to its group's endpoint; false when the group is unknown here. */
  private deliver({ group, message }: GroupMessage): boolean {
    if (this.closed) return false;
    try {
      return this.groups.deliver(group, message);
    } catch (error) {
      // A throwing handler is a bug in the caller; surface it loudly instead of killing the link.
      queueMicrotask(() => {
        throw error;
      });
      return true;
    }
  }

  /** Pings idle message connections and drops silent ones (see idleTimeoutMs). */
  private checkLiveness(): void {
    const now = Date.now();
    // After a stalled event loop, timers run before the socket reads that queued up meanwhile:
    // silence measured across a stall is no evidence, so skip one round and look again.
    const stalled = now - this.lastLivenessCheckMs > this.settings.pingIntervalMs;
    this.lastLivenessCheckMs = now;
    for (const peer of this.peers.values()) {
      const conn = peer.conn;
      if (conn === undefined) continue;
      if (!stalled && now - conn.lastReceiveMs > this.settings.idleTimeoutMs) {
        conn.close(
          new TransportError(
            'PEER_SILENT',
            `peer ${peer.id} sent nothing for ${now - conn.lastReceiveMs} ms`,
          ),
        );
      } else if (now - conn.lastWriteMs >= this.settings.pingIntervalMs && !peer.writeBlocked) {
        conn.lastWriteMs = now;
        conn.writeFrame(FrameType.KeepAlive, EMPTY_PAYLOAD);
      }
    }
  }

  // ---- accepting ----------------------------------------------------------------------------

  private accept(socket: Socket): void {
    if (this.closed) {
      socket.destroy();
      return;
    }
    const httpConnection = this.options.httpConnection;
    if (httpConnection === undefined) return this.acceptPeer(socket);
    socket.setTimeout(this.settings.handshakeTimeoutMs, () => socket.destroy());
    socket.once('data', (first: Buffer) => {
      socket.setTimeout(0);
      socket.pause();
      socket.unshift(first);
      if (first[0]! >= 0x41) httpConnection(socket);
      else this.acceptPeer(socket);
      socket.resume();
    });
  }

  private acceptPeer(socket: Socket): void {
    const conn = this.track(
      new Connection(socket, this.settings.frameBytesMax, this.settings.keepAliveDelayMs),
    );
    conn.setDeadline(
      this.settings.handshakeTimeoutMs,
      () => new TransportError('HANDSHAKE_TIMEOUT', 'no Hello from dialer'),
    );
    let greeted = false;
    conn.handler = (type, payload) => {
      if (type !== FrameType.Hello)
        throw new TransportError('FRAME_UNEXPECTED', `expected Hello, got frame type ${type}`);
      conn.clearDeadline();
      greeted = true;
      this.onHello(conn, decodeHello(payload));
    };
    conn.onClose((error) => {
      // After the Hello, the message or snapshot path owns error reporting.
      if (!greeted && error instanceof TransportError && error.code !== 'CLOSED')
        this.reportError(error, undefined);
    });
  }

  private onHello(conn: Connection, hello: Hello): void {
    const rejection = this.checkHello(hello);
    if (rejection !== undefined) {
      this.totals.connectionsRejected++;
      const ack = {
        accepted: false,
        nodeId: this.nodeId,
        clusterId: this.options.clusterId,
        errorCode: rejection.code,
        reason: rejection.message,
      };
      this.reportError(rejection, hello.from);
      conn.endWithFrame(FrameType.HelloAck, encodeHelloAck(ack), new TransportError('CLOSED', 'rejected'));
      return;
    }
    const ack = {
      accepted: true,
      nodeId: this.nodeId,
      clusterId: this.options.clusterId,
      errorCode: '',
      reason: '',
    };
    conn.writeFrame(FrameType.HelloAck, encodeHelloAck(ack));
    switch (hello.kind) {
      case ConnectionKind.Messages:
        this.acceptMessages(conn, hello.from);
        return;
      case ConnectionKind.Snapshot:
        this.acceptSnapshot(conn, hello.from);
        return;
      default:
        assertNever(hello.kind, 'connection kind');
    }
  }

  private checkHello(hello: Hello): TransportError | undefined {
    if (hello.protocolVersion !== PROTOCOL_VERSION) {
      return new TransportError(
        'PROTOCOL_VERSION_MISMATCH',
        `peer ${hello.from} speaks protocol ${hello.protocolVersion}, this node ${PROTOCOL_VERSION}`,
      );
    }
    if (hello.clusterId !== this.options.clusterId) {
      return new TransportError(
        'CLUSTER_ID_MISMATCH',
        `request cluster ID mismatch: peer ${hello.from} is in cluster ${hello.clusterId}, this node in ${this.options.clusterId}`,
      );
    }
    if (hello.to !== this.nodeId) {
      return new TransportError(
        'NODE_ID_MISMATCH',
        `peer ${hello.from} dialed node ${hello.to} but reached node ${this.nodeId}`,
      );
    }
    if (hello.from === this.nodeId || hello.from <= 0) {
      return new TransportError('NODE_ID_MISMATCH', `dialer claims node id ${hello.from}`);
    }
    if (hello.kind === ConnectionKind.Messages && !(hello.from < this.nodeId)) {
      return new TransportError(
        'DIAL_DIRECTION',
        `node ${hello.from} must not dial ${this.nodeId}: the lower id dials`,
      );
    }
    return undefined;
  }

  private acceptMessages(conn: Connection, from: NodeId): void {
    // A peer we were never told about (e.g. added to the cluster before our conf change applied)
    // may still talk to us; its connection lets us answer it.
    let peer = this.peers.get(from);
    if (peer === undefined) {
      peer = new Peer(from);
      this.peers.set(from, peer);
    }
    // The dialer only redials when its old connection died, so the newest connection wins.
    peer.conn?.close(new TransportError('CLOSED', 'replaced by a newer connection from the same peer'));
    invariant(peer.conn === undefined, 'old connection detached on close');
    this.attach(peer, conn);
  }

  // ---- snapshots ----------------------------------------------------------------------------

  private startSnapshot(peer: Peer, item: GroupMessage): void {
    invariant(item.message.snapshot !== undefined, 'MsgSnap carries a snapshot');
    const group = item.group;
    if (peer.snapshots.has(group)) {
      // Raft sends a group one snapshot per follower at a time; a second one means the first is stale.
      this.reportError(
        new TransportError(
          'SNAPSHOT_BUSY',
          `a snapshot of group ${group} to peer ${peer.id} is already in flight`,
        ),
        peer.id,
      );
      this.defer(() => this.groups.snapshotStatus(group, peer.id, false));
      return;
    }
    peer.snapshots.set(group, undefined);
    this.sendSnapshot(peer, item).then(
      (ok) => this.finishSnapshot(peer, group, ok, true),
      (error: unknown) => {
        if (!(error instanceof TransportError)) {
          // Socket errors and snapshot source errors (a missing file): say why the snapshot failed.
          const reason = error instanceof Error ? error.message : String(error);
          this.reportError(
            new TransportError('SNAPSHOT_FAILED', `snapshot to peer ${peer.id} failed: ${reason}`, {
              cause: error,
            }),
            peer.id,
          );
        } else if (error.code !== 'CLOSED') {
          this.reportError(error, peer.id);
        }
        this.finishSnapshot(peer, group, false, false);
      },
    );
  }

  /** `reached`: the receiver answered (accepted or refused); otherwise the peer is unreachable. */
  private finishSnapshot(peer: Peer, group: GroupId, ok: boolean, reached: boolean): void {
    peer.snapshots.delete(group);
    if (ok) peer.stats.snapshotsSent++;
    else peer.stats.snapshotsFailed++;
    if (!reached) this.reportUnreachable(peer);
    this.defer(() => this.groups.snapshotStatus(group, peer.id, ok));
  }

  /** True once the receiver acknowledged it, false when it refused it (an ack saying why). */
  private async sendSnapshot(peer: Peer, item: GroupMessage): Promise<boolean> {
    const address = peer.address;
    if (address === undefined) throw new TransportError('UNKNOWN_PEER', `no address for peer ${peer.id}`);
    const conn = this.openConnection(address);
    peer.snapshots.set(item.group, conn);
    try {
      await new Promise<void>((resolve, reject) => {
        conn.onClose((error) => reject(error ?? new TransportError('CLOSED', 'snapshot connection closed')));
        this.handshakeAsDialer(conn, peer.id, ConnectionKind.Snapshot, resolve);
      });
      const ack = this.awaitSnapshotAck(conn);
      const source = this.snapshotSourceOf(item);
      // A receiver that stops reading (frozen, partitioned) must not keep the group's slot forever.
      const stalled = (): TransportError =>
        new TransportError('SNAPSHOT_FAILED', `snapshot stream to peer ${peer.id} stalled`);
      const progress = (): void => conn.setDeadline(this.settings.snapshotIdleTimeoutMs, stalled);
      progress();
      const streamed = await streamSnapshot(conn, item, source, this.settings.chunkBytes, progress);
      peer.stats.snapshotBytesSent += streamed.totalBytes;
      conn.setDeadline(
        this.settings.snapshotIdleTimeoutMs,
        () => new TransportError('SNAPSHOT_FAILED', 'no snapshot ack'),
      );
      const result = await ack;
      if (!result.ok) {
        this.reportError(
          new TransportError('SNAPSHOT_FAILED', `peer ${peer.id} refused the snapshot: ${result.reason}`),
          peer.id,
        );
      }
      return result.ok;
    } finally {
      conn.close(undefined);
    }
  }

  private awaitSnapshotAck(conn: Connection): Promise<{ ok: boolean; reason: string }> {
    const ack = new Promise<{ ok: boolean; reason: string }>((resolve, reject) => {
      conn.handler = (type, payload) => {
        if (type !== FrameType.SnapshotAck)
          throw new TransportError('FRAME_UNEXPECTED', `frame type ${type} while sending a snapshot`);
        resolve(decodeSnapshotAck(payload));
      };
      conn.onClose((error) =>
        reject(error ?? new TransportError('SNAPSHOT_FAILED', 'snapshot connection closed before ack')),
      );
    });
    // Streaming may fail first; the ack's rejection is then expected and must not go unhandled.
    ack.catch(() => undefined);
    return ack;
  }

  private snapshotSourceOf({ group, message }: GroupMessage): SnapshotSource {
    const data = message.snapshot!.data;
    if (data.length > 0) return [data];
    return this.options.snapshotSource?.(message, group) ?? [];
  }

  private acceptSnapshot(conn: Connection, from: NodeId): void {
    const idle = (): void =>
      conn.setDeadline(
        this.settings.snapshotIdleTimeoutMs,
        () => new TransportError('SNAPSHOT_FAILED', `snapshot from ${from} stalled`),
      );
    const refuse = (error: TransportError): void => {
      if (conn.closed) return; // already refused or gone: one report per stream
      this.reportError(error, from);
      conn.endWithFrame(FrameType.SnapshotAck, encodeSnapshotAck(false, error.message), error);
    };
    const receiver = new SnapshotReceiver(
      from,
      this.nodeId,
      this.settings.snapshotBytesMax,
      this.options.snapshotSink ?? memorySnapshotSink,
      {
        admit: (group, m) => this.groups.resolve(group, m) !== undefined,
        pause: () => conn.socket.pause(),
        resume: () => {
          idle();
          conn.socket.resume();
        },
        fail: (error) =>
          refuse(
            new TransportError('SNAPSHOT_FAILED', `snapshot sink failed: ${error.message}`, { cause: error }),
          ),
      },
    );
    idle();
    conn.onClose((error) => {
      receiver.abort(error ?? new TransportError('CLOSED', 'snapshot connection closed'));
      if (error instanceof TransportError && error.code !== 'CLOSED') this.reportError(error, from);
    });
    conn.handler = (type, payload) => {
      idle();
      const complete = this.snapshotFrame(receiver, type, payload, refuse);
      if (complete === undefined) return;
      conn.clearDeadline();
      const verdict = this.verdict(from, this.nodeId);
      if (verdict === 'drop') {
        receiver.abort(new TransportError('CLOSED', 'dropped by link filter'));
        conn.endWithFrame(
          FrameType.SnapshotAck,
          encodeSnapshotAck(false, 'dropped by link filter'),
          new TransportError('CLOSED', 'dropped'),
        );
        return;
      }
      complete.then(
        (item) => {
          if (verdict === 'pass') this.completeSnapshot(conn, from, item, receiver);
          else this.later(verdict.delayMs, () => this.completeSnapshot(conn, from, item, receiver));
        },
        (error: unknown) =>
          refuse(
            error instanceof TransportError
              ? error
              : new TransportError('SNAPSHOT_FAILED', `snapshot sink failed: ${String(error)}`, {
                  cause: error,
                }),
          ),
      );
    };
  }

  /** One frame into the receiver; a snapshot for a group not hosted here is refused with an ack. */
  private snapshotFrame(
    receiver: SnapshotReceiver,
    type: FrameType,
    payload: Buffer,
    refuse: (error: TransportError) => void,
  ): Promise<GroupMessage> | undefined {
    try {
      return receiver.onFrame(type, payload);
    } catch (error) {
      if (!(error instanceof TransportError && error.code === 'UNKNOWN_GROUP')) throw error;
      refuse(error);
      return undefined;
    }
  }

  private completeSnapshot(
    conn: Connection,
    from: NodeId,
    item: GroupMessage,
    receiver: SnapshotReceiver,
  ): void {
    if (conn.closed || this.closed) {
      // The sender will not hear of it and sends again: what the sink kept goes.
      receiver.discardFinished(new TransportError('CLOSED', 'snapshot connection closed before delivery'));
      return;
    }
    if (!this.deliver(item)) {
      // The group went away while its snapshot streamed in.
      receiver.discardFinished(new TransportError('UNKNOWN_GROUP', `group ${item.group} is gone`));
      conn.endWithFrame(
        FrameType.SnapshotAck,
        encodeSnapshotAck(false, `group ${item.group} is not hosted on node ${this.nodeId}`),
        new TransportError('CLOSED', 'refused'),
      );
      return;
    }
    const peer = this.peers.get(from);
    if (peer !== undefined) {
      peer.stats.snapshotsReceived++;
      peer.stats.snapshotBytesReceived += receiver.bytesReceived;
    }
    conn.endWithFrame(
      FrameType.SnapshotAck,
      encodeSnapshotAck(true, ''),
      new TransportError('CLOSED', 'snapshot done'),
    );
  }

  /**
   * New certificates (a rotation): later handshakes on the listener and later dials use them;
   * established connections keep theirs. Who verifies whom stays as configured at start.
   */
  setTls(tls: PeerTlsOptions): void {
    invariant(this.options.tls !== undefined, 'setTls() on a transport without TLS');
    this.options.tls = tls;
    const server = this.server;
    if (server instanceof TlsServer) server.setSecureContext(tlsContextOptions(tls));
  }

  // ---- helpers ------------------------------------------------------------------------------

  private parseUrl(url: string): PeerAddress {
    const address = parsePeerUrl(url);
    if (address.tls && this.options.tls === undefined) {
      throw new TransportError(
        'BAD_PEER_URL',
        `peer URL "${url}" is https:// but no peer TLS cert/key/ca is configured`,
      );
    }
    if (!address.tls && this.options.tls !== undefined) {
      throw new TransportError(
        'BAD_PEER_URL',
        `peer URL "${url}" is http:// but this node requires peer TLS; use https://`,
      );
    }
    return address;
  }

  private verdict(from: NodeId, to: NodeId): LinkVerdict {
    return this.linkFilter === undefined ? 'pass' : this.linkFilter(from, to);
  }

  private later(delayMs: number, action: () => void): void {
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      if (!this.closed) action();
    }, delayMs);
    this.timers.add(timer);
  }

  private reportError(error: TransportError, peer: NodeId | undefined): void {
    if (
      error.code === 'FRAME_CRC_MISMATCH' ||
      error.code === 'CODEC_INVALID' ||
      error.code === 'FRAME_UNEXPECTED'
    ) {
      this.totals.protocolErrors++;
    }
    if (!this.closed) this.options.onError?.(error, peer);
  }

  private checkOpen(): void {
    if (this.closed) throw new TransportError('CLOSED', 'transport is closed');
  }
}

const EMPTY_PAYLOAD = new Uint8Array(0);

function tlsContextOptions(tls: PeerTlsOptions): SecureContextOptions {
  return { cert: tls.cert, key: tls.key, ca: tls.ca, minVersion: tls.minVersion, ciphers: tls.ciphers };
}

/** Certificate and TLS protocol failures: configuration problems worth an onError, unlike ECONNREFUSED. */
function isTlsError(error: Error): boolean {
  const code = (error as NodeJS.ErrnoException).code ?? '';
  return /CERT|TLS|SSL|ALTNAME|SELF_SIGNED/.test(code) || /certificate|handshake/i.test(error.message);
}
/** Past this many doublings the delay is long capped anyway; keeps 2 ** attempt finite. */
const BACKOFF_ATTEMPTS_MAX = 30;

/**
 * Redial delay: the base doubles per failed attempt from minMs up to maxMs, and the delay is
 * drawn from [base/2, base] so that nodes restarted together do not redial in lockstep.
 */
export function backoffDelayMs(attempt: number, minMs: number, maxMs: number, random01: number): number {
  const base = Math.min(maxMs, minMs * 2 ** attempt);
  return base / 2 + (random01 * base) / 2;
}

const REJECTION_CODES: readonly TransportErrorCode[] = [
  'CLUSTER_ID_MISMATCH',
  'PROTOCOL_VERSION_MISMATCH',
  'NODE_ID_MISMATCH',
  'DIAL_DIRECTION',
];

function rejectionCode(code: string): TransportErrorCode {
  return (REJECTION_CODES as readonly string[]).includes(code)
    ? (code as TransportErrorCode)
    : 'HANDSHAKE_REJECTED';
}
