// One consensus group's replica on this node: the consensus engine and the host loop that drives
// it, the committed entries applied to the keyspace (membership, auth, alarms and leases included),
// snapshots taken and installed, linearizable reads, and the proposals waiting to apply.
//
// Write path: encode → engine.propose → (batch) WAL fsync + send → commit → one LMDB transaction
// for the whole committed batch → the waiting request is answered with its apply result.
// Read path: ReadIndex (batched per turn) → wait until applied ≥ read index → read LMDB.
//
// What belongs to the process (the WAL file, the peer transport, the encryption key ring, the
// fail-stop) is the node's: the replica gets the objects it writes through and reports to the
// node through ReplicaEvents.

import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { LeaseTable } from '../lease/lease-table.js';
import type { Keyspace } from '../mvcc/keyspace.js';
import type { AppliedEntry, TxnRequest, WriteOp, WriteResponse } from '../mvcc/types.js';
import type { ConfChange, ConsensusEngine, Rng } from '../raft/api.js';
import { decodeConfChange } from '../raft/confchange.js';
import type { MemoryStorage } from '../raft/memory-storage.js';
import {
  type ConfState,
  EMPTY_BYTES,
  type Entry,
  EntryType,
  type Message,
  MessageType,
  type NodeId,
  Role,
  type Snapshot,
  type SoftState,
} from '../raft/types.js';
import type { FailStopOperation } from '../storage/fail-stop.js';
import type { SnapshotStore } from '../storage/snapshot-store.js';
import type { Wal } from '../storage/wal.js';
import { collectGarbage } from '../util/collect-garbage.js';
import type { Logger } from '../util/logger.js';
import { EtcdError } from '../wire/etcd-errors.js';
import { AppliedWait } from './applied-wait.js';
import { checkWritePermitted } from './auth-checks.js';
import { AuthGate } from './auth-gate.js';
import { AUTH_META_NAME, type AuthEffect, type AuthInfo, type AuthOp, AuthStore } from './auth-store.js';
import type { AuthTokenConfig } from './auth-tokens.js';
import { type ConsensusKind, choiceOf, createConsensusEngine } from './consensus.js';
import { formatId, publicId } from './ids.js';
import {
  type Alarm,
  type AlarmKind,
  decodeMemberChange,
  MEMBERS_META_NAME,
  type MemberChangeContext,
  Members,
} from './members.js';
import { type ClusterOp, decodeProposal, type ServerOp, type SplitOp } from './proposal.js';
import { type ApplyOutcome, Proposer, type ResponseOf } from './proposer.js';
import { type DurableLog, type HostStage, type MessageSender, RaftHost } from './raft-host.js';
import { ReadBatcher } from './read-batcher.js';
import {
  decodeShardIds,
  decodeShardRecord,
  encodeShardIds,
  encodeShardRecord,
  FIRST_SHARD_ID,
  foundingRecord,
  initialShardRecord,
  SHARD_IDS_META_NAME,
  type ShardRecord,
  ShardSplitRefusedError,
  shardMetaName,
  splitRecord,
} from './shard-record.js';
import { DEFAULT_WARNING_APPLY_DURATION_MS, type ServerStats } from './stats.js';
import { Waiters } from './waiters.js';

/** The keyspace's meta record holding the encryption key id the cluster agreed on last. */
export const ENCRYPTION_KEY_META_NAME = 'encryptionKey';
/** What a failure in each stage of the Raft loop was doing. */
const HOST_STAGE_OPERATIONS: Record<HostStage, FailStopOperation> = {
  persist: 'wal-write',
  apply: 'apply',
  restore: 'snapshot-install',
  loop: 'raft-loop',
};

/** The node's settings a replica reads (ServerConfig has them all). */
/** Snapshots at least this large are followed by a full collection (see takeSnapshot). */
const GC_AFTER_SNAPSHOT_BYTES = 16 * 1024 * 1024;

export interface ReplicaConfig {
  heartbeatIntervalMs: number;
  electionTimeoutMs: number;
  snapshotCount: number;
  snapshotCatchUpEntries: number;
  warningApplyDurationMs?: number;
  consensus?: ConsensusKind;
  paxosPhase2Quorum?: number;
  authToken?: AuthTokenConfig;
  authTokenTtlSeconds?: number;
  bcryptCost?: number;
}

/** What the node opened for this group: the keyspace, its part of the WAL, its snapshot files. */
export interface ReplicaStorage {
  keyspace: Keyspace;
  wal: Wal;
  snapshots: SnapshotStore;
  /** The in-memory log, recovered from the WAL. */
  storage: MemoryStorage;
  /** The durable half of the log the host loop persists to. */
  durableLog: DurableLog;
  /** Where snapshot copies are staged. */
  scratchDir: string;
  /**
   * Runs this group's applies in line with another group's (a group other than 1 passes group
   * 1's `exclusive`: the keyspace is shared, and defragment and re-encryption replace its file).
   */
  serialize?: <T>(work: () => Promise<T>) => Promise<T>;
}

/** What the replica tells the node. */
export interface ReplicaEvents {
  /** A storage failure: the node fail-stops. */
  onFatal(operation: FailStopOperation, error: unknown): void;
  /** The membership changed (an applied entry, or an installed snapshot). */
  onMembersChanged(): void;
  /** An applied encryptionKey entry made `keyId` the cluster's key. */
  onEncryptionKeyApplied(keyId: string): void;
  /** A snapshot from the leader replaced the keyspace (before the membership is synced). */
  onSnapshotInstalled(): void;
  /** This group applied a split: the node starts the right half's group (`right`) on this member. */
  onShardSplit?(right: ShardRecord): void;
}

export interface ReplicaIdentity {
  groupId: number;
  memberId: number;
  /** Index of the last entry the keyspace holds applied when the replica starts. */
  appliedIndex: number;
  /**
   * A group other than 1: its shard as the keyspace's `shard.<id>` record holds it (range, epoch,
   * applied index). Group 1 reads its own record, or holds the whole keyspace before a split.
   */
  shard?: ShardRecord;
}

export interface HeaderInfo {
  clusterId: bigint;
  memberId: bigint;
  revision: number;
  raftTerm: bigint;
}

