// The Multi-Paxos state machine: messages and ticks go in, a Ready describing what to persist,
// send and apply comes out, under the same contract as the Raft core (raft/api.ts), so one host
// loop drives either engine. No I/O, no clock, no randomness of its own. README.md in this folder
// maps the protocol onto the Raft message and storage shapes.

import type {
  ConfChange,
  ProgressStatus,
  ProposalDropReason,
  ProposeResult,
  RaftConfig,
  RaftNodeApi,
  Ready,
  Status,
} from '../raft/api.js';
import {
  decodeConfChange,
  encodeConfChange,
  leavesJoint,
  members,
  nextConfig,
  trackerConfigFromConfState,
} from '../raft/confchange.js';
import { ConfChangeError } from '../raft/errors.js';
import { READ_REQUESTS_BATCH_MAX, ReadIndexBatcher, type ReadRequest } from '../raft/read-index.js';
import type { TrackerConfig } from '../raft/tracker.js';
import {
  type ConfState,
  EMPTY_BYTES,
  type Entry,
  EntryType,
  type HardState,
  type Message,
  MessageType,
  message,
  NONE,
  type NodeId,
  type ReadState,
  Role,
  type Snapshot,
  type SoftState,
} from '../raft/types.js';
import { bytesEqual, payloadBytes } from '../raft/util.js';
import { PaxosInvariantError, PaxosUsageError, QuorumConfigError } from './errors.js';
import { SlotLog } from './log.js';
import { isQuorum, isQuorumImpossible, quorumIndex, quorumSizes } from './quorum.js';

export interface PaxosConfig extends RaftConfig {
  /**
   * Acceptances that choose a slot (phase 2); phase 1 then needs max(majority, N - K + 1)
   * promises. Undefined: majorities for both. Checked against every configuration.
   */
  phase2Quorum?: number;
  /**
   * Lease reads ('lease-based' with checkQuorum): the most any two nodes' tick rates may differ,
   * in percent of the slower one. The lease is shortened by it. Default 25.
   */
  leaseClockDriftPercentMax?: number;
}

/**
 * Context of a Prepare sent because of TimeoutNow: magic, then the ballot and the id of the leader
 * that handed over. It overrides the stickiness of acceptors following that leader in that ballot
 * (which gave up its lease when it sent TimeoutNow), and nobody else's.
 */
const TRANSFER_MAGIC = 0x54;
const TRANSFER_CONTEXT_BYTES = 17;
const DEFAULT_LEASE_DRIFT_PERCENT_MAX = 25;
const DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024;
const DEFAULT_INFLIGHT_MESSAGES_MAX = 256;
const DEFAULT_COMMITTED_BYTES_PER_READY_MAX = 64 * 1024 * 1024;
/** Reads queued on a new leader until the slots it took over are chosen. */
const PENDING_READS_MAX = READ_REQUESTS_BATCH_MAX;

type PeerState = 'probe' | 'replicate' | 'snapshot';

/** The leader's view of one acceptor in its ballot. */
interface Peer {
  /** Highest slot the acceptor durably holds the leader's value for (accepted in this ballot or chosen). */
  match: number;
  next: number;
  state: PeerState;
  /** Probe: an Accept is outstanding; wait for its answer or the next heartbeat answer. */
  probeSent: boolean;
  /** Last slot of each Accept in flight (replicate state), oldest first. */
  inflight: number[];
  pendingSnapshot: number;
  recentActive: boolean;
  /** Highest chosen slot sent to the acceptor in an Accept or heartbeat it could learn it from. */
  commitSent: number;
}

/** One acceptor's answer to a Prepare: its accepted slots after `floor`. */
interface Promise1 {
  floor: number;
  entries: Entry[];
  commit: number;
}

export class PaxosNode implements RaftNodeApi {
  readonly id: NodeId;
  private readonly electionTicks: number;
  private readonly heartbeatTicks: number;
  private readonly rng: RaftConfig['rng'];
  private readonly phase2Quorum: number | undefined;
  private readonly maxMessageBytes: number;
  private readonly inflightMessagesMax: number;
  private readonly uncommittedBytesMax: number;
  private readonly committedBytesPerReadyMax: number;
  private readonly checkQuorum: boolean;
  private readonly preVote: boolean;
  private readonly forwarding: boolean;
  private readonly storage: RaftConfig['storage'];

  /** Promised ballot (a Raft term) and to whom (a Raft vote): the acceptor's durable promise. */
  private promised = 0;
  private vote: NodeId = NONE;
  private role: Role = Role.Follower;
  private leader: NodeId = NONE;
  private readonly log: SlotLog;
  /** Membership as of the applied slot (conf changes take effect when applied). */
  private config: TrackerConfig;
  /** Slot of the last conf change reflected in `config` (or the snapshot it came from). */
  private configIndex: number;
  /** Conf changes held in the log above the applied slot. */
  private readonly logConfChanges = new Map<number, ConfChange>();
  /** Slots of conf changes handed out to apply, in order (applyConfChange takes them). */
  private readonly confSlotsApplying: number[] = [];

  private electionElapsed = 0;
  private heartbeatElapsed = 0;
  private randomizedElectionTimeout = 0;
  /** Highest ballot seen anywhere; the next campaign goes above it. */
  private ballotSeen = 0;

  // Acceptor side: the run of slots known to equal the current leader's log.
  private matchBallot = 0;
  private matchIndex = 0;

  // Candidate side.
  private readonly promises = new Map<NodeId, Promise1>();
  /** Promises still arriving in chunks: the slots gathered so far after `floor`. */
  private readonly partials = new Map<NodeId, { floor: number; entries: Entry[] }>();
  private readonly rejections = new Set<NodeId>();
  private readonly asked = new Set<NodeId>();
  private readonly preVotes = new Map<NodeId, boolean>();
  /** A transfer campaign's Prepare context (empty for an ordinary campaign). */
  private campaignContext: Uint8Array = EMPTY_BYTES;

  // Lease reads. Ticks counted by this node since it started (any role).
  private readonly leaseRead: boolean;
  /** Longest a leader may answer reads alone after sending a heartbeat round (see tick()). */
  private readonly leaseTicksMax: number;
  private tickCount = 0;
  /** While tickCount is below this, promise no other ballot (see the lease rule on tick()). */
  private stickyUntil = 0;
  private stickyLeader: NodeId = NONE;
  private stickyBallot = 0;
  /** Leader: the send tick of the latest heartbeat each acceptor answered in this ballot. */
  private readonly heartbeatAcked = new Map<NodeId, number>();
  /** Leader: a TimeoutNow went out in this ballot, so its acceptors may promise the target. */
  private leaseGivenUp = false;

  // Leader side.
  private readonly peers = new Map<NodeId, Peer>();
  /** Last slot taken over in phase 1: reads wait until it is chosen. */
  private takeoverEnd = 0;
  private leadTransferee: NodeId = NONE;
  private transferElapsed = 0;
  private uncommittedBytes = 0;
  private broadcastPending = false;
  private readonly reads = new ReadIndexBatcher();
  private pendingReads: ReadRequest[] = [];

  private msgs: Message[] = [];
  private msgsAfterPersist: Message[] = [];
  private readStates: ReadState[] = [];
  private prevSoft: SoftState = { leader: NONE, role: Role.Follower };
  private prevHard: HardState;
  private readyOutstanding = false;

