// The Raft state machine (etcd raft's raft + RawNode in one): messages, ticks and proposals go in;
// a Ready describing what to persist, send and apply comes out. No I/O, no clock, no randomness
// of its own, so a seed replays a whole cluster exactly.

import type {
  ConfChange,
  ProgressStatus,
  ProposalDropReason,
  ProposeResult,
  RaftConfig,
  RaftNodeApi,
  Ready,
  Status,
} from './api.js';
import {
  decodeConfChange,
  encodeConfChange,
  leavesJoint,
  members,
  nextConfig,
  trackerConfigFromConfState,
} from './confchange.js';
import {
  assertNever,
  ConfChangeError,
  RaftInvariantError,
  RaftUsageError,
  SnapshotTemporarilyUnavailableError,
} from './errors.js';
import { RaftLog } from './log.js';
import { jointCommittedIndex, jointVoteResult, VoteResult } from './quorum.js';
import { ReadIndexBatcher, type ReadRequest } from './read-index.js';
import { emptyTrackerConfig, ProgressTracker, type TrackerConfig } from './tracker.js';
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
} from './types.js';
import { bytesEqual, entriesBytes, payloadBytes } from './util.js';

/** Context of a Vote sent because of TimeoutNow: it overrides leader stickiness. */
const TRANSFER_CONTEXT = new TextEncoder().encode('concord-leader-transfer');
/** Context of a leader's last Heartbeat before it quiesces (RaftConfig.quiesce). */
const QUIESCE_CONTEXT = new TextEncoder().encode('concord-quiesce');

const DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024;
const DEFAULT_INFLIGHT_MESSAGES_MAX = 256;
const DEFAULT_COMMITTED_BYTES_PER_READY_MAX = 64 * 1024 * 1024;
/** Reads queued on a new leader until an entry of its term commits (Raft thesis §6.4). */
const PENDING_READ_MESSAGES_MAX = 65536;

function drop(reason: ProposalDropReason, leaderHint: NodeId): ProposeResult {
  return { ok: false, reason, leaderHint };
}

const OK: ProposeResult = { ok: true };

/** Messages safe to send before the sender's own state in the same Ready is durable. */
function sendableBeforePersist(type: MessageType): boolean {
  switch (type) {
    case MessageType.Append:
    case MessageType.Heartbeat:
    case MessageType.Snapshot:
    case MessageType.TimeoutNow:
    case MessageType.ReadIndexResponse:
    case MessageType.Propose:
    case MessageType.ReadIndex:
    case MessageType.TransferLeader:
      return true;
    default:
      return false;
  }
}

export class RaftNode implements RaftNodeApi {
  readonly id: NodeId;
  private term = 0;
  private vote: NodeId = NONE;
  private lead: NodeId = NONE;
  private role: Role = Role.Follower;
  private readonly log: RaftLog;
  private readonly trk: ProgressTracker;
  private msgs: Message[] = [];
  private msgsAfterPersist: Message[] = [];
  private readStates: ReadState[] = [];

  private readonly electionTicks: number;
  private readonly heartbeatTicks: number;
  private electionElapsed = 0;
  private heartbeatElapsed = 0;
  private randomizedElectionTicks = 0;

  private readonly checkQuorum: boolean;
  private readonly preVote: boolean;
  private readonly leaseRead: boolean;
  private readonly disableProposalForwarding: boolean;
  private readonly quiesceEnabled: boolean;
  /** Hibernating: ticks do nothing until a proposal, read or message wakes the group. */
  private isQuiesced = false;
  private readonly maxMessageBytes: number;
  private readonly uncommittedBytesMax: number;
  private readonly committedBytesPerReadyMax: number;

  private leadTransferee: NodeId = NONE;
  /** The membership the current (pre-)campaign counts votes against (see electionConfig). */
  private electionQuorum: TrackerConfig = emptyTrackerConfig();
  /** Index of the last conf change proposed by this leader; another waits until it is applied. */
  private pendingConfIndex = 0;
  private uncommittedBytes = 0;
  private readonly reads = new ReadIndexBatcher();
  /** Ticks since this node started: the clock of leader leases. */
  private ticks = 0;
  /**
   * Per follower, the send tick of the latest heartbeat it acknowledged in this term. The follower
   * heard us no earlier than that tick, so it refuses other candidates until electionTicks later.
   */
  private readonly leaseAcks = new Map<NodeId, number>();
  /**
   * With lease reads, a freshly started node may have promised a lease before it crashed: it
   * refuses (non-forced) votes until one election timeout has passed since it started.
   */
  private bootGuard: boolean;
  /** Reads that arrived before this leader committed an entry of its term. */
  private readsAwaitingTermCommit: ReadRequest[] = [];
  /** Set by proposals and commit advances; flushed as one append per follower in ready(). */
  private broadcastPending = false;

  private prevSoft: SoftState;
  private prevHard: HardState;
  private readyOutstanding = false;
  /** Last index of the committed entries handed out in the outstanding Ready (being applied). */
  private applyingIndex = 0;

  constructor(readonly config: RaftConfig) {
    if (!Number.isSafeInteger(config.id) || config.id <= 0)
      throw new RaftUsageError(`invalid node id ${config.id}`);
    if (config.heartbeatTicks <= 0 || config.electionTicks <= config.heartbeatTicks) {
      throw new RaftUsageError('electionTicks must be greater than heartbeatTicks, both positive');
    }
    this.id = config.id;
    this.electionTicks = config.electionTicks;
    this.heartbeatTicks = config.heartbeatTicks;
    this.checkQuorum = config.checkQuorum ?? false;
    this.preVote = config.preVote ?? false;
    this.leaseRead = config.readOnlyOption === 'lease-based' && this.checkQuorum;
    this.bootGuard = this.leaseRead;
    this.disableProposalForwarding = config.disableProposalForwarding ?? false;
    this.quiesceEnabled = config.quiesce ?? false;
    this.maxMessageBytes = config.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
    this.uncommittedBytesMax = config.uncommittedBytesMax ?? 0;
    this.committedBytesPerReadyMax =
      config.committedBytesPerReadyMax ?? DEFAULT_COMMITTED_BYTES_PER_READY_MAX;
    this.trk = new ProgressTracker(
      config.inflightMessagesMax ?? DEFAULT_INFLIGHT_MESSAGES_MAX,
      config.inflightBytesMax ?? 0,
    );
    this.log = new RaftLog(config.storage);
    const { hardState, confState } = config.storage.initialState();
    this.loadConfState(confState);
    this.loadHardState(hardState);
    if (config.applied !== undefined && config.applied > 0) this.log.appliedTo(config.applied);
    this.becomeFollower(this.term, NONE);
    this.prevSoft = this.softState();
    this.prevHard = this.hardState();
  }