class CryptoRng implements Rng {
  nextInt(bound: number): number {
    return randomBytes(4).readUInt32BE(0) % bound;
  }
}

export class GroupReplica {
  readonly groupId: number;
  readonly memberId: number;
  /** The consensus engine (Raft or Multi-Paxos, per --consensus); the host drives either alike. */
  private readonly raft: ConsensusEngine;
  private readonly host: RaftHost;
  private readonly waiters: Waiters<ApplyOutcome>;
  private readonly proposer: Proposer;
  private readonly reads: ReadBatcher;
  private readonly appliedWait: AppliedWait;
  readonly leases: LeaseTable;
  readonly authGate: AuthGate;
  readonly keyspace: Keyspace;
  private readonly wal: Wal;
  private readonly snapshots: SnapshotStore;
  private readonly storage: MemoryStorage;
  private readonly snapshotScratchDir: string;
  private softState: SoftState = { leader: 0, role: Role.Follower };
  private lastKnownLeader = 0;
  /** When the leader last sent a heartbeat to each peer still unanswered (performance.now ms). */
  private readonly heartbeatSentMs = new Map<number, number>();
  private term = 0;
  private snapshotIndex: number;
  /**
   * Which alarm guards writes at apply, as etcd's applier chain: the last alarm raised, until the
   * last alarm of that kind is lowered; after a restart CORRUPT's, else NOSPACE's, if raised.
   */
  private alarmGuard: AlarmKind;
  private snapshotting = false;
  /** Bumped by every membership change or installed snapshot (see takeSnapshot). */
  private confChanges = 0;
  private electionFastForwarded = false;
  private confState: ConfState;
  /** Something was applied since the node last looked at the quota. */
  quotaCheckDue = false;
  /** Lease revokes the leader proposed and that have not applied yet. */
  readonly revokesInFlight = new Set<bigint>();
  /** This member's name and client URLs are in the membership (see publishMember). */
  private publishedFlag = false;
  private resolvePublished: () => void = () => undefined;
  /**
   * Resolves once this member's name and client URLs are in its applied membership: etcd serves
   * clients only then (its ReadyNotify), so a member list never shows a serving member unnamed.
   */
  readonly whenPublished = new Promise<void>((resolve) => {
    this.resolvePublished = resolve;
  });
  /** No new work starts: set by stop(). */
  private stopped = false;
  /** A key id the batch being applied makes active (an encryptionKey entry). */
  private encryptionKeyApplied: string | undefined;
  /** Serializes applies with work that replaces the database file (defragment, re-encryption). */
  private applyQueue: Promise<void> = Promise.resolve();
  /** This group's shard: its key range and epoch (and, for a group other than 1, its applied index). */
  private shard: ShardRecord;
  private readonly serialize: ReplicaStorage['serialize'];

  constructor(
    identity: ReplicaIdentity,
    private readonly config: ReplicaConfig,
    private readonly log: Logger,
    opened: ReplicaStorage,
    public members: Members,
    sender: MessageSender,
    private readonly stats: ServerStats,
    private readonly events: ReplicaEvents,
  ) {
    this.groupId = identity.groupId;
    this.memberId = identity.memberId;
    this.keyspace = opened.keyspace;
    this.shard = identity.shard ?? loadShardRecord(opened.keyspace, identity.groupId);
    this.serialize = opened.serialize;
    this.wal = opened.wal;
    this.snapshots = opened.snapshots;
    this.storage = opened.storage;
    this.snapshotScratchDir = opened.scratchDir;
    const storage = opened.storage;
    this.alarmGuard = alarmGuardAfterRestart(members);
    this.snapshotIndex = storage.snapshot().metadata.index;
    this.confState = storage.initialState().confState;
    this.term = storage.initialState().hardState.term;
    const electionTicks = Math.max(2, Math.round(config.electionTimeoutMs / config.heartbeatIntervalMs));
    this.raft = createConsensusEngine(choiceOf(config), {
      id: identity.memberId,
      electionTicks,
      heartbeatTicks: 1,
      storage,
      rng: new CryptoRng(),
      applied: identity.appliedIndex,
      checkQuorum: true,
      preVote: true,
      readOnlyOption: 'safe',
      maxMessageBytes: 1024 * 1024,
      inflightMessagesMax: 256,
      inflightBytesMax: 64 * 1024 * 1024,
      uncommittedBytesMax: 256 * 1024 * 1024,
      committedBytesPerReadyMax: 64 * 1024 * 1024,
      // A group a split made is idle but for its admin entries: it sleeps (no ticks, no heartbeats)
      // until a proposal, a message or an unreachable leader wakes it. Raft only.
      ...(identity.groupId === FIRST_SHARD_ID ? {} : { quiesce: true }),
    });
    this.waiters = new Waiters(this.requestTimeoutMs);
    this.appliedWait = new AppliedWait(identity.appliedIndex);
    this.leases = new LeaseTable(Math.ceil((3 * config.electionTimeoutMs) / 2 / 1000));
    const nowMs = Date.now();
    for (const lease of this.keyspace.leases()) this.leases.grant(lease.id, lease.ttlSeconds, nowMs);
    this.reads = new ReadBatcher(
      { readIndex: (ctx) => this.raft.readIndex(ctx), schedule: () => this.host.schedule() },
      config.electionTimeoutMs,
      this.requestTimeoutMs,
    );
    this.host = new RaftHost(
      this.raft,
      storage,
      opened.durableLog,
      {
        send: (messages) => {
          if (this.softState.role === Role.Leader) this.noteHeartbeatsSent(messages);
          sender.send(messages);
        },
        flush: () => sender.flush(),
      },
      {
        restoreSnapshot: (snapshot) => this.restoreSnapshot(snapshot),
        applyEntries: (entries) => this.applyEntries(entries),
      },
      {
        onSoftState: (state) => this.onSoftState(state),
        onHardState: (state) => {
          this.term = state.term;
        },
        onReadStates: (states) => this.reads.onReadStates(states),
        onApplied: (index) => this.onApplied(index),
        onFatal: (error, stage) => this.events.onFatal(HOST_STAGE_OPERATIONS[stage], error),
      },
      config.heartbeatIntervalMs,
    );
    this.authGate = new AuthGate(loadAuth(this.keyspace), {
      token: config.authToken,
      simpleTokenTtlSeconds: config.authTokenTtlSeconds,
      bcryptCost: config.bcryptCost,
    });
    this.proposer = new Proposer(this.waiters, {
      memberId: identity.memberId,
      engine: this.raft,
      authGate: this.authGate,
      stats,
      electionTimeoutMs: config.electionTimeoutMs,
      schedule: () => this.host.schedule(),
      assertServing: () => this.assertServing(),
      refuseOnLearner: () => this.refuseOnLearner(),
    });
  }