  constructor(config: PaxosConfig) {
    if (!Number.isSafeInteger(config.id) || config.id <= 0) {
      throw new PaxosUsageError(`node id must be a positive safe integer, got ${config.id}`);
    }
    if (config.heartbeatTicks <= 0 || config.electionTicks <= config.heartbeatTicks) {
      throw new PaxosUsageError('electionTicks must exceed heartbeatTicks, both positive');
    }
    this.id = config.id;
    this.electionTicks = config.electionTicks;
    this.heartbeatTicks = config.heartbeatTicks;
    this.rng = config.rng;
    this.phase2Quorum = config.phase2Quorum;
    this.maxMessageBytes = config.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
    this.inflightMessagesMax = config.inflightMessagesMax ?? DEFAULT_INFLIGHT_MESSAGES_MAX;
    this.uncommittedBytesMax = config.uncommittedBytesMax ?? 0;
    this.committedBytesPerReadyMax =
      config.committedBytesPerReadyMax ?? DEFAULT_COMMITTED_BYTES_PER_READY_MAX;
    this.checkQuorum = config.checkQuorum ?? false;
    this.preVote = config.preVote ?? false;
    this.forwarding = !(config.disableProposalForwarding ?? false);
    this.leaseRead = config.readOnlyOption === 'lease-based' && this.checkQuorum;
    const drift = config.leaseClockDriftPercentMax ?? DEFAULT_LEASE_DRIFT_PERCENT_MAX;
    if (!(drift >= 0 && drift < 100)) {
      throw new PaxosUsageError(`leaseClockDriftPercentMax must be in [0, 100), got ${drift}`);
    }
    // An acceptor stays sticky for electionTicks of its own ticks from receipt, so at least
    // electionTicks - 1 whole periods; the leader's count since sending is short by up to one
    // period, and the acceptor's clock may run faster by the drift bound.
    this.leaseTicksMax = Math.floor((config.electionTicks - 1) / (1 + drift / 100)) - 1;
    // A restarted acceptor forgot whom it followed: it promises nothing for one election timeout.
    if (this.leaseRead) this.stickyUntil = config.electionTicks;
    this.storage = config.storage;
    const { hardState, confState } = config.storage.initialState();
    const snapshotIndex = config.storage.firstIndex() - 1;
    const commit = Math.max(hardState.commit, snapshotIndex);
    const applied = config.applied ?? snapshotIndex;
    if (applied > commit)
      throw new PaxosUsageError(`applied ${applied} is beyond the stored commit ${commit}`);
    this.log = new SlotLog(config.storage, commit, applied);
    this.promised = hardState.term;
    this.vote = hardState.vote;
    this.ballotSeen = hardState.term;
    this.prevHard = { ...hardState };
    this.config = trackerConfigFromConfState(confState);
    this.checkQuorums(this.config);
    this.configIndex = applied;
    for (let slot = applied + 1; slot <= this.log.lastIndex(); slot++) this.noteSlot(this.log.entry(slot));
    this.resetElectionTimeout();
  }

  // ---- the driver's API ------------------------------------------------------------------

  /**
   * The lease rule (lease-based reads): an acceptor that hears from the leader of its ballot
   * promises no other ballot for electionTicks of its own ticks, except to a transfer target of
   * that very leader and ballot. A leader whose heartbeat, sent at its tick t, was answered by a
   * phase-2 quorum (which meets every phase-1 quorum) answers reads alone until t + leaseTicksMax.
   */
  tick(): void {
    this.tickCount++;
    if (this.role === Role.Leader) return this.tickLeader();
    this.electionElapsed++;
    if (this.role === Role.Candidate && this.electionElapsed % this.heartbeatTicks === 0) {
      // Prepares are retransmitted to acceptors that have not answered (lost, or still in lease).
      for (const id of this.asked)
        if (!this.promises.has(id) && !this.rejections.has(id)) this.sendPrepare(id);
    }
    if (this.electionElapsed >= this.randomizedElectionTimeout && this.promotable()) {
      this.electionElapsed = 0;
      this.campaign(undefined);
    }
  }

  fastForwardElection(): boolean {
    if (this.leaseRead || this.role !== Role.Follower || this.leader !== NONE || !this.promotable()) {
      return false;
    }
    this.electionElapsed = Math.max(this.electionElapsed, this.electionTicks - 1);
    return true;
  }

  propose(data: Uint8Array): ProposeResult {
    return this.proposeEntry(EntryType.Normal, data);
  }

  proposeConfChange(change: ConfChange): ProposeResult {
    return this.proposeEntry(EntryType.ConfChange, encodeConfChange(change));
  }

  readIndex(context: Uint8Array): ProposeResult {
    if (this.role === Role.Leader) {
      return this.addRead({ from: NONE, context })
        ? { ok: true }
        : { ok: false, reason: 'read-index-queue-full', leaderHint: this.id };
    }
    if (this.leader === NONE) return { ok: false, reason: 'no-leader', leaderHint: NONE };
    this.send(message({ type: MessageType.ReadIndex, to: this.leader, context }));
    return { ok: true };
  }

  transferLeadership(target: NodeId): void {
    if (this.role !== Role.Leader) {
      if (this.leader !== NONE && this.leader !== this.id) {
        this.send(message({ type: MessageType.TransferLeader, to: this.leader, index: target }));
      }
      return;
    }
    this.startTransfer(target);
  }

  applyConfChange(change: ConfChange): ConfState {
    const slot = this.confSlotsApplying.shift() ?? this.configIndex + 1;
    // A snapshot installed meanwhile already holds the configuration after this change.
    if (slot <= this.configIndex) return this.confState();
    // A proposed value may be chosen long after it was proposed (a later leader adopts it in
    // phase 1), so a change can reach the apply stage after other changes made it meaningless
    // (leaving a joint configuration already left). Every node applies the same slots in the
    // same order, so such a change is a no-op everywhere alike.
    let next: TrackerConfig;
    try {
      next = nextConfig(this.config, change);
      this.checkQuorums(next);
    } catch (err) {
      if (!(err instanceof ConfChangeError) && !(err instanceof QuorumConfigError)) throw err;
      this.logConfChanges.delete(slot);
      return this.confState();
    }
    this.config = next;
    this.configIndex = slot;
    this.logConfChanges.delete(slot);
    if (this.role === Role.Leader) {
      this.trackChainMembers();
      const kept = new Set(this.configChain().flatMap((cfg) => members(cfg)));
      for (const id of [...this.peers.keys()]) if (!kept.has(id)) this.peers.delete(id);
      if (!this.isVoter(this.id)) this.handOff();
      else if (this.leadTransferee !== NONE && !this.isVoter(this.leadTransferee)) this.abortTransfer();
      else this.maybeCommit();
    }
    return this.confState();
  }

  reportUnreachable(peer: NodeId): void {
    const p = this.role === Role.Leader ? this.peers.get(peer) : undefined;
    if (p?.state === 'replicate') this.becomeProbe(p, p.match + 1);
  }

  reportSnapshot(peer: NodeId, ok: boolean): void {
    const p = this.role === Role.Leader ? this.peers.get(peer) : undefined;
    if (p?.state !== 'snapshot') return;
    const next = ok ? Math.max(p.pendingSnapshot + 1, p.match + 1) : p.match + 1;
    this.becomeProbe(p, next);
    // Wait for the acceptor's answer (or the next heartbeat) before sending more.
    p.probeSent = ok;
  }

