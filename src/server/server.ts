// ConcordServer: one Concord member as its embedders see it. The CLI starts and stops it, the API
// layer (src/api) calls it through the EtcdBackend shape, /metrics and the dashboard observe it.
// It joins the node (src/node: the process, its storage, transport and group replica) and the
// etcd services over it (src/services); each call is passed to the service that does it.
// How a request travels through the layers: docs/architecture.md.

import type { IncomingMessage, ServerResponse } from 'node:http';
import * as grpc from '@grpc/grpc-js';
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
import type { ServerConfig } from '../node/config.js';
import { ConcordNode, type MemberObservation, type StorageHooks } from '../node/node.js';
import { ShardAdmin, ShardAdminError } from '../node/shard-admin.js';
import type { AuthInfo } from '../replica/auth-store.js';
import type { MetaReplica } from '../replica/meta-replica.js';
import type { ServerStats } from '../replica/stats.js';
import { AuthService } from '../services/auth-service.js';
import type {
  AlarmAction,
  AlarmMember,
  AlarmType,
  BackendWatcher,
  Disposable,
  EtcdBackend,
  HeaderInfo,
  KeyValue,
  LeaderKey,
  LeaseGrantResult,
  LeaseTimeToLiveResult,
  Member,
  ShardMapView,
  ShardSplitView,
  SnapshotChunk,
  StatusResult,
  WatchCreate,
  WatchListener,
  WithHeader,
} from '../services/backend.js';
import { ClusterService, PUBLISH_RETRY_MS } from '../services/cluster.js';
import { KvService } from '../services/kv.js';
import { LEASE_CHECK_INTERVAL_MS, LeaseService } from '../services/lease.js';
import { LockElectionService } from '../services/lock-election.js';
import { MaintenanceService, QUOTA_CHECK_INTERVAL_MS } from '../services/maintenance.js';
import { OracleNotLeaderError } from '../shard/errors.js';
import type { FailStopError } from '../storage/fail-stop.js';
import type { PeerTransport } from '../transport/peer-transport.js';
import type { Logger } from '../util/logger.js';

export { ETCD_API_VERSION } from '../services/backend.js';
export type { MemberObservation, StorageHooks };

export class ConcordServer implements EtcdBackend {
  /** etcd's Auth service over this member (EtcdBackend.auth). */
  readonly auth: AuthService;
  private readonly kv: KvService;
  private readonly lease: LeaseService;
  private readonly cluster: ClusterService;
  private readonly maintenance: MaintenanceService;
  private readonly lockElection: LockElectionService;
  /** The shard map for operators (node/shard-admin.ts). */
  readonly shards: ShardAdmin;

  private constructor(private readonly node: ConcordNode) {
    const replica = node.replica;
    this.kv = new KvService(node);
    this.lease = new LeaseService(node);
    this.cluster = new ClusterService(node);
    this.maintenance = new MaintenanceService(node);
    this.lockElection = new LockElectionService(node, this.kv);
    this.shards = new ShardAdmin(node);
    this.auth = new AuthService(replica.authGate, {
      header: () => replica.header(),
      barrier: () => replica.linearizableBarrier(),
      propose: (request, info) => replica.proposeAuth(request, info),
    });
  }

  // ---- lifecycle -----------------------------------------------------------------------------

  static async start(config: ServerConfig, log: Logger, hooks: StorageHooks = {}): Promise<ConcordServer> {
    const server = new ConcordServer(await ConcordNode.start(config, log, hooks));
    server.startServiceTimers();
    void server.cluster.publishIfNeeded();
    return server;
  }

  /** The services' own work: lease expiry, publishing this member, the quota, auto-compaction. */
  private startServiceTimers(): void {
    this.node.every(LEASE_CHECK_INTERVAL_MS, () => this.lease.checkLeases());
    this.node.every(PUBLISH_RETRY_MS, () => void this.cluster.publishIfNeeded());
    this.node.every(QUOTA_CHECK_INTERVAL_MS, () => this.maintenance.quotaTick());
    const autoCompactionMs = this.maintenance.autoCompactionIntervalMs();
    if (autoCompactionMs !== undefined)
      this.node.every(autoCompactionMs, () => void this.maintenance.autoCompact());
  }

  /** Stops serving and closes the transport, the WAL and the keyspace (also after a fail-stop). */
  stop(): Promise<void> {
    return this.node.stop();
  }

