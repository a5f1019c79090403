// A Concord node: one Raft group (the whole keyspace) hosted on this process. It joins the
// consensus core (src/raft), the WAL and snapshot files (src/storage), the keyspace (src/mvcc),
// the lease clock (src/lease) and the peer transport (src/transport), and serves the etcd v3 API
// (src/api calls it through the EtcdBackend shape).
//
// Write path: encode → raft.propose → (batch) WAL fsync + send → commit → one LMDB transaction
// for the whole committed batch → the waiting request is answered with its apply result.
// Read path: ReadIndex (batched per turn) → wait until applied ≥ read index → read LMDB.

import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync, statSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { join } from 'node:path';
import {
  CompactedError,
  FutureRevisionError,
  KeyspaceFailedError,
  LeaseNotFoundError,
  LeaseTtlTooLargeError,
} from '../mvcc/errors.js';
import { createEtcdSnapshot } from '../mvcc/etcd-snapshot.js';
import { Keyspace, LEASE_TTL_SECONDS_MAX } from '../mvcc/keyspace.js';
import type {
  CompactionResponse,
  DeleteRangeRequest,
  DeleteRangeResponse,
  PutRequest,
  PutResponse,
  RangeRequest,
  RangeResponse,
  TxnRequest,
  TxnResponse,
} from '../mvcc/types.js';
import { isTxnReadOnly } from '../mvcc/validate.js';
import type { ServerConfig } from '../node/config.js';
import { GROUP_ID, WalLog } from '../node/durable-log.js';
import { LeaderClient } from '../node/leader-client.js';
import { readSelfId, refuseEtcdDataDir, writeSelfId } from '../node/member-dir.js';
import { getPeerJson, leaderCredentials, peerTlsWatcher, peerTransportTls } from '../node/member-tls.js';
import { ReceivedSnapshots } from '../node/received-snapshots.js';
import type { ConsensusEngine } from '../raft/api.js';
import { MemoryStorage } from '../raft/memory-storage.js';
import { type ConfState, EMPTY_BYTES, MessageType, type NodeId } from '../raft/types.js';
import { checkTxnPermitted } from '../replica/auth-checks.js';
import type { AuthInfo } from '../replica/auth-store.js';
import {
  type ConsensusChoice,
  type ConsensusKind,
  checkJoin,
  choiceOf,
  claimConsensus,
  describeChoice,
} from '../replica/consensus.js';
import {
  ENCRYPTION_KEY_META_NAME,
  GroupReplica,
  loadMembers,
  type ReplicaStorage,
  sleep,
  txnHasPut,
} from '../replica/group-replica.js';
import { clusterIdFor, formatId, memberIdFor, memberIdNamed, publicId } from '../replica/ids.js';
import {
  type Alarm,
  type AlarmKind,
  encodeMemberChange,
  MEMBERS_META_NAME,
  type MemberChangeContext,
  type MemberInfo,
  Members,
} from '../replica/members.js';
import { ServerStats, timedWalOptions } from '../replica/stats.js';
import { AuthService } from '../services/auth-service.js';
import type {
  AlarmAction,
  AlarmMember,
  AlarmType,
  BackendWatcher,
  Disposable,
  HeaderInfo,
  KeyValue,
  LeaderKey,
  LeaseGrantResult,
  LeaseTimeToLiveResult,
  Member,
  SnapshotChunk,
  StatusResult,
  WatchCreate,
  WatchListener,
  WithHeader,
} from '../services/backend.js';
import { Concurrency } from '../services/concurrency.js';
import { watchFromHub } from '../services/hub-watch.js';
import { mkdirDurableSync } from '../storage/durable-fs.js';
import { EncryptionKeys } from '../storage/encryption.js';
import { FailStopError, type FailStopOperation } from '../storage/fail-stop.js';
import { SnapshotStore } from '../storage/snapshot-store.js';
import {
  UNSAFE_KEYSPACE_NO_SYNC_ENV,
  UNSAFE_WAL_NO_FDATASYNC_ENV,
  unsafeNoDatasyncIo,
  Wal,
  type WalOptions,
} from '../storage/wal.js';
import { PeerTransport } from '../transport/peer-transport.js';
import type { TlsFileWatcher } from '../transport/tls-config.js';
import type { Logger } from '../util/logger.js';
import { EtcdError } from '../wire/etcd-errors.js';

/** The etcd release whose v3 API a member implements and reports (Status.version, /version). */
export const ETCD_API_VERSION = '3.4.23';
const LEASE_REVOKES_PER_CHECK_MAX = 64;
const LEASE_CHECK_INTERVAL_MS = 500;
const PUBLISH_RETRY_MS = 500;
const COMPACTION_IDLE_STEP_MS = 100;
/** Encryption key rotation: how often the background pass takes a step, and its size. */
const REENCRYPT_STEP_MS = 50;
const REENCRYPT_RECORDS_PER_STEP = 2000;
const ROTATE_REQUEST_BYTES_MAX = 4096;
/**
 * Headroom over the space quota for a snapshot received from a peer: the database passes the
 * quota before the NOSPACE alarm stops writes, and its file keeps free pages.
 */
const SNAPSHOT_QUOTA_SLACK_BYTES_MIN = 256 * 1024 * 1024;
/** Applies only mark the quota as due; the database file's size is looked at this often (a stat per
 * apply batch cost ~50 µs on every member). The NOSPACE alarm is raised at most this much later. */
const QUOTA_CHECK_INTERVAL_MS = 100;

/**
 * How the server opens its storage. Production passes nothing; tests wrap the real objects to
 * inject faults at these seams (a WAL fsync that fails, an LMDB transaction that throws).
 */
export interface StorageHooks {
  walOptions?: WalOptions;
  wrapKeyspace?(keyspace: Keyspace): Keyspace;
  wrapSnapshots?(store: SnapshotStore): SnapshotStore;
  wrapWal?(wal: Wal): Wal;
}

export class ConcordServer {
  readonly memberId: number;
  /** The one group this node hosts: the whole keyspace. */
  private readonly replica: GroupReplica;
  private readonly leaderClient: LeaderClient;
  /** The peer certificate files, watched for rotation (undefined: plaintext peers). */
  private peerTls: TlsFileWatcher | undefined;
  private readonly concurrency: Concurrency;
  /** etcd's Auth service over this member (EtcdBackend.auth). */
  readonly auth: AuthService;
  /** Counters and observers for /metrics (src/cli/metrics.ts); set once by start(). */
  stats: ServerStats;
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
  private compactionSamples: Array<{ atMs: number; revision: number }> = [];
  /** Encryption at rest: the key ring (undefined without --encryption-key-file). */
  private encryption: EncryptionKeys | undefined;
  /**
   * The background pass after a key rotation: 'keyspace' re-seals the stored records in steps;
   * 'wal' starts a new WAL segment (every entry up to walLastIndex is in older ones); 'snapshot'
   * takes a snapshot at or above walLastIndex, which deletes those segments and the snapshot files
   * written under older keys; then it is over (undefined).
   */
  private rotation:
    | { keyId: string; phase: 'keyspace' | 'wal' | 'snapshot'; walLastIndex: number; noopProposed: boolean }
    | undefined;
  private rotationStepRunning = false;