  step(m: Message): void {
    if (!this.checkBallot(m)) return;
    switch (m.type) {
      case MessageType.Hup:
        if (this.role !== Role.Leader && this.promotable()) this.campaign(undefined);
        return;
      case MessageType.Beat:
        if (this.role === Role.Leader) this.broadcastHeartbeat();
        return;
      case MessageType.Propose:
        return this.onForwardedProposal(m);
      case MessageType.Vote:
        return this.onPrepare(m);
      case MessageType.VoteResponse:
        return this.onPromise(m);
      case MessageType.PreVote:
        return this.onPrepareProbe(m);
      case MessageType.PreVoteResponse:
        return this.onPrepareProbeResponse(m);
      case MessageType.Append:
        return this.onAccept(m);
      case MessageType.AppendResponse:
        return this.onAccepted(m);
      case MessageType.Heartbeat:
        return this.onHeartbeat(m);
      case MessageType.HeartbeatResponse:
        return this.onHeartbeatResponse(m);
      case MessageType.Snapshot:
        return this.onSnapshot(m);
      case MessageType.TimeoutNow:
        if (this.promotable()) this.campaign(m);
        return;
      case MessageType.ReadIndex:
        if (this.role === Role.Leader) this.addRead({ from: m.from, context: m.context });
        return;
      case MessageType.ReadIndexResponse:
        this.readStates.push({ index: m.index, context: m.context });
        return;
      case MessageType.TransferLeader:
        if (this.role === Role.Leader) this.startTransfer(m.index);
        return;
      case MessageType.Unreachable:
        return this.reportUnreachable(m.from);
      case MessageType.SnapshotStatus:
        return this.reportSnapshot(m.from, !m.reject);
      case MessageType.CheckQuorum:
        return;
      default:
        return;
    }
  }

  hasReady(): boolean {
    this.flush();
    const hard = this.prevHard;
    return (
      this.prevSoft.leader !== this.leader ||
      this.prevSoft.role !== this.role ||
      hard.term !== this.promised ||
      hard.vote !== this.vote ||
      hard.commit !== this.log.committed ||
      this.log.hasUnstable() ||
      this.msgs.length > 0 ||
      this.msgsAfterPersist.length > 0 ||
      this.readStates.length > 0 ||
      this.log.hasNextCommitted()
    );
  }

  ready(): Ready {
    if (this.readyOutstanding) throw new PaxosUsageError('ready() called again before advance()');
    this.flush();
    const { entries, snapshot } = this.log.handOut();
    const committedEntries = this.log.nextCommitted(this.committedBytesPerReadyMax);
    for (const e of committedEntries)
      if (e.type === EntryType.ConfChange) this.confSlotsApplying.push(e.index);
    const rd: Ready = {
      entries,
      committedEntries,
      messages: this.msgs,
      messagesAfterPersist: this.msgsAfterPersist,
      readStates: this.readStates,
      mustSync: false,
    };
    if (snapshot) rd.snapshot = snapshot;
    this.msgs = [];
    this.msgsAfterPersist = [];
    this.readStates = [];
    const soft = this.softState();
    if (soft.leader !== this.prevSoft.leader || soft.role !== this.prevSoft.role) rd.softState = soft;
    const hard = this.hardState();
    const prev = this.prevHard;
    if (hard.term !== prev.term || hard.vote !== prev.vote || hard.commit !== prev.commit) {
      if (hard.commit < prev.commit)
        throw new PaxosInvariantError(`commit went back from ${prev.commit} to ${hard.commit}`);
      if (hard.term < prev.term)
        throw new PaxosInvariantError(`promised ballot went back from ${prev.term} to ${hard.term}`);
      rd.hardState = hard;
    }
    // A promise and an acceptance are durable before any reply that reports them leaves.
    rd.mustSync =
      entries.length > 0 || snapshot !== undefined || hard.term !== prev.term || hard.vote !== prev.vote;
    this.readyOutstanding = true;
    return rd;
  }

  advance(rd: Ready): void {
    if (!this.readyOutstanding) throw new PaxosUsageError('advance() without an outstanding ready()');
    this.readyOutstanding = false;
    if (rd.softState) this.prevSoft = rd.softState;
    if (rd.hardState) this.prevHard = rd.hardState;
    this.log.persisted(rd.snapshot !== undefined);
    if (rd.snapshot) this.log.appliedTo(rd.snapshot.metadata.index);
    const n = rd.committedEntries.length;
    if (n > 0) {
      this.log.appliedTo(rd.committedEntries[n - 1]!.index);
      for (const slot of this.logConfChanges.keys())
        if (slot <= this.log.applied) this.logConfChanges.delete(slot);
      if (this.role === Role.Leader) {
        const applied = payloadBytes(rd.committedEntries);
        this.uncommittedBytes = Math.max(0, this.uncommittedBytes - applied);
      }
    }
    if (this.role === Role.Leader) {
      // Only now may the leader count its own acceptance toward a phase-2 quorum.
      this.maybeCommit();
      this.maybeAutoLeave();
    }
  }

  /** The snapshot taken from a peer that is not yet persisted (see RaftNodeApi). */
  get pendingSnapshot(): Snapshot | undefined {
    return this.log.pendingSnapshot;
  }

  status(): Status {
    const status: Status = {
      id: this.id,
      hardState: this.hardState(),
      softState: this.softState(),
      applied: this.log.applied,
      lastIndex: this.log.lastIndex(),
      leadTransferee: this.leadTransferee,
      confState: this.confState(),
    };
    if (this.role === Role.Leader) {
      // The leader itself is listed too, as Raft's tracker does (a host compares a learner's
      // match with the leader's before promoting it).
      const progress = new Map<NodeId, ProgressStatus>([
        [
          this.id,
          {
            match: this.log.stableLastIndex(),
            next: this.log.lastIndex() + 1,
            state: 'replicate',
            inflightMessages: 0,
            isLearner: !this.isVoter(this.id),
            recentActive: true,
          },
        ],
      ]);
      for (const [id, p] of this.peers) {
        progress.set(id, {
          match: p.match,
          next: p.next,
          state: p.state,
          inflightMessages: p.inflight.length,
          isLearner: !this.isVoter(id),
          recentActive: p.recentActive,
        });
      }
      status.progress = progress;
    }
    return status;
  }

  get committedIndex(): number {
    return this.log.committed;
  }

  // ---- ballots and roles -------------------------------------------------------------------

