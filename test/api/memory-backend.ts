// An in-memory EtcdBackend with etcd's keyspace semantics, for driving the API layer in tests:
// revisions, history (for reads at a revision and watch replay), compaction, leases with
// attached keys, a one-member cluster, and the lock/election recipes.

import { EtcdError } from '../../src/api/errors.js';
import {
  assertNever,
  CompactedError,
  FutureRevisionError,
  KeyNotFoundError,
  LeaseExistsError,
  LeaseNotFoundError,
  LeaseTtlTooLargeError,
} from '../../src/mvcc/errors.js';
import { LEASE_TTL_SECONDS_MAX } from '../../src/mvcc/keyspace.js';
import type {
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
} from '../../src/mvcc/types.js';
import type {
  AlarmAction,
  AlarmMember,
  AlarmType,
  BackendWatcher,
  Disposable,
  EtcdBackend,
  HeaderInfo,
  LeaderKey,
  LeaseTimeToLiveResult,
  Member,
  WatchCreate,
  WatchListener,
  WithHeader,
} from '../../src/services/backend.js';

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

function inRange(key: Uint8Array, start: Uint8Array, end: Uint8Array | undefined): boolean {
  const k = Buffer.from(key);
  if (end === undefined || end.length === 0) return k.equals(Buffer.from(start));
  if (Buffer.compare(k, Buffer.from(start)) < 0) return false;
  if (end.length === 1 && end[0] === 0) return true;
  return Buffer.compare(k, Buffer.from(end)) < 0;
}

interface LeaseState {
  ttl: number;
  keys: Set<string>;
}

interface MemWatcher extends BackendWatcher {
  request: WatchCreate;
  listener: WatchListener;
  active: boolean;
}

export class MemoryBackend implements EtcdBackend {
  readonly clusterId = 0xcafe_f00d_1234_5678n;
  readonly memberId = 0xfeed_beef_0000_0001n;
  raftTerm = 2n;
  revision = 1;
  compacted = 0;
  /** Events of each revision; index = revision. */
  private readonly history = new Map<number, Event[]>();
  private live = new Map<string, KeyValue>();
  private readonly leases = new Map<bigint, LeaseState>();
  private readonly watchers = new Set<MemWatcher>();
  private readonly commitListeners = new Set<() => void>();
  private nextLeaseId = 0x7000n;
  /** Set by tests to make every write fail as a leaderless node would. */
  failWrites: EtcdError | undefined;
  readonly calls: string[] = [];
  members: Member[] = [
    {
      id: this.memberId,
      name: 'n1',
      peerUrls: ['http://127.0.0.1:2380'],
      clientUrls: ['http://127.0.0.1:2379'],
      isLearner: false,
    },
  ];

  get watcherCount(): number {
    return this.watchers.size;
  }

  header(): HeaderInfo {
    return {
      clusterId: this.clusterId,
      memberId: this.memberId,
      revision: this.revision,
      raftTerm: this.raftTerm,
    };
  }

  private withHeader<T extends object>(value: T): WithHeader<T> {
    return { ...value, header: this.header() };
  }

  private checkRevision(revision: number): void {
    if (revision > 0 && revision < this.compacted) throw new CompactedError(this.compacted);
    if (revision > this.revision) throw new FutureRevisionError(revision, this.revision);
  }

  private snapshotAt(revision: number): Map<string, KeyValue> {
    if (revision <= 0 || revision === this.revision) return this.live;
    const state = new Map<string, KeyValue>();
    for (let rev = 1; rev <= revision; rev++) {
      for (const event of this.history.get(rev) ?? []) {
        if (event.type === 'put') state.set(hex(event.kv.key), event.kv);
        else state.delete(hex(event.kv.key));
      }
    }
    return state;
  }

