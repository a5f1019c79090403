// Resolving a lock from its txn's record: what anyone who meets a lock it may not wait for does.
// The record decides: no record or PENDING past its TTL → compare-and-set to ABORTED, then release
// the lock; COMMITTED → roll the lock's part forward at the record's revision and branch. A record
// still PENDING within its TTL is left alone (its coordinator is alive); the caller waits.

import { proposeIdempotent, type TxnEffects } from './effects.js';
import type { ShardTxnState } from './shard-txn-state.js';
import type { AbortReason, ShardId, TxnMeta } from './types.js';

export type Resolution =
  | { readonly outcome: 'committed' | 'aborted' }
  | { readonly outcome: 'pending'; readonly expiresAtMs: number };

export interface ResolverOptions {
  readonly attemptsMax: number;
  readonly backoffMs: number;
}

/** Resolves `holder`'s lock on `shard` from its record. Throws ProposeFailedError if a shard never answers. */
export async function resolveLock(
  effects: TxnEffects,
  shard: ShardId,
  holder: TxnMeta,
  reason: AbortReason,
  options: ResolverOptions,
): Promise<Resolution> {
  const { attemptsMax, backoffMs } = options;
  const record = await proposeIdempotent(
    effects,
    holder.primary,
    'record',
    (nowMs) => ({ type: 'record-abort', meta: holder, reason, nowMs }),
    attemptsMax,
    backoffMs,
  );
  switch (record.status) {
    case 'committed': {
      const { revision, executed } = record;
      await proposeIdempotent(
        effects,
        shard,
        'commit',
        (nowMs) => ({ type: 'commit', meta: holder, revision, executed, nowMs }),
        attemptsMax,
        backoffMs,
      );
      return { outcome: 'committed' };
    }
    case 'aborted':
      await proposeIdempotent(
        effects,
        shard,
        'abort',
        (nowMs) => ({ type: 'abort', meta: holder, nowMs }),
        attemptsMax,
        backoffMs,
      );
      return { outcome: 'aborted' };
    case 'pending':
      return { outcome: 'pending', expiresAtMs: record.expiresAtMs };
    case 'refused':
      // record-abort never refuses; a host answering so is broken.
      throw new Error(`shard ${holder.primary} refused record-abort of ${holder.id}: ${record.reason}`);
  }
}

/**
 * One sweep of a shard, as its leader runs it every so often: each expired lock is resolved from
 * its record (locks whose record is still fresh stay; the next sweep tries again), and each
 * expired PENDING record this shard holds is aborted (a coordinator that died before locking
 * anything leaves such a record behind, and nobody else would ever push it).
 */
export async function sweepShard(
  effects: TxnEffects,
  shard: ShardId,
  state: ShardTxnState,
  options: ResolverOptions,
): Promise<Resolution[]> {
  const results: Resolution[] = [];
  for (const holder of state.expiredLocks(effects.nowMs())) {
    results.push(await resolveLock(effects, shard, holder, { kind: 'expired' }, options));
  }
  for (const meta of state.expiredRecords(effects.nowMs())) {
    await proposeIdempotent(
      effects,
      shard,
      'record',
      (nowMs) => ({ type: 'record-abort', meta, reason: { kind: 'expired' }, nowMs }),
      options.attemptsMax,
      options.backoffMs,
    );
  }
  return results;
}
