// A simulated disk holding one node's durable Raft state: hard state, snapshot and log entries.
// Writes become durable only when the simulated fsync completes (the caller decides when); what is
// here survives a crash, nothing else does.

import type { ConfState, Entry, HardState, Snapshot } from '../raft/types.js';
import { emptyConfState, emptyHardState } from '../raft/types.js';
import { SimulatorError } from './errors.js';

export class SimDisk {
  hardState: HardState = emptyHardState();
  snapshot: Snapshot = {
    metadata: { index: 0, term: 0, confState: emptyConfState() },
    data: new Uint8Array(0),
  };
  /** Entries after `entriesFromIndex - 1`, contiguous. */
  entries: Entry[] = [];
  entriesFromIndex = 1;
  /** Completed fsyncs (for reporting). */
  syncs = 0;
  /**
   * The data of every snapshot this disk has held, by index: the server's snapshot files, which a
   * leader streams from (the in-memory log keeps only a snapshot's metadata).
   */
  readonly snapshotFiles = new Map<number, Uint8Array>();

  /** A founding member: the initial membership is a snapshot at index 1, term 1. */
  static bootstrap(confState: ConfState, data: Uint8Array): SimDisk {
    const disk = new SimDisk();
    disk.snapshot = { metadata: { index: 1, term: 1, confState }, data };
    disk.snapshotFiles.set(1, data);
    disk.hardState = { term: 1, vote: 0, commit: 1 };
    disk.entriesFromIndex = 2;
    return disk;
  }

  lastIndex(): number {
    return this.entriesFromIndex + this.entries.length - 1;
  }

  /** Makes one Ready's state durable, atomically (the simulated fsync completed). */
  persist(hardState: HardState | undefined, entries: readonly Entry[], snapshot: Snapshot | undefined): void {
    if (snapshot) {
      this.snapshot = snapshot;
      this.snapshotFiles.set(snapshot.metadata.index, snapshot.data);
      this.entries = [];
      this.entriesFromIndex = snapshot.metadata.index + 1;
    }
    if (entries.length > 0) this.append(entries);
    if (hardState) this.hardState = { ...hardState };
    this.syncs++;
  }

  /** The application took a snapshot; entries up to compactIndex may be dropped. */
  saveSnapshot(snapshot: Snapshot, compactIndex: number): void {
    if (snapshot.metadata.index < this.snapshot.metadata.index) {
      throw new SimulatorError(
        `snapshot ${snapshot.metadata.index} older than ${this.snapshot.metadata.index}`,
      );
    }
    this.snapshot = snapshot;
    this.snapshotFiles.set(snapshot.metadata.index, snapshot.data);
    const drop = Math.min(compactIndex, snapshot.metadata.index) - this.entriesFromIndex + 1;
    if (drop > 0) {
      this.entries = this.entries.slice(drop);
      this.entriesFromIndex += drop;
    }
  }

  /** Durable entries after the snapshot: what a restarted node loads into its log. */
  entriesAfterSnapshot(): Entry[] {
    const skip = this.snapshot.metadata.index + 1 - this.entriesFromIndex;
    return skip > 0 ? this.entries.slice(skip) : this.entries.slice();
  }

  private append(entries: readonly Entry[]): void {
    const first = entries[0]!.index;
    if (first < this.entriesFromIndex) {
      throw new SimulatorError(`append at ${first} before the first durable entry ${this.entriesFromIndex}`);
    }
    if (first > this.lastIndex() + 1) {
      throw new SimulatorError(`append at ${first} leaves a gap after ${this.lastIndex()}`);
    }
    this.entries.length = first - this.entriesFromIndex;
    for (const e of entries) this.entries.push(e);
  }
}