  private doRange(request: RangeRequest): RangeResponse {
    this.checkRevision(request.revision ?? 0);
    const state = this.snapshotAt(request.revision ?? 0);
    let kvs = [...state.values()].filter((kv) => inRange(kv.key, request.key, request.rangeEnd));
    kvs.sort((a, b) => Buffer.compare(Buffer.from(a.key), Buffer.from(b.key)));
    if (request.sortOrder === 'descend') kvs.reverse();
    const count = kvs.length;
    const limit = request.limit ?? 0;
    const more = limit > 0 && kvs.length > limit;
    if (limit > 0) kvs = kvs.slice(0, limit);
    if (request.countOnly) kvs = [];
    if (request.keysOnly) kvs = kvs.map((kv) => ({ ...kv, value: new Uint8Array(0) }));
    return { revision: this.revision, kvs, more, count };
  }

  async range(request: RangeRequest): Promise<WithHeader<RangeResponse>> {
    this.calls.push('range');
    return this.withHeader(this.doRange(request));
  }

  /** Runs `body` as one revision; commits only if something changed. */
  private write<T>(body: (events: Event[], rev: number) => T): T {
    if (this.failWrites) throw this.failWrites;
    const events: Event[] = [];
    const result = body(events, this.revision + 1);
    if (events.length > 0) {
      this.revision++;
      this.history.set(this.revision, events);
      this.publish(events);
    }
    return result;
  }

  private applyPut(request: PutRequest, events: Event[], rev: number): PutResponse {
    const prev = this.live.get(hex(request.key));
    if ((request.ignoreValue || request.ignoreLease) && prev === undefined) throw new KeyNotFoundError();
    const lease = request.ignoreLease ? prev!.lease : (request.lease ?? 0n);
    if (lease !== 0n && !this.leases.has(lease)) throw new LeaseNotFoundError(lease);
    const kv: KeyValue = {
      key: Buffer.from(request.key),
      value: request.ignoreValue ? prev!.value : Buffer.from(request.value ?? new Uint8Array(0)),
      createRevision: prev?.createRevision ?? rev,
      modRevision: rev,
      version: (prev?.version ?? 0) + 1,
      lease,
    };
    if (prev !== undefined && prev.lease !== 0n) this.leases.get(prev.lease)?.keys.delete(hex(kv.key));
    if (lease !== 0n) this.leases.get(lease)!.keys.add(hex(kv.key));
    this.live.set(hex(kv.key), kv);
    events.push({ type: 'put', kv, prevKv: prev });
    return { revision: rev, prevKv: request.prevKv ? prev : undefined };
  }

  private applyDelete(request: DeleteRangeRequest, events: Event[], rev: number): DeleteRangeResponse {
    const doomed = [...this.live.values()]
      .filter((kv) => inRange(kv.key, request.key, request.rangeEnd))
      .sort((a, b) => Buffer.compare(Buffer.from(a.key), Buffer.from(b.key)));
    for (const kv of doomed) {
      this.live.delete(hex(kv.key));
      if (kv.lease !== 0n) this.leases.get(kv.lease)?.keys.delete(hex(kv.key));
      const tombstone: KeyValue = {
        key: kv.key,
        value: new Uint8Array(0),
        createRevision: 0,
        modRevision: rev,
        version: 0,
        lease: 0n,
      };
      events.push({ type: 'delete', kv: tombstone, prevKv: kv });
    }
    return { revision: rev, deleted: doomed.length, prevKvs: request.prevKv ? doomed : [] };
  }

  async put(request: PutRequest): Promise<WithHeader<PutResponse>> {
    this.calls.push('put');
    const response = this.write((events, rev) => this.applyPut(request, events, rev));
    return this.withHeader(response);
  }

  async deleteRange(request: DeleteRangeRequest): Promise<WithHeader<DeleteRangeResponse>> {
    this.calls.push('deleteRange');
    return this.withHeader(this.write((events, rev) => this.applyDelete(request, events, rev)));
  }

  private compareOne(compare: Compare): boolean {
    const kvs = [...this.live.values()].filter((kv) => inRange(kv.key, compare.key, compare.rangeEnd));
    if (kvs.length === 0 && compare.target === 'value') return false;
    const subjects: Array<KeyValue | undefined> = kvs.length === 0 ? [undefined] : kvs;
    return subjects.every((kv) => {
      const order = this.compareOrder(compare, kv);
      switch (compare.result) {
        case 'equal':
          return order === 0;
        case 'greater':
          return order > 0;
        case 'less':
          return order < 0;
        case 'not-equal':
          return order !== 0;
        default:
          return assertNever(compare.result);
      }
    });
  }

