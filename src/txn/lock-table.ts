// The locks one shard holds for cross-shard txns: per txn, the key intervals of its compares and
// ops on this shard (read locks for compares and Ranges: what a txn read must not change before
// its commit revision; write locks for Puts and DeleteRanges), the txn's part, what prepare
// answered, and when the lock's TTL runs out.

import { intervalsOverlap, locksConflict } from './plan.js';
import type {
  KeyInterval,
  LockConflict,
  LockInterval,
  PrepareResult,
  TxnId,
  TxnMeta,
  TxnPart,
} from './types.js';

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

  /** The first lock (in acquisition order) of a txn other than `self` that excludes one of `intervals`. */
  conflict(
    intervals: readonly LockInterval[],
    self: TxnId | undefined,
    clockMs: number,
  ): LockConflict | undefined {
    for (const entry of this.byTxn.values()) {
      if (entry.meta.id === self) continue;
      for (const held of entry.part.locks) {
        if (intervals.some((wanted) => locksConflict(held, wanted))) {
          return { holder: entry.meta, expired: entry.expiresAtMs <= clockMs };
        }
      }
    }
    return undefined;
  }

  /**
   * Write locks overlapping an interval whose txn may still commit at or below `revision` (it
   * commits above its start revision). Read locks change nothing a reader sees.
   */
  blocking(interval: KeyInterval, revision: number): LockEntry[] {
    const found: LockEntry[] = [];
    for (const entry of this.byTxn.values()) {
      if (entry.meta.startRevision >= revision) continue;
      if (entry.part.locks.some((held) => held.write && intervalsOverlap(held, interval))) found.push(entry);
    }
    return found;
  }

  /** The smallest start revision of a txn holding a write lock: the shard's resolved revision stays below it. */
  minStartRevision(): number {
    let min = Number.POSITIVE_INFINITY;
    for (const entry of this.byTxn.values()) {
      if (entry.part.locks.some((held) => held.write)) min = Math.min(min, entry.meta.startRevision);
    }
    return min;
  }
}
