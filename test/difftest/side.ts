// One side of a differential run: a cluster (etcd or Concord), a raw connection per member, and
// what the side has learned from its own answers (newest revision, lease IDs, watch IDs). Each
// operation is executed here and comes back normalised, ready to compare with the other side.

import * as grpc from '@grpc/grpc-js';
import type { ProcessCluster } from '../support/process-cluster.js';
import { type AuthStep, authSetup, rootLogin, userLogin } from './auth.js';
import { watchStreamTargets } from './generate.js';
import {
  normaliseEvent,
  normaliseResponse,
  normaliseWatchControl,
  type SideIdentity,
  type WireObject,
} from './normalise.js';
import {
  type AlarmMember,
  isWrite,
  type LeaseSpec,
  type OpSpec,
  type RevisionSpec,
  type Target,
} from './ops.js';
import {
  decodeResponse,
  encodeRequest,
  grpcPath,
  type Resolver,
  unaryRequest,
  watchCreateRequest,
} from './requests.js';
import { WireConnection } from './wire-client.js';

const unaryTimeoutMs = 15_000;
const syncTimeoutMs = 15_000;
const syncPollMs = 5;
const streamAnswerTimeoutMs = 10_000;
/** How long a raw stream message may go unanswered before "no answer" is its answer. */
const rawStreamQuietMs = 1500;
/** A member ID no member has, for alarm requests about an unknown member. */
const unknownMemberId = '12345';
/** The lease ID used for a lease label whose grant gave none (failed, or removed by shrinking). */
const missingLeaseId = '777777';

export type Outcome = { ok: unknown } | { error: { code: number; message: string } };

/** Who a request runs as once auth is on (see auth.ts). */
export type Principal = 'user' | 'root';

/**
 * Applied to each normalised watch event of one side before it is logged (undefined drops it);
 * the tests use it to show that a changed or missing event is caught.
 */
export type EventRewrite = (event: unknown) => unknown;

interface WatcherLog {
  /** Created response, events, cancel: in arrival order. */
  items: unknown[];
}

/** A Watch stream of one side: its watchers' logs and the stream-level answers. */
class WatchStream {
  readonly pendingCreates: { label: number; resolve: (created: unknown) => void }[] = [];
  readonly idToLabel = new Map<string, number>();
  readonly labelToId = new Map<number, string>();
  readonly logs = new Map<number, WatcherLog>();
  /** Progress answers and answers for no known watcher, in arrival order. */
  readonly control: unknown[] = [];
  readonly progressWaiters: (() => void)[] = [];
  ended: unknown;

  constructor(
    readonly call: grpc.ClientDuplexStream<Buffer, Buffer>,
    private readonly identity: SideIdentity,
    private readonly rewrite: EventRewrite,
  ) {
    call.on('data', (bytes: Buffer) => this.onResponse(decodeResponse('etcdserverpb.Watch/Watch', bytes)));
    call.on('error', (error: grpc.ServiceError) => {
      this.ended = { code: error.code, message: error.details };
    });
    call.on('end', () => {
      this.ended ??= 'end';
    });
  }

  log(label: number): WatcherLog {
    let log = this.logs.get(label);
    if (log === undefined) {
      log = { items: [] };
      this.logs.set(label, log);
    }
    return log;
  }

  private onResponse(r: WireObject): void {
    const watchId = String(r.watch_id);
    const events = Array.isArray(r.events) ? (r.events as WireObject[]) : [];
    if (r.created === true) {
      const pending = this.pendingCreates.shift();
      const created = normaliseWatchControl(r, this.identity, true);
      if (pending === undefined) {
        this.control.push({ unexpectedCreated: created });
        return;
      }
      this.log(pending.label).items.push(created);
      if (r.canceled !== true) {
        this.idToLabel.set(watchId, pending.label);
        this.labelToId.set(pending.label, watchId);
      }
      pending.resolve(created);
      return;
    }
    if (isProgressAnswer(r, events)) {
      this.control.push({ progress: normaliseWatchControl(r, this.identity, true) });
      this.progressWaiters.shift()?.();
      return;
    }
    const label = this.idToLabel.get(watchId);
    if (label === undefined) {
      this.control.push({ orphan: normaliseWatchControl(r, this.identity, true) });
      return;
    }
    const log = this.log(label);
    for (const event of events) {
      const logged = this.rewrite(normaliseEvent(event, this.identity));
      if (logged !== undefined) log.items.push(logged);
    }
    if (r.canceled === true || Number(r.compact_revision) !== 0) {
      log.items.push(normaliseWatchControl({ ...r, events: [] }, this.identity, true));
      // A compacted watcher keeps its ID until it is canceled (its cancel is answered).
      if (r.canceled === true && Number(r.compact_revision) === 0) this.idToLabel.delete(watchId);
    }
    // A response with no events that neither cancels nor compacts is a timer's progress
    // notification (watch-progress-timer): dropped.
  }
}