  private loadConfState(cs: ConfState): void {
    this.trk.config = trackerConfigFromConfState(cs);
    const next = this.log.lastIndex() + 1;
    for (const id of members(this.trk.config)) {
      this.trk.progress.set(id, this.trk.newProgress(next, !this.trk.isVoter(id)));
    }
  }

  private loadHardState(hs: HardState): void {
    if (hs.commit < this.log.committed || hs.commit > this.log.lastIndex()) {
      throw new RaftInvariantError(
        `stored commit ${hs.commit} is out of range [${this.log.committed}, ${this.log.lastIndex()}]`,
      );
    }
    this.log.committed = hs.commit;
    this.term = hs.term;
    this.vote = hs.vote;
  }

  // ---------------------------------------------------------------- state transitions

  private softState(): SoftState {
    return { leader: this.lead, role: this.role };
  }

  private hardState(): HardState {
    return { term: this.term, vote: this.vote, commit: this.log.committed };
  }

  private resetRandomizedElectionTicks(): void {
    this.randomizedElectionTicks = this.electionTicks + this.config.rng.nextInt(this.electionTicks);
  }

  private reset(term: number): void {
    if (this.term !== term) {
      this.term = term;
      this.vote = NONE;
    }
    this.lead = NONE;
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.resetRandomizedElectionTicks();
    this.leadTransferee = NONE;
    this.trk.votes.clear();
    const next = this.log.lastIndex() + 1;
    for (const [id, pr] of this.trk.progress) {
      const fresh = this.trk.newProgress(next, pr.isLearner);
      if (id === this.id) fresh.match = this.log.stableLastIndex();
      this.trk.progress.set(id, fresh);
    }
    this.pendingConfIndex = 0;
    this.uncommittedBytes = 0;
    this.reads.reset();
    this.leaseAcks.clear();
    this.readsAwaitingTermCommit = [];
    this.broadcastPending = false;
    this.isQuiesced = false;
  }

  private becomeFollower(term: number, lead: NodeId): void {
    this.reset(term);
    this.lead = lead;
    this.role = Role.Follower;
  }

  private becomePreCandidate(): void {
    if (this.role === Role.Leader) throw new RaftInvariantError('leader cannot become pre-candidate');
    // A pre-candidate changes neither term nor vote: that is the point of pre-vote.
    this.trk.votes.clear();
    this.lead = NONE;
    this.role = Role.PreCandidate;
  }

  private becomeCandidate(): void {
    if (this.role === Role.Leader) throw new RaftInvariantError('leader cannot become candidate');
    this.reset(this.term + 1);
    this.vote = this.id;
    this.role = Role.Candidate;
  }

  private becomeLeader(): void {
    if (this.role === Role.Follower) throw new RaftInvariantError('follower cannot become leader directly');
    this.reset(this.term);
    this.lead = this.id;
    this.role = Role.Leader;
    this.trk.progress.get(this.id)?.becomeReplicate();
    const self = this.trk.progress.get(this.id);
    if (self) self.match = this.log.stableLastIndex();
    // Conf changes in the uncommitted tail may be pending; be conservative.
    this.pendingConfIndex = this.log.lastIndex();
    // The no-op of the new term: committing it commits everything before (Raft §5.4.2).
    this.appendEntries([
      { term: this.term, index: this.log.lastIndex() + 1, type: EntryType.Normal, data: EMPTY_BYTES },
    ]);
  }

  private promotable(): boolean {
    const pr = this.trk.progress.get(this.id);
    return pr !== undefined && !pr.isLearner && !this.log.unstable.snapshot;
  }

  private hasUnappliedConfChanges(): boolean {
    if (this.log.applied >= this.log.committed) return false;
    const lo = Math.max(this.log.applied + 1, this.log.firstIndex());
    const ents = this.log.slice(lo, this.log.committed + 1, Number.POSITIVE_INFINITY);
    return ents.some((e) => e.type === EntryType.ConfChange);
  }

  /**
   * The membership an election must satisfy: the applied config with every conf change still in
   * the log on top (Raft thesis §4.1: a server uses the latest configuration in its log). A node
   * whose log already holds its own removal must not win with the old voter set, and votes must
   * meet every pending config's quorum, or a removed node could be elected by a stale majority.
   */
  private electionConfig(): TrackerConfig {
    let config = this.trk.config;
    const lo = Math.max(this.log.applied + 1, this.log.firstIndex());
    const hi = this.log.lastIndex() + 1;
    if (lo >= hi) return config;
    for (const e of this.log.slice(lo, hi, Number.POSITIVE_INFINITY)) {
      if (e.type !== EntryType.ConfChange) continue;
      try {
        config = nextConfig(config, decodeConfChange(e.data));
      } catch (err) {
        if (!(err instanceof ConfChangeError)) throw err;
        // Each leader validated its change against the config it follows, so the chain in any log
        // must apply cleanly on top of ours.
        throw new RaftInvariantError(
          `conf change at ${e.index} does not apply to the log's config: ${err.message}`,
        );
      }
    }
    return config;
  }

