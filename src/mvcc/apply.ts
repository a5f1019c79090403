// Applying committed raft entries: one LMDB write transaction per batch that also stores the
// applied index, the counters and any server metadata, then one bounded step of physical
// compaction. Each request is validated again here (etcd's rules, validate.ts), so every replica
// applies the same entries to the same result; a request that fails changes nothing.

import { compactChunk, startCompaction } from './compaction.js';
import {
  assertNever,
  CompactedError,
  FutureRevisionError,
  InvalidRequestError,
  invariant,
  LeaseExistsError,
  LeaseNotFoundError,
  LeaseTtlTooLargeError,
  MvccError,
} from './errors.js';
import type { KeyspaceState } from './state.js';
import { executeTxn, planTxn } from './txn.js';
import type {
  AppliedEntry,
  ApplyResult,
  CompactionRequest,
  CompactionResponse,
  DeleteRangeRequest,
  DeleteRangeResponse,
  Event,
  LeaseCheckpointRequest,
  LeaseGrantRequest,
  LeaseGrantResponse,
  LeaseRevokeRequest,
  LeaseRevokeResponse,
  PutRequest,
  PutResponse,
  TxnRequest,
  TxnResponse,
  WriteOp,
  WriteResponse,
} from './types.js';
import { checkDeleteRequest, checkPutRequest } from './validate.js';
import type { WatchHub } from './watch.js';
import { deleteRange, put, responseRevision, type WriteContext } from './writes.js';

/** etcd's MaxLeaseTTL (seconds). */
export const LEASE_TTL_SECONDS_MAX = 9_000_000_000;

export interface ApplyBatchOptions {
  /**
   * Server metadata records (see Keyspace.putMeta) written in the same LMDB transaction as the
   * batch and its applied index, e.g. the membership a conf-change entry in this batch produced.
   */
  meta?: Readonly<Record<string, Uint8Array>>;
}

export interface ApplyLimits {
  /** etcd's --max-txn-ops. */
  txnOpsMax: number;
  compactionRecordsPerBatchMax: number;
}

/**
 * Applies committed raft entries in one LMDB write transaction together with the new applied
 * index. Entries at or below the applied index are skipped (replay after restart). A request that
 * fails (typed MvccError) changes nothing; the others still apply. Any other exception aborts
 * the whole batch and leaves the state as it was. The watch hub gets the batch's events after
 * the commit.
 */
export function applyBatch(
  state: KeyspaceState,
  entries: readonly AppliedEntry[],
  options: ApplyBatchOptions,
  limits: ApplyLimits,
  watchHub: WatchHub,
): ApplyResult[] {
  const results: ApplyResult[] = [];
  const saved = { ...state };
  const events: Event[] | undefined = watchHub.wantsEvents() ? [] : undefined;
  const prevKvInEvents = watchHub.wantsPrevKv();
  let lastIndex = state.appliedIndex;
  try {
    state.store.transaction(() => {
      for (const entry of entries) {
        if (entry.index <= saved.appliedIndex) {
          results.push({ index: entry.index, status: 'skipped' });
          continue;
        }
        invariant(entry.index > lastIndex, `raft index ${entry.index} not increasing`);
        lastIndex = entry.index;
        results.push(applyEntry(state, entry, limits, events, prevKvInEvents));
        state.appliedIndex = entry.index;
      }
      const { appliedIndex, revision, compactRevision } = state;
      state.store.writeCounters({ appliedIndex, revision, compactRevision });
      compactChunk(state, limits.compactionRecordsPerBatchMax);
      for (const [name, value] of Object.entries(options.meta ?? {}))
        state.store.writeServerMeta(name, value);
    });
  } catch (e) {
    Object.assign(state, saved);
    throw e;
  }
  watchHub.onCommit(events ?? [], state.revision);
  return results;
}

function applyEntry(
  state: KeyspaceState,
  entry: AppliedEntry,
  limits: ApplyLimits,
  events: Event[] | undefined,
  prevKvInEvents: boolean,
): ApplyResult {
  const ctx: WriteContext = { beginRevision: state.revision, sub: 0, events, prevKvInEvents };
  const eventsBefore = events?.length ?? 0;
  try {
    const response = applyOp(state, entry.op, ctx, limits);
    if (ctx.sub > 0) state.revision = ctx.beginRevision + 1;
    return { index: entry.index, status: 'ok', response };
  } catch (e) {
    if (!(e instanceof MvccError) || e.code === 'corrupt') throw e;
    invariant(ctx.sub === 0, `request failed after writing (${e.code})`);
    if (events) events.length = eventsBefore;
    return { index: entry.index, status: 'error', error: e };
  }
}