  private compareOrder(compare: Compare, kv: KeyValue | undefined): number {
    const sign = (a: number | bigint, b: number | bigint) => (a < b ? -1 : a > b ? 1 : 0);
    switch (compare.target) {
      case 'version':
        return sign(kv?.version ?? 0, compare.version);
      case 'create':
        return sign(kv?.createRevision ?? 0, compare.createRevision);
      case 'mod':
        return sign(kv?.modRevision ?? 0, compare.modRevision);
      case 'lease':
        return sign(kv?.lease ?? 0n, compare.lease);
      case 'value':
        return Buffer.compare(Buffer.from(kv?.value ?? new Uint8Array(0)), Buffer.from(compare.value));
      default:
        return assertNever(compare);
    }
  }

  private applyTxn(request: TxnRequest, events: Event[], rev: number): TxnResponse {
    const succeeded = request.compare.every((c) => this.compareOne(c));
    const ops = succeeded ? request.success : request.failure;
    const responses = ops.map((op) => this.applyOp(op, events, rev));
    return { revision: rev, succeeded, responses };
  }

  private applyOp(op: RequestOp, events: Event[], rev: number): ResponseOp {
    switch (op.type) {
      case 'range':
        return { type: 'range', response: this.doRange(op.request) };
      case 'put':
        return { type: 'put', response: this.applyPut(op.request, events, rev) };
      case 'deleteRange':
        return { type: 'deleteRange', response: this.applyDelete(op.request, events, rev) };
      case 'txn':
        return { type: 'txn', response: this.applyTxn(op.request, events, rev) };
      default:
        return assertNever(op);
    }
  }

  async txn(request: TxnRequest): Promise<WithHeader<TxnResponse>> {
    this.calls.push('txn');
    const saved = new Map(this.live);
    try {
      return this.withHeader(this.write((events, rev) => this.applyTxn(request, events, rev)));
    } catch (error) {
      this.live = saved;
      throw error;
    }
  }

  async compact(revision: number): Promise<WithHeader<{ revision: number }>> {
    this.calls.push('compact');
    if (revision <= this.compacted) throw new CompactedError(this.compacted);
    if (revision > this.revision) throw new FutureRevisionError(revision, this.revision);
    this.compacted = revision;
    for (const rev of this.history.keys()) if (rev < revision) this.history.delete(rev);
    return this.withHeader({ revision: this.revision });
  }

  watch(request: WatchCreate, listener: WatchListener): BackendWatcher {
    this.calls.push('watch');
    if (request.startRevision > 0 && request.startRevision < this.compacted) {
      throw new CompactedError(this.compacted);
    }
    const watcher: MemWatcher = {
      request,
      listener,
      active: true,
      synced: true,
      cancel: () => {
        watcher.active = false;
        this.watchers.delete(watcher);
      },
    };
    if (request.startRevision > 0) {
      for (let rev = request.startRevision; rev <= this.revision; rev++) {
        const events = this.matching(watcher, this.history.get(rev) ?? []);
        if (events.length > 0) listener.onEvents(events, rev);
      }
    }
    this.watchers.add(watcher);
    return watcher;
  }

  private matching(watcher: MemWatcher, events: Event[]): Event[] {
    const { key, rangeEnd, prevKv } = watcher.request;
    return events
      .filter((e) => inRange(e.kv.key, key, rangeEnd))
      .map((e) => (prevKv ? e : { type: e.type, kv: e.kv }));
  }

  private publish(events: Event[]): void {
    for (const watcher of [...this.watchers]) {
      const matched = this.matching(watcher, events);
      if (matched.length > 0 && watcher.active) watcher.listener.onEvents(matched, this.revision);
    }
    for (const listener of [...this.commitListeners]) listener();
  }

  /** Test hook: tells a watcher its history was compacted away (a slow watcher in etcd). */
  compactWatchers(compactRevision: number): void {
    for (const watcher of [...this.watchers]) watcher.listener.onCompacted(compactRevision);
  }