  private campaign(pre: boolean, transfer: boolean): void {
    if (!this.promotable()) return;
    const config = this.electionConfig();
    if (!config.incoming.has(this.id) && !config.outgoing.has(this.id)) return;
    let voteTerm: number;
    let type: MessageType;
    if (pre) {
      this.becomePreCandidate();
      voteTerm = this.term + 1;
      type = MessageType.PreVote;
    } else {
      this.becomeCandidate();
      voteTerm = this.term;
      type = MessageType.Vote;
    }
    this.electionQuorum = config;
    this.trk.recordVote(this.id, true);
    if (jointVoteResult(config, this.trk.votes) === VoteResult.Won) {
      // Single voter: won on its own vote.
      if (pre) this.campaign(false, transfer);
      else this.becomeLeader();
      return;
    }
    const lastIndex = this.log.lastIndex();
    const lastTerm = this.log.lastTerm();
    for (const id of members({ ...config, learners: new Set(), learnersNext: new Set() })) {
      if (id === this.id) continue;
      this.send(
        message({
          type,
          to: id,
          term: voteTerm,
          index: lastIndex,
          logTerm: lastTerm,
          context: transfer ? TRANSFER_CONTEXT : EMPTY_BYTES,
        }),
      );
    }
  }

  // ---------------------------------------------------------------- driver API

  tick(): void {
    this.ticks++;
    if (this.bootGuard && this.ticks >= this.electionTicks) this.bootGuard = false;
    if (this.isQuiesced) return;
    if (this.role === Role.Leader) this.tickHeartbeat();
    else this.tickElection();
  }

  /**
   * Brings the first election near, as etcd does on start: a follower that knows no leader
   * counts electionTicks - 1 ticks as already elapsed, so it campaigns within 1..electionTicks
   * ticks instead of electionTicks..2*electionTicks. Only liveness changes: pre-vote and leader
   * stickiness still apply. Refused (false) with lease reads, whose boot guard must last a full
   * election timeout, and on a node that has a leader or is not promotable.
   */
  fastForwardElection(): boolean {
    if (this.leaseRead || this.role !== Role.Follower || this.lead !== NONE || !this.promotable())
      return false;
    this.electionElapsed = Math.max(this.electionElapsed, this.electionTicks - 1);
    return true;
  }

  private tickElection(): void {
    this.electionElapsed++;
    if (this.promotable() && this.electionElapsed >= this.randomizedElectionTicks) {
      this.electionElapsed = 0;
      this.step(message({ type: MessageType.Hup, from: this.id }));
    }
  }

  private tickHeartbeat(): void {
    this.heartbeatElapsed++;
    this.electionElapsed++;
    if (this.electionElapsed >= this.electionTicks) {
      this.electionElapsed = 0;
      if (this.checkQuorum) this.step(message({ type: MessageType.CheckQuorum, from: this.id }));
      // A transfer that did not finish within an election timeout is abandoned.
      if (this.role === Role.Leader && this.leadTransferee !== NONE) this.leadTransferee = NONE;
    }
    if (this.role !== Role.Leader) return;
    if (this.heartbeatElapsed >= this.heartbeatTicks) {
      this.heartbeatElapsed = 0;
      if (this.canQuiesce()) this.quiesce();
      else this.step(message({ type: MessageType.Beat, from: this.id }));
    }
  }

  // ---------------------------------------------------------------- quiescence

  get quiesced(): boolean {
    return this.isQuiesced;
  }

  /**
   * A leader may hibernate when nothing is in motion: everything is committed, applied and on
   * every member's disk (each one's match is the last index, so the quiesce heartbeat's commit
   * tells each the final commit index), no read, proposal, transfer or conf change is pending, and
   * no follower is being probed or sent a snapshot.
   */
  private canQuiesce(): boolean {
    if (!this.quiesceEnabled || this.role !== Role.Leader) return false;
    const last = this.log.lastIndex();
    if (this.log.committed !== last || this.log.applied !== last) return false;
    if (this.log.term(last) !== this.term || this.log.unstable.entries.length > 0) return false;
    if (this.leadTransferee !== NONE || this.pendingConfIndex > this.log.applied) return false;
    if (this.trk.isJoint() || this.broadcastPending || this.readyOutstanding) return false;
    if (this.reads.hasBatch() || this.reads.lastPendingContext() !== undefined) return false;
    if (this.readsAwaitingTermCommit.length > 0) return false;
    for (const [id, pr] of this.trk.progress) {
      if (pr.match !== last) return false;
      if (id !== this.id && pr.state !== 'replicate') return false;
    }
    return true;
  }

  /** The leader's last heartbeat (marked so the followers hibernate too), then no more ticks. */
  private quiesce(): void {
    for (const id of this.trk.progress.keys()) {
      if (id === this.id) continue;
      this.send(
        message({
          type: MessageType.Heartbeat,
          to: id,
          commit: this.log.committed,
          context: QUIESCE_CONTEXT,
          index: this.ticks,
        }),
      );
    }
    // Ticks no longer measure anything: a lease from before would outlive its real time.
    this.leaseAcks.clear();
    this.isQuiesced = true;
  }

  /** Whether m wakes a hibernating node (see RaftConfig.quiesce). */
  private wakes(m: Message): boolean {
    switch (m.type) {
      case MessageType.Beat:
      case MessageType.CheckQuorum:
      case MessageType.SnapshotStatus:
      // Answers to heartbeats sent before quiescence carry no work.
      case MessageType.HeartbeatResponse:
        return false;
      case MessageType.Unreachable:
        // A follower's only news that its silent leader is gone.
        return this.role !== Role.Leader && m.from === this.lead;
      case MessageType.Heartbeat:
        return !bytesEqual(m.context, QUIESCE_CONTEXT);
      default:
        // Stale messages from an old term change nothing.
        return m.term === 0 || m.term >= this.term;
    }
  }

  /**
   * Leaves hibernation: a leader resumes ticking and heartbeats at once (which wakes its
   * followers), with a fresh check-quorum window; a follower resumes its election timer.
   */
  private wake(): void {
    if (!this.isQuiesced) return;
    this.isQuiesced = false;
    if (this.role !== Role.Leader) return;
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    for (const [id, pr] of this.trk.progress) if (id !== this.id) pr.recentActive = false;
    this.bcastHeartbeat(EMPTY_BYTES);
  }

