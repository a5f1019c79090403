// The state machines of a sharded simulated cluster. A shard group applies writes stamped with a
// revision from the timestamp oracle: a put or a delete of one key, or a single-shard txn (if a
// key exists, these puts and deletes, else those), every key it writes taking that revision as its
// mod revision. The shard keeps each key's history (revision, write, put or delete) so the checks
// can read any acked write back at its revision. (The metadata group's machine is in meta-app.ts.)
//
// It extends KvStateMachine, so the per-group invariants (state hashes, acked proposals) apply
// unchanged; it folds what an entry did into the state hash, so replicas that applied the same
// entries but reached different states (a snapshot that lost something) are caught as well.

import { type ConfState, EntryType } from '../raft/types.js';
import { encodeCommandProposal, fnvString, KvStateMachine, proposalBody } from './app.js';

export type WriteOp = 'put' | 'delete';

export interface KeyOp {
  readonly key: string;
  readonly op: WriteOp;
}

/** What a client asks a shard to do: one key's put or delete, or a txn over keys of one shard. */
export interface WriteRequest {
  /** Applied when there is no compare, or when it holds. */
  readonly ops: readonly KeyOp[];
  /** A txn's compare: this key exists on the shard (etcd: version > 0). */
  readonly ifExists?: string;
  /** A txn's ops when the compare fails. */
  readonly orElse?: readonly KeyOp[];
}

/** One client write as a shard's log carries it. */
export interface WriteCommand extends WriteRequest {
  /** The client's write id: retries of one write carry the same id; it applies at most once. */
  readonly write: number;
  /** The revision from the oracle this attempt was stamped with (every key it writes gets it). */
  readonly revision: number;
  /** The shard epoch the client routed this attempt with (a split bumps it). */
  readonly epoch: number;
  /** The shard's conf epoch the client routed this attempt with (a replica change bumps it). */
  readonly confEpoch?: number;
}

/** The shard's admin entry splitting off [splitKey, end) into a new shard group `rightId`. */
export interface SplitCommand {
  readonly splitKey: string;
  readonly rightId: number;
  /** The shard's epoch the split was planned at: a replayed or duplicate split is refused. */
  readonly epoch: number;
}

/** A shard's key range [start, end); end '' is the end of the keyspace. */
export interface KeyRange {
  readonly start: string;
  readonly end: string;
}

export function rangeHolds(range: KeyRange, key: string): boolean {
  return key >= range.start && (range.end === '' || key < range.end);
}

/** Every key a write may read or write. */
export function requestKeys(request: WriteRequest): string[] {
  const keys = [...request.ops, ...(request.orElse ?? [])].map((op) => op.key);
  if (request.ifExists !== undefined) keys.push(request.ifExists);
  return keys;
}

/** The ops of the branch a write took (`succeeded`: no compare, or the compare held). */
export function branchOps(request: WriteRequest, succeeded: boolean): readonly KeyOp[] {
  return succeeded ? request.ops : (request.orElse ?? []);
}

/** A write as the shard applied it. */
export interface AppliedWrite {
  readonly revision: number;
  readonly succeeded: boolean;
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
 * What applying one write did: `applied` at its revision (`succeeded`: which branch a txn took),
 * `duplicate` (the write id was applied before, as `write` says), or `refused` because its revision
 * is not above the shard's `revision` (a write stamped earlier was applied first; the client
 * retries with a new revision).
 */
export type WriteOutcome =
  | { readonly kind: 'applied'; readonly write: AppliedWrite }
  | { readonly kind: 'duplicate'; readonly write: AppliedWrite }
  | { readonly kind: 'refused'; readonly revision: number }
  /** Routed at another epoch or conf epoch, or a key outside the shard's range: the client re-routes. */
  | { readonly kind: 'stale-epoch'; readonly epoch: number; readonly confEpoch: number };

const utf8 = new TextEncoder();
const utf8Decoder = new TextDecoder();

export function encodeWrite(proposalId: number, command: WriteCommand): Uint8Array {
  return encodeCommandProposal(proposalId, utf8.encode(JSON.stringify(command)));
}

export function encodeSplit(proposalId: number, split: SplitCommand): Uint8Array {
  return encodeCommandProposal(proposalId, utf8.encode(JSON.stringify({ split })));
}

export function decodeSplit(data: Uint8Array): SplitCommand | undefined {
  const body = decodeBody(data);
  return typeof body?.split === 'object' ? (body.split as SplitCommand) : undefined;
}

