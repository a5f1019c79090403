// A sharded cluster in one process on a virtual clock: N nodes, each hosting several groups
// through the production host loop (one RaftHost per group replica), the metadata group (group 0,
// running the timestamp oracle) and M shard groups (ids 1..M), their replicas placed by
// shard/placement.ts. A node has one disk (NodeDisk: one fsync per turn for all its groups) and one
// network address; every message carries its group id. Clients write keys spread over the shards:
// the node hosting a shard's leader gets a revision from the oracle (RevisionBatcher on the node,
// a request over the network to group 0's leader) and proposes the write stamped with it; applying
// sets the key's mod revision to it. Each group's Raft invariants are checked by its own
// InvariantChecker, revisions across shards by RevisionChecker, after every event; after the fault
// phase everything heals and must converge (liveness), then every acked write must be readable.

import type { ConfChange } from '../raft/api.js';
import { encodeConfChange } from '../raft/confchange.js';
import {
  type ConfState,
  EntryType,
  type HardState,
  type Message,
  MessageType,
  type NodeId,
  Role,
} from '../raft/types.js';
import { OracleNotLeaderError } from '../shard/errors.js';
import type { MetaCommand, MetaNode } from '../shard/meta-commands.js';
import { MetaState } from '../shard/meta-state.js';
import { RevisionBatcher, type RevisionRange } from '../shard/oracle.js';
import { placeReplicas } from '../shard/placement.js';
import { type Move, type MoveStep, planRebalance } from '../shard/rebalance.js';
import { type ShardDescriptor, ShardMap } from '../shard/shard-map.js';
import { entryKey, fnv1a } from './app.js';
import { engineFactory } from './consensus.js';
import { SimDisk } from './disk.js';
import { assertNever, InvariantViolation, SimulatorError } from './errors.js';
import { EventQueue } from './event-queue.js';
import { InvariantChecker } from './invariants.js';
import { encodeMetaProposal, MetaGroupStateMachine } from './meta-app.js';
import { Network, simNetworkConfig, UnreachableReports } from './network.js';
import { NodeDisk } from './node-disk.js';
import { OracleHost, type OracleMutation } from './oracle-host.js';
import { SimRng } from './rng.js';
import {
  type AppliedSplit,
  branchOps,
  encodeResolve,
  encodeSplit,
  encodeWrite,
  type KeyRange,
  requestKeys,
  ShardStateMachine,
  type WriteRequest,
} from './shard-app.js';
import { RevisionChecker, type ShardReplicaView } from './shard-invariants.js';
import { SimNode, type SimNodeConfig, type SimNodeHost } from './sim-node.js';
import { cloneMessage, decodeReadContext, formatMessage, shuffle } from './simulation.js';
import { TurnQueue } from './turn.js';
import { MergedWatch } from './watch-check.js';

export const METADATA_GROUP = 0;

export interface ShardedSimOptions {
  seed: number;
  /** Nodes (at least 3: each group has 3 replicas). */
  nodes: number;
  /** Shard groups (ids 1..shards), besides the metadata group. */
  shards: number;
  faultPhaseUs?: number;
  livenessBoundUs?: number;
  clients?: number;
  faults?: boolean;
  /** Test only: a broken oracle wiring the invariants must catch. */
  oracleMutation?: OracleMutation;
  /** Test only: a node that hands the range it fetched last to the next fetch too. */
  unsafeReuseRevisions?: boolean;
  /** Test only: shards that apply a write whose revision is not above theirs. */
  unsafeAcceptStaleRevision?: boolean;
  /** Test only: shards that apply a write routed at another epoch or outside their range. */
  unsafeIgnoreEpoch?: boolean;
  /** Online splits during the fault phase (default true). */
  splits?: boolean;
  /** Test only: the merged watch releases up to the highest resolved revision, not the lowest. */
  unsafeReleaseAtMax?: boolean;
  /** Test only: a shard leader reports its resolved revision before it has applied its commit. */
  unsafeResolveBeforeCaughtUp?: boolean;
  /**
   * Replica moves: operator moves of a random replica at random times in the fault phase, and the
   * scheduler (`MetaState.plan()`) run until the placement settles (default false).
   */
  moves?: boolean;
  /**
   * Node add and remove under load: spare nodes join the cluster (`addNode`) and members are
   * drained (`updateNode` draining) and removed once the scheduler moved their replicas away
   * (default false; turns the scheduler on).
   */
  nodeChurn?: boolean;
  /** Test only: a move removes the leaving replica before it adds and promotes the new one. */
  unsafeRemoveBeforePromote?: boolean;
  /** Test only: a move promotes its learner without waiting for it to catch up. */
  unsafePromoteBeforeCaughtUp?: boolean;
  /** Test only: a snapshot installed on a replica a move created loses the newest key version. */
  unsafeSnapshotDropsWrite?: boolean;
  /** Test only: shard replicas are not compared by content after every apply (only at the end). */
  uncheckedDigest?: boolean;
  /** Test only: a replica added back to a node that held one of its group reuses the old Raft id. */
  unsafeReuseReplicaIds?: boolean;
  /** Test only: the scheduler places without the load bound. */
  unsafeSchedulerIgnoresBound?: boolean;
  /** Test only: the scheduler places without host labels. */
  unsafeSchedulerIgnoresHosts?: boolean;
  trace?: (line: string) => void;
}

export interface ShardedSimResult {
  seed: number;
  nodes: number;
  shards: number;
  events: number;
  virtualUs: number;
  writes: number;
  acked: number;
  /** Write attempts a shard refused (a revision not above the shard's): retried. */
  refused: number;
  /** Write attempts a shard refused as routed at a stale epoch: re-routed. */
  rerouted: number;
  /** Writes given up because a split put their keys in two shards (cross-shard). */
  crossShard: number;
  /** Splits completed (shard log entry applied and the metadata group's map updated). */
  splits: number;
  /** Replica moves completed (every membership step in the shard's group and the metadata map). */
  moves: number;
  /** Membership changes applied by shard groups (first apply of each). */
  confChanges: number;
  nodeAdds: number;
  nodeRemoves: number;
  /** Crashes of the oracle's node (group 0's leader), and those while a move was in progress. */
  oracleCrashes: number;
  crashesDuringMoves: number;
  oracleCrashesDuringMoves: number;
  /** Replicas added to a node that held one of the same group before (each with a new Raft id). */
  readds: number;
  /**
   * Each node that joined and is still up at the end: its replicas over the average per up node
   * (1 is exactly its fair share).
   */
  addedNodeShares: number[];
  revisionsReleased: number;
  oracleLeaderships: number;
  livenessUs: number;
  crashes: number;
  pauses: number;
  partitions: number;
  leaderTransfers: number;
  snapshotsSent: number;
  /** Node fsyncs, and the group writes they covered (the ratio is the batching). */
  fsyncs: number;
  groupWrites: number;
}

export class ShardedSimFailure extends Error {
  readonly code = 'sim-failure';
  constructor(
    readonly seed: number,
    readonly replay: string,
    override readonly cause: unknown,
    where: string,
  ) {
    super(
      `seed ${seed} failed ${where}: ${cause instanceof Error ? cause.message : String(cause)}\n  replay: ${replay} (add --verbose for a trace)`,
    );
    this.name = 'ShardedSimFailure';
  }
}

export function shardedReplayCommand(
  seed: number,
  nodes: number,
  shards: number,
  flags: { moves?: boolean; nodeChurn?: boolean } = {},
): string {
  const extra = `${flags.moves ? ' --moves' : ''}${flags.nodeChurn ? ' --node-churn' : ''}`;
  return `npm run sim -- --shards ${shards} --nodes ${nodes}${extra} --seeds 1 --from ${seed}`;
}

const TICK_INTERVAL_US = 10_000;
const TICK_DRIFT_PERCENT_MAX = 10;
const EVENTS_PER_RUN_MAX = 2_000_000;
const REPLICATION_FACTOR = 3;
const KEYS_PER_SHARD = 4;
const CLIENT_TIMEOUT_US = 300_000;
/** A node gives up on an oracle request after this (and asks another metadata node). */
const FETCH_TIMEOUT_US = 100_000;
const DELETE_PROBABILITY = 0.2;
/** Share of writes that are single-shard txns. */
const TXN_PROBABILITY = 0.2;
const LIVENESS_CHECK_US = 10_000;
const BATCH_REVISIONS_MAX = 16;
/** How often shard leaders propose a resolve entry. */
const RESOLVE_TICK_US = 50_000;
/** Nodes that may join a run with node churn. */
const SPARE_NODES = 2;
/** A replica's Raft id is its node id plus this times its generation on the node (see raftIds). */
const REPLICA_ID_STRIDE = 100;
/** How often the scheduler looks at the plan and drives the move in progress. */
const REBALANCE_TICK_US = 20_000;

/** One simulated process: the replicas of the groups it hosts, one disk, one address. */
class SimServer {
  readonly replicas = new Map<number, SimNode>();
  incarnation = 0;
  running = false;
  pausedUntilUs = 0;
  tickIntervalUs = TICK_INTERVAL_US;
  oracle: OracleHost | undefined;
  batcher: RevisionBatcher | undefined;
  /** Oracle requests in flight, by request id. */
  fetches = new Map<number, { resolve(range: RevisionRange): void; reject(error: unknown): void }>();
  /** Where this node sends oracle requests. */
  metaLeaderHint: NodeId;
  /** The range fetched last (kept only for the reuse mutation). */
  lastRange: RevisionRange | undefined;
  /** Removed from the cluster (node churn): never restarted. */
  retired = false;

  constructor(
    readonly id: NodeId,
    readonly disk: NodeDisk,
    public fsyncLatencyUs: number,
    metaLeaderHint: NodeId,
  ) {
    this.metaLeaderHint = metaLeaderHint;
  }

  get meta(): SimNode | undefined {
    return this.replicas.get(METADATA_GROUP);
  }

  paused(nowUs: number): boolean {
    return this.pausedUntilUs > nowUs;
  }
}

type SimEvent =
  | { kind: 'tick'; server: SimServer; incarnation: number }
  | { kind: 'deliver'; group: number; message: Message }
  | { kind: 'fsync'; server: SimServer; incarnation: number }
  | {
      kind: 'snapshot-done';
      group: number;
      message: Message;
      fromIncarnation: number;
      epoch: number;
      chunkFails: boolean;
    }
  | { kind: 'unreachable'; group: number; replica: SimNode; incarnation: number; peer: NodeId }
  | { kind: 'oracle-request'; from: NodeId; to: NodeId; requestId: number; count: number }
  | {
      kind: 'oracle-response';
      from: NodeId;
      to: NodeId;
      requestId: number;
      range: RevisionRange | undefined;
      leaderHint: NodeId;
    }
  | { kind: 'timer'; server: SimServer; incarnation: number; run: () => void }
  | { kind: 'client'; client: Client; attempt: number }
  | { kind: 'client-timeout'; client: Client; attempt: number }
  | { kind: 'nemesis' }
  | { kind: 'restart'; server: SimServer }
  | { kind: 'heal' }
  | { kind: 'disk-normal'; server: SimServer }
  | { kind: 'quiesce' }
  | { kind: 'split' }
  | { kind: 'split-step' }
  | { kind: 'resolve-tick' }
  | { kind: 'rebalance' }
  | { kind: 'operator-move' }
  | { kind: 'node-add' }
  | { kind: 'node-remove' }
  | { kind: 'liveness-check' };