/**
 * An answer to a progress request: watch ID -1, no events, neither created, canceled nor
 * compacted. A watcher may have the client-chosen ID -1 too, but its own event-less answers of
 * that shape are timer progress notifications, which are dropped anyway (watch-progress-timer).
 */
function isProgressAnswer(r: WireObject, events: readonly unknown[]): boolean {
  return (
    String(r.watch_id) === '-1' &&
    events.length === 0 &&
    r.canceled !== true &&
    r.created !== true &&
    Number(r.compact_revision ?? 0) === 0
  );
}

export interface SideMember {
  role: Target;
  index: number;
  name: string;
  memberId: string;
  clientUrl: string;
  peerUrl: string;
}

/** Whether a write's answer shows a key deleted (a lease revocation may delete its keys). */
function deletedSomething(method: string, response: WireObject): boolean {
  if (method === 'etcdserverpb.Lease/LeaseRevoke') return true;
  if (method === 'etcdserverpb.KV/DeleteRange') return Number(response.deleted ?? 0) > 0;
  if (method !== 'etcdserverpb.KV/Txn') return false;
  const responses = Array.isArray(response.responses) ? (response.responses as WireObject[]) : [];
  return responses.some((op) => {
    if (op.response_delete_range) return Number((op.response_delete_range as WireObject).deleted ?? 0) > 0;
    if (op.response_txn) return deletedSomething(method, op.response_txn as WireObject);
    return false;
  });
}

export class Side implements Resolver, SideIdentity {
  newestRevision = 1;
  /** Whether a compaction succeeded (etcd's compact revision is -1 until then). */
  private everCompacted = false;
  /** The revision of the latest compaction that succeeded. */
  private compactRevision = 0;
  /** Revisions whose write deleted a key (or may have: lease revocations), i.e. left a tombstone. */
  private readonly tombstoneRevisions = new Set<number>();
  private readonly leaseIds = new Map<number, string>();
  private readonly serverLeaseNames = new Map<string, string>();
  private readonly connections = new Map<Target, WireConnection>();
  private readonly streams = new Map<number, WatchStream>();
  /** Members known to have applied everything this side has written. */
  private synced = new Set<Target>(['follower', 'follower2', 'leader']);
  /** The member that answered the latest write. */
  private lastWriter: Target = 'follower';
  eventRewrite: EventRewrite = (event) => event;
  /** Tokens once auth is on: generated operations run as the user, the runner's own reads as root. */
  private readonly tokens = new Map<Principal, string>();

