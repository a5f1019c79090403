// The seam between the etcd v3 API layer and whatever serves it (the server, or a test fake).
// The API layer validates requests before calling in, converts wire messages to these types,
// and maps thrown errors (see errors.ts) to etcd's gRPC statuses. Implementations are free to
// be asynchronous wherever consensus is needed.
//
// Conventions: revisions, versions and counts are `number` (int64 revisions stay far below
// 2^53); lease IDs, member IDs, cluster IDs, raft terms and indexes are `bigint` because clients
// treat them as opaque 64-bit values that must survive exactly. Ranges use etcd's encoding:
// empty rangeEnd = the single key `key`; rangeEnd = [0x00] = every key >= key; key = [0x00]
// with rangeEnd = [0x00] = every key.

import type {
  CompactionResponse,
  DeleteRangeRequest,
  DeleteRangeResponse,
  Event,
  KeyValue,
  PutRequest,
  PutResponse,
  RangeRequest,
  RangeResponse,
  TxnRequest,
  TxnResponse,
  WatchFilter,
} from '../mvcc/types.js';
import type { ShardMapView, ShardSplitView, ShardView } from '../node/shard-admin.js';
import type { HeaderInfo } from '../replica/group-replica.js';

/** The etcd release whose v3 API a member implements and reports (Status.version, /version). */
export const ETCD_API_VERSION = '3.4.23';

export type {
  Compare,
  DeleteRangeRequest,
  DeleteRangeResponse,
  Event,
  KeyValue,
  PutRequest,
  PutResponse,
  RangeRequest,
  RangeResponse,
  RequestOp,
  ResponseOp,
  TxnRequest,
  TxnResponse,
  WatchFilter,
} from '../mvcc/types.js';

export type { HeaderInfo, ShardMapView, ShardSplitView, ShardView };

/** Every answer carries the header it was served under (revision = store revision then). */
export type WithHeader<T> = T & { header: HeaderInfo };

export interface WatchCreate {
  key: Uint8Array;
  rangeEnd: Uint8Array;
  /** 0 = from the next revision on; otherwise replay history from this revision (inclusive). */
  startRevision: number;
  prevKv: boolean;
  /** Event kinds the watcher does not want (etcd's NOPUT / NODELETE); absent means none. */
  filters?: WatchFilter[];
}

/** Callbacks a backend watcher drives. Calls must be in revision order, never concurrent. */
export interface WatchListener {
  /** Events of one or more whole revisions, ascending; `revision` is the store revision they bring us to. */
  onEvents(events: Event[], revision: number): void;
  /** The watcher's start revision was compacted away; the watcher is dead after this. */
  onCompacted(compactRevision: number): void;
  /**
   * Flow control: false while the consumer cannot take more (its transport is full). A backend
   * that honours it hands out nothing until BackendWatcher.resume() and lets the watcher fall
   * behind on its side instead (bounded: the hub re-reads history later). Absent = always ready.
   */
  ready?(): boolean;
}

export interface BackendWatcher {
  /** True once the watcher has replayed history and follows live writes. */
  readonly synced: boolean;
  cancel(): void;
  /**
   * The listener is ready again after ready() answered false. Optional: a push-only backend
   * ignores flow control and the API layer's last-resort queue bound applies instead.
   */
  resume?(): void;
}

export interface LeaseGrantResult {
  id: bigint;
  ttlSeconds: number;
}

export interface LeaseTimeToLiveResult {
  id: bigint;
  /** Remaining seconds; -1 when the lease does not exist (etcd's answer, not an error). */
  ttlSeconds: number;
  grantedTtlSeconds: number;
  keys: Uint8Array[];
}

export interface Member {
  id: bigint;
  name: string;
  peerUrls: string[];
  clientUrls: string[];
  isLearner: boolean;
}

export type AlarmType = 'none' | 'nospace' | 'corrupt';
export type AlarmAction = 'get' | 'activate' | 'deactivate';

export interface AlarmMember {
  memberId: bigint;
  alarm: AlarmType;
}

export interface StatusResult {
  version: string;
  dbSizeBytes: number;
  dbSizeInUseBytes: number;
  leader: bigint;
  raftIndex: bigint;
  raftTerm: bigint;
  raftAppliedIndex: bigint;
  errors: string[];
  isLearner: boolean;
}

export interface SnapshotChunk {
  blob: Uint8Array;
  remainingBytes: number;
}

export interface LeaderKey {
  name: Uint8Array;
  key: Uint8Array;
  rev: number;
  lease: bigint;
}