  /** How long a request waits for its entry to apply (`etcdserver: request timed out`). */
  get requestTimeoutMs(): number {
    return 5000 + 2 * this.config.electionTimeoutMs;
  }

  // ---- lifecycle -----------------------------------------------------------------------------

  start(): void {
    this.host.start();
    const voters = this.raft.status().confState.voters;
    if (voters.length === 1 && voters[0] === this.memberId) this.fastForwardElection();
  }

  /** Stops the host loop and fails every waiting request; nothing new starts after it. */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.host.stop();
    const error = new EtcdError('stopped');
    this.waiters.rejectAll(error);
    this.reads.rejectAll(error);
  }

  /** Re-issues pending linearizable reads (a timer calls it every heartbeat interval). */
  onTick(): void {
    this.reads.onTick();
  }

  /**
   * Once per process, when a peer is first reachable (at once when alone): the first election
   * comes within one election timeout rather than after one to two, as etcd does on start.
   */
  fastForwardElection(): void {
    if (this.electionFastForwarded) return;
    this.electionFastForwarded = true;
    if (this.raft.fastForwardElection()) this.host.schedule();
  }

  get isLeader(): boolean {
    return this.softState.role === Role.Leader;
  }

  get leaderId(): number {
    return this.softState.leader;
  }

  get role(): Role {
    return this.softState.role;
  }

  get currentTerm(): number {
    return this.term;
  }

  get appliedIndex(): number {
    return this.appliedWait.appliedIndex;
  }

  get voters(): readonly NodeId[] {
    return this.confState.voters;
  }

  get pendingProposals(): number {
    return this.waiters.size;
  }

  get proposalTimeouts(): number {
    return this.waiters.timeouts;
  }

  /** The consensus engine's view (hard state, soft state, followers' progress on a leader). */
  status(): ReturnType<ConsensusEngine['status']> {
    return this.raft.status();
  }

  /** Index of the last entry in the in-memory log. */
  lastIndex(): number {
    return this.storage.lastIndex();
  }

  /** Index of the latest snapshot the log starts from. */
  snapshotLogIndex(): number {
    return this.storage.snapshot().metadata.index;
  }

  /** The snapshot the engine took from a peer message and has not installed yet. */
  get pendingSnapshot(): Snapshot | undefined {
    return this.raft.pendingSnapshot;
  }

  reportUnreachable(peer: NodeId): void {
    this.raft.reportUnreachable(peer);
    // A hibernating follower of a leader on that peer wakes (group 1 never hibernates).
    if (this.groupId !== FIRST_SHARD_ID) this.host.schedule();
  }

  /** The group sleeps: its core quiesced and nothing ticks it (groups a split made). */
  get hibernating(): boolean {
    return this.host.isHibernating;
  }

  reportSnapshot(peer: NodeId, ok: boolean): void {
    this.raft.reportSnapshot(peer, ok);
    this.host.schedule();
  }

  transferLeadership(target: NodeId): void {
    this.raft.transferLeadership(target);
    this.host.schedule();
  }

  /** A message from a peer: stepped into the engine unless its sender was removed. */
  step(message: Message): void {
    if (this.stopped) return;
    if (this.members.isRemoved(message.from)) return;
    if (message.type === MessageType.HeartbeatResponse) this.noteHeartbeatAnswered(message.from);
    try {
      this.raft.step(message);
    } catch (error) {
      this.log.warn('dropped a peer message the core refused', {
        error: (error as Error).message,
        type: message.type,
      });
    }
    this.host.schedule();
  }

  private onSoftState(state: SoftState): void {
    const wasLeader = this.softState.role === Role.Leader;
    const leaderChanged = state.leader !== 0 && state.leader !== this.softState.leader;
    // Between two leaders the core passes through "no leader"; the cause is the last one known.
    const previousLeader = this.lastKnownLeader;
    if (state.leader !== 0) this.lastKnownLeader = state.leader;
    this.softState = state;
    if (leaderChanged) {
      this.reads.onLeaderChange();
      this.stats.leaderChanges++;
    }
    const isLeader = state.role === Role.Leader;
    const { term, commit } = this.raft.status().hardState;
    if (isLeader && !wasLeader) {
      this.leases.promote(Date.now(), this.config.electionTimeoutMs);
      this.log.info('became leader', {
        term,
        index: commit,
        'previous-leader': previousLeader === 0 ? '' : formatId(previousLeader),
      });
    } else if (!isLeader && wasLeader) {
      this.leases.demote();
      this.heartbeatSentMs.clear();
      this.log.info('lost leadership', { term, index: commit, leader: formatId(state.leader) });
    } else if (leaderChanged) {
      this.log.info('leader changed', {
        term,
        index: commit,
        leader: formatId(state.leader),
        'previous-leader': previousLeader === 0 ? '' : formatId(previousLeader),
      });
    }
  }

  /** The leader times one heartbeat per peer at a time (etcd probes peers for the same metric). */
  private noteHeartbeatsSent(messages: readonly Message[]): void {
    for (const message of messages) {
      if (message.type !== MessageType.Heartbeat) continue;
      const sent = this.heartbeatSentMs.get(message.to);
      const now = performance.now();
      // A heartbeat lost on the way would otherwise hold its slot forever.
      if (sent === undefined || now - sent > this.config.electionTimeoutMs)
        this.heartbeatSentMs.set(message.to, now);
    }
  }

  private noteHeartbeatAnswered(from: number): void {
    const sent = this.heartbeatSentMs.get(from);
    if (sent === undefined) return;
    this.heartbeatSentMs.delete(from);
    this.stats.peerRoundTrip(from, (performance.now() - sent) / 1000);
  }

  private onApplied(index: number): void {
    this.appliedWait.advance(Math.max(index, this.appliedWait.appliedIndex));
  }

  // ---- applying committed entries -------------------------------------------------------------

  /** Runs `work` between two applied batches (defragment and re-encryption replace or rewrite records). */
  exclusive<T>(work: () => Promise<T>): Promise<T> {
    const run = this.applyQueue.then(work);
    this.applyQueue = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  private applyEntries(entries: Entry[]): Promise<void> {
    const run = () => this.applyEntriesNow(entries);
    return this.serialize !== undefined ? this.serialize(run) : this.exclusive(run);
  }

  private async applyEntriesNow(entries: Entry[]): Promise<void> {
    if (this.groupId !== FIRST_SHARD_ID) return this.applyShardGroupEntries(entries);
    const batch: AppliedEntry[] = [];
    const owners: Array<number | undefined> = [];
    const done: { requestId: number; alarms?: Alarm[]; auth?: AuthEffect }[] = [];
    const refused: { requestId: number; error: Error }[] = [];
    let membersChanged = false;
    let authChanged = false;
    let shardMeta: Record<string, Uint8Array> | undefined;
    const splits: ShardRecord[] = [];
    // After a restart the log re-delivers entries the keyspace (and the membership stored with
    // it) already holds: only conf changes matter again, to the core; the rest is not decoded.
    const appliedBefore = this.keyspace.appliedIndex();
    for (const entry of entries) {
      if (entry.index <= appliedBefore && entry.type !== EntryType.ConfChange) {
        batch.push({ index: entry.index, op: { type: 'noop' } });
        owners.push(undefined);
        continue;
      }
      if (entry.type === EntryType.ConfChange) {
        const requestId = this.applyConfChangeEntry(entry);
        if (requestId !== undefined) done.push({ requestId });
        membersChanged = true;
        batch.push({ index: entry.index, op: { type: 'noop' } });
        owners.push(undefined);
        continue;
      }
      if (entry.data.length === 0) {
        batch.push({ index: entry.index, op: { type: 'noop' } });
        owners.push(undefined);
        continue;
      }
      const proposal = decodeProposal(entry.data);
      const mine = proposal.proposer === this.memberId ? proposal.requestId : undefined;
      let op = proposal.op;
      let authInfo: AuthInfo | undefined;
      if (op.type === 'authed') {
        authInfo = { username: op.username, revision: op.authRevision };
        op = op.op;
      }
      if (op.type === 'auth') {
        batch.push({ index: entry.index, op: { type: 'noop' } });
        owners.push(undefined);
        const applied = this.applyAuthOp(op.request, authInfo, entry.index);
        if (applied instanceof EtcdError) {
          if (mine !== undefined) refused.push({ requestId: mine, error: applied });
          continue;
        }
        if (op.request.type !== 'authenticate' && applied.type !== 'unchanged') authChanged = true;
        if (mine !== undefined) done.push({ requestId: mine, auth: applied });
        continue;
      }
      if (op.type === 'splitShard') {
        batch.push({ index: entry.index, op: { type: 'noop' } });
        owners.push(undefined);
        const split = this.applySplit(op, shardMeta);
        if (split instanceof ShardSplitRefusedError) {
          if (mine !== undefined) refused.push({ requestId: mine, error: split });
          continue;
        }
        shardMeta = { ...shardMeta, ...split.records };
        splits.push(split.right);
        if (mine !== undefined) done.push({ requestId: mine });
        continue;
      }
      if (isClusterOp(op)) {
        const alarms = this.applyClusterOp(op);
        membersChanged = true;
        batch.push({ index: entry.index, op: { type: 'noop' } });
        owners.push(undefined);
        if (mine !== undefined) done.push({ requestId: mine, alarms });
        continue;
      }
      const refusal = this.alarmRefusal(op) ?? this.authRefusal(op, authInfo, proposal.op.type === 'authed');
      if (refusal !== undefined) {
        batch.push({ index: entry.index, op: { type: 'noop' } });
        owners.push(undefined);
        if (mine !== undefined) refused.push({ requestId: mine, error: refusal });
        continue;
      }
      batch.push({ index: entry.index, op });
      owners.push(mine);
    }
    // Membership, the encryption key agreed on and the auth store ride in the same LMDB
    // transaction as the entries that changed them.
    const keyId = this.encryptionKeyApplied;
    this.encryptionKeyApplied = undefined;
    const meta =
      membersChanged || authChanged || shardMeta !== undefined
        ? {
            ...(membersChanged ? { [MEMBERS_META_NAME]: this.members.encode() } : {}),
            ...(keyId === undefined ? {} : { [ENCRYPTION_KEY_META_NAME]: Buffer.from(keyId) }),
            ...(authChanged ? { [AUTH_META_NAME]: this.authGate.store.encode() } : {}),
            ...shardMeta,
          }
        : undefined;
    const applyStartMs = performance.now();
    const results = this.keyspace.applyBatch(batch, meta === undefined ? {} : { meta });
    this.noteApplyDuration(performance.now() - applyStartMs, batch);
    if (membersChanged) this.events.onMembersChanged();
    if (keyId !== undefined) this.events.onEncryptionKeyApplied(keyId);
    for (const right of splits) this.events.onShardSplit?.(right);
    const nowMs = Date.now();
    for (let i = 0; i < results.length; i++) {
      const result = results[i]!;
      const owner = owners[i];
      if (result.status === 'ok') {
        const op = batch[i]!.op;
        if (op.type === 'put') this.stats.puts++;
        else if (op.type === 'txn') this.stats.txns++;
        else if (op.type === 'deleteRange') this.stats.deletes++;
        else if (op.type === 'compact')
          this.log.info('compacted the keyspace', {
            revision: op.request.revision,
            'raft-index': batch[i]!.index,
          });
        this.trackLease(op, result.response, nowMs);
        if (owner !== undefined) this.waiters.resolve(owner, { status: 'ok', response: result.response });
      } else if (result.status === 'error') {
        if (owner !== undefined) this.waiters.resolve(owner, { status: 'error', error: result.error });
      }
    }
    for (const { requestId, alarms, auth } of done)
      this.waiters.resolve(requestId, { status: 'done', alarms, auth });
    for (const { requestId, error } of refused) this.waiters.resolve(requestId, { status: 'error', error });
    this.snapshotIfDue();
    this.quotaCheckDue = true;
  }

  /**
   * A split entry of this shard's log: the shard keeps [start, splitKey) at epoch + 1 and the
   * right half's group is founded with this group's voters. Returns the keyspace records to write
   * in the batch's transaction (this shard's, the right half's, the list of hosted groups), or
   * why it was refused (every replica refuses alike: the record is the same on all of them).
   */
  private applySplit(
    op: SplitOp,
    /** Records an earlier split of the same batch wrote (not in the keyspace yet). */
    pending: Readonly<Record<string, Uint8Array>> | undefined,
  ): { records: Record<string, Uint8Array>; right: ShardRecord } | ShardSplitRefusedError {
    const split = splitRecord(this.shard, op, this.confState.voters, this.keyspace.currentRevision());
    if ('refused' in split) {
      this.log.warn('refused a shard split', { shard: op.shardId, reason: split.refused });
      return new ShardSplitRefusedError(split.refused);
    }
    this.shard = split.left;
    const ids = new Set(
      decodeShardIds(pending?.[SHARD_IDS_META_NAME] ?? this.keyspace.getMeta(SHARD_IDS_META_NAME)),
    );
    ids.add(split.right.id);
    this.log.info('applied a shard split', {
      shard: op.shardId,
      epoch: split.left.epoch,
      right: split.right.id,
    });
    return {
      records: {
        [shardMetaName(this.groupId)]: encodeShardRecord(this.shard),
        [shardMetaName(split.right.id)]: encodeShardRecord(split.right),
        [SHARD_IDS_META_NAME]: encodeShardIds([...ids]),
      },
      right: split.right,
    };
  }

  /**
   * A group other than 1 applies its own admin entries only (splits, conf changes to its core);
   * its shard record, with the index applied, is written in one LMDB transaction per batch.
   * Keyspace writes are not routed to these groups yet: one found in the log is refused.
   */
  private async applyShardGroupEntries(entries: Entry[]): Promise<void> {
    let records: Record<string, Uint8Array> = {};
    const splits: ShardRecord[] = [];
    const outcomes: Array<[number, ApplyOutcome]> = [];
    const appliedBefore = this.shard.applied;
    for (const entry of entries) {
      if (entry.type === EntryType.ConfChange) {
        this.confState = this.raft.applyConfChange(decodeConfChange(entry.data));
        this.storage.setConfState(this.confState);
        continue;
      }
      if (entry.index <= appliedBefore || entry.data.length === 0) continue;
      const proposal = decodeProposal(entry.data);
      const mine = proposal.proposer === this.memberId ? proposal.requestId : undefined;
      if (proposal.op.type === 'splitShard') {
        const split = this.applySplit(proposal.op, records);
        if (split instanceof ShardSplitRefusedError) {
          if (mine !== undefined) outcomes.push([mine, { status: 'error', error: split }]);
          continue;
        }
        records = { ...records, ...split.records };
        splits.push(split.right);
        if (mine !== undefined) outcomes.push([mine, { status: 'done' }]);
        continue;
      }
      if (mine !== undefined)
        outcomes.push([
          mine,
          {
            status: 'error',
            error: new Error(`concord: shard ${this.groupId} does not serve ${proposal.op.type} yet`),
          },
        ]);
    }
    const last = entries.at(-1);
    if (last !== undefined && last.index > this.shard.applied)
      this.shard = { ...this.shard, applied: last.index };
    records[shardMetaName(this.groupId)] = encodeShardRecord(this.shard);
    this.keyspace.putMetaRecords(records);
    for (const right of splits) this.events.onShardSplit?.(right);
    for (const [requestId, outcome] of outcomes) this.waiters.resolve(requestId, outcome);
    await this.releaseShardGroupLog();
  }

  /**
   * A group other than 1 keeps no log behind what it applied: its state is its record (and the
   * records of the shards it split off), so after each batch the keyspace is synced, the records
   * become the in-memory snapshot (what a lagging follower is sent), the marker goes to the WAL
   * and the group's WAL entries are released.
   */
  private async releaseShardGroupLog(): Promise<void> {
    const index = this.shard.applied;
    if (index <= this.storage.snapshot().metadata.index || index > this.storage.lastIndex()) return;
    await this.keyspace.sync();
    const snapshot = this.storage.createSnapshot(
      index,
      this.confState,
      shardSnapshotData(this.keyspace, this.groupId),
    );
    this.storage.compact(index);
    this.wal.saveSnapshotMarker(this.groupId, snapshot.metadata);
    await this.wal.sync();
    await this.wal.releaseTo(this.groupId, index);
  }

  /**
   * A snapshot from the leader of a group other than 1, made durable before its WAL marker: its
   * records written to the keyspace with the index as applied, and synced.
   */
  async persistShardSnapshot(snapshot: Snapshot): Promise<void> {
    const records = decodeShardSnapshot(snapshot.data);
    const ids = new Set(decodeShardIds(this.keyspace.getMeta(SHARD_IDS_META_NAME)));
    const writes: Record<string, Uint8Array> = {};
    for (const [i, record] of records.entries()) {
      ids.add(record.id);
      // A child this member does not host yet is founded from its first state and replays its log.
      const stored = i === 0 ? { ...record, applied: snapshot.metadata.index } : foundingRecord(record);
      // A child this member already hosts keeps its own record (its applied index is its own).
      if (i > 0 && this.keyspace.getMeta(shardMetaName(record.id)) !== undefined) continue;
      writes[shardMetaName(record.id)] = encodeShardRecord(stored);
    }
    writes[SHARD_IDS_META_NAME] = encodeShardIds([...ids]);
    this.keyspace.putMetaRecords(writes);
    await this.keyspace.sync();
  }

  /** This group's shard: key range and epoch (see shard-record.ts). */
  get shardRecord(): ShardRecord {
    return this.shard;
  }

  /**
   * Writes this group's record again (a group other than 1), after a group-1 snapshot from the
   * leader replaced the keyspace and with it every record in it.
   */
  persistShardRecord(): void {
    if (this.groupId === FIRST_SHARD_ID) return;
    const ids = new Set(decodeShardIds(this.keyspace.getMeta(SHARD_IDS_META_NAME)));
    ids.add(this.groupId);
    this.keyspace.putMetaRecords({
      [shardMetaName(this.groupId)]: encodeShardRecord(this.shard),
      [SHARD_IDS_META_NAME]: encodeShardIds([...ids]),
    });
  }

  /** etcd's "apply request took too long": one warning per slow batch, with what it held. */
  private noteApplyDuration(tookMs: number, batch: readonly AppliedEntry[]): void {
    this.stats.backendCommit(tookMs / 1000);
    const expectedMs = this.config.warningApplyDurationMs ?? DEFAULT_WARNING_APPLY_DURATION_MS;
    if (tookMs <= expectedMs) return;
    this.stats.slowApplies++;
    this.log.warn('apply request took too long', {
      took: `${tookMs.toFixed(1)}ms`,
      'expected-duration': `${expectedMs}ms`,
      index: batch.at(-1)?.index ?? 0,
      entries: batch.length,
    });
  }

  private trackLease(op: WriteOp, response: WriteResponse, nowMs: number): void {
    if (op.type === 'leaseGrant' && response.type === 'leaseGrant') {
      this.leases.grant(response.response.id, response.response.ttlSeconds, nowMs);
    } else if (op.type === 'leaseRevoke') {
      this.leases.revoke(op.request.id);
      this.revokesInFlight.delete(op.request.id);
    }
  }

  private applyConfChangeEntry(entry: Entry): number | undefined {
    const change = decodeConfChange(entry.data);
    let context: MemberChangeContext | undefined;
    if (change.context.length > 0) context = decodeMemberChange(change.context);
    try {
      this.confState = this.raft.applyConfChange(change);
      this.confChanges++;
      this.storage.setConfState(this.confState);
    } catch (error) {
      this.log.warn('ignored an invalid membership change', {
        index: entry.index,
        error: (error as Error).message,
      });
      return context?.proposer === this.memberId ? context.requestId : undefined;
    }
    if (context !== undefined && this.members.clusterId === 0) this.members.clusterId = context.clusterId;
    for (const single of change.changes) {
      this.log.info('applied a membership change', {
        change: single.type,
        member: formatId(single.nodeId),
        'raft-index': entry.index,
        voters: this.confState.voters.map(formatId),
        learners: this.confState.learners.map(formatId),
      });
      switch (single.type) {
        case 'add-node':
        case 'add-learner':
          this.members.add({
            id: single.nodeId,
            name: context?.id === single.nodeId ? context.name : '',
            peerUrls: context?.id === single.nodeId ? context.peerUrls : [],
            isLearner: single.type === 'add-learner',
            clusterId: this.members.clusterId,
            proposer: 0,
            requestId: 0,
          });
          break;
        case 'remove-node':
          this.members.remove(single.nodeId);
          if (single.nodeId === this.memberId) this.log.warn('this member was removed from the cluster');
          break;
      }
    }
    return context?.proposer === this.memberId ? context.requestId : undefined;
  }

  /** Applies an auth op on this member; a refused op changed nothing and returns etcd's error. */
  private applyAuthOp(request: AuthOp, info: AuthInfo | undefined, index: number): AuthEffect | EtcdError {
    let effect: AuthEffect;
    try {
      effect = this.authGate.store.apply(request, info);
    } catch (error) {
      if (error instanceof EtcdError) return error;
      throw error;
    }
    // etcd's simple token: the prefix the proposer chose, then the entry's index.
    if (effect.type === 'authenticated')
      effect = { ...effect, simpleToken: `${effect.simpleToken}.${index}` };
    this.authGate.onApplied(effect);
    if (request.type === 'authEnable' && effect.type !== 'unchanged') this.log.info('auth enabled');
    if (request.type === 'authDisable' && effect.type !== 'unchanged') this.log.info('auth disabled');
    return effect;
  }

  /**
   * With auth enabled, a KV write applies only if the user it was proposed for may make it at the
   * current auth revision (etcd's authApplierV3); other writes (leases, compaction) are not checked.
   */
  private authRefusal(op: ServerOp, info: AuthInfo | undefined, authed: boolean): EtcdError | undefined {
    const store = this.authGate.store;
    if (!store.enabled) return undefined;
    if (op.type !== 'put' && op.type !== 'deleteRange' && op.type !== 'txn') return undefined;
    try {
      checkWritePermitted(store, authed ? info : undefined, op);
    } catch (error) {
      if (error instanceof EtcdError) return error;
      throw error;
    }
    return undefined;
  }

  /** Applies a cluster op; an alarm op returns what etcd's apply answers (the alarm it changed). */
  private applyClusterOp(op: ClusterOp): Alarm[] | undefined {
    switch (op.type) {
      case 'encryptionKey':
        this.encryptionKeyApplied = op.keyId;
        return undefined;
      case 'publishMember':
        this.members.publish(op.memberId, op.name, op.clientUrls);
        if (op.memberId === this.memberId) this.markPublished();
        return undefined;
      case 'updateMember':
        this.members.updatePeerUrls(op.memberId, op.peerUrls);
        return undefined;
      case 'splitShard':
        return undefined; // applied before cluster ops (applySplit)
      case 'alarm': {
        // etcd swaps its applier on alarm changes: a newly raised alarm's guard replaces whichever
        // stood (raising one again changes nothing), and lowering the last alarm of a kind
        // removes the guard, even when an alarm of the other kind is still raised.
        const alarm = { memberId: op.memberId, alarm: op.alarm };
        if (op.action === 'activate') {
          const again = this.members.alarms(op.alarm).some((a) => a.memberId === op.memberId);
          if (!again && op.alarm !== 'NONE') this.alarmGuard = op.alarm;
          if (!this.members.hasAlarm(op.alarm))
            this.log.warn('alarm raised', { alarm: op.alarm, member: formatId(op.memberId) });
          return [this.members.activateAlarm(alarm)];
        }
        const lowered = this.members.deactivateAlarm(alarm);
        if (lowered !== undefined && !this.members.hasAlarm(op.alarm)) this.alarmGuard = 'NONE';
        if (lowered !== undefined)
          this.log.info('alarm disarmed', { alarm: op.alarm, member: formatId(op.memberId) });
        return lowered === undefined ? [] : [lowered];
      }
    }
  }

  // ---- snapshots -------------------------------------------------------------------------------

  private async restoreSnapshot(snapshot: Snapshot): Promise<void> {
    this.confState = snapshot.metadata.confState;
    this.confChanges++;
    if (snapshot.data.length === 0) return; // the bootstrap snapshot: an empty keyspace
    if (this.groupId !== FIRST_SHARD_ID) {
      // The records are durable already (persistShardSnapshot, before the WAL marker).
      const [own, ...children] = decodeShardSnapshot(snapshot.data);
      if (own === undefined || own.id !== this.groupId)
        throw new Error(`a snapshot of another shard for group ${this.groupId}`);
      this.shard = { ...own, applied: snapshot.metadata.index };
      for (const child of children) this.events.onShardSplit?.(foundingRecord(child));
      this.log.info('installed a shard snapshot from the leader', {
        shard: this.groupId,
        index: snapshot.metadata.index,
      });
      return;
    }
    const path = join(this.snapshotScratchDir, `incoming-${snapshot.metadata.index}.mdb`);
    const files = await this.snapshots.list();
    const file = files.find((f) => f.index === snapshot.metadata.index && f.term === snapshot.metadata.term);
    if (file === undefined) throw new Error(`snapshot file for index ${snapshot.metadata.index} is missing`);
    await this.snapshots.installTo(file.path, path);
    await this.keyspace.restoreSnapshot(path);
    rmSync(path, { force: true });
    this.members = loadMembers(this.keyspace) ?? this.members;
    this.authGate.store = loadAuth(this.keyspace);
    this.alarmGuard = alarmGuardAfterRestart(this.members);
    this.shard = loadShardRecord(this.keyspace, this.groupId);
    this.events.onSnapshotInstalled();
    this.leases.clear();
    const nowMs = Date.now();
    for (const lease of this.keyspace.leases()) this.leases.grant(lease.id, lease.ttlSeconds, nowMs);
    if (this.isLeader) this.leases.promote(nowMs, this.config.electionTimeoutMs);
    this.snapshotIndex = snapshot.metadata.index;
    this.events.onMembersChanged();
    this.log.info('installed a snapshot from the leader', { index: snapshot.metadata.index });
  }

  /**
   * Every --snapshot-count applied entries: snapshot the keyspace, compact the log, free the WAL.
   * In the background: the Raft loop goes on (a copy of a large keyspace takes longer than an
   * election timeout, and a loop waiting for it sends no heartbeats).
   */
  private snapshotIfDue(): void {
    // A group other than 1 snapshots its records after every batch (releaseShardGroupLog).
    if (this.groupId !== FIRST_SHARD_ID) return;
    if (this.stopped) return;
    void this.takeSnapshot();
  }

  /**
   * Never rejects: a failing step stops the member, named by the step. `force` (the end of a key
   * rotation): whatever --snapshot-count says, and then the WAL is released up to the snapshot
   * (no catch-up entries kept) and only this snapshot file is kept. Resolves whether it took one.
   */
  async takeSnapshot(force = false): Promise<boolean> {
    const applied = this.keyspace.appliedIndex();
    if (this.snapshotting || (!force && applied - this.snapshotIndex < this.config.snapshotCount))
      return false;
    if (applied > this.storage.lastIndex() || applied <= this.storage.snapshot().metadata.index) return false;
    this.snapshotting = true;
    let step: FailStopOperation = 'snapshot-create';
    try {
      const confChangesBefore = this.confChanges;
      const scratch = join(this.snapshotScratchDir, `local-${applied}.mdb`);
      const info = await this.keyspace.createSnapshot(scratch);
      const index = info.appliedIndex;
      // Entries kept being applied meanwhile: the copy's membership is the current one only if no
      // membership change (or installed snapshot) came in between. Otherwise try again later.
      if (this.stopped || this.confChanges !== confChangesBefore) {
        rmSync(scratch, { force: true });
        return false;
      }
      const metadata = { index, term: this.storage.term(index), confState: this.confState };
      await this.snapshots.write(metadata, readFileChunks(scratch));
      rmSync(scratch, { force: true });
      if (this.stopped || this.confChanges !== confChangesBefore) return false;
      step = 'wal-release';
      this.storage.createSnapshot(index, metadata.confState, EMPTY_BYTES);
      this.wal.saveSnapshotMarker(this.groupId, metadata);
      const compactTo = Math.max(this.storage.firstIndex(), index - this.config.snapshotCatchUpEntries);
      if (compactTo > this.storage.firstIndex()) this.storage.compact(compactTo);
      // The WAL may drop only entries the store holds on disk: a power cut rolls the store back
      // to its last synced commit, and the WAL must still hold every entry after it.
      await this.keyspace.sync();
      await this.wal.releaseTo(this.groupId, force ? index : Math.min(index, compactTo));
      step = 'snapshot-prune';
      await this.snapshots.prune(force ? 1 : undefined);
      this.snapshotIndex = index;
      this.log.info('took a snapshot', { index, bytes: info.bytes });
      // The log entries compacted away and the buffers the copy went through (about twice the
      // keyspace's size) are garbage now. V8 collects them only when JS allocation or external
      // memory grows enough: an idle member kept them (a 49 MiB keyspace: 30-35 MiB of RSS).
      // Small snapshots (tests, small keyspaces) leave too little to be worth a full collection.
      if (info.bytes >= GC_AFTER_SNAPSHOT_BYTES) collectGarbage();
      return true;
    } catch (error) {
      this.events.onFatal(step, error);
      return false;
    } finally {
      this.snapshotting = false;
    }
  }

  /** Bytes of the snapshot a leader sends to a follower: the snapshot file's verified data. */
  snapshotSource(message: Message): AsyncIterable<Uint8Array> | undefined {
    const metadata = message.snapshot?.metadata;
    if (metadata === undefined || metadata.index <= 1) return undefined;
    const snapshots = this.snapshots;
    return (async function* () {
      const files = await snapshots.list();
      const file = files.find((f) => f.index === metadata.index && f.term === metadata.term);
      if (file === undefined) throw new Error(`no snapshot file for index ${metadata.index}`);
      yield* snapshots.readData(file.path);
    })();
  }

  // ---- proposals -------------------------------------------------------------------------------

  assertServing(): void {
    if (this.stopped) throw new EtcdError('stopped');
  }

  /** A request ID of this member's, for a membership change's context. */
  newRequestId(): number {
    return this.proposer.newRequestId();
  }

  /** Proposes `op`; resolves with the result its entry applied with. */
  propose(op: ServerOp): Promise<ApplyOutcome> {
    return this.proposer.propose(op);
  }

  /** Proposes a keyspace write as `auth`'s user; resolves with its response. */
  write<T extends WriteResponse['type']>(op: WriteOp & { type: T }, auth?: AuthInfo): Promise<ResponseOf<T>> {
    return this.proposer.write<T>(op, auth);
  }

  proposeAuth(request: AuthOp, info: AuthInfo | undefined): Promise<AuthEffect> {
    return this.proposer.proposeAuth(request, info);
  }

  /** Proposes a membership change; resolves once it applied (one at a time: waits its turn). */
  proposeConfChange(change: ConfChange, requestId: number): Promise<void> {
    return this.proposer.proposeConfChange(change, requestId);
  }

  header(revision = this.keyspace.currentRevision()): HeaderInfo {
    return {
      clusterId: publicId(this.members.clusterId),
      memberId: publicId(this.memberId),
      revision,
      raftTerm: BigInt(this.term),
    };
  }

  async linearizableBarrier(): Promise<void> {
    this.assertServing();
    const index = await this.reads.requestReadIndex();
    await this.appliedWait.wait(index);
  }

  get published(): boolean {
    return this.publishedFlag;
  }

  markPublished(): void {
    this.publishedFlag = true;
    this.resolvePublished();
  }

  /**
   * etcd serves a learner's clients only serializable reads and Status (its gRPC interceptor's
   * isRPCSupportedForLearner); everything else is refused so clients move to a voter.
   */
  refuseOnLearner(): void {
    if (this.members.get(this.memberId)?.isLearner === true) throw new EtcdError('notSupportedForLearner');
  }

  /** What apply would answer under the NOSPACE guard, answered before proposing. */
  refuseIfNoSpace(): void {
    if (this.alarmGuard === 'NOSPACE') throw new EtcdError('noSpace');
  }

  /** The error the standing alarm guard fails `op` with at apply, as etcd's capped and corrupt appliers. */
  private alarmRefusal(op: ServerOp): EtcdError | undefined {
    if (this.alarmGuard === 'CORRUPT' && refusedWhenCorrupt.has(op.type)) return new EtcdError('corrupt');
    if (this.alarmGuard !== 'NOSPACE') return undefined;
    if (op.type === 'put' || op.type === 'leaseGrant' || (op.type === 'txn' && txnHasPut(op.request)))
      return new EtcdError('noSpace');
    return undefined;
  }
}

