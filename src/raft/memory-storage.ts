// An in-memory RaftStorage: the log as an array whose slot 0 is a dummy entry carrying the
// snapshot's index and term, so term(snapshotIndex) still answers after compaction.

import type { RaftStorage } from './api.js';
import { CompactedError, RaftInvariantError, SnapshotOutOfDateError, UnavailableError } from './errors.js';
import {
  type ConfState,
  EMPTY_BYTES,
  type Entry,
  EntryType,
  emptyConfState,
  emptyHardState,
  type HardState,
  type Snapshot,
} from './types.js';
import { cloneConfState, entryBytes } from './util.js';

function dummyEntry(index: number, term: number): Entry {
  return { index, term, type: EntryType.Normal, data: EMPTY_BYTES };
}

/** In-memory RaftStorage used by tests, the simulator, and the server as its log cache. */
export class MemoryStorage implements RaftStorage {
  private hardState: HardState = emptyHardState();
  private confState: ConfState = emptyConfState();
  private snap: Snapshot = {
    metadata: { index: 0, term: 0, confState: emptyConfState() },
    data: EMPTY_BYTES,
  };
  private ents: Entry[] = [dummyEntry(0, 0)];

  /**
   * Seeds a brand-new group: a snapshot at index 1, term 1 holding the initial membership and an
   * empty application state. Every founding member bootstraps with the same confState; nodes that
   * join later start empty and receive this snapshot (or a later one) from the leader.
   */
  bootstrap(confState: ConfState): void {
    if (this.lastIndex() !== 0 || this.snap.metadata.index !== 0) {
      throw new RaftInvariantError('bootstrap of a storage that already holds a log');
    }
    if (confState.voters.length === 0) throw new RaftInvariantError('bootstrap needs at least one voter');
    this.applySnapshot({
      metadata: { index: 1, term: 1, confState: cloneConfState(confState) },
      data: EMPTY_BYTES,
    });
    this.hardState = { term: 1, vote: 0, commit: 1 };
  }

  initialState(): { hardState: HardState; confState: ConfState } {
    return { hardState: { ...this.hardState }, confState: cloneConfState(this.confState) };
  }

  entries(lo: number, hi: number, maxBytes: number): Entry[] {
    const offset = this.ents[0]!.index;
    if (lo <= offset) throw new CompactedError(lo, offset + 1);
    if (hi > this.lastIndex() + 1) throw new UnavailableError(hi - 1, this.lastIndex());
    const start = lo - offset;
    const end = hi - offset;
    if (maxBytes === Number.POSITIVE_INFINITY || maxBytes <= 0) return this.ents.slice(start, end);
    let size = 0;
    let i = start;
    for (; i < end; i++) {
      size += entryBytes(this.ents[i]!);
      if (size > maxBytes && i > start) break;
    }
    return this.ents.slice(start, i);
  }

  term(index: number): number {
    const offset = this.ents[0]!.index;
    if (index < offset) throw new CompactedError(index, offset + 1);
    const i = index - offset;
    if (i >= this.ents.length) throw new UnavailableError(index, this.lastIndex());
    return this.ents[i]!.term;
  }

  firstIndex(): number {
    return this.ents[0]!.index + 1;
  }

  lastIndex(): number {
    return this.ents[0]!.index + this.ents.length - 1;
  }

  snapshot(): Snapshot {
    return this.snap;
  }

  /** Appends entries that are already durable, truncating any conflicting suffix. */
  append(entries: readonly Entry[]): void {
    if (entries.length === 0) return;
    const first = this.firstIndex();
    const last = entries[entries.length - 1]!.index;
    if (last < first) return;
    let skip = 0;
    if (entries[0]!.index < first) skip = first - entries[0]!.index;
    const offset = entries[skip]!.index - this.ents[0]!.index;
    if (offset > this.ents.length) {
      throw new RaftInvariantError(
        `append leaves a gap: entry ${entries[skip]!.index} after last index ${this.lastIndex()}`,
      );
    }
    if (offset < this.ents.length) this.ents.length = offset;
    for (let i = skip; i < entries.length; i++) this.ents.push(entries[i]!);
  }

  setHardState(hardState: HardState): void {
    this.hardState = { ...hardState };
  }

  /** Records the membership the application has applied, returned by initialState() on restart. */
  setConfState(confState: ConfState): void {
    this.confState = cloneConfState(confState);
  }

  /** Replaces the whole log with a snapshot received from the leader. */
  applySnapshot(snapshot: Snapshot): void {
    const index = snapshot.metadata.index;
    if (index <= this.snap.metadata.index) throw new SnapshotOutOfDateError(index, this.snap.metadata.index);
    this.snap = snapshot;
    this.ents = [dummyEntry(index, snapshot.metadata.term)];
    this.confState = cloneConfState(snapshot.metadata.confState);
    if (this.hardState.commit < index) this.hardState = { ...this.hardState, commit: index };
  }

  /** Records a snapshot the application took at `index` (≤ applied). */
  createSnapshot(index: number, confState: ConfState, data: Uint8Array): Snapshot {
    if (index <= this.snap.metadata.index) throw new SnapshotOutOfDateError(index, this.snap.metadata.index);
    if (index > this.lastIndex()) throw new UnavailableError(index, this.lastIndex());
    this.snap = { metadata: { index, term: this.term(index), confState: cloneConfState(confState) }, data };
    return this.snap;
  }

  /** Discards entries before `index` (they are covered by a snapshot). A no-op if already done. */
  compact(index: number): void {
    const offset = this.ents[0]!.index;
    if (index <= offset) return;
    if (index > this.lastIndex()) throw new UnavailableError(index, this.lastIndex());
    const i = index - offset;
    const rest = this.ents.slice(i + 1);
    rest.unshift(dummyEntry(index, this.ents[i]!.term));
    this.ents = rest;
  }
}
