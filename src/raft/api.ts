// The contract between the consensus core and whoever drives it (the server, the simulator).
// Read this file before using the core; node.ts implements it.

import type {
  ConfState,
  Entry,
  HardState,
  Message,
  NodeId,
  ReadState,
  Snapshot,
  SoftState,
} from './types.js';

/**
 * Read access to the persisted log, as the core needs it (etcd raft's Storage).
 * The driver writes to it (after making the data durable); the core only reads.
 */
export interface RaftStorage {
  /**
   * The persisted hard state and the membership as of the applied index passed in
   * RaftConfig.applied (MemoryStorage: the last setConfState() or snapshot). Conf changes in
   * committed entries after that index are re-delivered and must be re-applied by the driver.
   */
  initialState(): { hardState: HardState; confState: ConfState };
  /** Entries in [lo, hi), at least one if any exist, at most maxBytes in total otherwise. */
  entries(lo: number, hi: number, maxBytes: number): Entry[];
  /** Term of the entry at index; throws CompactedError / UnavailableError. */
  term(index: number): number;
  /** Index of the first entry still available (snapshot index + 1). */
  firstIndex(): number;
  lastIndex(): number;
  /** The most recent snapshot; may throw SnapshotTemporarilyUnavailableError. */
  snapshot(): Snapshot;
}

/** Injected randomness: the core has none of its own (determinism under the simulator). */
export interface Rng {
  /** A uniformly distributed integer in [0, bound). */
  nextInt(bound: number): number;
}

export type ReadOnlyOption = 'safe' | 'lease-based';

export interface RaftConfig {
  id: NodeId;
  /** Followers start an election after a random timeout in [electionTicks, 2*electionTicks). */
  electionTicks: number;
  heartbeatTicks: number;
  storage: RaftStorage;
  rng: Rng;
  /**
   * Last index the application has applied (on restart); committed entries after it are handed
   * out again. Default: the storage's snapshot index. Must not exceed the stored commit index.
   */
  applied?: number;
  /** Bound on the bytes of entries in one Append message (at least one entry is always sent). */
  maxMessageBytes?: number;
  /** Bound on Append messages in flight to one follower in the replicate state. Default 256. */
  inflightMessagesMax?: number;
  /** Bound on bytes of entries in flight to one follower; 0 = no bound. */
  inflightBytesMax?: number;
  /** Bound on bytes of proposed but uncommitted entries at the leader; 0 = no bound. */
  uncommittedBytesMax?: number;
  /** Bound on bytes of committed entries handed out in one Ready (at least one). Default 64 MiB. */
  committedBytesPerReadyMax?: number;
  checkQuorum?: boolean;
  preVote?: boolean;
  /**
   * 'lease-based' is only honoured when checkQuorum is on: the leader answers reads locally while a
   * quorum acknowledged a heartbeat sent less than electionTicks ago (assumes tick rates agree
   * across nodes), never during a leader transfer; otherwise it falls back to a ReadIndex round.
   * Nodes with it also refuse votes for one election timeout after starting.
   */
  readOnlyOption?: ReadOnlyOption;
  /** Reject proposals on followers instead of forwarding them to the leader. */
  disableProposalForwarding?: boolean;
  /**
   * Quiescence (hibernation) of an idle group, after CockroachDB: a leader whose followers hold
   * and know everything, with nothing pending, sends one last heartbeat marked "quiesce" and stops
   * ticking; a follower that gets it stops its election timer. Any proposal, read or message for
   * the group wakes it; a quiesced follower also wakes when its leader is reported unreachable
   * (reportUnreachable), which is how it learns the leader is gone. Every member of a group must
   * agree on this option. Default off.
   */
  quiesce?: boolean;
}

/**
 * What the core wants done. The driver must, in this order:
 *  1. persist hardState, entries and snapshot (durably: fsync) — in parallel it may already send
 *     `messages`;
 *  2. once durable, send `messagesAfterPersist`;
 *  3. apply the snapshot (if any) then `committedEntries`, and serve `readStates`
 *     once the applied index reaches each state's index;
 *  4. call advance(ready).
 * Only one Ready is outstanding at a time: ready() must not be called again before advance().
 */
export interface Ready {
  softState?: SoftState;
  hardState?: HardState;
  entries: Entry[];
  snapshot?: Snapshot;
  committedEntries: Entry[];
  /** Safe to send before this Ready's state is durable (a leader's appends and heartbeats). */
  messages: Message[];
  /** Must only be sent after this Ready's hardState, entries and snapshot are durable. */
  messagesAfterPersist: Message[];
  readStates: ReadState[];
  /** True when hardState or entries must be fsynced before messagesAfterPersist go out. */
  mustSync: boolean;
}