  propose(data: Uint8Array): ProposeResult {
    return this.proposeEntry(EntryType.Normal, data);
  }

  proposeConfChange(change: ConfChange): ProposeResult {
    return this.proposeEntry(EntryType.ConfChange, encodeConfChange(change));
  }

  private proposeEntry(type: EntryType, data: Uint8Array): ProposeResult {
    this.wake();
    if (this.role === Role.Leader) {
      const reason = this.leaderRejects(type, data);
      if (reason) return drop(reason, this.id);
      this.appendProposal(type, data);
      return OK;
    }
    if (this.lead === NONE) return drop('no-leader', NONE);
    if (this.disableProposalForwarding) return drop('not-leader-forwarding-disabled', this.lead);
    const entry: Entry = { term: 0, index: 0, type, data };
    this.send(message({ type: MessageType.Propose, to: this.lead, entries: [entry] }));
    return OK;
  }

  private leaderRejects(type: EntryType, data: Uint8Array): ProposalDropReason | undefined {
    if (!this.trk.progress.has(this.id)) return 'not-a-member';
    if (this.leadTransferee !== NONE) return 'leader-transfer-in-progress';
    if (this.uncommittedBytesMax > 0 && this.uncommittedBytes > 0) {
      if (this.uncommittedBytes + data.byteLength > this.uncommittedBytesMax) return 'uncommitted-bytes-max';
    }
    if (type === EntryType.ConfChange) return this.confChangeRejects(data);
    return undefined;
  }

  private confChangeRejects(data: Uint8Array): ProposalDropReason | undefined {
    if (this.pendingConfIndex > this.log.applied) return 'conf-change-pending';
    let cc: ConfChange;
    try {
      cc = decodeConfChange(data);
    } catch (err) {
      if (err instanceof ConfChangeError) return 'invalid-conf-change';
      throw err;
    }
    // While joint, the only change allowed is leaving: the leave is as good as pending.
    if (this.trk.isJoint() && !leavesJoint(cc)) return 'conf-change-pending';
    try {
      // Validate now: an invalid change that commits would stop every node when applied.
      nextConfig(this.trk.config, cc);
    } catch (err) {
      if (err instanceof ConfChangeError) return 'invalid-conf-change';
      throw err;
    }
    return undefined;
  }

  private appendProposal(type: EntryType, data: Uint8Array): void {
    const index = this.log.lastIndex() + 1;
    this.appendEntries([{ term: this.term, index, type, data }]);
    if (type === EntryType.ConfChange) this.pendingConfIndex = index;
  }

  /** Appends to the leader's log; its own match advances only when advance() reports them durable. */
  private appendEntries(entries: Entry[]): void {
    this.log.append(entries);
    this.uncommittedBytes += payloadBytes(entries);
    this.broadcastPending = true;
  }

  readIndex(context: Uint8Array): ProposeResult {
    this.wake();
    if (this.role === Role.Leader) {
      if (!this.handleReadRequest({ from: this.id, context })) return drop('read-index-queue-full', this.id);
      return OK;
    }
    if (this.lead === NONE) return drop('no-leader', NONE);
    this.send(message({ type: MessageType.ReadIndex, to: this.lead, context }));
    return OK;
  }

  transferLeadership(target: NodeId): void {
    // The target travels in `index` so the message can be forwarded from a follower unchanged.
    this.step(message({ type: MessageType.TransferLeader, from: this.id, index: target }));
  }

  applyConfChange(change: ConfChange): ConfState {
    const next = nextConfig(this.trk.config, change);
    this.switchToConfig(next);
    return this.trk.confState();
  }

  reportUnreachable(peer: NodeId): void {
    this.step(message({ type: MessageType.Unreachable, from: peer }));
  }

  reportSnapshot(peer: NodeId, ok: boolean): void {
    this.step(message({ type: MessageType.SnapshotStatus, from: peer, reject: !ok }));
  }

  // ---------------------------------------------------------------- step

  step(m: Message): void {
    if (this.isQuiesced && this.wakes(m)) this.wake();
    if (m.term === 0) {
      // Local message.
    } else if (m.term > this.term) {
      if (!this.stepHigherTerm(m)) return;
    } else if (m.term < this.term) {
      this.stepLowerTerm(m);
      return;
    }
    switch (m.type) {
      case MessageType.Hup:
        if (this.role !== Role.Leader && !this.hasUnappliedConfChanges()) this.campaign(this.preVote, false);
        return;
      case MessageType.Vote:
      case MessageType.PreVote:
        this.handleVoteRequest(m);
        return;
      default:
        break;
    }
    switch (this.role) {
      case Role.Leader:
        this.stepLeader(m);
        return;
      case Role.Candidate:
      case Role.PreCandidate:
        this.stepCandidate(m);
        return;
      case Role.Follower:
        this.stepFollower(m);
        return;
      default:
        assertNever(this.role);
    }
  }

  /** Returns whether to continue processing m. */
  private stepHigherTerm(m: Message): boolean {
    if (m.type === MessageType.Vote || m.type === MessageType.PreVote) {
      const force = bytesEqual(m.context, TRANSFER_CONTEXT);
      const inLease =
        this.checkQuorum &&
        (this.lead !== NONE || this.bootGuard) &&
        this.electionElapsed < this.electionTicks;
      // Leader stickiness: while we hear from a live leader, a (pre-)candidate cannot disrupt it.
      if (!force && inLease) return false;
    }
    if (m.type === MessageType.PreVote) return true;
    if (m.type === MessageType.PreVoteResponse && !m.reject) return true;
    const isLeaderMsg =
      m.type === MessageType.Append || m.type === MessageType.Heartbeat || m.type === MessageType.Snapshot;
    this.becomeFollower(m.term, isLeaderMsg ? m.from : NONE);
    return true;
  }