interface PendingSplit {
  readonly shardId: number;
  readonly epoch: number;
  readonly splitKey: string;
  readonly rightId: number;
}

/** The replica move in progress: its steps, run one at a time (each membership step in the shard's group, then in the map). */
interface MoveJob {
  readonly move: Move;
  readonly steps: readonly MoveStep[];
  step: number;
  /** A membership step is applied by the shard's group first ('raft'), then by the metadata group ('meta'). */
  phase: 'raft' | 'meta';
  /** The snapshot step: the leader's commit the learner must have acknowledged. */
  catchUpTo: number | undefined;
  /** Leader transfers asked in the current transfer step. */
  transfers: number;
}

/** A node operation of the churn: join, drain, then leave once it holds nothing. */
interface NodeOp {
  readonly kind: 'add' | 'drain' | 'remove';
  readonly node: NodeId;
}

interface PendingWrite {
  write: number;
  request: WriteRequest;
  /** The shard this attempt is routed to, and the epochs the route was read at. */
  shard: number;
  epoch: number;
  confEpoch: number;
  /** Highest revision acked before the write started: its revision must be above it. */
  floor: number;
}

interface Client {
  id: number;
  current: PendingWrite | undefined;
  attempt: number;
  /** The proposal of the current attempt, and the replica incarnation that must apply it. */
  waitingOn: { replica: SimNode; incarnation: number; proposalId: number } | undefined;
}

/** One group's replica on one server: the SimNodeHost its SimNode talks to. */
class GroupPort implements SimNodeHost {
  constructor(
    private readonly sim: ShardedSimulation,
    private readonly server: SimServer,
    readonly group: number,
    readonly checker: InvariantChecker,
  ) {}

  send(from: SimNode, message: Message): void {
    this.sim.send(this.group, from, message);
  }
  scheduleFsync(node: SimNode): void {
    this.server.disk.request(node);
  }
  soon(run: () => void): void {
    this.sim.soon(run);
  }
  onProposalApplied(node: SimNode, proposalId: number, key: string, index: number): void {
    this.sim.onProposalApplied(this.group, this.server, node, proposalId, key, index);
  }
  onConfChangeApplied(node: SimNode, confState: ConfState, index: number): void {
    this.sim.onConfChangeApplied(this.group, node, confState, index);
  }
  onReadServed(_node: SimNode, context: Uint8Array): void {
    this.server.oracle?.onReadServed(decodeReadContext(context));
  }
  onFatal(node: SimNode, error: Error): void {
    this.sim.onFatal(this.group, node, error);
  }
  get tracing(): boolean {
    return this.sim.tracing;
  }
  trace(line: string): void {
    this.sim.trace(`g${this.group} ${line}`);
  }
}

export class ShardedSimulation {
  private readonly revisions = new RevisionChecker();
  private readonly checkers = new Map<number, InvariantChecker>();
  private readonly queue = new EventQueue<SimEvent>();
  private readonly network: Network;
  private readonly servers = new Map<NodeId, SimServer>();
  private readonly serverList: SimServer[] = [];
  private readonly initialShardMap: ShardMap;
  private readonly initialMeta: MetaState;
  private readonly rngSplit: SimRng;
  /** The split in progress (one at a time, so the new shard's id is the map's next one). */
  private splitting: PendingSplit | undefined;
  private nextShardId: number;
  /** Shard group id → the fingerprint of its boot state, from the replica that created it. */
  private readonly splitBoots = new Map<number, number>();
  private readonly watch: MergedWatch;
  /** Operator moves and the scheduler run (moves or node churn). */
  private readonly rebalancing: boolean;
  private readonly rngMove: SimRng;
  /** The replica move in progress (one at a time, never during a split). */
  private job: MoveJob | undefined;
  /** Node operations of the churn, in order. */
  private readonly nodeOps: NodeOp[] = [];
  /** Nodes that are not members yet (node churn): each may join once. */
  private readonly spares: NodeId[] = [];
  /** Node ids → host labels (nodes 1 and 2 share one when the run has enough nodes). */
  private readonly hosts = new Map<NodeId, string>();
  /** Group → its newest membership applied by any replica (by log index). */
  private readonly memberships = new Map<number, { index: number; conf: ConfState }>();
  /** `group:node` → the log index at which the node joined the group (absent: a founding replica). */
  private readonly joinedAt = new Map<string, number>();
  /**
   * `group:node` → the Raft id of the node's latest replica of the group. A founding replica's is
   * the node id; a replica added to a node that held one of the group before gets a new one
   * (node + REPLICA_ID_STRIDE × generation), as TiKV's peer ids and CockroachDB's replica ids: a
   * snapshot or a message from before its removal names the old id, never the new replica.
   */
  private readonly raftIds = new Map<string, NodeId>();
  /** `group:raftId` of every replica ever created (messages to a removed one are dropped). */
  private readonly knownReplicas = new Set<string>();
  /**
   * `group:raftId` → a removed replica's incarnation and hard state: the unsafeReuseReplicaIds
   * mutant starts the replica it adds back from them (its term and vote kept, as a tombstone).
   */
  private readonly removedReplicas = new Map<string, { incarnation: number; hardState: HardState }>();
  /** Group id → the nodes hosting it. */
  private readonly placement = new Map<number, NodeId[]>();
  private readonly keys: string[] = [];
  private readonly rngRoot: SimRng;
  private readonly rngFault: SimRng;
  private readonly rngClient: SimRng;
  private readonly clients: Client[] = [];
  private readonly fsyncNormalUs: number;
  private readonly faultPhaseUs: number;
  private readonly livenessBoundUs: number;
  private readonly oracleOptions: {
    windowRevisions: number;
    refillBelowRevisions: number;
    allocateRevisionsMax: number;
  };
  private readonly configs = new Map<number, SimNodeConfig>();
  /** The config of a shard group whose founding state has `range` (a split group boots from data). */
  private readonly shardConfig: (range: KeyRange) => SimNodeConfig;
  private nextProposalId = 1;
  private nextReadId = 1;
  private nextWriteId = 1;
  private nextRequestId = 1;
  private quiesced = false;
  private quiesceAtUs = 0;
  private done = false;
  private events = 0;
  private current: SimEvent | undefined;
  private readonly turn = new TurnQueue();
  /** Promise work started or settled during this event: drain the microtasks before going on. */
  private asyncTouched = false;
  private fatal: Error | undefined;
  private readonly unreachable = new UnreachableReports(TICK_INTERVAL_US);
  private readonly stats = {
    writes: 0,
    refused: 0,
    rerouted: 0,
    crossShard: 0,
    splits: 0,
    moves: 0,
    confChanges: 0,
    nodeAdds: 0,
    nodeRemoves: 0,
    oracleCrashes: 0,
    crashesDuringMoves: 0,
    oracleCrashesDuringMoves: 0,
    readds: 0,
    oracleLeaderships: 0,
    crashes: 0,
    pauses: 0,
    partitions: 0,
    leaderTransfers: 0,
    snapshotsSent: 0,
    livenessUs: -1,
  };

  constructor(private readonly options: ShardedSimOptions) {
    if (!Number.isInteger(options.nodes) || options.nodes < REPLICATION_FACTOR || options.nodes > 16)
      throw new SimulatorError(`nodes must be in [${REPLICATION_FACTOR}, 16], got ${options.nodes}`);
    if (!Number.isInteger(options.shards) || options.shards < 1 || options.shards > 64)
      throw new SimulatorError(`shards must be in [1, 64], got ${options.shards}`);
    this.rngRoot = new SimRng(options.seed, 10);
    this.rngFault = new SimRng(options.seed, 12);
    this.rngClient = new SimRng(options.seed, 13);
    const networkConfig = simNetworkConfig(new SimRng(options.seed, 15), options.faults ?? true);
    this.network = new Network(new SimRng(options.seed, 11), networkConfig);
    this.faultPhaseUs = options.faultPhaseUs ?? 3_000_000;
    this.livenessBoundUs = options.livenessBoundUs ?? 5_000_000;
    this.fsyncNormalUs = this.rngRoot.chance(0.2) ? 0 : this.rngRoot.between(100, 2000);
    // Small windows make leaders run out of room and raise often (and successors start at the
    // mark a predecessor may have used up); large ones leave a deposed leader room to hand out.
    this.oracleOptions = {
      windowRevisions: this.rngRoot.pick([1, 2, 4, 64, 1000]),
      refillBelowRevisions: this.rngRoot.pick([0, 0, 2, 16]),
      allocateRevisionsMax: BATCH_REVISIONS_MAX,
    };
    const base = this.baseConfig();
    this.configs.set(METADATA_GROUP, { ...base, restoreApp: (i, c, d) => this.restoreMeta(i, c, d) });
    const shardOptions = {
      unsafeAcceptStaleRevision: options.unsafeAcceptStaleRevision,
      unsafeIgnoreEpoch: options.unsafeIgnoreEpoch,
      uncheckedDigest: options.uncheckedDigest,
    };
    this.shardConfig = (range) => ({
      ...base,
      restoreApp: (index, confState, data) =>
        ShardStateMachine.restoreInto(new ShardStateMachine(shardOptions, range), index, confState, data),
    });
    this.rngSplit = new SimRng(options.seed, 16);
    this.rngMove = new SimRng(options.seed, 17);
    this.rebalancing = options.moves === true || options.nodeChurn === true;
    if (options.nodeChurn) for (let i = 1; i <= SPARE_NODES; i++) this.spares.push(options.nodes + i);
    // With four or more members, nodes 1 and 2 share a host: placement must keep them apart.
    for (let id = 1; id <= options.nodes + this.spares.length; id++)
      this.hosts.set(id, this.rebalancing && options.nodes >= 4 && id <= 2 ? 'h1' : `n${id}`);
    this.watch = new MergedWatch({ unsafeReleaseAtMax: options.unsafeReleaseAtMax });
    this.nextShardId = options.shards + 1;
    this.place();
    this.initialShardMap = this.buildShardMap();
    for (const shard of this.initialShardMap.shards) this.watch.addGroup(shard.id, 0);
    for (const shard of this.initialShardMap.shards)
      this.configs.set(
        shard.id,
        this.shardConfig({ start: decodeKey(shard.start), end: decodeKey(shard.end) }),
      );
    this.initialMeta = this.bootstrapMeta();
    if (this.rebalancing && this.initialMeta.plan().moves.length > 0)
      throw new SimulatorError("the initial placement is not the metadata group's target");
    this.build();
  }