function isClusterOp(op: ServerOp): op is ClusterOp {
  return (
    op.type === 'publishMember' ||
    op.type === 'updateMember' ||
    op.type === 'alarm' ||
    op.type === 'encryptionKey'
  );
}

/** The alarm guard a member starts with (etcd's restoreAlarms): CORRUPT's if raised, else NOSPACE's. */
function alarmGuardAfterRestart(members: Members): AlarmKind {
  if (members.hasAlarm('CORRUPT')) return 'CORRUPT';
  return members.hasAlarm('NOSPACE') ? 'NOSPACE' : 'NONE';
}

/** The writes etcd's corrupt applier refuses (reads, and read-only txns, do not go through it). */
const refusedWhenCorrupt: ReadonlySet<ServerOp['type']> = new Set([
  'put',
  'deleteRange',
  'txn',
  'compact',
  'leaseGrant',
  'leaseRevoke',
]);

/** etcd's quota cost of a txn counts the puts of its own branches only, not of nested txns. */
export function txnHasPut(request: TxnRequest): boolean {
  return [...request.success, ...request.failure].some((op) => op.type === 'put');
}

export function loadAuth(keyspace: Keyspace): AuthStore {
  const data = keyspace.getMeta(AUTH_META_NAME);
  return data === undefined ? new AuthStore() : AuthStore.decode(data);
}

