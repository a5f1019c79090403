// The Concord (etcd v3) client: endpoint balancing with health checking, per-call deadlines,
// retries only where they cannot apply a write twice, and the KV, txn, lease, watch, cluster
// and maintenance calls.

import * as grpc from '@grpc/grpc-js';
import {
  type BalancerOptions,
  type BalancerPolicyName,
  defaultHealthOptions,
  EndpointPool,
  type EndpointState,
  type HealthOptions,
} from './balancer.js';
import { type Clock, type Random, systemClock, systemRandom } from './clock.js';
import { Connection, type ServiceName, type TlsOptions } from './connection.js';
import {
  ClientClosedError,
  type ConcordError,
  DeadlineExceededError,
  fromGrpcError,
  isEndpointFailure,
  UnauthenticatedError,
} from './errors.js';
import { type KeepAliveOptions, LeaseKeepAlive } from './lease.js';
import {
  type Compare,
  type DeleteOptions,
  type DeleteResult,
  deleteRequest,
  type GetOptions,
  type GetResult,
  isReadOnly,
  type Operation,
  type PutOptions,
  type PutResult,
  putRequest,
  rangeRequest,
  type TxnResult,
  toDeleteResult,
  toGetResult,
  toPutResult,
  toTxnResult,
  txnRequest,
} from './ops.js';
import { type Bytes, big, type ResponseHeader, toBuffer, toHeader, type WireHeader } from './types.js';
import { Watcher, type WatchOptions } from './watch.js';

export interface RetryOptions {
  /** Attempts per call, the first included. */
  attemptsMax: number;
  backoffBaseMs: number;
  backoffMaxMs: number;
}

export interface AuthOptions {
  username: string;
  password: string;
}

export interface ClientOptions {
  endpoints: string[];
  balancer?: BalancerPolicyName | BalancerOptions;
  /** How long a call waits for a connection to an endpoint before trying another. */
  dialTimeoutMs?: number;
  /** Deadline of every call, retries included, unless the call passes its own. */
  requestTimeoutMs?: number;
  retry?: Partial<RetryOptions>;
  health?: Partial<HealthOptions>;
  tls?: TlsOptions;
  auth?: AuthOptions;
  /** How often the leader is looked up (Maintenance.Status); 0 turns it off. */
  leaderRefreshMs?: number;
  /** How often ejected endpoints are checked for due probes. */
  probeIntervalMs?: number;
  clock?: Clock;
  random?: Random;
}

export interface CallOptions {
  /** Safe to repeat (reads, or a write whose duplicate is harmless). */
  idempotent: boolean;
  /** Key for key-affinity balancing. */
  key?: Uint8Array;
  /** Send to the leader when known (writes: saves the follower's forward hop). */
  preferLeader?: boolean;
  /** Pin the call to one endpoint (no failover). */
  endpoint?: string;
  timeoutMs?: number;
}

export const defaultRetryOptions: RetryOptions = { attemptsMax: 6, backoffBaseMs: 25, backoffMaxMs: 1000 };

/** Per-attempt share of the deadline for idempotent calls, so one hung endpoint can't use it all. */
const idempotentAttemptMinMs = 500;
const leaderProbeTimeoutMs = 1000;

export interface Member {
  id: bigint;
  name: string;
  peerUrls: string[];
  clientUrls: string[];
  isLearner: boolean;
}

export interface EndpointStatus {
  endpoint: string;
  header: ResponseHeader;
  version: string;
  dbSize: bigint;
  dbSizeInUse: bigint;
  leader: bigint;
  raftIndex: bigint;
  raftTerm: bigint;
  raftAppliedIndex: bigint;
  errors: string[];
  isLearner: boolean;
}

export interface LeaseTimeToLive {
  header: ResponseHeader;
  id: bigint;
  /** Remaining seconds; -1 when the lease does not exist (expired or revoked). */
  ttl: bigint;
  grantedTtl: bigint;
  keys: Buffer[];
}

export interface Alarm {
  memberId: bigint;
  alarm: 'NONE' | 'NOSPACE' | 'CORRUPT';
}

