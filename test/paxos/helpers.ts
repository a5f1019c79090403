// A tiny synchronous network of PaxosNodes for the core's rule tests: every Ready is persisted to
// a MemoryStorage at once, its messages queued, its committed entries applied; messages are
// delivered in FIFO order unless a test drops or rewrites them.

import assert from 'node:assert/strict';
import { type PaxosConfig, PaxosNode } from '../../src/paxos/index.js';
import {
  type ConfChange,
  type ConfState,
  decodeConfChange,
  type Entry,
  EntryType,
  emptyConfState,
  MemoryStorage,
  type Message,
  MessageType,
  message,
  type NodeId,
  type ReadState,
  type Ready,
  Role,
} from '../../src/raft/index.js';
import { dec, enc, SeededRng } from '../raft/helpers.js';

export { dec, enc };

export interface PaxosPeer {
  id: NodeId;
  node: PaxosNode;
  storage: MemoryStorage;
  /** Values applied, in slot order ('' for a no-op). */
  applied: string[];
  appliedIndex: number;
  readStates: ReadState[];
  confState: ConfState;
  alive: boolean;
  /** Every Ready this node produced (for the durability-order rules). */
  readies: Ready[];
}

export type Overrides = Partial<Omit<PaxosConfig, 'id' | 'storage' | 'rng'>>;
export type MessageFilter = (m: Message) => boolean;

const STEPS_MAX = 100_000;

export class PaxosNetwork {
  readonly peers = new Map<NodeId, PaxosPeer>();
  private queue: Message[] = [];
  /** Return true to drop the message. */
  filters: MessageFilter[] = [];
  /** Rewrite a message before delivery; runs after filters. */
  transforms: ((m: Message) => Message)[] = [];
  delivered: Message[] = [];

  constructor(
    voters: NodeId[],
    readonly overrides: Overrides = {},
    learners: NodeId[] = [],
  ) {
    const cs: ConfState = { ...emptyConfState(), voters: [...voters], learners: [...learners] };
    for (const id of [...voters, ...learners]) this.addPeer(id, cs);
  }

  /** Adds a node; with a confState it is a founding member (bootstrapped at slot 1). */
  addPeer(id: NodeId, bootstrap?: ConfState, storage = new MemoryStorage()): PaxosPeer {
    if (bootstrap && storage.lastIndex() === 0) storage.bootstrap(bootstrap);
    const peer: PaxosPeer = {
      id,
      node: this.newNode(id, storage, storage.firstIndex() - 1),
      storage,
      applied: [],
      appliedIndex: storage.firstIndex() - 1,
      readStates: [],
      confState: storage.initialState().confState,
      alive: true,
      readies: [],
    };
    this.peers.set(id, peer);
    return peer;
  }

  private newNode(id: NodeId, storage: MemoryStorage, applied: number): PaxosNode {
    return new PaxosNode({
      electionTicks: 10,
      heartbeatTicks: 1,
      ...this.overrides,
      id,
      storage,
      rng: new SeededRng(id * 7919),
      applied,
    });
  }

  peer(id: NodeId): PaxosPeer {
    const p = this.peers.get(id);
    assert.ok(p, `no peer ${id}`);
    return p;
  }

  node(id: NodeId): PaxosNode {
    return this.peer(id).node;
  }

  crash(id: NodeId): void {
    this.peer(id).alive = false;
    this.queue = this.queue.filter((m) => m.to !== id && m.from !== id);
  }

  /** Restarts from storage (the applied index survives, as if stored with the data). */
  restart(id: NodeId): void {
    const p = this.peer(id);
    p.node = this.newNode(id, p.storage, p.appliedIndex);
    p.alive = true;
  }

  isolate(id: NodeId): void {
    this.filters.push((m) => m.to === id || m.from === id);
  }

  heal(): void {
    this.filters = [];
  }