  async run(): Promise<ShardedSimResult> {
    try {
      this.schedule();
      await this.loop();
      this.finalChecks();
    } catch (err) {
      const during = this.current ? ` (handling ${describeEvent(this.current)})` : '';
      const where = `at t=${(this.queue.now / 1000).toFixed(3)}ms after ${this.events} events${during}`;
      throw new ShardedSimFailure(
        this.options.seed,
        shardedReplayCommand(this.options.seed, this.options.nodes, this.options.shards, this.options),
        err,
        where,
      );
    }
    const disks = this.serverList.map((s) => s.disk);
    return {
      seed: this.options.seed,
      nodes: this.options.nodes,
      shards: this.options.shards,
      events: this.events,
      virtualUs: this.queue.now,
      writes: this.stats.writes,
      acked: this.revisions.ackedCount,
      refused: this.stats.refused,
      rerouted: this.stats.rerouted,
      crossShard: this.stats.crossShard,
      splits: this.stats.splits,
      moves: this.stats.moves,
      confChanges: this.stats.confChanges,
      nodeAdds: this.stats.nodeAdds,
      nodeRemoves: this.stats.nodeRemoves,
      oracleCrashes: this.stats.oracleCrashes,
      crashesDuringMoves: this.stats.crashesDuringMoves,
      oracleCrashesDuringMoves: this.stats.oracleCrashesDuringMoves,
      readds: this.stats.readds,
      addedNodeShares: this.addedNodeShares(),
      revisionsReleased: this.revisions.releasedCount,
      oracleLeaderships: this.stats.oracleLeaderships,
      livenessUs: this.stats.livenessUs,
      crashes: this.stats.crashes,
      pauses: this.stats.pauses,
      partitions: this.stats.partitions,
      leaderTransfers: this.stats.leaderTransfers,
      snapshotsSent: this.stats.snapshotsSent,
      fsyncs: disks.reduce((n, d) => n + d.syncs, 0),
      groupWrites: disks.reduce((n, d) => n + d.groupWrites, 0),
    };
  }

  // ---- what the group ports call --------------------------------------------------------------

  send(group: number, from: SimNode, message: Message): void {
    const to = message.to;
    if (message.from !== from.id)
      throw new InvariantViolation(
        'core-contract',
        `g${group} n${from.id} sends a message from ${message.from}`,
      );
    if (to === from.id)
      throw new InvariantViolation('core-contract', `g${group} n${from.id} sends a message to itself`);
    if (message.type === MessageType.Snapshot) return this.sendSnapshot(group, from, message);
    if (!this.network.isLinkUp(serverOf(from.id), serverOf(to)))
      return this.reportUnreachable(group, from, to);
    for (const delay of this.network.planDelivery(serverOf(from.id), serverOf(to)))
      this.queue.after(delay, { kind: 'deliver', group, message: cloneMessage(message) });
  }

  soon(run: () => void): void {
    this.turn.soon(run);
  }

  onFatal(group: number, node: SimNode, error: Error): void {
    this.trace(`g${group} n${node.id} host loop stopped: ${error.message}`);
    this.fatal ??= error;
  }

  get tracing(): boolean {
    return this.options.trace !== undefined;
  }

  trace(line: string): void {
    this.options.trace?.(`${(this.queue.now / 1000).toFixed(3)}ms ${line}`);
  }

  onProposalApplied(
    group: number,
    server: SimServer,
    replica: SimNode,
    proposalId: number,
    key: string,
    index: number,
  ): void {
    if (group === METADATA_GROUP) {
      this.revisions.observeMark((replica.app as MetaGroupStateMachine).highWaterMark);
      server.oracle?.onApplied(proposalId);
      return;
    }
    const state = replica.app as ShardStateMachine;
    if (state.lastSplit !== undefined) this.onSplitApplied(group, state.lastSplit);
    const applied = state.lastWrite;
    if (applied === undefined) return;
    this.revisions.observeApply(group, replica.id, applied.command, applied.outcome, applied.previous, state);
    if (applied.outcome.kind === 'refused') this.stats.refused++;
    if (applied.outcome.kind === 'stale-epoch') this.stats.rerouted++;
    if (applied.outcome.kind === 'applied') {
      const { revision, succeeded } = applied.outcome.write;
      this.watch.observeApplied(
        group,
        applied.command.write,
        revision,
        branchOps(applied.command, succeeded),
      );
    }
    for (const client of this.clients) {
      const waiting = client.waitingOn;
      if (waiting?.proposalId !== proposalId || waiting.replica !== replica) continue;
      if (waiting.incarnation !== replica.incarnation || client.current === undefined) continue;
      client.waitingOn = undefined;
      if (applied.outcome.kind === 'refused') {
        this.trace(`client ${client.id}: write ${client.current.write} refused by shard ${group}, retrying`);
        this.queue.after(0, { kind: 'client', client, attempt: client.attempt });
        continue;
      }
      if (applied.outcome.kind === 'stale-epoch') {
        this.trace(
          `client ${client.id}: write ${client.current.write} refused by shard ${group} (stale epoch), re-routing`,
        );
        this.clientRetry(client, client.attempt);
        continue;
      }
      const acked = applied.outcome.write;
      this.checker(group).observeAck(proposalId, key, index);
      this.revisions.observeAck(client.current.write, group, index, acked, client.current.floor);
      this.trace(
        `client ${client.id}: write ${client.current.write} acked at revision ${acked.revision}${acked.succeeded ? '' : ' (compare failed)'} (shard ${group} index ${index})`,
      );
      client.current = undefined;
      this.clientNext(client);
    }
  }

  // ---- setup ----------------------------------------------------------------------------------

  private baseConfig(): SimNodeConfig {
    return {
      createCore: engineFactory('raft', REPLICATION_FACTOR),
      electionTicks: 10,
      heartbeatTicks: this.rngRoot.between(1, 3),
      // Shards see fewer entries each than a single group: snapshot sooner to exercise them.
      snapshotEveryEntries: this.rngRoot.between(5, 60),
      compactionKeepEntries: this.rngRoot.between(0, 30),
      maxMessageBytes: this.rngRoot.pick([1024, 64 * 1024]),
      inflightMessagesMax: this.rngRoot.pick([2, 16, 256]),
      checkQuorum: this.rngRoot.chance(0.8),
      preVote: this.rngRoot.chance(0.8),
    };
  }

  private restoreMeta(index: number, confState: ConfState, data: Uint8Array): MetaGroupStateMachine {
    return MetaGroupStateMachine.restoreInto(
      new MetaGroupStateMachine(this.initialMeta),
      index,
      confState,
      data,
    );
  }

  /** Replicas of every group, the metadata group included, by rendezvous placement. */
  private place(): void {
    const nodes = [];
    for (let id = 1; id <= this.options.nodes; id++) nodes.push({ id });
    const groups = [METADATA_GROUP];
    for (let shard = 1; shard <= this.options.shards; shard++) groups.push(shard);
    const placed = placeReplicas({ nodes, shards: groups, replicationFactor: REPLICATION_FACTOR });
    // With moves the shards start where the metadata group's placement wants them (an empty
    // plan), the metadata group on its own rendezvous choice.
    const shardPlacement = this.rebalancing
      ? placeReplicas({
          nodes: nodes.map(({ id }) => ({ id, host: this.hosts.get(id) })),
          shards: groups.filter((group) => group !== METADATA_GROUP),
          replicationFactor: REPLICATION_FACTOR,
        })
      : placed;
    const metaPlacement = this.rebalancing
      ? placeReplicas({ nodes, shards: [METADATA_GROUP], replicationFactor: REPLICATION_FACTOR })
      : placed;
    for (const group of groups) {
      const source = group === METADATA_GROUP ? metaPlacement : shardPlacement;
      const replicas = [...(source.replicas.get(group) ?? [])].sort((a, b) => a - b);
      if (replicas.length !== REPLICATION_FACTOR)
        throw new SimulatorError(`group ${group} placed on ${replicas.length} nodes`);
      this.placement.set(group, replicas);
    }
  }

  /** The metadata group's state at boot: the N nodes, up, and the shard map. */
  private bootstrapMeta(): MetaState {
    const nodes: MetaNode[] = [];
    for (let id = 1; id <= this.options.nodes; id++)
      nodes.push({
        id,
        peerUrls: [`sim://n${id}`],
        clientUrls: [],
        host: this.rebalancing ? this.hosts.get(id) : undefined,
        zone: undefined,
        state: 'up',
      });
    return MetaState.fromFields({
      nodes,
      shardMap: this.initialShardMap,
      pins: new Map(),
      compactionRevision: 0,
      oracleMark: 0,
      replicationFactor: REPLICATION_FACTOR,
      version: 0,
    });
  }

  /** M shards over the keys k000, k001, …, KEYS_PER_SHARD each, cut at even boundaries. */
  private buildShardMap(): ShardMap {
    const shards: ShardDescriptor[] = [];
    for (let shard = 1; shard <= this.options.shards; shard++) {
      for (let k = 0; k < KEYS_PER_SHARD; k++) this.keys.push(keyName((shard - 1) * KEYS_PER_SHARD + k));
      const start = shard === 1 ? new Uint8Array(0) : utf8.encode(keyName((shard - 1) * KEYS_PER_SHARD));
      const end =
        shard === this.options.shards ? new Uint8Array(0) : utf8.encode(keyName(shard * KEYS_PER_SHARD));
      const replicas = this.placement.get(shard)!.map((node) => ({ node, role: 'voter' as const }));
      shards.push({ id: shard, start, end, epoch: 1, confEpoch: 1, replicas, leaderHint: undefined });
    }
    return ShardMap.fromShards(shards, this.options.shards + 1);
  }

  private build(): void {
    for (const group of this.placement.keys())
      this.checkers.set(group, new InvariantChecker({ consensus: 'raft' }));
    const metaNodes = this.placement.get(METADATA_GROUP)!;
    for (let id = 1; id <= this.options.nodes + this.spares.length; id++) {
      const disks = new Map<number, SimDisk>();
      for (const [group, nodes] of this.placement) {
        if (!nodes.includes(id)) continue;
        const confState = {
          voters: nodes,
          learners: [],
          votersOutgoing: [],
          learnersNext: [],
          autoLeave: false,
        };
        disks.set(group, SimDisk.bootstrap(confState, new Uint8Array(0)));
        this.memberships.set(group, { index: 1, conf: confState });
      }
      const server = new SimServer(id, new NodeDisk(disks), this.fsyncNormalUs, this.rngRoot.pick(metaNodes));
      const driftUs = (TICK_INTERVAL_US * TICK_DRIFT_PERCENT_MAX) / 100;
      server.tickIntervalUs = TICK_INTERVAL_US + this.rngRoot.between(-driftUs, driftUs);
      for (const group of disks.keys()) this.createReplica(server, group);
      this.servers.set(id, server);
      this.serverList.push(server);
      this.startServer(server);
    }
  }

  /**
   * Every shard leader takes a revision from its node's batcher and proposes a resolve entry (an
   * idle shard's resolved revision moves on, so a merged watch is not held back by it).
   */
  private resolveTick(): void {
    for (const group of this.shardGroups()) {
      const server = this.leaderOf(group);
      const replica = server?.replicas.get(group);
      if (server?.batcher === undefined || replica === undefined) continue;
      const incarnation = server.incarnation;
      this.asyncTouched = true;
      server.batcher.next().then(
        this.inPromise((revision: number) => {
          if (!this.isCurrent(server, incarnation) || !replica.running) return;
          const data = encodeResolve(this.nextProposalId++, revision);
          this.checker(group).registerProposal(entryKey(EntryType.Normal, data));
          replica.propose(data);
        }),
        this.inPromise(() => {}),
      );
    }
    if (!this.done) this.queue.after(RESOLVE_TICK_US, { kind: 'resolve-tick' });
  }

  // ---- online splits ----------------------------------------------------------------------------

  /** The metadata state a client routes by: a random metadata replica's (it may lag). */
  private routeMap(): ShardMap {
    const nodes = this.placement.get(METADATA_GROUP)!;
    const server = this.servers.get(this.rngClient.pick(nodes))!;
    return (server.meta!.app as MetaGroupStateMachine).shardMap;
  }