  private stepLowerTerm(m: Message): void {
    if (
      (this.checkQuorum || this.preVote) &&
      (m.type === MessageType.Heartbeat || m.type === MessageType.Append)
    ) {
      // A stale leader cut off by a partition: tell it our term so it steps down. Without this,
      // pre-vote/check-quorum could leave it unable ever to learn it was replaced.
      this.send(message({ type: MessageType.AppendResponse, to: m.from }));
    } else if (m.type === MessageType.PreVote) {
      // Carries our (higher) term so the pre-candidate learns it is behind.
      this.send(message({ type: MessageType.PreVoteResponse, to: m.from, term: this.term, reject: true }));
    }
  }

  private handleVoteRequest(m: Message): void {
    const responseType = m.type === MessageType.Vote ? MessageType.VoteResponse : MessageType.PreVoteResponse;
    const canVote =
      this.vote === m.from ||
      (this.vote === NONE && this.lead === NONE) ||
      (m.type === MessageType.PreVote && m.term > this.term);
    if (canVote && this.log.isUpToDate(m.index, m.logTerm)) {
      // Granted responses carry the request's term (a pre-vote's term is in our future).
      this.send(message({ type: responseType, to: m.from, term: m.term }));
      if (m.type === MessageType.Vote) {
        this.electionElapsed = 0;
        this.vote = m.from;
      }
    } else {
      this.send(message({ type: responseType, to: m.from, term: this.term, reject: true }));
    }
  }

  private assertSingleLeader(m: Message): void {
    if (this.role === Role.Leader) {
      throw new RaftInvariantError(`two leaders in term ${this.term}: ${this.id} and ${m.from}`);
    }
    if (this.lead !== NONE && this.lead !== m.from) {
      throw new RaftInvariantError(
        `two leaders in term ${this.term}: ${this.lead} and ${m.from} (seen by ${this.id})`,
      );
    }
  }

  private stepFollower(m: Message): void {
    switch (m.type) {
      case MessageType.Propose:
        if (this.lead === NONE || this.disableProposalForwarding || this.lead === m.from) return;
        this.send({ ...m, to: this.lead, term: 0 });
        return;
      case MessageType.Append:
        this.assertSingleLeader(m);
        this.electionElapsed = 0;
        this.lead = m.from;
        this.handleAppend(m);
        return;
      case MessageType.Heartbeat:
        this.assertSingleLeader(m);
        this.electionElapsed = 0;
        this.lead = m.from;
        this.handleHeartbeat(m);
        return;
      case MessageType.Snapshot:
        this.assertSingleLeader(m);
        this.electionElapsed = 0;
        this.lead = m.from;
        this.handleSnapshot(m);
        return;
      case MessageType.TransferLeader:
        if (this.lead !== NONE && this.lead !== m.from) this.send({ ...m, to: this.lead, term: 0 });
        return;
      case MessageType.TimeoutNow:
        // The leader chose us: campaign at once, skipping pre-vote and stickiness. Not with
        // unapplied conf changes: we might count votes against the wrong membership.
        if (!this.hasUnappliedConfChanges()) this.campaign(false, true);
        return;
      case MessageType.ReadIndex:
        if (this.lead === NONE || this.lead === m.from) return;
        this.send({ ...m, to: this.lead, term: 0 });
        return;
      case MessageType.ReadIndexResponse:
        this.readStates.push({ index: m.index, context: m.context });
        return;
      default:
        return;
    }
  }

  private stepCandidate(m: Message): void {
    const expected = this.role === Role.PreCandidate ? MessageType.PreVoteResponse : MessageType.VoteResponse;
    switch (m.type) {
      case MessageType.Append:
      case MessageType.Heartbeat:
      case MessageType.Snapshot:
        // A leader of our term exists: it won, we lost.
        this.becomeFollower(m.term, m.from);
        this.stepFollower(m);
        return;
      case expected: {
        this.trk.recordVote(m.from, !m.reject);
        const result = jointVoteResult(this.electionQuorum, this.trk.votes);
        if (result === VoteResult.Won) {
          if (this.role === Role.PreCandidate) this.campaign(false, false);
          else this.becomeLeader();
        } else if (result === VoteResult.Lost) {
          this.becomeFollower(this.term, NONE);
        }
        return;
      }
      default:
        return;
    }
  }

  // ---------------------------------------------------------------- follower handlers

  private handleAppend(m: Message): void {
    if (m.index < this.log.committed) {
      this.send(message({ type: MessageType.AppendResponse, to: m.from, index: this.log.committed }));
      return;
    }
    const lastNew = this.log.maybeAppend(m.index, m.logTerm, m.commit, m.entries);
    if (lastNew >= 0) {
      this.send(message({ type: MessageType.AppendResponse, to: m.from, index: lastNew }));
      return;
    }
    // Hint where our logs may match so the leader can skip a whole term per round trip.
    const last = this.log.lastIndex();
    const hint = this.log.findConflictByTerm(Math.min(m.index, last), m.logTerm);
    this.send(
      message({
        type: MessageType.AppendResponse,
        to: m.from,
        index: m.index,
        reject: true,
        rejectHint: hint.index,
        logTerm: hint.term,
      }),
    );
  }

  private handleHeartbeat(m: Message): void {
    const last = this.log.lastIndex();
    this.log.commitTo(Math.min(m.commit, last));
    if (bytesEqual(m.context, QUIESCE_CONTEXT)) {
      // No answer: the leader has stopped listening for one. A follower that is not caught up
      // stays awake; its election timer runs out and its pre-vote wakes the leader.
      if (this.quiesceEnabled && m.commit === last && this.log.committed === last) this.isQuiesced = true;
      return;
    }
    // Echo the leader's send tick (index) so it can time its lease from when we heard it.
    this.send(
      message({ type: MessageType.HeartbeatResponse, to: m.from, index: m.index, context: m.context }),
    );
  }