export type ConfChangeType = 'add-node' | 'remove-node' | 'add-learner';

export interface ConfChangeSingle {
  type: ConfChangeType;
  nodeId: NodeId;
}

/**
 * A membership change (etcd's ConfChangeV2). One single change with transition 'auto' is applied
 * directly (one node at a time); several changes enter joint consensus. An empty `changes` list
 * leaves a joint configuration.
 */
export interface ConfChange {
  transition: 'auto' | 'joint-implicit' | 'joint-explicit';
  changes: ConfChangeSingle[];
  /** Opaque to the core (the server puts the new member's URLs here). */
  context: Uint8Array;
}

export type ProposalDropReason =
  | 'no-leader'
  | 'leader-transfer-in-progress'
  | 'not-leader-forwarding-disabled'
  | 'uncommitted-bytes-max'
  | 'conf-change-pending'
  /** The ConfChange would produce an invalid configuration (e.g. no voters left) or is malformed. */
  | 'invalid-conf-change'
  /** readIndex() on a leader whose queue of pending reads is full (READ_REQUESTS_BATCH_MAX). */
  | 'read-index-queue-full'
  | 'not-a-member';

export type ProposeResult = { ok: true } | { ok: false; reason: ProposalDropReason; leaderHint: NodeId };

export type ProgressState = 'probe' | 'replicate' | 'snapshot';

export interface ProgressStatus {
  match: number;
  next: number;
  state: ProgressState;
  inflightMessages: number;
  isLearner: boolean;
  recentActive: boolean;
}

export interface Status {
  id: NodeId;
  hardState: HardState;
  softState: SoftState;
  applied: number;
  lastIndex: number;
  leadTransferee: NodeId;
  confState: ConfState;
  /** Present on the leader only. */
  progress?: Map<NodeId, ProgressStatus>;
}

/** The operations a driver uses (implemented by RaftNode in node.ts). */
export interface RaftNodeApi {
  tick(): void;
  /** Start-up shortcut (etcd's advanceTicks): the first election within one election timeout. */
  fastForwardElection(): boolean;
  step(message: Message): void;
  propose(data: Uint8Array): ProposeResult;
  proposeConfChange(change: ConfChange): ProposeResult;
  /**
   * The ReadState with this context appears in a later Ready (on this node, also when it is a
   * follower). Requests are batched into one heartbeat round per Ready. The result is ok:false
   * only for 'no-leader' (or, on a leader, 'read-index-queue-full').
   */
  readIndex(context: Uint8Array): ProposeResult;
  /** On a follower the request is forwarded to the leader. Aborted after one election timeout. */
  transferLeadership(target: NodeId): void;
  /**
   * Called by the driver when it applies a ConfChange entry; returns the new membership (persist
   * it with the applied index, e.g. MemoryStorage.setConfState). A leader that is no longer a
   * voter steps down here. Throws ConfChangeError for an invalid transition.
   */
  applyConfChange(change: ConfChange): ConfState;
  reportUnreachable(peer: NodeId): void;
  /** The transport's outcome of streaming a Snapshot message to peer (required, or it stays paused). */
  reportSnapshot(peer: NodeId, ok: boolean): void;
  hasReady(): boolean;
  ready(): Ready;
  advance(ready: Ready): void;
  status(): Status;
  /**
   * The snapshot step() took from a peer and that is not yet persisted (handed out by ready(),
   * stable after advance()); a driver holding a snapshot's data outside the core learns from it
   * whether a Snapshot message it delivered was taken or refused.
   */
  readonly pendingSnapshot: Snapshot | undefined;
  /**
   * The group is hibernating (RaftConfig.quiesce): tick() does nothing, so the driver need not
   * call it until a proposal, read or message wakes the group. Engines without quiescence leave it
   * undefined.
   */
  readonly quiesced?: boolean;
}

/**
 * The engine a host (the server, the simulator) drives: anything with the operations above and
 * the Ready contract. RaftNode implements it, and so does the Multi-Paxos core (src/paxos), which
 * reads the same RaftConfig (plus options of its own) and the same storage.
 */
export type ConsensusEngine = RaftNodeApi;

/** Builds a node's engine from the host's configuration. */
export type ConsensusFactory = (config: RaftConfig) => ConsensusEngine;