/** Who a request runs as (resolved from its credentials by EtcdBackend.auth). */
export interface AuthInfo {
  username: string;
  /** The auth revision the credentials were checked at. */
  revision: number;
}

/** What a call carries to say who makes it. */
export interface Credentials {
  /** gRPC metadata `token`, or the gateway's Authorization header. */
  token?: string;
  /** The verified client certificate's common name (the API layer fills it only with --client-cert-auth). */
  commonName?: string;
}

export type PermissionType = 'READ' | 'WRITE' | 'READWRITE';

export interface Permission {
  permType: PermissionType;
  key: Uint8Array;
  rangeEnd: Uint8Array;
}

/**
 * etcd's Auth service and the permission checks the API layer makes itself (watch, maintenance,
 * membership). Every method takes the caller's AuthInfo (undefined: no credentials) and throws
 * etcd's errors.
 */
export interface AuthBackend {
  /** Throws EtcdError('invalidAuthToken') for a token this member does not accept. */
  resolve(credentials: Credentials): AuthInfo | undefined;
  enabled(): boolean;
  /** etcd's IsAdminPermitted. */
  checkAdmin(info: AuthInfo | undefined): void;
  /** etcd's IsRangePermitted (read), e.g. for a watch. */
  checkRead(info: AuthInfo | undefined, key: Uint8Array, rangeEnd: Uint8Array): void;

  authStatus(): Promise<WithHeader<{ enabled: boolean; authRevision: number }>>;
  authEnable(info: AuthInfo | undefined): Promise<{ header: HeaderInfo }>;
  authDisable(info: AuthInfo | undefined): Promise<{ header: HeaderInfo }>;
  authenticate(name: string, password: string): Promise<WithHeader<{ token: string }>>;
  userAdd(
    info: AuthInfo | undefined,
    name: string,
    password: string,
    options: { noPassword: boolean; hashedPassword: string },
  ): Promise<{ header: HeaderInfo }>;
  userGet(info: AuthInfo | undefined, name: string): Promise<WithHeader<{ roles: string[] }>>;
  userList(info: AuthInfo | undefined): Promise<WithHeader<{ users: string[] }>>;
  userDelete(info: AuthInfo | undefined, name: string): Promise<{ header: HeaderInfo }>;
  userChangePassword(
    info: AuthInfo | undefined,
    name: string,
    password: string,
    hashedPassword: string,
  ): Promise<{ header: HeaderInfo }>;
  userGrantRole(info: AuthInfo | undefined, user: string, role: string): Promise<{ header: HeaderInfo }>;
  userRevokeRole(info: AuthInfo | undefined, name: string, role: string): Promise<{ header: HeaderInfo }>;
  roleAdd(info: AuthInfo | undefined, name: string): Promise<{ header: HeaderInfo }>;
  roleGet(info: AuthInfo | undefined, role: string): Promise<WithHeader<{ permissions: Permission[] }>>;
  roleList(info: AuthInfo | undefined): Promise<WithHeader<{ roles: string[] }>>;
  roleDelete(info: AuthInfo | undefined, role: string): Promise<{ header: HeaderInfo }>;
  roleGrantPermission(
    info: AuthInfo | undefined,
    name: string,
    permission: Permission,
  ): Promise<{ header: HeaderInfo }>;
  roleRevokePermission(
    info: AuthInfo | undefined,
    role: string,
    key: Uint8Array,
    rangeEnd: Uint8Array,
  ): Promise<{ header: HeaderInfo }>;
}

export interface Disposable {
  dispose(): void;
}

export interface EtcdBackend {
  /** Header for answers that did not go through the keyspace (watch created/progress, errors). */
  header(): HeaderInfo;

  /** etcd's auth; absent: a backend without auth (answers as an etcd whose auth is disabled). */
  readonly auth?: AuthBackend;

  // The KV calls take the caller's AuthInfo: with auth enabled, reads are checked before they are
  // served and writes where they apply (the auth store may change in between, as in etcd).
  range(request: RangeRequest, auth?: AuthInfo): Promise<WithHeader<RangeResponse>>;
  put(request: PutRequest, auth?: AuthInfo): Promise<WithHeader<PutResponse>>;
  deleteRange(request: DeleteRangeRequest, auth?: AuthInfo): Promise<WithHeader<DeleteRangeResponse>>;
  txn(request: TxnRequest, auth?: AuthInfo): Promise<WithHeader<TxnResponse>>;
  compact(revision: number, physical: boolean): Promise<WithHeader<CompactionResponse>>;

