// One simulated server: drives a consensus engine (RaftNode or PaxosNode) exactly as a real server
// does. ready() → hand entries, hard state and snapshot to the simulated disk, send `messages` at
// once → when the simulated fsync completes: make the data durable, update the MemoryStorage the
// core reads, send `messagesAfterPersist`, apply the snapshot and committed entries, then
// advance(). A crash drops everything that is not on the disk; a restart builds a new engine from
// the disk alone.

import type {
  ConsensusEngine,
  ConsensusFactory,
  ProposeResult,
  RaftConfig,
  ReadOnlyOption,
  Ready,
} from '../raft/api.js';
import { decodeConfChange } from '../raft/confchange.js';
import { MemoryStorage } from '../raft/memory-storage.js';
import {
  type ConfState,
  type Entry,
  EntryType,
  type Message,
  type NodeId,
  type ReadState,
  Role,
} from '../raft/types.js';
import { decodeProposalId, entryKey, KvStateMachine } from './app.js';
import type { SimDisk } from './disk.js';
import { InvariantViolation, SimulatorError } from './errors.js';
import type { InvariantChecker } from './invariants.js';
import type { SimRng } from './rng.js';

/** Ready cycles one event may cause before we call it a livelock in the core. */
const READY_LOOPS_PER_EVENT_MAX = 1000;

export interface SimNodeHost {
  readonly checker: InvariantChecker;
  /** Sends a message on the simulated network. */
  send(from: SimNode, message: Message): void;
  /** Asks to be called back (completeFsync) after delayUs, if the node is still this incarnation. */
  scheduleFsync(node: SimNode, delayUs: number): void;
  /** A proposal (by id) was applied on this node at index. */
  onProposalApplied(node: SimNode, proposalId: number, key: string, index: number): void;
  onConfChangeApplied(node: SimNode, confState: ConfState, index: number): void;
  /** A ReadIndex request is served: the state machine has applied up to at least readIndex. */
  onReadServed(node: SimNode, context: Uint8Array, readIndex: number): void;
  trace?(line: string): void;
}

/**
 * Builds the consensus engine for a node (Raft or Multi-Paxos); the seam also lets tests run the
 * simulator on a broken core.
 */
export type CoreFactory = ConsensusFactory;

export interface SimNodeConfig {
  createCore: CoreFactory;
  electionTicks: number;
  heartbeatTicks: number;
  /** The application snapshots after this many applied entries... */
  snapshotEveryEntries: number;
  /** ...and keeps this many entries behind the snapshot for slow followers. */
  compactionKeepEntries: number;
  maxMessageBytes: number;
  inflightMessagesMax: number;
  checkQuorum: boolean;
  preVote: boolean;
  /** 'lease-based' lets a leader answer reads alone under a lease (needs checkQuorum). */
  readOnlyOption?: ReadOnlyOption;
}

export class SimNode {
  raft: ConsensusEngine | undefined;
  storage = new MemoryStorage();
  app = new KvStateMachine();
  incarnation = 0;
  /** The Ready waiting for its fsync; the core is not asked for another until it completes. */
  private pending: Ready | undefined;
  /** Read states waiting for the state machine to reach their index. */
  private readsWaiting: ReadState[] = [];
  /** Current fsync latency of this node's disk (raised while the disk is "slow"). */
  fsyncLatencyUs: number;
  /** Permanently stopped (removed from the cluster). */
  decommissioned = false;
  private lastRole: Role = Role.Follower;
  /** While virtual time is below this, the process is frozen (a GC pause, SIGSTOP). */
  pausedUntilUs = 0;
  /** This node's tick period: clocks drift, so nodes tick at slightly different rates. */
  tickIntervalUs = 10_000;
  /** Virtual time of this incarnation's last tick (0 before the first). */
  lastTickUs = 0;

  constructor(
    readonly id: NodeId,
    readonly disk: SimDisk,
    private readonly host: SimNodeHost,
    private readonly rng: SimRng,
    private readonly config: SimNodeConfig,
    fsyncLatencyUs: number,
  ) {
    this.fsyncLatencyUs = fsyncLatencyUs;
  }

  get running(): boolean {
    return this.raft !== undefined;
  }

