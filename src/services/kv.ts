// etcd's KV service on a member: Range, Put, DeleteRange, Txn, Compact, and Watch, over the group
// replica that holds the keyspace. Linearizable reads wait for the replica's read barrier; writes
// are proposed and answered with their apply result.

import { CompactedError, FutureRevisionError } from '../mvcc/errors.js';
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
import type { ConcordNode } from '../node/node.js';
import { EMPTY_BYTES } from '../raft/types.js';
import { checkTxnPermitted } from '../replica/auth-checks.js';
import type { AuthInfo } from '../replica/auth-store.js';
import { type GroupReplica, txnHasPut } from '../replica/group-replica.js';
import type { BackendWatcher, WatchCreate, WatchListener, WithHeader } from './backend.js';
import { watchFromHub } from './hub-watch.js';
import { checkLeaseKeysWritable } from './lease.js';

export class KvService {
  private readonly replica: GroupReplica;

  constructor(private readonly node: ConcordNode) {
    this.replica = node.replica;
  }

  async range(request: RangeRequest, auth?: AuthInfo): Promise<WithHeader<RangeResponse>> {
    if (!request.serializable) this.replica.refuseOnLearner();
    // --experimental-stale-reads is the deliberate bug the fault tests must catch.
    if (!request.serializable && !this.node.config.experimentalStaleReads)
      await this.replica.linearizableBarrier();
    else this.replica.assertServing();
    const store = this.replica.authGate.store;
    if (store.enabled) store.checkRange(auth, request.key, request.rangeEnd ?? EMPTY_BYTES, 'READ');
    this.node.stats.ranges++;
    const response = this.replica.keyspace.range(request);
    return { ...response, header: this.replica.header(response.revision) };
  }

  async put(request: PutRequest, auth?: AuthInfo): Promise<WithHeader<PutResponse>> {
    this.replica.refuseOnLearner();
    this.replica.refuseIfNoSpace();
    if (request.lease !== undefined && request.lease !== 0n)
      checkLeaseKeysWritable(this.replica, request.lease, auth);
    const response = await this.replica.write({ type: 'put', request }, auth);
    return { ...response, header: this.replica.header(response.revision) };
  }

  async deleteRange(request: DeleteRangeRequest, auth?: AuthInfo): Promise<WithHeader<DeleteRangeResponse>> {
    this.replica.refuseOnLearner();
    const response = await this.replica.write({ type: 'deleteRange', request }, auth);
    return { ...response, header: this.replica.header(response.revision) };
  }

  async txn(request: TxnRequest, auth?: AuthInfo): Promise<WithHeader<TxnResponse>> {
    this.replica.refuseOnLearner();
    if (isTxnReadOnly(request)) {
      await this.replica.linearizableBarrier();
      const store = this.replica.authGate.store;
      if (store.enabled) checkTxnPermitted(store, auth, request);
      this.node.stats.txns++;
      const response = this.replica.keyspace.readTxn(request);
      return { ...response, header: this.replica.header(response.revision) };
    }
    if (txnHasPut(request)) this.replica.refuseIfNoSpace();
    const response = await this.replica.write({ type: 'txn', request }, auth);
    return { ...response, header: this.replica.header(response.revision) };
  }

  async compact(revision: number, physical: boolean): Promise<WithHeader<CompactionResponse>> {
    this.replica.refuseOnLearner();
    // The log carries revisions below 2^53 and no revision reaches that: etcd's apply answers such
    // a target with the future-revision or compacted error, so it is answered here.
    if (!Number.isSafeInteger(revision)) {
      throw revision > 0
        ? new FutureRevisionError(revision, this.replica.keyspace.currentRevision())
        : new CompactedError(this.replica.keyspace.compactRevision());
    }
    const response = await this.replica.write({ type: 'compact', request: { revision, physical } });
    return { ...response, header: this.replica.header(response.revision) };
  }

  watch(request: WatchCreate, listener: WatchListener): BackendWatcher {
    this.replica.refuseOnLearner();
    this.replica.assertServing();
    return watchFromHub(this.replica.keyspace.watchHub, request, listener);
  }
}
