// Rebuilds each group's durable Raft state from the records of all segments, in log order.
// Rules (the same the writer enforces on append, so a violation here means damage or a bug):
//  - the latest hard state and the latest snapshot marker win;
//  - a marker at index s drops entries <= s (they are inside the snapshot) and keeps those after;
//  - entries starting at index i replace everything previously written at >= i (Raft's log
//    truncation on conflict); a start beyond lastIndex + 1 is a gap and fails recovery.

import type { Entry, HardState, SnapshotMetadata } from '../raft/types.js';
import { WalCorruptionError } from './errors.js';
import { RecordType, type WalRecord } from './wal-record.js';

export interface RecoveredGroup {
  groupId: number;
  hardState: HardState | null;
  snapshot: SnapshotMetadata | null;
  /** Consecutive entries after the snapshot marker (or from the first written one if none). */
  entries: Entry[];
}

export class GroupReplay implements RecoveredGroup {
  hardState: HardState | null = null;
  snapshot: SnapshotMetadata | null = null;
  entries: Entry[] = [];
  constructor(readonly groupId: number) {}

  get snapshotIndex(): number {
    return this.snapshot?.index ?? 0;
  }

  /** Last index the log covers (entry or snapshot), or null for a group with neither yet. */
  get lastIndex(): number | null {
    if (this.entries.length > 0) return this.entries[this.entries.length - 1]!.index;
    return this.snapshot ? this.snapshot.index : null;
  }

  /** Returns an error reason, or null when applied. */
  applyEntries(entries: Entry[]): string | null {
    const kept =
      entries[0]!.index <= this.snapshotIndex ? entries.filter((e) => e.index > this.snapshotIndex) : entries;
    if (kept.length === 0) return null;
    const first = kept[0]!.index;
    const last = this.lastIndex;
    if (last !== null && first > last + 1) {
      return `group ${this.groupId}: entries start at ${first} but the log ends at ${last} (missing entries)`;
    }
    this.truncateFrom(first);
    for (const e of kept) this.entries.push(e);
    return null;
  }

  applySnapshot(meta: SnapshotMetadata): string | null {
    if (meta.index < this.snapshotIndex) {
      return `group ${this.groupId}: snapshot marker ${meta.index} is older than ${this.snapshotIndex}`;
    }
    this.snapshot = meta;
    const drop = this.entries.findIndex((e) => e.index > meta.index);
    this.entries = drop === -1 ? [] : this.entries.slice(drop);
    return null;
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
    let problem: string | null = null;
    switch (record.type) {
      case RecordType.SegmentHeader:
        return;
      case RecordType.HardState:
        this.group(record.group).hardState = record.hardState;
        return;
      case RecordType.Entries:
        problem = this.group(record.group).applyEntries(record.entries);
        break;
      case RecordType.SnapshotMarker:
        problem = this.group(record.group).applySnapshot(record.metadata);
        break;
      default: {
        const unknown: never = record;
        throw new Error(`unreachable record ${String(unknown)}`);
      }
    }
    if (problem !== null) throw new WalCorruptionError(file, offset, problem);
  }
}
