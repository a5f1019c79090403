// The durable half of the Raft log: WAL records (hard state, entries, snapshot markers) plus
// snapshot files. One persist() = one WAL batch = one fdatasync, whatever it holds.

import type { Entry, HardState, Snapshot } from '../raft/types.js';
import type { DurableLog } from '../replica/raft-host.js';
import type { SnapshotStore } from '../storage/snapshot-store.js';
import type { Wal } from '../storage/wal.js';
import type { ReceivedSnapshots } from './received-snapshots.js';

export const GROUP_ID = 1;

export class WalLog implements DurableLog {
  constructor(
    private readonly wal: Wal,
    private readonly snapshots: SnapshotStore,
    /** Where snapshots streamed from a peer were written as they arrived. */
    private readonly received?: ReceivedSnapshots,
    /** The group whose records these are (group 1 unless told). */
    private readonly group: number = GROUP_ID,
    /**
     * Makes a snapshot's data durable before its marker, instead of a snapshot file: a shard
     * group made by a split keeps its state as keyspace records (replica/group-replica.ts).
     */
    private readonly persistSnapshotData?: (snapshot: Snapshot) => Promise<void>,
  ) {}

  async persist(update: { hardState?: HardState; entries: Entry[]; snapshot?: Snapshot }): Promise<void> {
    if (update.snapshot !== undefined) {
      // The file must be durable before the marker that points at it.
      if (this.persistSnapshotData !== undefined) await this.persistSnapshotData(update.snapshot);
      else if (this.received?.fileOf(update.snapshot) !== undefined)
        await this.received.adopt(update.snapshot);
      else if (update.snapshot.data.length > 0)
        await this.snapshots.write(update.snapshot.metadata, update.snapshot.data);
      this.wal.saveSnapshotMarker(this.group, update.snapshot.metadata);
    }
    if (update.entries.length > 0) this.wal.appendEntries(this.group, update.entries);
    if (update.hardState !== undefined) this.wal.saveHardState(this.group, update.hardState);
    await this.wal.syncNow();
  }

  persistCommit(hardState: HardState): void {
    this.wal.saveHardStateLazily(this.group, hardState);
  }
}