/**
 * The snapshot of a group other than 1: its record and the records of the shards it split off
 * (so a follower that installs it hosts them too), as JSON of base64 records.
 */
export function shardSnapshotData(keyspace: Keyspace, groupId: number): Uint8Array {
  const children = decodeShardIds(keyspace.getMeta(SHARD_IDS_META_NAME))
    .filter((id) => id !== groupId)
    .map((id) => loadShardRecord(keyspace, id))
    .filter((record) => record.parent?.id === groupId);
  const records = [loadShardRecord(keyspace, groupId), ...children];
  return Buffer.from(
    JSON.stringify(records.map((r) => Buffer.from(encodeShardRecord(r)).toString('base64'))),
  );
}

function decodeShardSnapshot(data: Uint8Array): ShardRecord[] {
  const list = JSON.parse(Buffer.from(data).toString()) as string[];
  return list.map((entry) => decodeShardRecord(Buffer.from(entry, 'base64')));
}

/** A group's shard record in the keyspace; group 1 before its first split holds the whole keyspace. */
export function loadShardRecord(keyspace: Keyspace, groupId: number): ShardRecord {
  const data = keyspace.getMeta(shardMetaName(groupId));
  if (data !== undefined) return decodeShardRecord(data);
  if (groupId === FIRST_SHARD_ID) return initialShardRecord();
  throw new Error(`no shard record for group ${groupId} in the keyspace`);
}

export function loadMembers(keyspace: Keyspace): Members | undefined {
  const data = keyspace.getMeta(MEMBERS_META_NAME);
  return data === undefined ? undefined : Members.decode(data);
}

async function* readFileChunks(path: string): AsyncGenerator<Uint8Array> {
  const { createReadStream } = await import('node:fs');
  for await (const chunk of createReadStream(path, { highWaterMark: 1024 * 1024 })) yield chunk as Buffer;
}