  /**
   * Every message carries a ballot (Raft's term field); 0 for local and forwarded requests.
   * Returns false when the message is to be dropped.
   */
  private checkBallot(m: Message): boolean {
    if (m.term === 0) return true;
    if (m.term > this.ballotSeen) this.ballotSeen = m.term;
    if (m.term > this.promised) {
      switch (m.type) {
        case MessageType.Vote:
          // Leader stickiness: while a leader is heard from, a Prepare is ignored (not promised).
          if (this.isSticky(m)) return false;
          this.becomeFollower(m.term, NONE);
          return true;
        case MessageType.PreVote:
          return true;
        case MessageType.PreVoteResponse:
          if (!m.reject) return true;
          this.becomeFollower(m.term, NONE);
          return true;
        case MessageType.Append:
        case MessageType.Heartbeat:
        case MessageType.Snapshot:
          this.becomeFollower(m.term, m.from);
          return true;
        default:
          this.becomeFollower(m.term, NONE);
          return true;
      }
    }
    if (m.term < this.promised) {
      // A stale leader or candidate learns of the higher ballot and stands down.
      if (
        m.type === MessageType.Append ||
        m.type === MessageType.Heartbeat ||
        m.type === MessageType.Snapshot
      ) {
        this.send(
          message({ type: MessageType.AppendResponse, to: m.from, term: this.promised, reject: true }),
        );
      } else if (m.type === MessageType.Vote) {
        this.send(message({ type: MessageType.VoteResponse, to: m.from, term: this.promised, reject: true }));
      } else if (m.type === MessageType.PreVote) {
        this.send(
          message({ type: MessageType.PreVoteResponse, to: m.from, term: this.promised, reject: true }),
        );
      }
      return false;
    }
    return true;
  }

  private isSticky(prepare: Message): boolean {
    const transfer = this.transferOf(prepare.context);
    if (this.leaseRead && this.tickCount < this.stickyUntil) {
      return !(transfer && transfer.leader === this.stickyLeader && transfer.ballot === this.stickyBallot);
    }
    return this.checkQuorum && this.inLease() && !transfer;
  }

  private transferOf(context: Uint8Array): { leader: NodeId; ballot: number } | undefined {
    if (context.byteLength !== TRANSFER_CONTEXT_BYTES || context[0] !== TRANSFER_MAGIC) return undefined;
    const view = new DataView(context.buffer, context.byteOffset, context.byteLength);
    return { ballot: view.getFloat64(1), leader: view.getFloat64(9) };
  }

  private inLease(): boolean {
    return this.leader !== NONE && this.electionElapsed < this.electionTicks;
  }

  private becomeFollower(ballot: number, leader: NodeId): void {
    if (ballot > this.promised) {
      this.promised = ballot;
      this.vote = leader;
    }
    if (this.role === Role.Leader) this.reads.reset();
    this.role = Role.Follower;
    this.leader = leader;
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.peers.clear();
    this.leadTransferee = NONE;
    this.pendingReads = [];
    this.resetElectionTimeout();
  }

  private resetElectionTimeout(): void {
    this.randomizedElectionTimeout = this.electionTicks + this.rng.nextInt(this.electionTicks);
  }

  private promotable(): boolean {
    return this.isVoter(this.id);
  }

  private isVoter(id: NodeId): boolean {
    return this.config.incoming.has(id) || this.config.outgoing.has(id);
  }

  // ---- phase 1: election by ballot ---------------------------------------------------------

  /** `transfer`: the TimeoutNow that started this campaign, if any. */
  private campaign(transfer: Message | undefined): void {
    // Under the lease rule this node may not promise itself a ballot either.
    if (!transfer && this.leaseRead && this.tickCount < this.stickyUntil) return;
    this.campaignContext = EMPTY_BYTES;
    if (transfer) {
      const context = new Uint8Array(TRANSFER_CONTEXT_BYTES);
      context[0] = TRANSFER_MAGIC;
      const view = new DataView(context.buffer);
      view.setFloat64(1, transfer.term);
      view.setFloat64(9, transfer.from);
      this.campaignContext = context;
    }
    this.resetElectionTimeout();
    this.electionElapsed = 0;
    if (this.preVote && !transfer) {
      this.role = Role.PreCandidate;
      this.leader = NONE;
      this.preVotes.clear();
      this.preVotes.set(this.id, true);
      const ballot = Math.max(this.promised, this.ballotSeen) + 1;
      for (const id of this.voterIds(this.config)) {
        if (id === this.id) continue;
        this.send(message({ type: MessageType.PreVote, to: id, term: ballot, index: this.log.committed }));
      }
      this.maybeEndProbe();
      return;
    }
    this.startPhase1();
  }

  private onPrepareProbe(m: Message): void {
    // Granted when this acceptor would promise the ballot and has lost its leader.
    const sticky = this.inLease() || (this.leaseRead && this.tickCount < this.stickyUntil);
    const grant = m.term > this.promised && !sticky && this.role !== Role.Leader;
    this.send(
      message({
        type: MessageType.PreVoteResponse,
        to: m.from,
        term: grant ? m.term : this.promised,
        reject: !grant,
      }),
    );
  }

  private onPrepareProbeResponse(m: Message): void {
    if (this.role !== Role.PreCandidate) return;
    this.preVotes.set(m.from, !m.reject);
    this.maybeEndProbe();
  }

  private maybeEndProbe(): void {
    if (isQuorum(this.config, 'phase1', this.phase2Quorum, (id) => this.preVotes.get(id) === true)) {
      this.startPhase1();
    } else if (
      isQuorumImpossible(this.config, 'phase1', this.phase2Quorum, (id) => this.preVotes.get(id) === false)
    ) {
      this.becomeFollower(this.promised, NONE);
    }
  }

  private startPhase1(): void {
    const ballot = Math.max(this.promised, this.ballotSeen) + 1;
    this.promised = ballot;
    this.ballotSeen = ballot;
    this.vote = this.id;
    this.role = Role.Candidate;
    this.leader = NONE;
    this.electionElapsed = 0;
    this.resetElectionTimeout();
    this.promises.clear();
    this.partials.clear();
    this.rejections.clear();
    this.asked.clear();
    this.asked.add(this.id);
    this.promises.set(this.id, { floor: this.log.committed, entries: [], commit: this.log.committed });
    this.maybeWinPhase1();
  }

  /** Prepare(ballot, floor, cursor): promise, and report your slots after the cursor. */
  private sendPrepare(to: NodeId): void {
    this.asked.add(to);
    const floor = this.log.committed;
    let partial = this.partials.get(to);
    const cursor = partial ? (partial.entries[partial.entries.length - 1]?.index ?? partial.floor) : floor;
    if (partial && cursor < floor) {
      // Chosen slots learned meanwhile cover what was gathered: start again from the new floor.
      this.partials.delete(to);
      partial = undefined;
    }
    this.msgsAfterPersist.push(
      message({
        type: MessageType.Vote,
        to,
        from: this.id,
        term: this.promised,
        index: partial ? cursor : floor,
        commit: floor,
        context: this.campaignContext,
      }),
    );
  }

  /**
   * Prepare(ballot, floor, cursor): promise unless a higher ballot is promised or this ballot is
   * promised to another. The promise carries the accepted slots after the cursor (at most
   * maxMessageBytes; the candidate asks again from where it ends) so the candidate can adopt the
   * highest-ballot value of each slot above its floor (its commit). When this acceptor knows more
   * slots to be chosen than the candidate, it sends those first (or its snapshot).
   */
  private onPrepare(m: Message): void {
    const ballot = m.term;
    if (ballot < this.promised || (this.vote !== NONE && this.vote !== m.from)) {
      this.send(message({ type: MessageType.VoteResponse, to: m.from, term: this.promised, reject: true }));
      return;
    }
    if (this.role === Role.Leader) return;
    this.vote = m.from;
    this.electionElapsed = 0;
    const floor = m.commit;
    const last = this.log.lastIndex();
    let entries: Entry[] = [];
    let after = Math.max(m.index, floor);
    if (floor + 1 < this.log.firstIndex()) {
      this.sendSnapshotTo(m.from, ballot);
      after = -1;
    } else if (this.log.committed > floor) {
      // Catch-up (the answer's commit is above its index): chosen slots only.
      after = floor;
      entries = this.log.slice(floor + 1, this.log.committed + 1, this.maxMessageBytes);
    } else if (last > after) {
      entries = this.log.slice(after + 1, last + 1, this.maxMessageBytes);
    }
    this.msgsAfterPersist.push(
      message({
        type: MessageType.VoteResponse,
        to: m.from,
        from: this.id,
        term: ballot,
        index: after,
        logTerm: last,
        commit: this.log.committed,
        entries,
      }),
    );
  }