  private constructor(
    readonly config: ServerConfig,
    private readonly log: Logger,
    private readonly keyspace: Keyspace,
    private readonly wal: Wal,
    storage: ReplicaStorage,
    members: Members,
    memberId: number,
    appliedIndex: number,
    readonly transport: PeerTransport,
    private readonly snapshotScratchDir: string,
    private readonly received: ReceivedSnapshots,
    stats: ServerStats,
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
        onEncryptionKeyApplied: (keyId) => this.switchEncryptionKey(keyId),
        onSnapshotInstalled: () => {
          if (this.encryption === undefined) return;
          adoptAgreedKey(this.keyspace, this.encryption);
          // The leader's copy may hold records sealed under an older key: re-seal them here too.
          this.resumeRotation();
        },
      },
    );
    this.leaderClient = new LeaderClient(this.replica.requestTimeoutMs, leaderCredentials(config));
    this.concurrency = new Concurrency(this);
    this.auth = new AuthService(this.replica.authGate, {
      header: () => this.header(),
      barrier: () => this.replica.linearizableBarrier(),
      propose: (request, info) => this.replica.proposeAuth(request, info),
    });
  }

  // ---- lifecycle -----------------------------------------------------------------------------

  static async start(config: ServerConfig, log: Logger, hooks: StorageHooks = {}): Promise<ConcordServer> {
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
    const storage = new MemoryStorage();
    const group = recovered.groups.get(GROUP_ID);
    const selfId = memberIdFor(config.initialAdvertisePeerUrls, config.initialClusterToken);
    let members = loadMembers(keyspace);
    let memberId: number;
    const peerTls = peerTlsWatcher(config, log);

    if (
      group === undefined ||
      (group.hardState === null && group.snapshot === null && group.entries.length === 0)
    ) {
      // A fresh data dir: found a new cluster, or join an existing one that already added us.
      let membership: 'flags' | 'snapshot restore' | 'existing cluster' = 'existing cluster';
      claimConsensus(memberDir, config.dataDir, choiceOf(config), true);
      if (config.initialClusterState === 'new') {
        const founding = foundingMembers(config, memberDir, members, selfId);
        members = founding.members;
        memberId = founding.memberId;
        membership = founding.source;
        const confState: ConfState = {
          voters: members.list().map((m) => m.id),
          learners: [],
          votersOutgoing: [],
          learnersNext: [],
          autoLeave: false,
        };
        storage.bootstrap(confState);
        wal.saveSnapshotMarker(GROUP_ID, storage.snapshot().metadata);
        wal.saveHardState(GROUP_ID, storage.initialState().hardState);
        await wal.sync();
      } else {
        members = await discoverCluster(config, log, peerTls);
        const self = members
          .list()
          .find((m) => m.peerUrls.some((url) => config.initialAdvertisePeerUrls.includes(url)));
        if (self === undefined)
          throw new Error('the cluster does not list this member; run `member add` first');
        memberId = self.id;
      }
      keyspace.putMeta(MEMBERS_META_NAME, members.encode());
      writeSelfId(memberDir, memberId);
      log.info('initialized a new data dir', {
        memberId: formatId(memberId),
        state: config.initialClusterState,
        membership,
      });
    } else {
      claimConsensus(memberDir, config.dataDir, choiceOf(config), false);
      if (members === undefined)
        throw new Error(`data dir ${config.dataDir} has a WAL but no cluster membership`);
      memberId = readSelfId(memberDir) ?? selfId;
      if (!members.has(memberId) && members.isRemoved(memberId)) {
        throw new Error(
          `this member (${formatId(memberId)}) was removed from the cluster; start it with a new data dir`,
        );
      }
      if (group.snapshot !== null) {
        storage.applySnapshot({ metadata: group.snapshot, data: EMPTY_BYTES });
        if (keyspace.appliedIndex() < group.snapshot.index && group.snapshot.index > 1) {
          // Crashed between recording a received snapshot and installing it: install it now.
          const file = (await snapshots.list()).find((f) => f.index === group.snapshot!.index);
          if (file === undefined)
            throw new Error(`snapshot file for index ${group.snapshot.index} is missing in ${snapDir}`);
          await installSnapshotFile(keyspace, snapshots, file.path, scratchDir);
          members = loadMembers(keyspace) ?? members;
        }
      }
      storage.append(group.entries);
      if (group.hardState !== null) storage.setHardState(group.hardState);
    }
    if (members === undefined) throw new Error('no cluster membership');

    // Entries after the snapshot are re-delivered: the keyspace skips what it already applied,
    // while conf changes are re-applied to the core (which restarts from the snapshot's config).
    const appliedIndex = storage.snapshot().metadata.index;
    const transport = new PeerTransport({
      nodeId: memberId,
      clusterId: members.clusterId.toString(16),
      listenUrl: config.listenPeerUrls[0]!,
      onMessage: (message) => server.onPeerMessage(message),
      onUnreachable: (peer) => server.replica.reportUnreachable(peer),
      onPeerConnected: () => server.replica.fastForwardElection(),
      onSnapshotStatus: (peer, ok) => {
        server.replica.reportSnapshot(peer, ok);
      },
      onError: (error, peer) => log.debug('peer transport', { error: error.message, peer }),
      snapshotSource: (message) => server.replica.snapshotSource(message),
      snapshotSink: (message) => received.sink(message),
      snapshotBytesMax: snapshotBytesMaxFor(config.quotaBackendBytes),
      httpConnection: (socket) => peerHttp.emit('connection', socket),
      tls: peerTls === undefined ? undefined : peerTransportTls(peerTls),
    });
    peerTls?.onChange(() => transport.setTls(peerTransportTls(peerTls)));
    const peerHttp = createHttpServer((request, response) => server.handlePeerHttp(request, response));
    const received = new ReceivedSnapshots(scratchDir, snapshots, (error) =>
      server.failStop('snapshot-receive', error),
    );
    const server: ConcordServer = new ConcordServer(
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
      scratchDir,
      received,
      stats,
    );
    server.peerTls = peerTls;
    server.encryption = encryption;
    keyspace.onCorruption((error) => server.failStop('encryption', error));
    if (encryption !== undefined) server.resumeRotation();
    await transport.listen();
    server.syncPeers();
    server.replica.start();
    server.startTimers();
    log.info('concord member started', {
      name: config.name,
      consensus: describeChoice(choiceOf(config)),
      memberId: formatId(memberId),
      clusterId: formatId(members.clusterId),
      applied: keyspace.appliedIndex(),
      revision: keyspace.currentRevision(),
    });
    return server;
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
  private failStop(operation: FailStopOperation, cause: unknown): void {
    if (this.stopped) return;
    const error = new FailStopError(operation, cause, this.config.dataDir);
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
  private storageStep(operation: FailStopOperation, work: () => void): void {
    try {
      work();
    } catch (error) {
      this.failStop(operation, error);
    }
  }

  get isLeader(): boolean {
    return this.replica.isLeader;
  }

  get leaderId(): number {
    return this.replica.leaderId;
  }

  private startTimers(): void {
    this.timers.push(setInterval(() => this.checkLeases(), LEASE_CHECK_INTERVAL_MS));
    this.timers.push(setInterval(() => this.replica.onTick(), this.config.heartbeatIntervalMs));
    this.timers.push(setInterval(() => void this.publishIfNeeded(), PUBLISH_RETRY_MS));
    this.timers.push(
      setInterval(() => {
        if (this.stopped || !this.replica.quotaCheckDue) return;
        this.replica.quotaCheckDue = false;
        this.storageStep('quota-check', () => this.checkQuota());
      }, QUOTA_CHECK_INTERVAL_MS),
    );
    this.timers.push(setInterval(() => void this.rotationStep(), REENCRYPT_STEP_MS));
    // Physical compaction runs in bounded steps after each batch; an idle member finishes it here.
    this.timers.push(
      setInterval(() => {
        if (this.stopped) return;
        this.storageStep('compaction', () => {
          if (this.keyspace.compactionPending()) this.keyspace.compactStep();
        });
      }, COMPACTION_IDLE_STEP_MS),
    );
    if (this.config.autoCompactionRetention > 0) {
      const everyMs =
        this.config.autoCompactionMode === 'periodic'
          ? Math.max(1000, Math.min(this.config.autoCompactionRetention / 10, 3_600_000))
          : 5 * 60_000;
      this.timers.push(setInterval(() => void this.autoCompact(), everyMs));
    }
  }

  /**
   * Resolves with the cause once the member fail-stopped (its transport is closed by then);
   * never rejects, and stays pending for a member that never fails.
   */
  whenFailed(): Promise<FailStopError> {
    return this.failed;
  }

  private onPeerMessage(message: Parameters<ConsensusEngine['step']>[0]): void {
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

  // ---- applying committed entries -------------------------------------------------------------

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

  // ---- encryption at rest: key rotation --------------------------------------------------------

  /**
   * `concordctl encryption rotate-key ID`: this member reads its key file again and, if it holds
   * `keyId`, proposes the switch; every member switches when it applies the entry (and stops if
   * its own key file lacks the key: add it to every member's file first).
   */
  async rotateEncryptionKey(keyId: string): Promise<{ activeKeyId: string }> {
    const keys = this.encryption;
    if (keys === undefined)
      throw new Error('encryption at rest is off on this member (no --encryption-key-file)');
    keys.reload();
    keys.require(keyId);
    const outcome = await this.replica.propose({ type: 'encryptionKey', keyId });
    if (outcome.status === 'error') throw outcome.error;
    return { activeKeyId: keys.activeKeyId() };
  }

  /** What `concordctl encryption status` shows for this member. */
  encryptionStatus(): Record<string, unknown> {
    const keys = this.encryption;
    if (keys === undefined) return { memberId: formatId(this.memberId), enabled: false };
    const keyspace = Object.fromEntries(this.keyspace.encryptionKeyUse());
    const wal = this.wal.keyIdsInUse();
    const inUse = [...new Set([...Object.keys(keyspace), ...wal, keys.activeKeyId()])].sort();
    return {
      memberId: formatId(this.memberId),
      enabled: true,
      activeKeyId: keys.activeKeyId(),
      keyFileIds: keys.keyIds(),
      keyIdsInUse: inUse,
      keyspaceRecordsByKeyId: keyspace,
      walKeyIds: wal,
      reencryption: this.rotation?.phase ?? 'idle',
    };
  }

  /**
   * The admin calls behind `concordctl encryption` on the client URL (a Concord extension, JSON):
   * GET /concord/v1/encryption/status, POST /concord/v1/encryption/rotate-key {"keyId": "…"}.
   */
  async encryptionRoutes(request: IncomingMessage, response: ServerResponse, path: string): Promise<boolean> {
    const reply = (status: number, body: unknown): true => {
      response.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
      return true;
    };
    if (path === '/concord/v1/encryption/status' && request.method === 'GET') {
      return reply(200, this.encryptionStatus());
    }
    if (path !== '/concord/v1/encryption/rotate-key' || request.method !== 'POST') return false;
    let body = '';
    for await (const chunk of request) {
      body += chunk;
      if (body.length > ROTATE_REQUEST_BYTES_MAX) return reply(400, { error: 'request too large' });
    }
    let keyId: unknown;
    try {
      keyId = (JSON.parse(body || '{}') as { keyId?: unknown }).keyId;
    } catch {
      return reply(400, { error: 'the body must be JSON: {"keyId": "<id>"}' });
    }
    if (typeof keyId !== 'string' || keyId === '') return reply(400, { error: 'keyId is required' });
    try {
      return reply(200, await this.rotateEncryptionKey(keyId));
    } catch (error) {
      return reply(400, { error: (error as Error).message });
    }
  }

  /** Applied an encryptionKey entry: seal everything new with `keyId`, re-seal the rest in the background. */
  private switchEncryptionKey(keyId: string): void {
    const keys = this.encryption;
    if (keys === undefined) {
      this.log.warn(
        'the cluster switched its encryption key, but this member runs without encryption at rest',
        {
          keyId,
        },
      );
      return;
    }
    try {
      keys.reload();
      keys.setActive(keyId);
    } catch (error) {
      this.failStop('encryption', error);
      return;
    }
    this.log.info('encryption key switched; re-encrypting older data in the background', { keyId });
    this.keyspace.restartReencryption();
    this.rotation = { keyId, phase: 'keyspace', walLastIndex: 0, noopProposed: false };
  }

  /** After a start or an installed snapshot: finish re-encrypting whatever an older key still seals. */
  private resumeRotation(): void {
    const keys = this.encryption;
    if (keys === undefined) return;
    const active = keys.activeKeyId();
    const stale =
      [...this.keyspace.encryptionKeyUse().keys()].some((id) => id !== active) ||
      this.wal.keyIdsInUse().some((id) => id !== active);
    if (!stale) return;
    this.keyspace.restartReencryption();
    this.rotation = { keyId: active, phase: 'keyspace', walLastIndex: 0, noopProposed: false };
  }

  /** One step of the pass after a rotation (a timer drives it; one step at a time). */
  private async rotationStep(): Promise<void> {
    const rotation = this.rotation;
    if (rotation === undefined || this.stopped || this.rotationStepRunning) return;
    this.rotationStepRunning = true;
    try {
      if (rotation.phase === 'keyspace') {
        const more = await this.replica.exclusive(async () =>
          this.keyspace.reencryptStep(REENCRYPT_RECORDS_PER_STEP),
        );
        if (!more) rotation.phase = 'wal';
        return;
      }
      if (rotation.phase === 'wal') {
        // Every entry sealed under an older key is at or below lastIndex, in a segment that the
        // rollover seals; a snapshot at or above it lets the WAL delete those segments.
        rotation.walLastIndex = this.replica.lastIndex();
        await this.wal.rolloverNow();
        rotation.phase = 'snapshot';
        return;
      }
      const applied = this.keyspace.appliedIndex();
      if (applied <= this.replica.snapshotLogIndex()) {
        // Nothing applied since the last snapshot (taken before the pass): an empty entry makes one possible.
        if (!rotation.noopProposed) void this.replica.propose({ type: 'noop' }).catch(() => undefined);
        rotation.noopProposed = true;
        return;
      }
      if (applied < rotation.walLastIndex) return;
      if (!(await this.replica.takeSnapshot(true))) return;
      if (this.rotation !== rotation) return;
      this.rotation = undefined;
      this.log.info('re-encryption finished', { keyId: rotation.keyId, walKeyIds: this.wal.keyIdsInUse() });
    } catch (error) {
      this.failStop('encryption', error);
    } finally {
      this.rotationStepRunning = false;
    }
  }

  header(revision?: number): HeaderInfo {
    return this.replica.header(revision);
  }

  // ---- KV ------------------------------------------------------------------------------------

  async range(request: RangeRequest, auth?: AuthInfo): Promise<WithHeader<RangeResponse>> {
    if (!request.serializable) this.replica.refuseOnLearner();
    // --experimental-stale-reads is the deliberate bug the fault tests must catch.
    if (!request.serializable && !this.config.experimentalStaleReads)
      await this.replica.linearizableBarrier();
    else this.replica.assertServing();
    const store = this.replica.authGate.store;
    if (store.enabled) store.checkRange(auth, request.key, request.rangeEnd ?? EMPTY_BYTES, 'READ');
    this.stats.ranges++;
    const response = this.keyspace.range(request);
    return { ...response, header: this.header(response.revision) };
  }

  async put(request: PutRequest, auth?: AuthInfo): Promise<WithHeader<PutResponse>> {
    this.replica.refuseOnLearner();
    this.replica.refuseIfNoSpace();
    if (request.lease !== undefined && request.lease !== 0n) this.checkLeaseKeysWritable(request.lease, auth);
    const response = await this.replica.write({ type: 'put', request }, auth);
    return { ...response, header: this.header(response.revision) };
  }

  async deleteRange(request: DeleteRangeRequest, auth?: AuthInfo): Promise<WithHeader<DeleteRangeResponse>> {
    this.replica.refuseOnLearner();
    const response = await this.replica.write({ type: 'deleteRange', request }, auth);
    return { ...response, header: this.header(response.revision) };
  }

  async txn(request: TxnRequest, auth?: AuthInfo): Promise<WithHeader<TxnResponse>> {
    this.replica.refuseOnLearner();
    if (isTxnReadOnly(request)) {
      await this.replica.linearizableBarrier();
      const store = this.replica.authGate.store;
      if (store.enabled) checkTxnPermitted(store, auth, request);
      this.stats.txns++;
      const response = this.keyspace.readTxn(request);
      return { ...response, header: this.header(response.revision) };
    }
    if (txnHasPut(request)) this.replica.refuseIfNoSpace();
    const response = await this.replica.write({ type: 'txn', request }, auth);
    return { ...response, header: this.header(response.revision) };
  }

  async compact(revision: number, physical: boolean): Promise<WithHeader<CompactionResponse>> {
    this.replica.refuseOnLearner();
    // The log carries revisions below 2^53 and no revision reaches that: etcd's apply answers such
    // a target with the future-revision or compacted error, so it is answered here.
    if (!Number.isSafeInteger(revision)) {
      throw revision > 0
        ? new FutureRevisionError(revision, this.keyspace.currentRevision())
        : new CompactedError(this.keyspace.compactRevision());
    }
    const response = await this.replica.write({ type: 'compact', request: { revision, physical } });
    return { ...response, header: this.header(response.revision) };
  }

  watch(request: WatchCreate, listener: WatchListener): BackendWatcher {
    this.replica.refuseOnLearner();
    this.replica.assertServing();
    return watchFromHub(this.keyspace.watchHub, request, listener);
  }

  // ---- leases ----------------------------------------------------------------------------------

  async leaseGrant(ttlSeconds: number, id: bigint): Promise<WithHeader<LeaseGrantResult>> {
    this.replica.refuseOnLearner();
    this.replica.refuseIfNoSpace();
    // As etcd, a TTL over the maximum is refused where the grant applies, after a raised CORRUPT
    // alarm; only TTLs the log cannot carry (beyond 2^53) are refused here.
    if (!Number.isSafeInteger(ttlSeconds) && ttlSeconds > LEASE_TTL_SECONDS_MAX) {
      throw new LeaseTtlTooLargeError(ttlSeconds);
    }
    const leaseId = id === 0n ? randomLeaseId() : id;
    const ttl = this.replica.leases.effectiveTtl(ttlSeconds);
    const response = await this.replica.write({
      type: 'leaseGrant',
      request: { id: leaseId, ttlSeconds: ttl },
    });
    return { id: response.id, ttlSeconds: response.ttlSeconds, header: this.header(response.revision) };
  }

  async leaseRevoke(id: bigint, auth?: AuthInfo): Promise<{ header: HeaderInfo }> {
    this.replica.refuseOnLearner();
    this.checkLeaseKeysWritable(id, auth);
    const response = await this.replica.write({ type: 'leaseRevoke', request: { id } });
    return { header: this.header(response.revision) };
  }

  async leaseKeepAlive(id: bigint): Promise<WithHeader<{ id: bigint; ttlSeconds: number }>> {
    this.replica.refuseOnLearner();
    this.replica.assertServing();
    if (this.isLeader) {
      const ttl = this.replica.leases.renew(id, Date.now()) ?? 0;
      return { id, ttlSeconds: ttl, header: this.header() };
    }
    const ttl = await this.leaderClient.keepAlive(this.leaderClientUrl(), id);
    return { id, ttlSeconds: ttl, header: this.header() };
  }

  async leaseTimeToLive(id: bigint, keys: boolean): Promise<WithHeader<LeaseTimeToLiveResult>> {
    this.replica.refuseOnLearner();
    this.replica.assertServing();
    if (!this.isLeader) {
      const answer = await this.leaderClient.timeToLive(this.leaderClientUrl(), id, keys);
      return { id, ...answer, header: this.header() };
    }
    const record = this.keyspace.lease(id);
    const remaining = this.replica.leases.remainingSeconds(id, Date.now());
    if (record === undefined || remaining === undefined) {
      return { id, ttlSeconds: -1, grantedTtlSeconds: 0, keys: [], header: this.header() };
    }
    return {
      id,
      ttlSeconds: remaining,
      grantedTtlSeconds: record.ttlSeconds,
      keys: keys ? this.keyspace.leaseKeys(id) : [],
      header: this.header(),
    };
  }

  async leaseLeases(): Promise<WithHeader<{ ids: bigint[] }>> {
    this.replica.refuseOnLearner();
    this.replica.assertServing();
    // etcd lists leases by time left, soonest expiry first (lessor.Leases sorts by Remaining).
    const expiresAtMs = (id: bigint) => this.replica.leases.get(id)?.expiresAtMs ?? Number.POSITIVE_INFINITY;
    const ids = this.keyspace.leases().map((lease) => lease.id);
    const order = new Map(ids.map((id) => [id, expiresAtMs(id)]));
    ids.sort((a, b) => (order.get(a) as number) - (order.get(b) as number) || (a < b ? -1 : a > b ? 1 : 0));
    return { ids, header: this.header() };
  }

  private leaderClientUrl(): string {
    const leader = this.replica.members.get(this.replica.leaderId);
    const url = leader?.clientUrls[0];
    if (url === undefined) throw new EtcdError('noLeader');
    return url;
  }

  /** The leader revokes expired leases through Raft, a bounded number per check. */
  private checkLeases(): void {
    if (!this.isLeader || this.stopped) return;
    for (const id of this.replica.leases.expired(Date.now(), LEASE_REVOKES_PER_CHECK_MAX)) {
      if (this.replica.revokesInFlight.has(id)) continue;
      this.replica.revokesInFlight.add(id);
      this.replica
        .write({ type: 'leaseRevoke', request: { id } })
        .catch((error: Error) => {
          if (!(error instanceof LeaseNotFoundError))
            this.log.warn('lease revoke failed', { lease: id, error: error.message });
        })
        .finally(() => this.replica.revokesInFlight.delete(id));
    }
  }

  // ---- cluster -----------------------------------------------------------------------------------

  /** The member (current, learner or not) an ID from a request names, in either of its forms. */
  private memberNamed(id: bigint): number | undefined {
    return memberIdNamed(
      id,
      this.replica.members.list().map((m) => m.id),
    );
  }

  /** How an alarm names its member: a member's public ID, or the ID the request gave. */
  private alarmMemberPublicId(id: number): bigint {
    return this.replica.members.has(id) || this.replica.members.isRemoved(id) ? publicId(id) : BigInt(id);
  }

  /**
   * The member an alarm request names. An ID no member has is kept as given when it fits a JS
   * number (etcd keeps alarms for any ID); a larger one is stored by its 48 high bits.
   */
  private alarmMemberId(id: bigint): number {
    const known = memberIdNamed(id, [
      ...this.replica.members.list().map((m) => m.id),
      ...this.replica.members.removed(),
    ]);
    if (known !== undefined) return known;
    return id <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(id) : Number(id >> 16n);
  }

  private toMember(info: MemberInfo): Member {
    return {
      id: publicId(info.id),
      name: info.name,
      peerUrls: info.peerUrls,
      clientUrls: info.clientUrls,
      isLearner: info.isLearner,
    };
  }

  private memberInfos(): Member[] {
    return this.replica.members.list().map((m) => this.toMember(m));
  }

  /** Announces this member's name and client URLs through Raft, once, as etcd does on start. */
  private async publishIfNeeded(): Promise<void> {
    if (this.replica.published || this.stopped || this.replica.leaderId === 0) return;
    const current = this.replica.members.get(this.memberId);
    if (current === undefined) return;
    if (current.name === this.config.name && sameUrls(current.clientUrls, this.config.advertiseClientUrls)) {
      this.replica.published = true;
      return;
    }
    try {
      await this.replica.propose({
        type: 'publishMember',
        memberId: this.memberId,
        name: this.config.name,
        clientUrls: this.config.advertiseClientUrls,
      });
    } catch {
      // retried by the timer
    }
  }

  async memberList(linearizable: boolean): Promise<WithHeader<{ members: Member[] }>> {
    if (linearizable) await this.replica.linearizableBarrier();
    return { members: this.memberInfos(), header: this.header() };
  }

  async memberAdd(
    peerUrls: string[],
    isLearner: boolean,
  ): Promise<WithHeader<{ member: Member; members: Member[] }>> {
    this.replica.assertServing();
    if (this.replica.members.peerUrlsInUse(peerUrls)) throw new EtcdError('peerUrlExist');
    // The time makes the ID new even for peer URLs a removed member used (etcd does the same).
    const id = memberIdFor(peerUrls, this.config.initialClusterToken, Date.now());
    if (this.replica.members.has(id) || this.replica.members.isRemoved(id))
      throw new EtcdError('memberExist');
    if (!isLearner) this.checkQuorumAfterAdd();
    const requestId = this.replica.newRequestId();
    const context: MemberChangeContext = {
      id,
      name: '',
      peerUrls,
      isLearner,
      clusterId: this.replica.members.clusterId,
      proposer: this.memberId,
      requestId,
    };
    await this.replica.proposeConfChange(
      {
        transition: 'auto',
        changes: [{ type: isLearner ? 'add-learner' : 'add-node', nodeId: id }],
        context: encodeMemberChange(context),
      },
      requestId,
    );
    const member = this.replica.members.get(id);
    if (member === undefined) throw new EtcdError('memberNotFound');
    return { member: this.toMember(member), members: this.memberInfos(), header: this.header() };
  }

  async memberRemove(id: bigint): Promise<WithHeader<{ members: Member[] }>> {
    this.replica.assertServing();
    const memberId = memberIdNamed(id, [
      ...this.replica.members.list().map((m) => m.id),
      ...this.replica.members.removed(),
    ]);
    if (memberId === undefined) throw new EtcdError('memberNotFound');
    if (this.replica.members.isRemoved(memberId)) throw new EtcdError('idRemoved');
    const member = this.replica.members.get(memberId);
    if (member === undefined) throw new EtcdError('memberNotFound');
    if (!member.isLearner) this.checkQuorumAfterRemove(memberId);
    const requestId = this.replica.newRequestId();
    const context: MemberChangeContext = {
      id: memberId,
      name: member.name,
      peerUrls: member.peerUrls,
      isLearner: member.isLearner,
      clusterId: this.replica.members.clusterId,
      proposer: this.memberId,
      requestId,
    };
    await this.replica.proposeConfChange(
      {
        transition: 'auto',
        changes: [{ type: 'remove-node', nodeId: memberId }],
        context: encodeMemberChange(context),
      },
      requestId,
    );
    return { members: this.memberInfos(), header: this.header() };
  }

  async memberUpdate(id: bigint, peerUrls: string[]): Promise<WithHeader<{ members: Member[] }>> {
    const memberId = this.memberNamed(id);
    if (memberId === undefined) throw new EtcdError('memberNotFound');
    if (this.replica.members.peerUrlsInUse(peerUrls, memberId)) throw new EtcdError('peerUrlExist');
    const outcome = await this.replica.propose({ type: 'updateMember', memberId, peerUrls });
    if (outcome.status === 'error') throw outcome.error;
    return { members: this.memberInfos(), header: this.header() };
  }

  async memberPromote(id: bigint): Promise<WithHeader<{ members: Member[] }>> {
    this.replica.assertServing();
    const memberId = this.memberNamed(id);
    const member = memberId === undefined ? undefined : this.replica.members.get(memberId);
    if (memberId === undefined || member === undefined) throw new EtcdError('memberNotFound');
    if (!member.isLearner) throw new EtcdError('memberNotLearner');
    if (!this.isLeader) {
      await this.leaderClient.memberPromote(this.leaderClientUrl(), id);
      return { members: this.memberInfos(), header: this.header() };
    }
    // etcd promotes only a learner whose log is within 10% of the leader's.
    const progress = this.replica.status().progress;
    const learner = progress?.get(memberId);
    const leader = progress?.get(this.memberId);
    if (learner === undefined || leader === undefined || learner.match < leader.match * 0.9) {
      throw new EtcdError('learnerNotReady');
    }
    const requestId = this.replica.newRequestId();
    const context: MemberChangeContext = {
      id: memberId,
      name: member.name,
      peerUrls: member.peerUrls,
      isLearner: false,
      clusterId: this.replica.members.clusterId,
      proposer: this.memberId,
      requestId,
    };
    await this.replica.proposeConfChange(
      {
        transition: 'auto',
        changes: [{ type: 'add-node', nodeId: memberId }],
        context: encodeMemberChange(context),
      },
      requestId,
    );
    return { members: this.memberInfos(), header: this.header() };
  }

  /** etcd's strict reconfiguration check: the new voter set must still have a started quorum. */
  private checkQuorumAfterAdd(): void {
    const voters = this.replica.voters.length + 1;
    if (this.activeVoters() < Math.floor(voters / 2) + 1) throw new EtcdError('memberNotEnoughStarted');
  }

  private checkQuorumAfterRemove(removed: number): void {
    const voters = this.replica.voters.filter((v) => v !== removed);
    const active = this.activeVoters(removed);
    if (voters.length > 0 && active < Math.floor(voters.length / 2) + 1) {
      throw new EtcdError('memberNotEnoughStarted');
    }
  }

  private activeVoters(excluding?: NodeId): number {
    const progress = this.replica.status().progress;
    if (progress === undefined) return this.replica.voters.filter((v) => v !== excluding).length;
    let active = 0;
    for (const voter of this.replica.voters) {
      if (voter === excluding) continue;
      if (voter === this.memberId || progress.get(voter)?.recentActive) active++;
    }
    return active;
  }

  // ---- maintenance ----------------------------------------------------------------------------

  /** Throws when the database file cannot be looked at: it is gone, or the disk fails. */
  private dbSizeBytes(): number {
    return statSync(join(this.keyspace.path, 'data.mdb')).size;
  }

  async status(): Promise<WithHeader<StatusResult>> {
    const status = this.replica.status();
    const self = this.replica.members.get(this.memberId);
    let dbSizeBytes = 0;
    this.storageStep('quota-check', () => {
      dbSizeBytes = this.dbSizeBytes();
    });
    this.replica.assertServing();
    return {
      version: ETCD_API_VERSION,
      dbSizeBytes,
      dbSizeInUseBytes: dbSizeBytes,
      leader: publicId(status.softState.leader),
      raftIndex: BigInt(status.hardState.commit),
      raftTerm: BigInt(status.hardState.term),
      raftAppliedIndex: BigInt(this.replica.appliedIndex),
      errors: this.replica.members.alarms().map((a) => alarmText(a, this.alarmMemberPublicId(a.memberId))),
      isLearner: self?.isLearner ?? false,
      header: this.header(),
    };
  }

  /**
   * As etcd: every action goes through the log; GET lists the alarms of a type (NONE: all),
   * ACTIVATE answers the raised alarm, DEACTIVATE the lowered one (none if it was not raised).
   */
  async alarm(
    action: AlarmAction,
    memberId: bigint,
    alarm: AlarmType,
  ): Promise<WithHeader<{ alarms: AlarmMember[] }>> {
    const kind = alarmKindOf[alarm];
    let alarms: Alarm[];
    if (action === 'get') {
      await this.replica.linearizableBarrier();
      alarms = this.replica.members.alarms(kind);
    } else {
      const outcome = await this.replica.propose({
        type: 'alarm',
        action,
        memberId: this.alarmMemberId(memberId),
        alarm: kind,
      });
      if (outcome.status === 'error') throw outcome.error;
      alarms = outcome.status === 'done' ? (outcome.alarms ?? []) : [];
    }
    const members = alarms.map((a) => ({
      memberId: this.alarmMemberPublicId(a.memberId),
      alarm: alarmTypeOf[a.alarm],
    }));
    return { alarms: members, header: this.header() };
  }

  private checkQuota(): void {
    if (this.replica.members.hasAlarm('NOSPACE') || this.dbSizeBytes() <= this.config.quotaBackendBytes)
      return;
    this.log.warn('database space exceeded; raising the NOSPACE alarm', {
      quota: this.config.quotaBackendBytes,
    });
    this.replica
      .propose({ type: 'alarm', action: 'activate', memberId: this.memberId, alarm: 'NOSPACE' })
      .catch(() => undefined);
  }

  /**
   * A copy that fails (no room for it) is the caller's error and changes nothing, as in etcd; a
   * swap that fails after the live database was closed leaves no keyspace to serve from, so the
   * member stops (etcd exits there too).
   */
  async defragment(): Promise<{ header: HeaderInfo }> {
    this.replica.assertServing();
    const scratch = join(this.snapshotScratchDir, `defrag-${Date.now()}.mdb`);
    let bytes: { bytesBefore: number; bytesAfter: number };
    try {
      bytes = await this.replica.exclusive(() => this.keyspace.defragment(scratch));
    } catch (error) {
      if (!(error instanceof KeyspaceFailedError)) throw error;
      this.failStop('defragment', error);
      throw new EtcdError('stopped');
    }
    this.log.info('defragmented the keyspace', bytes);
    return { header: this.header() };
  }

  async hash(): Promise<WithHeader<{ hash: number }>> {
    this.replica.assertServing();
    return { hash: this.keyspace.hashKV(0).hash, header: this.header() };
  }

  async hashKV(revision: number): Promise<WithHeader<{ hash: number; compactRevision: number }>> {
    this.replica.assertServing();
    const result = this.keyspace.hashKV(revision);
    return { hash: result.hash, compactRevision: result.compactRevision, header: this.header() };
  }

  /**
   * A snapshot in etcd's format (a bbolt file; see mvcc/etcd-snapshot.ts), streamed from one LMDB
   * read transaction as it is written: nothing is staged on disk or held in memory beyond a page
   * plan, and writes go on meanwhile. The stream releases the transaction when it ends or is
   * abandoned.
   */
  async snapshot(): Promise<{ header: HeaderInfo; chunks: AsyncIterable<SnapshotChunk> }> {
    this.replica.assertServing();
    const header = this.header();
    const members = this.replica.members;
    const snapshot = await createEtcdSnapshot(this.keyspace, {
      members: members.list().map((m) => ({ ...m, id: publicId(m.id) })),
      removedMemberIds: members.removed().map(publicId),
      alarms: members
        .alarms()
        .flatMap((a) => (a.alarm === 'NONE' ? [] : [{ memberId: publicId(a.memberId), alarm: a.alarm }])),
      clusterVersion: `${ETCD_API_VERSION.split('.').slice(0, 2).join('.')}.0`,
      auth: this.replica.authGate.store.toEtcd(),
    });
    return {
      header,
      chunks: (async function* () {
        let sent = 0;
        try {
          for await (const chunk of snapshot.chunks()) {
            sent += chunk.length;
            yield { blob: chunk, remainingBytes: snapshot.totalBytes - sent };
          }
        } finally {
          snapshot.close();
        }
      })(),
    };
  }

  async moveLeader(targetId: bigint): Promise<{ header: HeaderInfo }> {
    this.replica.assertServing();
    const target = memberIdNamed(targetId, this.replica.voters) ?? 0;
    if (!this.isLeader) throw new EtcdError('notLeader');
    if (!this.replica.voters.includes(target)) throw new EtcdError('badLeaderTransferee');
    this.replica.transferLeadership(target);
    const deadline = Date.now() + 2 * this.config.electionTimeoutMs + 2000;
    while (Date.now() < deadline) {
      if (this.replica.leaderId === target) return { header: this.header() };
      await sleep(this.config.heartbeatIntervalMs);
    }
    throw new EtcdError('timeoutDueToLeaderFail');
  }

  private async autoCompact(): Promise<void> {
    if (!this.isLeader || this.stopped) return;
    const nowMs = Date.now();
    const revision = this.keyspace.currentRevision();
    let target = 0;
    if (this.config.autoCompactionMode === 'revision') {
      target = revision - this.config.autoCompactionRetention;
    } else {
      this.compactionSamples.push({ atMs: nowMs, revision });
      const cutoff = nowMs - this.config.autoCompactionRetention;
      const old = this.compactionSamples.filter((s) => s.atMs <= cutoff);
      this.compactionSamples = this.compactionSamples.filter((s) => s.atMs > cutoff - 1);
      target = old.length > 0 ? old[old.length - 1]!.revision : 0;
    }
    if (target <= this.keyspace.compactRevision()) return;
    try {
      await this.replica.write({ type: 'compact', request: { revision: target, physical: false } });
      this.log.info('auto-compacted', { revision: target });
    } catch (error) {
      this.log.warn('auto-compaction failed', { revision: target, error: (error as Error).message });
    }
  }

  // ---- lock and election -----------------------------------------------------------------------

  /**
   * etcd's checkLeasePuts: revoking a lease, or attaching one to a new key, needs write permission
   * on every key the lease holds (revoking deletes them). Checked on the receiving member before
   * proposing (etcd checks where it applies, so a key attached meanwhile is not seen here).
   */
  private checkLeaseKeysWritable(id: bigint, auth: AuthInfo | undefined): void {
    const store = this.replica.authGate.store;
    if (!store.enabled) return;
    for (const key of this.keyspace.leaseKeys(id)) store.checkRange(auth, key, EMPTY_BYTES, 'WRITE');
  }

  /** Lock and Election make their KV requests as the caller, so the caller's permissions apply. */
  private concurrencyFor(auth: AuthInfo | undefined): Concurrency {
    if (auth === undefined && !this.replica.authGate.store.enabled) return this.concurrency;
    return new Concurrency({
      range: (request) => this.range(request, auth),
      txn: (request) => this.txn(request, auth),
      deleteRange: (request) => this.deleteRange(request, auth),
      watch: (request, listener) => this.watch(request, listener),
    });
  }

  lock(
    name: Uint8Array,
    lease: bigint,
    signal: AbortSignal,
    auth?: AuthInfo,
  ): Promise<WithHeader<{ key: Uint8Array }>> {
    return this.concurrencyFor(auth).lock(name, lease, signal);
  }

  unlock(key: Uint8Array, auth?: AuthInfo): Promise<{ header: HeaderInfo }> {
    return this.concurrencyFor(auth).unlock(key);
  }

  campaign(
    name: Uint8Array,
    lease: bigint,
    value: Uint8Array,
    signal: AbortSignal,
    auth?: AuthInfo,
  ): Promise<WithHeader<{ leader: LeaderKey }>> {
    return this.concurrencyFor(auth).campaign(name, lease, value, signal);
  }

  proclaim(leader: LeaderKey, value: Uint8Array, auth?: AuthInfo): Promise<{ header: HeaderInfo }> {
    return this.concurrencyFor(auth).proclaim(leader, value);
  }

  leader(name: Uint8Array, auth?: AuthInfo): Promise<WithHeader<{ kv: KeyValue }>> {
    return this.concurrencyFor(auth).leader(name);
  }

  observe(name: Uint8Array, onLeader: (kv: KeyValue, header: HeaderInfo) => void): Disposable {
    const stop = this.concurrency.observe(
      name,
      (kv) => onLeader(kv, this.header()),
      (error) => this.log.warn('election observe failed', { error: error.message }),
    );
    return { dispose: stop };
  }

  resign(leader: LeaderKey, auth?: AuthInfo): Promise<{ header: HeaderInfo }> {
    return this.concurrencyFor(auth).resign(leader);
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

  // ---- health ------------------------------------------------------------------------------------

  /** etcd's /health: healthy when a leader is known, no alarm is raised, and a read commits. */
  async health(): Promise<{ healthy: boolean; reason: string }> {
    if (this.failure !== undefined) return { healthy: false, reason: this.failure.message };
    if (this.replica.leaderId === 0) return { healthy: false, reason: 'RAFT NO LEADER' };
    if (this.replica.members.alarms().length > 0) return { healthy: false, reason: 'ALARM ACTIVE' };
    try {
      await Promise.race([
        this.replica.linearizableBarrier(),
        sleep(this.config.electionTimeoutMs + 1000).then(() => {
          throw new Error('timed out');
        }),
      ]);
      return { healthy: true, reason: '' };
    } catch (error) {
      return { healthy: false, reason: (error as Error).message };
    }
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

const alarmKindOf: Record<AlarmType, AlarmKind> = { none: 'NONE', nospace: 'NOSPACE', corrupt: 'CORRUPT' };
const alarmTypeOf: Record<AlarmKind, AlarmType> = { NONE: 'none', NOSPACE: 'nospace', CORRUPT: 'corrupt' };

/** An alarm as etcd's Status lists it: the proto text form, which leaves out zero fields. */
function alarmText(alarm: Alarm, memberId: bigint): string {
  const member = memberId === 0n ? '' : `memberID:${memberId} `;
  return `${member}${alarm.alarm === 'NONE' ? '' : `alarm:${alarm.alarm} `}`;
}

function sameUrls(a: string[], b: string[]): boolean {
  return a.length === b.length && a.every((url, i) => url === b[i]);
}

function randomLeaseId(): bigint {
  // Positive int64, as etcd's IDs are.
  const id = randomBytes(8).readBigInt64BE(0) & 0x7fff_ffff_ffff_ffffn;
  return id === 0n ? 1n : id;
}

const DISCOVERY_TIMEOUT_MS = 30_000;

/**
 * A member joining an existing cluster learns the membership (its own ID, the cluster ID, the
 * other members) from the peers listed in --initial-cluster, as etcd's GetClusterFromRemotePeers.
 */
async function discoverCluster(
  config: ServerConfig,
  log: Logger,
  peerTls: TlsFileWatcher | undefined,
): Promise<Members> {
  const own = new Set(config.initialAdvertisePeerUrls);
  const peers = [...config.initialCluster.values()].flat().filter((url) => !own.has(url));
  const deadline = Date.now() + DISCOVERY_TIMEOUT_MS;
  let found: { members: Members; choice: ConsensusChoice } | undefined;
  while (found === undefined && Date.now() < deadline) {
    for (const url of peers) {
      try {
        const body = (await getPeerJson(`${url.replace(/\/$/, '')}/members`, peerTls, 2000)) as {
          clusterId: string;
          consensus?: ConsensusKind;
          phase2Quorum?: number;
          members: Array<{
            id: string;
            name: string;
            peerURLs: string[];
            clientURLs: string[];
            isLearner: boolean;
          }>;
        };
        const members = new Members(Number.parseInt(body.clusterId, 16));
        for (const m of body.members) {
          const id = Number.parseInt(m.id, 16);
          members.add({
            id,
            name: m.name,
            peerUrls: m.peerURLs,
            isLearner: m.isLearner,
            clusterId: members.clusterId,
            proposer: 0,
            requestId: 0,
          });
          members.publish(id, m.name, m.clientURLs);
        }
        found = {
          members,
          choice: choiceOf({ consensus: body.consensus, paxosPhase2Quorum: body.phase2Quorum }),
        };
        break;
      } catch (error) {
        log.debug('cluster discovery: peer did not answer', { url, error: (error as Error).message });
      }
    }
    if (found === undefined) await sleep(500);
  }
  if (found === undefined)
    throw new Error(
      `could not get the member list from any peer in --initial-cluster within ${DISCOVERY_TIMEOUT_MS} ms`,
    );
  checkJoin(found.choice, choiceOf(config));
  return found.members;
}

/**
 * The members a new cluster starts with. A data dir made by `concordctl snapshot restore
 * --initial-cluster ...` already holds them and this member's ID (etcd's restore writes them into
 * the new WAL), and the member founds that cluster whatever --initial-cluster it is started with;
 * otherwise they come from --initial-cluster.
 */
function foundingMembers(
  config: ServerConfig,
  memberDir: string,
  stored: Members | undefined,
  selfId: number,
): { members: Members; memberId: number; source: 'flags' | 'snapshot restore' } {
  const restoredId = readSelfId(memberDir);
  if (restoredId !== undefined && stored !== undefined) {
    if (!stored.has(restoredId))
      throw new Error(
        `data dir ${config.dataDir} was restored for member ${formatId(restoredId)}, which its membership does not list`,
      );
    return { members: stored, memberId: restoredId, source: 'snapshot restore' };
  }
  const initial = initialMembers(config);
  if (!initial.some((m) => m.id === selfId)) {
    throw new Error(
      `--initial-advertise-peer-urls ${config.initialAdvertisePeerUrls.join(',')} do not match the ` +
        `--initial-cluster entry for "${config.name}"`,
    );
  }
  const members = new Members(clusterIdFor(initial.map((m) => m.id)));
  for (const m of initial) {
    members.add({ ...m, isLearner: false, clusterId: members.clusterId, proposer: 0, requestId: 0 });
  }
  return { members, memberId: selfId, source: 'flags' };
}

function initialMembers(config: ServerConfig): Array<{ id: number; name: string; peerUrls: string[] }> {
  return [...config.initialCluster.entries()].map(([name, peerUrls]) => ({
    id: memberIdFor(peerUrls, config.initialClusterToken),
    name,
    peerUrls,
  }));
}

async function installSnapshotFile(
  keyspace: Keyspace,
  snapshots: SnapshotStore,
  path: string,
  scratchDir: string,
) {
  const staged = join(scratchDir, 'recover.mdb');
  await snapshots.installTo(path, staged);
  await keyspace.restoreSnapshot(staged);
  rmSync(staged, { force: true });
}

/** Makes the key id the cluster agreed on last (kept in the keyspace's meta) the active one. */
function adoptAgreedKey(keyspace: Keyspace, keys: EncryptionKeys): void {
  const agreed = keyspace.getMeta(ENCRYPTION_KEY_META_NAME);
  if (agreed !== undefined) keys.setActive(Buffer.from(agreed).toString());
}
