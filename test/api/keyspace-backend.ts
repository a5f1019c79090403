// An EtcdBackend whose KV, watch and lease records are the real LMDB Keyspace (src/mvcc): every
// write is applied as a committed entry with the next raft index, as the server will after
// consensus. Members, maintenance, lock and election come from MemoryBackend.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assertNever, LeaseNotFoundError } from '../../src/mvcc/errors.js';
import { Keyspace } from '../../src/mvcc/keyspace.js';
import type {
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
} from '../../src/mvcc/types.js';
import type {
  BackendWatcher,
  HeaderInfo,
  LeaseTimeToLiveResult,
  WatchCreate,
  WatchListener,
  WithHeader,
} from '../../src/services/backend.js';
import { watchFromHub } from '../../src/services/hub-watch.js';
import { MemoryBackend } from './memory-backend.js';

export class KeyspaceBackend extends MemoryBackend {
  private readonly dir: string;
  readonly keyspace: Keyspace;
  private raftIndex = 0;
  private nextKeyspaceLeaseId = 0x10_0000n;

  constructor() {
    super();
    this.dir = mkdtempSync(join(tmpdir(), 'concord-api-'));
    this.keyspace = Keyspace.open(this.dir, { noSync: true, initialRevision: 0 });
  }

  async dispose(): Promise<void> {
    await this.keyspace.close();
    rmSync(this.dir, { recursive: true, force: true });
  }

  override header(): HeaderInfo {
    return { ...super.header(), revision: this.keyspace.currentRevision() };
  }

  override get watcherCount(): number {
    return this.keyspace.watchHub.watcherCount;
  }

  private apply(op: WriteOp): WriteResponse {
    if (this.failWrites) throw this.failWrites;
    const [result] = this.keyspace.applyBatch([{ index: ++this.raftIndex, op }]);
    if (result === undefined) throw new Error('applyBatch returned no result');
    switch (result.status) {
      case 'ok':
        return result.response;
      case 'error':
        throw result.error;
      case 'skipped':
        throw new Error(`entry ${result.index} skipped`);
      default:
        return assertNever(result);
    }
  }

  /** Applies one put per key, each its own revision, in a single keyspace batch (fast bulk load). */
  putMany(keys: Uint8Array[], value: Uint8Array): void {
    const entries = keys.map((key) => ({
      index: ++this.raftIndex,
      op: { type: 'put' as const, request: { key, value } },
    }));
    for (const result of this.keyspace.applyBatch(entries)) {
      if (result.status !== 'ok') throw new Error(`bulk put entry ${result.index} ended ${result.status}`);
    }
  }

  private applyAs<T extends WriteResponse['type']>(op: WriteOp & { type: T }) {
    const response = this.apply(op);
    if (response.type !== op.type) throw new Error(`expected ${op.type} response, got ${response.type}`);
    return response as Extract<WriteResponse, { type: T }>;
  }

  override async range(request: RangeRequest): Promise<WithHeader<RangeResponse>> {
    this.calls.push('range');
    return { ...this.keyspace.range(request), header: this.header() };
  }

  override async put(request: PutRequest): Promise<WithHeader<PutResponse>> {
    this.calls.push('put');
    return { ...this.applyAs({ type: 'put', request }).response, header: this.header() };
  }

  override async deleteRange(request: DeleteRangeRequest): Promise<WithHeader<DeleteRangeResponse>> {
    this.calls.push('deleteRange');
    return { ...this.applyAs({ type: 'deleteRange', request }).response, header: this.header() };
  }

  override async txn(request: TxnRequest): Promise<WithHeader<TxnResponse>> {
    this.calls.push('txn');
    return { ...this.applyAs({ type: 'txn', request }).response, header: this.header() };
  }

  override async compact(revision: number): Promise<WithHeader<{ revision: number }>> {
    this.calls.push('compact');
    return { ...this.applyAs({ type: 'compact', request: { revision } }).response, header: this.header() };
  }

  override watch(request: WatchCreate, listener: WatchListener): BackendWatcher {
    this.calls.push('watch');
    return watchFromHub(this.keyspace.watchHub, request, listener);
  }

  override async leaseGrant(ttlSeconds: number, id: bigint) {
    const leaseId = id === 0n ? this.nextKeyspaceLeaseId++ : id;
    const response = this.applyAs({ type: 'leaseGrant', request: { id: leaseId, ttlSeconds } }).response;
    return { id: response.id, ttlSeconds: response.ttlSeconds, header: this.header() };
  }

  override async leaseRevoke(id: bigint) {
    this.applyAs({ type: 'leaseRevoke', request: { id } });
    return { header: this.header() };
  }

  override async leaseKeepAlive(id: bigint) {
    const lease = this.keyspace.lease(id);
    if (lease === undefined) throw new LeaseNotFoundError(id);
    return { id, ttlSeconds: lease.ttlSeconds, header: this.header() };
  }

  override async leaseTimeToLive(id: bigint, keys: boolean): Promise<WithHeader<LeaseTimeToLiveResult>> {
    const lease = this.keyspace.lease(id);
    if (lease === undefined)
      return { id, ttlSeconds: -1, grantedTtlSeconds: 0, keys: [], header: this.header() };
    const attached = keys ? this.keyspace.leaseKeys(id) : [];
    return {
      id,
      ttlSeconds: lease.ttlSeconds,
      grantedTtlSeconds: lease.ttlSeconds,
      keys: attached,
      header: this.header(),
    };
  }

  override async leaseLeases() {
    return { ids: this.keyspace.leases().map((l) => l.id), header: this.header() };
  }
}
