// Request checks done before the backend sees a request, so a refused request changes nothing.
// The rules and their order follow etcd's v3rpc key checks (empty key, ignore_value/lease, ops
// limit, put/delete overlaps in a txn: mvcc/validate.ts) and its request size limit.

import { assertNever } from '../mvcc/errors.js';
import type { DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest } from '../mvcc/types.js';
import { checkTxnRequest } from '../mvcc/validate.js';
import { EtcdError } from './errors.js';

export interface ValidationLimits {
  /** etcd's --max-txn-ops: ops per txn branch and compares per txn. */
  txnOpsMax: number;
  /** etcd's --max-request-bytes: the largest write request accepted. */
  requestBytesMax: number;
}

export const defaultValidationLimits: ValidationLimits = {
  txnOpsMax: 128,
  requestBytesMax: 1.5 * 1024 * 1024,
};

export function checkRange(request: RangeRequest): void {
  if (request.key.length === 0) throw new EtcdError('emptyKey');
}

export function checkPut(request: PutRequest): void {
  if (request.key.length === 0) throw new EtcdError('emptyKey');
  if (request.ignoreValue && (request.value?.length ?? 0) !== 0) throw new EtcdError('valueProvided');
  if (request.ignoreLease && (request.lease ?? 0n) !== 0n) throw new EtcdError('leaseProvided');
}

export function checkDeleteRange(request: DeleteRangeRequest): void {
  if (request.key.length === 0) throw new EtcdError('emptyKey');
}

/**
 * etcd's txn checks in etcd's order: op counts (nested txns get the remaining budget), compares,
 * every op, then the put/delete overlap rules of each branch across nesting levels
 * (checkIntervals). The keyspace runs the same checks again when it applies the txn.
 */
export function checkTxn(request: TxnRequest, limits: ValidationLimits): void {
  const error = checkTxnRequest(request, limits.txnOpsMax);
  if (error !== undefined) throw error;
}

/** Approximates the encoded size of a write as etcd measures its raft request. */
export function writeRequestBytes(op: RequestOp): number {
  const perOpOverheadBytes = 16;
  switch (op.type) {
    case 'range':
      return perOpOverheadBytes + op.request.key.length + (op.request.rangeEnd?.length ?? 0);
    case 'put':
      return perOpOverheadBytes + op.request.key.length + (op.request.value?.length ?? 0);
    case 'deleteRange':
      return perOpOverheadBytes + op.request.key.length + (op.request.rangeEnd?.length ?? 0);
    case 'txn': {
      const { compare, success, failure } = op.request;
      let total = perOpOverheadBytes;
      for (const c of compare) total += perOpOverheadBytes + c.key.length + (c.rangeEnd?.length ?? 0);
      for (const c of compare) if (c.target === 'value') total += c.value.length;
      for (const nested of [...success, ...failure]) total += writeRequestBytes(nested);
      return total;
    }
    default:
      return assertNever(op);
  }
}

export function checkRequestSize(op: RequestOp, limits: ValidationLimits): void {
  if (writeRequestBytes(op) > limits.requestBytesMax) throw new EtcdError('requestTooLarge');
}
