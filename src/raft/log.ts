// The Raft log as the core sees it: what is durable (RaftStorage) followed by what is not yet
// (Unstable: entries and possibly a snapshot handed to the driver but not yet acknowledged by
// advance()). Indices are plain arithmetic over both parts; the whole log is never copied.

import type { RaftStorage } from './api.js';
import { RaftInvariantError } from './errors.js';
import type { Entry, Snapshot } from './types.js';
import { entryBytes } from './util.js';

/** Entries and snapshot not yet persisted. entries[i] has index offset + i. */
class Unstable {
  snapshot: Snapshot | undefined = undefined;
  entries: Entry[] = [];
  constructor(public offset: number) {}

  maybeFirstIndex(): number {
    return this.snapshot ? this.snapshot.metadata.index + 1 : -1;
  }

  maybeLastIndex(): number {
    if (this.entries.length > 0) return this.offset + this.entries.length - 1;
    return this.snapshot ? this.snapshot.metadata.index : -1;
  }

  /** Term at index if this part knows it, else -1. */
  maybeTerm(index: number): number {
    if (index < this.offset) {
      if (this.snapshot && this.snapshot.metadata.index === index) return this.snapshot.metadata.term;
      return -1;
    }
    const last = this.maybeLastIndex();
    if (last < 0 || index > last) return -1;
    return this.entries[index - this.offset]!.term;
  }

  stableTo(index: number, term: number): void {
    const t = this.maybeTerm(index);
    // Only if the entry was not replaced meanwhile and is an unstable entry (not the snapshot).
    if (t !== term || index < this.offset) return;
    const n = index - this.offset + 1;
    this.entries = n >= this.entries.length ? [] : this.entries.slice(n);
    this.offset = index + 1;
  }

  stableSnapTo(index: number): void {
    if (this.snapshot && this.snapshot.metadata.index === index) this.snapshot = undefined;
  }

  restore(snapshot: Snapshot): void {
    this.offset = snapshot.metadata.index + 1;
    this.entries = [];
    this.snapshot = snapshot;
  }

  truncateAndAppend(entries: readonly Entry[]): void {
    const first = entries[0]!.index;
    const end = this.offset + this.entries.length;
    if (first === end) {
      for (let i = 0; i < entries.length; i++) this.entries.push(entries[i]!);
    } else if (first <= this.offset) {
      // Replaces everything unstable (and, from the driver's view, overwrites a durable suffix).
      this.offset = first;
      this.entries = entries.slice();
    } else {
      const kept = this.entries.slice(0, first - this.offset);
      for (let i = 0; i < entries.length; i++) kept.push(entries[i]!);
      this.entries = kept;
    }
  }
}

export class RaftLog {
  readonly unstable: Unstable;
  committed: number;
  applied: number;

  constructor(readonly storage: RaftStorage) {
    const first = storage.firstIndex();
    const last = storage.lastIndex();
    this.unstable = new Unstable(last + 1);
    this.committed = first - 1;
    this.applied = first - 1;
  }

  firstIndex(): number {
    const i = this.unstable.maybeFirstIndex();
    return i >= 0 ? i : this.storage.firstIndex();
  }

  lastIndex(): number {
    const i = this.unstable.maybeLastIndex();
    return i >= 0 ? i : this.storage.lastIndex();
  }

  /** The last index known durable locally (what the node may count as its own acknowledgement). */
  stableLastIndex(): number {
    if (this.unstable.snapshot) return 0;
    return this.unstable.offset - 1;
  }

  /** Term of the entry at index, or -1 when compacted or beyond the end. */
  term(index: number): number {
    const t = this.unstable.maybeTerm(index);
    if (t >= 0) return t;
    const dummy = this.firstIndex() - 1;
    if (index < dummy || index > this.lastIndex()) return -1;
    if (index >= this.unstable.offset) return -1;
    return this.storage.term(index);
  }

  lastTerm(): number {
    const t = this.term(this.lastIndex());
    if (t < 0) throw new RaftInvariantError(`term of last index ${this.lastIndex()} unavailable`);
    return t;
  }

  matchTerm(index: number, term: number): boolean {
    const t = this.term(index);
    return t >= 0 && t === term;
  }

  isUpToDate(lastIndex: number, term: number): boolean {
    const lastTerm = this.lastTerm();
    return term > lastTerm || (term === lastTerm && lastIndex >= this.lastIndex());
  }

  /**
   * Follower side of AppendEntries: if (index, logTerm) matches, append what conflicts or is new and
   * advance commit. Returns the index of the last entry now known to match the leader, or -1.
   */
  maybeAppend(index: number, logTerm: number, committed: number, entries: readonly Entry[]): number {
    if (!this.matchTerm(index, logTerm)) return -1;
    const lastNew = index + entries.length;
    const conflict = this.findConflict(entries);
    if (conflict !== 0) {
      if (conflict <= this.committed) {
        throw new RaftInvariantError(
          `entry ${conflict} conflicts with committed entry (committed ${this.committed})`,
        );
      }
      const from = conflict - index - 1;
      this.append(from === 0 ? entries : entries.slice(from));
    }
    this.commitTo(Math.min(committed, lastNew));
    return lastNew;
  }