  /**
   * Resolves with the cause once the member fail-stopped (its transport is closed by then);
   * never rejects, and stays pending for a member that never fails.
   */
  /** Resolves once this member may serve clients: its name and client URLs are applied (etcd's ReadyNotify). */
  whenPublished(): Promise<void> {
    return this.node.replica.whenPublished;
  }

  whenFailed(): Promise<FailStopError> {
    return this.node.whenFailed();
  }

  get memberId(): number {
    return this.node.memberId;
  }

  get config(): ServerConfig {
    return this.node.config;
  }

  get transport(): PeerTransport {
    return this.node.transport;
  }

  /** Counters and observers for /metrics (src/cli/metrics.ts). */
  get stats(): ServerStats {
    return this.node.stats;
  }

  get isLeader(): boolean {
    return this.node.replica.isLeader;
  }

  get leaderId(): number {
    return this.node.replica.leaderId;
  }

  header(revision?: number): HeaderInfo {
    return this.node.replica.header(revision);
  }

  // ---- KV ------------------------------------------------------------------------------------

  range(request: RangeRequest, auth?: AuthInfo): Promise<WithHeader<RangeResponse>> {
    return this.kv.range(request, auth);
  }

  put(request: PutRequest, auth?: AuthInfo): Promise<WithHeader<PutResponse>> {
    return this.kv.put(request, auth);
  }

  deleteRange(request: DeleteRangeRequest, auth?: AuthInfo): Promise<WithHeader<DeleteRangeResponse>> {
    return this.kv.deleteRange(request, auth);
  }

  txn(request: TxnRequest, auth?: AuthInfo): Promise<WithHeader<TxnResponse>> {
    return this.kv.txn(request, auth);
  }

  compact(revision: number, physical: boolean): Promise<WithHeader<CompactionResponse>> {
    return this.kv.compact(revision, physical);
  }

  watch(request: WatchCreate, listener: WatchListener): BackendWatcher {
    return this.kv.watch(request, listener);
  }

  // ---- leases ----------------------------------------------------------------------------------

  leaseGrant(ttlSeconds: number, id: bigint): Promise<WithHeader<LeaseGrantResult>> {
    return this.lease.leaseGrant(ttlSeconds, id);
  }

  leaseRevoke(id: bigint, auth?: AuthInfo): Promise<{ header: HeaderInfo }> {
    return this.lease.leaseRevoke(id, auth);
  }

  leaseKeepAlive(id: bigint): Promise<WithHeader<{ id: bigint; ttlSeconds: number }>> {
    return this.lease.leaseKeepAlive(id);
  }

  leaseTimeToLive(id: bigint, keys: boolean): Promise<WithHeader<LeaseTimeToLiveResult>> {
    return this.lease.leaseTimeToLive(id, keys);
  }

  leaseLeases(): Promise<WithHeader<{ ids: bigint[] }>> {
    return this.lease.leaseLeases();
  }

  // ---- cluster -----------------------------------------------------------------------------------

  memberList(linearizable: boolean): Promise<WithHeader<{ members: Member[] }>> {
    return this.cluster.memberList(linearizable);
  }

  memberAdd(
    peerUrls: string[],
    isLearner: boolean,
  ): Promise<WithHeader<{ member: Member; members: Member[] }>> {
    return this.cluster.memberAdd(peerUrls, isLearner);
  }

  memberRemove(id: bigint): Promise<WithHeader<{ members: Member[] }>> {
    return this.cluster.memberRemove(id);
  }

  memberUpdate(id: bigint, peerUrls: string[]): Promise<WithHeader<{ members: Member[] }>> {
    return this.cluster.memberUpdate(id, peerUrls);
  }

  memberPromote(id: bigint): Promise<WithHeader<{ members: Member[] }>> {
    return this.cluster.memberPromote(id);
  }

  // ---- maintenance ----------------------------------------------------------------------------

  status(): Promise<WithHeader<StatusResult>> {
    return this.maintenance.status();
  }

  alarm(
    action: AlarmAction,
    memberId: bigint,
    alarm: AlarmType,
  ): Promise<WithHeader<{ alarms: AlarmMember[] }>> {
    return this.maintenance.alarm(action, memberId, alarm);
  }

  defragment(): Promise<{ header: HeaderInfo }> {
    return this.maintenance.defragment();
  }

  hash(): Promise<WithHeader<{ hash: number }>> {
    return this.maintenance.hash();
  }

  hashKV(revision: number): Promise<WithHeader<{ hash: number; compactRevision: number }>> {
    return this.maintenance.hashKV(revision);
  }

