// One replica of the metadata group (group 0): the consensus engine (the cluster's --consensus
// choice) and the same RaftHost loop as every group, over a state machine that applies metadata
// commands (src/shard/meta-commands.ts) to a MetaState (src/shard/meta-state.ts): the nodes, the
// shard map with its placement, the oracle's high-water mark, the compaction revision.
//
// Durability: the group's records go to the node's one WAL under group id 0 (node/group-log.ts),
// and its snapshots to files <dir>/<index>.snap holding encodeMetaSnapshot's bytes (CRC-checked
// when read). The state is small and changes rarely, so every apply batch that changed it ends
// with a snapshot (file fsync'd, then the WAL marker, then the group's WAL entries released):
// the metadata group never holds WAL segments back for the busy groups. A restart reads the
// newest snapshot and replays the group's entries after it.
//
// Membership follows group 1's (the shard that holds the etcd membership): the replica's leader
// compares its voters and learners with group 1's members on every tick and proposes one
// single-step conf change at a time until they agree, then brings the metadata state into line
// (nodes registered, shard 1's replicas = group 1's members). Reconciling from state rather than
// forwarding each group-1 change makes it converge whatever was missed: a leader change halfway,
// a data dir from before the metadata group existed, a change applied while this node was down.
//
// Founding: a group-0 log starts like group 1's, from a bootstrap snapshot at index 1 whose
// confState holds the founding voters and whose state is "none yet". The first leader proposes
// the initial state (a BOOTSTRAP entry: the nodes; one shard [ "", +inf ) with id 1 and epoch 1
// whose replicas are the founding voters); it is applied only while there is no state, so a
// second proposal (a new leader that had not seen the first applied) changes nothing.

import { randomInt } from 'node:crypto';
import { readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ConsensusEngine, Rng } from '../raft/api.js';
import { decodeConfChange } from '../raft/confchange.js';
import { MemoryStorage } from '../raft/memory-storage.js';
import {
  type ConfState,
  EMPTY_BYTES,
  type Entry,
  EntryType,
  type Message,
  Role,
  type Snapshot,
  type SoftState,
} from '../raft/types.js';
import { encodeMetaCommand, type MetaCommand, type NodeAttributes } from '../shard/meta-commands.js';
import { decodeMetaSnapshot, encodeMetaSnapshot } from '../shard/meta-snapshot.js';
import { MetaState } from '../shard/meta-state.js';
import { mkdirDurableSync, syncDirSync, syncFileSync } from '../storage/durable-fs.js';
import type { FailStopOperation } from '../storage/fail-stop.js';
import type { Wal } from '../storage/wal.js';
import type { RecoveredGroup } from '../storage/wal-replay.js';
import type { Logger } from '../util/logger.js';
import { type ConsensusChoice, createConsensusEngine } from './consensus.js';
import { type HostScheduler, type HostStage, RaftHost } from './raft-host.js';

export const META_GROUP_ID = 0;

const HOST_STAGE_OPERATIONS: Record<HostStage, FailStopOperation> = {
  persist: 'wal-write',
  apply: 'apply',
  restore: 'snapshot-install',
  loop: 'raft-loop',
};

/** Entry payload kinds of the metadata group's log. */
const BOOTSTRAP = 1;
const COMMAND = 2;

/** A member of group 1, as the metadata group follows it. */
export interface FollowedMember {
  id: number;
  peerUrls: readonly string[];
  clientUrls: readonly string[];
  isLearner: boolean;
}

export interface MetaReplicaOptions {
  memberId: number;
  choice: ConsensusChoice;
  heartbeatIntervalMs: number;
  electionTimeoutMs: number;
  /** The node's WAL; this group writes under META_GROUP_ID. */
  wal: Wal;
  /** What the WAL held for group 0 at open (undefined: nothing). */
  recovered: RecoveredGroup | undefined;
  /** Where the snapshot files live (member/meta). */
  dir: string;
  /**
   * Voters to found the group with when the WAL holds nothing for it: the founding members of a
   * new cluster, or group 1's voters for a data dir from before the metadata group. Undefined
   * for a member joining an existing cluster (the leader sends it the log).
   */
  bootstrapVoters: readonly number[] | undefined;
  sender: { send(messages: Message[], group: number): void; flush(): void };
  /** Group 1's members now. */
  followedMembers(): readonly FollowedMember[];
  log: Logger;
  /** A storage failure: the replica has stopped; the node fail-stops with `operation`. */
  onFatal(operation: FailStopOperation, error: Error): void;
  scheduler?: HostScheduler;
}