  private onPromise(m: Message): void {
    if (this.role !== Role.Candidate || m.term !== this.promised) return;
    if (m.reject) {
      this.rejections.add(m.from);
      if (isQuorumImpossible(this.config, 'phase1', this.phase2Quorum, (id) => this.rejections.has(id))) {
        this.becomeFollower(this.promised, NONE);
      }
      return;
    }
    if (m.index < 0) return; // a snapshot is on its way; the Prepare is repeated after it lands
    if (this.promises.has(m.from)) return;
    if (m.commit > m.index) {
      // Slots the acceptor knows to be chosen: learn them (they are final), raise the floor, ask again.
      if (m.index <= this.log.committed) {
        this.learnChosen(m.entries.filter((e) => e.index > this.log.committed && e.index <= m.commit));
      }
      this.sendPrepare(m.from);
      return this.maybeWinPhase1();
    }
    let partial = this.partials.get(m.from);
    if (!partial) {
      if (m.index > this.log.committed) return; // answers a cursor since dropped
      partial = { floor: m.index, entries: [] };
      this.partials.set(m.from, partial);
    }
    const cursor = partial.entries[partial.entries.length - 1]?.index ?? partial.floor;
    if (m.index !== cursor) return; // a duplicate or an answer to an older cursor
    for (const e of m.entries) partial.entries.push(e);
    const covered = partial.entries[partial.entries.length - 1]?.index ?? partial.floor;
    if (covered < m.logTerm) return this.sendPrepare(m.from);
    this.partials.delete(m.from);
    this.promises.set(m.from, { floor: partial.floor, entries: partial.entries, commit: m.commit });
    this.maybeWinPhase1();
  }

  /** Writes slots known to be chosen and commits them. */
  private learnChosen(entries: Entry[]): void {
    if (entries.length === 0) return;
    const out: Entry[] = [];
    for (const e of entries) {
      const mine = this.log.entry(e.index);
      // An acceptor may hold the chosen value from a higher ballot; it is the same value.
      if (mine && mine.term > e.term) {
        if (!bytesEqual(mine.data, e.data) || mine.type !== e.type) {
          throw new PaxosInvariantError(
            `slot ${e.index}: accepted value at ballot ${mine.term} differs from the chosen one`,
          );
        }
        out.push(mine);
      } else out.push(e);
    }
    this.writeSlots(out);
    this.log.committed = out[out.length - 1]!.index;
  }

  /** With a phase-1 quorum of complete promises, adopt per slot the highest-ballot value. */
  private maybeWinPhase1(): void {
    if (this.role !== Role.Candidate) return;
    const floor = this.log.committed;
    const merged = new Map<number, Entry>();
    const consider = (e: Entry): void => {
      if (e.index <= floor) return;
      const seen = merged.get(e.index);
      if (!seen || e.term > seen.term) merged.set(e.index, e);
    };
    for (let slot = floor + 1; slot <= this.log.lastIndex(); slot++) consider(this.log.entry(slot)!);
    // A promise made at a lower floor covers every slot above the current one too.
    for (const [id, p] of this.promises) if (id !== this.id) for (const e of p.entries) consider(e);
    const chain = this.configChain(merged);
    for (const cfg of chain) {
      for (const id of this.voterIds(cfg)) if (!this.asked.has(id)) this.sendPrepare(id);
    }
    const promised = (id: NodeId): boolean => this.promises.has(id);
    if (!chain.every((cfg) => isQuorum(cfg, 'phase1', this.phase2Quorum, promised))) return;
    this.becomeLeader(merged);
  }

  /**
   * The configurations that may govern open slots: the applied one, then one after each conf
   * change in the log above the applied slot (committed ones from the log, open ones as the
   * candidate is about to propose them). A quorum must be reached in each.
   */
  private configChain(open?: ReadonlyMap<number, Entry>): TrackerConfig[] {
    const changes = new Map<number, ConfChange>();
    for (const [slot, change] of this.logConfChanges) {
      if (slot <= this.log.committed || !open) changes.set(slot, change);
    }
    if (open) {
      for (const [slot, e] of open)
        if (e.type === EntryType.ConfChange) changes.set(slot, decodeConfChange(e.data));
    }
    const chain = [this.config];
    let cfg = this.config;
    for (const slot of [...changes.keys()].sort((a, b) => a - b)) {
      if (slot <= this.configIndex) continue;
      try {
        const next = nextConfig(cfg, changes.get(slot)!);
        this.checkQuorums(next);
        cfg = next;
        chain.push(cfg);
      } catch (err) {
        // A change that will not apply (applyConfChange makes it a no-op) governs nothing.
        if (!(err instanceof ConfChangeError) && !(err instanceof QuorumConfigError)) throw err;
      }
    }
    return chain;
  }

  private becomeLeader(merged: ReadonlyMap<number, Entry>): void {
    const ballot = this.promised;
    const floor = this.log.committed;
    let last = floor;
    for (const slot of merged.keys()) last = Math.max(last, slot);
    const entries: Entry[] = [];
    for (let slot = floor + 1; slot <= last; slot++) {
      const adopted = merged.get(slot);
      // Holes no promise reported a value for are filled with no-ops.
      entries.push({
        term: ballot,
        index: slot,
        type: adopted?.type ?? EntryType.Normal,
        data: adopted?.data ?? EMPTY_BYTES,
      });
    }
    if (entries.length === 0)
      entries.push({ term: ballot, index: floor + 1, type: EntryType.Normal, data: EMPTY_BYTES });
    this.writeSlots(entries);
    this.role = Role.Leader;
    this.leader = this.id;
    this.takeoverEnd = this.log.lastIndex();
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.uncommittedBytes = 0;
    this.leadTransferee = NONE;
    this.reads.reset();
    this.pendingReads = [];
    this.peers.clear();
    this.heartbeatAcked.clear();
    this.leaseGivenUp = false;
    const everyone = new Set<NodeId>();
    for (const cfg of this.configChain()) for (const id of members(cfg)) everyone.add(id);
    for (const id of everyone) {
      if (id === this.id) continue;
      const promise = this.promises.get(id);
      const next = promise ? Math.min(promise.commit, floor) + 1 : floor + 1;
      this.peers.set(id, this.newPeer(next, 0));
    }
    this.broadcastPending = true;
    this.maybeCommit();
  }

  // ---- phase 2: accept, pipelined ----------------------------------------------------------

