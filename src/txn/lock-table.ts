// The locks one shard holds for cross-shard txns: per txn, the key intervals of its compares and
// ops on this shard (exclusive: a read under a txn must not change before its commit revision
// either), the txn's part, what prepare answered, and when the lock's TTL runs out.

import { intervalsOverlap } from './plan.js';
import type { KeyInterval, LockConflict, PrepareResult, TxnId, TxnMeta, TxnPart } from './types.js';

export interface LockEntry {
  readonly meta: TxnMeta;
  readonly part: TxnPart;
  /** By the shard's replicated clock; past it, whoever meets the lock may push the txn's record. */
  readonly expiresAtMs: number;
  /** What prepare answered, repeated to a re-driven prepare. */
  readonly prepared: Extract<PrepareResult, { status: 'prepared' }>;
}

export class LockTable {
  private readonly byTxn = new Map<TxnId, LockEntry>();

  get size(): number {
    return this.byTxn.size;
  }

  get(txnId: TxnId): LockEntry | undefined {
    return this.byTxn.get(txnId);
  }

  add(entry: LockEntry): void {
    this.byTxn.set(entry.meta.id, entry);
  }

  delete(txnId: TxnId): boolean {
    return this.byTxn.delete(txnId);
  }

  entries(): IterableIterator<LockEntry> {
    return this.byTxn.values();
  }

  /** The first lock (in acquisition order) of a txn other than `self` that overlaps an interval. */
  conflict(
    intervals: readonly KeyInterval[],
    self: TxnId | undefined,
    clockMs: number,
  ): LockConflict | undefined {
    for (const entry of this.byTxn.values()) {
      if (entry.meta.id === self) continue;
      for (const held of entry.part.locks) {
        if (intervals.some((wanted) => intervalsOverlap(held, wanted))) {
          return { holder: entry.meta, expired: entry.expiresAtMs <= clockMs };
        }
      }
    }
    return undefined;
  }

  /** Locks overlapping an interval whose txn may still commit at or below `revision` (commit > startRevision). */
  blocking(interval: KeyInterval, revision: number): LockEntry[] {
    const found: LockEntry[] = [];
    for (const entry of this.byTxn.values()) {
      if (entry.meta.startRevision >= revision) continue;
      if (entry.part.locks.some((held) => intervalsOverlap(held, interval))) found.push(entry);
    }
    return found;
  }

  /** The smallest start revision of a held lock: the shard's resolved revision stays below it. */
  minStartRevision(): number {
    let min = Number.POSITIVE_INFINITY;
    for (const entry of this.byTxn.values()) min = Math.min(min, entry.meta.startRevision);
    return min;
  }
}