  /** Starts (or restarts) the node from its disk. */
  start(): void {
    if (this.raft) throw new SimulatorError(`node ${this.id} started twice`);
    if (this.decommissioned) throw new SimulatorError(`node ${this.id} is decommissioned`);
    this.incarnation++;
    this.lastTickUs = 0;
    const disk = this.disk;
    const snap = disk.snapshot;
    this.storage = new MemoryStorage();
    if (snap.metadata.index > 0) this.storage.applySnapshot(snap);
    const entries = disk.entriesAfterSnapshot();
    this.storage.append(entries);
    const commit = Math.max(disk.hardState.commit, snap.metadata.index);
    this.storage.setHardState({ ...disk.hardState, commit });
    this.app = KvStateMachine.restore(snap.metadata.index, snap.metadata.confState, snap.data);
    this.host.checker.startNode(this.id, this.incarnation, {
      snapshotIndex: snap.metadata.index,
      snapshotTerm: snap.metadata.term,
      commit,
      term: disk.hardState.term,
      entries: entries.map((e) => ({ index: e.index, term: e.term, key: entryKey(e.type, e.data) })),
    });
    this.host.checker.observeRestore(this.id, snap.metadata.index, this.app.hash);
    const raftConfig: RaftConfig = {
      id: this.id,
      electionTicks: this.config.electionTicks,
      heartbeatTicks: this.config.heartbeatTicks,
      storage: this.storage,
      rng: this.rng,
      applied: snap.metadata.index,
      maxMessageBytes: this.config.maxMessageBytes,
      inflightMessagesMax: this.config.inflightMessagesMax,
      checkQuorum: this.config.checkQuorum,
      preVote: this.config.preVote,
      readOnlyOption: this.config.readOnlyOption,
    };
    this.raft = this.config.createCore(raftConfig);
    this.lastRole = Role.Follower;
    this.pending = undefined;
    this.afterEvent();
  }

  /** Power loss: the process and everything not yet durable vanish. */
  crash(): void {
    this.raft = undefined;
    this.pending = undefined;
    this.readsWaiting = [];
    this.pausedUntilUs = 0;
  }

  tick(): void {
    this.core().tick();
    this.afterEvent();
  }

  step(message: Message): void {
    this.core().step(message);
    this.afterEvent();
  }

  propose(data: Uint8Array): ProposeResult {
    const result = this.core().propose(data);
    this.afterEvent();
    return result;
  }

  /** Runs fn against the core, then drives Ready processing and checks (for admin operations). */
  withCore<T>(fn: (raft: ConsensusEngine) => T): T {
    const result = fn(this.core());
    this.afterEvent();
    return result;
  }

  /** A Ready is waiting for its simulated fsync. */
  get hasPendingReady(): boolean {
    return this.pending !== undefined;
  }

  get role(): Role {
    return this.lastRole;
  }

  /** The simulated fsync of the pending Ready finished. */
  completeFsync(): void {
    const rd = this.pending;
    if (!rd || !this.raft)
      throw new SimulatorError(`node ${this.id}: fsync completion without a pending Ready`);
    this.pending = undefined;
    this.finishReady(rd);
    this.afterEvent();
  }

  private core(): ConsensusEngine {
    if (!this.raft) throw new SimulatorError(`node ${this.id} is down`);
    return this.raft;
  }

  /** After every event: process Readies, then observe the role for election safety. */
  private afterEvent(): void {
    this.pump();
    const raft = this.raft;
    if (!raft) return;
    const status = raft.status();
    const role = status.softState.role;
    if (role !== this.lastRole)
      this.host.trace?.(`n${this.id} becomes ${role} term ${status.hardState.term}`);
    this.lastRole = role;
    this.host.checker.observeRole(this.id, status.hardState.term, role === Role.Leader, status.lastIndex);
  }

  private pump(): void {
    for (let loops = 0; this.raft && !this.pending && this.raft.hasReady(); loops++) {
      if (loops >= READY_LOOPS_PER_EVENT_MAX) {
        throw new InvariantViolation('core-contract', `node ${this.id}: hasReady() stays true (livelock)`);
      }
      const rd = this.raft.ready();
      this.observeReady(rd);
      for (const m of rd.messages) this.host.send(this, m);
      if (this.needsSync(rd) && this.fsyncLatencyUs > 0) {
        this.pending = rd;
        this.host.scheduleFsync(this, this.fsyncLatencyUs);
        return;
      }
      this.finishReady(rd);
    }
  }