  private handleSnapshot(m: Message): void {
    const snap = m.snapshot;
    if (!snap) throw new RaftInvariantError(`snapshot message from ${m.from} without a snapshot`);
    if (this.restore(snap)) {
      this.send(message({ type: MessageType.AppendResponse, to: m.from, index: this.log.lastIndex() }));
    } else {
      this.send(message({ type: MessageType.AppendResponse, to: m.from, index: this.log.committed }));
    }
  }

  private restore(snap: Snapshot): boolean {
    const { index, term } = snap.metadata;
    if (index <= this.log.committed) return false;
    if (this.log.matchTerm(index, term)) {
      // We already hold the snapshot's last entry: just learn that it is committed.
      this.log.commitTo(index);
      return false;
    }
    // The application is applying entries (maybe conf changes) older than the snapshot; restoring
    // now would let them land on the snapshot's membership. Refuse; the leader retries later.
    if (this.readyOutstanding && this.applyingIndex > this.log.applied) return false;
    this.log.restore(snap);
    this.trk.config = trackerConfigFromConfState(snap.metadata.confState);
    this.trk.progress.clear();
    for (const id of members(this.trk.config)) {
      this.trk.progress.set(id, this.trk.newProgress(index + 1, !this.trk.isVoter(id)));
    }
    return true;
  }

  // ---------------------------------------------------------------- leader

  private stepLeader(m: Message): void {
    switch (m.type) {
      case MessageType.Beat:
        this.bcastHeartbeat(this.reads.lastPendingContext() ?? EMPTY_BYTES);
        return;
      case MessageType.CheckQuorum:
        if (!this.trk.quorumActive(this.id)) {
          this.becomeFollower(this.term, NONE);
          return;
        }
        for (const [id, pr] of this.trk.progress) if (id !== this.id) pr.recentActive = false;
        return;
      case MessageType.Propose:
        for (const e of m.entries) {
          if (this.leaderRejects(e.type, e.data) === undefined) this.appendProposal(e.type, e.data);
        }
        return;
      case MessageType.ReadIndex:
        this.handleReadRequest({ from: m.from, context: m.context });
        return;
      case MessageType.TransferLeader:
        this.handleTransferLeader(m.index);
        return;
      case MessageType.Append:
      case MessageType.Heartbeat:
      case MessageType.Snapshot:
        this.assertSingleLeader(m);
        return;
      default:
        break;
    }
    const pr = this.trk.progress.get(m.from);
    if (!pr) return;
    switch (m.type) {
      case MessageType.AppendResponse:
        pr.recentActive = true;
        if (m.reject) this.handleAppendRejected(m);
        else this.handleAppendAccepted(m);
        return;
      case MessageType.HeartbeatResponse:
        pr.recentActive = true;
        if (m.index > (this.leaseAcks.get(m.from) ?? -1)) this.leaseAcks.set(m.from, m.index);
        pr.msgAppFlowPaused = false;
        // Appends may have been lost: free a slot so a full window cannot stall forever, and send
        // even an empty append so a follower that missed entries rejects it and gets probed.
        if (pr.state === 'replicate' && pr.inflights.full()) pr.inflights.freeFirst();
        // A probed follower that answers and already holds everything (probed after an
        // unreachable report while idle) gets no append to accept, so only this ends its probe;
        // otherwise an idle group could never quiesce.
        if (this.quiesceEnabled && pr.state === 'probe' && pr.match === this.log.lastIndex())
          pr.becomeReplicate();
        if (pr.match < this.log.lastIndex()) this.sendAppend(m.from, true);
        if (m.context.byteLength > 0) this.ackReadRound(m);
        return;
      case MessageType.SnapshotStatus:
        if (pr.state !== 'snapshot') return;
        if (m.reject) pr.pendingSnapshot = 0;
        pr.becomeProbe();
        // Wait for the follower's answer (or a heartbeat) before the next append.
        pr.msgAppFlowPaused = true;
        return;
      case MessageType.Unreachable:
        if (pr.state === 'replicate') pr.becomeProbe();
        return;
      default:
        return;
    }
  }

  private handleAppendRejected(m: Message): void {
    const pr = this.trk.progress.get(m.from)!;
    let nextProbe = m.rejectHint;
    if (m.logTerm > 0) nextProbe = this.log.findConflictByTerm(m.rejectHint, m.logTerm).index;
    if (pr.maybeDecrTo(m.index, nextProbe)) {
      if (pr.state === 'replicate') pr.becomeProbe();
      this.sendAppend(m.from, false);
    }
  }

  private handleAppendAccepted(m: Message): void {
    const pr = this.trk.progress.get(m.from)!;
    const wasPaused = pr.isPaused();
    if (pr.maybeUpdate(m.index) || (pr.match === m.index && pr.state === 'probe')) {
      if (pr.state === 'probe') pr.becomeReplicate();
      else if (pr.state === 'snapshot' && pr.match + 1 >= this.log.firstIndex()) {
        pr.becomeProbe();
        pr.becomeReplicate();
      } else if (pr.state === 'replicate') pr.inflights.freeLE(m.index);
      if (this.maybeCommit()) this.broadcastPending = true;
      else if (wasPaused || pr.state === 'replicate') this.sendAppendLoop(m.from);
      if (m.from === this.leadTransferee && pr.match === this.log.lastIndex()) {
        this.sendTimeoutNow(m.from);
      }
    }
  }

  private maybeCommit(): boolean {
    if (!this.log.maybeCommit(this.trk.committed(), this.term)) return false;
    this.onCommitInTerm();
    return true;
  }

  /** The first commit of the term unlocks reads that were waiting for it. */
  private onCommitInTerm(): void {
    if (this.readsAwaitingTermCommit.length === 0) return;
    const waiting = this.readsAwaitingTermCommit;
    this.readsAwaitingTermCommit = [];
    for (const r of waiting) this.handleReadRequest(r);
  }

  private sendAppendLoop(to: NodeId): void {
    while (this.sendAppend(to, false)) {
      // Each call sends one message; the inflight window stops the loop.
    }
  }

