// One simulated server: the production host loop (replica/raft-host.ts RaftHost) driving a
// consensus engine (RaftNode or PaxosNode), with its seams filled by simulated parts: the
// scheduler is the simulation's virtual clock, the durable log is a SimDisk whose fsync completes
// on a simulated event, the sender is the simulated network, the state machine a KvStateMachine.
// So every rule of the loop (send before our fsync, votes and acks only after it, early apply of
// entries already durable, persist before apply, snapshot install) runs here exactly as in the
// server. A crash drops everything not on the disk; a restart builds a new engine and host from
// the disk alone.

import type {
  ConfChange,
  ConsensusEngine,
  ConsensusFactory,
  ProposeResult,
  RaftConfig,
  ReadOnlyOption,
  Ready,
  Status,
} from '../raft/api.js';
import { decodeConfChange } from '../raft/confchange.js';
import { MemoryStorage } from '../raft/memory-storage.js';
import {
  type ConfState,
  EMPTY_BYTES,
  type Entry,
  EntryType,
  type HardState,
  type Message,
  MessageType,
  type NodeId,
  type ReadState,
  Role,
  type Snapshot,
} from '../raft/types.js';
import {
  type DurableLog,
  type HostScheduler,
  type MessageSender,
  RaftHost,
  type RaftHostEvents,
  type RaftHostOptions,
  type StateMachine,
} from '../replica/raft-host.js';
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
  /** Runs `run` once the current event and the microtasks it started are done (setImmediate). */
  soon(run: () => void): void;
  /** A proposal (by id) was applied on this node at index. */
  onProposalApplied(node: SimNode, proposalId: number, key: string, index: number): void;
  onConfChangeApplied(node: SimNode, confState: ConfState, index: number): void;
  /** A ReadIndex request is served: the state machine has applied up to at least readIndex. */
  onReadServed(node: SimNode, context: Uint8Array, readIndex: number): void;
  /** The host loop stopped on an error (a violated invariant inside it, a broken core). */
  onFatal(node: SimNode, error: Error): void;
  /** Whether trace() records anything (so lines are built only when they are read). */
  readonly tracing: boolean;
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
  /** RaftConfig.quiesce. */
  quiesce?: boolean;
  /** The application state a snapshot at `index` restores to; default KvStateMachine.restore. */
  restoreApp?: (index: number, confState: ConfState, data: Uint8Array) => KvStateMachine;
  /** Passed to every RaftHost (tests: the order-violating mutation). */
  hostOptions?: Omit<RaftHostOptions, 'scheduler'>;
}

type LogUpdate = Parameters<DurableLog['persist']>[0];

const RESOLVED = Promise.resolve();

export class SimNode {
  raft: ConsensusEngine | undefined;
  /** The production host loop of this incarnation. */
  host: RaftHost | undefined;
  storage = new MemoryStorage();
  app = new KvStateMachine();
  incarnation = 0;
  /** Current fsync latency of this node's disk (raised while the disk is "slow"). */
  fsyncLatencyUs: number;
  /** Permanently stopped (removed from the cluster). */
  decommissioned = false;
  /** While virtual time is below this, the process is frozen (a GC pause, SIGSTOP). */
  pausedUntilUs = 0;
  /** Ticks since the simulated transport last checked its peers' liveness (SimOptions.quiesce). */
  keepAliveTicks = 0;
  /** Ticks skipped while the host hibernated (its core quiesced). */
  hibernatedTicks = 0;
  /** This node's tick period: clocks drift, so nodes tick at slightly different rates. */
  tickIntervalUs = 10_000;
  /** Virtual time of this incarnation's last tick (0 before the first). */
  lastTickUs = 0;
  /** Something acted on this node during the current event (checked after it). */
  touched = false;
  /** Read states waiting for the state machine to reach their index. */
  private readsWaiting: ReadState[] = [];
  private lastRole: Role = Role.Follower;
  /** The write the host waits on; its simulated fsync completes in a later event. */
  private pendingFsync: { update: LogUpdate; resolve: () => void } | undefined;
  /** The host's tick, registered through the scheduler. */
  private tickCallback: (() => void) | undefined;
  /** Ready cycles since the last event ended. */
  private readyLoops = 0;
  /** Entries handed to the state machine whose apply the host has not yet reported. */
  private applying = false;