  snapshot(): Promise<{ header: HeaderInfo; chunks: AsyncIterable<SnapshotChunk> }> {
    return this.maintenance.snapshot();
  }

  moveLeader(targetId: bigint): Promise<{ header: HeaderInfo }> {
    return this.maintenance.moveLeader(targetId);
  }

  /** etcd's /health: healthy when a leader is known, no alarm is raised, and a read commits. */
  health(): Promise<{ healthy: boolean; reason: string }> {
    return this.maintenance.health();
  }

  // ---- lock and election -----------------------------------------------------------------------

  lock(
    name: Uint8Array,
    lease: bigint,
    signal: AbortSignal,
    auth?: AuthInfo,
  ): Promise<WithHeader<{ key: Uint8Array }>> {
    return this.lockElection.lock(name, lease, signal, auth);
  }

  unlock(key: Uint8Array, auth?: AuthInfo): Promise<{ header: HeaderInfo }> {
    return this.lockElection.unlock(key, auth);
  }

  campaign(
    name: Uint8Array,
    lease: bigint,
    value: Uint8Array,
    signal: AbortSignal,
    auth?: AuthInfo,
  ): Promise<WithHeader<{ leader: LeaderKey }>> {
    return this.lockElection.campaign(name, lease, value, signal, auth);
  }

  proclaim(leader: LeaderKey, value: Uint8Array, auth?: AuthInfo): Promise<{ header: HeaderInfo }> {
    return this.lockElection.proclaim(leader, value, auth);
  }

  leader(name: Uint8Array, auth?: AuthInfo): Promise<WithHeader<{ kv: KeyValue }>> {
    return this.lockElection.leader(name, auth);
  }

  observe(name: Uint8Array, onLeader: (kv: KeyValue, header: HeaderInfo) => void): Disposable {
    return this.lockElection.observe(name, onLeader);
  }

  resign(leader: LeaderKey, auth?: AuthInfo): Promise<{ header: HeaderInfo }> {
    return this.lockElection.resign(leader, auth);
  }

  // ---- the node's admin routes and observations ----------------------------------------------

  /** `concordctl encryption rotate-key ID` (see node/key-rotation.ts). */
  rotateEncryptionKey(keyId: string): Promise<{ activeKeyId: string }> {
    return this.node.keyRotation.rotateEncryptionKey(keyId);
  }

  /** /concord/v1/encryption/* on the client URL; false: not one of its paths. */
  encryptionRoutes(request: IncomingMessage, response: ServerResponse, path: string): Promise<boolean> {
    return this.node.keyRotation.encryptionRoutes(request, response, path);
  }

  shardList(): WithHeader<ShardMapView> {
    return { ...this.shards.shardMap(), header: this.node.replica.header() };
  }

  /** Revisions from this member's oracle; refused (FAILED_PRECONDITION) unless it leads the metadata group. */
  async shardRevisions(count: number): Promise<{ first: number; count: number }> {
    try {
      return await this.node.oracle.allocate(count);
    } catch (error) {
      if (error instanceof OracleNotLeaderError)
        throw new ShardAdminError(grpc.status.FAILED_PRECONDITION, `concord: ${error.message}`);
      throw error;
    }
  }

  async shardSplit(key: Uint8Array): Promise<WithHeader<ShardSplitView>> {
    const split = await this.shards.split(key);
    return { ...split, header: this.node.replica.header() };
  }

  /** /concord/v1/shard/list on the client URL; false: not one of its paths. */
  shardRoutes(request: IncomingMessage, response: ServerResponse, path: string): Promise<boolean> {
    return this.shards.routes(request, response, path);
  }

  /** This member's process-level node: its storage, transport and hosted group replicas. */
  get hosting(): ConcordNode {
    return this.node;
  }

  /** The metadata group's replica (group 0) of this member. */
  get meta(): MetaReplica {
    return this.node.meta;
  }

  /** /debug/faults (only with --experimental-fault-injection); false: not served. */
  faultRoutes(request: IncomingMessage, response: ServerResponse, path: string): Promise<boolean> {
    return this.node.faultRoutes(request, response, path);
  }

  /** Fields etcd's zap logger puts on a member's lines: who it is and where its log stands. */
  logContext(): Record<string, unknown> {
    return this.node.logContext();
  }

  /** What /metrics and the dashboard read when asked: counters kept in memory, no disk scan. */
  observation(): MemberObservation {
    return this.node.observation();
  }

  debugStatus() {
    return this.node.debugStatus();
  }
}