interface Pending {
  resolve(): void;
  reject(error: Error): void;
  timer: NodeJS.Timeout;
}

function settle(map: Map<string, Pending>, key: string): void {
  const waiter = map.get(key);
  if (waiter === undefined) return;
  map.delete(key);
  clearTimeout(waiter.timer);
  waiter.resolve();
}

class CryptoRng implements Rng {
  nextInt(bound: number): number {
    return bound <= 1 ? 0 : randomInt(bound);
  }
}

export class MetaReplica {
  private readonly storage: MemoryStorage;
  private readonly engine: ConsensusEngine;
  private readonly host: RaftHost;
  private state: MetaState | undefined;
  private confState: ConfState;
  private softState: SoftState = { leader: 0, role: Role.Follower };
  private applied: number;
  private snapshotIndex: number;
  /** The bytes of the snapshot at snapshotIndex (empty: the bootstrap snapshot, no state). */
  private snapshotBytes: Uint8Array;
  /** A proposal in flight: no new reconcile step until something applies or this passes. */
  private waitUntil = 0;
  private stopped = false;
  private fastForwarded = false;
  /** Leadership confirmations in flight (ReadIndex rounds), by context. */
  private readonly rounds = new Map<string, Pending>();
  /** Oracle mark raises waiting for the applied mark to reach `mark`. */
  private readonly raises: Array<Pending & { mark: number }> = [];
  private nextRoundId = 1;
  private readonly wal: Wal;
  private readonly dir: string;
  private readonly log: Logger;

  private constructor(
    private readonly options: MetaReplicaOptions,
    recovered: { storage: MemoryStorage; state: MetaState | undefined; snapshotBytes: Uint8Array },
  ) {
    this.wal = options.wal;
    this.dir = options.dir;
    this.log = options.log;
    this.storage = recovered.storage;
    this.state = recovered.state;
    this.snapshotBytes = recovered.snapshotBytes;
    this.snapshotIndex = this.storage.snapshot().metadata.index;
    this.applied = this.snapshotIndex;
    this.confState = this.storage.initialState().confState;
    const electionTicks = Math.max(2, Math.round(options.electionTimeoutMs / options.heartbeatIntervalMs));
    this.engine = createConsensusEngine(options.choice, {
      id: options.memberId,
      electionTicks,
      heartbeatTicks: 1,
      storage: this.storage,
      rng: new CryptoRng(),
      applied: this.applied,
      checkQuorum: true,
      preVote: true,
      readOnlyOption: 'safe',
      maxMessageBytes: 1024 * 1024,
      inflightMessagesMax: 256,
      inflightBytesMax: 16 * 1024 * 1024,
      uncommittedBytesMax: 16 * 1024 * 1024,
      committedBytesPerReadyMax: 16 * 1024 * 1024,
      // The map changes rarely: an idle, caught-up group sleeps (no ticks, no heartbeats) until a
      // proposal, a message or a report that its leader's node is unreachable wakes it. Raft only;
      // Multi-Paxos keeps ticking.
      quiesce: true,
    });
    this.host = new RaftHost(
      this.engine,
      this.storage,
      {
        persist: async (update) => {
          if (update.snapshot !== undefined) {
            // A snapshot from the leader: its data is durable before the marker pointing at it.
            this.writeSnapshotFile(update.snapshot.metadata.index, update.snapshot.data);
            this.wal.saveSnapshotMarker(META_GROUP_ID, update.snapshot.metadata);
          }
          if (update.entries.length > 0) this.wal.appendEntries(META_GROUP_ID, update.entries);
          if (update.hardState !== undefined) this.wal.saveHardState(META_GROUP_ID, update.hardState);
          await this.wal.sync();
        },
        persistCommit: (hardState) => this.wal.saveHardStateLazily(META_GROUP_ID, hardState),
      },
      {
        send: (messages) => options.sender.send(messages, META_GROUP_ID),
        flush: () => options.sender.flush(),
      },
      {
        restoreSnapshot: async (snapshot) => this.restoreSnapshot(snapshot),
        applyEntries: (entries) => this.applyEntries(entries),
      },
      {
        onSoftState: (state) => {
          this.softState = state;
        },
        onHardState: () => undefined,
        onReadStates: (states) => {
          for (const state of states) settle(this.rounds, Buffer.from(state.context).toString('hex'));
        },
        onApplied: (index) => {
          this.applied = Math.max(this.applied, index);
        },
        onFatal: (error, stage) => this.options.onFatal(HOST_STAGE_OPERATIONS[stage], error),
      },
      options.heartbeatIntervalMs,
      options.scheduler === undefined ? {} : { scheduler: options.scheduler },
    );
  }

