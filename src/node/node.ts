// A Concord node: one process. It owns the data dir, the WAL, the snapshot files and the keyspace
// (LMDB), the peer transport and its HTTP side, the timers, the encryption key ring, and the
// fail-stop; and it hosts the group replicas (src/replica), today two: group 1, the whole
// keyspace, with the cluster-wide etcd state (members, auth, leases, alarms); and group 0, the
// metadata group (replica/meta-replica.ts: nodes, shard map, placement, oracle mark), whose
// records share the one WAL. What each etcd service does is in src/services, over the node and
// its replicas.

import { mkdirSync, rmSync, statSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { Keyspace } from '../mvcc/keyspace.js';
import { MemoryStorage } from '../raft/memory-storage.js';
import { EMPTY_BYTES, type Message, MessageType } from '../raft/types.js';
import { choiceOf, describeChoice } from '../replica/consensus.js';
import {
  GroupReplica,
  loadShardRecord,
  type ReplicaStorage,
  shardSnapshotData,
} from '../replica/group-replica.js';
import { formatId, memberIdNamed } from '../replica/ids.js';
import type { Members } from '../replica/members.js';
import { META_GROUP_ID, MetaReplica } from '../replica/meta-replica.js';
import {
  decodeShardIds,
  encodeShardRecord,
  FIRST_SHARD_ID,
  foundingRecord,
  SHARD_IDS_META_NAME,
  type ShardRecord,
  shardMetaName,
} from '../replica/shard-record.js';
import { ServerStats, timedWalOptions } from '../replica/stats.js';
import { mkdirDurableSync } from '../storage/durable-fs.js';
import { EncryptionKeys } from '../storage/encryption.js';
import { WalFailedError } from '../storage/errors.js';
import { FailStopError, type FailStopOperation } from '../storage/fail-stop.js';
import { SnapshotStore } from '../storage/snapshot-store.js';
import {
  UNSAFE_KEYSPACE_NO_SYNC_ENV,
  UNSAFE_WAL_NO_FDATASYNC_ENV,
  unsafeNoDatasyncIo,
  Wal,
  type WalOptions,
} from '../storage/wal.js';
import type { RecoveredGroup } from '../storage/wal-replay.js';
import { PeerTransport } from '../transport/peer-transport.js';
import { memorySnapshotSink } from '../transport/snapshot.js';
import type { TlsFileWatcher } from '../transport/tls-config.js';
import type { Logger } from '../util/logger.js';
import { sleep } from '../util/sleep.js';
import { EtcdError } from '../wire/etcd-errors.js';
import { recoverMembership } from './bootstrap.js';
import type { ServerConfig } from './config.js';
import { GROUP_ID, WalLog } from './durable-log.js';
import { adoptAgreedKey, KeyRotation, REENCRYPT_STEP_MS } from './key-rotation.js';
import { LeaderClient } from './leader-client.js';
import { refuseEtcdDataDir } from './member-dir.js';
import { leaderCredentials, peerTlsWatcher, peerTransportTls } from './member-tls.js';
import { OracleService } from './oracle-service.js';
import { ReceivedSnapshots } from './received-snapshots.js';

const COMPACTION_IDLE_STEP_MS = 100;
/**
 * Headroom over the space quota for a snapshot received from a peer: the database passes the
 * quota before the NOSPACE alarm stops writes, and its file keeps free pages.
 */
const SNAPSHOT_QUOTA_SLACK_BYTES_MIN = 256 * 1024 * 1024;

/**
 * How the node opens its storage. Production passes nothing; tests wrap the real objects to
 * inject faults at these seams (a WAL fsync that fails, an LMDB transaction that throws).
 */
export interface StorageHooks {
  walOptions?: WalOptions;
  wrapKeyspace?(keyspace: Keyspace): Keyspace;
  wrapSnapshots?(store: SnapshotStore): SnapshotStore;
  wrapWal?(wal: Wal): Wal;
}

export class ConcordNode {
  readonly memberId: number;
  /** The one group this node hosts: the whole keyspace. */
  readonly replica: GroupReplica;
  /** The metadata group's replica (group 0); set by start() before the node serves. */
  private metaReplica: MetaReplica | undefined;
  /**
   * The shard groups other than 1 this member hosts, by group id: the right halves of the splits
   * its groups applied (listed in the keyspace's `shard.ids`), all on the one WAL, keyspace and
   * transport.
   */
  private readonly shardGroups = new Map<number, GroupReplica>();
  /** Forwards to the leader what only the leader answers (see leader-client.ts). */
  readonly leaderClient: LeaderClient;
  /** Revisions from the timestamp oracle (oracle-service.ts): served on the metadata leader, fetched elsewhere. */
  readonly oracle: OracleService;
  /** The peer certificate files, watched for rotation (undefined: plaintext peers). */
  private peerTls: TlsFileWatcher | undefined;
  /** Counters and observers for /metrics (src/cli/metrics.ts). */
  readonly stats: ServerStats;
  private readonly timers: NodeJS.Timeout[] = [];
  /** No new work starts: set by stop() and by failStop(). */
  private stopped = false;
  private closing: Promise<void> | undefined;
  private transportClosed: Promise<void> | undefined;
  /** Why the member fail-stopped, if it did. */
  private failure: FailStopError | undefined;
  private reportFailure: (error: FailStopError) => void = () => undefined;
  private readonly failed = new Promise<FailStopError>((resolve) => {
    this.reportFailure = resolve;
  });
  /** Encryption at rest: the key ring and the re-encryption pass after a key rotation. */
  readonly keyRotation: KeyRotation;

  private constructor(
    readonly config: ServerConfig,
    readonly log: Logger,
    readonly keyspace: Keyspace,
    private readonly wal: Wal,
    storage: ReplicaStorage,
    members: Members,
    memberId: number,
    appliedIndex: number,
    readonly transport: PeerTransport,
    private readonly snapshots: SnapshotStore,
    readonly snapshotScratchDir: string,
    private readonly received: ReceivedSnapshots,
    stats: ServerStats,
    encryption: EncryptionKeys | undefined,
  ) {
    this.memberId = memberId;
    this.stats = stats;
    this.replica = new GroupReplica(
      { groupId: GROUP_ID, memberId, appliedIndex },
      config,
      log,
      storage,
      members,
      transport,
      stats,
      {
        onFatal: (operation, error) => this.failStop(operation, error),
        onMembersChanged: () => this.syncPeers(),
        onEncryptionKeyApplied: (keyId) => this.keyRotation.switchEncryptionKey(keyId),
        onSnapshotInstalled: () => {
          this.keyRotation.onSnapshotInstalled();
          this.afterGroupOneSnapshot();
        },
        onShardSplit: (right) => this.hostShard(right),
      },
    );
    this.keyRotation = new KeyRotation(encryption, {
      memberId,
      keyspace,
      wal,
      replica: this.replica,
      log,
      isStopped: () => this.stopped,
      failStop: (operation, cause) => this.failStop(operation, cause),
    });
    this.leaderClient = new LeaderClient(this.replica.requestTimeoutMs, leaderCredentials(config));
    this.oracle = new OracleService({
      meta: () => this.meta,
      leaderUrl: () => this.replica.members.get(this.meta.leaderId)?.clientUrls[0],
      fetchRemote: (url, count) => this.leaderClient.revisions(url, count),
      floor: () => Math.max(0, ...this.hostedShardGroups().map((g) => g.shardRecord.revisionAtSplit ?? 0)),
      requestTimeoutMs: this.replica.requestTimeoutMs,
      retryIntervalMs: config.heartbeatIntervalMs,
      isStopped: () => this.stopped,
    });
  }

  // ---- lifecycle -----------------------------------------------------------------------------

  static async start(config: ServerConfig, log: Logger, hooks: StorageHooks = {}): Promise<ConcordNode> {
    refuseEtcdDataDir(config.dataDir);
    const memberDir = join(config.dataDir, 'member');
    const walDir = join(memberDir, 'wal');
    const snapDir = join(memberDir, 'snap');
    const dbDir = join(memberDir, 'db');
    const scratchDir = join(memberDir, 'tmp');
    // Durable directories: a power cut must not take the WAL or the store away with its name.
    for (const dir of [walDir, snapDir, dbDir]) mkdirDurableSync(dir);
    rmSync(scratchDir, { recursive: true, force: true });
    mkdirSync(scratchDir, { recursive: true });

    const { encryption, keyspace, wal, recovered, snapshots, stats } = await openStores(config, log, hooks, {
      walDir,
      snapDir,
      dbDir,
    });
    const storage = new MemoryStorage();
    const peerTls = peerTlsWatcher(config, log);
    const groupOne = recovered.groups.get(GROUP_ID);
    const freshDir =
      groupOne === undefined ||
      (groupOne.hardState === null && groupOne.snapshot === null && groupOne.entries.length === 0);
    const { members, memberId } = await recoverMembership({
      config,
      log,
      dirs: { memberDir, snapDir, scratchDir },
      keyspace,
      wal,
      snapshots,
      storage,
      group: recovered.groups.get(GROUP_ID),
      peerTls,
    });

    // Entries after the snapshot are re-delivered: the keyspace skips what it already applied,
    // while conf changes are re-applied to the core (which restarts from the snapshot's config).
    const appliedIndex = storage.snapshot().metadata.index;
    const transport = new PeerTransport({
      nodeId: memberId,
      clusterId: members.clusterId.toString(16),
      listenUrl: config.listenPeerUrls[0]!,
      onMessage: (message) => node.onPeerMessage(message),
      onUnreachable: (peer) => {
        node.replica.reportUnreachable(peer);
        node.metaReplica?.reportUnreachable(peer);
        for (const group of node.shardGroups.values()) group.reportUnreachable(peer);
      },
      onPeerConnected: () => {
        node.replica.fastForwardElection();
        node.metaReplica?.fastForwardElection();
        for (const group of node.shardGroups.values()) group.fastForwardElection();
      },
      onSnapshotStatus: (peer, ok) => {
        node.replica.reportSnapshot(peer, ok);
      },
      onError: (error, peer) => log.debug('peer transport', { error: error.message, peer }),
      snapshotSource: (message, group) =>
        group === META_GROUP_ID
          ? node.metaReplica?.snapshotSource(message)
          : group === GROUP_ID
            ? node.replica.snapshotSource(message)
            : undefined,
      // The metadata group's snapshots are a few kilobytes, and so are those of the groups splits
      // made (their records): reassembled in memory.
      snapshotSink: (message, group) => (group === GROUP_ID ? received.sink(message) : memorySnapshotSink()),
      snapshotBytesMax: snapshotBytesMaxFor(config.quotaBackendBytes),
      httpConnection: (socket) => peerHttp.emit('connection', socket),
      tls: peerTls === undefined ? undefined : peerTransportTls(peerTls),
    });
    peerTls?.onChange(() => transport.setTls(peerTransportTls(peerTls)));
    const peerHttp = createHttpServer((request, response) => node.handlePeerHttp(request, response));
    const received = new ReceivedSnapshots(scratchDir, snapshots, (error) =>
      node.failStop('snapshot-receive', error),
    );
    const node: ConcordNode = new ConcordNode(
      config,
      log,
      keyspace,
      wal,
      {
        keyspace,
        wal,
        snapshots,
        storage,
        durableLog: new WalLog(wal, snapshots, received),
        scratchDir,
      },
      members,
      memberId,
      appliedIndex,
      transport,
      snapshots,
      scratchDir,
      received,
      stats,
      encryption,
    );
    node.peerTls = peerTls;
    keyspace.onCorruption((error) => node.failStop('encryption', error));
    if (encryption !== undefined) node.keyRotation.resumeRotation();
    const meta = await MetaReplica.open({
      memberId,
      choice: choiceOf(config),
      heartbeatIntervalMs: config.heartbeatIntervalMs,
      electionTimeoutMs: config.electionTimeoutMs,
      wal,
      recovered: recovered.groups.get(META_GROUP_ID),
      dir: join(memberDir, 'meta'),
      // A member joining an existing cluster gets group 0's log from its leader; a founding
      // member, or one whose data dir predates group 0, founds it with group 1's voters.
      bootstrapVoters:
        freshDir && config.initialClusterState !== 'new'
          ? undefined
          : members
              .list()
              .filter((m) => !m.isLearner)
              .map((m) => m.id),
      sender: transport,
      followedMembers: () => node.replica.members.list(),
      log,
      onFatal: (operation, error) => node.failStop(operation, error),
    });
    node.metaReplica = meta;
    transport.addGroup(META_GROUP_ID, {
      onMessage: (message) => meta.step(message),
      onSnapshotStatus: (peer, ok) => meta.reportSnapshot(peer, ok),
    });
    for (const id of decodeShardIds(keyspace.getMeta(SHARD_IDS_META_NAME))) {
      if (id !== FIRST_SHARD_ID)
        await node.openShardGroup(loadShardRecord(keyspace, id), recovered.groups.get(id));
    }
    await transport.listen();
    node.syncPeers();
    node.replica.start();
    meta.start();
    for (const group of node.shardGroups.values()) group.start();
    node.startTimers();
    log.info('concord member started', {
      name: config.name,
      consensus: describeChoice(choiceOf(config)),
      memberId: formatId(memberId),
      clusterId: formatId(members.clusterId),
      applied: keyspace.appliedIndex(),
      revision: keyspace.currentRevision(),
    });
    return node;
  }

  /** Stops serving and closes the transport, the WAL and the keyspace (also after a fail-stop). */
  stop(): Promise<void> {
    this.closing ??= (async () => {
      this.halt();
      this.peerTls?.close();
      this.transportClosed ??= this.transport.close();
      await this.transportClosed;
      await this.wal.close().catch(() => undefined);
      await this.keyspace.close();
    })();
    return this.closing;
  }

  /** Stops the Raft loop, the timers and every waiting request; nothing new starts after it. */
  private halt(): void {
    if (this.stopped) return;
    this.stopped = true;
    for (const timer of this.timers) clearInterval(timer);
    this.replica.stop();
    this.oracle.stop();
    this.metaReplica?.stop();
    for (const group of this.shardGroups.values()) group.stop();
    this.leaderClient.close();
  }

  /**
   * The one way a storage failure ends (see fail-stop.ts): Raft stops ticking and stepping, the
   * peer transport closes so the peers see this member gone (a leader loses its leadership at
   * once instead of heartbeating while refusing every request), client calls are refused, the
   * cause is logged once, and whenFailed() resolves with it. Closing the client listeners and
   * exiting the process is the embedder's part (the CLI's). The first failure wins: later ones
   * are its consequences; failures during a stop() are expected and ignored.
   */
  failStop(operation: FailStopOperation, cause: unknown): void {
    if (this.stopped) return;
    // A WAL that failed earlier refuses everything after; whichever path meets the refusal first,
    // what failed is the WAL write named in it.
    const failed = cause instanceof WalFailedError ? 'wal-write' : operation;
    const error = new FailStopError(failed, cause, this.config.dataDir);
    this.failure = error;
    this.log.error('fatal storage error; the member stops', error.logFields());
    this.halt();
    this.transportClosed = this.transport.close();
    void this.transportClosed.then(
      () => this.reportFailure(error),
      () => this.reportFailure(error),
    );
  }

  /** Runs storage work outside the Raft loop (a timer's, a client call's); a failure stops the member. */
  storageStep(operation: FailStopOperation, work: () => void): void {
    try {
      work();
    } catch (error) {
      this.failStop(operation, error);
    }
  }

  /** No new work starts: stop() or a fail-stop began. */
  get isStopped(): boolean {
    return this.stopped;
  }

  /** Why the member fail-stopped (undefined: it did not). */
  get failureCause(): FailStopError | undefined {
    return this.failure;
  }

  /** Runs `task` every `intervalMs` until the node stops. */
  every(intervalMs: number, task: () => void): void {
    this.timers.push(setInterval(task, intervalMs));
  }

  private startTimers(): void {
    this.every(this.config.heartbeatIntervalMs, () => {
      this.replica.onTick();
      for (const group of this.shardGroups.values()) group.onTick();
      if (this.metaReplica !== undefined) this.oracle.onTick();
    });
    this.every(REENCRYPT_STEP_MS, () => void this.keyRotation.rotationStep());
    // Physical compaction runs in bounded steps after each batch; an idle member finishes it here.
    this.timers.push(
      setInterval(() => {
        if (this.stopped) return;
        this.storageStep('compaction', () => {
          if (this.keyspace.compactionPending()) this.keyspace.compactStep();
        });
      }, COMPACTION_IDLE_STEP_MS),
    );
  }

  /**
   * Resolves with the cause once the member fail-stopped (its transport is closed by then);
   * never rejects, and stays pending for a member that never fails.
   */
  whenFailed(): Promise<FailStopError> {
    return this.failed;
  }

  private onPeerMessage(message: Message): void {
    const snapshot = message.type === MessageType.Snapshot ? message.snapshot : undefined;
    try {
      this.replica.step(message);
    } finally {
      // A snapshot streamed to a file that Raft did not take (stale, or refused for now) is dropped.
      if (snapshot !== undefined && this.replica.pendingSnapshot !== snapshot)
        this.received.discard(snapshot);
    }
  }

  /** Keeps the transport's peer list equal to the membership. */
  private syncPeers(): void {
    const wanted = new Map<number, string>();
    for (const member of this.replica.members.list()) {
      if (member.id !== this.memberId && member.peerUrls[0] !== undefined)
        wanted.set(member.id, member.peerUrls[0]);
    }
    for (const [id, url] of wanted) this.transport.addPeer(id, url);
    for (const id of this.knownPeers) if (!wanted.has(id)) this.transport.removePeer(id);
    this.knownPeers = new Set(wanted.keys());
  }
  private knownPeers = new Set<number>();

  /** The peer port's HTTP side: GET /members, which a joining member asks for (as in etcd). */
  handlePeerHttp(request: IncomingMessage, response: ServerResponse): void {
    if (request.method === 'GET' && request.url === '/members') {
      const body = {
        clusterId: this.replica.members.clusterId.toString(16),
        ...choiceOf(this.config),
        members: this.replica.members.list().map((m) => ({
          id: m.id.toString(16),
          name: m.name,
          peerURLs: m.peerUrls,
          clientURLs: m.clientUrls,
          isLearner: m.isLearner,
        })),
      };
      response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
      return;
    }
    response.writeHead(404).end();
  }

  /**
   * Runs a request a follower forwards on the leader's client API (what only the leader answers).
   * As etcd's waitLeader loop: with no leader known (a follower that has not heard from one yet,
   * or during an election) the member waits for one, and a leader it cannot reach (UNAVAILABLE)
   * is tried again, until the request timeout; only then is "no leader" (or the last error) the
   * answer.
   */
  async forwardToLeader<T>(call: (leaderUrl: string) => Promise<T>): Promise<T> {
    const deadline = Date.now() + this.replica.requestTimeoutMs;
    for (;;) {
      this.replica.assertServing();
      const url = this.replica.members.get(this.replica.leaderId)?.clientUrls[0];
      if (url === undefined && Date.now() >= deadline) throw new EtcdError('noLeader');
      if (url !== undefined) {
        try {
          return await call(url);
        } catch (error) {
          const unavailable = (error as { code?: unknown }).code === grpc.status.UNAVAILABLE;
          if (!unavailable || Date.now() >= deadline) throw error;
        }
      }
      await sleep(this.config.heartbeatIntervalMs);
    }
  }

  // ---- shard groups ---------------------------------------------------------------------------

  /** The replica of shard group `id` on this member (group 1 included); undefined: not hosted. */
  shardGroup(id: number): GroupReplica | undefined {
    return id === FIRST_SHARD_ID ? this.replica : this.shardGroups.get(id);
  }

  /** Every shard group this member hosts, group 1 first. */
  hostedShardGroups(): GroupReplica[] {
    return [this.replica, ...[...this.shardGroups.values()].sort((a, b) => a.groupId - b.groupId)];
  }

  /**
   * Opens the replica of shard group `record.id` over the node's WAL, keyspace and transport:
   * from its WAL records, or founded (a bootstrap snapshot at index 1 with the voters the split
   * gave it, the same on every member) when the WAL holds none. Does not start it.
   */
  private async openShardGroup(
    record: ShardRecord,
    recovered: RecoveredGroup | undefined,
  ): Promise<GroupReplica> {
    const storage = new MemoryStorage();
    const empty =
      recovered === undefined ||
      (recovered.hardState === null && recovered.snapshot === null && recovered.entries.length === 0);
    if (!empty) {
      // Past the bootstrap snapshot the snapshot's state is the keyspace's records (synced before
      // the marker was written): what this member sends a follower that needs a snapshot.
      const data =
        recovered.snapshot !== null && recovered.snapshot.index > 1
          ? shardSnapshotData(this.keyspace, record.id)
          : EMPTY_BYTES;
      if (recovered.snapshot !== null) storage.applySnapshot({ metadata: recovered.snapshot, data });
      storage.append(recovered.entries);
      if (recovered.hardState !== null) storage.setHardState(recovered.hardState);
    } else {
      storage.bootstrap({
        voters: [...record.voters].sort((a, b) => a - b),
        learners: [],
        votersOutgoing: [],
        learnersNext: [],
        autoLeave: false,
      });
      this.wal.saveSnapshotMarker(record.id, storage.snapshot().metadata);
      this.wal.saveHardState(record.id, storage.initialState().hardState);
      await this.wal.sync();
    }
    const group = record.id;
    const transport = this.transport;
    const replica = new GroupReplica(
      {
        groupId: group,
        memberId: this.memberId,
        appliedIndex: Math.max(record.applied, storage.snapshot().metadata.index),
        shard: record,
      },
      this.config,
      withShardField(this.log, group),
      {
        keyspace: this.keyspace,
        wal: this.wal,
        snapshots: this.snapshots,
        storage,
        durableLog: new WalLog(this.wal, this.snapshots, undefined, group, (snapshot) =>
          this.replica.exclusive(() => replica.persistShardSnapshot(snapshot)),
        ),
        scratchDir: this.snapshotScratchDir,
        // The keyspace is shared: applies wait for group 1's (and its defragment and re-encryption).
        serialize: (work) => this.replica.exclusive(work),
      },
      this.replica.members,
      { send: (messages) => transport.send(messages, group), flush: () => transport.flush() },
      this.stats,
      {
        onFatal: (operation, error) => this.failStop(operation, error),
        onMembersChanged: () => undefined,
        onEncryptionKeyApplied: () => undefined,
        onSnapshotInstalled: () => undefined,
        onShardSplit: (right) => this.hostShard(right),
      },
    );
    this.shardGroups.set(group, replica);
    transport.addGroup(group, {
      onMessage: (message) => replica.step(message),
      onSnapshotStatus: (peer, ok) => replica.reportSnapshot(peer, ok),
    });
    this.log.info('hosting shard group', { shard: group, epoch: record.epoch, applied: record.applied });
    return replica;
  }

  /** A split applied here: the right half's group starts on this member (once). */
  private hostShard(right: ShardRecord): void {
    if (this.stopped || this.shardGroups.has(right.id)) return;
    this.openShardGroup(right, undefined).then(
      (replica) => {
        if (!this.stopped) replica.start();
      },
      (error) => this.failStop('wal-write', error),
    );
  }

  /**
   * A group-1 snapshot from the leader replaced the keyspace, and with it the other groups'
   * records: each hosted group writes its own back, and the groups the snapshot lists that this
   * member does not host yet (splits it had not applied) start from the leader's records.
   */
  private afterGroupOneSnapshot(): void {
    for (const group of this.shardGroups.values()) group.persistShardRecord();
    for (const id of decodeShardIds(this.keyspace.getMeta(SHARD_IDS_META_NAME))) {
      if (id === FIRST_SHARD_ID || this.shardGroups.has(id)) continue;
      // Founded here from its first state (the leader's record holds the leader's progress).
      const record = foundingRecord(loadShardRecord(this.keyspace, id));
      this.keyspace.putMetaRecords({ [shardMetaName(id)]: encodeShardRecord(record) });
      this.hostShard(record);
    }
  }

  /** The metadata group's replica (group 0). */
  get meta(): MetaReplica {
    if (this.metaReplica === undefined) throw new Error('the metadata group is not open yet');
    return this.metaReplica;
  }

  /** Throws when the database file cannot be looked at: it is gone, or the disk fails. */
  dbSizeBytes(): number {
    return statSync(join(this.keyspace.path, 'data.mdb')).size;
  }

  // ---- test-only fault hooks -------------------------------------------------------------------

  private faultDrop = new Set<number>();
  private faultDelayMs = 0;

  /**
   * /debug/faults (only with --experimental-fault-injection): GET shows, POST {"drop": [ids hex],
   * "delayMs": n} sets, DELETE clears the peers this member drops or delays messages to and from.
   */
  async faultRoutes(request: IncomingMessage, response: ServerResponse, path: string): Promise<boolean> {
    if (!this.config.experimentalFaultInjection || path !== '/debug/faults') return false;
    if (request.method === 'POST') {
      let body = '';
      for await (const chunk of request) body += chunk;
      const spec = JSON.parse(body || '{}') as { drop?: string[]; delayMs?: number };
      const ids = this.replica.members.list().map((m) => m.id);
      this.faultDrop = new Set(
        (spec.drop ?? []).map((id) => memberIdNamed(BigInt(`0x${id}`), ids) ?? Number.parseInt(id, 16)),
      );
      this.faultDelayMs = Math.max(0, Math.min(spec.delayMs ?? 0, 60_000));
    } else if (request.method === 'DELETE') {
      this.faultDrop.clear();
      this.faultDelayMs = 0;
    } else if (request.method !== 'GET') {
      return false;
    }
    const active = this.faultDrop.size > 0 || this.faultDelayMs > 0;
    this.transport.setLinkFilter(
      active
        ? (from, to) => {
            const peer = from === this.memberId ? to : from;
            if (this.faultDrop.has(peer)) return 'drop';
            return this.faultDelayMs > 0 ? { delayMs: this.faultDelayMs } : 'pass';
          }
        : undefined,
    );
    const peers = Object.fromEntries(this.replica.members.list().map((m) => [formatId(m.id), m.name]));
    response.writeHead(200, { 'content-type': 'application/json' });
    response.end(
      JSON.stringify({
        memberId: formatId(this.memberId),
        drop: [...this.faultDrop].map(formatId),
        delayMs: this.faultDelayMs,
        peers,
      }),
    );
    return true;
  }

  /** Fields etcd's zap logger puts on a member's lines: who it is and where its log stands. */
  logContext(): Record<string, unknown> {
    return {
      'local-member-id': formatId(this.memberId),
      term: this.replica.currentTerm,
      index: this.replica.appliedIndex,
    };
  }

  /** What /metrics and the dashboard read when asked: counters kept in memory, no disk scan. */
  observation(): MemberObservation {
    const { hardState } = this.replica.status();
    let dbSizeBytes = 0;
    let space = { liveKeys: 0, usedBytes: 0 };
    if (!this.stopped) {
      try {
        dbSizeBytes = this.dbSizeBytes();
        space = this.keyspace.spaceStats();
      } catch {
        // A member that is stopping or failing reports zeros; the failure is logged elsewhere.
      }
    }
    return {
      memberId: this.memberId,
      leaderId: this.replica.leaderId,
      isLeader: this.replica.isLeader,
      term: hardState.term,
      commitIndex: hardState.commit,
      appliedIndex: this.replica.appliedIndex,
      pendingProposals: this.replica.pendingProposals,
      proposalsFailed: this.stats.proposalsFailed + this.replica.proposalTimeouts,
      revision: this.keyspace.currentRevision(),
      compactRevision: this.keyspace.compactRevision(),
      dbSizeBytes,
      dbSizeInUseBytes: Math.min(space.usedBytes, dbSizeBytes),
      keys: space.liveKeys,
      quotaBytes: this.config.quotaBackendBytes,
      watchers: this.keyspace.watchHub.watcherCount,
      alarms: this.replica.members.alarms().map((a) => ({ memberId: a.memberId, alarm: a.alarm })),
      peers: this.transport.stats().peers,
    };
  }

  debugStatus() {
    return {
      memberId: this.memberId,
      leader: this.replica.leaderId,
      role: this.replica.role,
      term: this.replica.currentTerm,
      applied: this.replica.appliedIndex,
      revision: this.keyspace.currentRevision(),
    };
  }
}

export interface MemberObservation {
  memberId: number;
  leaderId: number;
  isLeader: boolean;
  term: number;
  commitIndex: number;
  appliedIndex: number;
  pendingProposals: number;
  proposalsFailed: number;
  revision: number;
  compactRevision: number;
  dbSizeBytes: number;
  dbSizeInUseBytes: number;
  keys: number;
  quotaBytes: number;
  /** Watchers open on this member (etcd_debugging_mvcc_watcher_total). */
  watchers: number;
  alarms: Array<{ memberId: number; alarm: string }>;
  /** Transport counters by peer member id (decimal, as the transport keys them). */
  peers: Record<string, { bytesSent: number; bytesReceived: number }>;
}

/**
 * Largest snapshot this member accepts from a peer. It streams to a file, so memory sets no
 * bound; the space quota does (a keyspace larger than quota + slack cannot be legitimate).
 */
function snapshotBytesMaxFor(quotaBackendBytes: number): number {
  return quotaBackendBytes + Math.max(Math.ceil(quotaBackendBytes / 4), SNAPSHOT_QUOTA_SLACK_BYTES_MIN);
}

/** A shard group's lines carry its id (`shard`), so they read apart from group 1's. */
function withShardField(log: Logger, shard: number): Logger {
  const fields = (extra?: Record<string, unknown>) => ({ shard, ...extra });
  return {
    debug: (msg, extra) => log.debug(msg, fields(extra)),
    info: (msg, extra) => log.info(msg, fields(extra)),
    warn: (msg, extra) => log.warn(msg, fields(extra)),
    error: (msg, extra) => log.error(msg, fields(extra)),
  };
}

/** The data dir's directories the stores live in. */
interface StoreDirs {
  walDir: string;
  snapDir: string;
  dbDir: string;
}

/** Opens the keyspace, the WAL (recovering what it holds) and the snapshot files, with the test hooks. */
async function openStores(config: ServerConfig, log: Logger, hooks: StorageHooks, dirs: StoreDirs) {
  const { walDir, snapDir, dbDir } = dirs;
  const unsafeKeyspaceNoSync = process.env[UNSAFE_KEYSPACE_NO_SYNC_ENV] === '1';
  if (unsafeKeyspaceNoSync)
    log.warn(`${UNSAFE_KEYSPACE_NO_SYNC_ENV}=1: the keyspace is written WITHOUT fsync (fault injection)`);
  const encryption =
    config.encryptionKeyFile === undefined ? undefined : EncryptionKeys.fromFile(config.encryptionKeyFile);
  const opened = Keyspace.open(dbDir, {
    txnOpsMax: config.maxTxnOps,
    noSync: unsafeKeyspaceNoSync,
    encryption,
  });
  const keyspace = hooks.wrapKeyspace?.(opened) ?? opened;
  // The key the cluster agreed on last, not the file's first, seals what this member writes.
  if (encryption !== undefined) adoptAgreedKey(keyspace, encryption);
  const unsafeNoDatasync = process.env[UNSAFE_WAL_NO_FDATASYNC_ENV] === '1';
  if (unsafeNoDatasync)
    log.warn(`${UNSAFE_WAL_NO_FDATASYNC_ENV}=1: the WAL is written WITHOUT fdatasync (fault injection)`);
  const walOptions = unsafeNoDatasync
    ? { ...hooks.walOptions, io: { ...hooks.walOptions?.io, ...unsafeNoDatasyncIo } }
    : hooks.walOptions;
  const stats = new ServerStats();
  const { wal: openedWal, recovered } = await Wal.open(walDir, {
    ...timedWalOptions(walOptions, stats),
    encryption,
  });
  const wal = hooks.wrapWal?.(openedWal) ?? openedWal;
  if (recovered.tornTail !== null)
    log.warn('WAL tail was torn by a crash and cut off', { tornTail: recovered.tornTail });
  const store = await SnapshotStore.open(snapDir);
  const snapshots = hooks.wrapSnapshots?.(store) ?? store;
  return { encryption, keyspace, wal, recovered, snapshots, stats };
}