  constructor(
    readonly id: NodeId,
    readonly disk: SimDisk,
    private readonly sim: SimNodeHost,
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
    // As the server: the snapshot's data stays on disk (the sender streams it from there).
    if (snap.metadata.index > 0) this.storage.applySnapshot({ metadata: snap.metadata, data: EMPTY_BYTES });
    const entries = disk.entriesAfterSnapshot();
    this.storage.append(entries);
    const commit = Math.max(disk.hardState.commit, snap.metadata.index);
    this.storage.setHardState({ ...disk.hardState, commit });
    this.app = this.restoreState(snap.metadata.index, snap.metadata.confState, snap.data);
    this.sim.checker.startNode(this.id, this.incarnation, {
      snapshotIndex: snap.metadata.index,
      snapshotTerm: snap.metadata.term,
      commit,
      term: disk.hardState.term,
      entries: entries.map((e) => ({ index: e.index, term: e.term, key: entryKey(e.type, e.data) })),
    });
    this.sim.checker.observeRestore(this.id, snap.metadata.index, this.app.stateHash);
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
      quiesce: this.config.quiesce === true,
    };
    const core = this.config.createCore(raftConfig);
    this.raft = core;
    this.lastRole = Role.Follower;
    this.pendingFsync = undefined;
    this.applying = false;
    this.readyLoops = 0;
    this.host = new RaftHost(
      new ObservedCore(core, this),
      this.storage,
      this.durableLog(),
      this.sender(),
      this.stateMachine(),
      this.hostEvents(),
      this.tickIntervalUs / 1000,
      { ...this.config.hostOptions, scheduler: this.scheduler() },
    );
    this.host.start();
    this.touched = true;
  }

  /** Power loss: the process and everything not yet durable vanish. */
  crash(): void {
    this.host?.stop();
    this.host = undefined;
    this.raft = undefined;
    this.pendingFsync = undefined;
    this.applying = false;
    this.tickCallback = undefined;
    this.readsWaiting = [];
    this.pausedUntilUs = 0;
  }

  /** One tick of the host's interval timer. */
  tick(): void {
    const tick = this.tickCallback;
    if (tick === undefined) {
      if (this.host === undefined) throw new SimulatorError(`node ${this.id} is down`);
      this.hibernatedTicks++; // hibernating: the host gave its timer back
      return;
    }
    this.touched = true;
    tick();
  }

  step(message: Message): void {
    this.core().step(message);
    this.afterCall();
  }

  propose(data: Uint8Array): ProposeResult {
    const result = this.core().propose(data);
    this.afterCall();
    return result;
  }

  /** Runs fn against the core, then lets the host process its output (for admin operations). */
  withCore<T>(fn: (raft: ConsensusEngine) => T): T {
    const result = fn(this.core());
    this.afterCall();
    return result;
  }

  /** The host waits for a simulated fsync. */
  get awaitingFsync(): boolean {
    return this.pendingFsync !== undefined;
  }

  /**
   * The host is in the middle of a batch and not (only) waiting for the disk: microtasks will
   * move it. While its fsync is pending it may still be applying entries already durable.
   */
  get hostRunning(): boolean {
    return this.host?.busy === true && (this.pendingFsync === undefined || this.applying);
  }

  get role(): Role {
    return this.lastRole;
  }

  /** The simulated fsync of the pending write finished: it is durable, the host goes on. */
  completeFsync(): void {
    const pending = this.pendingFsync;
    if (!pending || !this.raft)
      throw new SimulatorError(`node ${this.id}: fsync completion without a pending write`);
    this.pendingFsync = undefined;
    this.touched = true;
    this.makeDurable(pending.update);
    pending.resolve();
  }

  /** After every event (once the hosts are idle or wait for a disk): observe the role. */
  afterEvent(): void {
    this.touched = false;
    this.readyLoops = 0;
    const raft = this.raft;
    if (!raft) return;
    const status = raft.status();
    const role = status.softState.role;
    if (role !== this.lastRole) this.sim.trace?.(`n${this.id} becomes ${role} term ${status.hardState.term}`);
    this.lastRole = role;
    this.sim.checker.observeRole(this.id, status.hardState.term, role === Role.Leader, status.lastIndex);
  }

  /** What the core hands out, seen before the host acts on it (called by ObservedCore). */
  observeReady(rd: Ready): void {
    if (++this.readyLoops > READY_LOOPS_PER_EVENT_MAX) {
      throw new InvariantViolation('core-contract', `node ${this.id}: hasReady() stays true (livelock)`);
    }
    this.checkMustSync(rd);
    const checker = this.sim.checker;
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

  private core(): ConsensusEngine {
    if (!this.raft) throw new SimulatorError(`node ${this.id} is down`);
    return this.raft;
  }

  /** As the server after stepping the core: process its output at the end of the turn. */
  private afterCall(): void {
    this.touched = true;
    this.host?.schedule();
  }

  private checkMustSync(rd: Ready): void {
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
  }

  // ---- the host's seams, simulated ----------------------------------------------------------

  private scheduler(): HostScheduler {
    return {
      every: (_intervalMs, tick) => {
        // The simulation's tick events (with this node's clock drift and pauses) call it.
        this.tickCallback = tick;
        return () => {
          if (this.tickCallback === tick) this.tickCallback = undefined;
        };
      },
      soon: (run) => this.sim.soon(run),
    };
  }

  private durableLog(): DurableLog {
    return {
      persist: (update) => {
        if (this.fsyncLatencyUs <= 0) {
          this.makeDurable(update);
          return RESOLVED;
        }
        if (this.pendingFsync) throw new SimulatorError(`node ${this.id}: a second write before the fsync`);
        if (this.sim.tracing)
          this.sim.trace?.(`n${this.id} writes ${describeUpdate(update)}, fsync ${this.fsyncLatencyUs}us`);
        return new Promise<void>((resolve) => {
          this.pendingFsync = { update, resolve };
          this.sim.scheduleFsync(this, this.fsyncLatencyUs);
        });
      },
      // Only the commit index moved: recorded without an fsync (Raft relearns it after a crash).
      persistCommit: (hardState) => this.makeDurable({ hardState, entries: [] }),
    };
  }

  private makeDurable(update: LogUpdate): void {
    const hs = update.hardState;
    if (hs) this.sim.checker.observeDurableHardState(this.id, this.disk.hardState, hs);
    this.disk.persist(hs, update.entries, update.snapshot);
  }

  private sender(): MessageSender {
    return {
      send: (messages) => {
        for (const m of messages) {
          this.checkDurable(m);
          this.sim.send(this, m.type === MessageType.Snapshot ? this.withData(m) : m);
        }
      },
      flush: () => undefined,
    };
  }

  /**
   * A granted vote (a Paxos promise) vouches for a durable term, an append acknowledgement for
   * durable entries up to its index: what a crash right now would keep. The host must not let
   * either leave before its fsync (Ready.messagesAfterPersist).
   */
  private checkDurable(m: Message): void {
    if (m.reject) return;
    const durable = this.disk.hardState;
    if (m.type === MessageType.VoteResponse && durable.term < m.term) {
      throw new InvariantViolation(
        'ack-before-durable',
        `n${this.id} grants n${m.to} its vote in term ${m.term} while its disk holds term ${durable.term}`,
      );
    }
    if (m.type === MessageType.AppendResponse && m.index > this.disk.lastIndex()) {
      throw new InvariantViolation(
        'ack-before-durable',
        `n${this.id} acknowledges entries up to ${m.index} to n${m.to} while its disk holds up to ${this.disk.lastIndex()}`,
      );
    }
  }

  /**
   * A snapshot message carries the data of that snapshot's file on disk, as the server streams
   * it (the in-memory log keeps only a snapshot's metadata).
   */
  private withData(m: Message): Message {
    if (m.snapshot === undefined || m.snapshot.data.length > 0) return m;
    const data = this.disk.snapshotFiles.get(m.snapshot.metadata.index);
    if (data === undefined) {
      throw new SimulatorError(
        `node ${this.id} sends snapshot ${m.snapshot.metadata.index}, not on its disk`,
      );
    }
    return { ...m, snapshot: { metadata: m.snapshot.metadata, data } };
  }

  private stateMachine(): StateMachine {
    return {
      restoreSnapshot: async (snapshot) => {
        this.restoreApp(snapshot);
      },
      applyEntries: async (entries) => {
        // Until onApplied, the host is still busy with this apply even while it waits for an
        // fsync (an early apply): the simulation lets it finish before the next event.
        this.applying = true;
        try {
          const raft = this.core();
          for (const e of entries) this.applyEntry(raft, e);
        } catch (error) {
          this.applying = false;
          this.sim.onFatal(this, error instanceof Error ? error : new Error(String(error)));
          throw error;
        }
      },
    };
  }

  private hostEvents(): RaftHostEvents {
    return {
      onSoftState: () => undefined,
      onHardState: () => undefined,
      onReadStates: (states) => {
        for (const rs of states) this.readsWaiting.push(rs);
        this.serveReads();
      },
      onApplied: () => {
        this.applying = false;
        this.serveReads();
        this.maybeTakeSnapshot();
      },
      onFatal: (error) => this.sim.onFatal(this, error),
    };
  }

  private serveReads(): void {
    if (this.readsWaiting.length === 0) return;
    const applied = this.app.appliedIndex;
    const ready = this.readsWaiting.filter((rs) => rs.index <= applied);
    if (ready.length === 0) return;
    this.readsWaiting = this.readsWaiting.filter((rs) => rs.index > applied);
    for (const rs of ready) this.sim.onReadServed(this, rs.context, rs.index);
  }

  private restoreApp(snapshot: Snapshot): void {
    const { index, confState } = snapshot.metadata;
    this.app = this.restoreState(index, confState, snapshot.data);
    this.sim.checker.observeRestore(this.id, index, this.app.stateHash);
    this.sim.trace?.(`n${this.id} installs snapshot at ${index}`);
  }

  private restoreState(index: number, confState: ConfState, data: Uint8Array): KvStateMachine {
    return (this.config.restoreApp ?? KvStateMachine.restore)(index, confState, data);
  }

  private applyEntry(raft: ConsensusEngine, e: Entry): void {
    const key = entryKey(e.type, e.data);
    let needsProposal = e.data.length > 0;
    if (e.type === EntryType.ConfChange) {
      const change = decodeConfChange(e.data);
      needsProposal = change.changes.length > 0;
      const confState = raft.applyConfChange(change);
      const before = this.app.confState;
      this.app.confState = confState;
      this.app.onConfChange(before);
      this.sim.onConfChangeApplied(this, confState, e.index);
    }
    this.app.apply(e.index, e.type, e.data, key);
    this.sim.checker.observeApply(
      this.id,
      { index: e.index, term: e.term, key },
      this.app.stateHash,
      needsProposal,
    );
    if (e.type === EntryType.Normal && e.data.length > 0) {
      const proposalId = decodeProposalId(e.data);
      if (proposalId !== undefined) this.sim.onProposalApplied(this, proposalId, key, e.index);
    }
  }

  /** As the server: every so many applied entries, a snapshot, and the log compacted behind it. */
  private maybeTakeSnapshot(): void {
    const applied = this.app.appliedIndex;
    const snapIndex = this.disk.snapshot.metadata.index;
    if (applied - snapIndex < this.config.snapshotEveryEntries) return;
    if (applied > this.storage.lastIndex() || applied <= this.storage.snapshot().metadata.index) return;
    const snapshot: Snapshot = {
      metadata: { index: applied, term: this.storage.term(applied), confState: this.app.confState },
      data: this.app.encode(),
    };
    this.storage.createSnapshot(applied, this.app.confState, EMPTY_BYTES);
    const compactIndex = applied - this.config.compactionKeepEntries;
    if (compactIndex > this.storage.firstIndex()) this.storage.compact(compactIndex);
    this.disk.saveSnapshot(snapshot, compactIndex);
  }
}