  /** Recovers group 0 from the WAL records and snapshot file (or founds it); does not start it. */
  static async open(options: MetaReplicaOptions): Promise<MetaReplica> {
    mkdirDurableSync(options.dir);
    const storage = new MemoryStorage();
    const group = options.recovered;
    let state: MetaState | undefined;
    let snapshotBytes: Uint8Array = EMPTY_BYTES;
    const empty =
      group === undefined ||
      (group.hardState === null && group.snapshot === null && group.entries.length === 0);
    if (!empty) {
      if (group.snapshot !== null) {
        snapshotBytes = readSnapshotFile(options.dir, group.snapshot.index);
        if (snapshotBytes.length > 0) state = decodeMetaSnapshot(snapshotBytes);
        storage.applySnapshot({ metadata: group.snapshot, data: snapshotBytes });
      }
      storage.append(group.entries);
      if (group.hardState !== null) storage.setHardState(group.hardState);
    } else if (options.bootstrapVoters !== undefined && options.bootstrapVoters.length > 0) {
      storage.bootstrap({
        voters: [...options.bootstrapVoters].sort((a, b) => a - b),
        learners: [],
        votersOutgoing: [],
        learnersNext: [],
        autoLeave: false,
      });
      options.wal.saveSnapshotMarker(META_GROUP_ID, storage.snapshot().metadata);
      options.wal.saveHardState(META_GROUP_ID, storage.initialState().hardState);
      await options.wal.sync();
      options.log.info('founded the metadata group', { voters: options.bootstrapVoters.length });
    }
    return new MetaReplica(options, { storage, state, snapshotBytes });
  }