interface WireMember {
  ID: string;
  name: string;
  peerURLs: string[];
  clientURLs: string[];
  isLearner: boolean;
}

function toMember(m: WireMember): Member {
  return {
    id: big(m.ID),
    name: m.name,
    peerUrls: m.peerURLs ?? [],
    clientUrls: m.clientURLs ?? [],
    isLearner: m.isLearner,
  };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export class Client {
  readonly pool: EndpointPool;
  readonly requestTimeoutMs: number;
  readonly dialTimeoutMs: number;
  private readonly retry: RetryOptions;
  private readonly connections = new Map<string, Connection>();
  private readonly clock: Clock;
  private readonly random: Random;
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly owned = new Set<{ close(): void }>();
  private token: string | undefined;
  private leaderRefresh: Promise<void> | undefined;
  private probing = false;
  private closedFlag = false;

  constructor(private readonly options: ClientOptions) {
    const balancer: BalancerOptions =
      typeof options.balancer === 'string'
        ? { policy: options.balancer }
        : (options.balancer ?? { policy: 'round-robin' });
    this.clock = options.clock ?? systemClock;
    this.random = options.random ?? systemRandom;
    const health = { ...defaultHealthOptions, ...options.health };
    this.pool = new EndpointPool(options.endpoints, balancer, health, this.clock, this.random);
    this.requestTimeoutMs = options.requestTimeoutMs ?? 5000;
    this.dialTimeoutMs = options.dialTimeoutMs ?? 2000;
    this.retry = { ...defaultRetryOptions, ...options.retry };
    if (this.retry.attemptsMax < 1) throw new RangeError('retry.attemptsMax must be >= 1');
    for (const endpoint of options.endpoints)
      this.connections.set(endpoint, new Connection(endpoint, options.tls));
    this.startTimers(options);
  }

  get closed(): boolean {
    return this.closedFlag;
  }

  private startTimers(options: ClientOptions): void {
    const probeMs = options.probeIntervalMs ?? 500;
    const probe = setInterval(() => void this.probeEjected(), probeMs);
    probe.unref();
    this.timers.push(probe);
    const leaderMs = options.leaderRefreshMs ?? 10_000;
    if (leaderMs > 0 && options.endpoints.length > 1) {
      const refresh = setInterval(() => void this.refreshLeader(), leaderMs);
      refresh.unref();
      this.timers.push(refresh);
      void this.refreshLeader();
    }
  }

  // ---- call machinery ----------------------------------------------------------------------------

  connection(endpoint: string): Connection {
    const connection = this.connections.get(endpoint);
    if (connection === undefined) throw new Error(`unknown endpoint ${endpoint}`);
    return connection;
  }

  async metadata(): Promise<grpc.Metadata> {
    const metadata = new grpc.Metadata();
    if (this.options.auth !== undefined) {
      if (this.token === undefined) this.token = await this.authenticate(this.options.auth);
      metadata.set('token', this.token);
    }
    return metadata;
  }

  private async authenticate(auth: AuthOptions): Promise<string> {
    const endpoint = this.pool.pick();
    const deadline = this.clock.nowMs() + this.requestTimeoutMs;
    await this.connection(endpoint.address).ready(
      Math.min(deadline, this.clock.nowMs() + this.dialTimeoutMs),
    );
    const response = (await this.connection(endpoint.address)
      .unary(
        'Auth',
        'Authenticate',
        { name: auth.username, password: auth.password },
        new grpc.Metadata(),
        deadline,
      )
      .catch((error: unknown) => {
        throw fromGrpcError(error);
      })) as { token: string };
    return response.token;
  }

  /** Full-jitter exponential backoff for retry number `attempt` (1-based). */
  backoffMs(attempt: number): number {
    const ceiling = Math.min(
      this.retry.backoffMaxMs,
      this.retry.backoffBaseMs * 2 ** Math.min(attempt - 1, 20),
    );
    return Math.floor(this.random() * ceiling);
  }

  private chooseEndpoint(options: CallOptions, tried: Set<string>): EndpointState {
    if (options.endpoint !== undefined) {
      const pinned = this.pool.endpoints.find((e) => e.address === options.endpoint);
      if (pinned === undefined) throw new Error(`unknown endpoint ${options.endpoint}`);
      return pinned;
    }
    if (tried.size >= this.pool.endpoints.length) tried.clear();
    if (options.preferLeader === true) {
      const leader = this.pool.leader(tried);
      if (leader !== undefined) return leader;
    }
    return this.pool.pick(options.key, tried);
  }

  /** Whether a failed attempt may be repeated without risking a second application. */
  private retryable(error: ConcordError, options: CallOptions): boolean {
    const transient =
      error.code === 'unavailable' ||
      error.code === 'no-leader' ||
      error.code === 'deadline-exceeded' ||
      (error.code === 'resource-exhausted' && error.etcdMessage === 'etcdserver: too many requests');
    if (!transient) return false;
    return options.idempotent || error.outcome === 'not-applied';
  }

  /** One unary call with failover and retries, under one deadline. */
  async call<Res extends object>(
    service: ServiceName,
    method: string,
    request: object,
    options: CallOptions,
  ): Promise<Res> {
    if (this.closedFlag) throw new ClientClosedError();
    const timeoutMs = options.timeoutMs ?? this.requestTimeoutMs;
    const deadline = this.clock.nowMs() + timeoutMs;
    const tried = new Set<string>();
    let authRetried = false;
    for (let attempt = 1; ; attempt++) {
      const endpoint = this.chooseEndpoint(options, tried);
      try {
        return (await this.attempt(endpoint, service, method, request, options, deadline, timeoutMs)) as Res;
      } catch (raw) {
        const error = fromGrpcError(raw);
        if (error instanceof UnauthenticatedError && this.options.auth !== undefined && !authRetried) {
          authRetried = true;
          this.token = undefined;
          continue;
        }
        if (isEndpointFailure(error)) {
          tried.add(endpoint.address);
          if (service !== 'Maintenance') this.noteWriteFailure(options);
        }
        const pauseMs = this.backoffMs(attempt);
        const timeLeft = deadline - this.clock.nowMs() > pauseMs + 10;
        if (
          this.closedFlag ||
          !this.retryable(error, options) ||
          attempt >= this.retry.attemptsMax ||
          !timeLeft
        ) {
          throw error;
        }
        await sleep(pauseMs);
      }
    }
  }

  private noteWriteFailure(options: CallOptions): void {
    if (options.preferLeader === true) {
      this.pool.forgetLeader();
      void this.refreshLeader();
    }
  }

  private async attempt(
    endpoint: EndpointState,
    service: ServiceName,
    method: string,
    request: object,
    options: CallOptions,
    deadline: number,
    timeoutMs: number,
  ): Promise<object> {
    const connection = this.connection(endpoint.address);
    const now = this.clock.nowMs();
    const attemptDeadline = options.idempotent
      ? Math.min(deadline, now + Math.max(idempotentAttemptMinMs, Math.floor(timeoutMs / 3)))
      : deadline;
    endpoint.outstanding++;
    try {
      await connection.ready(Math.min(attemptDeadline, now + this.dialTimeoutMs));
      const metadata = await this.metadata();
      const response = await connection.unary(service, method, request, metadata, attemptDeadline);
      this.pool.recordSuccess(endpoint);
      return response;
    } catch (raw) {
      const error = fromGrpcError(raw);
      if (isEndpointFailure(error)) this.pool.recordFailure(endpoint);
      if (error.code === 'deadline-exceeded' && this.clock.nowMs() < deadline) {
        throw new DeadlineExceededError(`attempt on ${endpoint.address} timed out: ${error.message}`);
      }
      throw error;
    } finally {
      endpoint.outstanding--;
    }
  }

  /** Looks up which endpoint is the leader (Status on every endpoint, in parallel). */
  refreshLeader(): Promise<void> {
    if (this.leaderRefresh !== undefined) return this.leaderRefresh;
    this.leaderRefresh = (async () => {
      const leaders = new Map<string, number>();
      await Promise.all(
        this.pool.endpoints.map(async (endpoint) => {
          const status = await this.status(endpoint.address, leaderProbeTimeoutMs).catch(() => undefined);
          if (status === undefined) return;
          endpoint.memberId = status.header.memberId.toString();
          if (status.leader !== 0n)
            leaders.set(status.leader.toString(), (leaders.get(status.leader.toString()) ?? 0) + 1);
        }),
      );
      const [best] = [...leaders.entries()].sort((a, b) => b[1] - a[1]);
      if (best !== undefined) this.pool.setLeaderByMemberId(best[0]);
    })().finally(() => {
      this.leaderRefresh = undefined;
    });
    return this.leaderRefresh;
  }

  private async probeEjected(): Promise<void> {
    if (this.probing) return;
    this.probing = true;
    try {
      await this.probeDue();
    } finally {
      this.probing = false;
    }
  }

  private async probeDue(): Promise<void> {
    for (const endpoint of this.pool.dueForProbe()) {
      // Answering Status at all is the re-admission test: the member is up and serving gRPC.
      const healthy = await this.status(endpoint.address, leaderProbeTimeoutMs).then(
        () => true,
        () => false,
      );
      if (!this.closedFlag) this.pool.recordProbe(endpoint, healthy);
    }
  }

  // ---- KV ----------------------------------------------------------------------------------------

  async get(key: Bytes, options: GetOptions = {}): Promise<GetResult> {
    const wire = await this.call<object>('KV', 'Range', rangeRequest(key, options), {
      idempotent: true,
      key: toBuffer(key),
    });
    return toGetResult(wire);
  }

  /** The value of one key as UTF-8, or undefined when it does not exist. */
  async getString(key: Bytes, options: GetOptions = {}): Promise<string | undefined> {
    const result = await this.get(key, options);
    return result.kvs[0]?.value.toString('utf8');
  }

  async put(key: Bytes, value: Bytes, options: PutOptions = {}): Promise<PutResult> {
    const wire = await this.call<object>('KV', 'Put', putRequest(key, value, options), {
      idempotent: false,
      preferLeader: true,
      key: toBuffer(key),
    });
    return toPutResult(wire);
  }

  async delete(key: Bytes, options: DeleteOptions = {}): Promise<DeleteResult> {
    const wire = await this.call<object>('KV', 'DeleteRange', deleteRequest(key, options), {
      idempotent: false,
      preferLeader: true,
      key: toBuffer(key),
    });
    return toDeleteResult(wire);
  }

  txn(): TxnBuilder {
    return new TxnBuilder(this);
  }

  async commitTxn(
    compares: readonly Compare[],
    success: readonly Operation[],
    failure: readonly Operation[],
  ): Promise<TxnResult> {
    const readOnly = isReadOnly(success) && isReadOnly(failure);
    const first = compares[0]?.key ?? (success[0] === undefined ? undefined : toBuffer(success[0].key));
    const wire = await this.call<object>('KV', 'Txn', txnRequest(compares, success, failure), {
      idempotent: readOnly,
      preferLeader: !readOnly,
      key: first,
    });
    return toTxnResult(wire);
  }

  /**
   * Puts `key` only while the caller still holds the lock whose key is `lockKey` with fencing
   * token `token` (the lock key's create revision). A holder that lost its lock (lease expired,
   * someone else got it) cannot overwrite newer data:
   *
   *   const lock = await new Mutex(client, 'jobs/lock').lock();
   *   const applied = await client.guardedPut('jobs/state', 'done', { lockKey: lock.key, token: lock.token });
   *   if (!applied) throw new Error('lost the lock; state not written');
   */
  async guardedPut(
    key: Bytes,
    value: Bytes,
    guard: { lockKey: Bytes; token: bigint },
    options: PutOptions = {},
  ): Promise<boolean> {
    const result = await this.txn()
      .if({ key: toBuffer(guard.lockKey), target: 'createRevision', operator: '=', operand: guard.token })
      .then({ type: 'put', key, value, options })
      .commit();
    return result.succeeded;
  }

  async compact(revision: bigint | number, options: { physical?: boolean } = {}): Promise<ResponseHeader> {
    const wire = await this.call<{ header?: WireHeader }>(
      'KV',
      'Compact',
      { revision: BigInt(revision).toString(), physical: options.physical ?? false },
      // Compacting to the same revision twice is harmless (the second says "already compacted").
      { idempotent: true, preferLeader: true },
    );
    return toHeader(wire.header);
  }

  // ---- watch -------------------------------------------------------------------------------------

  /** Events on `key` (or a prefix/range) as an async iterator; see Watcher for the guarantees. */
  watch(key: Bytes, options: WatchOptions = {}): Watcher {
    if (this.closedFlag) throw new ClientClosedError();
    const watcher = new Watcher(this, key, options);
    this.own(watcher);
    return watcher;
  }

  // ---- leases ------------------------------------------------------------------------------------

  async leaseGrant(
    ttlSeconds: number,
    id: bigint = 0n,
  ): Promise<{ id: bigint; ttl: bigint; header: ResponseHeader }> {
    const wire = await this.call<{ ID: string; TTL: string; error: string; header?: WireHeader }>(
      'Lease',
      'LeaseGrant',
      { TTL: String(ttlSeconds), ID: id.toString() },
      // A grant retried after an unknown outcome leaves at most an unused lease that expires.
      { idempotent: true, preferLeader: true },
    );
    if (wire.error) throw new Error(wire.error);
    return { id: big(wire.ID), ttl: big(wire.TTL), header: toHeader(wire.header) };
  }

  async leaseRevoke(id: bigint): Promise<ResponseHeader> {
    const wire = await this.call<{ header?: WireHeader }>(
      'Lease',
      'LeaseRevoke',
      { ID: id.toString() },
      { idempotent: true, preferLeader: true },
    );
    return toHeader(wire.header);
  }

  async leaseTimeToLive(id: bigint, options: { keys?: boolean } = {}): Promise<LeaseTimeToLive> {
    const wire = await this.call<{
      header?: WireHeader;
      ID: string;
      TTL: string;
      grantedTTL: string;
      keys: Buffer[];
    }>('Lease', 'LeaseTimeToLive', { ID: id.toString(), keys: options.keys ?? false }, { idempotent: true });
    return {
      header: toHeader(wire.header),
      id: big(wire.ID),
      ttl: big(wire.TTL),
      grantedTtl: big(wire.grantedTTL),
      keys: wire.keys ?? [],
    };
  }

  async leaseLeases(): Promise<{ header: ResponseHeader; ids: bigint[] }> {
    const wire = await this.call<{ header?: WireHeader; leases?: { ID: string }[] }>(
      'Lease',
      'LeaseLeases',
      {},
      { idempotent: true },
    );
    return { header: toHeader(wire.header), ids: (wire.leases ?? []).map((l) => big(l.ID)) };
  }

  /** Keeps `id` alive (renewal every TTL/3) until close(); `onLoss` fires once if it is lost. */
  keepAlive(id: bigint, options: KeepAliveOptions = {}): LeaseKeepAlive {
    if (this.closedFlag) throw new ClientClosedError();
    const keeper = new LeaseKeepAlive(this, id, options);
    this.own(keeper);
    return keeper;
  }

  /** Grants a lease and keeps it alive: the usual session of a lock or registration. */
  async lease(ttlSeconds: number, options: KeepAliveOptions = {}): Promise<LeaseKeepAlive> {
    const granted = await this.leaseGrant(ttlSeconds);
    return this.keepAlive(granted.id, { ttlSeconds: Number(granted.ttl), ...options });
  }

  // ---- cluster -----------------------------------------------------------------------------------

  async memberList(
    options: { linearizable?: boolean } = {},
  ): Promise<{ header: ResponseHeader; members: Member[] }> {
    const wire = await this.call<{ header?: WireHeader; members: WireMember[] }>(
      'Cluster',
      'MemberList',
      { linearizable: options.linearizable ?? false },
      { idempotent: true },
    );
    return { header: toHeader(wire.header), members: (wire.members ?? []).map(toMember) };
  }

  async memberAdd(
    peerUrls: string[],
    options: { learner?: boolean } = {},
  ): Promise<{ header: ResponseHeader; member: Member; members: Member[] }> {
    const wire = await this.call<{ header?: WireHeader; member: WireMember; members: WireMember[] }>(
      'Cluster',
      'MemberAdd',
      { peerURLs: peerUrls, isLearner: options.learner ?? false },
      { idempotent: false, preferLeader: true },
    );
    return {
      header: toHeader(wire.header),
      member: toMember(wire.member),
      members: (wire.members ?? []).map(toMember),
    };
  }

  async memberRemove(id: bigint): Promise<{ header: ResponseHeader; members: Member[] }> {
    return this.memberChange('MemberRemove', { ID: id.toString() });
  }

  async memberUpdate(id: bigint, peerUrls: string[]): Promise<{ header: ResponseHeader; members: Member[] }> {
    return this.memberChange('MemberUpdate', { ID: id.toString(), peerURLs: peerUrls });
  }

  async memberPromote(id: bigint): Promise<{ header: ResponseHeader; members: Member[] }> {
    return this.memberChange('MemberPromote', { ID: id.toString() });
  }

  private async memberChange(
    method: string,
    request: object,
  ): Promise<{ header: ResponseHeader; members: Member[] }> {
    const wire = await this.call<{ header?: WireHeader; members: WireMember[] }>('Cluster', method, request, {
      idempotent: false,
      preferLeader: true,
    });
    return { header: toHeader(wire.header), members: (wire.members ?? []).map(toMember) };
  }

  // ---- maintenance -------------------------------------------------------------------------------

  async status(endpoint: string, timeoutMs?: number): Promise<EndpointStatus> {
    const wire = await this.call<Record<string, unknown>>(
      'Maintenance',
      'Status',
      {},
      {
        idempotent: true,
        endpoint,
        timeoutMs,
      },
    );
    const w = wire as {
      header?: WireHeader;
      version: string;
      dbSize: string;
      dbSizeInUse: string;
      leader: string;
      raftIndex: string;
      raftTerm: string;
      raftAppliedIndex: string;
      errors: string[];
      isLearner: boolean;
    };
    return {
      endpoint,
      header: toHeader(w.header),
      version: w.version,
      dbSize: big(w.dbSize),
      dbSizeInUse: big(w.dbSizeInUse),
      leader: big(w.leader),
      raftIndex: big(w.raftIndex),
      raftTerm: big(w.raftTerm),
      raftAppliedIndex: big(w.raftAppliedIndex),
      errors: w.errors ?? [],
      isLearner: w.isLearner ?? false,
    };
  }

  async hashKv(
    endpoint: string,
    revision: bigint = 0n,
  ): Promise<{ header: ResponseHeader; hash: number; compactRevision: bigint }> {
    const wire = await this.call<{ header?: WireHeader; hash: number; compact_revision: string }>(
      'Maintenance',
      'HashKV',
      { revision: revision.toString() },
      { idempotent: true, endpoint },
    );
    return { header: toHeader(wire.header), hash: wire.hash, compactRevision: big(wire.compact_revision) };
  }

  async defragment(endpoint: string, timeoutMs?: number): Promise<ResponseHeader> {
    const wire = await this.call<{ header?: WireHeader }>(
      'Maintenance',
      'Defragment',
      {},
      { idempotent: true, endpoint, timeoutMs },
    );
    return toHeader(wire.header);
  }

  async alarms(
    action: 'GET' | 'DEACTIVATE',
    alarm?: Alarm,
  ): Promise<{ header: ResponseHeader; alarms: Alarm[] }> {
    const wire = await this.call<{
      header?: WireHeader;
      alarms?: { memberID: string; alarm: Alarm['alarm'] }[];
    }>(
      'Maintenance',
      'Alarm',
      { action, memberID: (alarm?.memberId ?? 0n).toString(), alarm: alarm?.alarm ?? 'NONE' },
      { idempotent: true, preferLeader: action !== 'GET' },
    );
    return {
      header: toHeader(wire.header),
      alarms: (wire.alarms ?? []).map((a) => ({ memberId: big(a.memberID), alarm: a.alarm })),
    };
  }

  async moveLeader(targetId: bigint): Promise<ResponseHeader> {
    await this.refreshLeader();
    const leader = this.pool.leader();
    if (leader === undefined)
      throw fromGrpcError({ code: grpc.status.UNAVAILABLE, details: 'etcdserver: no leader', message: '' });
    const wire = await this.call<{ header?: WireHeader }>(
      'Maintenance',
      'MoveLeader',
      { targetID: targetId.toString() },
      { idempotent: false, endpoint: leader.address },
    );
    return toHeader(wire.header);
  }

  /**
   * Streams a snapshot of one endpoint's backend (etcd's bbolt format), chunk by chunk with the
   * bytes still to come; the stream fails when no chunk arrives for the request timeout.
   */
  async *snapshot(endpoint: string): AsyncGenerator<{ blob: Buffer; remainingBytes: bigint }> {
    const connection = this.connection(endpoint);
    await connection.ready(this.clock.nowMs() + this.dialTimeoutMs).catch((error: unknown) => {
      throw fromGrpcError(error);
    });
    const stream = connection.serverStream('Maintenance', 'Snapshot', {}, await this.metadata());
    // A snapshot may take longer than any request deadline, so the deadline is on silence: the
    // stream fails when no chunk arrives for requestTimeoutMs.
    let stalled = false;
    let idle: NodeJS.Timeout | undefined;
    const arm = () => {
      clearTimeout(idle);
      idle = setTimeout(() => {
        stalled = true;
        stream.cancel();
      }, this.requestTimeoutMs);
    };
    arm();
    try {
      for await (const message of stream as AsyncIterable<{ blob: Buffer; remaining_bytes: string }>) {
        arm();
        yield { blob: message.blob, remainingBytes: big(message.remaining_bytes) };
      }
    } catch (error) {
      if (stalled)
        throw new DeadlineExceededError(`snapshot from ${endpoint}: no data for ${this.requestTimeoutMs} ms`);
      throw fromGrpcError(error);
    } finally {
      clearTimeout(idle);
      stream.cancel();
    }
  }

  // ---- lifetime ----------------------------------------------------------------------------------

  own(resource: { close(): void }): void {
    this.owned.add(resource);
  }

  disown(resource: { close(): void }): void {
    this.owned.delete(resource);
  }

  /** Stops every watcher and keep-alive this client started, then closes the channels. */
  close(): void {
    if (this.closedFlag) return;
    this.closedFlag = true;
    for (const timer of this.timers) clearInterval(timer);
    for (const resource of [...this.owned]) resource.close();
    this.owned.clear();
    for (const connection of this.connections.values()) connection.close();
  }
}

export class TxnBuilder {
  private readonly compares: Compare[] = [];
  private readonly success: Operation[] = [];
  private readonly failure: Operation[] = [];
  private stage: 'if' | 'then' | 'else' = 'if';

  constructor(private readonly client: Client) {}

  if(...compares: Compare[]): this {
    if (this.stage !== 'if') throw new Error('txn: if() must come before then() and else()');
    this.compares.push(...compares);
    return this;
  }

  // The brief's etcd-style chain needs a method named `then`. Since that makes the builder a
  // thenable, awaiting it (by mistake or on purpose) commits it instead of passing the
  // resolve/reject callbacks in as operations.
  // biome-ignore lint/suspicious/noThenProperty: etcd's txn().If().Then().Else() chain
  then(...operations: Operation[]): this {
    const [first, second] = operations as unknown[];
    if (typeof first === 'function') {
      this.commit().then(first as (r: TxnResult) => void, second as (e: unknown) => void);
      return this;
    }
    if (this.stage === 'else') throw new Error('txn: then() must come before else()');
    this.stage = 'then';
    this.success.push(...operations);
    return this;
  }

  else(...operations: Operation[]): this {
    this.stage = 'else';
    this.failure.push(...operations);
    return this;
  }

  commit(): Promise<TxnResult> {
    return this.client.commitTxn(this.compares, this.success, this.failure);
  }
}