  /** The metadata state of the replica that applied the most (the committed map's newest view). */
  private latestMeta(): MetaState {
    let best: MetaGroupStateMachine | undefined;
    for (const id of this.placement.get(METADATA_GROUP)!) {
      const app = this.servers.get(id)!.meta!.app as MetaGroupStateMachine;
      if (best === undefined || app.state.version > best.state.version) best = app;
    }
    return best!.state;
  }

  private shardGroups(): number[] {
    return [...this.placement.keys()].filter((group) => group !== METADATA_GROUP);
  }

  /**
   * Plans a split of a random shard holding at least two of the keys, at one of its keys: the
   * split entry goes to the shard's log first (its replicas create the right half's group as they
   * apply it), then the metadata group's map takes the split (compare-and-set on the epoch).
   */
  private startSplit(): void {
    if (this.quiesced) return;
    if (this.splitting !== undefined || this.job !== undefined) {
      this.queue.after(this.rngSplit.between(50_000, 300_000), { kind: 'split' });
      return;
    }
    const map = this.latestMeta().shardMap;
    if (map.nextShardId !== this.nextShardId)
      throw new SimulatorError(`the map's next shard id is ${map.nextShardId}, expected ${this.nextShardId}`);
    const candidates = map.shards
      .map((shard) => ({
        shard,
        keys: this.keys.filter((k) => map.shardFor(utf8.encode(k)).id === shard.id),
      }))
      .filter(({ keys }) => keys.length >= 2);
    if (candidates.length === 0) return;
    const { shard, keys } = this.rngSplit.pick(candidates);
    const splitKey = keys[this.rngSplit.between(1, keys.length - 1)]!;
    this.splitting = { shardId: shard.id, epoch: shard.epoch, splitKey, rightId: this.nextShardId++ };
    this.trace(
      `split shard ${shard.id} (epoch ${shard.epoch}) at ${splitKey} into ${this.splitting.rightId}`,
    );
    this.queue.after(0, { kind: 'split-step' });
  }

  /** Drives the split in progress one step: propose to the shard, then to the metadata group, until each took it. */
  private splitStep(): void {
    const split = this.splitting;
    if (split === undefined) return;
    if (!this.placement.has(split.rightId)) {
      const leader = this.leaderOf(split.shardId)?.replicas.get(split.shardId);
      if (leader !== undefined) {
        const data = encodeSplit(this.nextProposalId++, {
          splitKey: split.splitKey,
          rightId: split.rightId,
          epoch: split.epoch,
        });
        this.checker(split.shardId).registerProposal(entryKey(EntryType.Normal, data));
        leader.propose(data);
      }
    } else if (this.latestMeta().shardMap.get(split.rightId) !== undefined) {
      this.trace(`split of shard ${split.shardId} into ${split.rightId} is in the map`);
      this.splitting = undefined;
      this.stats.splits++;
      return;
    } else {
      const leader = this.leaderOf(METADATA_GROUP)?.meta;
      if (leader !== undefined) {
        const data = encodeMetaProposal(this.nextProposalId++, {
          type: 'splitShard',
          shardId: split.shardId,
          expectedEpoch: split.epoch,
          splitKey: utf8.encode(split.splitKey),
        });
        this.checker(METADATA_GROUP).registerProposal(entryKey(EntryType.Normal, data));
        leader.propose(data);
      }
    }
    this.queue.after(50_000, { kind: 'split-step' });
  }

  /**
   * A replica of `shardId` applied a split: the first one creates the right half's group on the
   * shard's nodes, each replica booting from the state the split gave it (every replica derives
   * the same bytes at the same log index; the others are checked against the first).
   */
  private onSplitApplied(shardId: number, applied: AppliedSplit): void {
    const { rightId } = applied.split;
    const fingerprint = fnv1a(applied.rightBoot);
    const known = this.splitBoots.get(rightId);
    if (known !== undefined) {
      if (known !== fingerprint)
        throw new InvariantViolation(
          'state-machine-safety',
          `shard ${shardId}'s replicas split off ${rightId} with different states`,
        );
      return;
    }
    this.splitBoots.set(rightId, fingerprint);
    this.watch.addGroup(rightId, applied.revision);
    const nodes = this.placement.get(shardId)!;
    this.placement.set(rightId, nodes);
    this.checkers.set(rightId, new InvariantChecker({ consensus: 'raft' }));
    this.configs.set(rightId, this.shardConfig({ start: applied.split.splitKey, end: '' }));
    const confState = { voters: nodes, learners: [], votersOutgoing: [], learnersNext: [], autoLeave: false };
    this.memberships.set(rightId, { index: 1, conf: confState });
    for (const id of nodes) {
      const server = this.servers.get(id)!;
      server.disk.addGroup(rightId, SimDisk.bootstrap(confState, applied.rightBoot));
      const replica = this.createReplica(server, rightId);
      if (server.running) replica.start();
    }
    this.trace(`shard ${shardId} split: group ${rightId} created on n${nodes.join(',n')}`);
  }

  /** The shard groups' ranges and epochs are those of the metadata group's map, and cover the keys. */
  private checkShardMap(): void {
    const map = this.latestMeta().shardMap;
    const groups = this.shardGroups();
    if (map.shards.length !== groups.length)
      throw new InvariantViolation(
        'shard-map',
        `the map has ${map.shards.length} shards, the nodes host ${groups.length}`,
      );
    for (const shard of map.shards) {
      for (const id of this.placement.get(shard.id) ?? []) {
        const state = this.servers.get(id)!.replicas.get(shard.id)!.app as ShardStateMachine;
        const range = { start: decodeKey(shard.start), end: decodeKey(shard.end) };
        if (state.epoch !== shard.epoch || JSON.stringify(state.range) !== JSON.stringify(range))
          throw new InvariantViolation(
            'shard-map',
            `shard ${shard.id} n${id} is at epoch ${state.epoch} ${JSON.stringify(state.range)}, the map says ${shard.epoch} ${JSON.stringify(range)}`,
          );
        if (state.confEpoch !== shard.confEpoch)
          throw new InvariantViolation(
            'shard-map',
            `shard ${shard.id} n${id} is at conf epoch ${state.confEpoch}, the map says ${shard.confEpoch}`,
          );
      }
      // The map's replicas are the nodes hosting the group, and its group's membership.
      const sorted = (ids: readonly NodeId[]) => JSON.stringify([...ids].sort((a, b) => a - b));
      const conf = this.memberships.get(shard.id)!.conf;
      const inMap = sorted(shard.replicas.map((r) => r.node));
      const hosted = sorted(this.placement.get(shard.id) ?? []);
      const members = sorted([...conf.voters, ...conf.learners].map(serverOf));
      if (inMap !== hosted || inMap !== members)
        throw new InvariantViolation(
          'shard-map',
          `shard ${shard.id}: the map's replicas are ${inMap}, its group's members ${members}, hosted on ${hosted}`,
        );
    }
  }

  private createReplica(server: SimServer, group: number, raftId: NodeId = server.id): SimNode {
    const port = new GroupPort(this, server, group, this.checker(group));
    this.raftIds.set(`${group}:${server.id}`, raftId);
    this.knownReplicas.add(`${group}:${raftId}`);
    const replica = new SimNode(
      raftId,
      server.disk.group(group),
      port,
      this.rngRoot.fork(1000 * (group + 1) + raftId),
      this.configs.get(group)!,
      server.fsyncLatencyUs,
    );
    replica.tickIntervalUs = server.tickIntervalUs;
    server.replicas.set(group, replica);
    return replica;
  }

  private checker(group: number): InvariantChecker {
    const checker = this.checkers.get(group);
    if (checker === undefined) throw new SimulatorError(`no group ${group}`);
    return checker;
  }

  private startServer(server: SimServer): void {
    server.incarnation++;
    server.running = true;
    server.pausedUntilUs = 0;
    for (const replica of server.replicas.values()) {
      replica.fsyncLatencyUs = server.fsyncLatencyUs;
      replica.start();
    }
    const meta = server.meta;
    if (meta !== undefined) server.oracle = this.createOracle(server, meta);
    server.fetches = new Map();
    server.lastRange = undefined;
    server.batcher = new RevisionBatcher({
      fetch: (count) => this.fetchRevisions(server, count),
      schedule: (flush) => this.soon(flush),
      batchRevisionsMax: BATCH_REVISIONS_MAX,
    });
    const phase = this.rngRoot.between(0, server.tickIntervalUs - 1);
    this.queue.after(phase, { kind: 'tick', server, incarnation: server.incarnation });
  }

  private createOracle(server: SimServer, meta: SimNode): OracleHost {
    const incarnation = server.incarnation;
    return new OracleHost(
      meta,
      {
        nextProposalId: () => this.nextProposalId++,
        nextReadId: () => this.nextReadId++,
        registerMetaProposal: (data) =>
          this.checker(METADATA_GROUP).registerProposal(entryKey(EntryType.Normal, data)),
        after: (delayUs, run) => this.queue.after(delayUs, { kind: 'timer', server, incarnation, run }),
        touch: () => {
          this.asyncTouched = true;
        },
        trace: (line) => this.trace(line),
      },
      this.oracleOptions,
      this.options.oracleMutation,
    );
  }

  private crashServer(server: SimServer): void {
    this.trace(`n${server.id} crashes`);
    server.running = false;
    for (const replica of server.replicas.values()) replica.crash();
    server.disk.crash();
    server.oracle?.stop();
    server.oracle = undefined;
    server.batcher?.close();
    server.batcher = undefined;
    const fetches = [...server.fetches.values()];
    server.fetches = new Map();
    for (const fetch of fetches) fetch.reject(new OracleNotLeaderError());
    this.asyncTouched = true;
  }

  private schedule(): void {
    const clients = this.options.clients ?? 3;
    for (let id = 1; id <= clients; id++) {
      const client: Client = { id, current: undefined, attempt: 0, waitingOn: undefined };
      this.clients.push(client);
      this.queue.after(this.rngClient.between(0, 50_000), { kind: 'client', client, attempt: 0 });
    }
    if (this.options.faults ?? true)
      this.queue.after(this.rngFault.between(50_000, 300_000), { kind: 'nemesis' });
    this.queue.after(RESOLVE_TICK_US, { kind: 'resolve-tick' });
    if (this.options.splits ?? true) {
      const splits = this.rngSplit.between(1, 3);
      for (let i = 0; i < splits; i++)
        this.queue.after(this.rngSplit.between(100_000, this.faultPhaseUs - 1), { kind: 'split' });
    }
    if (this.rebalancing) {
      this.queue.after(REBALANCE_TICK_US, { kind: 'rebalance' });
      const late = Math.max(200_000, this.faultPhaseUs - 800_000);
      if (this.options.moves) {
        const moves = this.rngMove.between(1, 3);
        for (let i = 0; i < moves; i++)
          this.queue.after(this.rngMove.between(100_000, late), { kind: 'operator-move' });
      }
      if (this.options.nodeChurn) {
        this.queue.after(this.rngMove.between(100_000, late / 2), { kind: 'node-add' });
        if (this.rngMove.chance(0.5))
          this.queue.after(this.rngMove.between(100_000, late), { kind: 'node-add' });
        this.queue.after(this.rngMove.between(late / 2, late), { kind: 'node-remove' });
      }
    }
    this.queue.after(this.faultPhaseUs, { kind: 'quiesce' });
  }