  processReady(id: NodeId): boolean {
    const p = this.peer(id);
    if (!p.alive || !p.node.hasReady()) return false;
    const rd = p.node.ready();
    p.readies.push(rd);
    if (rd.snapshot) p.storage.applySnapshot(rd.snapshot);
    if (rd.entries.length > 0) p.storage.append(rd.entries);
    if (rd.hardState) p.storage.setHardState(rd.hardState);
    this.queue.push(...rd.messages, ...rd.messagesAfterPersist);
    if (rd.snapshot) {
      p.appliedIndex = rd.snapshot.metadata.index;
      p.confState = rd.snapshot.metadata.confState;
      p.applied = [];
    }
    for (const e of rd.committedEntries) {
      assert.equal(e.index, p.appliedIndex + 1, `node ${p.id} applies ${e.index} after ${p.appliedIndex}`);
      p.appliedIndex = e.index;
      if (e.type === EntryType.ConfChange) {
        const cc: ConfChange = decodeConfChange(e.data);
        p.confState = p.node.applyConfChange(cc);
        p.storage.setConfState(p.confState);
      } else {
        p.applied.push(dec(e.data));
      }
    }
    p.readStates.push(...rd.readStates);
    p.node.advance(rd);
    return true;
  }

  deliverOne(): boolean {
    const m = this.queue.shift();
    if (!m) return false;
    const to = this.peers.get(m.to);
    if (!to?.alive) return true;
    if (this.filters.some((f) => f(m))) return true;
    let msg = m;
    for (const t of this.transforms) msg = t(msg);
    this.delivered.push(msg);
    to.node.step(msg);
    if (msg.type === MessageType.Snapshot) {
      const from = this.peers.get(msg.from);
      if (from?.alive) from.node.reportSnapshot(msg.to, true);
    }
    return true;
  }

  stabilize(): void {
    for (let i = 0; i < STEPS_MAX; i++) {
      let progressed = false;
      for (const id of this.peers.keys()) if (this.processReady(id)) progressed = true;
      while (this.deliverOne()) progressed = true;
      if (!progressed) return;
    }
    throw new Error(`network did not stabilize within ${STEPS_MAX} rounds`);
  }

  /** Drains readies of all nodes into the queue without delivering anything. */
  collect(): Message[] {
    for (const id of this.peers.keys()) while (this.processReady(id)) {}
    return [...this.queue];
  }

  takeQueue(): Message[] {
    const q = this.queue;
    this.queue = [];
    return q;
  }

  send(m: Message): void {
    this.queue.push(m);
  }

  tickAll(times = 1): void {
    for (let i = 0; i < times; i++) {
      for (const p of this.peers.values()) if (p.alive) p.node.tick();
      this.stabilize();
    }
  }

  campaign(id: NodeId): void {
    this.node(id).step(message({ type: MessageType.Hup }));
    this.stabilize();
  }

  leaders(): NodeId[] {
    return [...this.peers.values()]
      .filter((p) => p.alive && p.node.status().softState.role === Role.Leader)
      .map((p) => p.id);
  }

  role(id: NodeId): Role {
    return this.node(id).status().softState.role;
  }

  ballot(id: NodeId): number {
    return this.node(id).status().hardState.term;
  }

  commit(id: NodeId): number {
    return this.node(id).committedIndex;
  }

  /** Non-empty values applied (no-ops left out). */
  values(id: NodeId): string[] {
    return this.peer(id).applied.filter((v) => v !== '');
  }
}

/**
 * A storage holding what an acceptor accepted before the test starts: the bootstrap snapshot
 * (slot 1) and then, per slot from 2 on, [ballot, value] (value '' is a no-op).
 */
export function acceptorStorage(
  voters: NodeId[],
  promised: { ballot: number; vote: NodeId },
  slots: [number, string][],
): MemoryStorage {
  const storage = new MemoryStorage();
  storage.bootstrap({ ...emptyConfState(), voters });
  const entries: Entry[] = slots.map(([ballot, value], i) => ({
    term: ballot,
    index: i + 2,
    type: EntryType.Normal,
    data: enc(value),
  }));
  storage.append(entries);
  storage.setHardState({ term: promised.ballot, vote: promised.vote, commit: 1 });
  return storage;
}
