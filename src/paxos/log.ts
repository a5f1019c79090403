// An acceptor's slots as one contiguous log, so the host persists them exactly as it persists a
// Raft log (Entry = slot: index = slot number, term = ballot it was accepted in, data = value).
// Two differences from a Raft log, both from Paxos's rule that an acceptor never forgets an
// accepted value except by accepting a higher ballot in the same slot:
//   - writing slots [s..e] keeps the slots after e: the new unstable suffix is the new values
//     followed by the old ones, re-emitted unchanged (the host's append replaces a suffix);
//   - installing a snapshot keeps the accepted slots above it, re-emitted after the snapshot.
// Slots up to `committed` hold chosen values.

import type { RaftStorage } from '../raft/api.js';
import type { Entry, Snapshot } from '../raft/types.js';
import { entryBytes } from '../raft/util.js';
import { PaxosInvariantError } from './errors.js';

export class SlotLog {
  /** Slots not yet handed to the host for persistence, starting at `offset`. */
  unstable: Entry[] = [];
  offset: number;
  /** A snapshot to persist (received from a peer), with `unstable` holding the slots above it. */
  pendingSnapshot: Snapshot | undefined;
  committed: number;
  applied: number;
  /** Lowest slot written since the last ready(); what was handed out below it is durable at advance. */
  private dirtyFrom = Number.MAX_SAFE_INTEGER;
  private handedOutUpTo = 0;

  constructor(
    private readonly storage: RaftStorage,
    committed: number,
    applied: number,
  ) {
    this.offset = storage.lastIndex() + 1;
    this.committed = committed;
    this.applied = applied;
  }

  /** Index of the snapshot the log starts after. */
  snapshotIndex(): number {
    if (this.pendingSnapshot) return this.pendingSnapshot.metadata.index;
    return this.storage.firstIndex() - 1;
  }

  firstIndex(): number {
    return this.snapshotIndex() + 1;
  }

  lastIndex(): number {
    if (this.unstable.length > 0) return this.offset + this.unstable.length - 1;
    if (this.pendingSnapshot) return this.pendingSnapshot.metadata.index;
    return this.storage.lastIndex();
  }

  /** The slot's accepted entry, or undefined when compacted or beyond the log. */
  entry(index: number): Entry | undefined {
    if (index >= this.offset && index < this.offset + this.unstable.length)
      return this.unstable[index - this.offset];
    if (this.pendingSnapshot || index < this.storage.firstIndex() || index > this.storage.lastIndex())
      return undefined;
    return this.storage.entries(index, index + 1, 0)[0];
  }

  /** Ballot the slot was accepted in: 0 for no slot, -1 when compacted. */
  ballotAt(index: number): number {
    if (index === this.snapshotIndex()) {
      return this.pendingSnapshot ? this.pendingSnapshot.metadata.term : this.storage.term(index);
    }
    if (index < this.snapshotIndex()) return -1;
    return this.entry(index)?.term ?? 0;
  }

  /** Slots [lo, hi), at least one, at most maxBytes otherwise (0: no bound). */
  slice(lo: number, hi: number, maxBytes: number): Entry[] {
    if (lo < this.firstIndex()) throw new PaxosInvariantError(`slot ${lo} is compacted`);
    if (hi > this.lastIndex() + 1) throw new PaxosInvariantError(`slot ${hi - 1} is beyond the log`);
    const out: Entry[] = [];
    let bytes = 0;
    const stableHi = Math.min(hi, this.offset);
    if (lo < stableHi && !this.pendingSnapshot) {
      for (const e of this.storage.entries(lo, stableHi, maxBytes)) {
        bytes += entryBytes(e);
        if (maxBytes > 0 && bytes > maxBytes && out.length > 0) return out;
        out.push(e);
      }
      if (out.length < stableHi - lo) return out;
    }
    for (let i = Math.max(lo, this.offset); i < hi; i++) {
      const e = this.unstable[i - this.offset]!;
      bytes += entryBytes(e);
      if (maxBytes > 0 && bytes > maxBytes && out.length > 0) return out;
      out.push(e);
    }
    return out;
  }