  // ---- the event loop ---------------------------------------------------------------------------

  private async loop(): Promise<void> {
    await this.settle();
    while (!this.done) {
      const item = this.queue.pop();
      if (!item) throw new SimulatorError('event queue ran dry');
      if (++this.events > EVENTS_PER_RUN_MAX)
        throw new SimulatorError(`more than ${EVENTS_PER_RUN_MAX} events`);
      this.current = item.event;
      this.handle(item.event);
      await this.settle();
    }
  }

  /**
   * Finishes the current event as Node finishes a turn: host loops run until idle or waiting for
   * a disk, queued batches run, the oracles follow their replicas' roles, promise work (revision
   * fetches, oracle allocations) drains; then each node's writes of this turn start one fsync, and
   * each replica that acted is checked. Virtual time stands still meanwhile.
   */
  private async settle(): Promise<void> {
    for (;;) {
      await this.turn.settle(this.hostsRunning, () => this.fatal);
      for (const server of this.serverList) if (server.running) this.followOracleRole(server);
      if (this.turn.pending) continue;
      if (!this.asyncTouched) break;
      this.asyncTouched = false;
      // A macrotask boundary: every promise continuation queued so far has run after it.
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    if (this.fatal) throw this.fatal;
    for (const server of this.serverList) {
      if (server.running && server.disk.startSync())
        this.queue.after(server.fsyncLatencyUs, { kind: 'fsync', server, incarnation: server.incarnation });
    }
    this.checkTouched();
    if (this.rebalancing) this.checkMoveQuorum();
    this.followResolved();
  }

  /** Each shard group's leader reports its resolved revision (its applied revision, once caught up); the watch releases. */
  private followResolved(): void {
    for (const group of this.shardGroups()) {
      const replica = this.leaderOf(group)?.replicas.get(group);
      const raft = replica?.raft;
      if (replica === undefined || raft === undefined) continue;
      const { term, commit } = raft.status().hardState;
      if (!this.options.unsafeResolveBeforeCaughtUp && !caughtUp(replica, term, commit)) continue;
      this.watch.observeResolved(group, term, (replica.app as ShardStateMachine).revision);
    }
    this.watch.release();
  }

  private followOracleRole(server: SimServer): void {
    const oracle = server.oracle;
    // Its role and applied index change only when its replica acts.
    if (oracle === undefined || server.meta?.touched !== true) return;
    const wasLeading = oracle.leading;
    oracle.followRole();
    if (!wasLeading && oracle.leading) this.stats.oracleLeaderships++;
  }

  private checkTouched(): void {
    if (this.fatal) throw this.fatal;
    for (const server of this.serverList)
      for (const replica of server.replicas.values()) if (replica.touched) replica.afterEvent();
  }

  private readonly hostsRunning = (): boolean => {
    for (const server of this.serverList)
      for (const replica of server.replicas.values()) if (replica.hostRunning) return true;
    return false;
  };

  private actor(event: SimEvent): SimServer | undefined {
    switch (event.kind) {
      case 'tick':
      case 'fsync':
      case 'timer':
        return event.server;
      case 'deliver':
      case 'oracle-request':
      case 'oracle-response':
        return this.servers.get(event.kind === 'deliver' ? serverOf(event.message.to) : event.to);
      case 'unreachable':
        return this.servers.get(serverOf(event.replica.id));
      case 'snapshot-done': {
        const from = this.servers.get(serverOf(event.message.from));
        return from?.paused(this.queue.now) ? from : this.servers.get(serverOf(event.message.to));
      }
      default:
        return undefined;
    }
  }

  private handle(event: SimEvent): void {
    const actor = this.actor(event);
    if (actor?.paused(this.queue.now)) {
      this.queue.after(actor.pausedUntilUs - this.queue.now, event);
      return;
    }
    switch (event.kind) {
      case 'tick':
        return this.onTick(event.server, event.incarnation);
      case 'deliver':
        return this.deliver(event.group, event.message);
      case 'fsync':
        if (this.isCurrent(event.server, event.incarnation)) event.server.disk.completeSync();
        return;
      case 'snapshot-done':
        return this.finishSnapshot(
          event.group,
          event.message,
          event.fromIncarnation,
          event.epoch,
          event.chunkFails,
        );
      case 'unreachable':
        if (event.replica.running && event.replica.incarnation === event.incarnation)
          event.replica.withCore((raft) => raft.reportUnreachable(event.peer));
        return;
      case 'oracle-request':
        return this.serveOracleRequest(event.from, event.to, event.requestId, event.count);
      case 'oracle-response':
        return this.receiveOracleResponse(event);
      case 'timer':
        if (this.isCurrent(event.server, event.incarnation)) event.run();
        return;
      case 'client':
        if (event.client.attempt === event.attempt) this.clientAttempt(event.client);
        return;
      case 'client-timeout':
        if (event.client.current && event.client.attempt === event.attempt) this.clientAttempt(event.client);
        return;
      case 'nemesis':
        return this.nemesis();
      case 'restart':
        if (!event.server.running && !event.server.retired) {
          this.trace(`n${event.server.id} restarts from its disk`);
          this.startServer(event.server);
        }
        return;
      case 'heal':
        this.trace('network healed');
        return this.network.healAll();
      case 'disk-normal':
        return this.setFsyncLatency(event.server, this.fsyncNormalUs);
      case 'quiesce':
        return this.quiesce();
      case 'liveness-check':
        return this.livenessCheck();
      case 'split':
        return this.startSplit();
      case 'split-step':
        return this.splitStep();
      case 'resolve-tick':
        return this.resolveTick();
      case 'rebalance':
        return this.rebalanceTick();
      case 'operator-move':
        return this.operatorMove();
      case 'node-add':
        return this.nodeAdd();
      case 'node-remove':
        return this.nodeRemove();
      default:
        assertNever(event);
    }
  }

  /**
   * A promise callback of the simulation: it marks promise work as pending (settle drains it), and
   * what it throws (a violated invariant) fails the run once the event settles.
   */
  private inPromise<T>(run: (value: T) => void): (value: T) => void {
    return (value) => {
      this.asyncTouched = true;
      try {
        run(value);
      } catch (error) {
        this.fatal ??= error instanceof Error ? error : new Error(String(error));
      }
    };
  }

  private isCurrent(server: SimServer, incarnation: number): boolean {
    return server.running && server.incarnation === incarnation;
  }

  private onTick(server: SimServer, incarnation: number): void {
    if (!this.isCurrent(server, incarnation)) return;
    for (const replica of server.replicas.values()) if (replica.running) replica.tick();
    this.queue.after(server.tickIntervalUs, { kind: 'tick', server, incarnation });
  }

  private deliver(group: number, message: Message): void {
    const server = this.servers.get(serverOf(message.to));
    if (!server?.running || !this.network.isLinkUp(serverOf(message.from), serverOf(message.to))) return;
    const replica = server.replicas.get(group);
    if (replica?.id !== message.to) {
      // A replica a move removed drops what it is sent (its node may host a newer replica).
      if (this.knownReplicas.has(`${group}:${message.to}`)) return;
      throw new SimulatorError(`g${group} message to n${message.to}, which does not host it`);
    }
    if (this.options.trace) this.trace(`g${group} deliver ${formatMessage(message)}`);
    replica.step(message);
  }

  private reportUnreachable(group: number, from: SimNode, to: NodeId): void {
    const link = `${group}:${from.id}>${to}`;
    if (!this.unreachable.due(link, this.queue.now)) return;
    this.queue.after(this.network.config.latencyMinUs, {
      kind: 'unreachable',
      group,
      replica: from,
      incarnation: from.incarnation,
      peer: to,
    });
  }

  private sendSnapshot(group: number, from: SimNode, message: Message): void {
    const bytes = (message.snapshot?.data.length ?? 0) + 64;
    const stream = this.network.startSnapshotStream(serverOf(from.id), serverOf(message.to), bytes);
    this.stats.snapshotsSent++;
    this.trace(
      `g${group} n${from.id} streams snapshot ${message.snapshot?.metadata.index} to n${message.to}`,
    );
    this.queue.after(stream.durationUs, {
      kind: 'snapshot-done',
      group,
      message: cloneMessage(message),
      fromIncarnation: from.incarnation,
      epoch: stream.epoch,
      chunkFails: stream.chunkFails,
    });
  }

  private finishSnapshot(
    group: number,
    message: Message,
    fromIncarnation: number,
    epoch: number,
    chunkFails: boolean,
  ) {
    const fromReplica = this.servers.get(serverOf(message.from))!.replicas.get(group);
    const from = fromReplica?.id === message.from ? fromReplica : undefined;
    const toServer = this.servers.get(serverOf(message.to));
    const toReplica = toServer?.replicas.get(group);
    const to = toReplica?.id === message.to ? toReplica : undefined;
    const ok =
      toServer?.running === true &&
      to !== undefined &&
      this.network.snapshotStreamArrived(serverOf(message.from), serverOf(message.to), { epoch, chunkFails });
    if (ok) to!.step(this.options.unsafeSnapshotDropsWrite ? this.droppingWrite(group, message) : message);
    if (from?.running && from.incarnation === fromIncarnation)
      from.withCore((raft) => raft.reportSnapshot(message.to, ok));
  }

  // ---- the oracle over the network --------------------------------------------------------------

  /** A node's RevisionBatcher fetch: one request to the node it believes leads group 0. */
  private fetchRevisions(server: SimServer, count: number): Promise<RevisionRange> {
    this.asyncTouched = true;
    const reused = server.lastRange;
    if (this.options.unsafeReuseRevisions && reused !== undefined && reused.count === count) {
      server.lastRange = undefined;
      return Promise.resolve(reused);
    }
    const requestId = this.nextRequestId++;
    // A node hosting a metadata replica knows its leader; the others go by the last answer.
    const target = server.meta?.raft?.status().softState.leader || server.metaLeaderHint;
    const incarnation = server.incarnation;
    return new Promise<RevisionRange>((resolve, reject) => {
      server.fetches.set(requestId, { resolve, reject });
      this.sendOracleMessage(server.id, target, {
        kind: 'oracle-request',
        from: server.id,
        to: target,
        requestId,
        count,
      });
      this.queue.after(FETCH_TIMEOUT_US, {
        kind: 'timer',
        server,
        incarnation,
        run: () => this.failFetch(server, requestId, 0),
      });
    });
  }

  private sendOracleMessage(from: NodeId, to: NodeId, event: SimEvent): void {
    for (const delay of this.network.planDelivery(from, to)) this.queue.after(delay, event);
  }

  private serveOracleRequest(from: NodeId, to: NodeId, requestId: number, count: number): void {
    const server = this.servers.get(to)!;
    if (!server.running || !this.network.isLinkUp(from, to)) return;
    const oracle = server.oracle;
    const respond = (range: RevisionRange | undefined) => {
      if (!server.running) return;
      const leaderHint = server.meta?.raft?.status().softState.leader ?? 0;
      this.sendOracleMessage(to, from, {
        kind: 'oracle-response',
        from: to,
        to: from,
        requestId,
        range,
        leaderHint,
      });
    };
    if (oracle === undefined || !oracle.leading) return respond(undefined);
    const floor = this.revisions.releaseFloor();
    oracle.allocate(count).then(
      this.inPromise((range: RevisionRange) => {
        this.revisions.observeRelease(range.first, range.count, floor);
        this.trace(`n${to} oracle releases ${range.first}..${range.first + range.count - 1} to n${from}`);
        respond(range);
      }),
      this.inPromise(() => respond(undefined)),
    );
  }

  private receiveOracleResponse(event: Extract<SimEvent, { kind: 'oracle-response' }>): void {
    const server = this.servers.get(event.to)!;
    if (!server.running || !this.network.isLinkUp(event.from, event.to)) return;
    const fetch = server.fetches.get(event.requestId);
    if (fetch === undefined) return;
    if (event.range === undefined) return this.failFetch(server, event.requestId, event.leaderHint);
    server.fetches.delete(event.requestId);
    server.metaLeaderHint = event.from;
    if (this.options.unsafeReuseRevisions) server.lastRange = event.range;
    this.asyncTouched = true;
    fetch.resolve(event.range);
  }

  /** A fetch failed or timed out: the next one goes to the hinted leader, or the next metadata node. */
  private failFetch(server: SimServer, requestId: number, leaderHint: NodeId): void {
    const fetch = server.fetches.get(requestId);
    if (fetch === undefined) return;
    server.fetches.delete(requestId);
    const metaNodes = this.placement.get(METADATA_GROUP)!;
    server.metaLeaderHint = metaNodes.includes(leaderHint)
      ? leaderHint
      : metaNodes[(metaNodes.indexOf(server.metaLeaderHint) + 1) % metaNodes.length]!;
    this.asyncTouched = true;
    fetch.reject(new OracleNotLeaderError());
  }

  // ---- clients ----------------------------------------------------------------------------------

  private clientAttempt(client: Client): void {
    if (!client.current) {
      if (this.quiesced) return;
      const write = this.nextWriteId++;
      const request = this.chooseWrite();
      client.current = {
        write,
        request,
        shard: 0,
        epoch: 0,
        confEpoch: 0,
        floor: this.revisions.startWrite(write, request),
      };
      this.stats.writes++;
    }
    client.attempt++;
    client.waitingOn = undefined;
    const attempt = client.attempt;
    // Each attempt routes by the shard map of a random metadata replica (it may be stale).
    const map = this.routeMap();
    const routes = new Map(
      requestKeys(client.current.request).map((key) => {
        const route = map.shardFor(utf8.encode(key));
        return [route.id, route];
      }),
    );
    if (routes.size > 1) {
      // A split put the keys in two shards, and maps only get newer: a cross-shard write.
      this.trace(
        `client ${client.id}: write ${client.current.write} spans shards ${[...routes.keys()].join(',')}: refused`,
      );
      this.stats.crossShard++;
      client.current = undefined;
      return this.clientNext(client);
    }
    const route = [...routes.values()][0]!;
    client.current.shard = route.id;
    client.current.epoch = route.epoch;
    client.current.confEpoch = route.confEpoch;
    const shard = route.id;
    const server = this.servers.get(this.rngClient.pick(this.placement.get(shard)!))!;
    const replica = server.replicas.get(shard)!;
    const leads =
      server.running &&
      !server.paused(this.queue.now) &&
      replica.raft?.status().softState.role === Role.Leader;
    if (!leads || server.batcher === undefined) return this.clientRetry(client, attempt);
    this.queue.after(CLIENT_TIMEOUT_US, { kind: 'client-timeout', client, attempt });
    const incarnation = server.incarnation;
    this.asyncTouched = true;
    server.batcher.next().then(
      this.inPromise((revision: number) => {
        if (client.attempt !== attempt || !this.isCurrent(server, incarnation)) return;
        this.proposeWrite(client, replica, revision);
      }),
      this.inPromise(() => {
        if (client.attempt === attempt) this.clientRetry(client, attempt);
      }),
    );
  }

  /**
   * A put or a delete of a random key, or (TXN_PROBABILITY) a txn on two keys of one shard: if the
   * first exists, put the second and delete the first, else put the first.
   */
  private chooseWrite(): WriteRequest {
    const rng = this.rngClient;
    const key = rng.pick(this.keys);
    if (!rng.chance(TXN_PROBABILITY))
      return { ops: [{ key, op: rng.chance(DELETE_PROBABILITY) ? 'delete' : 'put' }] };
    const map = this.routeMap();
    const shard = map.shardFor(utf8.encode(key));
    const others = this.keys.filter((k) => k !== key && map.shardFor(utf8.encode(k)) === shard);
    if (others.length === 0) return { ops: [{ key, op: 'put' }] };
    const other = rng.pick(others);
    return {
      ifExists: key,
      ops: [
        { key: other, op: 'put' },
        { key, op: 'delete' },
      ],
      orElse: [{ key, op: 'put' }],
    };
  }

  private proposeWrite(client: Client, replica: SimNode, revision: number): void {
    const { write, request, shard, epoch, confEpoch } = client.current!;
    const proposalId = this.nextProposalId++;
    // Runs without moves route as before (no conf epoch); with moves every write carries it.
    const routed = this.rebalancing ? { epoch, confEpoch } : { epoch };
    const data = encodeWrite(proposalId, { write, revision, ...routed, ...request });
    this.checker(shard).registerProposal(entryKey(EntryType.Normal, data));
    if (!replica.running || !replica.propose(data).ok) return this.clientRetry(client, client.attempt);
    client.waitingOn = { replica, incarnation: replica.incarnation, proposalId };
    if (this.tracing)
      this.trace(
        `client ${client.id}: write ${write} ${JSON.stringify(request)} at revision ${revision} proposed to shard ${shard} n${replica.id}`,
      );
  }

  private clientRetry(client: Client, attempt: number): void {
    this.queue.after(this.rngClient.between(2000, 20_000), { kind: 'client', client, attempt });
  }

  private clientNext(client: Client): void {
    if (!this.quiesced)
      this.queue.after(this.rngClient.between(1000, 30_000), {
        kind: 'client',
        client,
        attempt: client.attempt,
      });
  }

  // ---- faults -----------------------------------------------------------------------------------

  private nemesis(): void {
    if (this.quiesced) return;
    const rng = this.rngFault;
    const alive = this.serverList.filter((s) => s.running && !s.retired);
    const ids = this.serverList.filter((s) => !s.retired).map((s) => s.id);
    const action = rng.nextInt(10);
    if (action === 0 && alive.length > 0) this.crash(rng.pick(alive));
    else if (action === 1) {
      const shuffled = shuffle(rng, ids);
      const cut = rng.between(1, shuffled.length - 1);
      this.partitionFor(shuffled.slice(0, cut), shuffled.slice(cut));
    } else if (action === 2 || action === 3) {
      // Isolate the oracle's node (group 0's leader), or a random shard's leader's node.
      const group = action === 2 ? METADATA_GROUP : rng.pick(this.shardGroups());
      const leader = this.leaderOf(group);
      if (leader)
        this.partitionFor(
          [leader.id],
          ids.filter((id) => id !== leader.id),
        );
    } else if (action === 4) {
      const [a, b] = shuffle(rng, ids);
      this.trace(`link n${a}→n${b} cut (one way)`);
      this.network.cutOneWay(a!, b!);
      this.stats.partitions++;
      this.queue.after(rng.between(50_000, 1_000_000), { kind: 'heal' });
    } else if (action === 5 && alive.length > 0) {
      const server = rng.pick(alive);
      this.setFsyncLatency(server, rng.between(5_000, 60_000));
      this.trace(`n${server.id} disk slow (${server.fsyncLatencyUs}us fsync)`);
      this.queue.after(rng.between(100_000, 2_000_000), { kind: 'disk-normal', server });
    } else if (action === 6) {
      this.trace('network healed');
      this.network.healAll();
    } else if (action === 7 && alive.length > 0) {
      // A random node, or the oracle's (a deposed leader that wakes up must not serve).
      const server = (rng.chance(0.5) ? this.leaderOf(METADATA_GROUP) : undefined) ?? rng.pick(alive);
      server.pausedUntilUs = this.queue.now + rng.between(20_000, 800_000);
      this.stats.pauses++;
      this.trace(`n${server.id} paused until ${(server.pausedUntilUs / 1000).toFixed(3)}ms`);
    } else if (action === 8) {
      const leader = this.leaderOf(METADATA_GROUP);
      if (leader) {
        this.stats.oracleCrashes++;
        if (this.job !== undefined) this.stats.oracleCrashesDuringMoves++;
        this.crash(leader);
      }
    } else if (action === 9) this.transferLeadership(rng.pick([...this.placement.keys()]));
    this.queue.after(rng.between(30_000, 400_000), { kind: 'nemesis' });
  }

  private crash(server: SimServer): void {
    this.crashServer(server);
    this.stats.crashes++;
    if (this.job !== undefined) this.stats.crashesDuringMoves++;
    this.queue.after(this.rngFault.between(20_000, 800_000), { kind: 'restart', server });
  }

  private partitionFor(a: NodeId[], b: NodeId[]): void {
    this.trace(`partition [${a.join(',')}] | [${b.join(',')}]`);
    this.network.partition(a, b);
    this.stats.partitions++;
    this.queue.after(this.rngFault.between(50_000, 1_500_000), { kind: 'heal' });
  }

  private transferLeadership(group: number): void {
    const leader = this.leaderOf(group);
    if (!leader) return;
    const target = this.rngFault.pick(this.placement.get(group)!.filter((id) => id !== leader.id));
    this.trace(`g${group}: leadership n${leader.id} → n${target}`);
    this.stats.leaderTransfers++;
    const targetId = this.raftIdOf(group, target);
    leader.replicas.get(group)!.withCore((raft) => raft.transferLeadership(targetId));
  }

  private setFsyncLatency(server: SimServer, latencyUs: number): void {
    server.fsyncLatencyUs = latencyUs;
    for (const replica of server.replicas.values()) replica.fsyncLatencyUs = latencyUs;
  }

  // ---- replica moves, the scheduler and node churn ----------------------------------------------

  /** A replica of `group` applied a membership change (the newest by index is the group's). */
  onConfChangeApplied(group: number, node: SimNode, confState: ConfState, index: number): void {
    const known = this.memberships.get(group);
    if (known === undefined) throw new SimulatorError(`g${group} has no founding membership`);
    if (known.index >= index) return;
    const before = known.conf;
    this.memberships.set(group, { index, conf: confState });
    this.stats.confChanges++;
    for (const id of [...confState.voters, ...confState.learners]) {
      const wasMember = before.voters.includes(id) || before.learners.includes(id);
      if (!wasMember) this.joinedAt.set(`${group}:${id}`, index);
    }
    this.trace(
      `g${group} n${node.id} applied membership at ${index}: voters ${confState.voters.join(',')} learners ${confState.learners.join(',') || '-'}`,
    );
  }

  /** The Raft id of `node`'s current (or latest) replica of `group`; a node that never held one: its id. */
  private raftIdOf(group: number, node: NodeId): NodeId {
    return this.raftIds.get(`${group}:${node}`) ?? node;
  }

  /**
   * After every event, for every shard group with a membership change applied: its newest
   * membership has at least REPLICATION_FACTOR voters, and every voter's disk holds the group's
   * log up to where it joined (a learner is promoted only once it caught up, and no voter is
   * removed before its replacement is promoted).
   */
  private checkMoveQuorum(): void {
    for (const [group, { index, conf }] of this.memberships) {
      if (group === METADATA_GROUP || !this.placement.has(group)) continue;
      if (conf.voters.length < REPLICATION_FACTOR)
        throw new InvariantViolation(
          'move-quorum',
          `shard ${group}'s membership at ${index} has ${conf.voters.length} voters (${conf.voters.join(',')}), fewer than ${REPLICATION_FACTOR}`,
        );
      for (const id of conf.voters) {
        const joined = this.joinedAt.get(`${group}:${id}`) ?? 0;
        if (joined === 0) continue;
        const replica = this.servers.get(serverOf(id))?.replicas.get(group);
        const durable = replica?.id === id ? replica.disk.lastIndex() : 0;
        if (durable < joined)
          throw new InvariantViolation(
            'move-quorum',
            `shard ${group}'s voter n${id} (membership at ${index}) holds its log only up to ${durable}, below ${joined} where it joined`,
          );
      }
    }
  }

  /** The settled placement obeys bounded load (⌈1.25 × average⌉ per up node) and distinct hosts. */
  private checkPlacement(meta: MetaState): void {
    const up = meta.nodes.filter((node) => node.state === 'up');
    const load = new Map<NodeId, number>(up.map((node) => [node.id, 0]));
    let replicas = 0;
    for (const shard of meta.shardMap.shards) {
      const hosts = new Set<string>();
      for (const { node, role } of shard.replicas) {
        if (role !== 'voter')
          throw new InvariantViolation('placement', `settled shard ${shard.id} still has learner n${node}`);
        const host = this.hosts.get(node)!;
        if (hosts.has(host))
          throw new InvariantViolation('placement', `shard ${shard.id} has two replicas on host ${host}`);
        hosts.add(host);
        if (!load.has(node))
          throw new InvariantViolation(
            'placement',
            `shard ${shard.id} has a replica on n${node}, which is not up`,
          );
        load.set(node, load.get(node)! + 1);
        replicas++;
      }
    }
    const bound = Math.ceil((1.25 * replicas) / up.length);
    for (const [node, count] of load)
      if (count > bound)
        throw new InvariantViolation(
          'placement',
          `n${node} holds ${count} replicas, above the bound ⌈1.25 × ${replicas}/${up.length}⌉ = ${bound}`,
        );
  }

  /** The scheduler's moves: the metadata state's plan (or a broken one, for the mutants). */
  private schedulerPlan(meta: MetaState): readonly Move[] {
    if (this.options.unsafeSchedulerIgnoresBound) return meta.plan(100).moves;
    if (this.options.unsafeSchedulerIgnoresHosts)
      return MetaState.fromFields({
        nodes: meta.nodes.map((node) => ({ ...node, host: undefined })),
        shardMap: meta.shardMap,
        pins: meta.pins,
        compactionRevision: meta.compactionRevision,
        oracleMark: meta.oracleMark,
        replicationFactor: meta.replicationFactor,
        version: meta.version,
      }).plan().moves;
    return meta.plan().moves;
  }

  /**
   * The scheduler's turn (every REBALANCE_TICK_US): drive the move in progress; else the next node
   * operation; else start the plan's first move; with nothing to move, the placement has settled
   * and is checked.
   */
  private rebalanceTick(): void {
    if (!this.done) this.queue.after(REBALANCE_TICK_US, { kind: 'rebalance' });
    if (this.job !== undefined) return this.driveMove();
    if (this.splitting !== undefined) return;
    const meta = this.latestMeta();
    if (this.nodeOps.length > 0 && !this.driveNodeOp(meta)) return;
    const moves = this.schedulerPlan(meta);
    if (moves.length === 0) {
      if (this.nodeOps.length === 0) this.checkPlacement(meta);
      return;
    }
    this.startMove(moves[0]!);
  }

  private startMove(move: Move): void {
    let steps = move.steps;
    if (this.options.unsafeRemoveBeforePromote) {
      const removal = new Set<MoveStep>(
        steps.filter((step) => step.kind === 'remove' || step.kind === 'transfer-leader'),
      );
      steps = [...removal, ...steps.filter((step) => !removal.has(step))];
    }
    this.job = { move, steps, step: 0, phase: 'raft', catchUpTo: undefined, transfers: 0 };
    this.trace(
      `move shard ${move.shard}: n${move.from ?? '-'} → n${move.to ?? '-'} (${steps.map(describeStep).join(', ')})`,
    );
    this.driveMove();
  }

  /** Runs the move in progress as far as it can go now. */
  private driveMove(): void {
    const job = this.job!;
    const shard = job.move.shard;
    for (;;) {
      const step = job.steps[job.step];
      if (step === undefined) {
        this.trace(`move of shard ${shard} done`);
        this.stats.moves++;
        this.job = undefined;
        return;
      }
      const leaderServer = this.leaderOf(shard);
      const leader = leaderServer?.replicas.get(shard);
      if (leaderServer === undefined || leader?.raft === undefined) return;
      const status = leader.raft.status();
      if (step.kind === 'snapshot') {
        job.catchUpTo ??= status.hardState.commit;
        const match = status.progress?.get(this.raftIdOf(shard, step.node))?.match ?? 0;
        if (!this.options.unsafePromoteBeforeCaughtUp && match < job.catchUpTo) return;
        this.nextStep(job);
        continue;
      }
      if (step.kind === 'transfer-leader') {
        if (leaderServer.id !== step.from) {
          this.nextStep(job);
          continue;
        }
        const voters = status.confState.voters.filter((id) => id !== leader.id);
        const target =
          job.transfers++ % 3 === 0 || !voters.length
            ? this.raftIdOf(shard, step.to)
            : this.rngMove.pick(voters);
        this.trace(`move shard ${shard}: leadership n${leader.id} → n${target}`);
        leader.withCore((raft) => raft.transferLeadership(target));
        return;
      }
      if (job.phase === 'raft') {
        const replicaId = this.membershipId(shard, step);
        if (replicaId === undefined || !membershipHas(leader.app.confState, step.kind, replicaId)) {
          this.proposeConfChange(shard, leader, step);
          return;
        }
        if (step.kind === 'remove') this.retireReplica(shard, step.node);
        job.phase = 'meta';
      }
      const record = this.latestMeta().shardMap.get(shard);
      if (record === undefined) throw new SimulatorError(`shard ${shard} left the map during a move`);
      if (!mapHas(record.replicas, step)) {
        this.proposeMeta({
          type: 'changeReplicas',
          shardId: shard,
          expectedConfEpoch: record.confEpoch,
          step: step.kind,
          nodeId: step.node,
        });
        return;
      }
      this.nextStep(job);
    }
  }

  private nextStep(job: MoveJob): void {
    job.step++;
    job.phase = 'raft';
    job.catchUpTo = undefined;
    job.transfers = 0;
  }

  /** Proposes a membership step to the shard's leader (creating the learner's replica first). */
  private proposeConfChange(
    shard: number,
    leader: SimNode,
    step: Extract<MoveStep, { kind: 'add-learner' | 'promote' | 'remove' }>,
  ): void {
    if (step.kind === 'add-learner') this.ensureReplica(shard, step.node);
    const type =
      step.kind === 'add-learner' ? 'add-learner' : step.kind === 'promote' ? 'add-node' : 'remove-node';
    const change: ConfChange = {
      transition: 'auto',
      changes: [{ type, nodeId: this.raftIdOf(shard, step.node) }],
      context: new Uint8Array(0),
    };
    const data = encodeConfChange(change);
    this.checker(shard).registerProposal(entryKey(EntryType.ConfChange, data));
    const result = leader.withCore((raft) => raft.proposeConfChange(change));
    this.trace(
      `g${shard} n${leader.id} proposes ${type} n${step.node}: ${result.ok ? 'accepted' : result.reason}`,
    );
  }

  private proposeMeta(command: MetaCommand): void {
    const leader = this.leaderOf(METADATA_GROUP)?.meta;
    if (leader === undefined) return;
    const data = encodeMetaProposal(this.nextProposalId++, command);
    this.checker(METADATA_GROUP).registerProposal(entryKey(EntryType.Normal, data));
    leader.propose(data);
  }

  /**
   * The Raft id a membership step names: for a learner step, the node's replica created for it
   * (undefined before it exists); else the node's latest replica.
   */
  private membershipId(shard: number, step: MembershipStep): NodeId | undefined {
    if (step.kind === 'add-learner' && !this.servers.get(step.node)!.replicas.has(shard)) return undefined;
    return this.raftIdOf(shard, step.node);
  }

  /**
   * The replica a learner step adds: an empty disk, and a new Raft id if the node held a replica of
   * the group before (see raftIds).
   */
  private ensureReplica(shard: number, node: NodeId): void {
    const server = this.servers.get(node)!;
    if (server.replicas.has(shard)) return;
    const previous = this.raftIds.get(`${shard}:${node}`);
    const reuse = this.options.unsafeReuseReplicaIds === true;
    const raftId = previous === undefined || reuse ? node : previous + REPLICA_ID_STRIDE;
    if (raftId !== node) this.stats.readds++;
    const disk = new SimDisk();
    const removed = this.removedReplicas.get(`${shard}:${raftId}`);
    if (removed !== undefined) disk.hardState = { ...removed.hardState, commit: 0 };
    server.disk.addGroup(shard, disk);
    const replica = this.createReplica(server, shard, raftId);
    this.placement.set(shard, [...this.placement.get(shard)!, node]);
    replica.incarnation = removed?.incarnation ?? 0;
    if (server.running) replica.start();
    this.trace(`g${shard}: replica created on n${node}`);
  }

  /** The shard's group applied the removal of `node`: its replica stops and its data goes. */
  private retireReplica(shard: number, node: NodeId): void {
    const server = this.servers.get(node)!;
    const replica = server.replicas.get(shard);
    if (replica === undefined) return;
    replica.crash();
    server.replicas.delete(shard);
    const disk = server.disk.removeGroup(shard);
    this.removedReplicas.set(`${shard}:${replica.id}`, {
      incarnation: replica.incarnation,
      hardState: { ...disk.hardState },
    });
    this.placement.set(
      shard,
      this.placement.get(shard)!.filter((id) => id !== node),
    );
    this.trace(`g${shard}: replica on n${node} removed`);
  }

  /** An operator move (`shard move ID --from N --to M`): a random voter to an up node on a host the shard does not use. */
  private operatorMove(): void {
    if (this.quiesced) return;
    if (this.job !== undefined || this.splitting !== undefined || this.nodeOps.length > 0) {
      this.queue.after(this.rngMove.between(50_000, 200_000), { kind: 'operator-move' });
      return;
    }
    const meta = this.latestMeta();
    const shard = this.rngMove.pick(meta.shardMap.shards);
    const voters = shard.replicas.map((r) => r.node);
    const from = this.rngMove.pick(voters);
    const usedHosts = new Set(voters.filter((id) => id !== from).map((id) => this.hosts.get(id)));
    const candidates = meta.nodes.filter(
      (node) => node.state === 'up' && !voters.includes(node.id) && !usedHosts.has(this.hosts.get(node.id)),
    );
    if (candidates.length === 0) return;
    const to = this.rngMove.pick(candidates).id;
    const target = voters.map((id) => (id === from ? to : id));
    const [move] = planRebalance({
      current: new Map([[shard.id, { voters }]]),
      target: new Map([[shard.id, target]]),
      replicationFactor: REPLICATION_FACTOR,
    });
    this.trace(`operator moves shard ${shard.id} n${from} → n${to}`);
    this.startMove(move!);
  }

  /** A spare node joins: the scheduler then moves a fair share of replicas to it. */
  private nodeAdd(): void {
    const node = this.spares.shift();
    if (node === undefined || this.quiesced) return;
    this.trace(`n${node} joins the cluster`);
    this.nodeOps.push({ kind: 'add', node });
  }

  /** A member not hosting the metadata group is drained, then removed once it holds nothing. */
  private nodeRemove(): void {
    if (this.quiesced) return;
    const meta = this.latestMeta();
    const metaNodes = this.placement.get(METADATA_GROUP)!;
    const up = meta.nodes.filter((node) => node.state === 'up');
    const candidates = up.filter((node) => {
      if (metaNodes.includes(node.id) || this.nodeOps.some((op) => op.node === node.id)) return false;
      const hostsLeft = new Set(up.filter((n) => n.id !== node.id).map((n) => this.hosts.get(n.id)));
      return hostsLeft.size >= REPLICATION_FACTOR;
    });
    if (candidates.length === 0) return;
    const node = this.rngMove.pick(candidates).id;
    this.trace(`n${node} is drained to leave the cluster`);
    this.nodeOps.push({ kind: 'drain', node }, { kind: 'remove', node });
  }

  /**
   * Drives the first node operation one step; true when the scheduler may plan meanwhile (the
   * removal waits for the plan to have moved every replica away).
   */
  private driveNodeOp(meta: MetaState): boolean {
    const op = this.nodeOps[0]!;
    const record = meta.nodes.find((node) => node.id === op.node);
    const attributes = {
      id: op.node,
      peerUrls: [`sim://n${op.node}`],
      clientUrls: [],
      host: this.hosts.get(op.node),
      zone: undefined,
    };
    if (op.kind === 'add') {
      if (record !== undefined) return this.nodeOpDone(op);
      this.proposeMeta({ type: 'addNode', node: attributes });
      return false;
    }
    if (op.kind === 'drain') {
      if (record?.state === 'draining') return this.nodeOpDone(op);
      this.proposeMeta({ type: 'updateNode', node: attributes, state: 'draining' });
      return false;
    }
    if (record?.state === 'removed') {
      const server = this.servers.get(op.node)!;
      if (server.running) this.crashServer(server);
      server.retired = true;
      this.trace(`n${op.node} left the cluster`);
      return this.nodeOpDone(op);
    }
    const holds = meta.shardMap.shards.some((shard) => shard.replicas.some((r) => r.node === op.node));
    if (holds) return true;
    this.proposeMeta({ type: 'removeNode', nodeId: op.node });
    return false;
  }

  private nodeOpDone(op: NodeOp): boolean {
    this.nodeOps.shift();
    if (op.kind === 'add') this.stats.nodeAdds++;
    if (op.kind === 'remove') this.stats.nodeRemoves++;
    return this.nodeOps.length === 0;
  }

  private addedNodeShares(): number[] {
    if (!this.options.nodeChurn) return [];
    const meta = this.latestMeta();
    const up = meta.nodes.filter((node) => node.state === 'up');
    const total = meta.shardMap.shards.reduce((n, shard) => n + shard.replicas.length, 0);
    return up
      .filter((node) => node.id > this.options.nodes)
      .map((node) => {
        const load = meta.shardMap.shards.filter((shard) =>
          shard.replicas.some((r) => r.node === node.id),
        ).length;
        return load / (total / up.length);
      });
  }

  /** The unsafeSnapshotDropsWrite mutant: a snapshot for a replica a move created loses its newest key version. */
  private droppingWrite(group: number, message: Message): Message {
    const snapshot = message.snapshot;
    if (snapshot === undefined || snapshot.data.length === 0) return message;
    if ((this.joinedAt.get(`${group}:${message.to}`) ?? 0) === 0) return message;
    const state = JSON.parse(utf8Decoder.decode(snapshot.data)) as {
      history: [string, { revision: number }[]][];
    };
    let newest: { revision: number }[] | undefined;
    for (const [, versions] of state.history)
      if (
        versions.length > 0 &&
        (newest === undefined || versions.at(-1)!.revision > newest.at(-1)!.revision)
      )
        newest = versions;
    if (newest === undefined) return message;
    newest.pop();
    return { ...message, snapshot: { ...snapshot, data: utf8.encode(JSON.stringify(state)) } };
  }

  // ---- liveness and the end of the run ----------------------------------------------------------

  private quiesce(): void {
    this.quiesced = true;
    this.quiesceAtUs = this.queue.now;
    this.trace('faults stop: heal the network, restart crashed nodes, disks back to normal');
    this.network.healAll();
    for (const server of this.serverList) {
      this.setFsyncLatency(server, this.fsyncNormalUs);
      server.pausedUntilUs = 0;
      if (!server.running && !server.retired) {
        this.trace(`n${server.id} restarts from its disk`);
        this.startServer(server);
      }
    }
    this.queue.after(LIVENESS_CHECK_US, { kind: 'liveness-check' });
  }

  private livenessCheck(): void {
    const elapsed = this.queue.now - this.quiesceAtUs;
    const why = this.why();
    if (why === '') {
      this.stats.livenessUs = elapsed;
      this.trace(`converged ${elapsed}us after the faults stopped`);
      this.done = true;
      return;
    }
    if (elapsed > this.livenessBoundUs)
      throw new InvariantViolation(
        'liveness',
        `no convergence within ${this.livenessBoundUs}us after faults stopped: ${why}`,
      );
    this.queue.after(LIVENESS_CHECK_US, { kind: 'liveness-check' });
  }

  /** Why the cluster has not converged yet ('' when it has). */
  private why(): string {
    const oracle = this.leaderOf(METADATA_GROUP)?.oracle;
    if (!oracle?.leading) return 'no oracle leader';
    if (this.splitting !== undefined) return `split of shard ${this.splitting.shardId} pending`;
    if (this.rebalancing) {
      if (this.job !== undefined)
        return `move of shard ${this.job.move.shard} pending (step ${this.job.step})`;
      if (this.nodeOps.length > 0) return `${this.nodeOps[0]!.kind} of n${this.nodeOps[0]!.node} pending`;
      const moves = this.schedulerPlan(this.latestMeta()).length;
      if (moves > 0) return `${moves} moves planned`;
    }
    if (this.watch.released < this.watch.appliedMax)
      return `watch released up to ${this.watch.released} < ${this.watch.appliedMax}`;
    const pending = this.clients.filter((c) => c.current !== undefined);
    if (pending.length > 0) return `writes pending: ${pending.map((c) => c.current!.write).join(',')}`;
    for (const [group, nodes] of this.placement) {
      const leader = this.leaderOf(group);
      if (!leader) return `group ${group} has no leader`;
      const commit = leader.replicas.get(group)!.raft!.status().hardState.commit;
      for (const id of nodes) {
        const replica = this.servers.get(id)!.replicas.get(group)!;
        if (replica.app.appliedIndex < commit)
          return `group ${group} n${id} applied ${replica.app.appliedIndex} < ${commit}`;
      }
    }
    return '';
  }

  private finalChecks(): void {
    this.checkShardMap();
    if (this.rebalancing) this.checkPlacement(this.latestMeta());
    const shardReplicas: ShardReplicaView[] = [];
    for (const [group, nodes] of this.placement) {
      const replicas = nodes.map((id) => this.servers.get(id)!.replicas.get(group)!);
      this.checker(group).checkNoAckLost(
        replicas.map((r) => ({
          node: r.id,
          applied: r.app.appliedIndex,
          has: (id: number) => r.app.has(id),
        })),
      );
      if (group === METADATA_GROUP) continue;
      for (const r of replicas)
        shardReplicas.push({ shard: group, node: r.id, state: r.app as ShardStateMachine });
    }
    this.revisions.checkReplicas(shardReplicas);
    this.watch.checkStream(
      this.shardGroups().map((group) => {
        const id = this.placement.get(group)![0]!;
        return this.servers.get(id)!.replicas.get(group)!.app as ShardStateMachine;
      }),
    );
  }

  /** The running, unpaused server whose replica of `group` leads in the highest term. */
  private leaderOf(group: number): SimServer | undefined {
    let best: SimServer | undefined;
    let bestTerm = -1;
    for (const id of this.placement.get(group)!) {
      const server = this.servers.get(id)!;
      const raft = server.replicas.get(group)!.raft;
      if (!server.running || server.paused(this.queue.now) || raft === undefined) continue;
      const status = raft.status();
      if (status.softState.role === Role.Leader && status.hardState.term > bestTerm) {
        best = server;
        bestTerm = status.hardState.term;
      }
    }
    return best;
  }
}

export function runShardedSimulation(options: ShardedSimOptions): Promise<ShardedSimResult> {
  return new ShardedSimulation(options).run();
}

const utf8 = new TextEncoder();

const utf8Decoder = new TextDecoder();

/** The replica leads in `term` and has applied its commit, which holds an entry of its term. */
function caughtUp(replica: SimNode, term: number, commit: number): boolean {
  const storage = replica.storage;
  if (commit > storage.lastIndex() || commit < storage.firstIndex() - 1) return false;
  return storage.term(commit) === term && replica.app.appliedIndex >= commit;
}

function decodeKey(key: Uint8Array): string {
  return utf8Decoder.decode(key);
}

function keyName(i: number): string {
  return `k${String(i).padStart(3, '0')}`;
}

type MembershipStep = Extract<MoveStep, { kind: 'add-learner' | 'promote' | 'remove' }>;

/** The node hosting the replica with this Raft id (see REPLICA_ID_STRIDE). */
function serverOf(raftId: NodeId): NodeId {
  return raftId % REPLICA_ID_STRIDE;
}

/** The shard's group has taken the step for the replica with Raft id `id` (applied by its leader). */
function membershipHas(conf: ConfState, kind: MembershipStep['kind'], id: NodeId): boolean {
  if (kind === 'add-learner') return conf.learners.includes(id) || conf.voters.includes(id);
  if (kind === 'promote') return conf.voters.includes(id);
  return !conf.voters.includes(id) && !conf.learners.includes(id);
}

/** The metadata group's map has taken the step. */
function mapHas(replicas: readonly { node: NodeId; role: string }[], step: MembershipStep): boolean {
  const replica = replicas.find((r) => r.node === step.node);
  if (step.kind === 'add-learner') return replica !== undefined;
  if (step.kind === 'promote') return replica?.role === 'voter';
  return replica === undefined;
}

function describeStep(step: MoveStep): string {
  return step.kind === 'transfer-leader'
    ? `transfer n${step.from}→n${step.to}`
    : `${step.kind} n${step.node}`;
}

function describeEvent(event: SimEvent): string {
  switch (event.kind) {
    case 'tick':
    case 'fsync':
    case 'timer':
    case 'restart':
    case 'disk-normal':
      return `${event.kind} n${event.server.id}`;
    case 'unreachable':
      return `unreachable g${event.group} n${event.replica.id}→n${event.peer}`;
    case 'deliver':
    case 'snapshot-done':
      return `${event.kind} g${event.group} ${formatMessage(event.message)}`;
    case 'oracle-request':
    case 'oracle-response':
      return `${event.kind} ${event.requestId} n${event.from}→n${event.to}`;
    case 'client':
    case 'client-timeout':
      return `${event.kind} ${event.client.id}`;
    default:
      return event.kind;
  }
}
