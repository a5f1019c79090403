// The durable log of every Raft group a node hosts, over ONE write-ahead log (storage/wal.ts, whose
// records carry a group id). Each hosted group gets a GroupLog, the DurableLog its RaftHost
// persists through; all of them share one Wal, and so one write() and one fdatasync() per batch.
//
// Group commit across groups: a GroupLog buffers its records and waits for the WAL's batch, which
// the WAL flushes at the end of the event-loop turn (setImmediate). Every group whose host
// persisted in that turn (hosts run their Readies from setImmediate too) is in the batch, so N
// groups busy at once cost one fdatasync, not N; while a batch's fdatasync runs, the next turn's
// records form the next batch. The single-group server's WalLog (node/durable-log.ts) instead
// writes at once (Wal.syncNow) so that its fdatasync overlaps the apply of the same Ready; with
// many groups there is no moment when "everyone has persisted" short of the turn's end, and
// sharing the fsync is worth more than that overlap.
//
// Crash safety is the WAL's: a persist() resolves only after the batch holding its records is
// on disk; after a failed write or fsync every group's persist() fails (fail-stop, WalFailedError).

import type { Entry, HardState, Snapshot } from '../raft/types.js';
import type { DurableLog } from '../replica/raft-host.js';
import {
  type RecoveredGroup,
  type RecoveredState,
  type TornTail,
  Wal,
  type WalOptions,
  type WalStats,
} from '../storage/wal.js';
import type { GroupId } from '../transport/transport.js';

/** Where a group keeps its snapshot data; the WAL only holds a marker pointing at it. */
export interface SnapshotFiles {
  /** Makes the snapshot's data durable; called before the marker is written. */
  save(snapshot: Snapshot): Promise<void>;
}

/** One group's DurableLog over the node's shared WAL. */
export class GroupLog implements DurableLog {
  constructor(
    private readonly wal: Wal,
    readonly group: GroupId,
    private readonly snapshotFiles?: SnapshotFiles,
  ) {}

  /** Buffers the update; resolves once the WAL batch holding it (shared with other groups) is synced. */
  async persist(update: { hardState?: HardState; entries: Entry[]; snapshot?: Snapshot }): Promise<void> {
    if (update.snapshot !== undefined) {
      // The data must be durable before the marker that points at it.
      await this.snapshotFiles?.save(update.snapshot);
      this.wal.saveSnapshotMarker(this.group, update.snapshot.metadata);
    }
    if (update.entries.length > 0) this.wal.appendEntries(this.group, update.entries);
    if (update.hardState !== undefined) this.wal.saveHardState(this.group, update.hardState);
    await this.wal.sync();
  }

  persistCommit(hardState: HardState): void {
    this.wal.saveHardStateLazily(this.group, hardState);
  }

  /**
   * This group no longer needs entries <= index (at most its snapshot marker); WAL segments that
   * no group needs any more are deleted. Resolves with the number of segments deleted.
   */
  releaseTo(index: number): Promise<number> {
    return this.wal.releaseTo(this.group, index);
  }
}

/** The node's WAL, what it recovered per group, and the one GroupLog of each hosted group. */
export class SharedWal {
  private readonly logs = new Map<GroupId, GroupLog>();

  private constructor(
    readonly wal: Wal,
    private readonly recoveredState: RecoveredState,
  ) {}

  /** Opens (creating if needed) the WAL in `dir` and replays every group's records. */
  static async open(dir: string, options: WalOptions = {}): Promise<SharedWal> {
    const { wal, recovered } = await Wal.open(dir, options);
    return new SharedWal(wal, recovered);
  }

  /** Set when open cut an interrupted append off the end of the log (worth a log line). */
  get tornTail(): TornTail | null {
    return this.recoveredState.tornTail;
  }

  /** Groups with state in the WAL at open: the replicas this node hosted before it stopped. */
  groups(): GroupId[] {
    return [...this.recoveredState.groups.keys()].sort((a, b) => a - b);
  }

  /** What the WAL held for the group at open (nothing for a group new to this node). */
  recovered(group: GroupId): RecoveredGroup {
    const found = this.recoveredState.groups.get(group);
    return found ?? { groupId: group, hardState: null, snapshot: null, entries: [] };
  }

  /** The group's log; one per group, since two writers would interleave one group's records. */
  groupLog(group: GroupId, snapshotFiles?: SnapshotFiles): GroupLog {
    if (this.logs.has(group)) throw new Error(`group ${group} already has a log on this node`);
    const log = new GroupLog(this.wal, group, snapshotFiles);
    this.logs.set(group, log);
    return log;
  }

  stats(): WalStats {
    return this.wal.stats();
  }

  async close(): Promise<void> {
    this.logs.clear();
    await this.wal.close();
  }
}
