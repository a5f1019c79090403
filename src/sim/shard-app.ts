// The state machines of a sharded simulated cluster. A shard group applies writes stamped with a
// revision from the timestamp oracle: the key's mod revision becomes that revision, and the shard
// keeps each key's history (revision, write, put or delete) so the checks can read any acked write
// back at its revision. The metadata group (group 0) holds the oracle's high-water mark and the
// static shard map: `MetadataView` is the seam the full metadata state machine replaces.
//
// Both extend KvStateMachine, so the per-group invariants (state hashes, acked proposals) apply
// unchanged; each folds what an entry did into the state hash, so replicas that applied the same
// entries but reached different states (a snapshot that lost something) are caught as well.

import { EntryType } from '../raft/types.js';
import { applyHighWaterRaise } from '../shard/oracle.js';
import type { ShardMap } from '../shard/shard-map.js';
import { encodeCommandProposal, fnvString, KvStateMachine, proposalBody } from './app.js';

export type WriteOp = 'put' | 'delete';

/** One client write as a shard's log carries it. */
export interface WriteCommand {
  /** The client's write id: retries of one write carry the same id; it applies at most once. */
  readonly write: number;
  readonly key: string;
  readonly op: WriteOp;
  /** The revision from the oracle this attempt was stamped with. */
  readonly revision: number;
}

/** One version of a key: what a read at `revision` sees (until the next version). */
export interface KeyVersion {
  readonly revision: number;
  readonly write: number;
  readonly op: WriteOp;
}

/** A live key as etcd reports it (a delete removes it). */
export interface KeyState {
  readonly createRevision: number;
  readonly modRevision: number;
  readonly version: number;
  /** The write that set the value (the simulated value). */
  readonly write: number;
}

/**
 * What applying one write did: `applied` at its revision, `duplicate` (the write id was applied
 * before, at `revision`), or `refused` because its revision is not above the shard's (a write
 * stamped earlier was applied first; the client retries with a new revision).
 */
export type WriteOutcome =
  | { readonly kind: 'applied'; readonly revision: number }
  | { readonly kind: 'duplicate'; readonly revision: number }
  | { readonly kind: 'refused'; readonly revision: number };

const utf8 = new TextEncoder();
const utf8Decoder = new TextDecoder();

export function encodeWrite(proposalId: number, command: WriteCommand): Uint8Array {
  const body = { w: command.write, k: command.key, o: command.op, r: command.revision };
  return encodeCommandProposal(proposalId, utf8.encode(JSON.stringify(body)));
}

export function decodeWrite(data: Uint8Array): WriteCommand | undefined {
  const body = decodeBody(data);
  if (body === undefined || typeof body.w !== 'number') return undefined;
  return {
    write: body.w,
    key: String(body.k),
    op: body.o === 'delete' ? 'delete' : 'put',
    revision: Number(body.r),
  };
}

function decodeBody(data: Uint8Array): Record<string, unknown> | undefined {
  const body = proposalBody(data);
  if (body.length === 0 || body[0] !== 0x7b /* '{' */) return undefined;
  return JSON.parse(utf8Decoder.decode(body)) as Record<string, unknown>;
}

export interface ShardStateOptions {
  /**
   * Test-only mutation: apply a write whose revision is not above the shard's (two writes at one
   * revision, or a key's history going back). The invariants must catch it.
   */
  unsafeAcceptStaleRevision?: boolean;
}

export class ShardStateMachine extends KvStateMachine {
  /** The highest revision applied (the shard's store revision). */
  revision = 0;
  readonly keys = new Map<string, KeyState>();
  readonly history = new Map<string, KeyVersion[]>();
  /** Write id → the revision it was applied at. */
  readonly writes = new Map<number, number>();
  /**
   * The entry applied last, if it was a write: the command, what it did, and the shard's revision
   * before it (read by the simulation right after the apply).
   */
  lastWrite: { command: WriteCommand; outcome: WriteOutcome; previous: number } | undefined;

  constructor(private readonly options: ShardStateOptions = {}) {
    super();
  }