  private needsSync(rd: Ready): boolean {
    const hs = rd.hardState;
    const disk = this.disk.hardState;
    const needed =
      rd.entries.length > 0 ||
      rd.snapshot !== undefined ||
      (hs !== undefined && (hs.term !== disk.term || hs.vote !== disk.vote));
    if (needed && !rd.mustSync) {
      throw new InvariantViolation(
        'core-contract',
        `node ${this.id}: Ready needs an fsync but mustSync is false`,
      );
    }
    return rd.mustSync;
  }

  private observeReady(rd: Ready): void {
    const checker = this.host.checker;
    if (rd.hardState) checker.observeTerm(this.id, rd.hardState.term);
    if (rd.snapshot)
      checker.observeLogSnapshot(this.id, rd.snapshot.metadata.index, rd.snapshot.metadata.term);
    if (rd.entries.length > 0) {
      checker.observeEntries(
        this.id,
        rd.entries.map((e) => ({ index: e.index, term: e.term, key: entryKey(e.type, e.data) })),
      );
    }
    if (rd.hardState) checker.observeCommit(this.id, rd.hardState.commit, rd.hardState.term);
  }

  private finishReady(rd: Ready): void {
    const raft = this.core();
    if (rd.hardState) this.host.checker.observeDurableHardState(this.id, this.disk.hardState, rd.hardState);
    this.disk.persist(rd.hardState, rd.entries, rd.snapshot);
    if (rd.snapshot) this.storage.applySnapshot(rd.snapshot);
    this.storage.append(rd.entries);
    if (rd.hardState) this.storage.setHardState(rd.hardState);
    for (const m of rd.messagesAfterPersist) this.host.send(this, m);
    if (rd.snapshot)
      this.restoreApp(rd.snapshot.metadata.index, rd.snapshot.metadata.confState, rd.snapshot.data);
    for (const e of rd.committedEntries) this.applyEntry(raft, e);
    for (const rs of rd.readStates) this.readsWaiting.push(rs);
    this.serveReads();
    raft.advance(rd);
    this.maybeTakeSnapshot();
  }

  private serveReads(): void {
    if (this.readsWaiting.length === 0) return;
    const applied = this.app.appliedIndex;
    const ready = this.readsWaiting.filter((rs) => rs.index <= applied);
    if (ready.length === 0) return;
    this.readsWaiting = this.readsWaiting.filter((rs) => rs.index > applied);
    for (const rs of ready) this.host.onReadServed(this, rs.context, rs.index);
  }

  private restoreApp(index: number, confState: ConfState, data: Uint8Array): void {
    this.app = KvStateMachine.restore(index, confState, data);
    this.host.checker.observeRestore(this.id, index, this.app.hash);
    this.host.trace?.(`n${this.id} installs snapshot at ${index}`);
  }

  private applyEntry(raft: ConsensusEngine, e: Entry): void {
    const key = entryKey(e.type, e.data);
    let needsProposal = e.data.length > 0;
    if (e.type === EntryType.ConfChange) {
      const change = decodeConfChange(e.data);
      needsProposal = change.changes.length > 0;
      const confState = raft.applyConfChange(change);
      this.app.confState = confState;
      this.host.onConfChangeApplied(this, confState, e.index);
    }
    this.app.apply(e.index, e.type, e.data, key);
    this.host.checker.observeApply(
      this.id,
      { index: e.index, term: e.term, key },
      this.app.hash,
      needsProposal,
    );
    if (e.type === EntryType.Normal && e.data.length > 0) {
      const proposalId = decodeProposalId(e.data);
      if (proposalId !== undefined) this.host.onProposalApplied(this, proposalId, key, e.index);
    }
  }

  private maybeTakeSnapshot(): void {
    const applied = this.app.appliedIndex;
    const snapIndex = this.disk.snapshot.metadata.index;
    if (applied - snapIndex < this.config.snapshotEveryEntries) return;
    const snapshot = this.storage.createSnapshot(applied, this.app.confState, this.app.encode());
    const compactIndex = applied - this.config.compactionKeepEntries;
    if (compactIndex > snapIndex) this.storage.compact(compactIndex);
    this.disk.saveSnapshot(snapshot, compactIndex);
  }
}