  /** Sends one Append (or a Snapshot) to `to`; returns whether something was sent. */
  private sendAppend(to: NodeId, sendIfEmpty: boolean): boolean {
    const pr = this.trk.progress.get(to);
    if (!pr || to === this.id || pr.isPaused()) return false;
    const prevIndex = pr.next - 1;
    const prevTerm = this.log.term(prevIndex);
    if (prevTerm < 0) return this.sendSnapshot(to);
    const lastIndex = this.log.lastIndex();
    if (pr.next > lastIndex && !sendIfEmpty) return false;
    let entries: Entry[] = [];
    if (pr.next <= lastIndex) {
      if (pr.next < this.log.firstIndex()) return this.sendSnapshot(to);
      entries = this.log.slice(pr.next, lastIndex + 1, this.maxMessageBytes);
    }
    const n = entries.length;
    pr.sentEntries(n, n > 0 ? entries[n - 1]!.index : prevIndex, n > 0 ? entriesBytes(entries) : 0);
    this.send(
      message({
        type: MessageType.Append,
        to,
        index: prevIndex,
        logTerm: prevTerm,
        entries,
        commit: this.log.committed,
      }),
    );
    return true;
  }

  private sendSnapshot(to: NodeId): boolean {
    const pr = this.trk.progress.get(to)!;
    if (!pr.recentActive) return false;
    let snap: Snapshot;
    try {
      snap = this.log.snapshot();
    } catch (err) {
      if (err instanceof SnapshotTemporarilyUnavailableError) return false;
      throw err;
    }
    if (snap.metadata.index === 0) throw new RaftInvariantError(`need a snapshot for ${to} but none exists`);
    pr.becomeSnapshot(snap.metadata.index);
    this.send(message({ type: MessageType.Snapshot, to, snapshot: snap }));
    return true;
  }

  private bcastAppend(): void {
    for (const id of this.trk.progress.keys()) {
      if (id === this.id) continue;
      if (this.sendAppend(id, true)) this.sendAppendLoop(id);
    }
  }

  private bcastHeartbeat(context: Uint8Array): void {
    const committed = this.log.committed;
    for (const [id, pr] of this.trk.progress) {
      if (id === this.id) continue;
      // Never tell a follower to commit past what it is known to hold.
      const commit = Math.min(pr.match, committed);
      this.send(message({ type: MessageType.Heartbeat, to: id, commit, context, index: this.ticks }));
    }
  }

  private sendTimeoutNow(to: NodeId): void {
    // The target's forced campaign ignores the followers' leases: ours is void from now on.
    this.leaseAcks.clear();
    this.send(message({ type: MessageType.TimeoutNow, to }));
  }

  /** Whether a quorum acknowledged heartbeats sent less than electionTicks ago. */
  private leaseValid(): boolean {
    if (this.leadTransferee !== NONE) return false;
    const start = jointCommittedIndex(this.trk.config, (id) =>
      id === this.id ? this.ticks : (this.leaseAcks.get(id) ?? Number.NEGATIVE_INFINITY),
    );
    return this.ticks - start < this.electionTicks;
  }

  private handleTransferLeader(target: NodeId): void {
    const pr = this.trk.progress.get(target);
    if (!pr || pr.isLearner || target === this.id) return;
    if (this.leadTransferee === target) return;
    this.leadTransferee = target;
    // The transfer must finish within one election timeout or it is abandoned (tickHeartbeat).
    this.electionElapsed = 0;
    if (pr.match === this.log.lastIndex()) this.sendTimeoutNow(target);
    else this.sendAppend(target, false);
  }

  // ---------------------------------------------------------------- reads

  /** Returns false only when the read queue is full. */
  private handleReadRequest(r: ReadRequest): boolean {
    if (this.trk.isSingleVoter(this.id)) {
      this.respondRead(r, this.log.committed);
      return true;
    }
    // A new leader does not know the commit index until an entry of its own term commits.
    if (this.log.term(this.log.committed) !== this.term) {
      if (this.readsAwaitingTermCommit.length >= PENDING_READ_MESSAGES_MAX) return false;
      this.readsAwaitingTermCommit.push(r);
      return true;
    }
    if (this.leaseRead && this.leaseValid()) {
      this.respondRead(r, this.log.committed);
      return true;
    }
    return this.reads.add(r);
  }

  private respondRead(r: ReadRequest, index: number): void {
    if (r.from === NONE || r.from === this.id) this.readStates.push({ index, context: r.context });
    else this.send(message({ type: MessageType.ReadIndexResponse, to: r.from, index, context: r.context }));
  }

  private ackReadRound(m: Message): void {
    const released = this.reads.ack(
      m.context,
      m.from,
      (acks) => this.trk.voteResult(acks) === VoteResult.Won,
    );
    for (const round of released) for (const r of round.requests) this.respondRead(r, round.index);
  }

  // ---------------------------------------------------------------- membership

  private switchToConfig(next: ReturnType<typeof nextConfig>): void {
    this.trk.config = next;
    const ids = members(next);
    const keep = new Set(ids);
    for (const id of [...this.trk.progress.keys()]) if (!keep.has(id)) this.trk.progress.delete(id);
    const lastIndex = this.log.lastIndex();
    for (const id of ids) {
      const isLearner = !this.trk.isVoter(id);
      const pr = this.trk.progress.get(id);
      if (pr) pr.isLearner = isLearner;
      else this.trk.progress.set(id, this.trk.newProgress(Math.max(lastIndex, 1), isLearner));
    }
    if (this.role !== Role.Leader) return;
    const self = this.trk.progress.get(this.id);
    if (!self || self.isLearner) {
      // The config without us is committed: tell everyone the commit index, then step aside.
      this.maybeCommit();
      this.bcastAppend();
      this.becomeFollower(this.term, NONE);
      return;
    }
    if (this.leadTransferee !== NONE && !this.trk.isVoter(this.leadTransferee)) this.leadTransferee = NONE;
    this.maybeCommit();
    this.broadcastPending = true;
  }

