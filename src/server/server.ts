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
import { status as grpcStatus } from '@grpc/grpc-js';
import { LeaseTable } from '../lease/lease-table.js';
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
  AppliedEntry,
  CompactionResponse,
  DeleteRangeRequest,
  DeleteRangeResponse,
  PutRequest,
  PutResponse,
  RangeRequest,
  RangeResponse,
  TxnRequest,
  TxnResponse,
  WriteOp,
  WriteResponse,
} from '../mvcc/types.js';
import { isTxnReadOnly } from '../mvcc/validate.js';
import type { ConfChange, ConsensusEngine, ProposeResult, Rng } from '../raft/api.js';
import { decodeConfChange } from '../raft/confchange.js';
import { MemoryStorage } from '../raft/memory-storage.js';
import {
  type ConfState,
  EMPTY_BYTES,
  type Entry,
  EntryType,
  type Message,
  MessageType,
  type NodeId,
  Role,
  type Snapshot,
  type SoftState,
} from '../raft/types.js';
import { type HostStage, RaftHost } from '../replica/raft-host.js';
import { mkdirDurableSync } from '../storage/durable-fs.js';
import { EncryptionKeys } from '../storage/encryption.js';
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
import { AppliedWait } from './applied-wait.js';
import { checkTxnPermitted, checkWritePermitted } from './auth-checks.js';
import { AuthGate } from './auth-gate.js';
import { AuthService } from './auth-service.js';
import { AUTH_META_NAME, type AuthEffect, type AuthInfo, type AuthOp, AuthStore } from './auth-store.js';
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
} from './backend.js';
import { Concurrency } from './concurrency.js';
import type { ServerConfig } from './config.js';
import {
  type ConsensusChoice,
  type ConsensusKind,
  checkJoin,
  choiceOf,
  claimConsensus,
  createConsensusEngine,
  describeChoice,
} from './consensus.js';
import { GROUP_ID, WalLog } from './durable-log.js';
import { EtcdError } from './errors.js';
import { FailStopError, type FailStopOperation } from './fail-stop.js';
import { watchFromHub } from './hub-watch.js';
import { clusterIdFor, formatId, memberIdFor, memberIdNamed, publicId } from './ids.js';
import { LeaderClient } from './leader-client.js';
import type { Logger } from './logger.js';
import { MEMBERS_META_NAME, readSelfId, refuseEtcdDataDir, writeSelfId } from './member-dir.js';
import { getPeerJson, leaderCredentials, peerTlsWatcher, peerTransportTls } from './member-tls.js';
import {
  type Alarm,
  type AlarmKind,
  decodeMemberChange,
  encodeMemberChange,
  type MemberChangeContext,
  type MemberInfo,
  Members,
} from './members.js';
import { type ClusterOp, decodeProposal, encodeProposal, type ServerOp } from './proposal.js';
import { ReadBatcher } from './read-batcher.js';
import { ReceivedSnapshots } from './received-snapshots.js';
import { DEFAULT_WARNING_APPLY_DURATION_MS, ServerStats, timedWalOptions } from './server-stats.js';
import { Waiters } from './waiters.js';

/** The etcd release whose v3 API a member implements and reports (Status.version, /version). */
export const ETCD_API_VERSION = '3.4.23';
const LEASE_REVOKES_PER_CHECK_MAX = 64;
const LEASE_CHECK_INTERVAL_MS = 500;
const PUBLISH_RETRY_MS = 500;
const COMPACTION_IDLE_STEP_MS = 100;
/** Encryption key rotation: how often the background pass takes a step, and its size. */
const REENCRYPT_STEP_MS = 50;
const REENCRYPT_RECORDS_PER_STEP = 2000;
/** Server meta record: the encryption key id the cluster agreed on last (see rotateEncryptionKey). */
const META_ENCRYPTION_KEY = 'encryptionKey';
const ROTATE_REQUEST_BYTES_MAX = 4096;
/**
 * Headroom over the space quota for a snapshot received from a peer: the database passes the
 * quota before the NOSPACE alarm stops writes, and its file keeps free pages.
 */
const SNAPSHOT_QUOTA_SLACK_BYTES_MIN = 256 * 1024 * 1024;
/** Applies only mark the quota as due; the database file's size is looked at this often (a stat per
 * apply batch cost ~50 µs on every member). The NOSPACE alarm is raised at most this much later. */
const QUOTA_CHECK_INTERVAL_MS = 100;
const META_MEMBERS = MEMBERS_META_NAME;
const META_AUTH = AUTH_META_NAME;
/** Writes refused for an auth revision that moved on are proposed again this often at most. */
const AUTH_OLD_REVISION_RETRIES_MAX = 3;
/** What a failure in each stage of the Raft loop was doing. */
const HOST_STAGE_OPERATIONS: Record<HostStage, FailStopOperation> = {
  persist: 'wal-write',
  apply: 'apply',
  restore: 'snapshot-install',
  loop: 'raft-loop',
};

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

export type ApplyOutcome =
  | { status: 'ok'; response: WriteResponse }
  | { status: 'error'; error: Error }
  | { status: 'done'; alarms?: Alarm[]; auth?: AuthEffect };

type ResponseOf<T extends WriteResponse['type']> =
  Extract<WriteResponse, { type: T }> extends { response: infer R } ? R : never;

class CryptoRng implements Rng {
  nextInt(bound: number): number {
    return randomBytes(4).readUInt32BE(0) % bound;
  }
}