  private constructor(
    readonly label: string,
    readonly members: Map<Target, SideMember>,
  ) {
    for (const [role, member] of members) {
      this.connections.set(role, new WireConnection(member.clientUrl.replace(/^https?:\/\//, '')));
    }
  }

  /** Roles are taken from the cluster's current leader: leader, then followers by index. */
  static async attach(cluster: ProcessCluster): Promise<Side> {
    const leader = await cluster.leaderIndex();
    const followers = cluster.runningIndexes().filter((i) => i !== leader);
    const roles: [Target, number | undefined][] = [
      ['leader', leader],
      ['follower', followers[0] ?? leader],
      ['follower2', followers[1] ?? followers[0] ?? leader],
    ];
    const members = new Map<Target, SideMember>();
    for (const [role, index] of roles) {
      const m = cluster.member(index!);
      members.set(role, {
        role,
        index: index!,
        name: m.name,
        memberId: m.memberId,
        clientUrl: m.clientUrl,
        peerUrl: m.peerUrl,
      });
    }
    return new Side(cluster.label, members);
  }

  close(): void {
    for (const stream of this.streams.values()) stream.call.cancel();
    for (const connection of this.connections.values()) connection.close();
  }

  // ---- SideIdentity --------------------------------------------------------------------------

  memberRole(id: string): string {
    if (id === '0') return '0';
    const roles = [...this.members.values()].filter((m) => m.memberId === id).map((m) => m.role);
    return roles.length === 0 ? `unknown member ${id}` : roles.sort().join('|');
  }

  nameRole(name: string): string {
    const roles = [...this.members.values()].filter((m) => m.name === name).map((m) => m.role);
    return roles.length === 0 ? name : roles.sort().join('|');
  }

  urlRole(url: string): string {
    for (const m of this.members.values()) {
      if (m.clientUrl === url) return `${m.role} client`;
      if (m.peerUrl === url) return `${m.role} peer`;
    }
    return url;
  }

  leaseName(id: string): string {
    return this.serverLeaseNames.get(id) ?? id;
  }

  serverChosenLeases(): boolean {
    return this.serverLeaseNames.size > 0;
  }

  // ---- Resolver ------------------------------------------------------------------------------

  revision(spec: RevisionSpec): string {
    return String(typeof spec === 'number' ? spec : this.newestRevision + spec.rel);
  }

  /**
   * etcd replays history to every watcher that is behind in one pass from the smallest start
   * revision among them; a start of -1 on a store never compacted (not below its compact
   * revision, so not compacted) makes that pass read nothing, and the other watchers created in
   * the same 100 ms lose their replay too. Such a start becomes -2 (compacted, as etcd answers);
   * see avoidedEtcdBehaviours. A start at exactly the compact revision, when that revision deleted
   * a key, becomes the one after it: etcd 3.4 loses that tombstone (watch-start-at-compact-revision).
   */
  watchStartRevision(spec: RevisionSpec): string {
    const start = this.revision(spec);
    if (start === '-1' && !this.everCompacted) return '-2';
    if (
      this.everCompacted &&
      Number(start) === this.compactRevision &&
      this.tombstoneRevisions.has(this.compactRevision)
    )
      return String(this.compactRevision + 1);
    return start;
  }

  lease(spec: LeaseSpec): string {
    if ('id' in spec) return spec.id;
    return this.leaseIds.get(spec.grant) ?? missingLeaseId;
  }

  alarmMember(member: AlarmMember): string {
    if (member === 'zero') return '0';
    if (member === 'unknown') return unknownMemberId;
    return this.members.get(member)!.memberId;
  }

  // ---- execution -----------------------------------------------------------------------------

  private connection(target: Target): WireConnection {
    return this.connections.get(target)!;
  }

  private noteRevision(response: WireObject): void {
    const header = response.header as WireObject | null | undefined;
    const revision = Number(header?.revision ?? 0);
    if (revision > this.newestRevision) this.newestRevision = revision;
  }

  private async status(target: Target): Promise<WireObject> {
    const method = 'etcdserverpb.Maintenance/Status';
    const outcome = await this.connection(target).unary(
      grpcPath(method),
      encodeRequest(method, {}),
      unaryTimeoutMs,
      this.metadata('root'),
    );
    if (!outcome.ok) throw new Error(`${this.label} ${target} Status: ${outcome.code} ${outcome.details}`);
    return decodeResponse(method, outcome.bytes);
  }

  /**
   * Waits until `target` has applied every entry the last writer had applied, so a read there
   * (serializable, or state kept outside raft such as compaction and leases) is not stale.
   */
  async sync(target: Target): Promise<void> {
    if (this.synced.has(target)) return;
    const applied = BigInt(String((await this.status(this.lastWriter)).raftAppliedIndex));
    const deadline = Date.now() + syncTimeoutMs;
    for (;;) {
      const status = await this.status(target);
      if (BigInt(String(status.raftAppliedIndex)) >= applied) break;
      if (Date.now() > deadline)
        throw new Error(`${this.label} ${target} did not catch up to applied index ${applied}`);
      await new Promise((resolve) => setTimeout(resolve, syncPollMs));
    }
    this.synced.add(target);
  }

  private afterOp(op: OpSpec, target: Target): void {
    if (!isWrite(op)) return;
    this.lastWriter = target;
    this.synced = new Set([target]);
  }

  /** The call metadata of a request as `principal` (none before auth is on). */
  private metadata(principal: Principal): grpc.Metadata {
    const metadata = new grpc.Metadata();
    const token = this.tokens.get(principal);
    if (token !== undefined) metadata.set('token', token);
    return metadata;
  }

  /**
   * Creates the users and the role, enables auth and logs in as root and as the user, at the
   * leader; returns each step's normalised answer (the tokens are kept for later requests).
   */
  async enableAuth(): Promise<Outcome[]> {
    const outcomes: Outcome[] = [];
    for (const step of authSetup) outcomes.push((await this.authStep(step)).outcome);
    for (const [principal, login] of [
      ['root', rootLogin],
      ['user', userLogin],
    ] as const) {
      const { outcome, response } = await this.authStep(login);
      outcomes.push(outcome);
      if (response !== undefined) this.tokens.set(principal, String(response.token));
    }
    this.lastWriter = 'leader';
    this.synced = new Set(['leader']);
    return outcomes;
  }

  private async authStep(step: AuthStep): Promise<{ outcome: Outcome; response?: WireObject }> {
    const body = encodeRequest(step.method, step.request);
    const outcome = await this.connection('leader').unary(grpcPath(step.method), body, unaryTimeoutMs);
    if (!outcome.ok) return { outcome: { error: { code: outcome.code, message: outcome.details } } };
    const response = decodeResponse(step.method, outcome.bytes);
    return { outcome: { ok: normaliseResponse(step.method, response, this) }, response };
  }

  /** Runs one operation (as the user, once auth is on) and returns its normalised outcome. */
  async execute(op: OpSpec, principal: Principal = 'user'): Promise<Outcome> {
    const target = opTarget(op);
    await this.sync(target);
    try {
      return await this.executeAt(op, target, principal);
    } finally {
      this.afterOp(op, target);
    }
  }

  private async executeAt(op: OpSpec, target: Target, principal: Principal): Promise<Outcome> {
    switch (op.type) {
      case 'leaseKeepAlive':
        return this.keepAlive(op.lease, target);
      case 'rawStream':
        return this.firstStreamAnswer(op.method, Buffer.from(op.hex, 'hex'), target, rawStreamQuietMs);
      case 'watchCreate':
        return this.watchCreate(op);
      case 'watchCancel':
        return this.watchCancel(op.stream, op.watcher);
      case 'watchProgress':
        return this.watchProgress(op.stream);
      default:
        break;
    }
    const request = unaryRequest(op, this)!;
    const outcome = await this.connection(target).unary(
      grpcPath(request.method),
      request.body,
      unaryTimeoutMs,
      this.metadata(principal),
    );
    if (!outcome.ok) {
      if (op.type === 'leaseGrant') this.leaseIds.set(op.label, op.id === '0' ? missingLeaseId : op.id);
      return { error: { code: outcome.code, message: outcome.details } };
    }
    const response = decodeResponse(request.method, outcome.bytes);
    this.noteRevision(response);
    if (deletedSomething(request.method, response))
      this.tombstoneRevisions.add(Number((response.header as WireObject | undefined)?.revision ?? 0));
    if (op.type === 'compact') {
      this.everCompacted = true;
      this.compactRevision = Number(this.revision(op.revision));
    }
    if (op.type === 'leaseGrant') {
      const id = String(response.ID);
      this.leaseIds.set(op.label, id);
      if (op.id === '0') this.serverLeaseNames.set(id, `lease@${op.label}`);
    }
    return { ok: normaliseResponse(request.method, response, this) };
  }

  private keepAlive(spec: LeaseSpec, target: Target): Promise<Outcome> {
    const method = 'etcdserverpb.Lease/LeaseKeepAlive';
    const message = encodeRequest(method, { ID: this.lease(spec) });
    return this.firstStreamAnswer(method, message, target, streamAnswerTimeoutMs);
  }

  /**
   * Opens a stream, sends one message and returns the first answer: a message, or the status the
   * stream ended with; none within `quietMs` is an answer too (a valid request etcd stays silent on).
   */
  private firstStreamAnswer(
    method: string,
    message: Buffer,
    target: Target,
    quietMs: number,
  ): Promise<Outcome> {
    const call = this.connection(target).bidi(grpcPath(method), this.metadata('user'));
    return new Promise<Outcome>((resolve) => {
      const timer = setTimeout(() => finish({ ok: { noAnswerWithinMs: quietMs } }), quietMs);
      const finish = (outcome: Outcome) => {
        clearTimeout(timer);
        call.removeAllListeners();
        call.on('error', () => {});
        call.cancel();
        resolve(outcome);
      };
      call.on('data', (bytes: Buffer) => {
        const response = decodeResponse(method, bytes);
        finish({ ok: normaliseResponse(method, response, this) });
      });
      call.on('error', (error: grpc.ServiceError) =>
        finish({ error: { code: error.code, message: error.details } }),
      );
      call.on('end', () => finish({ error: { code: -1, message: 'stream ended without a status' } }));
      call.write(message);
    });
  }

  private stream(index: number): WatchStream {
    let stream = this.streams.get(index);
    if (stream === undefined) {
      const target = watchStreamTargets[index]!;
      const call = this.connection(target).bidi(grpcPath('etcdserverpb.Watch/Watch'), this.metadata('user'));
      stream = new WatchStream(call, this, this.eventRewrite);
      this.streams.set(index, stream);
    }
    return stream;
  }

  private sendWatch(stream: WatchStream, request: WireObject): void {
    stream.call.write(encodeRequest('etcdserverpb.Watch/Watch', request));
  }

  private async watchCreate(op: OpSpec & { type: 'watchCreate' }): Promise<Outcome> {
    const stream = this.stream(op.stream);
    const created = new Promise<unknown>((resolve) =>
      stream.pendingCreates.push({ label: op.label, resolve }),
    );
    this.sendWatch(stream, watchCreateRequest(op, this));
    return {
      ok: await withTimeout(created, streamAnswerTimeoutMs, () => ({
        noCreatedAnswer: stream.ended ?? true,
      })),
    };
  }

  /**
   * A cancel of an unknown watch ID gets no answer from etcd; a progress request sent right after
   * is answered once the cancel has been handled, so later writes cannot race the cancel.
   */
  private async watchCancel(index: number, watcher: { label: number } | { id: number }): Promise<Outcome> {
    const stream = this.stream(index);
    const id = 'id' in watcher ? String(watcher.id) : (stream.labelToId.get(watcher.label) ?? '999');
    this.sendWatch(stream, { cancel_request: { watch_id: id } });
    return this.watchProgress(index);
  }

  private async watchProgress(index: number): Promise<Outcome> {
    const stream = this.stream(index);
    const answered = new Promise<unknown>((resolve) => stream.progressWaiters.push(() => resolve(true)));
    this.sendWatch(stream, { progress_request: {} });
    const ok = await withTimeout(answered, streamAnswerTimeoutMs, () => false);
    return { ok: { progressAnswered: ok } };
  }

  /**
   * A progress request on every open stream, answered, once the stream's member has applied every
   * write: a member sends a write's events to its synced watchers as it applies the write, so once
   * the answer to a later progress request has arrived those events have too (and the answer's
   * revision is the newest one on both sides).
   */
  async watchBarrier(): Promise<void> {
    const open = [...this.streams].filter(([, stream]) => stream.ended === undefined);
    await Promise.all(open.map(([index]) => this.execute({ type: 'watchProgress', stream: index })));
  }

  /** Every watcher's log and each stream's control answers, keyed for comparison. */
  watchState(): Map<string, unknown[]> {
    const state = new Map<string, unknown[]>();
    for (const [index, stream] of this.streams) {
      for (const [label, log] of stream.logs) state.set(`stream ${index} watcher @${label}`, log.items);
      state.set(`stream ${index} control`, stream.control);
      state.set(`stream ${index} end`, stream.ended === undefined ? [] : [stream.ended]);
    }
    return state;
  }

  hasWatchers(): boolean {
    return this.streams.size > 0;
  }

  /** How many answers the watch streams have logged (grows with every one). */
  watchItemCount(): number {
    let count = 0;
    for (const stream of this.streams.values()) {
      count += stream.control.length;
      for (const log of stream.logs.values()) count += log.items.length;
    }
    return count;
  }

  /** A linearizable read of the whole keyspace at the leader (as root once auth is on). */
  async keyspace(): Promise<Outcome> {
    return this.execute({ type: 'range', key: '\x00', rangeEnd: '\x00', at: 'leader' }, 'root');
  }
}

export function opTarget(op: OpSpec): Target {
  if (op.type === 'watchCreate' || op.type === 'watchCancel' || op.type === 'watchProgress') {
    return watchStreamTargets[op.stream]!;
  }
  return op.at ?? 'follower';
}

function withTimeout<T>(promise: Promise<T>, timeoutMs: number, onTimeout: () => T): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<T>((resolve) => {
    timer = setTimeout(() => resolve(onTimeout()), timeoutMs);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