  append(entries: readonly Entry[]): number {
    if (entries.length === 0) return this.lastIndex();
    const after = entries[0]!.index - 1;
    if (after < this.committed) {
      throw new RaftInvariantError(`append after ${after} would overwrite committed index ${this.committed}`);
    }
    this.unstable.truncateAndAppend(entries);
    return this.lastIndex();
  }

  /** First index whose term differs from the given entries (0 if none: all match or are new at the end). */
  findConflict(entries: readonly Entry[]): number {
    const last = this.lastIndex();
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i]!;
      if (e.index > last) return e.index;
      if (!this.matchTerm(e.index, e.term)) return e.index;
    }
    return 0;
  }

  /**
   * The largest index ≤ `index` whose term is ≤ `term`, with that term: where a log ending in
   * (index, term) may match ours. Used on both sides of a rejected append to skip whole terms.
   */
  findConflictByTerm(index: number, term: number): { index: number; term: number } {
    for (; index > 0; index--) {
      const t = this.term(index);
      if (t < 0) return { index, term: 0 };
      if (t <= term) return { index, term: t };
    }
    return { index: 0, term: 0 };
  }

  commitTo(index: number): void {
    if (index <= this.committed) return;
    if (index > this.lastIndex()) {
      throw new RaftInvariantError(`commit ${index} is beyond the last index ${this.lastIndex()}`);
    }
    this.committed = index;
  }

  /** Commit up to maxIndex if that entry is from `term` (only current-term entries commit by counting). */
  maybeCommit(maxIndex: number, term: number): boolean {
    if (maxIndex > this.committed && this.term(maxIndex) === term) {
      this.commitTo(maxIndex);
      return true;
    }
    return false;
  }

  appliedTo(index: number): void {
    if (index === 0) return;
    if (index > this.committed) {
      throw new RaftInvariantError(`applied ${index} is beyond committed ${this.committed}`);
    }
    if (index < this.applied)
      throw new RaftInvariantError(`applied index went back from ${this.applied} to ${index}`);
    this.applied = index;
  }

  hasNextCommittedEntries(): boolean {
    return this.unstable.snapshot === undefined && this.committed > this.applied;
  }

  nextCommittedEntries(maxBytes: number): Entry[] {
    if (!this.hasNextCommittedEntries()) return [];
    return this.slice(this.applied + 1, this.committed + 1, maxBytes);
  }

  /** Entries in [lo, hi), at least one, at most maxBytes otherwise. Throws CompactedError below firstIndex. */
  slice(lo: number, hi: number, maxBytes: number): Entry[] {
    if (lo >= hi) return [];
    if (hi > this.lastIndex() + 1) {
      throw new RaftInvariantError(`slice [${lo}, ${hi}) beyond last index ${this.lastIndex()}`);
    }
    const uoff = this.unstable.offset;
    let out: Entry[];
    if (lo < uoff) {
      out = this.storage.entries(lo, Math.min(hi, uoff), maxBytes);
      // The storage may hand out its own array; never push into it.
      if (hi > uoff) out = out.slice();
      if (out.length < Math.min(hi, uoff) - lo || hi <= uoff) return out;
      const ue = this.unstable.entries;
      let size = maxBytes > 0 && maxBytes !== Number.POSITIVE_INFINITY ? sumBytes(out) : 0;
      for (let i = 0; i < hi - uoff; i++) {
        const e = ue[i]!;
        if (maxBytes > 0 && maxBytes !== Number.POSITIVE_INFINITY) {
          size += entryBytes(e);
          if (size > maxBytes) break;
        }
        out.push(e);
      }
      return out;
    }
    const ue = this.unstable.entries;
    const start = lo - uoff;
    const end = hi - uoff;
    if (maxBytes <= 0 || maxBytes === Number.POSITIVE_INFINITY) return ue.slice(start, end);
    let size = 0;
    let i = start;
    for (; i < end; i++) {
      size += entryBytes(ue[i]!);
      if (size > maxBytes && i > start) break;
    }
    return ue.slice(start, i);
  }

  snapshot(): Snapshot {
    return this.unstable.snapshot ?? this.storage.snapshot();
  }

  restore(snapshot: Snapshot): void {
    this.committed = snapshot.metadata.index;
    this.unstable.restore(snapshot);
  }
}

function sumBytes(entries: readonly Entry[]): number {
  let size = 0;
  for (let i = 0; i < entries.length; i++) size += entryBytes(entries[i]!);
  return size;
}