  private proposeEntry(type: EntryType, data: Uint8Array): ProposeResult {
    if (this.role !== Role.Leader) {
      if (this.leader === NONE) return { ok: false, reason: 'no-leader', leaderHint: NONE };
      if (!this.forwarding)
        return { ok: false, reason: 'not-leader-forwarding-disabled', leaderHint: this.leader };
      this.send(
        message({ type: MessageType.Propose, to: this.leader, entries: [{ term: 0, index: 0, type, data }] }),
      );
      return { ok: true };
    }
    const reason = this.refuseProposal(type, data);
    if (reason) return { ok: false, reason, leaderHint: this.id };
    this.appendOwn(type, data);
    return { ok: true };
  }

  private refuseProposal(type: EntryType, data: Uint8Array): ProposalDropReason | undefined {
    if (this.leadTransferee !== NONE) return 'leader-transfer-in-progress';
    if (
      this.uncommittedBytesMax > 0 &&
      this.uncommittedBytes > 0 &&
      this.uncommittedBytes + data.byteLength > this.uncommittedBytesMax
    ) {
      return 'uncommitted-bytes-max';
    }
    if (type === EntryType.ConfChange) {
      if (this.logConfChanges.size > 0) return 'conf-change-pending';
      try {
        const change = decodeConfChange(data);
        const next = nextConfig(this.config, change);
        this.checkQuorums(next);
      } catch {
        return 'invalid-conf-change';
      }
    }
    return undefined;
  }

  private onForwardedProposal(m: Message): void {
    // Forwarded once only: a proposal that reaches a node that is no longer leader is dropped
    // (its client times out and retries) rather than bounced between stale followers.
    if (this.role !== Role.Leader) return;
    for (const e of m.entries) if (!this.refuseProposal(e.type, e.data)) this.appendOwn(e.type, e.data);
  }

  private appendOwn(type: EntryType, data: Uint8Array): void {
    this.writeSlots([{ term: this.promised, index: this.log.lastIndex() + 1, type, data }]);
    this.uncommittedBytes += data.byteLength;
    this.broadcastPending = true;
  }

  /** Every write to the log goes through here, to keep the conf changes above applied known. */
  private writeSlots(entries: Entry[]): void {
    this.log.write(entries);
    let confChanged = false;
    for (const e of entries) {
      confChanged ||= this.logConfChanges.delete(e.index) || e.type === EntryType.ConfChange;
      this.noteSlot(e);
    }
    if (confChanged && this.role === Role.Leader) this.trackChainMembers();
  }

  /**
   * A pending change's new members must accept slots before the change applies: slots after it
   * need a quorum of its configuration too (configChain), so the leader replicates to them now.
   */
  private trackChainMembers(): void {
    for (const cfg of this.configChain()) {
      for (const id of members(cfg)) {
        if (id !== this.id && !this.peers.has(id))
          this.peers.set(id, this.newPeer(this.log.lastIndex() + 1, 0));
      }
    }
  }

  private noteSlot(e: Entry | undefined): void {
    if (e && e.type === EntryType.ConfChange && e.index > this.log.applied) {
      this.logConfChanges.set(e.index, decodeConfChange(e.data));
    }
  }

  private newPeer(next: number, match: number): Peer {
    return {
      match,
      next,
      state: 'probe',
      probeSent: false,
      inflight: [],
      pendingSnapshot: 0,
      recentActive: true,
      commitSent: 0,
    };
  }

  private becomeProbe(p: Peer, next: number): void {
    p.state = 'probe';
    p.next = Math.max(next, 1);
    p.probeSent = false;
    p.inflight = [];
    p.pendingSnapshot = 0;
  }

  private sendAccept(to: NodeId, p: Peer, allowEmpty: boolean): void {
    if (p.state === 'snapshot') return;
    if (p.state === 'probe' && p.probeSent) return;
    if (p.state === 'replicate' && p.inflight.length >= this.inflightMessagesMax) return;
    if (p.next < this.log.firstIndex()) return this.sendSnapshotAsLeader(to, p);
    const last = this.log.lastIndex();
    const entries = p.next <= last ? this.log.slice(p.next, last + 1, this.maxMessageBytes) : [];
    if (entries.length === 0 && !allowEmpty) return;
    const prev = p.next - 1;
    // The acceptor learns the commit up to the last slot it holds once it takes these.
    p.commitSent = Math.max(p.commitSent, Math.min(this.log.committed, prev + entries.length));
    this.send(
      message({
        type: MessageType.Append,
        to,
        term: this.promised,
        index: prev,
        logTerm: Math.max(0, this.log.ballotAt(prev)),
        entries,
        commit: this.log.committed,
      }),
    );
    if (p.state === 'replicate' && entries.length > 0) {
      p.next = entries[entries.length - 1]!.index + 1;
      p.inflight.push(p.next - 1);
    } else if (p.state === 'probe') {
      p.probeSent = true;
    }
  }

  private sendSnapshotAsLeader(to: NodeId, p: Peer): void {
    const snap = this.sendSnapshotTo(to, this.promised);
    if (!snap) return;
    p.state = 'snapshot';
    p.pendingSnapshot = snap.metadata.index;
    p.inflight = [];
  }

  private sendSnapshotTo(to: NodeId, ballot: number): Snapshot | undefined {
    let snap: Snapshot;
    try {
      snap = this.storage.snapshot();
    } catch {
      return undefined; // not ready yet: retried on a later heartbeat
    }
    if (snap.metadata.index === 0) return undefined;
    this.msgs.push(message({ type: MessageType.Snapshot, to, from: this.id, term: ballot, snapshot: snap }));
    return snap;
  }

  /**
   * Accept(ballot, prev, slots, commit): the acceptor takes the slots when it already holds the
   * leader's values up to `prev` (its match run), so its log stays contiguous. Slots at or below
   * the leader's commit are chosen values (any ballot); the rest must carry the leader's ballot.
   */
  private onAccept(m: Message): void {
    this.followLeader(m);
    if (m.index > this.matchIndex) {
      this.msgsAfterPersist.push(
        message({
          type: MessageType.AppendResponse,
          to: m.from,
          from: this.id,
          term: this.promised,
          index: m.index,
          reject: true,
          rejectHint: this.matchIndex,
        }),
      );
      return;
    }
    const writes: Entry[] = [];
    for (const e of m.entries) {
      if (e.index <= this.matchIndex) continue;
      if (e.index > m.commit && e.term !== m.term) {
        throw new PaxosInvariantError(
          `leader ${m.from} of ballot ${m.term} sent slot ${e.index} at ballot ${e.term}`,
        );
      }
      const mine = this.log.entry(e.index);
      if (mine && mine.term > e.term) {
        if (!bytesEqual(mine.data, e.data) || mine.type !== e.type) {
          throw new PaxosInvariantError(
            `slot ${e.index}: accepted value at ballot ${mine.term} differs from the chosen one`,
          );
        }
        writes.push(mine);
      } else writes.push(e);
    }
    this.writeSlots(writes);
    this.matchIndex = Math.max(this.matchIndex, m.index + m.entries.length);
    this.advanceCommit(m.commit);
    this.msgsAfterPersist.push(
      message({
        type: MessageType.AppendResponse,
        to: m.from,
        from: this.id,
        term: this.promised,
        index: this.matchIndex,
      }),
    );
  }

