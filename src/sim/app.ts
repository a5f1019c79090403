// The simulated application: a state machine that records which proposals were applied and at what
// index, plus a rolling hash of every applied entry so that two nodes' states can be compared in
// O(1) at any index (and across snapshots, which carry the hash).

import { type ConfState, EntryType, emptyConfState } from '../raft/types.js';
import { InvariantViolation } from './errors.js';

const PROPOSAL_MAGIC = 0x50;
const PROPOSAL_HEADER_BYTES = 5;
const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

/** Proposal payload: magic byte, 32-bit id (big-endian), then padding derived from the id. */
export function encodeProposal(proposalId: number, paddingBytes: number): Uint8Array {
  const data = new Uint8Array(PROPOSAL_HEADER_BYTES + paddingBytes);
  data[0] = PROPOSAL_MAGIC;
  new DataView(data.buffer).setUint32(1, proposalId >>> 0);
  for (let i = 0; i < paddingBytes; i++) data[PROPOSAL_HEADER_BYTES + i] = (proposalId * 31 + i) & 0xff;
  return data;
}

/** Proposal payload carrying a command: the header of encodeProposal, then `body`. */
export function encodeCommandProposal(proposalId: number, body: Uint8Array): Uint8Array {
  const data = new Uint8Array(PROPOSAL_HEADER_BYTES + body.length);
  data[0] = PROPOSAL_MAGIC;
  new DataView(data.buffer).setUint32(1, proposalId >>> 0);
  data.set(body, PROPOSAL_HEADER_BYTES);
  return data;
}

/** The bytes after a proposal's header (a command's body, or encodeProposal's padding). */
export function proposalBody(data: Uint8Array): Uint8Array {
  return data.subarray(PROPOSAL_HEADER_BYTES);
}

export function decodeProposalId(data: Uint8Array): number | undefined {
  if (data.length < PROPOSAL_HEADER_BYTES || data[0] !== PROPOSAL_MAGIC) return undefined;
  return new DataView(data.buffer, data.byteOffset, data.byteLength).getUint32(1);
}

export function fnv1a(bytes: Uint8Array, seed = FNV_OFFSET): number {
  let h = seed;
  for (let i = 0; i < bytes.length; i++) h = Math.imul(h ^ bytes[i]!, FNV_PRIME);
  return h >>> 0;
}

export function fnvString(text: string, seed: number): number {
  let h = seed;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), FNV_PRIME);
  return h >>> 0;
}

/** Identity of an entry's content, compared across nodes by the invariant checker. */
export function entryKey(type: EntryType, data: Uint8Array): string {
  if (type === EntryType.ConfChange) return `cc:${data.length}:${fnv1a(data)}`;
  if (data.length === 0) return 'noop';
  const id = decodeProposalId(data);
  if (id !== undefined) return `p${id}:${data.length}:${fnv1a(data)}`;
  return `n:${data.length}:${fnv1a(data)}`;
}

export class KvStateMachine {
  appliedIndex = 0;
  hash = FNV_OFFSET;
  confState: ConfState = emptyConfState();
  /** proposal id → index where it was first applied (later duplicates of a retry are no-ops). */
  readonly proposals = new Map<number, number>();

  apply(index: number, type: EntryType, data: Uint8Array, key: string): void {
    if (index !== this.appliedIndex + 1) {
      throw new InvariantViolation(
        'apply-regressed',
        `state machine applies ${index} after ${this.appliedIndex}`,
      );
    }
    this.appliedIndex = index;
    this.hash = fnvString(key, this.hash ^ index);
    if (type !== EntryType.Normal) return;
    const id = decodeProposalId(data);
    if (id !== undefined && !this.proposals.has(id)) this.proposals.set(id, index);
  }

  /**
   * The hash the per-group invariants compare across replicas at one index (a subclass may fold in
   * a digest of its content, recomputed on restore, so a snapshot that lost data is caught).
   */
  get stateHash(): number {
    return this.hash;
  }

  /** A ConfChange entry applied: `confState` is the new membership, `before` the old one. */
  onConfChange(_before: ConfState): void {}

  has(proposalId: number): boolean {
    return this.proposals.has(proposalId);
  }

  encode(): Uint8Array {
    return new TextEncoder().encode(JSON.stringify(this.snapshotState()));
  }

  /** What a snapshot holds (a subclass adds its own fields after these). */
  protected snapshotState(): Record<string, unknown> {
    return { hash: this.hash, proposals: [...this.proposals] };
  }

  /** Reads back what snapshotState() wrote. */
  protected loadSnapshotState(state: Record<string, unknown>): void {
    this.hash = state.hash as number;
    for (const [id, at] of state.proposals as [number, number][]) this.proposals.set(id, at);
  }

  static restore(index: number, confState: ConfState, data: Uint8Array): KvStateMachine {
    return KvStateMachine.restoreInto(new KvStateMachine(), index, confState, data);
  }

  /** Fills a fresh machine (of any subclass) from a snapshot at `index`. */
  static restoreInto<T extends KvStateMachine>(
    machine: T,
    index: number,
    confState: ConfState,
    data: Uint8Array,
  ): T {
    machine.appliedIndex = index;
    machine.confState = confState;
    if (data.length === 0) return machine;
    machine.loadSnapshotState(JSON.parse(new TextDecoder().decode(data)) as Record<string, unknown>);
    return machine;
  }
}