  start(): void {
    // The WAL forgets releases across a restart: without this a group 0 that applies nothing new
    // would pin every old segment holding its records (and the old encryption key with them).
    if (this.snapshotIndex > 0) void this.release(this.snapshotIndex, this.storage.snapshot().metadata);
    this.host.start();
    this.stopTicks = setInterval(() => this.reconcile(), this.options.heartbeatIntervalMs);
    const voters = this.confState.voters;
    if (voters.length === 1 && voters[0] === this.options.memberId) this.fastForwardElection();
  }
  private stopTicks: NodeJS.Timeout | undefined;

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.host.stop();
    if (this.stopTicks !== undefined) clearInterval(this.stopTicks);
    const stopped = new Error('metadata group: stopped');
    for (const waiter of [...this.rounds.values(), ...this.raises.splice(0)]) {
      clearTimeout(waiter.timer);
      waiter.reject(stopped);
    }
    this.rounds.clear();
  }

  step(message: Message): void {
    if (this.stopped) return;
    this.engine.step(message);
    this.host.schedule();
  }

  reportUnreachable(peer: number): void {
    if (this.stopped) return;
    this.engine.reportUnreachable(peer);
    this.host.schedule();
  }

  reportSnapshot(peer: number, ok: boolean): void {
    if (this.stopped) return;
    this.engine.reportSnapshot(peer, ok);
    this.host.schedule();
  }

  fastForwardElection(): void {
    if (this.fastForwarded || this.stopped) return;
    this.fastForwarded = true;
    if (this.engine.fastForwardElection()) this.host.schedule();
  }

  /** The data of an outgoing snapshot whose in-memory copy is empty (one installed from a peer). */
  snapshotSource(message: Message): Uint8Array[] | undefined {
    if (message.snapshot?.metadata.index !== this.snapshotIndex) return undefined;
    return this.snapshotBytes.length > 0 ? [this.snapshotBytes] : [];
  }

  // ---- reads --------------------------------------------------------------------------------

  /** The applied metadata state (undefined until the first leader's bootstrap entry applied). */
  get metaState(): MetaState | undefined {
    return this.state;
  }

  get leaderId(): number {
    return this.softState.leader;
  }

  /** The group sleeps: its core quiesced (idle, every member caught up) and nothing ticks it. */
  get hibernating(): boolean {
    return this.host.isHibernating;
  }

  get isLeader(): boolean {
    return this.softState.role === Role.Leader;
  }

  get appliedIndex(): number {
    return this.applied;
  }

  get voters(): readonly number[] {
    return this.confState.voters;
  }

  get learners(): readonly number[] {
    return this.confState.learners;
  }

  // ---- the state machine --------------------------------------------------------------------

  private async restoreSnapshot(snapshot: Snapshot): Promise<void> {
    this.state = snapshot.data.length > 0 ? decodeMetaSnapshot(snapshot.data) : undefined;
    this.snapshotBytes = snapshot.data;
    this.snapshotIndex = snapshot.metadata.index;
    this.confState = snapshot.metadata.confState;
    this.applied = snapshot.metadata.index;
    await this.release(snapshot.metadata.index);
  }

  private async applyEntries(entries: Entry[]): Promise<void> {
    for (const entry of entries) {
      if (entry.index <= this.applied) continue;
      if (entry.type === EntryType.ConfChange) {
        try {
          this.confState = this.engine.applyConfChange(decodeConfChange(entry.data));
          this.storage.setConfState(this.confState);
        } catch (error) {
          this.log.warn('metadata group: ignored an invalid membership change', {
            index: entry.index,
            error: (error as Error).message,
          });
        }
      } else if (entry.data.length > 0) {
        this.applyPayload(entry);
      }
      this.applied = entry.index;
    }
    this.waitUntil = 0;
    this.settleRaises();
    await this.snapshotIfBehind();
  }

  private applyPayload(entry: Entry): void {
    const kind = entry.data[0];
    const body = entry.data.subarray(1);
    if (kind === BOOTSTRAP) {
      if (this.state !== undefined) return;
      const nodes = JSON.parse(Buffer.from(body).toString('utf8')) as NodeAttributes[];
      try {
        this.state = MetaState.bootstrap({ nodes });
        this.log.info('metadata group: initial shard map applied', {
          index: entry.index,
          nodes: nodes.length,
        });
      } catch (error) {
        this.log.warn('metadata group: refused the bootstrap entry', { error: (error as Error).message });
      }
      return;
    }
    if (kind !== COMMAND || this.state === undefined) return;
    const { state, outcome } = this.state.applyEntry(body);
    this.state = state;
    if (!outcome.ok)
      this.log.debug('metadata group: command refused', {
        index: entry.index,
        error: outcome.refusal.message,
      });
  }

  /** Every batch that moved the applied index ends with a snapshot of it (the state is small). */
  private async snapshotIfBehind(): Promise<void> {
    if (this.applied <= this.snapshotIndex || this.stopped) return;
    const index = this.applied;
    const data = this.state === undefined ? EMPTY_BYTES : encodeMetaSnapshot(this.state);
    try {
      this.writeSnapshotFile(index, data);
    } catch (error) {
      return this.fatal('snapshot-create', error);
    }
    const snapshot = this.storage.createSnapshot(index, this.confState, data);
    this.snapshotIndex = index;
    this.snapshotBytes = data;
    this.storage.compact(index);
    await this.release(index, snapshot.metadata);
  }

  /** Writes the snapshot's marker (when it is not already in the WAL) and frees the entries it covers. */
  private async release(index: number, marker?: Snapshot['metadata']): Promise<void> {
    if (marker !== undefined) {
      try {
        this.wal.saveSnapshotMarker(META_GROUP_ID, marker);
        await this.wal.sync();
      } catch (error) {
        this.fatal('wal-write', error);
        return;
      }
    }
    try {
      this.removeSnapshotFilesBefore(index);
      await this.wal.releaseTo(META_GROUP_ID, index);
    } catch (error) {
      this.fatal('wal-release', error);
    }
  }

  private fatal(operation: FailStopOperation, error: unknown): void {
    if (this.stopped) return;
    this.stop();
    this.options.onFatal(operation, error instanceof Error ? error : new Error(String(error)));
  }

  private writeSnapshotFile(index: number, data: Uint8Array): void {
    const path = snapshotPath(this.dir, index);
    writeFileSync(`${path}.tmp`, data);
    syncFileSync(`${path}.tmp`);
    renameSync(`${path}.tmp`, path);
    syncDirSync(this.dir);
  }

  private removeSnapshotFilesBefore(index: number): void {
    for (const name of readdirSync(this.dir)) {
      const found = /^([0-9a-f]{16})\.snap(\.tmp)?$/.exec(name);
      if (found !== null && Number.parseInt(found[1]!, 16) < index)
        rmSync(join(this.dir, name), { force: true });
    }
  }

  // ---- the oracle's hooks (node/oracle-service.ts) ------------------------------------------

  /**
   * The term this replica leads in once it has applied everything committed and an entry of its
   * own term is committed (so every mark an earlier leader raised is in its state); 0 otherwise.
   */
  leadingCaughtUpTerm(): number {
    if (!this.isLeader || this.state === undefined) return 0;
    const { hardState } = this.engine.status();
    const commit = hardState.commit;
    if (commit > this.storage.lastIndex() || commit < this.storage.firstIndex() - 1) return 0;
    if (this.storage.term(commit) !== hardState.term || this.applied < commit) return 0;
    return hardState.term;
  }

  /**
   * A ReadIndex round started now: resolves once a quorum confirmed this leader after the call;
   * rejects when the round is dropped, stalls past the election timeout, or the replica stops.
   */
  confirmLeadership(): Promise<void> {
    const context = Buffer.alloc(8);
    context.writeUInt32BE(this.options.memberId % 0x1_0000_0000, 0);
    context.writeUInt32BE(this.nextRoundId++ % 0x1_0000_0000, 4);
    const key = context.toString('hex');
    return this.pending(this.rounds, key, () => this.engine.readIndex(context).ok);
  }

  /** Proposes raising the oracle's persisted mark; resolves once this replica applied a mark ≥ `mark`. */
  raiseOracleMark(mark: number): Promise<void> {
    if (this.stopped || !this.isLeader) return Promise.reject(new Error('not the metadata leader'));
    const encoded = encodeMetaCommand({ type: 'raiseOracleMark', mark });
    const data = new Uint8Array(1 + encoded.length);
    data[0] = COMMAND;
    data.set(encoded, 1);
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        const at = this.raises.indexOf(waiter);
        if (at >= 0) this.raises.splice(at, 1);
        reject(new Error('metadata group: the oracle mark raise timed out'));
      }, this.requestTimeoutMs);
      const waiter = { mark, resolve, reject, timer };
      this.raises.push(waiter);
      const proposed = this.engine.propose(data).ok;
      this.host.schedule();
      if (!proposed) {
        this.raises.splice(this.raises.indexOf(waiter), 1);
        clearTimeout(timer);
        reject(new Error('metadata group: the oracle mark raise was dropped'));
      }
    });
  }

  private get requestTimeoutMs(): number {
    return 2 * this.options.electionTimeoutMs;
  }

  private settleRaises(): void {
    const mark = this.state?.oracleMark ?? 0;
    for (let i = this.raises.length - 1; i >= 0; i--) {
      const waiter = this.raises[i]!;
      if (waiter.mark > mark) continue;
      this.raises.splice(i, 1);
      clearTimeout(waiter.timer);
      waiter.resolve();
    }
  }

  private pending(map: Map<string, Pending>, key: string, start: () => boolean): Promise<void> {
    if (this.stopped || !this.isLeader) return Promise.reject(new Error('not the metadata leader'));
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        if (map.get(key) === undefined) return;
        map.delete(key);
        reject(new Error('metadata group: the leadership round timed out'));
      }, this.requestTimeoutMs);
      map.set(key, { resolve, reject, timer });
      const started = start();
      this.host.schedule();
      if (!started) {
        map.delete(key);
        clearTimeout(timer);
        reject(new Error('metadata group: the leadership round was dropped'));
      }
    });
  }

  // ---- the leader's reconcile loop ----------------------------------------------------------

  /** Runs every heartbeat on the leader: one step toward group 1's membership and the initial state. */
  reconcile(): void {
    if (this.stopped || !this.isLeader || Date.now() < this.waitUntil) return;
    const members = this.options.followedMembers();
    if (members.length === 0) return;
    const change = nextConfChange(this.confState, members);
    if (change !== undefined) {
      this.propose(
        () => this.engine.proposeConfChange({ transition: 'auto', changes: [change], context: EMPTY_BYTES }),
        {
          change: change.type,
          node: change.nodeId.toString(16),
        },
      );
      return;
    }
    if (this.state === undefined) {
      const nodes = members.filter((m) => !m.isLearner && m.peerUrls.length > 0).map(attributesOf);
      if (nodes.length === 0) return;
      const payload = Buffer.concat([Buffer.from([BOOTSTRAP]), Buffer.from(JSON.stringify(nodes))]);
      this.propose(() => this.engine.propose(payload), { bootstrap: nodes.length });
      return;
    }
    const command = nextMetaCommand(this.state, members);
    if (command !== undefined) this.proposeCommand(command);
  }

  /** Proposes a metadata command (the leader only; false when the engine dropped it). */
  proposeCommand(command: MetaCommand): boolean {
    const encoded = encodeMetaCommand(command);
    const data = new Uint8Array(1 + encoded.length);
    data[0] = COMMAND;
    data.set(encoded, 1);
    return this.propose(() => this.engine.propose(data), { command: command.type });
  }

  private propose(run: () => { ok: boolean }, what: Record<string, unknown>): boolean {
    const result = run();
    this.host.schedule();
    if (!result.ok) return false;
    this.waitUntil = Date.now() + this.options.electionTimeoutMs;
    this.log.debug('metadata group: proposed', what);
    return true;
  }
}