/** A leader's resolve entry: the shard's revision rises to `revision` (an oracle revision), no key changes. */
export function encodeResolve(proposalId: number, revision: number): Uint8Array {
  return encodeCommandProposal(proposalId, utf8.encode(JSON.stringify({ resolve: revision })));
}

export function decodeResolve(data: Uint8Array): number | undefined {
  const body = decodeBody(data);
  return typeof body?.resolve === 'number' ? body.resolve : undefined;
}

export function decodeWrite(data: Uint8Array): WriteCommand | undefined {
  const body = decodeBody(data);
  return typeof body?.write === 'number' ? (body as unknown as WriteCommand) : undefined;
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
  /**
   * Test-only mutation: apply a write routed at another epoch or holding a key outside the
   * shard's range (a stale route answered instead of refused).
   */
  unsafeIgnoreEpoch?: boolean;
  /**
   * Test only: leave the content digest out of the state hash, so replicas that hold different
   * content are compared only by the end-of-run checks (shows those checks catching a loss alone).
   */
  uncheckedDigest?: boolean;
}

/** A membership's identity (voters and learners, sorted): a conf change that leaves it is a no-op. */
function membershipKey(conf: ConfState): string {
  const sorted = (ids: readonly number[]) => [...ids].sort((a, b) => a - b).join(',');
  return `${sorted(conf.voters)}|${sorted(conf.learners)}|${sorted(conf.votersOutgoing)}|${sorted(conf.learnersNext)}`;
}

/** One key version's share of a shard's content digest (a sum, so the order of versions does not matter). */
function versionDigest(key: string, version: KeyVersion): number {
  return fnvString(`${key}@${version.revision}/${version.write}/${version.op}`, 0x811c9dc5);
}

/** A split as a replica applied it: the new shard's boot state (the same bytes on every replica). */
export interface AppliedSplit {
  readonly split: SplitCommand;
  /** The right half's state machine, encoded as its snapshot at index 1. */
  readonly rightBoot: Uint8Array;
  /** The shard's revision at the split: the right half's resolved revision starts there. */
  readonly revision: number;
}

export class ShardStateMachine extends KvStateMachine {
  /** The highest revision applied (the shard's store revision). */
  revision = 0;
  /** Bumped by every split; writes routed at another epoch are refused. */
  epoch = 1;
  /**
   * Bumped by every applied conf change that changes the membership (as the metadata group's
   * `changeReplicas` bumps the map's): writes routed at another conf epoch are refused.
   */
  confEpoch = 1;
  /**
   * A digest of the content (the sum of every key version's hash, and the write ids), kept as
   * writes apply and recomputed from the content on restore: replicas at one index must agree on it.
   */
  private digest = 0;
  range: KeyRange;
  /** The split applied by the entry applied last, if it was one that took effect. */
  lastSplit: AppliedSplit | undefined;
  readonly keys = new Map<string, KeyState>();
  readonly history = new Map<string, KeyVersion[]>();
  /** Write id → how it was applied. */
  readonly writes = new Map<number, AppliedWrite>();
  /**
   * The entry applied last, if it was a write: the command, what it did, and the shard's revision
   * before it (read by the simulation right after the apply).
   */
  lastWrite: { command: WriteCommand; outcome: WriteOutcome; previous: number } | undefined;

  constructor(
    private readonly options: ShardStateOptions = {},
    range: KeyRange = { start: '', end: '' },
  ) {
    super();
    this.range = range;
  }

  override get stateHash(): number {
    if (this.options.uncheckedDigest === true) return this.hash;
    return fnvString(
      `${this.digest}/${this.writes.size}/${this.revision}/${this.epoch}/${this.confEpoch}`,
      this.hash,
    );
  }

  override onConfChange(before: ConfState): void {
    if (membershipKey(before) === membershipKey(this.confState)) return;
    this.confEpoch++;
    this.hash = fnvString(`conf ${this.confEpoch}`, this.hash);
  }

  owns(key: string): boolean {
    return rangeHolds(this.range, key);
  }

