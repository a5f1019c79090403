// A tiny synchronous network of RaftNodes for the core's tests: every Ready is persisted to a
// MemoryStorage at once, its messages queued, its committed entries applied; messages are
// delivered in FIFO order unless a test drops them (partitions, filters).

import assert from 'node:assert/strict';
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
  type RaftConfig,
  RaftNode,
  type ReadState,
  type Ready,
  type Rng,
  Role,
} from '../../src/raft/index.js';

/** Deterministic PRNG (mulberry32) so election timeouts vary per node but replay exactly. */
export class SeededRng implements Rng {
  private state: number;
  constructor(seed: number) {
    this.state = seed >>> 0;
  }
  nextInt(bound: number): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    const r = ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    return Math.floor(r * bound);
  }
}

export const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
export const dec = (b: Uint8Array): string => new TextDecoder().decode(b);

export interface TestPeer {
  id: NodeId;
  node: RaftNode;
  storage: MemoryStorage;
  /** Application state restored from the last snapshot installed (the test app's encoding). */
  snapshotData: Uint8Array | undefined;
  /** Application state: every normal entry applied, in order. */
  applied: Entry[];
  appliedIndex: number;
  readStates: ReadState[];
  confState: ConfState;
  alive: boolean;
}

export type ConfigOverrides = Partial<Omit<RaftConfig, 'id' | 'storage' | 'rng'>>;

export type MessageFilter = (m: Message) => boolean;

const STEPS_MAX = 100_000;

export class Network {
  readonly peers = new Map<NodeId, TestPeer>();
  private queue: Message[] = [];
  /** Return true to drop the message. */
  filters: MessageFilter[] = [];
  /** Rewrite a message before delivery (e.g. trim entries); runs after filters. */
  transforms: ((m: Message) => Message)[] = [];
  /** When false, snapshots are not reported as delivered; the test calls reportSnapshot itself. */
  autoReportSnapshots = true;
  /** Every message delivered, for tests that count traffic. */
  delivered: Message[] = [];
  recordDelivered = false;

  constructor(
    voters: NodeId[],
    readonly overrides: ConfigOverrides = {},
    learners: NodeId[] = [],
  ) {
    const cs: ConfState = { ...emptyConfState(), voters: [...voters], learners: [...learners] };
    for (const id of [...voters, ...learners]) this.addPeer(id, cs);
  }

  /** Adds a node; with a confState it is a founding member, without it joins empty. */
  addPeer(id: NodeId, bootstrap?: ConfState, overrides: ConfigOverrides = {}): TestPeer {
    const storage = new MemoryStorage();
    if (bootstrap) storage.bootstrap(bootstrap);
    const peer: TestPeer = {
      id,
      node: this.newNode(id, storage, 0, overrides),
      storage,
      applied: [],
      appliedIndex: storage.firstIndex() - 1,
      readStates: [],
      snapshotData: undefined,
      confState: storage.initialState().confState,
      alive: true,
    };
    this.peers.set(id, peer);
    return peer;
  }

  private newNode(id: NodeId, storage: MemoryStorage, applied: number, overrides: ConfigOverrides): RaftNode {
    return new RaftNode({
      electionTicks: 10,
      heartbeatTicks: 1,
      ...this.overrides,
      ...overrides,
      id,
      storage,
      rng: new SeededRng(id * 7919),
      applied,
    });
  }

  peer(id: NodeId): TestPeer {
    const p = this.peers.get(id);
    assert.ok(p, `no peer ${id}`);
    return p;
  }

  node(id: NodeId): RaftNode {
    return this.peer(id).node;
  }

  /** Crash: the node loses everything not in its storage (nothing, here: persistence is synchronous). */
  crash(id: NodeId): void {
    const p = this.peer(id);
    p.alive = false;
    this.queue = this.queue.filter((m) => m.to !== id && m.from !== id);
  }

  /** Restart from storage; the application state (applied index) survives as if stored atomically. */
  restart(id: NodeId, overrides: ConfigOverrides = {}): void {
    const p = this.peer(id);
    p.node = this.newNode(id, p.storage, p.appliedIndex, overrides);
    p.alive = true;
  }

  isolate(id: NodeId): void {
    this.filters.push((m) => m.to === id || m.from === id);
  }