function applyOp(state: KeyspaceState, op: WriteOp, ctx: WriteContext, limits: ApplyLimits): WriteResponse {
  switch (op.type) {
    case 'put':
      return { type: 'put', response: applyPut(state, op.request, ctx) };
    case 'deleteRange':
      return { type: 'deleteRange', response: applyDeleteRange(state, op.request, ctx) };
    case 'txn':
      return { type: 'txn', response: applyTxn(state, op.request, ctx, limits.txnOpsMax) };
    case 'compact':
      return { type: 'compact', response: applyCompact(state, op.request) };
    case 'leaseGrant':
      return { type: 'leaseGrant', response: applyLeaseGrant(state, op.request) };
    case 'leaseRevoke':
      return { type: 'leaseRevoke', response: applyLeaseRevoke(state, op.request, ctx) };
    case 'leaseCheckpoint':
      applyLeaseCheckpoint(state, op.request);
      return { type: 'leaseCheckpoint', response: { revision: state.revision } };
    case 'noop':
      return { type: 'noop', response: { revision: state.revision } };
    default:
      return assertNever(op);
  }
}

function applyPut(state: KeyspaceState, req: PutRequest, ctx: WriteContext): PutResponse {
  const err = checkPutRequest(req);
  if (err) throw err;
  const lease = req.lease ?? 0n;
  if (lease !== 0n && !state.store.leaseExists(lease)) throw new LeaseNotFoundError(lease);
  return put(state.store, req, ctx);
}

function applyDeleteRange(
  state: KeyspaceState,
  req: DeleteRangeRequest,
  ctx: WriteContext,
): DeleteRangeResponse {
  const err = checkDeleteRequest(req);
  if (err) throw err;
  return deleteRange(state.store, req, ctx);
}

function applyTxn(state: KeyspaceState, req: TxnRequest, ctx: WriteContext, txnOpsMax: number): TxnResponse {
  const path = planTxn(state, req, txnOpsMax, ctx.beginRevision);
  // Validation above covers every error etcd checks up front; a child transaction still guards
  // the rare case etcd would panic on (an ignore_value put after a from-key delete of that key).
  let response: TxnResponse | undefined;
  const subBefore = ctx.sub;
  const eventsBefore = ctx.events?.length ?? 0;
  try {
    state.store.transaction(() => {
      response = executeTxn(state.store, req, path, ctx);
    });
  } catch (e) {
    ctx.sub = subBefore;
    if (ctx.events) ctx.events.length = eventsBefore;
    throw e;
  }
  invariant(response !== undefined, 'txn produced no response');
  return response;
}

function applyCompact(state: KeyspaceState, req: CompactionRequest): CompactionResponse {
  const target = req.revision;
  if (!Number.isSafeInteger(target)) throw new InvalidRequestError('compaction revision must be an integer');
  if (target <= state.compactRevision) throw new CompactedError(state.compactRevision);
  if (target > state.revision) throw new FutureRevisionError(target, state.revision);
  startCompaction(state, target);
  return { revision: state.revision };
}

function applyLeaseGrant(state: KeyspaceState, req: LeaseGrantRequest): LeaseGrantResponse {
  if (req.id === 0n) throw new InvalidRequestError('lease id must be chosen before proposal');
  if (req.ttlSeconds > LEASE_TTL_SECONDS_MAX) throw new LeaseTtlTooLargeError(req.ttlSeconds);
  if (!Number.isFinite(req.ttlSeconds) || req.ttlSeconds < 0) {
    throw new InvalidRequestError('lease ttl must be a non-negative number');
  }
  if (state.store.leaseExists(req.id)) throw new LeaseExistsError(req.id);
  state.store.writeLease({ id: req.id, ttlSeconds: req.ttlSeconds, remainingTtlSeconds: 0 });
  return { revision: state.revision, id: req.id, ttlSeconds: req.ttlSeconds };
}

function applyLeaseRevoke(
  state: KeyspaceState,
  req: LeaseRevokeRequest,
  ctx: WriteContext,
): LeaseRevokeResponse {
  if (!state.store.leaseExists(req.id)) throw new LeaseNotFoundError(req.id);
  // Keys come back in byte order, which is the order etcd deletes them in (sorted).
  for (const key of state.store.leaseKeys(req.id)) {
    deleteRange(state.store, { key }, ctx);
  }
  state.store.removeLease(req.id);
  return { revision: responseRevision(ctx) };
}

/** etcd ignores checkpoints of leases that are gone (revoked meanwhile). */
function applyLeaseCheckpoint(state: KeyspaceState, req: LeaseCheckpointRequest): void {
  const current = state.store.lease(req.id);
  if (!current) return;
  state.store.writeLease({ ...current, remainingTtlSeconds: req.remainingTtlSeconds });
}