  override apply(index: number, type: EntryType, data: Uint8Array, key: string): void {
    super.apply(index, type, data, key);
    this.lastWrite = undefined;
    this.lastSplit = undefined;
    if (type !== EntryType.Normal) return;
    const split = decodeSplit(data);
    if (split !== undefined) {
      this.lastSplit = this.applySplit(split);
      this.hash = fnvString(`split ${JSON.stringify(split)} ${this.lastSplit !== undefined}`, this.hash);
      return;
    }
    const resolve = decodeResolve(data);
    if (resolve !== undefined) {
      // Like an idle shard's closed-timestamp tick: no write at or below it can apply afterwards.
      this.revision = Math.max(this.revision, resolve);
      this.hash = fnvString(`resolve ${this.revision}`, this.hash);
      return;
    }
    const command = decodeWrite(data);
    if (command === undefined) return;
    const previous = this.revision;
    const outcome = this.applyWrite(command);
    this.lastWrite = { command, outcome, previous };
    this.hash = fnvString(JSON.stringify(outcome), this.hash);
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
    if (done !== undefined) return { kind: 'duplicate', write: done };
    const routed =
      command.epoch === this.epoch &&
      (command.confEpoch === undefined || command.confEpoch === this.confEpoch) &&
      requestKeys(command).every((key) => this.owns(key));
    if (!routed && this.options.unsafeIgnoreEpoch !== true)
      return { kind: 'stale-epoch', epoch: this.epoch, confEpoch: this.confEpoch };
    if (command.revision <= this.revision && this.options.unsafeAcceptStaleRevision !== true)
      return { kind: 'refused', revision: this.revision };
    const succeeded = command.ifExists === undefined || this.keys.has(command.ifExists);
    const write: AppliedWrite = { revision: command.revision, succeeded };
    this.revision = Math.max(this.revision, command.revision);
    this.writes.set(command.write, write);
    for (const { key, op } of branchOps(command, succeeded))
      this.applyKeyOp(command.write, key, op, command.revision);
    return { kind: 'applied', write };
  }

  /**
   * Splits off [splitKey, end) when planned at this epoch and splitKey is inside the range: this
   * shard keeps [start, splitKey), both halves get epoch + 1, and the right half starts from this
   * shard's revision, its keys' histories and the applied write ids (a retried write stays a
   * duplicate on either side). A split planned at another epoch is a no-op (a duplicate proposal).
   */
  private applySplit(split: SplitCommand): AppliedSplit | undefined {
    const inside = split.splitKey > this.range.start && rangeHolds(this.range, split.splitKey);
    if (split.epoch !== this.epoch || !inside) return undefined;
    const right = new ShardStateMachine(this.options, { start: split.splitKey, end: this.range.end });
    right.epoch = this.epoch + 1;
    right.confEpoch = this.confEpoch;
    right.revision = this.revision;
    right.appliedIndex = 1;
    right.hash = fnvString(`shard ${split.rightId}`, right.hash);
    for (const [id, write] of this.writes) right.writes.set(id, write);
    for (const [key, versions] of this.history) {
      if (!right.owns(key)) continue;
      right.history.set(key, versions);
      this.history.delete(key);
      const state = this.keys.get(key);
      if (state !== undefined) right.keys.set(key, state);
      this.keys.delete(key);
    }
    this.range = { start: this.range.start, end: split.splitKey };
    this.epoch++;
    this.digest = this.computeDigest();
    right.digest = right.computeDigest();
    return { split, rightBoot: right.encode(), revision: this.revision };
  }

  private applyKeyOp(write: number, key: string, op: WriteOp, revision: number): void {
    const versions = this.history.get(key) ?? [];
    const version: KeyVersion = { revision, write, op };
    versions.push(version);
    this.digest = (this.digest + versionDigest(key, version)) >>> 0;
    this.history.set(key, versions);
    const current = this.keys.get(key);
    if (op === 'delete') this.keys.delete(key);
    else {
      this.keys.set(key, {
        createRevision: current?.createRevision ?? revision,
        modRevision: revision,
        version: (current?.version ?? 0) + 1,
        write,
      });
    }
  }

  protected override snapshotState(): Record<string, unknown> {
    return {
      ...super.snapshotState(),
      revision: this.revision,
      epoch: this.epoch,
      confEpoch: this.confEpoch,
      range: this.range,
      keys: [...this.keys],
      history: [...this.history],
      writes: [...this.writes],
    };
  }

  protected override loadSnapshotState(state: Record<string, unknown>): void {
    super.loadSnapshotState(state);
    this.revision = state.revision as number;
    this.epoch = state.epoch as number;
    this.range = state.range as KeyRange;
    for (const [key, value] of state.keys as [string, KeyState][]) this.keys.set(key, value);
    for (const [key, versions] of state.history as [string, KeyVersion[]][]) this.history.set(key, versions);
    for (const [id, write] of state.writes as [number, AppliedWrite][]) this.writes.set(id, write);
    this.confEpoch = (state.confEpoch as number | undefined) ?? 1;
    this.digest = this.computeDigest();
  }

  private computeDigest(): number {
    let digest = 0;
    for (const [key, versions] of this.history)
      for (const version of versions) digest = (digest + versionDigest(key, version)) >>> 0;
    return digest;
  }
}
