// Request checks that etcd performs in its gRPC layer before a request is proposed (v3rpc's
// checkRangeRequest / checkPutRequest / checkDeleteRequest / checkTxnRequest / checkIntervals).
// The API layer may call them to fail fast; the keyspace calls them again when applying so every
// replica rejects the same entries deterministically.

import {
  DuplicateKeyError,
  InvalidRequestError,
  KeyNotFoundError,
  KeyNotProvidedError,
  LeaseProvidedError,
  type MvccError,
  TooManyOpsError,
  ValueProvidedError,
} from './errors.js';
import type { DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest } from './types.js';

/** etcd's default --max-txn-ops. */
export const TXN_OPS_MAX_DEFAULT = 128;
/** LMDB's key size limit with 4 KiB pages. */
export const LMDB_KEY_BYTES_MAX = 1978;
/**
 * Longest user key the LMDB layout can store: the history index key (escaped key: +1 byte per
 * 0x00 byte, +2 terminator bytes, then a 12-byte revision) must fit LMDB's key limit. A key
 * without zero bytes may be up to 1964 bytes.
 */
export const KEY_BYTES_MAX = LMDB_KEY_BYTES_MAX - 14;

function storedKeyBytes(key: Uint8Array): number {
  let zeros = 0;
  for (let i = 0; i < key.length; i++) if (key[i] === 0) zeros++;
  return key.length + zeros;
}

function checkKey(key: Uint8Array | undefined): MvccError | undefined {
  if (!key || key.length === 0) return new KeyNotProvidedError();
  if (storedKeyBytes(key) > KEY_BYTES_MAX) {
    return new InvalidRequestError(`key longer than ${KEY_BYTES_MAX} bytes (0x00 bytes count twice)`);
  }
  return undefined;
}

function checkRangeEnd(rangeEnd: Uint8Array | undefined): MvccError | undefined {
  if (rangeEnd && storedKeyBytes(rangeEnd) > KEY_BYTES_MAX) {
    return new InvalidRequestError(`range_end longer than ${KEY_BYTES_MAX} bytes (0x00 bytes count twice)`);
  }
  return undefined;
}

function checkRevisionField(name: string, value: number | undefined): MvccError | undefined {
  if (value === undefined) return undefined;
  if (!Number.isSafeInteger(value)) return new InvalidRequestError(`${name} must be an integer`);
  return undefined;
}

export function checkRangeRequest(r: RangeRequest): MvccError | undefined {
  const keyError = checkKey(r.key) ?? checkRangeEnd(r.rangeEnd);
  if (keyError) return keyError;
  // A negative limit means "no limit" to etcd, so only non-integers are refused.
  if (r.limit !== undefined && !Number.isSafeInteger(r.limit))
    return new InvalidRequestError('limit must be an integer');
  return (
    checkRevisionField('revision', r.revision) ??
    checkRevisionField('min_mod_revision', r.minModRevision) ??
    checkRevisionField('max_mod_revision', r.maxModRevision) ??
    checkRevisionField('min_create_revision', r.minCreateRevision) ??
    checkRevisionField('max_create_revision', r.maxCreateRevision)
  );
}

export function checkPutRequest(r: PutRequest): MvccError | undefined {
  const keyError = checkKey(r.key);
  if (keyError) return keyError;
  if (r.ignoreValue && r.value && r.value.length !== 0) return new ValueProvidedError();
  if (r.ignoreLease && r.lease !== undefined && r.lease !== 0n) return new LeaseProvidedError();
  return undefined;
}

export function checkDeleteRequest(r: DeleteRangeRequest): MvccError | undefined {
  return checkKey(r.key) ?? checkRangeEnd(r.rangeEnd);
}

/**
 * Placeholders for RequestOps with no request set, made by the API layer so that etcd's checks
 * meet them in order: etcd refuses such an op with "key not found". They never get past checks.
 */
export const emptyRequestOps = new WeakSet<RequestOp>();

function checkRequestOp(op: RequestOp, txnOpsMax: number): MvccError | undefined {
  if (emptyRequestOps.has(op)) return new KeyNotFoundError();
  switch (op.type) {
    case 'range':
      return checkRangeRequest(op.request);
    case 'put':
      return checkPutRequest(op.request);
    case 'deleteRange':
      return checkDeleteRequest(op.request);
    case 'txn':
      return checkTxnShape(op.request, txnOpsMax);
  }
}

