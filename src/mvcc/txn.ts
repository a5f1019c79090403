// etcd's txn: compares (nested ones included) evaluated against the state before the txn, the
// checks etcd makes along the chosen branches before writing, then the branches' ops in order.
// Used by apply (txns with writes) and by Keyspace.readTxn (read-only txns outside raft).

import type { LiveEntry } from './encoding.js';
import { assertNever, KeyNotFoundError, LeaseNotFoundError, type MvccError } from './errors.js';
import { toKeyRange } from './key-range.js';
import { checkReadRevision, compareNumbers, rangeAt } from './reads.js';
import type { KeyspaceState } from './state.js';
import { EMPTY, type RecordStore } from './store.js';
import type { Compare, PutRequest, RequestOp, ResponseOp, TxnRequest, TxnResponse } from './types.js';
import { checkTxnRequest } from './validate.js';
import { deleteRange, put, responseRevision, type WriteContext } from './writes.js';

/** Which branch each txn takes, outermost first then nested ones in order (etcd's compare pass). */
export type TxnPath = boolean[];

/**
 * Validates a txn and evaluates its compares at `beginRevision`: the branches it takes. Throws
 * the error etcd would answer with before writing anything.
 */
export function planTxn(
  state: KeyspaceState,
  req: TxnRequest,
  txnOpsMax: number,
  beginRevision: number,
): TxnPath {
  const err = checkTxnRequest(req, txnOpsMax);
  if (err) throw err;
  const path = comparePath(state.store, req);
  const checkError = checkTxnPath(state, req, path, { pos: 0 }, beginRevision);
  if (checkError) throw checkError;
  return path;
}

/** Runs the ops of the branches `path` chose. */
export function executeTxn(
  store: RecordStore,
  req: TxnRequest,
  path: TxnPath,
  ctx: WriteContext,
): TxnResponse {
  return executeBranch(store, req, path, { pos: 0 }, ctx, true);
}

/** etcd evaluates every compare, nested ones included, against the state before the txn. */
function comparePath(store: RecordStore, req: TxnRequest): TxnPath {
  const ok = req.compare.every((c) => evaluateCompare(store, c));
  const path = [ok];
  for (const op of ok ? req.success : req.failure) {
    if (op.type === 'txn') path.push(...comparePath(store, op.request));
  }
  return path;
}

function evaluateCompare(store: RecordStore, c: Compare): boolean {
  const targets = store.liveInRange(toKeyRange(c.key, c.rangeEnd));
  if (targets.length === 0) {
    if (c.target === 'value') return false;
    return compareResult(c, compareTarget(c, undefined, EMPTY));
  }
  for (const { live } of targets) {
    const value = c.target === 'value' ? store.readRecord(live.main, live.sub).value : EMPTY;
    if (!compareResult(c, compareTarget(c, live, value))) return false;
  }
  return true;
}

function compareResult(c: Compare, result: number): boolean {
  switch (c.result) {
    case 'equal':
      return result === 0;
    case 'not-equal':
      return result !== 0;
    case 'greater':
      return result > 0;
    case 'less':
      return result < 0;
    default:
      return assertNever(c.result);
  }
}

function compareBigints(a: bigint, b: bigint): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Compares the kv's target field with the compare's operand; missing key = zero values. */
function compareTarget(c: Compare, live: LiveEntry | undefined, value: Uint8Array): number {
  switch (c.target) {
    case 'value':
      return Buffer.compare(value, c.value);
    case 'version':
      return compareNumbers(live?.version ?? 0, c.version);
    case 'create':
      return compareNumbers(live?.createRevision ?? 0, c.createRevision);
    case 'mod':
      return compareNumbers(live?.main ?? 0, c.modRevision);
    case 'lease':
      return compareBigints(live?.lease ?? 0n, c.lease);
    default:
      return assertNever(c);
  }
}

/** etcd's checkTxn: range revisions and put preconditions along the chosen path, before writing. */
function checkTxnPath(
  state: KeyspaceState,
  req: TxnRequest,
  path: TxnPath,
  cursor: { pos: number },
  beginRevision: number,
): MvccError | undefined {
  const ops = path[cursor.pos++] ? req.success : req.failure;
  for (const op of ops) {
    let err: MvccError | undefined;
    switch (op.type) {
      case 'range':
        err = checkReadRevision(op.request.revision ?? 0, beginRevision, state.compactRevision);
        break;
      case 'put':
        err = checkTxnPut(state.store, op.request);
        break;
      case 'deleteRange':
        break;
      case 'txn':
        err = checkTxnPath(state, op.request, path, cursor, beginRevision);
        break;
      default:
        assertNever(op);
    }
    if (err) return err;
  }
  return undefined;
}

function checkTxnPut(store: RecordStore, req: PutRequest): MvccError | undefined {
  if ((req.ignoreValue || req.ignoreLease) && !store.getLive(req.key)) return new KeyNotFoundError();
  const lease = req.lease ?? 0n;
  if (lease !== 0n && !store.leaseExists(lease)) return new LeaseNotFoundError(lease);
  return undefined;
}

function executeBranch(
  store: RecordStore,
  req: TxnRequest,
  path: TxnPath,
  cursor: { pos: number },
  ctx: WriteContext,
  top: boolean,
): TxnResponse {
  const succeeded = path[cursor.pos++]!;
  const responses: ResponseOp[] = [];
  for (const op of succeeded ? req.success : req.failure) {
    responses.push(executeOp(store, op, path, cursor, ctx));
  }
  // etcd fills the header only on the outermost txn response; nested ones report revision 0.
  const revision = top ? responseRevision(ctx) : 0;
  return { revision, succeeded, responses };
}

function executeOp(
  store: RecordStore,
  op: RequestOp,
  path: TxnPath,
  cursor: { pos: number },
  ctx: WriteContext,
): ResponseOp {
  switch (op.type) {
    case 'range':
      return { type: 'range', response: rangeAt(store, op.request, responseRevision(ctx)) };
    case 'put':
      return { type: 'put', response: put(store, op.request, ctx) };
    case 'deleteRange':
      return { type: 'deleteRange', response: deleteRange(store, op.request, ctx) };
    case 'txn':
      return { type: 'txn', response: executeBranch(store, op.request, path, cursor, ctx, false) };
    default:
      return assertNever(op);
  }
}