  /** An Accept, heartbeat or snapshot from the leader of the promised ballot. */
  private followLeader(m: Message): void {
    // The vote records whom this acceptor promised the ballot to, not who won it: a candidate
    // that lost (or the one it promised to) still follows the winner. Only a leader of the very
    // same ballot hearing from another leader proves two phase-1 quorums missed each other.
    if (this.role === Role.Leader) {
      throw new PaxosInvariantError(`ballot ${m.term} has two leaders: ${this.id} and ${m.from}`);
    }
    if (this.vote === NONE) this.vote = m.from;
    if (this.role !== Role.Follower || this.leader !== m.from) this.becomeFollower(m.term, m.from);
    this.electionElapsed = 0;
    if (this.leaseRead) {
      this.stickyUntil = Math.max(this.stickyUntil, this.tickCount + this.electionTicks);
      this.stickyLeader = m.from;
      this.stickyBallot = m.term;
    }
    if (this.matchBallot !== this.promised) this.resetMatch();
  }

  /**
   * The match run for a new ballot: the chosen prefix, extended over slots already accepted in
   * this ballot (after a restart, those came from this ballot's leader, in order).
   */
  private resetMatch(): void {
    this.matchBallot = this.promised;
    this.matchIndex = this.log.committed;
    while (
      this.matchIndex < this.log.lastIndex() &&
      this.log.ballotAt(this.matchIndex + 1) === this.promised
    ) {
      this.matchIndex++;
    }
  }

  private advanceCommit(leaderCommit: number): void {
    const commit = Math.min(leaderCommit, this.matchIndex);
    if (commit > this.log.committed) this.log.committed = commit;
  }

  private onAccepted(m: Message): void {
    if (this.role !== Role.Leader || m.term !== this.promised) return;
    const p = this.peers.get(m.from);
    if (!p) return;
    p.recentActive = true;
    if (m.reject) {
      if (p.state === 'snapshot') return;
      this.becomeProbe(p, m.rejectHint + 1);
      this.sendAccept(m.from, p, true);
      return;
    }
    if (m.index > p.match) p.match = m.index;
    if (p.state === 'snapshot') {
      if (p.match >= p.pendingSnapshot) this.becomeProbe(p, p.match + 1);
      else return;
    }
    if (p.next <= m.index) p.next = m.index + 1;
    while (p.inflight.length > 0 && p.inflight[0]! <= m.index) p.inflight.shift();
    if (p.state === 'probe') {
      p.state = 'replicate';
      p.probeSent = false;
      p.next = m.index + 1;
      p.inflight = [];
    }
    this.maybeCommit();
    if (m.from === this.leadTransferee && p.match >= this.log.lastIndex()) {
      this.sendTimeoutNow(m.from);
    }
    this.sendAccept(m.from, p, false);
  }

  /** A slot is chosen once a phase-2 quorum of every governing configuration accepted it. */
  private maybeCommit(): void {
    if (this.role !== Role.Leader) return;
    const self = this.log.stableLastIndex();
    const acked = (id: NodeId): number => (id === this.id ? self : (this.peers.get(id)?.match ?? 0));
    let commit = Number.MAX_SAFE_INTEGER;
    for (const cfg of this.configChain())
      commit = Math.min(commit, quorumIndex(cfg, 'phase2', this.phase2Quorum, acked));
    commit = Math.min(commit, this.log.lastIndex());
    if (commit <= this.log.committed) return;
    this.log.committed = commit;
    this.releasePendingReads();
  }

  private onHeartbeat(m: Message): void {
    this.followLeader(m);
    this.advanceCommit(m.commit);
    this.msgsAfterPersist.push(
      message({
        type: MessageType.HeartbeatResponse,
        to: m.from,
        from: this.id,
        term: this.promised,
        index: m.index,
        context: m.context,
      }),
    );
  }

  private onHeartbeatResponse(m: Message): void {
    if (this.role !== Role.Leader || m.term !== this.promised) return;
    const p = this.peers.get(m.from);
    if (!p) return;
    p.recentActive = true;
    if (m.index > (this.heartbeatAcked.get(m.from) ?? -1)) this.heartbeatAcked.set(m.from, m.index);
    if (p.state === 'probe') p.probeSent = false;
    // A full window whose answers were lost would stall the acceptor: free one slot so the next
    // Accept goes out (and is rejected into a probe if its predecessors never arrived).
    if (p.state === 'replicate' && p.inflight.length >= this.inflightMessagesMax) p.inflight.shift();
    if (p.match < this.log.lastIndex()) this.sendAccept(m.from, p, true);
    if (m.context.byteLength > 0) {
      const safe = this.reads.ack(m.context, m.from, (acks) =>
        this.isReadQuorum((id) => acks.get(id) === true),
      );
      for (const round of safe) this.releaseRound(round.index, round.requests);
    }
  }

  private onSnapshot(m: Message): void {
    const snap = m.snapshot;
    if (!snap) return;
    // Leaders send snapshots to catch acceptors up; acceptors send them to a candidate of a ballot
    // they promised (this node's own, then) whose floor is below their log.
    const fromLeader = this.vote !== this.id;
    if (fromLeader) this.followLeader(m);
    if (snap.metadata.index > this.log.committed) {
      this.log.restore(snap);
      this.config = trackerConfigFromConfState(snap.metadata.confState);
      this.configIndex = snap.metadata.index;
      for (const slot of [...this.logConfChanges.keys()])
        if (slot <= snap.metadata.index) this.logConfChanges.delete(slot);
      if (this.matchIndex < snap.metadata.index || this.matchBallot !== this.promised) this.resetMatch();
    }
    if (fromLeader) {
      this.msgsAfterPersist.push(
        message({
          type: MessageType.AppendResponse,
          to: m.from,
          from: this.id,
          term: this.promised,
          index: this.matchIndex,
        }),
      );
    } else if (this.role === Role.Candidate) {
      for (const id of this.asked) if (id !== this.id && !this.promises.has(id)) this.sendPrepare(id);
      this.maybeWinPhase1();
    }
  }

  // ---- leader duties ---------------------------------------------------------------------

  private tickLeader(): void {
    this.heartbeatElapsed++;
    this.electionElapsed++;
    if (this.leadTransferee !== NONE && ++this.transferElapsed >= this.electionTicks) {
      this.abortTransfer();
      if (!this.isVoter(this.id)) this.handOff();
    }
    if (this.electionElapsed >= this.electionTicks) {
      this.electionElapsed = 0;
      // A leader handing off after its own removal keeps leading (and sending the commit index)
      // until someone else leads: stepping down would strand what only it knows is chosen.
      if (this.checkQuorum && this.isVoter(this.id) && !this.quorumActive()) {
        this.becomeFollower(this.promised, NONE);
        return;
      }
      for (const p of this.peers.values()) p.recentActive = false;
    }
    if (this.heartbeatElapsed >= this.heartbeatTicks) {
      this.heartbeatElapsed = 0;
      this.broadcastHeartbeat();
    }
  }

  /** The leader can still choose slots: a phase-2 quorum was heard from in the last timeout. */
  private quorumActive(): boolean {
    const active = (id: NodeId): boolean => id === this.id || this.peers.get(id)?.recentActive === true;
    return this.configChain().every((cfg) => isQuorum(cfg, 'phase2', this.phase2Quorum, active));
  }

  private broadcastHeartbeat(context?: Uint8Array): void {
    const ctx = context ?? this.reads.lastPendingContext() ?? EMPTY_BYTES;
    for (const [id, p] of this.peers) this.sendHeartbeat(id, p, ctx);
  }

