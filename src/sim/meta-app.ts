// The metadata group's (group 0's) state machine in a sharded simulated run: the production
// `MetaState` (shard/meta-state.ts) applied entry by entry, as the metadata group's replicas apply
// it. Each log entry carries one encoded `MetaCommand` (shard/meta-commands.ts) after the
// simulator's proposal header; a refusal leaves the state as it was. The state hash folds in each
// outcome (result or refusal code) and the state's version, so replicas that reached different
// metadata states are caught by the per-group invariants. Snapshots carry the production snapshot
// encoding (shard/meta-snapshot.ts), CRC included.

import { EntryType } from '../raft/types.js';
import { encodeMetaCommand, type MetaCommand } from '../shard/meta-commands.js';
import { decodeMetaSnapshot, encodeMetaSnapshot } from '../shard/meta-snapshot.js';
import type { MetaOutcome, MetaState } from '../shard/meta-state.js';
import type { ShardMap } from '../shard/shard-map.js';
import { encodeCommandProposal, fnvString, KvStateMachine, proposalBody } from './app.js';

/** What the simulated cluster reads from the metadata group's state. */
export interface MetadataView {
  /** The oracle's committed high-water mark. */
  readonly highWaterMark: number;
  readonly shardMap: ShardMap;
}

/** A proposal to the metadata group carrying `command`. */
export function encodeMetaProposal(proposalId: number, command: MetaCommand): Uint8Array {
  return encodeCommandProposal(proposalId, encodeMetaCommand(command));
}

export class MetaGroupStateMachine extends KvStateMachine implements MetadataView {
  /** The outcome of the entry applied last, if it carried a command (read right after the apply). */
  lastOutcome: MetaOutcome | undefined;

  constructor(public state: MetaState) {
    super();
  }

  get highWaterMark(): number {
    return this.state.oracleMark;
  }

  get shardMap(): ShardMap {
    return this.state.shardMap;
  }

  override apply(index: number, type: EntryType, data: Uint8Array, key: string): void {
    super.apply(index, type, data, key);
    this.lastOutcome = undefined;
    if (type !== EntryType.Normal || data.length === 0) return;
    const applied = this.state.applyEntry(proposalBody(data));
    this.state = applied.state;
    this.lastOutcome = applied.outcome;
    const outcome = applied.outcome.ok
      ? applied.outcome.result.type
      : `refused:${applied.outcome.refusal.code}`;
    this.hash = fnvString(`${outcome}@${this.state.version}/${this.state.oracleMark}`, this.hash);
  }

  protected override snapshotState(): Record<string, unknown> {
    return { ...super.snapshotState(), meta: Buffer.from(encodeMetaSnapshot(this.state)).toString('base64') };
  }

  protected override loadSnapshotState(state: Record<string, unknown>): void {
    super.loadSnapshotState(state);
    this.state = decodeMetaSnapshot(new Uint8Array(Buffer.from(state.meta as string, 'base64')));
  }
}
