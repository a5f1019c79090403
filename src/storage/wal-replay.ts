// Rebuilds each group's durable Raft state from the records of all segments, in log order.
// Rules (the same the writer enforces on append, so a violation here means damage or a bug):
//  - the latest hard state and the latest snapshot marker win;
//  - a marker at index s drops entries <= s (they are inside the snapshot) and keeps those after;
//  - entries starting at index i replace everything previously written at >= i (Raft's log
//    truncation on conflict); a start beyond lastIndex + 1 is a gap and fails recovery;
//  - except at a group's first entries record in the replay: deleting released segments can leave
//    the first surviving heads with an older marker than the one that allowed the deletion, then
//    the group's entries past the deleted ones. Such a gap is healed when a later marker covers
//    it, and fails recovery otherwise. Any later gap fails at once.

import type { Entry, HardState, SnapshotMetadata } from '../raft/types.js';
import { invariant, WalCorruptionError } from './errors.js';
import { RecordType, type WalRecord } from './wal-record.js';

export interface RecoveredGroup {
  groupId: number;
  hardState: HardState | null;
  snapshot: SnapshotMetadata | null;
  /** Consecutive entries after the snapshot marker (or from the first written one if none). */
  entries: Entry[];
}

/** Slab size for entries copied out of a segment's read buffer (see GroupReplay.detachFrom). */
const DETACH_SLAB_BYTES = 1024 * 1024;

interface PendingGap {
  file: string;
  offset: number;
  reason: string;
  /** A marker at or beyond this index makes the gap harmless. */
  coveredAt: number;
}

export class GroupReplay implements RecoveredGroup {
  hardState: HardState | null = null;
  snapshot: SnapshotMetadata | null = null;
  entries: Entry[] = [];
  gap: PendingGap | null = null;
  /** Whether any entries (above the snapshot) of this group were replayed yet. */
  seenEntries = false;
  constructor(readonly groupId: number) {}

  get snapshotIndex(): number {
    return this.snapshot?.index ?? 0;
  }

  /** Last index the log covers (entry or snapshot), or null for a group with neither yet. */
  get lastIndex(): number | null {
    if (this.entries.length > 0) return this.entries[this.entries.length - 1]!.index;
    return this.snapshot ? this.snapshot.index : null;
  }

  /** Applies the entries; returns the description of a gap they leave in the log, or null. */
  applyEntries(entries: Entry[]): string | null {
    const snapshotIndex = this.snapshotIndex;
    const kept =
      entries[0]!.index <= snapshotIndex ? entries.filter((e) => e.index > snapshotIndex) : entries;
    if (kept.length === 0) return null;
    this.seenEntries = true;
    const first = kept[0]!.index;
    const last = this.lastIndex;
    let gap: string | null = null;
    if (last !== null && first > last + 1) {
      gap = `group ${this.groupId}: entries start at ${first} but the log ends at ${last} (missing entries)`;
      this.entries = [];
    }
    this.truncateFrom(first);
    for (const e of kept) this.entries.push(e);
    return gap;
  }

  applySnapshot(meta: SnapshotMetadata): string | null {
    if (meta.index < this.snapshotIndex) {
      return `group ${this.groupId}: snapshot marker ${meta.index} is older than ${this.snapshotIndex}`;
    }
    this.snapshot = meta;
    if (this.gap && meta.index >= this.gap.coveredAt) this.gap = null;
    const drop = this.entries.findIndex((e) => e.index > meta.index);
    this.entries = drop === -1 ? [] : this.entries.slice(drop);
    return null;
  }

  /**
   * Gives the kept entries whose data still view `source` (a segment's read buffer, about to be
   * dropped) memory of their own, packed into slabs of up to DETACH_SLAB_BYTES so that entries
   * compacted away later free their slab together, as the records they came from did.
   */
  detachFrom(source: ArrayBufferLike): void {
    let remainingBytes = 0;
    for (const e of this.entries) if (e.data.buffer === source) remainingBytes += e.data.length;
    let slab = new Uint8Array(0);
    let used = 0;
    for (let i = 0; i < this.entries.length; i++) {
      const e = this.entries[i]!;
      if (e.data.buffer !== source) continue;
      const length = e.data.length;
      if (used + length > slab.length) {
        slab = new Uint8Array(Math.min(remainingBytes, Math.max(length, DETACH_SLAB_BYTES)));
        used = 0;
      }
      slab.set(e.data, used);
      // In place: the entry objects were made by this replay's decoder and nobody else holds them.
      e.data = slab.subarray(used, used + length);
      used += length;
      remainingBytes -= length;
    }
    invariant(remainingBytes === 0, 'every kept entry viewing the segment was copied');
  }

  private truncateFrom(index: number): void {
    if (this.entries.length === 0) return;
    const offset = index - this.entries[0]!.index;
    if (offset <= 0) this.entries = [];
    else if (offset < this.entries.length) this.entries.length = offset;
  }
}

export class Replay {
  readonly groups = new Map<number, GroupReplay>();

  group(groupId: number): GroupReplay {
    let g = this.groups.get(groupId);
    if (!g) {
      g = new GroupReplay(groupId);
      this.groups.set(groupId, g);
    }
    return g;
  }

  apply(record: WalRecord, file: string, offset: number): void {
    switch (record.type) {
      case RecordType.SegmentHeader:
        return;
      case RecordType.HardState:
        this.group(record.group).hardState = record.hardState;
        return;
      case RecordType.Entries:
        return this.applyEntries(record.group, record.entries, file, offset);
      case RecordType.SnapshotMarker: {
        const problem = this.group(record.group).applySnapshot(record.metadata);
        if (problem !== null) throw new WalCorruptionError(file, offset, problem);
        return;
      }
      default: {
        const unknown: never = record;
        throw new Error(`unreachable record ${String(unknown)}`);
      }
    }
  }

  private applyEntries(groupId: number, entries: Entry[], file: string, offset: number): void {
    const group = this.group(groupId);
    const first = !group.seenEntries;
    const gap = group.applyEntries(entries);
    if (gap === null) return;
    if (!first) throw new WalCorruptionError(file, offset, gap);
    group.gap = { file, offset, reason: gap, coveredAt: entries[0]!.index - 1 };
  }

  /** See GroupReplay.detachFrom: call before a segment's read buffer is dropped. */
  detachFrom(source: ArrayBufferLike): void {
    for (const group of this.groups.values()) group.detachFrom(source);
  }

  /** Fails on any gap that no later marker covered. */
  finish(): void {
    for (const group of this.groups.values()) {
      if (group.gap) throw new WalCorruptionError(group.gap.file, group.gap.offset, group.gap.reason);
    }
  }
}