function dropError(result: ProposeResult): EtcdError | undefined {
  if (result.ok) return undefined;
  switch (result.reason) {
    case 'no-leader':
    case 'not-a-member':
      return new EtcdError('noLeader');
    case 'leader-transfer-in-progress':
      return new EtcdError('leaderChanged');
    case 'not-leader-forwarding-disabled':
      return new EtcdError('notLeader');
    case 'uncommitted-bytes-max':
      return new EtcdError('tooManyRequests');
    case 'conf-change-pending':
      return new EtcdError('unhealthy');
    case 'invalid-conf-change':
      // Multi-Paxos with --paxos-phase2-quorum K refuses a membership below K voters.
      return new EtcdError('memberNotEnoughStarted');
    default:
      return new EtcdError('noLeader');
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export class ConcordServer {
  readonly memberId: number;
  /** The consensus engine (Raft or Multi-Paxos, per --consensus); the host drives either alike. */
  private readonly raft: ConsensusEngine;
  private readonly host: RaftHost;
  private readonly waiters: Waiters<ApplyOutcome>;
  private readonly reads: ReadBatcher;
  private readonly appliedWait: AppliedWait;
  private readonly leases: LeaseTable;
  private readonly leaderClient: LeaderClient;
  /** How long a client request may wait (etcd's ReqTimeout: 5 s + 2 election timeouts). */
  private readonly requestTimeoutMs: number;
  /** The peer certificate files, watched for rotation (undefined: plaintext peers). */
  private peerTls: TlsFileWatcher | undefined;
  private readonly concurrency: Concurrency;
  private readonly authGate: AuthGate;
  /** etcd's Auth service over this member (EtcdBackend.auth). */
  readonly auth: AuthService;
  private softState: SoftState = { leader: 0, role: Role.Follower };
  /** Counters and observers for /metrics (src/cli/metrics.ts); set once by start(). */
  stats = new ServerStats();
  private lastKnownLeader = 0;
  /** When the leader last sent a heartbeat to each peer still unanswered (performance.now ms). */
  private readonly heartbeatSentMs = new Map<number, number>();
  private term = 0;
  private nextRequestId = 1;
  private snapshotIndex: number;
  /**
   * Which alarm guards writes at apply, as etcd's applier chain: the last alarm raised, until the
   * last alarm of that kind is lowered; after a restart CORRUPT's, else NOSPACE's, if raised.
   */
  private alarmGuard: AlarmKind;
  private snapshotting = false;
  /** Bumped by every membership change or installed snapshot (see takeSnapshot). */
  private confChanges = 0;
  private electionFastForwarded = false;
  private confState: ConfState;
  private readonly timers: NodeJS.Timeout[] = [];
  /** Something was applied since the last quota check. */
  private quotaCheckDue = false;
  private readonly revokesInFlight = new Set<bigint>();
  private published = false;
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
  /** A key id the batch being applied makes active (an encryptionKey entry). */
  private encryptionKeyApplied: string | undefined;
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
    private readonly snapshots: SnapshotStore,
    private readonly storage: MemoryStorage,
    private members: Members,
    memberId: number,
    appliedIndex: number,
    readonly transport: PeerTransport,
    private readonly snapshotScratchDir: string,
    private readonly received: ReceivedSnapshots,
  ) {
    this.memberId = memberId;
    this.alarmGuard = alarmGuardAfterRestart(members);
    this.snapshotIndex = storage.snapshot().metadata.index;
    this.confState = storage.initialState().confState;
    this.term = storage.initialState().hardState.term;
    const electionTicks = Math.max(2, Math.round(config.electionTimeoutMs / config.heartbeatIntervalMs));
    this.raft = createConsensusEngine(choiceOf(config), {
      id: memberId,
      electionTicks,
      heartbeatTicks: 1,
      storage,
      rng: new CryptoRng(),
      applied: appliedIndex,
      checkQuorum: true,
      preVote: true,
      readOnlyOption: 'safe',
      maxMessageBytes: 1024 * 1024,
      inflightMessagesMax: 256,
      inflightBytesMax: 64 * 1024 * 1024,
      uncommittedBytesMax: 256 * 1024 * 1024,
      committedBytesPerReadyMax: 64 * 1024 * 1024,
    });
    const requestTimeoutMs = 5000 + 2 * config.electionTimeoutMs;
    this.requestTimeoutMs = requestTimeoutMs;
    this.waiters = new Waiters(requestTimeoutMs);
    this.appliedWait = new AppliedWait(appliedIndex);
    this.leases = new LeaseTable(Math.ceil((3 * config.electionTimeoutMs) / 2 / 1000));
    const nowMs = Date.now();
    for (const lease of keyspace.leases()) this.leases.grant(lease.id, lease.ttlSeconds, nowMs);
    this.leaderClient = new LeaderClient(requestTimeoutMs, leaderCredentials(config));
    this.reads = new ReadBatcher(
      { readIndex: (ctx) => this.raft.readIndex(ctx), schedule: () => this.host.schedule() },
      config.electionTimeoutMs,
      requestTimeoutMs,
    );
    this.host = new RaftHost(
      this.raft,
      storage,
      new WalLog(wal, snapshots, received),
      {
        send: (messages) => {
          if (this.softState.role === Role.Leader) this.noteHeartbeatsSent(messages);
          transport.send(messages);
        },
        flush: () => transport.flush(),
      },
      {
        restoreSnapshot: (snapshot) => this.restoreSnapshot(snapshot),
        applyEntries: (entries) => this.applyEntries(entries),
      },
      {
        onSoftState: (state) => this.onSoftState(state),
        onHardState: (state) => {
          this.term = state.term;
        },
        onReadStates: (states) => this.reads.onReadStates(states),
        onApplied: (index) => this.onApplied(index),
        onFatal: (error, stage) => this.failStop(HOST_STAGE_OPERATIONS[stage], error),
      },
      config.heartbeatIntervalMs,
    );
    this.concurrency = new Concurrency(this);
    this.authGate = new AuthGate(loadAuth(keyspace), {
      token: config.authToken,
      simpleTokenTtlSeconds: config.authTokenTtlSeconds,
      bcryptCost: config.bcryptCost,
    });
    this.auth = new AuthService(this.authGate, {
      header: () => this.header(),
      barrier: () => this.linearizableBarrier(),
      propose: (request, info) => this.proposeAuth(request, info),
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
      keyspace.putMeta(META_MEMBERS, members.encode());
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
      onUnreachable: (peer) => server.raft.reportUnreachable(peer),
      onPeerConnected: () => server.fastForwardElection(),
      onSnapshotStatus: (peer, ok) => {
        server.raft.reportSnapshot(peer, ok);
        server.host.schedule();
      },
      onError: (error, peer) => log.debug('peer transport', { error: error.message, peer }),
      snapshotSource: (message) => server.snapshotSource(message),
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
      snapshots,
      storage,
      members,
      memberId,
      appliedIndex,
      transport,
      scratchDir,
      received,
    );
    server.stats = stats;
    server.peerTls = peerTls;
    server.encryption = encryption;
    keyspace.onCorruption((error) => server.failStop('encryption', error));
    if (encryption !== undefined) server.resumeRotation();
    await transport.listen();
    server.syncPeers();
    server.host.start();
    const voters = server.raft.status().confState.voters;
    if (voters.length === 1 && voters[0] === memberId) server.fastForwardElection();
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

  /**
   * Once per process, when a peer is first reachable (at once when alone): the first election
   * comes within one election timeout rather than after one to two, as etcd does on start.
   */
  private fastForwardElection(): void {
    if (this.electionFastForwarded) return;
    this.electionFastForwarded = true;
    if (this.raft.fastForwardElection()) this.host.schedule();
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
    this.host.stop();
    const error = new EtcdError('stopped');
    this.waiters.rejectAll(error);
    this.reads.rejectAll(error);
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
    return this.softState.role === Role.Leader;
  }

  get leaderId(): number {
    return this.softState.leader;
  }

  private startTimers(): void {
    this.timers.push(setInterval(() => this.checkLeases(), LEASE_CHECK_INTERVAL_MS));
    this.timers.push(setInterval(() => this.reads.onTick(), this.config.heartbeatIntervalMs));
    this.timers.push(setInterval(() => void this.publishIfNeeded(), PUBLISH_RETRY_MS));
    this.timers.push(
      setInterval(() => {
        if (this.stopped || !this.quotaCheckDue) return;
        this.quotaCheckDue = false;
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
      this.stepPeerMessage(message);
    } finally {
      // A snapshot streamed to a file that Raft did not take (stale, or refused for now) is dropped.
      if (snapshot !== undefined && this.raft.pendingSnapshot !== snapshot) this.received.discard(snapshot);
    }
  }

  private stepPeerMessage(message: Parameters<ConsensusEngine['step']>[0]): void {
    if (this.stopped) return;
    if (this.members.isRemoved(message.from)) return;
    if (message.type === MessageType.HeartbeatResponse) this.noteHeartbeatAnswered(message.from);
    try {
      this.raft.step(message);
    } catch (error) {
      this.log.warn('dropped a peer message the core refused', {
        error: (error as Error).message,
        type: message.type,
      });
    }
    this.host.schedule();
  }

  private onSoftState(state: SoftState): void {
    const wasLeader = this.softState.role === Role.Leader;
    const leaderChanged = state.leader !== 0 && state.leader !== this.softState.leader;
    // Between two leaders the core passes through "no leader"; the cause is the last one known.
    const previousLeader = this.lastKnownLeader;
    if (state.leader !== 0) this.lastKnownLeader = state.leader;
    this.softState = state;
    if (leaderChanged) {
      this.reads.onLeaderChange();
      this.stats.leaderChanges++;
    }
    const isLeader = state.role === Role.Leader;
    const { term, commit } = this.raft.status().hardState;
    if (isLeader && !wasLeader) {
      this.leases.promote(Date.now(), this.config.electionTimeoutMs);
      this.log.info('became leader', {
        term,
        index: commit,
        'previous-leader': previousLeader === 0 ? '' : formatId(previousLeader),
      });
    } else if (!isLeader && wasLeader) {
      this.leases.demote();
      this.heartbeatSentMs.clear();
      this.log.info('lost leadership', { term, index: commit, leader: formatId(state.leader) });
    } else if (leaderChanged) {
      this.log.info('leader changed', {
        term,
        index: commit,
        leader: formatId(state.leader),
        'previous-leader': previousLeader === 0 ? '' : formatId(previousLeader),
      });
    }
  }

  /** The leader times one heartbeat per peer at a time (etcd probes peers for the same metric). */
  private noteHeartbeatsSent(messages: readonly Message[]): void {
    for (const message of messages) {
      if (message.type !== MessageType.Heartbeat) continue;
      const sent = this.heartbeatSentMs.get(message.to);
      const now = performance.now();
      // A heartbeat lost on the way would otherwise hold its slot forever.
      if (sent === undefined || now - sent > this.config.electionTimeoutMs)
        this.heartbeatSentMs.set(message.to, now);
    }
  }

  private noteHeartbeatAnswered(from: number): void {
    const sent = this.heartbeatSentMs.get(from);
    if (sent === undefined) return;
    this.heartbeatSentMs.delete(from);
    this.stats.peerRoundTrip(from, (performance.now() - sent) / 1000);
  }

  private onApplied(index: number): void {
    this.appliedWait.advance(Math.max(index, this.appliedWait.appliedIndex));
  }

  /** Keeps the transport's peer list equal to the membership. */
  private syncPeers(): void {
    const wanted = new Map<number, string>();
    for (const member of this.members.list()) {
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
        clusterId: this.members.clusterId.toString(16),
        ...choiceOf(this.config),
        members: this.members.list().map((m) => ({
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

  /** Serializes applies with work that replaces the database file (defragment). */
  private applyQueue: Promise<void> = Promise.resolve();

  private exclusive<T>(work: () => Promise<T>): Promise<T> {
    const run = this.applyQueue.then(work);
    this.applyQueue = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  private applyEntries(entries: Entry[]): Promise<void> {
    return this.exclusive(() => this.applyEntriesNow(entries));
  }

  private async applyEntriesNow(entries: Entry[]): Promise<void> {
    const batch: AppliedEntry[] = [];
    const owners: Array<number | undefined> = [];
    const done: { requestId: number; alarms?: Alarm[]; auth?: AuthEffect }[] = [];
    const refused: { requestId: number; error: EtcdError }[] = [];
    let membersChanged = false;
    let authChanged = false;
    // After a restart the log re-delivers entries the keyspace (and the membership stored with
    // it) already holds: only conf changes matter again, to the core; the rest is not decoded.
    const appliedBefore = this.keyspace.appliedIndex();
    for (const entry of entries) {
      if (entry.index <= appliedBefore && entry.type !== EntryType.ConfChange) {
        batch.push({ index: entry.index, op: { type: 'noop' } });
        owners.push(undefined);
        continue;
      }
      if (entry.type === EntryType.ConfChange) {
        const requestId = this.applyConfChangeEntry(entry);
        if (requestId !== undefined) done.push({ requestId });
        membersChanged = true;
        batch.push({ index: entry.index, op: { type: 'noop' } });
        owners.push(undefined);
        continue;
      }
      if (entry.data.length === 0) {
        batch.push({ index: entry.index, op: { type: 'noop' } });
        owners.push(undefined);
        continue;
      }
      const proposal = decodeProposal(entry.data);
      const mine = proposal.proposer === this.memberId ? proposal.requestId : undefined;
      let op = proposal.op;
      let authInfo: AuthInfo | undefined;
      if (op.type === 'authed') {
        authInfo = { username: op.username, revision: op.authRevision };
        op = op.op;
      }
      if (op.type === 'auth') {
        batch.push({ index: entry.index, op: { type: 'noop' } });
        owners.push(undefined);
        const applied = this.applyAuthOp(op.request, authInfo, entry.index);
        if (applied instanceof EtcdError) {
          if (mine !== undefined) refused.push({ requestId: mine, error: applied });
          continue;
        }
        if (op.request.type !== 'authenticate' && applied.type !== 'unchanged') authChanged = true;
        if (mine !== undefined) done.push({ requestId: mine, auth: applied });
        continue;
      }
      if (isClusterOp(op)) {
        const alarms = this.applyClusterOp(op);
        membersChanged = true;
        batch.push({ index: entry.index, op: { type: 'noop' } });
        owners.push(undefined);
        if (mine !== undefined) done.push({ requestId: mine, alarms });
        continue;
      }
      const refusal = this.alarmRefusal(op) ?? this.authRefusal(op, authInfo, proposal.op.type === 'authed');
      if (refusal !== undefined) {
        batch.push({ index: entry.index, op: { type: 'noop' } });
        owners.push(undefined);
        if (mine !== undefined) refused.push({ requestId: mine, error: refusal });
        continue;
      }
      batch.push({ index: entry.index, op });
      owners.push(mine);
    }
    // Membership, the encryption key agreed on and the auth store ride in the same LMDB
    // transaction as the entries that changed them.
    const keyId = this.encryptionKeyApplied;
    this.encryptionKeyApplied = undefined;
    const meta =
      membersChanged || authChanged
        ? {
            ...(membersChanged ? { [META_MEMBERS]: this.members.encode() } : {}),
            ...(keyId === undefined ? {} : { [META_ENCRYPTION_KEY]: Buffer.from(keyId) }),
            ...(authChanged ? { [META_AUTH]: this.authGate.store.encode() } : {}),
          }
        : undefined;
    const applyStartMs = performance.now();
    const results = this.keyspace.applyBatch(batch, meta === undefined ? {} : { meta });
    this.noteApplyDuration(performance.now() - applyStartMs, batch);
    if (membersChanged) this.syncPeers();
    if (keyId !== undefined) this.switchEncryptionKey(keyId);
    const nowMs = Date.now();
    for (let i = 0; i < results.length; i++) {
      const result = results[i]!;
      const owner = owners[i];
      if (result.status === 'ok') {
        const op = batch[i]!.op;
        if (op.type === 'put') this.stats.puts++;
        else if (op.type === 'txn') this.stats.txns++;
        else if (op.type === 'deleteRange') this.stats.deletes++;
        else if (op.type === 'compact')
          this.log.info('compacted the keyspace', {
            revision: op.request.revision,
            'raft-index': batch[i]!.index,
          });
        this.trackLease(op, result.response, nowMs);
        if (owner !== undefined) this.waiters.resolve(owner, { status: 'ok', response: result.response });
      } else if (result.status === 'error') {
        if (owner !== undefined) this.waiters.resolve(owner, { status: 'error', error: result.error });
      }
    }
    for (const { requestId, alarms, auth } of done)
      this.waiters.resolve(requestId, { status: 'done', alarms, auth });
    for (const { requestId, error } of refused) this.waiters.resolve(requestId, { status: 'error', error });
    this.snapshotIfDue();
    this.quotaCheckDue = true;
  }

  /** etcd's "apply request took too long": one warning per slow batch, with what it held. */
  private noteApplyDuration(tookMs: number, batch: readonly AppliedEntry[]): void {
    this.stats.backendCommit(tookMs / 1000);
    const expectedMs = this.config.warningApplyDurationMs ?? DEFAULT_WARNING_APPLY_DURATION_MS;
    if (tookMs <= expectedMs) return;
    this.stats.slowApplies++;
    this.log.warn('apply request took too long', {
      took: `${tookMs.toFixed(1)}ms`,
      'expected-duration': `${expectedMs}ms`,
      index: batch.at(-1)?.index ?? 0,
      entries: batch.length,
    });
  }

  private trackLease(op: WriteOp, response: WriteResponse, nowMs: number): void {
    if (op.type === 'leaseGrant' && response.type === 'leaseGrant') {
      this.leases.grant(response.response.id, response.response.ttlSeconds, nowMs);
    } else if (op.type === 'leaseRevoke') {
      this.leases.revoke(op.request.id);
      this.revokesInFlight.delete(op.request.id);
    }
  }

  private applyConfChangeEntry(entry: Entry): number | undefined {
    const change = decodeConfChange(entry.data);
    let context: MemberChangeContext | undefined;
    if (change.context.length > 0) context = decodeMemberChange(change.context);
    try {
      this.confState = this.raft.applyConfChange(change);
      this.confChanges++;
      this.storage.setConfState(this.confState);
    } catch (error) {
      this.log.warn('ignored an invalid membership change', {
        index: entry.index,
        error: (error as Error).message,
      });
      return context?.proposer === this.memberId ? context.requestId : undefined;
    }
    if (context !== undefined && this.members.clusterId === 0) this.members.clusterId = context.clusterId;
    for (const single of change.changes) {
      this.log.info('applied a membership change', {
        change: single.type,
        member: formatId(single.nodeId),
        'raft-index': entry.index,
        voters: this.confState.voters.map(formatId),
        learners: this.confState.learners.map(formatId),
      });
      switch (single.type) {
        case 'add-node':
        case 'add-learner':
          this.members.add({
            id: single.nodeId,
            name: context?.id === single.nodeId ? context.name : '',
            peerUrls: context?.id === single.nodeId ? context.peerUrls : [],
            isLearner: single.type === 'add-learner',
            clusterId: this.members.clusterId,
            proposer: 0,
            requestId: 0,
          });
          break;
        case 'remove-node':
          this.members.remove(single.nodeId);
          if (single.nodeId === this.memberId) this.log.warn('this member was removed from the cluster');
          break;
      }
    }
    return context?.proposer === this.memberId ? context.requestId : undefined;
  }

  /** Applies an auth op on this member; a refused op changed nothing and returns etcd's error. */
  private applyAuthOp(request: AuthOp, info: AuthInfo | undefined, index: number): AuthEffect | EtcdError {
    let effect: AuthEffect;
    try {
      effect = this.authGate.store.apply(request, info);
    } catch (error) {
      if (error instanceof EtcdError) return error;
      throw error;
    }
    // etcd's simple token: the prefix the proposer chose, then the entry's index.
    if (effect.type === 'authenticated')
      effect = { ...effect, simpleToken: `${effect.simpleToken}.${index}` };
    this.authGate.onApplied(effect);
    if (request.type === 'authEnable' && effect.type !== 'unchanged') this.log.info('auth enabled');
    if (request.type === 'authDisable' && effect.type !== 'unchanged') this.log.info('auth disabled');
    return effect;
  }

  /**
   * With auth enabled, a KV write applies only if the user it was proposed for may make it at the
   * current auth revision (etcd's authApplierV3); other writes (leases, compaction) are not checked.
   */
  private authRefusal(op: ServerOp, info: AuthInfo | undefined, authed: boolean): EtcdError | undefined {
    const store = this.authGate.store;
    if (!store.enabled) return undefined;
    if (op.type !== 'put' && op.type !== 'deleteRange' && op.type !== 'txn') return undefined;
    try {
      checkWritePermitted(store, authed ? info : undefined, op);
    } catch (error) {
      if (error instanceof EtcdError) return error;
      throw error;
    }
    return undefined;
  }

  /** Applies a cluster op; an alarm op returns what etcd's apply answers (the alarm it changed). */
  private applyClusterOp(op: ClusterOp): Alarm[] | undefined {
    switch (op.type) {
      case 'encryptionKey':
        this.encryptionKeyApplied = op.keyId;
        return undefined;
      case 'publishMember':
        this.members.publish(op.memberId, op.name, op.clientUrls);
        if (op.memberId === this.memberId) this.published = true;
        return undefined;
      case 'updateMember':
        this.members.updatePeerUrls(op.memberId, op.peerUrls);
        return undefined;
      case 'alarm': {
        // etcd swaps its applier on alarm changes: a newly raised alarm's guard replaces whichever
        // stood (raising one again changes nothing), and lowering the last alarm of a kind
        // removes the guard, even when an alarm of the other kind is still raised.
        const alarm = { memberId: op.memberId, alarm: op.alarm };
        if (op.action === 'activate') {
          const again = this.members.alarms(op.alarm).some((a) => a.memberId === op.memberId);
          if (!again && op.alarm !== 'NONE') this.alarmGuard = op.alarm;
          if (!this.members.hasAlarm(op.alarm))
            this.log.warn('alarm raised', { alarm: op.alarm, member: formatId(op.memberId) });
          return [this.members.activateAlarm(alarm)];
        }
        const lowered = this.members.deactivateAlarm(alarm);
        if (lowered !== undefined && !this.members.hasAlarm(op.alarm)) this.alarmGuard = 'NONE';
        if (lowered !== undefined)
          this.log.info('alarm disarmed', { alarm: op.alarm, member: formatId(op.memberId) });
        return lowered === undefined ? [] : [lowered];
      }
    }
  }

  private async restoreSnapshot(snapshot: Snapshot): Promise<void> {
    this.confState = snapshot.metadata.confState;
    this.confChanges++;
    if (snapshot.data.length === 0) return; // the bootstrap snapshot: an empty keyspace
    const path = join(this.snapshotScratchDir, `incoming-${snapshot.metadata.index}.mdb`);
    const files = await this.snapshots.list();
    const file = files.find((f) => f.index === snapshot.metadata.index && f.term === snapshot.metadata.term);
    if (file === undefined) throw new Error(`snapshot file for index ${snapshot.metadata.index} is missing`);
    await this.snapshots.installTo(file.path, path);
    await this.keyspace.restoreSnapshot(path);
    rmSync(path, { force: true });
    this.members = loadMembers(this.keyspace) ?? this.members;
    this.authGate.store = loadAuth(this.keyspace);
    this.alarmGuard = alarmGuardAfterRestart(this.members);
    if (this.encryption !== undefined) {
      adoptAgreedKey(this.keyspace, this.encryption);
      // The leader's copy may hold records sealed under an older key: re-seal them here too.
      this.resumeRotation();
    }
    this.leases.clear();
    const nowMs = Date.now();
    for (const lease of this.keyspace.leases()) this.leases.grant(lease.id, lease.ttlSeconds, nowMs);
    if (this.isLeader) this.leases.promote(nowMs, this.config.electionTimeoutMs);
    this.snapshotIndex = snapshot.metadata.index;
    this.syncPeers();
    this.log.info('installed a snapshot from the leader', { index: snapshot.metadata.index });
  }

  /**
   * Every --snapshot-count applied entries: snapshot the keyspace, compact the log, free the WAL.
   * In the background: the Raft loop goes on (a copy of a large keyspace takes longer than an
   * election timeout, and a loop waiting for it sends no heartbeats).
   */
  private snapshotIfDue(): void {
    if (this.stopped) return;
    void this.takeSnapshot();
  }

  /**
   * Never rejects: a failing step stops the member, named by the step. `force` (the end of a key
   * rotation): whatever --snapshot-count says, and then the WAL is released up to the snapshot
   * (no catch-up entries kept) and only this snapshot file is kept. Resolves whether it took one.
   */
  private async takeSnapshot(force = false): Promise<boolean> {
    const applied = this.keyspace.appliedIndex();
    if (this.snapshotting || (!force && applied - this.snapshotIndex < this.config.snapshotCount))
      return false;
    if (applied > this.storage.lastIndex() || applied <= this.storage.snapshot().metadata.index) return false;
    this.snapshotting = true;
    let step: FailStopOperation = 'snapshot-create';
    try {
      const confChangesBefore = this.confChanges;
      const scratch = join(this.snapshotScratchDir, `local-${applied}.mdb`);
      const info = await this.keyspace.createSnapshot(scratch);
      const index = info.appliedIndex;
      // Entries kept being applied meanwhile: the copy's membership is the current one only if no
      // membership change (or installed snapshot) came in between. Otherwise try again later.
      if (this.stopped || this.confChanges !== confChangesBefore) {
        rmSync(scratch, { force: true });
        return false;
      }
      const metadata = { index, term: this.storage.term(index), confState: this.confState };
      await this.snapshots.write(metadata, readFileChunks(scratch));
      rmSync(scratch, { force: true });
      if (this.stopped || this.confChanges !== confChangesBefore) return false;
      step = 'wal-release';
      this.storage.createSnapshot(index, metadata.confState, EMPTY_BYTES);
      this.wal.saveSnapshotMarker(GROUP_ID, metadata);
      const compactTo = Math.max(this.storage.firstIndex(), index - this.config.snapshotCatchUpEntries);
      if (compactTo > this.storage.firstIndex()) this.storage.compact(compactTo);
      // The WAL may drop only entries the store holds on disk: a power cut rolls the store back
      // to its last synced commit, and the WAL must still hold every entry after it.
      await this.keyspace.sync();
      await this.wal.releaseTo(GROUP_ID, force ? index : Math.min(index, compactTo));
      step = 'snapshot-prune';
      await this.snapshots.prune(force ? 1 : undefined);
      this.snapshotIndex = index;
      this.log.info('took a snapshot', { index, bytes: info.bytes });
      return true;
    } catch (error) {
      this.failStop(step, error);
      return false;
    } finally {
      this.snapshotting = false;
    }
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
    const outcome = await this.propose({ type: 'encryptionKey', keyId });
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
        const more = await this.exclusive(async () =>
          this.keyspace.reencryptStep(REENCRYPT_RECORDS_PER_STEP),
        );
        if (!more) rotation.phase = 'wal';
        return;
      }
      if (rotation.phase === 'wal') {
        // Every entry sealed under an older key is at or below lastIndex, in a segment that the
        // rollover seals; a snapshot at or above it lets the WAL delete those segments.
        rotation.walLastIndex = this.storage.lastIndex();
        await this.wal.rolloverNow();
        rotation.phase = 'snapshot';
        return;
      }
      const applied = this.keyspace.appliedIndex();
      if (applied <= this.storage.snapshot().metadata.index) {
        // Nothing applied since the last snapshot (taken before the pass): an empty entry makes one possible.
        if (!rotation.noopProposed) void this.propose({ type: 'noop' }).catch(() => undefined);
        rotation.noopProposed = true;
        return;
      }
      if (applied < rotation.walLastIndex) return;
      if (!(await this.takeSnapshot(true))) return;
      if (this.rotation !== rotation) return;
      this.rotation = undefined;
      this.log.info('re-encryption finished', { keyId: rotation.keyId, walKeyIds: this.wal.keyIdsInUse() });
    } catch (error) {
      this.failStop('encryption', error);
    } finally {
      this.rotationStepRunning = false;
    }
  }

  /** Bytes of the snapshot a leader sends to a follower: the snapshot file's verified data. */
  private snapshotSource(
    message: Parameters<ConsensusEngine['step']>[0],
  ): AsyncIterable<Uint8Array> | undefined {
    const metadata = message.snapshot?.metadata;
    if (metadata === undefined || metadata.index <= 1) return undefined;
    const snapshots = this.snapshots;
    return (async function* () {
      const files = await snapshots.list();
      const file = files.find((f) => f.index === metadata.index && f.term === metadata.term);
      if (file === undefined) throw new Error(`no snapshot file for index ${metadata.index}`);
      yield* snapshots.readData(file.path);
    })();
  }

  // ---- proposals -------------------------------------------------------------------------------

  private assertServing(): void {
    if (this.stopped) throw new EtcdError('stopped');
  }

  private async propose(op: ServerOp): Promise<ApplyOutcome> {
    this.assertServing();
    const requestId = this.nextRequestId++;
    const outcome = this.waiters.register(requestId);
    const result = this.raft.propose(encodeProposal({ proposer: this.memberId, requestId, op }));
    const error = dropError(result);
    if (error !== undefined) {
      this.stats.proposalsFailed++;
      this.waiters.reject(requestId, error);
    }
    this.host.schedule();
    return outcome;
  }

  private async write<T extends WriteResponse['type']>(
    op: WriteOp & { type: T },
    auth?: AuthInfo,
  ): Promise<ResponseOf<T>> {
    let info = auth;
    for (let attempt = 0; ; attempt++) {
      const outcome = await this.propose(this.withAuth(op, info));
      if (outcome.status === 'error') {
        // etcd's raftRequest: a write checked at an auth revision that moved on before it applied
        // is proposed again at the current one (a simple token names a user, not a revision).
        if (this.retriesAtNewAuthRevision(outcome.error, info, attempt)) {
          info = { username: info!.username, revision: this.authGate.store.revision };
          continue;
        }
        throw outcome.error;
      }
      if (outcome.status !== 'ok' || outcome.response.type !== op.type) {
        throw new Error(`unexpected apply outcome for ${op.type}`);
      }
      return outcome.response.response as ResponseOf<T>;
    }
  }

  private retriesAtNewAuthRevision(error: Error, info: AuthInfo | undefined, attempt: number): boolean {
    return (
      error instanceof EtcdError &&
      error.code === 'authOldRevision' &&
      info !== undefined &&
      this.authGate.tokenType === 'simple' &&
      attempt < AUTH_OLD_REVISION_RETRIES_MAX
    );
  }

  /** While auth is enabled a request is proposed with the user it runs as (none: user name is empty). */
  private withAuth<T extends WriteOp | { type: 'auth'; request: AuthOp }>(
    op: T,
    info: AuthInfo | undefined,
  ): ServerOp {
    if (!this.authGate.store.enabled && info === undefined) return op;
    if (!this.authGate.store.enabled && op.type !== 'auth') return op;
    return { type: 'authed', username: info?.username ?? '', authRevision: info?.revision ?? 0, op };
  }

  private async proposeAuth(request: AuthOp, info: AuthInfo | undefined): Promise<AuthEffect> {
    this.refuseOnLearner();
    let current = info;
    for (let attempt = 0; ; attempt++) {
      const outcome = await this.propose(this.withAuth({ type: 'auth', request }, current));
      if (outcome.status === 'error') {
        if (this.retriesAtNewAuthRevision(outcome.error, current, attempt)) {
          current = { username: current!.username, revision: this.authGate.store.revision };
          continue;
        }
        throw outcome.error;
      }
      if (outcome.status !== 'done' || outcome.auth === undefined)
        throw new Error(`unexpected apply outcome for ${request.type}`);
      return outcome.auth;
    }
  }

  private async proposeConfChange(change: ConfChange, requestId: number): Promise<void> {
    this.assertServing();
    const deadline = Date.now() + 2 * this.config.electionTimeoutMs + 5000;
    for (;;) {
      const outcome = this.waiters.register(requestId);
      const result = this.raft.proposeConfChange(change);
      this.host.schedule();
      if (result.ok) {
        await outcome;
        return;
      }
      this.waiters.reject(requestId, dropError(result) ?? new EtcdError('unhealthy'));
      await outcome.catch(() => undefined);
      // One change at a time: wait for the previous one (or the joint config) to finish.
      if (result.reason !== 'conf-change-pending' || Date.now() > deadline) throw dropError(result);
      await sleep(50);
    }
  }

  header(revision = this.keyspace.currentRevision()): HeaderInfo {
    return {
      clusterId: publicId(this.members.clusterId),
      memberId: publicId(this.memberId),
      revision,
      raftTerm: BigInt(this.term),
    };
  }

  private async linearizableBarrier(): Promise<void> {
    this.assertServing();
    const index = await this.reads.requestReadIndex();
    await this.appliedWait.wait(index);
  }

  /**
   * etcd serves a learner's clients only serializable reads and Status (its gRPC interceptor's
   * isRPCSupportedForLearner); everything else is refused so clients move to a voter.
   */
  private refuseOnLearner(): void {
    if (this.members.get(this.memberId)?.isLearner === true) throw new EtcdError('notSupportedForLearner');
  }

  /** What apply would answer under the NOSPACE guard, answered before proposing. */
  private refuseIfNoSpace(): void {
    if (this.alarmGuard === 'NOSPACE') throw new EtcdError('noSpace');
  }

  /** The error the standing alarm guard fails `op` with at apply, as etcd's capped and corrupt appliers. */
  private alarmRefusal(op: ServerOp): EtcdError | undefined {
    if (this.alarmGuard === 'CORRUPT' && refusedWhenCorrupt.has(op.type)) return new EtcdError('corrupt');
    if (this.alarmGuard !== 'NOSPACE') return undefined;
    if (op.type === 'put' || op.type === 'leaseGrant' || (op.type === 'txn' && txnHasPut(op.request)))
      return new EtcdError('noSpace');
    return undefined;
  }

  // ---- KV ------------------------------------------------------------------------------------

  async range(request: RangeRequest, auth?: AuthInfo): Promise<WithHeader<RangeResponse>> {
    if (!request.serializable) this.refuseOnLearner();
    // --experimental-stale-reads is the deliberate bug the fault tests must catch.
    if (!request.serializable && !this.config.experimentalStaleReads) await this.linearizableBarrier();
    else this.assertServing();
    const store = this.authGate.store;
    if (store.enabled) store.checkRange(auth, request.key, request.rangeEnd ?? EMPTY_BYTES, 'READ');
    this.stats.ranges++;
    const response = this.keyspace.range(request);
    return { ...response, header: this.header(response.revision) };
  }

  async put(request: PutRequest, auth?: AuthInfo): Promise<WithHeader<PutResponse>> {
    this.refuseOnLearner();
    this.refuseIfNoSpace();
    if (request.lease !== undefined && request.lease !== 0n) this.checkLeaseKeysWritable(request.lease, auth);
    const response = await this.write({ type: 'put', request }, auth);
    return { ...response, header: this.header(response.revision) };
  }

  async deleteRange(request: DeleteRangeRequest, auth?: AuthInfo): Promise<WithHeader<DeleteRangeResponse>> {
    this.refuseOnLearner();
    const response = await this.write({ type: 'deleteRange', request }, auth);
    return { ...response, header: this.header(response.revision) };
  }

  async txn(request: TxnRequest, auth?: AuthInfo): Promise<WithHeader<TxnResponse>> {
    this.refuseOnLearner();
    if (isTxnReadOnly(request)) {
      await this.linearizableBarrier();
      const store = this.authGate.store;
      if (store.enabled) checkTxnPermitted(store, auth, request);
      this.stats.txns++;
      const response = this.keyspace.readTxn(request);
      return { ...response, header: this.header(response.revision) };
    }
    if (txnHasPut(request)) this.refuseIfNoSpace();
    const response = await this.write({ type: 'txn', request }, auth);
    return { ...response, header: this.header(response.revision) };
  }

  async compact(revision: number, physical: boolean): Promise<WithHeader<CompactionResponse>> {
    this.refuseOnLearner();
    // The log carries revisions below 2^53 and no revision reaches that: etcd's apply answers such
    // a target with the future-revision or compacted error, so it is answered here.
    if (!Number.isSafeInteger(revision)) {
      throw revision > 0
        ? new FutureRevisionError(revision, this.keyspace.currentRevision())
        : new CompactedError(this.keyspace.compactRevision());
    }
    const response = await this.write({ type: 'compact', request: { revision, physical } });
    return { ...response, header: this.header(response.revision) };
  }

  watch(request: WatchCreate, listener: WatchListener): BackendWatcher {
    this.refuseOnLearner();
    this.assertServing();
    return watchFromHub(this.keyspace.watchHub, request, listener);
  }

  // ---- leases ----------------------------------------------------------------------------------

  async leaseGrant(ttlSeconds: number, id: bigint): Promise<WithHeader<LeaseGrantResult>> {
    this.refuseOnLearner();
    this.refuseIfNoSpace();
    // As etcd, a TTL over the maximum is refused where the grant applies, after a raised CORRUPT
    // alarm; only TTLs the log cannot carry (beyond 2^53) are refused here.
    if (!Number.isSafeInteger(ttlSeconds) && ttlSeconds > LEASE_TTL_SECONDS_MAX) {
      throw new LeaseTtlTooLargeError(ttlSeconds);
    }
    const leaseId = id === 0n ? randomLeaseId() : id;
    const ttl = this.leases.effectiveTtl(ttlSeconds);
    const response = await this.write({ type: 'leaseGrant', request: { id: leaseId, ttlSeconds: ttl } });
    return { id: response.id, ttlSeconds: response.ttlSeconds, header: this.header(response.revision) };
  }

  async leaseRevoke(id: bigint, auth?: AuthInfo): Promise<{ header: HeaderInfo }> {
    this.refuseOnLearner();
    this.checkLeaseKeysWritable(id, auth);
    const response = await this.write({ type: 'leaseRevoke', request: { id } });
    return { header: this.header(response.revision) };
  }

  async leaseKeepAlive(id: bigint): Promise<WithHeader<{ id: bigint; ttlSeconds: number }>> {
    this.refuseOnLearner();
    this.assertServing();
    if (this.isLeader) {
      const ttl = this.leases.renew(id, Date.now()) ?? 0;
      return { id, ttlSeconds: ttl, header: this.header() };
    }
    const ttl = await this.forwardToLeader((url) => this.leaderClient.keepAlive(url, id));
    return { id, ttlSeconds: ttl, header: this.header() };
  }

  async leaseTimeToLive(id: bigint, keys: boolean): Promise<WithHeader<LeaseTimeToLiveResult>> {
    this.refuseOnLearner();
    this.assertServing();
    if (!this.isLeader) {
      const answer = await this.forwardToLeader((url) => this.leaderClient.timeToLive(url, id, keys));
      return { id, ...answer, header: this.header() };
    }
    const record = this.keyspace.lease(id);
    const remaining = this.leases.remainingSeconds(id, Date.now());
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
    this.refuseOnLearner();
    this.assertServing();
    // etcd lists leases by time left, soonest expiry first (lessor.Leases sorts by Remaining).
    const expiresAtMs = (id: bigint) => this.leases.get(id)?.expiresAtMs ?? Number.POSITIVE_INFINITY;
    const ids = this.keyspace.leases().map((lease) => lease.id);
    const order = new Map(ids.map((id) => [id, expiresAtMs(id)]));
    ids.sort((a, b) => (order.get(a) as number) - (order.get(b) as number) || (a < b ? -1 : a > b ? 1 : 0));
    return { ids, header: this.header() };
  }

  /**
   * Runs a request a follower forwards on the leader's client API. As etcd's waitLeader loop:
   * with no leader known (a follower that has not heard from one yet, or during an election) the
   * member waits for one, and a leader it cannot reach (UNAVAILABLE) is tried again, until the
   * request timeout; only then is "no leader" (or the last error) the answer.
   */
  private async forwardToLeader<T>(call: (leaderUrl: string) => Promise<T>): Promise<T> {
    const deadline = Date.now() + this.requestTimeoutMs;
    for (;;) {
      this.assertServing();
      const url = this.members.get(this.softState.leader)?.clientUrls[0];
      if (url === undefined && Date.now() >= deadline) throw new EtcdError('noLeader');
      if (url !== undefined) {
        try {
          return await call(url);
        } catch (error) {
          const unavailable = (error as { code?: unknown }).code === grpcStatus.UNAVAILABLE;
          if (!unavailable || Date.now() >= deadline) throw error;
        }
      }
      await sleep(this.config.heartbeatIntervalMs);
    }
  }

  /** The leader revokes expired leases through Raft, a bounded number per check. */
  private checkLeases(): void {
    if (!this.isLeader || this.stopped) return;
    for (const id of this.leases.expired(Date.now(), LEASE_REVOKES_PER_CHECK_MAX)) {
      if (this.revokesInFlight.has(id)) continue;
      this.revokesInFlight.add(id);
      this.write({ type: 'leaseRevoke', request: { id } })
        .catch((error: Error) => {
          if (!(error instanceof LeaseNotFoundError))
            this.log.warn('lease revoke failed', { lease: id, error: error.message });
        })
        .finally(() => this.revokesInFlight.delete(id));
    }
  }

  // ---- cluster -----------------------------------------------------------------------------------

  /** The member (current, learner or not) an ID from a request names, in either of its forms. */
  private memberNamed(id: bigint): number | undefined {
    return memberIdNamed(
      id,
      this.members.list().map((m) => m.id),
    );
  }

  /** How an alarm names its member: a member's public ID, or the ID the request gave. */
  private alarmMemberPublicId(id: number): bigint {
    return this.members.has(id) || this.members.isRemoved(id) ? publicId(id) : BigInt(id);
  }

  /**
   * The member an alarm request names. An ID no member has is kept as given when it fits a JS
   * number (etcd keeps alarms for any ID); a larger one is stored by its 48 high bits.
   */
  private alarmMemberId(id: bigint): number {
    const known = memberIdNamed(id, [...this.members.list().map((m) => m.id), ...this.members.removed()]);
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
    return this.members.list().map((m) => this.toMember(m));
  }

  /** Announces this member's name and client URLs through Raft, once, as etcd does on start. */
  private async publishIfNeeded(): Promise<void> {
    if (this.published || this.stopped || this.softState.leader === 0) return;
    const current = this.members.get(this.memberId);
    if (current === undefined) return;
    if (current.name === this.config.name && sameUrls(current.clientUrls, this.config.advertiseClientUrls)) {
      this.published = true;
      return;
    }
    try {
      await this.propose({
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
    if (linearizable) await this.linearizableBarrier();
    return { members: this.memberInfos(), header: this.header() };
  }

  async memberAdd(
    peerUrls: string[],
    isLearner: boolean,
  ): Promise<WithHeader<{ member: Member; members: Member[] }>> {
    this.assertServing();
    if (this.members.peerUrlsInUse(peerUrls)) throw new EtcdError('peerUrlExist');
    // The time makes the ID new even for peer URLs a removed member used (etcd does the same).
    const id = memberIdFor(peerUrls, this.config.initialClusterToken, Date.now());
    if (this.members.has(id) || this.members.isRemoved(id)) throw new EtcdError('memberExist');
    if (!isLearner) this.checkQuorumAfterAdd();
    const requestId = this.nextRequestId++;
    const context: MemberChangeContext = {
      id,
      name: '',
      peerUrls,
      isLearner,
      clusterId: this.members.clusterId,
      proposer: this.memberId,
      requestId,
    };
    await this.proposeConfChange(
      {
        transition: 'auto',
        changes: [{ type: isLearner ? 'add-learner' : 'add-node', nodeId: id }],
        context: encodeMemberChange(context),
      },
      requestId,
    );
    const member = this.members.get(id);
    if (member === undefined) throw new EtcdError('memberNotFound');
    return { member: this.toMember(member), members: this.memberInfos(), header: this.header() };
  }

  async memberRemove(id: bigint): Promise<WithHeader<{ members: Member[] }>> {
    this.assertServing();
    const memberId = memberIdNamed(id, [...this.members.list().map((m) => m.id), ...this.members.removed()]);
    if (memberId === undefined) throw new EtcdError('memberNotFound');
    if (this.members.isRemoved(memberId)) throw new EtcdError('idRemoved');
    const member = this.members.get(memberId);
    if (member === undefined) throw new EtcdError('memberNotFound');
    if (!member.isLearner) this.checkQuorumAfterRemove(memberId);
    const requestId = this.nextRequestId++;
    const context: MemberChangeContext = {
      id: memberId,
      name: member.name,
      peerUrls: member.peerUrls,
      isLearner: member.isLearner,
      clusterId: this.members.clusterId,
      proposer: this.memberId,
      requestId,
    };
    await this.proposeConfChange(
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
    if (this.members.peerUrlsInUse(peerUrls, memberId)) throw new EtcdError('peerUrlExist');
    const outcome = await this.propose({ type: 'updateMember', memberId, peerUrls });
    if (outcome.status === 'error') throw outcome.error;
    return { members: this.memberInfos(), header: this.header() };
  }

  async memberPromote(id: bigint): Promise<WithHeader<{ members: Member[] }>> {
    this.assertServing();
    const memberId = this.memberNamed(id);
    const member = memberId === undefined ? undefined : this.members.get(memberId);
    if (memberId === undefined || member === undefined) throw new EtcdError('memberNotFound');
    if (!member.isLearner) throw new EtcdError('memberNotLearner');
    if (!this.isLeader) {
      await this.forwardToLeader((url) => this.leaderClient.memberPromote(url, id));
      return { members: this.memberInfos(), header: this.header() };
    }
    // etcd promotes only a learner whose log is within 10% of the leader's.
    const progress = this.raft.status().progress;
    const learner = progress?.get(memberId);
    const leader = progress?.get(this.memberId);
    if (learner === undefined || leader === undefined || learner.match < leader.match * 0.9) {
      throw new EtcdError('learnerNotReady');
    }
    const requestId = this.nextRequestId++;
    const context: MemberChangeContext = {
      id: memberId,
      name: member.name,
      peerUrls: member.peerUrls,
      isLearner: false,
      clusterId: this.members.clusterId,
      proposer: this.memberId,
      requestId,
    };
    await this.proposeConfChange(
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
    const voters = this.confState.voters.length + 1;
    if (this.activeVoters() < Math.floor(voters / 2) + 1) throw new EtcdError('memberNotEnoughStarted');
  }

  private checkQuorumAfterRemove(removed: number): void {
    const voters = this.confState.voters.filter((v) => v !== removed);
    const active = this.activeVoters(removed);
    if (voters.length > 0 && active < Math.floor(voters.length / 2) + 1) {
      throw new EtcdError('memberNotEnoughStarted');
    }
  }

  private activeVoters(excluding?: NodeId): number {
    const progress = this.raft.status().progress;
    if (progress === undefined) return this.confState.voters.filter((v) => v !== excluding).length;
    let active = 0;
    for (const voter of this.confState.voters) {
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
    const status = this.raft.status();
    const self = this.members.get(this.memberId);
    let dbSizeBytes = 0;
    this.storageStep('quota-check', () => {
      dbSizeBytes = this.dbSizeBytes();
    });
    this.assertServing();
    return {
      version: ETCD_API_VERSION,
      dbSizeBytes,
      dbSizeInUseBytes: dbSizeBytes,
      leader: publicId(status.softState.leader),
      raftIndex: BigInt(status.hardState.commit),
      raftTerm: BigInt(status.hardState.term),
      raftAppliedIndex: BigInt(this.appliedWait.appliedIndex),
      errors: this.members.alarms().map((a) => alarmText(a, this.alarmMemberPublicId(a.memberId))),
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
      await this.linearizableBarrier();
      alarms = this.members.alarms(kind);
    } else {
      const outcome = await this.propose({
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
    if (this.members.hasAlarm('NOSPACE') || this.dbSizeBytes() <= this.config.quotaBackendBytes) return;
    this.log.warn('database space exceeded; raising the NOSPACE alarm', {
      quota: this.config.quotaBackendBytes,
    });
    this.propose({ type: 'alarm', action: 'activate', memberId: this.memberId, alarm: 'NOSPACE' }).catch(
      () => undefined,
    );
  }

  /**
   * A copy that fails (no room for it) is the caller's error and changes nothing, as in etcd; a
   * swap that fails after the live database was closed leaves no keyspace to serve from, so the
   * member stops (etcd exits there too).
   */
  async defragment(): Promise<{ header: HeaderInfo }> {
    this.assertServing();
    const scratch = join(this.snapshotScratchDir, `defrag-${Date.now()}.mdb`);
    let bytes: { bytesBefore: number; bytesAfter: number };
    try {
      bytes = await this.exclusive(() => this.keyspace.defragment(scratch));
    } catch (error) {
      if (!(error instanceof KeyspaceFailedError)) throw error;
      this.failStop('defragment', error);
      throw new EtcdError('stopped');
    }
    this.log.info('defragmented the keyspace', bytes);
    return { header: this.header() };
  }

  async hash(): Promise<WithHeader<{ hash: number }>> {
    this.assertServing();
    return { hash: this.keyspace.hashKV(0).hash, header: this.header() };
  }

  async hashKV(revision: number): Promise<WithHeader<{ hash: number; compactRevision: number }>> {
    this.assertServing();
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
    this.assertServing();
    const header = this.header();
    const members = this.members;
    const snapshot = await createEtcdSnapshot(this.keyspace, {
      members: members.list().map((m) => ({ ...m, id: publicId(m.id) })),
      removedMemberIds: members.removed().map(publicId),
      alarms: members
        .alarms()
        .flatMap((a) => (a.alarm === 'NONE' ? [] : [{ memberId: publicId(a.memberId), alarm: a.alarm }])),
      clusterVersion: `${ETCD_API_VERSION.split('.').slice(0, 2).join('.')}.0`,
      auth: this.authGate.store.toEtcd(),
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
    this.assertServing();
    const target = memberIdNamed(targetId, this.confState.voters) ?? 0;
    if (!this.isLeader) throw new EtcdError('notLeader');
    if (!this.confState.voters.includes(target)) throw new EtcdError('badLeaderTransferee');
    this.raft.transferLeadership(target);
    this.host.schedule();
    const deadline = Date.now() + 2 * this.config.electionTimeoutMs + 2000;
    while (Date.now() < deadline) {
      if (this.softState.leader === target) return { header: this.header() };
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
      await this.write({ type: 'compact', request: { revision: target, physical: false } });
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
    const store = this.authGate.store;
    if (!store.enabled) return;
    for (const key of this.keyspace.leaseKeys(id)) store.checkRange(auth, key, EMPTY_BYTES, 'WRITE');
  }

  /** Lock and Election make their KV requests as the caller, so the caller's permissions apply. */
  private concurrencyFor(auth: AuthInfo | undefined): Concurrency {
    if (auth === undefined && !this.authGate.store.enabled) return this.concurrency;
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
      const ids = this.members.list().map((m) => m.id);
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
    const peers = Object.fromEntries(this.members.list().map((m) => [formatId(m.id), m.name]));
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
    if (this.softState.leader === 0) return { healthy: false, reason: 'RAFT NO LEADER' };
    if (this.members.alarms().length > 0) return { healthy: false, reason: 'ALARM ACTIVE' };
    try {
      await Promise.race([
        this.linearizableBarrier(),
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
      term: this.term,
      index: this.appliedWait.appliedIndex,
    };
  }

  /** What /metrics and the dashboard read when asked: counters kept in memory, no disk scan. */
  observation(): MemberObservation {
    const { hardState } = this.raft.status();
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
      leaderId: this.softState.leader,
      isLeader: this.softState.role === Role.Leader,
      term: hardState.term,
      commitIndex: hardState.commit,
      appliedIndex: this.appliedWait.appliedIndex,
      pendingProposals: this.waiters.size,
      proposalsFailed: this.stats.proposalsFailed + this.waiters.timeouts,
      revision: this.keyspace.currentRevision(),
      compactRevision: this.keyspace.compactRevision(),
      dbSizeBytes,
      dbSizeInUseBytes: Math.min(space.usedBytes, dbSizeBytes),
      keys: space.liveKeys,
      quotaBytes: this.config.quotaBackendBytes,
      watchers: this.keyspace.watchHub.watcherCount,
      alarms: this.members.alarms().map((a) => ({ memberId: a.memberId, alarm: a.alarm })),
      peers: this.transport.stats().peers,
    };
  }

  debugStatus() {
    return {
      memberId: this.memberId,
      leader: this.softState.leader,
      role: this.softState.role,
      term: this.term,
      applied: this.appliedWait.appliedIndex,
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

function isClusterOp(op: ServerOp): op is ClusterOp {
  return (
    op.type === 'publishMember' ||
    op.type === 'updateMember' ||
    op.type === 'alarm' ||
    op.type === 'encryptionKey'
  );
}

/** The alarm guard a member starts with (etcd's restoreAlarms): CORRUPT's if raised, else NOSPACE's. */
function alarmGuardAfterRestart(members: Members): AlarmKind {
  if (members.hasAlarm('CORRUPT')) return 'CORRUPT';
  return members.hasAlarm('NOSPACE') ? 'NOSPACE' : 'NONE';
}

/** The writes etcd's corrupt applier refuses (reads, and read-only txns, do not go through it). */
const refusedWhenCorrupt: ReadonlySet<ServerOp['type']> = new Set([
  'put',
  'deleteRange',
  'txn',
  'compact',
  'leaseGrant',
  'leaseRevoke',
]);

const alarmKindOf: Record<AlarmType, AlarmKind> = { none: 'NONE', nospace: 'NOSPACE', corrupt: 'CORRUPT' };
const alarmTypeOf: Record<AlarmKind, AlarmType> = { NONE: 'none', NOSPACE: 'nospace', CORRUPT: 'corrupt' };

/** An alarm as etcd's Status lists it: the proto text form, which leaves out zero fields. */
function alarmText(alarm: Alarm, memberId: bigint): string {
  const member = memberId === 0n ? '' : `memberID:${memberId} `;
  return `${member}${alarm.alarm === 'NONE' ? '' : `alarm:${alarm.alarm} `}`;
}

/** etcd's quota cost of a txn counts the puts of its own branches only, not of nested txns. */
function txnHasPut(request: TxnRequest): boolean {
  return [...request.success, ...request.failure].some((op) => op.type === 'put');
}

function sameUrls(a: string[], b: string[]): boolean {
  return a.length === b.length && a.every((url, i) => url === b[i]);
}

function randomLeaseId(): bigint {
  // Positive int64, as etcd's IDs are.
  const id = randomBytes(8).readBigInt64BE(0) & 0x7fff_ffff_ffff_ffffn;
  return id === 0n ? 1n : id;
}

function loadAuth(keyspace: Keyspace): AuthStore {
  const data = keyspace.getMeta(META_AUTH);
  return data === undefined ? new AuthStore() : AuthStore.decode(data);
}

function loadMembers(keyspace: Keyspace): Members | undefined {
  const data = keyspace.getMeta(META_MEMBERS);
  return data === undefined ? undefined : Members.decode(data);
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

async function* readFileChunks(path: string): AsyncGenerator<Uint8Array> {
  const { createReadStream } = await import('node:fs');
  for await (const chunk of createReadStream(path, { highWaterMark: 1024 * 1024 })) yield chunk as Buffer;
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
  const agreed = keyspace.getMeta(META_ENCRYPTION_KEY);
  if (agreed !== undefined) keys.setActive(Buffer.from(agreed).toString());
}