  partition(a: NodeId[], b: NodeId[]): void {
    const inA = new Set(a);
    const inB = new Set(b);
    this.filters.push((m) => (inA.has(m.from) && inB.has(m.to)) || (inB.has(m.from) && inA.has(m.to)));
  }

  heal(): void {
    this.filters = [];
  }

  /** Handles one Ready of one node; returns whether there was one. */
  processReady(id: NodeId): boolean {
    const p = this.peer(id);
    if (!p.alive || !p.node.hasReady()) return false;
    const rd = p.node.ready();
    this.persist(p, rd);
    this.queue.push(...rd.messages, ...rd.messagesAfterPersist);
    this.apply(p, rd);
    p.readStates.push(...rd.readStates);
    p.node.advance(rd);
    return true;
  }

  private persist(p: TestPeer, rd: Ready): void {
    if (rd.snapshot) p.storage.applySnapshot(rd.snapshot);
    if (rd.entries.length > 0) p.storage.append(rd.entries);
    if (rd.hardState) p.storage.setHardState(rd.hardState);
  }

  private apply(p: TestPeer, rd: Ready): void {
    if (rd.snapshot) {
      p.appliedIndex = rd.snapshot.metadata.index;
      p.confState = rd.snapshot.metadata.confState;
      p.applied = [];
      p.snapshotData = rd.snapshot.data;
    }
    for (const e of rd.committedEntries) {
      assert.equal(e.index, p.appliedIndex + 1, `node ${p.id} applies ${e.index} after ${p.appliedIndex}`);
      p.appliedIndex = e.index;
      if (e.type === EntryType.ConfChange) {
        const cc: ConfChange = decodeConfChange(e.data);
        p.confState = p.node.applyConfChange(cc);
        p.storage.setConfState(p.confState);
      } else if (e.data.byteLength > 0) {
        p.applied.push(e);
      }
    }
  }

  /** Delivers one queued message; returns false when the queue is empty. */
  deliverOne(): boolean {
    const m = this.queue.shift();
    if (!m) return false;
    const to = this.peers.get(m.to);
    if (!to?.alive) return true;
    if (this.filters.some((f) => f(m))) return true;
    let msg = m;
    for (const t of this.transforms) msg = t(msg);
    if (this.recordDelivered) this.delivered.push(msg);
    to.node.step(msg);
    // The transport reports a streamed snapshot's outcome back to the sender's core.
    if (msg.type === MessageType.Snapshot && this.autoReportSnapshots) {
      const from = this.peers.get(msg.from);
      if (from?.alive) from.node.reportSnapshot(msg.to, true);
    }
    return true;
  }

  /** Runs readies and deliveries until nothing is left to do. */
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

  /** Takes the queued messages out (so a test can inspect or re-order them). */
  takeQueue(): Message[] {
    const q = this.queue;
    this.queue = [];
    return q;
  }

  send(m: Message): void {
    this.queue.push(m);
  }

  tick(id: NodeId, times = 1): void {
    for (let i = 0; i < times; i++) this.peer(id).node.tick();
  }

  tickAll(times = 1): void {
    for (let i = 0; i < times; i++) {
      for (const p of this.peers.values()) if (p.alive) p.node.tick();
      this.stabilize();
    }
  }

  /** Makes `id` campaign now (as if its election timeout fired) and runs to quiescence. */
  campaign(id: NodeId): void {
    this.node(id).step(message({ type: MessageType.Hup }));
    this.stabilize();
  }

  leaders(): NodeId[] {
    return [...this.peers.values()]
      .filter((p) => p.alive && p.node.status().softState.role === Role.Leader)
      .map((p) => p.id);
  }

  leader(): NodeId {
    const ls = this.leaders();
    assert.equal(ls.length, 1, `expected one leader, got [${ls.join(',')}]`);
    return ls[0]!;
  }

  /** Ticks everyone until a leader exists; returns it. */
  electLeader(ticksMax = 200): NodeId {
    for (let i = 0; i < ticksMax; i++) {
      this.tickAll();
      const ls = this.leaders();
      if (ls.length === 1) return ls[0]!;
    }
    throw new Error('no leader elected');
  }

  appliedData(id: NodeId): string[] {
    return this.peer(id).applied.map((e) => dec(e.data));
  }

  role(id: NodeId): Role {
    return this.node(id).status().softState.role;
  }

  term(id: NodeId): number {
    return this.node(id).status().hardState.term;
  }
}