  /**
   * Writes contiguous slots starting at entries[0].index (≤ lastIndex + 1), keeping every slot
   * after the last one written.
   */
  write(entries: readonly Entry[]): void {
    if (entries.length === 0) return;
    const first = entries[0]!.index;
    const last = this.lastIndex();
    if (first > last + 1) throw new PaxosInvariantError(`write at slot ${first} leaves a gap after ${last}`);
    if (first <= this.committed)
      throw new PaxosInvariantError(`write at chosen slot ${first} (committed ${this.committed})`);
    const end = entries[entries.length - 1]!.index;
    const tail = end < last ? this.slice(end + 1, last + 1, 0) : [];
    if (first < this.offset) {
      this.unstable = [...entries, ...tail];
      this.offset = first;
    } else {
      this.unstable.length = first - this.offset;
      for (const e of entries) this.unstable.push(e);
      for (const e of tail) this.unstable.push(e);
    }
    this.dirtyFrom = Math.min(this.dirtyFrom, first);
  }

  /** Installs a chosen snapshot above `committed`; accepted slots above it are kept. */
  restore(snapshot: Snapshot): void {
    const index = snapshot.metadata.index;
    if (index <= this.committed)
      throw new PaxosInvariantError(`snapshot ${index} is not above commit ${this.committed}`);
    const last = this.lastIndex();
    const tail = last > index && index + 1 >= this.firstIndex() ? this.slice(index + 1, last + 1, 0) : [];
    this.pendingSnapshot = snapshot;
    this.unstable = tail;
    this.offset = index + 1;
    this.committed = index;
    this.dirtyFrom = 0;
  }

  /** Called from ready(): what is handed out now becomes durable at the matching advance(). */
  handOut(): { entries: Entry[]; snapshot: Snapshot | undefined } {
    this.handedOutUpTo = this.lastIndex();
    this.dirtyFrom = Number.MAX_SAFE_INTEGER;
    return { entries: this.unstable.slice(), snapshot: this.pendingSnapshot };
  }

  /** Called from advance(): the host persisted what handOut() returned. */
  persisted(snapshotPersisted: boolean): void {
    if (snapshotPersisted && this.dirtyFrom > 0) this.pendingSnapshot = undefined;
    const stableUpTo = Math.min(this.handedOutUpTo, this.dirtyFrom - 1);
    if (stableUpTo >= this.offset) {
      const drop = Math.min(this.unstable.length, stableUpTo - this.offset + 1);
      this.unstable = this.unstable.slice(drop);
      this.offset += drop;
    }
    this.handedOutUpTo = 0;
  }

  hasUnstable(): boolean {
    return this.unstable.length > 0 || this.pendingSnapshot !== undefined;
  }

  /** Highest slot persisted by the host (the leader counts itself only up to here). */
  stableLastIndex(): number {
    if (this.pendingSnapshot) return this.pendingSnapshot.metadata.index - 1;
    return Math.min(this.storage.lastIndex(), this.offset - 1);
  }

  hasNextCommitted(): boolean {
    return this.committed > this.applying();
  }

  private applyingUpTo = 0;

  applying(): number {
    return Math.max(this.applied, this.applyingUpTo);
  }

  /** Committed slots not yet handed out for applying, at most maxBytes (at least one). */
  nextCommitted(maxBytes: number): Entry[] {
    const from = Math.max(this.applying() + 1, this.firstIndex());
    if (from > this.committed) return [];
    const out = this.slice(from, this.committed + 1, maxBytes);
    if (out.length > 0) this.applyingUpTo = out[out.length - 1]!.index;
    return out;
  }

  appliedTo(index: number): void {
    if (index > this.committed)
      throw new PaxosInvariantError(`applied ${index} beyond commit ${this.committed}`);
    this.applied = Math.max(this.applied, index);
  }
}