  /**
   * The chosen slots an acceptor holds or will hold once the Accepts already sent to it arrive
   * (replicate state: every slot below `next` is on its way, in order). The acceptor caps a
   * commit it hears at its own match run (slots it holds from this ballot's leader), so telling
   * it of slots still in flight is safe, and it spares a slow acceptor the round trip of its
   * Accepted before it learns that a slot it holds was chosen.
   */
  private commitFor(p: Peer): number {
    const held = p.state === 'replicate' ? Math.max(p.match, p.next - 1) : p.match;
    return Math.min(this.log.committed, held);
  }

  /** A heartbeat carries the commit up to the slots the acceptor holds or was sent (commitFor). */
  private sendHeartbeat(to: NodeId, p: Peer, context: Uint8Array): void {
    const commit = this.commitFor(p);
    p.commitSent = Math.max(p.commitSent, commit);
    this.send(
      message({
        type: MessageType.Heartbeat,
        to,
        term: this.promised,
        index: this.tickCount,
        commit,
        context,
      }),
    );
  }

  /**
   * Batches what one turn produced: one Accept per acceptor, one read round, and commit news to
   * every acceptor that holds, or was sent, chosen slots it was not told of. That includes an
   * acceptor slower than the phase-2 quorum that chose its slot: it is told in the turn the slot
   * is chosen, not after its Accepted reaches the leader (a lone writer on a slow follower would
   * otherwise wait two more one-way delays per put), nor at the next heartbeat.
   */
  private flush(): void {
    if (this.role !== Role.Leader) return;
    if (this.broadcastPending) {
      this.broadcastPending = false;
      for (const [id, p] of this.peers) this.sendAccept(id, p, false);
    }
    if (this.reads.hasBatch()) this.broadcastHeartbeat(this.reads.startRound(this.log.committed, this.id));
    for (const [id, p] of this.peers)
      if (this.commitFor(p) > p.commitSent) this.sendHeartbeat(id, p, EMPTY_BYTES);
  }

  // ---- linearizable reads ------------------------------------------------------------------

  /**
   * A read is safe at the commit index once a set of acceptors that meets every phase-1 quorum
   * (a phase-2 quorum does) answered a heartbeat sent after the read arrived: no other leader
   * could have been elected before then. A new leader first waits for the slots it took over.
   */
  private addRead(request: ReadRequest): boolean {
    if (this.log.committed < this.takeoverEnd) {
      if (this.pendingReads.length >= PENDING_READS_MAX) return false;
      this.pendingReads.push(request);
      return true;
    }
    if (this.isReadQuorum((id) => id === this.id) || this.holdsLease()) {
      this.releaseRound(this.log.committed, [request]);
      return true;
    }
    return this.reads.add(request);
  }

  /** See the lease rule on tick(). */
  private holdsLease(): boolean {
    if (!this.leaseRead || this.leaseGivenUp || this.leadTransferee !== NONE) return false;
    const fresh = (id: NodeId): boolean =>
      id === this.id ||
      this.tickCount - (this.heartbeatAcked.get(id) ?? Number.NEGATIVE_INFINITY) <= this.leaseTicksMax;
    return this.isReadQuorum(fresh);
  }

  private releasePendingReads(): void {
    if (this.log.committed < this.takeoverEnd || this.pendingReads.length === 0) return;
    const queued = this.pendingReads;
    this.pendingReads = [];
    for (const r of queued) this.addRead(r);
  }

  private isReadQuorum(acked: (id: NodeId) => boolean): boolean {
    return this.configChain().every((cfg) => isQuorum(cfg, 'phase2', this.phase2Quorum, acked));
  }

  private releaseRound(index: number, requests: ReadRequest[]): void {
    for (const r of requests) {
      if (r.from === NONE || r.from === this.id) this.readStates.push({ index, context: r.context });
      else
        this.send(
          message({
            type: MessageType.ReadIndexResponse,
            to: r.from,
            term: this.promised,
            index,
            context: r.context,
          }),
        );
    }
  }

  // ---- membership and leader transfer ------------------------------------------------------

  /** Every configuration must admit intersecting quorums with this cluster's phase-2 size. */
  private checkQuorums(cfg: TrackerConfig): void {
    if (cfg.incoming.size > 0) quorumSizes(cfg.incoming.size, this.phase2Quorum);
    if (cfg.outgoing.size > 0) quorumSizes(cfg.outgoing.size, this.phase2Quorum);
  }

  private maybeAutoLeave(): void {
    const cfg = this.config;
    if (cfg.outgoing.size === 0 || !cfg.autoLeave || this.logConfChanges.size > 0) return;
    if (this.log.applied < this.configIndex) return;
    const leave: ConfChange = { transition: 'auto', changes: [], context: EMPTY_BYTES };
    if (!leavesJoint(leave) || this.refuseProposal(EntryType.ConfChange, encodeConfChange(leave))) return;
    this.appendOwn(EntryType.ConfChange, encodeConfChange(leave));
  }

  private startTransfer(target: NodeId): void {
    if (target === this.id || !this.isVoter(target) || this.leadTransferee === target) return;
    const p = this.peers.get(target);
    if (!p) return;
    this.leadTransferee = target;
    this.transferElapsed = 0;
    if (p.match >= this.log.lastIndex()) {
      this.sendTimeoutNow(target);
    } else {
      this.sendAccept(target, p, true);
    }
  }

  /**
   * A leader removed by a change it applied hands leadership to the most caught-up voter, and
   * retries until someone leads a higher ballot. Stepping down silently would leave the slots
   * only it knows to be chosen (with a phase-2 quorum of 1, possibly only it holds them) and the
   * remaining voters on the old configuration, whose phase-1 quorum may need the leaver.
   */
  private handOff(): void {
    let target: NodeId = NONE;
    let targetMatch = -1;
    for (const id of this.voterIds(this.config)) {
      const p = this.peers.get(id);
      if (p && p.match > targetMatch) {
        target = id;
        targetMatch = p.match;
      }
    }
    if (target === NONE) return this.becomeFollower(this.promised, NONE);
    this.startTransfer(target);
  }

  private sendTimeoutNow(to: NodeId): void {
    // The target's Prepare may pass our acceptors' stickiness: no lease reads in this ballot now.
    this.leaseGivenUp = true;
    this.send(message({ type: MessageType.TimeoutNow, to, term: this.promised }));
  }

  private abortTransfer(): void {
    this.leadTransferee = NONE;
    this.transferElapsed = 0;
  }

  // ---- helpers -----------------------------------------------------------------------------

  private voterIds(cfg: TrackerConfig): NodeId[] {
    return [...new Set([...cfg.incoming, ...cfg.outgoing])];
  }

  private send(m: Message): void {
    m.from = this.id;
    this.msgs.push(m);
  }

  private softState(): SoftState {
    return { leader: this.leader, role: this.role };
  }

  private hardState(): HardState {
    return { term: this.promised, vote: this.vote, commit: this.log.committed };
  }

  private confState(): ConfState {
    const c = this.config;
    return {
      voters: [...c.incoming].sort((a, b) => a - b),
      learners: [...c.learners].sort((a, b) => a - b),
      votersOutgoing: [...c.outgoing].sort((a, b) => a - b),
      learnersNext: [...c.learnersNext].sort((a, b) => a - b),
      autoLeave: c.autoLeave,
    };
  }
}