  async leaseGrant(ttlSeconds: number, id: bigint): Promise<WithHeader<{ id: bigint; ttlSeconds: number }>> {
    const leaseId = id === 0n ? this.nextLeaseId++ : id;
    // etcd's lessor: a TTL over its maximum is refused before an ID that exists.
    if (ttlSeconds > LEASE_TTL_SECONDS_MAX) throw new LeaseTtlTooLargeError(ttlSeconds);
    if (this.leases.has(leaseId)) throw new LeaseExistsError(leaseId);
    const ttl = Math.max(ttlSeconds, 2);
    this.leases.set(leaseId, { ttl, keys: new Set() });
    return this.withHeader({ id: leaseId, ttlSeconds: ttl });
  }

  async leaseRevoke(id: bigint): Promise<{ header: HeaderInfo }> {
    const lease = this.leases.get(id);
    if (lease === undefined) throw new LeaseNotFoundError(id);
    this.write((events, rev) => {
      for (const key of lease.keys) this.applyDelete({ key: Buffer.from(key, 'hex') }, events, rev);
    });
    this.leases.delete(id);
    return { header: this.header() };
  }

  async leaseKeepAlive(id: bigint): Promise<WithHeader<{ id: bigint; ttlSeconds: number }>> {
    const lease = this.leases.get(id);
    if (lease === undefined) throw new LeaseNotFoundError(id);
    return this.withHeader({ id, ttlSeconds: lease.ttl });
  }

  async leaseTimeToLive(id: bigint, keys: boolean): Promise<WithHeader<LeaseTimeToLiveResult>> {
    const lease = this.leases.get(id);
    if (lease === undefined) return this.withHeader({ id, ttlSeconds: -1, grantedTtlSeconds: 0, keys: [] });
    const attached = keys ? [...lease.keys].map((k) => Buffer.from(k, 'hex')) : [];
    return this.withHeader({ id, ttlSeconds: lease.ttl, grantedTtlSeconds: lease.ttl, keys: attached });
  }

  async leaseLeases(): Promise<WithHeader<{ ids: bigint[] }>> {
    return this.withHeader({ ids: [...this.leases.keys()] });
  }

  async memberList(): Promise<WithHeader<{ members: Member[] }>> {
    return this.withHeader({ members: this.members });
  }

  async memberAdd(peerUrls: string[], isLearner: boolean) {
    if (this.members.some((m) => m.peerUrls.some((u) => peerUrls.includes(u))))
      throw new EtcdError('peerUrlExist');
    const member: Member = {
      id: BigInt(this.members.length + 1) << 40n,
      name: '',
      peerUrls,
      clientUrls: [],
      isLearner,
    };
    this.members = [...this.members, member];
    return this.withHeader({ member, members: this.members });
  }

  private findMember(id: bigint): Member {
    const member = this.members.find((m) => m.id === id);
    if (member === undefined) throw new EtcdError('memberNotFound');
    return member;
  }

  async memberRemove(id: bigint) {
    this.findMember(id);
    this.members = this.members.filter((m) => m.id !== id);
    return this.withHeader({ members: this.members });
  }

  async memberUpdate(id: bigint, peerUrls: string[]) {
    this.findMember(id).peerUrls = peerUrls;
    return this.withHeader({ members: this.members });
  }

  async memberPromote(id: bigint) {
    const member = this.findMember(id);
    if (!member.isLearner) throw new EtcdError('memberNotLearner');
    member.isLearner = false;
    return this.withHeader({ members: this.members });
  }

  async status() {
    return this.withHeader({
      version: '3.4.0',
      dbSizeBytes: 4096,
      dbSizeInUseBytes: 2048,
      leader: this.memberId,
      raftIndex: 10n,
      raftTerm: this.raftTerm,
      raftAppliedIndex: 10n,
      errors: [],
      isLearner: false,
    });
  }

  private alarms: AlarmMember[] = [];