/** The engine as the host sees it: every Ready is observed by the invariant checker first. */
class ObservedCore implements ConsensusEngine {
  constructor(
    private readonly core: ConsensusEngine,
    private readonly node: SimNode,
  ) {}

  get pendingSnapshot(): Snapshot | undefined {
    return this.core.pendingSnapshot;
  }
  tick(): void {
    this.core.tick();
  }
  fastForwardElection(): boolean {
    return this.core.fastForwardElection();
  }
  step(message: Message): void {
    this.core.step(message);
  }
  propose(data: Uint8Array): ProposeResult {
    return this.core.propose(data);
  }
  proposeConfChange(change: ConfChange): ProposeResult {
    return this.core.proposeConfChange(change);
  }
  readIndex(context: Uint8Array): ProposeResult {
    return this.core.readIndex(context);
  }
  transferLeadership(target: NodeId): void {
    this.core.transferLeadership(target);
  }
  applyConfChange(change: ConfChange): ConfState {
    return this.core.applyConfChange(change);
  }
  reportUnreachable(peer: NodeId): void {
    this.core.reportUnreachable(peer);
  }
  get quiesced(): boolean | undefined {
    return this.core.quiesced;
  }
  reportSnapshot(peer: NodeId, ok: boolean): void {
    this.core.reportSnapshot(peer, ok);
  }
  hasReady(): boolean {
    return this.core.hasReady();
  }
  ready(): Ready {
    const rd = this.core.ready();
    this.node.observeReady(rd);
    return rd;
  }
  advance(ready: Ready): void {
    this.core.advance(ready);
  }
  status(): Status {
    return this.core.status();
  }
}

function describeUpdate(update: LogUpdate): string {
  const parts: string[] = [];
  const hs: HardState | undefined = update.hardState;
  if (hs) parts.push(`term=${hs.term} vote=${hs.vote} commit=${hs.commit}`);
  const first = update.entries[0];
  const last = update.entries.at(-1);
  if (first && last) parts.push(`ents=${first.index}..${last.index}`);
  if (update.snapshot) parts.push(`snapshot=${update.snapshot.metadata.index}`);
  return parts.join(' ');
}
