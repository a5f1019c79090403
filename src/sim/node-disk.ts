// One simulated node's disk when it hosts several groups: each group's durable Raft state (a
// SimDisk: the records of that group id in the node's one WAL, and its snapshot files), and one
// fsync queue for all of them. Writes requested during one turn (one simulated event) share one
// fsync, which starts at the end of the turn; writes requested while an fsync is in flight wait
// for the next one, as the shared WAL's group commit does. A crash drops every write not yet
// covered by a completed fsync.

import type { SimDisk } from './disk.js';
import { SimulatorError } from './errors.js';
import type { SimNode } from './sim-node.js';

export class NodeDisk {
  /** Completed fsyncs (one per batch, whatever the number of groups in it). */
  syncs = 0;
  /** Group writes those fsyncs made durable. */
  groupWrites = 0;
  /** Writes requested this turn, not yet covered by an fsync. */
  private waiting: SimNode[] = [];
  private inFlight: SimNode[] | undefined;

  constructor(private readonly groups: Map<number, SimDisk>) {}

  /** A group created on this node (a split): its boot state is durable at once, as the split's apply batch. */
  addGroup(groupId: number, disk: SimDisk): void {
    if (this.groups.has(groupId)) throw new SimulatorError(`group ${groupId} is already on this disk`);
    this.groups.set(groupId, disk);
  }

  /** A replica removed from this node (a move): its records and snapshot files are dropped. */
  removeGroup(groupId: number): SimDisk {
    const disk = this.group(groupId);
    this.groups.delete(groupId);
    this.waiting = this.waiting.filter((replica) => replica.disk !== disk);
    return disk;
  }

  group(groupId: number): SimDisk {
    const disk = this.groups.get(groupId);
    if (disk === undefined) throw new SimulatorError(`no group ${groupId} on this disk`);
    return disk;
  }

  /** A group's host waits for its write to be durable. */
  request(replica: SimNode): void {
    this.waiting.push(replica);
  }

  /**
   * At the end of a turn: if no fsync runs, one starts for everything requested so far. Returns
   * true when the caller must schedule its completion.
   */
  startSync(): boolean {
    if (this.inFlight !== undefined || this.waiting.length === 0) return false;
    this.inFlight = this.waiting;
    this.waiting = [];
    return true;
  }

  /** The fsync in flight completed: every write in it is durable; the hosts go on. */
  completeSync(): void {
    const batch = this.inFlight;
    if (batch === undefined) throw new SimulatorError('fsync completion without an fsync in flight');
    this.inFlight = undefined;
    this.syncs++;
    this.groupWrites += batch.length;
    for (const replica of batch) if (replica.awaitingFsync) replica.completeFsync();
  }

  /** Power loss: writes not yet synced are gone (their hosts are gone too). */
  crash(): void {
    this.waiting = [];
    this.inFlight = undefined;
  }
}