/** The next single-step conf change that brings group 0's configuration to group 1's members. */
export function nextConfChange(
  conf: ConfState,
  members: readonly FollowedMember[],
): { type: 'add-node' | 'add-learner' | 'remove-node'; nodeId: number } | undefined {
  const voters = new Set(conf.voters);
  const learners = new Set(conf.learners);
  for (const m of members) {
    if (!m.isLearner && !voters.has(m.id)) return { type: 'add-node', nodeId: m.id };
  }
  for (const m of members) {
    if (m.isLearner && !voters.has(m.id) && !learners.has(m.id)) return { type: 'add-learner', nodeId: m.id };
  }
  const wanted = new Set(members.map((m) => m.id));
  for (const id of [...conf.voters, ...conf.learners]) {
    if (!wanted.has(id)) return { type: 'remove-node', nodeId: id };
  }
  return undefined;
}

/**
 * The next command that brings the metadata state into line with group 1's members: every
 * member a node (URLs current), shard 1's replicas = the members (learners as learners), and
 * nodes of removed members removed.
 */
export function nextMetaCommand(
  state: MetaState,
  members: readonly FollowedMember[],
): MetaCommand | undefined {
  for (const m of members) {
    if (m.peerUrls.length === 0) continue;
    const node = state.node(m.id);
    if (node === undefined) return { type: 'addNode', node: attributesOf(m) };
    if (node.state === 'removed') continue;
    if (!sameList(node.peerUrls, m.peerUrls) || !sameList(node.clientUrls, m.clientUrls))
      return {
        type: 'updateNode',
        node: { ...attributesOf(m), host: node.host, zone: node.zone },
        state: node.state,
      };
  }
  const shard = state.shardMap.shards.find((s) => s.id === 1);
  if (shard !== undefined) {
    const byNode = new Map(shard.replicas.map((r) => [r.node, r.role]));
    for (const m of members) {
      const node = state.node(m.id);
      if (node === undefined || node.state === 'removed') continue;
      const role = byNode.get(m.id);
      const base = {
        type: 'changeReplicas' as const,
        shardId: 1,
        expectedConfEpoch: shard.confEpoch,
        nodeId: m.id,
      };
      if (role === undefined) return { ...base, step: 'add-learner' };
      if (role === 'learner' && !m.isLearner) return { ...base, step: 'promote' };
    }
    const wanted = new Set(members.map((m) => m.id));
    for (const r of shard.replicas) {
      if (!wanted.has(r.node))
        return {
          type: 'changeReplicas',
          shardId: 1,
          expectedConfEpoch: shard.confEpoch,
          nodeId: r.node,
          step: 'remove',
        };
    }
  }
  const wanted = new Set(members.map((m) => m.id));
  for (const node of state.nodes) {
    if (node.state !== 'removed' && !wanted.has(node.id)) return { type: 'removeNode', nodeId: node.id };
  }
  return undefined;
}

function attributesOf(m: FollowedMember): NodeAttributes {
  return {
    id: m.id,
    peerUrls: [...m.peerUrls],
    clientUrls: [...m.clientUrls],
    host: undefined,
    zone: undefined,
  };
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function snapshotPath(dir: string, index: number): string {
  return join(dir, `${index.toString(16).padStart(16, '0')}.snap`);
}

/** A snapshot file's bytes; the bootstrap snapshot at index 1 has none (no state yet). */
function readSnapshotFile(dir: string, index: number): Uint8Array {
  try {
    return readFileSync(snapshotPath(dir, index));
  } catch (error) {
    if (index === 1 && (error as NodeJS.ErrnoException).code === 'ENOENT') return EMPTY_BYTES;
    throw new Error(`metadata group: snapshot file for index ${index} is missing in ${dir}`);
  }
}
