// Request checks done before the backend sees a request, so a refused request changes nothing.
// The rules and their order follow etcd's v3rpc key checks (empty key, ignore_value/lease,
// ops limit, duplicate keys in one txn branch) and its request size limit.

import { assertNever } from '../mvcc/errors.js';
import type { DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest } from '../mvcc/types.js';
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

/** etcd's lessor.MaxLeaseTTL in seconds. */
export const leaseTtlSecondsMax = 9_000_000_000;

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

export function checkTxn(request: TxnRequest, limits: ValidationLimits): void {
  checkTxnShape(request, limits);
  collectWrites(request.success);
  collectWrites(request.failure);
}

function checkTxnShape(request: TxnRequest, limits: ValidationLimits): void {
  const { txnOpsMax } = limits;
  if (request.compare.length > txnOpsMax || request.success.length > txnOpsMax) {
    throw new EtcdError('tooManyOps');
  }
  if (request.failure.length > txnOpsMax) throw new EtcdError('tooManyOps');
  for (const compare of request.compare) {
    if (compare.key.length === 0) throw new EtcdError('emptyKey');
  }
  for (const op of [...request.success, ...request.failure]) checkOp(op, limits);
}

function checkOp(op: RequestOp, limits: ValidationLimits): void {
  switch (op.type) {
    case 'range':
      return checkRange(op.request);
    case 'put':
      return checkPut(op.request);
    case 'deleteRange':
      return checkDeleteRange(op.request);
    case 'txn':
      return checkTxnShape(op.request, limits);
    default:
      return assertNever(op);
  }
}

interface KeyRange {
  start: Buffer;
  /** Exclusive; undefined = the single key `start`; empty = unbounded. */
  end: Buffer | undefined;
}

interface BranchWrites {
  puts: Map<string, Buffer>;
  deletes: KeyRange[];
}

function toRange(key: Uint8Array, rangeEnd: Uint8Array | undefined): KeyRange {
  const start = Buffer.from(key);
  if (rangeEnd === undefined || rangeEnd.length === 0) return { start, end: undefined };
  if (rangeEnd.length === 1 && rangeEnd[0] === 0) return { start, end: Buffer.alloc(0) };
  return { start, end: Buffer.from(rangeEnd) };
}

function rangeContains(range: KeyRange, key: Buffer): boolean {
  if (range.end === undefined) return range.start.equals(key);
  if (Buffer.compare(key, range.start) < 0) return false;
  return range.end.length === 0 || Buffer.compare(key, range.end) < 0;
}

/**
 * One branch may not put the same key twice, nor put a key it also deletes; nested txns count
 * with both of their branches (only one runs, so the two may overlap each other).
 */
function collectWrites(ops: RequestOp[]): BranchWrites {
  const writes: BranchWrites = { puts: new Map(), deletes: [] };
  for (const op of ops) {
    if (op.type === 'put') addPut(writes, Buffer.from(op.request.key));
    if (op.type === 'deleteRange') writes.deletes.push(toRange(op.request.key, op.request.rangeEnd));
    if (op.type === 'txn') mergeNested(writes, op.request);
  }
  for (const range of writes.deletes) {
    for (const key of writes.puts.values()) {
      if (rangeContains(range, key)) throw new EtcdError('duplicateKey');
    }
  }
  return writes;
}

function addPut(writes: BranchWrites, key: Buffer): void {
  const id = key.toString('hex');
  if (writes.puts.has(id)) throw new EtcdError('duplicateKey');
  writes.puts.set(id, key);
}

function mergeNested(writes: BranchWrites, txn: TxnRequest): void {
  const success = collectWrites(txn.success);
  const failure = collectWrites(txn.failure);
  const nestedPuts = new Map([...success.puts, ...failure.puts]);
  for (const [id, key] of nestedPuts) {
    if (writes.puts.has(id)) throw new EtcdError('duplicateKey');
    writes.puts.set(id, key);
  }
  writes.deletes.push(...success.deletes, ...failure.deletes);
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