  async alarm(action: AlarmAction, memberId: bigint, alarm: AlarmType) {
    const same = (a: AlarmMember) => a.memberId === memberId && a.alarm === alarm;
    if (action === 'activate' && !this.alarms.some(same)) this.alarms = [...this.alarms, { memberId, alarm }];
    if (action === 'deactivate') this.alarms = this.alarms.filter((a) => !same(a));
    return this.withHeader({ alarms: this.alarms });
  }

  async defragment() {
    return { header: this.header() };
  }

  async hash() {
    return this.withHeader({ hash: 1234 });
  }

  async hashKV(revision: number) {
    this.checkRevision(revision);
    return this.withHeader({ hash: 5678, compactRevision: this.compacted });
  }

  async snapshot() {
    const content = Buffer.from(JSON.stringify([...this.live.keys()]));
    const blob = Buffer.concat([content, Buffer.alloc((512 - (content.length % 512)) % 512, 0x20)]);
    const half = Math.ceil(blob.length / 2);
    async function* chunks() {
      yield { blob: blob.subarray(0, half), remainingBytes: blob.length - half };
      yield { blob: blob.subarray(half), remainingBytes: 0 };
    }
    return { header: this.header(), chunks: chunks() };
  }

  async moveLeader(targetId: bigint) {
    this.findMember(targetId);
    return { header: this.header() };
  }

  /** Waits until `ready` holds, re-checking after every commit. */
  private waitFor(ready: () => boolean, signal: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (signal.aborted) {
          this.commitListeners.delete(check);
          reject(new Error('canceled'));
        } else if (ready()) {
          this.commitListeners.delete(check);
          resolve();
        }
      };
      this.commitListeners.add(check);
      signal.addEventListener('abort', check, { once: true });
      check();
    });
  }

  private oldestUnder(prefix: Buffer): KeyValue | undefined {
    return [...this.live.values()]
      .filter((kv) => Buffer.from(kv.key).subarray(0, prefix.length).equals(prefix))
      .sort((a, b) => a.createRevision - b.createRevision)[0];
  }

  async lock(name: Uint8Array, lease: bigint, signal: AbortSignal) {
    const prefix = Buffer.concat([Buffer.from(name), Buffer.from('/')]);
    const key = Buffer.concat([prefix, Buffer.from(lease.toString(16))]);
    await this.put({ key, value: new Uint8Array(0), lease });
    await this.waitFor(() => Buffer.from(this.oldestUnder(prefix)?.key ?? []).equals(key), signal);
    return this.withHeader({ key });
  }

  async unlock(key: Uint8Array) {
    await this.deleteRange({ key });
    return { header: this.header() };
  }

  async campaign(name: Uint8Array, lease: bigint, value: Uint8Array, signal: AbortSignal) {
    const { key } = await this.lock(name, lease, signal);
    await this.put({ key, value, lease });
    const rev = this.live.get(hex(key))!.createRevision;
    const leader: LeaderKey = { name, key, rev, lease };
    return this.withHeader({ leader });
  }

  async proclaim(leader: LeaderKey, value: Uint8Array) {
    const kv = this.live.get(hex(leader.key));
    if (kv === undefined || kv.createRevision !== leader.rev) throw new EtcdError('electionNotLeader');
    await this.put({ key: leader.key, value, lease: leader.lease });
    return { header: this.header() };
  }

  async leader(name: Uint8Array) {
    const kv = this.oldestUnder(Buffer.concat([Buffer.from(name), Buffer.from('/')]));
    if (kv === undefined) throw new EtcdError('electionNoLeader');
    return this.withHeader({ kv });
  }

  observe(name: Uint8Array, onLeader: (kv: KeyValue, header: HeaderInfo) => void): Disposable {
    const prefix = Buffer.concat([Buffer.from(name), Buffer.from('/')]);
    let last: KeyValue | undefined;
    const check = () => {
      const kv = this.oldestUnder(prefix);
      if (kv !== undefined && kv !== last) onLeader(kv, this.header());
      last = kv;
    };
    this.commitListeners.add(check);
    check();
    return { dispose: () => this.commitListeners.delete(check) };
  }

  async resign(leader: LeaderKey) {
    await this.deleteRange({ key: leader.key });
    return { header: this.header() };
  }
}