  override apply(index: number, type: EntryType, data: Uint8Array, key: string): void {
    super.apply(index, type, data, key);
    this.lastWrite = undefined;
    if (type !== EntryType.Normal) return;
    const command = decodeWrite(data);
    if (command === undefined) return;
    const previous = this.revision;
    const outcome = this.applyWrite(command);
    this.lastWrite = { command, outcome, previous };
    this.hash = fnvString(`${outcome.kind}@${outcome.revision}`, this.hash);
  }

  /** The version of `key` a read at `revision` sees (undefined: absent then). */
  versionAt(key: string, revision: number): KeyVersion | undefined {
    let seen: KeyVersion | undefined;
    for (const version of this.history.get(key) ?? []) {
      if (version.revision > revision) break;
      seen = version;
    }
    return seen?.op === 'put' ? seen : undefined;
  }

  private applyWrite(command: WriteCommand): WriteOutcome {
    const done = this.writes.get(command.write);
    if (done !== undefined) return { kind: 'duplicate', revision: done };
    if (command.revision <= this.revision && this.options.unsafeAcceptStaleRevision !== true)
      return { kind: 'refused', revision: this.revision };
    this.revision = Math.max(this.revision, command.revision);
    this.writes.set(command.write, command.revision);
    const versions = this.history.get(command.key) ?? [];
    versions.push({ revision: command.revision, write: command.write, op: command.op });
    this.history.set(command.key, versions);
    const current = this.keys.get(command.key);
    if (command.op === 'delete') this.keys.delete(command.key);
    else {
      this.keys.set(command.key, {
        createRevision: current?.createRevision ?? command.revision,
        modRevision: command.revision,
        version: (current?.version ?? 0) + 1,
        write: command.write,
      });
    }
    return { kind: 'applied', revision: command.revision };
  }

  protected override snapshotState(): Record<string, unknown> {
    return {
      ...super.snapshotState(),
      revision: this.revision,
      keys: [...this.keys],
      history: [...this.history],
      writes: [...this.writes],
    };
  }

  protected override loadSnapshotState(state: Record<string, unknown>): void {
    super.loadSnapshotState(state);
    this.revision = state.revision as number;
    for (const [key, value] of state.keys as [string, KeyState][]) this.keys.set(key, value);
    for (const [key, versions] of state.history as [string, KeyVersion[]][]) this.history.set(key, versions);
    for (const [write, revision] of state.writes as [number, number][]) this.writes.set(write, revision);
  }
}

/**
 * What the simulated cluster reads from the metadata group's state: the oracle's committed
 * high-water mark and the shard map. The full metadata state machine replaces SimMetaStateMachine
 * behind this.
 */
export interface MetadataView {
  readonly highWaterMark: number;
  readonly shardMap: ShardMap;
}

/** A proposal to the metadata group raising the oracle's high-water mark to `mark`. */
export function encodeMarkRaise(proposalId: number, mark: number): Uint8Array {
  return encodeCommandProposal(proposalId, utf8.encode(JSON.stringify({ mark })));
}

export function decodeMarkRaise(data: Uint8Array): number | undefined {
  const body = decodeBody(data);
  return typeof body?.mark === 'number' ? body.mark : undefined;
}

/** The metadata group's minimal state machine: the oracle's mark (raised, never lowered) and a static shard map. */
export class SimMetaStateMachine extends KvStateMachine implements MetadataView {
  highWaterMark = 0;

  constructor(readonly shardMap: ShardMap) {
    super();
  }

  override apply(index: number, type: EntryType, data: Uint8Array, key: string): void {
    super.apply(index, type, data, key);
    if (type !== EntryType.Normal) return;
    const mark = decodeMarkRaise(data);
    if (mark === undefined) return;
    this.highWaterMark = applyHighWaterRaise(this.highWaterMark, mark);
    this.hash = fnvString(`mark@${this.highWaterMark}`, this.hash);
  }

  protected override snapshotState(): Record<string, unknown> {
    return { ...super.snapshotState(), highWaterMark: this.highWaterMark };
  }

  protected override loadSnapshotState(state: Record<string, unknown>): void {
    super.loadSnapshotState(state);
    this.highWaterMark = state.highWaterMark as number;
  }
}