  private maybeAutoLeave(): void {
    const c = this.trk.config;
    if (this.role !== Role.Leader || !c.autoLeave || c.outgoing.size === 0) return;
    if (this.pendingConfIndex > this.log.applied) return;
    const data = encodeConfChange({ transition: 'auto', changes: [], context: EMPTY_BYTES });
    this.appendProposal(EntryType.ConfChange, data);
  }

  // ---------------------------------------------------------------- ready / advance

  private send(m: Message): void {
    m.from = this.id;
    if (
      m.type !== MessageType.Vote &&
      m.type !== MessageType.PreVote &&
      m.type !== MessageType.VoteResponse &&
      m.type !== MessageType.PreVoteResponse &&
      m.type !== MessageType.Propose &&
      m.type !== MessageType.ReadIndex &&
      m.type !== MessageType.TransferLeader
    ) {
      m.term = this.term;
    }
    if (sendableBeforePersist(m.type)) this.msgs.push(m);
    else this.msgsAfterPersist.push(m);
  }

  private flush(): void {
    if (this.role !== Role.Leader) return;
    if (this.broadcastPending) {
      this.broadcastPending = false;
      // A single-voter leader commits on its own durable entries, handled in advance().
      this.bcastAppend();
    }
    if (this.reads.hasBatch()) this.bcastHeartbeat(this.reads.startRound(this.log.committed, this.id));
  }

  hasReady(): boolean {
    this.flush();
    const soft = this.prevSoft;
    const hard = this.prevHard;
    return (
      soft.leader !== this.lead ||
      soft.role !== this.role ||
      hard.term !== this.term ||
      hard.vote !== this.vote ||
      hard.commit !== this.log.committed ||
      this.log.unstable.entries.length > 0 ||
      this.log.unstable.snapshot !== undefined ||
      this.msgs.length > 0 ||
      this.msgsAfterPersist.length > 0 ||
      this.readStates.length > 0 ||
      this.log.hasNextCommittedEntries()
    );
  }

  ready(): Ready {
    if (this.readyOutstanding) throw new RaftUsageError('ready() called again before advance()');
    this.flush();
    const rd: Ready = {
      entries: this.log.unstable.entries.slice(),
      committedEntries: this.log.nextCommittedEntries(this.committedBytesPerReadyMax),
      messages: this.msgs,
      messagesAfterPersist: this.msgsAfterPersist,
      readStates: this.readStates,
      mustSync: false,
    };
    this.msgs = [];
    this.msgsAfterPersist = [];
    this.readStates = [];
    const soft = this.softState();
    if (soft.leader !== this.prevSoft.leader || soft.role !== this.prevSoft.role) rd.softState = soft;
    const hard = this.hardState();
    const prev = this.prevHard;
    if (hard.term !== prev.term || hard.vote !== prev.vote || hard.commit !== prev.commit) {
      if (hard.commit < prev.commit) {
        throw new RaftInvariantError(`commit index went back from ${prev.commit} to ${hard.commit}`);
      }
      if (hard.term < prev.term)
        throw new RaftInvariantError(`term went back from ${prev.term} to ${hard.term}`);
      rd.hardState = hard;
    }
    if (this.log.unstable.snapshot) rd.snapshot = this.log.unstable.snapshot;
    rd.mustSync =
      rd.entries.length > 0 ||
      rd.snapshot !== undefined ||
      (rd.hardState !== undefined && (hard.term !== prev.term || hard.vote !== prev.vote));
    this.readyOutstanding = true;
    const n = rd.committedEntries.length;
    this.applyingIndex = n > 0 ? rd.committedEntries[n - 1]!.index : this.log.applied;
    return rd;
  }

  advance(rd: Ready): void {
    if (!this.readyOutstanding) throw new RaftUsageError('advance() without an outstanding ready()');
    this.readyOutstanding = false;
    if (rd.softState) this.prevSoft = rd.softState;
    if (rd.hardState) this.prevHard = rd.hardState;
    if (rd.snapshot) {
      this.log.unstable.stableSnapTo(rd.snapshot.metadata.index);
      this.log.appliedTo(rd.snapshot.metadata.index);
    }
    if (rd.entries.length > 0) this.entriesDurable(rd.entries[rd.entries.length - 1]!);
    const n = rd.committedEntries.length;
    if (n > 0) {
      this.log.appliedTo(rd.committedEntries[n - 1]!.index);
      if (this.role === Role.Leader) {
        const applied = payloadBytes(rd.committedEntries);
        this.uncommittedBytes = applied >= this.uncommittedBytes ? 0 : this.uncommittedBytes - applied;
      }
      this.maybeAutoLeave();
    }
  }

  private entriesDurable(last: Entry): void {
    this.log.unstable.stableTo(last.index, last.term);
    if (this.role !== Role.Leader || this.log.term(last.index) !== last.term) return;
    // Only now may the leader count itself toward a quorum for these entries.
    const self = this.trk.progress.get(this.id);
    if (self?.maybeUpdate(last.index) && this.maybeCommit()) this.broadcastPending = true;
  }

  status(): Status {
    const status: Status = {
      id: this.id,
      hardState: this.hardState(),
      softState: this.softState(),
      applied: this.log.applied,
      lastIndex: this.log.lastIndex(),
      leadTransferee: this.leadTransferee,
      confState: this.trk.confState(),
    };
    if (this.role === Role.Leader) {
      const progress = new Map<NodeId, ProgressStatus>();
      for (const [id, pr] of this.trk.progress) progress.set(id, pr.status());
      status.progress = progress;
    }
    return status;
  }

  /** Committed index; exposed for drivers and tests that check invariants across nodes. */
  get committedIndex(): number {
    return this.log.committed;
  }

  /**
   * The snapshot step() accepted that is not yet persisted (handed out by ready(), stable after
   * advance()); a driver holding a snapshot's data outside the core learns from it whether a
   * MsgSnap it delivered was taken or refused.
   */
  get pendingSnapshot(): Snapshot | undefined {
    return this.log.unstable.snapshot;
  }
}