/** etcd's checkTxnRequest: nested txns get the remaining op budget. */
function checkTxnShape(r: TxnRequest, txnOpsMax: number): MvccError | undefined {
  const opCount = Math.max(r.compare.length, r.success.length, r.failure.length);
  if (opCount > txnOpsMax) return new TooManyOpsError(opCount, txnOpsMax);
  for (const c of r.compare) {
    if (!c.key || c.key.length === 0) return new KeyNotProvidedError();
  }
  for (const op of r.success) {
    const e = checkRequestOp(op, txnOpsMax - opCount);
    if (e) return e;
  }
  for (const op of r.failure) {
    const e = checkRequestOp(op, txnOpsMax - opCount);
    if (e) return e;
  }
  return undefined;
}

/** A deleted interval [begin, end); end undefined = the single key `begin`. */
interface DeleteInterval {
  begin: Uint8Array;
  end: Uint8Array | undefined;
}

function deleteCovers(d: DeleteInterval, key: string): boolean {
  const k = Buffer.from(key, 'latin1');
  if (d.end === undefined) return Buffer.compare(d.begin, k) === 0;
  // etcd compares these as plain strings: an end of "\0" (or any end ≤ begin) is an empty
  // interval here, so a from-key delete never conflicts with a put in the same txn.
  return Buffer.compare(d.begin, k) <= 0 && Buffer.compare(k, d.end) < 0;
}

function anyCovers(dels: DeleteInterval[], key: string): boolean {
  for (const d of dels) if (deleteCovers(d, key)) return true;
  return false;
}

interface IntervalSets {
  puts: Set<string>;
  dels: DeleteInterval[];
}

/**
 * etcd's checkIntervals: within one txn a key may not be put twice, nor put and deleted, across
 * nesting levels; the success and failure branches of one nested txn may put the same key.
 * (Asymmetric on purpose, as in etcd: an earlier nested txn's put is not checked against a later
 * sibling's delete.)
 */
function checkIntervals(ops: RequestOp[]): IntervalSets | DuplicateKeyError {
  const dels: DeleteInterval[] = [];
  for (const op of ops) {
    if (op.type !== 'deleteRange') continue;
    const end = op.request.rangeEnd;
    dels.push({ begin: op.request.key, end: end && end.length > 0 ? end : undefined });
  }
  const puts = new Set<string>();
  for (const op of ops) {
    if (op.type !== 'txn') continue;
    const then = checkIntervals(op.request.success);
    if (then instanceof DuplicateKeyError) return then;
    const otherwise = checkIntervals(op.request.failure);
    if (otherwise instanceof DuplicateKeyError) return otherwise;
    for (const k of then.puts) {
      if (puts.has(k) || anyCovers(dels, k)) return new DuplicateKeyError();
      puts.add(k);
    }
    for (const k of otherwise.puts) {
      if (puts.has(k) && !then.puts.has(k)) return new DuplicateKeyError();
      if (anyCovers(dels, k)) return new DuplicateKeyError();
      puts.add(k);
    }
    dels.push(...then.dels, ...otherwise.dels);
  }
  for (const op of ops) {
    if (op.type !== 'put') continue;
    const k = Buffer.from(op.request.key).toString('latin1');
    if (puts.has(k) || anyCovers(dels, k)) return new DuplicateKeyError();
    puts.add(k);
  }
  return { puts, dels };
}

/** All of etcd's pre-proposal txn checks, in etcd's order. */
export function checkTxnRequest(r: TxnRequest, txnOpsMax = TXN_OPS_MAX_DEFAULT): MvccError | undefined {
  const shapeError = checkTxnShape(r, txnOpsMax);
  if (shapeError) return shapeError;
  const s = checkIntervals(r.success);
  if (s instanceof DuplicateKeyError) return s;
  const f = checkIntervals(r.failure);
  if (f instanceof DuplicateKeyError) return f;
  return undefined;
}

/** True when the txn contains no put, delete or nested txn (etcd's IsTxnReadonly). */
export function isTxnReadOnly(r: TxnRequest): boolean {
  return r.success.every((op) => op.type === 'range') && r.failure.every((op) => op.type === 'range');
}
