// The permissions a KV request needs, checked where etcd 3.4 checks them (apply_auth.go): a put
// needs write on its key (and read with prev_kv); a delete write on its range (and read with
// prev_kv); a txn read on every compare's range and, for every op of both branches (nested txns
// included), what that op alone would need, whichever branch runs.

import type { DeleteRangeRequest, PutRequest, RequestOp, TxnRequest, WriteOp } from '../mvcc/types.js';
import type { AuthInfo, AuthStore } from './auth-store.js';

const NO_RANGE_END = new Uint8Array(0);

function checkPut(store: AuthStore, info: AuthInfo | undefined, request: PutRequest, inTxn: boolean): void {
  store.checkRange(info, request.key, NO_RANGE_END, 'WRITE');
  // etcd checks prev_kv's read only on a plain put, not on a put inside a txn.
  if (request.prevKv === true && !inTxn) store.checkRange(info, request.key, NO_RANGE_END, 'READ');
}

function checkDelete(store: AuthStore, info: AuthInfo | undefined, request: DeleteRangeRequest): void {
  const rangeEnd = request.rangeEnd ?? NO_RANGE_END;
  if (request.prevKv === true) store.checkRange(info, request.key, rangeEnd, 'READ');
  store.checkRange(info, request.key, rangeEnd, 'WRITE');
}

function checkOps(store: AuthStore, info: AuthInfo | undefined, ops: readonly RequestOp[]): void {
  for (const op of ops) {
    switch (op.type) {
      case 'range':
        store.checkRange(info, op.request.key, op.request.rangeEnd ?? NO_RANGE_END, 'READ');
        break;
      case 'put':
        checkPut(store, info, op.request, true);
        break;
      case 'deleteRange':
        checkDelete(store, info, op.request);
        break;
      case 'txn':
        checkTxnPermitted(store, info, op.request);
        break;
    }
  }
}

/** Throws etcd's error unless `info` may run every part of the txn. */
export function checkTxnPermitted(store: AuthStore, info: AuthInfo | undefined, request: TxnRequest): void {
  for (const compare of request.compare)
    store.checkRange(info, compare.key, compare.rangeEnd ?? NO_RANGE_END, 'READ');
  checkOps(store, info, request.success);
  checkOps(store, info, request.failure);
}

/** Throws etcd's error unless `info` may make this KV write (other writes pass). */
export function checkWritePermitted(store: AuthStore, info: AuthInfo | undefined, op: WriteOp): void {
  switch (op.type) {
    case 'put':
      return checkPut(store, info, op.request, false);
    case 'deleteRange':
      return checkDelete(store, info, op.request);
    case 'txn':
      return checkTxnPermitted(store, info, op.request);
    default:
      return;
  }
}