  /**
   * Starts a watcher. Throws (compacted / future revision) only for errors the API must
   * report synchronously; a compacted start revision may also be reported via onCompacted.
   */
  watch(request: WatchCreate, listener: WatchListener): BackendWatcher;

  leaseGrant(ttlSeconds: number, id: bigint): Promise<WithHeader<LeaseGrantResult>>;
  /** With auth enabled, revoking needs write permission on the lease's keys (etcd's checkLeasePuts). */
  leaseRevoke(id: bigint, auth?: AuthInfo): Promise<{ header: HeaderInfo }>;
  /** Renews and returns the new TTL; ttlSeconds 0 when the lease is gone (as etcd answers). */
  leaseKeepAlive(id: bigint): Promise<WithHeader<{ id: bigint; ttlSeconds: number }>>;
  leaseTimeToLive(id: bigint, keys: boolean): Promise<WithHeader<LeaseTimeToLiveResult>>;
  leaseLeases(): Promise<WithHeader<{ ids: bigint[] }>>;

  memberList(linearizable: boolean): Promise<WithHeader<{ members: Member[] }>>;
  memberAdd(
    peerUrls: string[],
    isLearner: boolean,
  ): Promise<WithHeader<{ member: Member; members: Member[] }>>;
  memberRemove(id: bigint): Promise<WithHeader<{ members: Member[] }>>;
  memberUpdate(id: bigint, peerUrls: string[]): Promise<WithHeader<{ members: Member[] }>>;
  memberPromote(id: bigint): Promise<WithHeader<{ members: Member[] }>>;

  status(): Promise<WithHeader<StatusResult>>;
  /** Concord's shard map (concordpb.Shard/List); absent: a backend without one (Unimplemented). */
  shardList?(): WithHeader<ShardMapView>;
  /** Splits the shard holding `key` at `key` (concordpb.Shard/Split); absent: Unimplemented. */
  shardSplit?(key: Uint8Array): Promise<WithHeader<ShardSplitView>>;
  /** Revisions from the timestamp oracle on the metadata leader (concordpb.Shard/Revisions, internal). */
  shardRevisions?(count: number): Promise<{ first: number; count: number }>;
  alarm(
    action: AlarmAction,
    memberId: bigint,
    alarm: AlarmType,
  ): Promise<WithHeader<{ alarms: AlarmMember[] }>>;
  defragment(): Promise<{ header: HeaderInfo }>;
  hash(): Promise<WithHeader<{ hash: number }>>;
  hashKV(revision: number): Promise<WithHeader<{ hash: number; compactRevision: number }>>;
  /**
   * Streams a consistent snapshot in etcd's format (a bbolt file, so `etcdctl snapshot status`
   * and `restore` take it); the header is the snapshot's point in time. The API layer appends the
   * sha256 of the streamed bytes as etcd does (etcdctl finds the trailer because bbolt files are
   * whole pages: size % 512 === 32).
   */
  snapshot(): Promise<{ header: HeaderInfo; chunks: AsyncIterable<SnapshotChunk> }>;
  moveLeader(targetId: bigint): Promise<{ header: HeaderInfo }>;

  // Lock and Election run their KV requests as the caller (etcd's v3lock/v3election go through a
  // client that carries the caller's token), so the KV permissions apply.
  /** Blocks until the lock is held; the returned key's create revision is the fencing token. */
  lock(
    name: Uint8Array,
    lease: bigint,
    signal: AbortSignal,
    auth?: AuthInfo,
  ): Promise<WithHeader<{ key: Uint8Array }>>;
  unlock(key: Uint8Array, auth?: AuthInfo): Promise<{ header: HeaderInfo }>;

  /** Blocks until leadership is won. */
  campaign(
    name: Uint8Array,
    lease: bigint,
    value: Uint8Array,
    signal: AbortSignal,
    auth?: AuthInfo,
  ): Promise<WithHeader<{ leader: LeaderKey }>>;
  proclaim(leader: LeaderKey, value: Uint8Array, auth?: AuthInfo): Promise<{ header: HeaderInfo }>;
  /** Throws EtcdError('electionNoLeader') when nobody leads. */
  leader(name: Uint8Array, auth?: AuthInfo): Promise<WithHeader<{ kv: KeyValue }>>;
  /** Calls onLeader with the current leader (if any) and each later proclamation, in order. */
  observe(name: Uint8Array, onLeader: (kv: KeyValue, header: HeaderInfo) => void): Disposable;
  resign(leader: LeaderKey, auth?: AuthInfo): Promise<{ header: HeaderInfo }>;
}
