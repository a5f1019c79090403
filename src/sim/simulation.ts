// A whole cluster (Raft or Multi-Paxos) in one process on a virtual clock. One seed determines
// everything: the cluster size, the latencies, which faults strike when, which proposals the
// clients make, the election timeouts inside the core (through its injected Rng). Invariants are
// checked as each node acts (see invariants.ts); after the fault phase the cluster is healed and
// must converge within a bounded virtual time (liveness).

import type { ConfChange, ConfChangeSingle } from '../raft/api.js';
import { encodeConfChange } from '../raft/confchange.js';
import { type ConfState, EntryType, type Message, MessageType, type NodeId, Role } from '../raft/types.js';
import { encodeProposal, entryKey } from './app.js';
import { type Consensus, engineFactory } from './consensus.js';
import { SimDisk } from './disk.js';
import { assertNever, InvariantViolation, SimulatorError } from './errors.js';
import { EventQueue } from './event-queue.js';
import { InvariantChecker } from './invariants.js';
import { Network, simNetworkConfig, UnreachableReports } from './network.js';
import { SimRng } from './rng.js';
import { type CoreFactory, SimNode, type SimNodeConfig, type SimNodeHost } from './sim-node.js';
import { TurnQueue } from './turn.js';

export interface SimOptions {
  seed: number;
  /** Founding voters (3 or 5 in the seed tests). */
  nodes: number;
  /** Faults, membership changes and new proposals happen during this much virtual time. */
  faultPhaseUs?: number;
  /** After the faults stop, the cluster must converge within this much virtual time. */
  livenessBoundUs?: number;
  clients?: number;
  faults?: boolean;
  membership?: boolean;
  /** The consensus engine (default 'raft'); the invariants follow it (terms vs ballots). */
  consensus?: Consensus;
  /** Multi-Paxos only: the flexible phase-2 quorum size (default: a majority). */
  phase2Quorum?: number;
  /**
   * Raft quiescence (RaftConfig.quiesce) on every node; each node then also models the peer
   * transport's liveness (keep-alives and idle timeout, one per node pair): every
   * KEEPALIVE_TICKS ticks it reports each peer it cannot hear (crashed, paused, cut off) unreachable,
   * which is what wakes a hibernating follower whose leader is gone.
   */
  quiesce?: boolean;
  /** A core under test instead of the engine's own (a broken one, to show the checks catch it). */
  createCore?: CoreFactory;
  /**
   * Options for every node's RaftHost; tests set `unsafeSendBeforeFsync` to show that the
   * invariants catch a host loop that breaks its ordering rule.
   */
  hostOptions?: SimNodeConfig['hostOptions'];
  /** Receives a human-readable line per interesting event (verbose replay). */
  trace?: (line: string) => void;
}

export interface SimResult {
  seed: number;
  nodes: number;
  events: number;
  virtualUs: number;
  proposals: number;
  acked: number;
  committedIndex: number;
  /** Virtual time from "faults stop" until a leader and every pending proposal committed. */
  livenessUs: number;
  crashes: number;
  pauses: number;
  partitions: number;
  confChangesApplied: number;
  leaderTransfers: number;
  snapshotsSent: number;
  snapshotsFailed: number;
  readsServed: number;
  /** Node ticks skipped because the node's group hibernated (SimOptions.quiesce). */
  hibernatedTicks: number;
}

export class SimFailure extends Error {
  readonly code = 'sim-failure';
  constructor(
    readonly seed: number,
    readonly nodes: number,
    readonly replay: string,
    override readonly cause: unknown,
    where: string,
  ) {
    super(
      `seed ${seed} (${nodes} nodes) failed ${where}: ${cause instanceof Error ? cause.message : String(cause)}\n  replay: ${replay} (add --verbose for a trace)`,
    );
    this.name = 'SimFailure';
  }
}

/** The exact command that replays one seed (add --verbose for a trace of every event). */
export function replayCommand(
  seed: number,
  nodes: number,
  consensus: Consensus = 'raft',
  phase2Quorum?: number,
): string {
  const engine = consensus === 'raft' ? '' : ` --consensus ${consensus}`;
  const quorum = phase2Quorum === undefined ? '' : ` --paxos-phase2-quorum ${phase2Quorum}`;
  return `npm run sim -- --seeds 1 --from ${seed} --nodes ${nodes}${engine}${quorum}`;
}

const TICK_INTERVAL_US = 10_000;
/** Clock rate differences between nodes, as a percentage of the tick interval. */
const TICK_DRIFT_PERCENT_MAX = 10;
/** A healthy run takes a few thousand events; far more means a message storm in the core. */
const EVENTS_PER_RUN_MAX = 1_000_000;
const EXTRA_NODES_MAX = 4;
const VOTERS_MIN = 3;
const MEMBERS_MAX = 7;
const CLIENT_TIMEOUT_US = 300_000;
/** Share of client operations that are linearizable reads (ReadIndex) rather than writes. */
const READ_PROBABILITY = 0.25;
const LIVENESS_CHECK_US = 10_000;
/**
 * With quiescence, how often (in ticks) a node's simulated transport reports peers it cannot hear:
 * the peer transport's keep-alive and idle timeout (5 s against a 1 s election timeout), scaled.
 */
const KEEPALIVE_TICKS = 20;
const DECOMMISSION_DELAY_US = 1_000_000;

type SimEvent =
  | { kind: 'tick'; node: SimNode; incarnation: number }
  | { kind: 'deliver'; message: Message }
  | { kind: 'fsync'; node: SimNode; incarnation: number }
  | { kind: 'snapshot-done'; message: Message; fromIncarnation: number; epoch: number; chunkFails: boolean }
  | { kind: 'unreachable'; node: SimNode; incarnation: number; peer: NodeId }
  | { kind: 'client'; client: Client }
  | { kind: 'client-timeout'; client: Client; attempt: number }
  | { kind: 'read-timeout'; client: Client; readId: number }
  | { kind: 'nemesis' }
  | { kind: 'restart'; node: SimNode }
  | { kind: 'heal' }
  | { kind: 'disk-normal'; node: SimNode }
  | { kind: 'admin' }
  | { kind: 'decommission'; node: SimNode }
  | { kind: 'quiesce' }
  | { kind: 'liveness-check' };

interface Proposal {
  id: number;
  data: Uint8Array;
  key: string;
}

interface PendingRead {
  id: number;
  /** Highest index of any write acknowledged before the read was issued: the read must see it. */
  ackFloor: number;
  node: SimNode;
  incarnation: number;
}

interface Client {
  id: number;
  read: PendingRead | undefined;
  current: Proposal | undefined;
  attempt: number;
  /** Where the current attempt was accepted: the ack must come from this node incarnation. */
  waitingOn: { node: SimNode; incarnation: number } | undefined;
}

export class Simulation implements SimNodeHost {
  readonly checker: InvariantChecker;
  private readonly queue = new EventQueue<SimEvent>();
  private readonly network: Network;
  private readonly nodes = new Map<NodeId, SimNode>();
  /** The same nodes, for the loops that run after every event. */
  private readonly nodeList: SimNode[] = [];
  private readonly rngRoot: SimRng;
  private readonly rngFault: SimRng;
  private readonly rngClient: SimRng;
  private readonly rngAdmin: SimRng;
  private readonly clients: Client[] = [];
  private readonly nodeConfig: SimNodeConfig;
  private readonly fsyncNormalUs: number;
  private readonly faultPhaseUs: number;
  private readonly livenessBoundUs: number;
  private nextProposalId = 1;
  private nextReadId = 1;
  private nextNodeId: NodeId;
  private readonly lastNodeId: NodeId;
  private membership: ConfState;
  private membershipIndex = 0;
  private quiesced = false;
  private quiesceAtUs = 0;
  private done = false;
  private events = 0;
  private current: SimEvent | undefined;
  /** Host callbacks due at the end of the current event (the simulated setImmediate queue). */
  private readonly turn = new TurnQueue();
  /** The first error a host loop stopped on; the run fails with it once the event settles. */
  private fatal: Error | undefined;
  private readonly unreachable = new UnreachableReports(TICK_INTERVAL_US);
  private readonly stats = {
    proposals: 0,
    crashes: 0,
    pauses: 0,
    partitions: 0,
    confChangesApplied: 0,
    leaderTransfers: 0,
    snapshotsSent: 0,
    snapshotsFailed: 0,
    livenessUs: -1,
    reads: 0,
    readsServed: 0,
  };

  constructor(private readonly options: SimOptions) {
    if (!Number.isInteger(options.nodes) || options.nodes < 1 || options.nodes > MEMBERS_MAX) {
      throw new SimulatorError(`nodes must be in [1, ${MEMBERS_MAX}], got ${options.nodes}`);
    }
    this.checker = new InvariantChecker({ consensus: options.consensus ?? 'raft' });
    this.rngRoot = new SimRng(options.seed, 0);
    const rngNet = new SimRng(options.seed, 1);
    this.rngFault = new SimRng(options.seed, 2);
    this.rngClient = new SimRng(options.seed, 3);
    this.rngAdmin = new SimRng(options.seed, 4);
    this.network = new Network(rngNet, simNetworkConfig(new SimRng(options.seed, 5), options.faults ?? true));
    this.faultPhaseUs = options.faultPhaseUs ?? 3_000_000;
    this.livenessBoundUs = options.livenessBoundUs ?? 5_000_000;
    this.fsyncNormalUs = this.rngRoot.chance(0.2) ? 0 : this.rngRoot.between(100, 2000);
    this.nodeConfig = {
      createCore:
        options.createCore ?? engineFactory(options.consensus ?? 'raft', options.nodes, options.phase2Quorum),
      electionTicks: 10,
      heartbeatTicks: this.rngRoot.between(1, 3),
      snapshotEveryEntries: this.rngRoot.between(20, 120),
      compactionKeepEntries: this.rngRoot.between(0, 30),
      maxMessageBytes: this.rngRoot.pick([1024, 64 * 1024]),
      inflightMessagesMax: this.rngRoot.pick([2, 16, 256]),
      // Mostly the server's settings; sometimes without them, where elections are more disruptive.
      checkQuorum: this.rngRoot.chance(0.8),
      preVote: this.rngRoot.chance(0.8),
      hostOptions: options.hostOptions,
    };
    if (options.quiesce === true) this.nodeConfig.quiesce = true;
    if (options.consensus === 'multi-paxos' && this.nodeConfig.checkQuorum) {
      // Half the Paxos runs read under the leader lease; node clocks drift by up to ±10 % (rates
      // differ by < 25 %, the core's default bound). Drawn apart so Raft runs replay unchanged.
      const lease = new SimRng(options.seed, 6).chance(0.5);
      if (lease) this.nodeConfig.readOnlyOption = 'lease-based';
    }
    const voters: NodeId[] = [];
    for (let id = 1; id <= options.nodes; id++) voters.push(id);
    this.membership = { voters, learners: [], votersOutgoing: [], learnersNext: [], autoLeave: false };
    this.nextNodeId = options.nodes + 1;
    this.lastNodeId = options.nodes + EXTRA_NODES_MAX;
    for (const id of voters) this.addNode(id, SimDisk.bootstrap(this.membership, new Uint8Array(0)));
  }

  async run(): Promise<SimResult> {
    try {
      this.schedule();
      await this.loop();
      this.finalChecks();
    } catch (err) {
      const during = this.current ? ` (handling ${describeEvent(this.current)})` : '';
      const where = `at t=${(this.queue.now / 1000).toFixed(3)}ms after ${this.events} events${during}`;
      throw new SimFailure(
        this.options.seed,
        this.options.nodes,
        replayCommand(
          this.options.seed,
          this.options.nodes,
          this.options.consensus,
          this.options.phase2Quorum,
        ),
        err,
        where,
      );
    }
    return {
      seed: this.options.seed,
      nodes: this.options.nodes,
      events: this.events,
      virtualUs: this.queue.now,
      proposals: this.stats.proposals,
      acked: this.checker.ackedCount,
      committedIndex: this.checker.committedIndex,
      livenessUs: this.stats.livenessUs,
      crashes: this.stats.crashes,
      pauses: this.stats.pauses,
      partitions: this.stats.partitions,
      confChangesApplied: this.stats.confChangesApplied,
      leaderTransfers: this.stats.leaderTransfers,
      snapshotsSent: this.stats.snapshotsSent,
      snapshotsFailed: this.stats.snapshotsFailed,
      readsServed: this.stats.readsServed,
      hibernatedTicks: this.nodeList.reduce((s, n) => s + n.hibernatedTicks, 0),
    };
  }

  // ---- SimNodeHost -------------------------------------------------------------------------

  send(from: SimNode, message: Message): void {
    const to = message.to;
    if (message.from !== from.id) {
      throw new InvariantViolation('core-contract', `node ${from.id} sends a message from ${message.from}`);
    }
    if (to === from.id)
      throw new InvariantViolation('core-contract', `node ${from.id} sends a message to itself`);
    if (message.type === MessageType.Snapshot) return this.sendSnapshot(from, message);
    if (!this.network.isLinkUp(from.id, to)) {
      this.reportUnreachable(from, to);
      return;
    }
    for (const delay of this.network.planDelivery(from.id, to)) {
      this.queue.after(delay, { kind: 'deliver', message: cloneMessage(message) });
    }
  }

  private reportUnreachable(from: SimNode, to: NodeId): void {
    if (!this.unreachable.due(`${from.id}>${to}`, this.queue.now)) return;
    const delayUs = this.network.config.latencyMinUs;
    this.queue.after(delayUs, { kind: 'unreachable', node: from, incarnation: from.incarnation, peer: to });
  }

  scheduleFsync(node: SimNode, delayUs: number): void {
    this.queue.after(delayUs, { kind: 'fsync', node, incarnation: node.incarnation });
  }

  soon(run: () => void): void {
    this.turn.soon(run);
  }

  onFatal(node: SimNode, error: Error): void {
    this.trace(`n${node.id} host loop stopped: ${error.message}`);
    this.fatal ??= error;
  }

  get tracing(): boolean {
    return this.options.trace !== undefined;
  }

  onProposalApplied(node: SimNode, proposalId: number, key: string, index: number): void {
    for (const client of this.clients) {
      const waiting = client.waitingOn;
      if (client.current?.id !== proposalId || !waiting) continue;
      if (waiting.node !== node || waiting.incarnation !== node.incarnation) continue;
      this.checker.observeAck(proposalId, key, index);
      this.trace(`client ${client.id}: proposal ${proposalId} acked at index ${index} by n${node.id}`);
      client.current = undefined;
      client.waitingOn = undefined;
      this.clientNext(client);
    }
  }

  onConfChangeApplied(node: SimNode, confState: ConfState, index: number): void {
    if (index <= this.membershipIndex) return;
    const before = members(this.membership);
    this.membership = confState;
    this.membershipIndex = index;
    this.stats.confChangesApplied++;
    this.trace(`n${node.id} applied membership at ${index}: ${formatConf(confState)}`);
    const now = new Set(members(confState));
    for (const id of before) {
      const removed = this.nodes.get(id);
      if (!now.has(id) && removed)
        this.queue.after(DECOMMISSION_DELAY_US, { kind: 'decommission', node: removed });
    }
  }

  trace(line: string): void {
    this.options.trace?.(`${(this.queue.now / 1000).toFixed(3)}ms ${line}`);
  }

  // ---- setup -------------------------------------------------------------------------------

  private addNode(id: NodeId, disk: SimDisk): SimNode {
    const node = new SimNode(
      id,
      disk,
      this,
      this.rngRoot.fork(100 + id),
      this.nodeConfig,
      this.fsyncNormalUs,
    );
    const driftUs = (TICK_INTERVAL_US * TICK_DRIFT_PERCENT_MAX) / 100;
    node.tickIntervalUs = TICK_INTERVAL_US + this.rngRoot.between(-driftUs, driftUs);
    this.nodes.set(id, node);
    this.nodeList.push(node);
    this.startNode(node);
    return node;
  }

  private startNode(node: SimNode): void {
    node.start();
    const phase = this.rngRoot.between(0, node.tickIntervalUs - 1);
    this.queue.after(phase, { kind: 'tick', node, incarnation: node.incarnation });
  }

  private schedule(): void {
    const clients = this.options.clients ?? 3;
    for (let id = 1; id <= clients; id++) {
      const client: Client = { id, read: undefined, current: undefined, attempt: 0, waitingOn: undefined };
      this.clients.push(client);
      this.queue.after(this.rngClient.between(0, 50_000), { kind: 'client', client });
    }
    if (this.options.faults ?? true)
      this.queue.after(this.rngFault.between(50_000, 300_000), { kind: 'nemesis' });
    if (this.options.membership ?? true)
      this.queue.after(this.rngAdmin.between(100_000, 400_000), { kind: 'admin' });
    this.queue.after(this.faultPhaseUs, { kind: 'quiesce' });
  }

  // ---- the event loop ----------------------------------------------------------------------

  private async loop(): Promise<void> {
    await this.settle();
    while (!this.done) {
      const item = this.queue.pop();
      if (!item) throw new SimulatorError('event queue ran dry');
      if (++this.events > EVENTS_PER_RUN_MAX)
        throw new SimulatorError(`more than ${EVENTS_PER_RUN_MAX} events`);
      this.current = item.event;
      this.handle(item.event);
      // Most events leave no host work behind (a tick with nothing to do, a message to a down
      // node): those settle without a trip through the microtask queue.
      if (this.turn.pending || this.hostsRunning()) await this.settle();
      else this.checkTouched();
    }
  }

  /** Finishes the current event as Node finishes a turn (turn.ts), then checks each node that acted. */
  private async settle(): Promise<void> {
    await this.turn.settle(this.hostsRunning, () => this.fatal);
    this.checkTouched();
  }

  /** Checks each node that acted during the event. */
  private checkTouched(): void {
    if (this.fatal) throw this.fatal;
    for (const node of this.nodeList) if (node.touched) node.afterEvent();
  }

  private readonly hostsRunning = (): boolean => {
    for (const node of this.nodeList) if (node.hostRunning) return true;
    return false;
  };

  /** The node an event acts on, when that node could be paused. */
  private actor(event: SimEvent): SimNode | undefined {
    switch (event.kind) {
      case 'tick':
      case 'fsync':
      case 'unreachable':
        return event.node;
      case 'deliver':
        return this.nodes.get(event.message.to);
      case 'snapshot-done': {
        const from = this.nodes.get(event.message.from);
        const to = this.nodes.get(event.message.to);
        return from && from.pausedUntilUs > this.queue.now ? from : to;
      }
      default:
        return undefined;
    }
  }

  private handle(event: SimEvent): void {
    const actor = this.actor(event);
    if (actor && actor.pausedUntilUs > this.queue.now) {
      // A frozen process handles nothing; what arrives meanwhile waits, in order, for the resume.
      this.queue.after(actor.pausedUntilUs - this.queue.now, event);
      return;
    }
    switch (event.kind) {
      case 'tick':
        return this.onTick(event.node, event.incarnation);
      case 'deliver':
        return this.deliver(event.message);
      case 'fsync':
        if (event.node.running && event.node.incarnation === event.incarnation) event.node.completeFsync();
        return;
      case 'snapshot-done':
        return this.finishSnapshot(event.message, event.fromIncarnation, event.epoch, event.chunkFails);
      case 'unreachable':
        if (event.node.running && event.node.incarnation === event.incarnation) {
          event.node.withCore((raft) => raft.reportUnreachable(event.peer));
        }
        return;
      case 'client':
        return this.clientAttempt(event.client);
      case 'client-timeout':
        return this.clientTimeout(event.client, event.attempt);
      case 'read-timeout':
        return this.readTimeout(event.client, event.readId);
      case 'nemesis':
        return this.nemesis();
      case 'restart':
        if (!event.node.running && !event.node.decommissioned) {
          this.trace(`n${event.node.id} restarts from its disk`);
          this.startNode(event.node);
        }
        return;
      case 'heal':
        this.trace('network healed');
        return this.network.healAll();
      case 'disk-normal':
        event.node.fsyncLatencyUs = this.fsyncNormalUs;
        return;
      case 'admin':
        return this.admin();
      case 'decommission':
        return this.decommission(event.node);
      case 'quiesce':
        return this.quiesce();
      case 'liveness-check':
        return this.livenessCheck();
      default:
        assertNever(event);
    }
  }

  private onTick(node: SimNode, incarnation: number): void {
    if (!node.running || node.incarnation !== incarnation) return;
    // Lease reads assume ticks measure elapsed time, so a host that serves them counts ticks from
    // a monotonic clock: after a pause it delivers the ticks it missed before anything else.
    // Other runs tick once per timer event, as a plain interval timer does after a pause.
    const lease = this.nodeConfig.readOnlyOption === 'lease-based';
    const missed =
      lease && node.lastTickUs > 0 ? Math.floor((this.queue.now - node.lastTickUs) / node.tickIntervalUs) : 1;
    node.lastTickUs = this.queue.now;
    for (let i = 0; i < Math.max(1, missed); i++) {
      if (!node.running) return;
      node.tick();
    }
    if (this.options.quiesce === true && ++node.keepAliveTicks >= KEEPALIVE_TICKS) {
      node.keepAliveTicks = 0;
      this.reportSilentPeers(node);
    }
    this.queue.after(node.tickIntervalUs, { kind: 'tick', node, incarnation });
  }

  /** The transport's idle timeout: peers this node has not been able to hear from are reported. */
  private reportSilentPeers(node: SimNode): void {
    for (const peer of this.nodeList) {
      if (peer === node) continue;
      const silent =
        !peer.running ||
        peer.pausedUntilUs > this.queue.now ||
        !this.network.isLinkUp(peer.id, node.id) ||
        !this.network.isLinkUp(node.id, peer.id);
      if (silent) this.reportUnreachable(node, peer.id);
    }
  }

  private deliver(message: Message): void {
    const node = this.nodes.get(message.to);
    if (!node?.running || !this.network.isLinkUp(message.from, message.to)) return;
    if (this.options.trace) {
      this.trace(`deliver ${formatMessage(message)}`);
    }
    node.step(message);
  }

  private sendSnapshot(from: SimNode, message: Message): void {
    const bytes = (message.snapshot?.data.length ?? 0) + 64;
    const stream = this.network.startSnapshotStream(from.id, message.to, bytes);
    this.stats.snapshotsSent++;
    this.trace(
      `n${from.id} streams snapshot ${message.snapshot?.metadata.index} to n${message.to} (${stream.chunks} chunks)`,
    );
    this.queue.after(stream.durationUs, {
      kind: 'snapshot-done',
      message: cloneMessage(message),
      fromIncarnation: from.incarnation,
      epoch: stream.epoch,
      chunkFails: stream.chunkFails,
    });
  }

  /** A snapshot stream ended: delivered whole, or broken by a cut link / a failed chunk / a crash. */
  private finishSnapshot(
    message: Message,
    fromIncarnation: number,
    epoch: number,
    chunkFails: boolean,
  ): void {
    const from = this.nodes.get(message.from)!;
    const to = this.nodes.get(message.to);
    const ok =
      to?.running === true &&
      this.network.snapshotStreamArrived(message.from, message.to, { epoch, chunkFails });
    if (ok) to!.step(message);
    else this.stats.snapshotsFailed++;
    if (from.running && from.incarnation === fromIncarnation) {
      this.trace(`snapshot n${message.from}→n${message.to} ${ok ? 'delivered' : 'failed'}`);
      from.withCore((raft) => raft.reportSnapshot(message.to, ok));
    }
  }

  // ---- clients -----------------------------------------------------------------------------

  private clientAttempt(client: Client): void {
    if (client.read) return;
    if (!client.current) {
      if (this.quiesced) return;
      if (this.rngClient.chance(READ_PROBABILITY)) return this.clientRead(client);
      const id = this.nextProposalId++;
      const data = encodeProposal(id, this.rngClient.between(0, 40));
      client.current = { id, data, key: entryKey(EntryType.Normal, data) };
      this.checker.registerProposal(client.current.key);
      this.stats.proposals++;
    }
    client.attempt++;
    client.waitingOn = undefined;
    const candidates = [...this.nodes.values()].filter((n) => !n.decommissioned);
    const node = this.rngClient.pick(candidates);
    const reachable = node.running && node.pausedUntilUs <= this.queue.now;
    const result = reachable ? node.propose(client.current.data) : undefined;
    if (result?.ok) {
      client.waitingOn = { node, incarnation: node.incarnation };
      this.queue.after(CLIENT_TIMEOUT_US, { kind: 'client-timeout', client, attempt: client.attempt });
      return;
    }
    this.queue.after(this.rngClient.between(2000, 20_000), { kind: 'client', client });
  }

  /** A linearizable read through ReadIndex: it must observe every write acknowledged before it. */
  private clientRead(client: Client): void {
    const candidates = [...this.nodes.values()].filter((n) => n.running && n.pausedUntilUs <= this.queue.now);
    const readId = this.nextReadId++;
    if (candidates.length === 0) return this.clientNext(client);
    const node = this.rngClient.pick(candidates);
    // Registered before the call: a core may serve the read within it (a lease, a lone voter).
    const read: PendingRead = {
      id: readId,
      ackFloor: this.checker.ackedIndexMax,
      node,
      incarnation: node.incarnation,
    };
    client.read = read;
    const result = node.withCore((raft) => raft.readIndex(encodeReadContext(readId)));
    if (!result.ok) {
      client.read = undefined;
      return this.clientNext(client);
    }
    this.stats.reads++;
    if (client.read === read) this.queue.after(CLIENT_TIMEOUT_US, { kind: 'read-timeout', client, readId });
  }

  onReadServed(node: SimNode, context: Uint8Array, readIndex: number): void {
    const readId = decodeReadContext(context);
    for (const client of this.clients) {
      const read = client.read;
      if (!read || read.id !== readId || read.node !== node || read.incarnation !== node.incarnation)
        continue;
      if (readIndex < read.ackFloor) {
        throw new InvariantViolation(
          'stale-read',
          `read ${readId} at n${node.id} served at index ${readIndex}, but a write acknowledged before it is at ${read.ackFloor}`,
        );
      }
      this.stats.readsServed++;
      this.trace(`client ${client.id}: read ${readId} served at index ${readIndex} by n${node.id}`);
      client.read = undefined;
      this.clientNext(client);
    }
  }

  private readTimeout(client: Client, readId: number): void {
    if (client.read?.id !== readId) return;
    client.read = undefined;
    this.clientNext(client);
  }

  private clientNext(client: Client): void {
    if (!this.quiesced) this.queue.after(this.rngClient.between(1000, 30_000), { kind: 'client', client });
  }

  private clientTimeout(client: Client, attempt: number): void {
    if (client.current && client.attempt === attempt && client.waitingOn) this.clientAttempt(client);
  }

  // ---- faults ------------------------------------------------------------------------------

  private nemesis(): void {
    if (this.quiesced) return;
    const rng = this.rngFault;
    const alive = this.runningNodes();
    const ids = [...this.nodes.values()].filter((n) => !n.decommissioned).map((n) => n.id);
    const action = rng.nextInt(8);
    if (action === 0 && alive.length > 0) {
      const victim = rng.pick(alive);
      this.trace(`n${victim.id} crashes`);
      victim.crash();
      this.stats.crashes++;
      this.queue.after(rng.between(20_000, 800_000), { kind: 'restart', node: victim });
    } else if (action === 1) {
      const shuffled = shuffle(rng, ids);
      const cut = rng.between(1, Math.max(1, shuffled.length - 1));
      this.partitionFor(shuffled.slice(0, cut), shuffled.slice(cut));
    } else if (action === 2) {
      const leader = this.leader();
      if (leader)
        this.partitionFor(
          [leader.id],
          ids.filter((id) => id !== leader.id),
        );
    } else if (action === 3 && ids.length > 1) {
      const [a, b] = shuffle(rng, ids);
      this.trace(`link n${a}→n${b} cut (one way)`);
      this.network.cutOneWay(a!, b!);
      this.stats.partitions++;
      this.queue.after(rng.between(50_000, 1_000_000), { kind: 'heal' });
    } else if (action === 4 && alive.length > 0) {
      const node = rng.pick(alive);
      node.fsyncLatencyUs = rng.between(5_000, 60_000);
      this.trace(`n${node.id} disk slow (${node.fsyncLatencyUs}us fsync)`);
      this.queue.after(rng.between(100_000, 2_000_000), { kind: 'disk-normal', node });
    } else if (action === 5) {
      this.trace('network healed');
      this.network.healAll();
    } else if (action === 6 && alive.length > 0) {
      const node = rng.pick(alive);
      node.pausedUntilUs = this.queue.now + rng.between(20_000, 800_000);
      this.stats.pauses++;
      this.trace(`n${node.id} paused until ${(node.pausedUntilUs / 1000).toFixed(3)}ms`);
    }
    this.queue.after(rng.between(30_000, 400_000), { kind: 'nemesis' });
  }

  private partitionFor(a: NodeId[], b: NodeId[]): void {
    this.trace(`partition [${a.join(',')}] | [${b.join(',')}]`);
    this.network.partition(a, b);
    this.stats.partitions++;
    this.queue.after(this.rngFault.between(50_000, 1_500_000), { kind: 'heal' });
  }

  // ---- membership and leader transfer ------------------------------------------------------

  private admin(): void {
    if (this.quiesced) return;
    this.queue.after(this.rngAdmin.between(100_000, 500_000), { kind: 'admin' });
    const leader = this.leader();
    if (!leader) return;
    const conf = leader.withCore((raft) => raft.status().confState);
    const change = this.chooseChange(leader, conf);
    if (!change) return;
    const data = encodeConfChange(change);
    this.checker.registerProposal(entryKey(EntryType.ConfChange, data));
    const result = leader.withCore((raft) => raft.proposeConfChange(change));
    this.trace(
      `admin proposes ${formatChange(change)} at n${leader.id}: ${result.ok ? 'accepted' : result.reason}`,
    );
  }

  private chooseChange(leader: SimNode, conf: ConfState): ConfChange | undefined {
    const rng = this.rngAdmin;
    const context = new Uint8Array(0);
    if (conf.votersOutgoing.length > 0) {
      return conf.autoLeave ? undefined : { transition: 'auto', changes: [], context };
    }
    const action = rng.nextInt(5);
    const memberCount = members(conf).length;
    const canAdd = this.nextNodeId <= this.lastNodeId && memberCount < MEMBERS_MAX;
    if (action === 0 && canAdd) {
      return { transition: 'auto', changes: [{ type: 'add-learner', nodeId: this.spawnNode().id }], context };
    }
    if (action === 1 && conf.learners.length > 0) {
      return {
        transition: 'auto',
        changes: [{ type: 'add-node', nodeId: rng.pick(conf.learners) }],
        context,
      };
    }
    if (action === 2 && conf.voters.length > VOTERS_MIN) {
      return {
        transition: 'auto',
        changes: [{ type: 'remove-node', nodeId: rng.pick(conf.voters) }],
        context,
      };
    }
    if (action === 3 && canAdd && conf.voters.length >= VOTERS_MIN) {
      const changes: ConfChangeSingle[] = [
        { type: 'add-node', nodeId: this.spawnNode().id },
        { type: 'remove-node', nodeId: rng.pick(conf.voters) },
      ];
      return { transition: rng.pick(['joint-implicit', 'joint-explicit'] as const), changes, context };
    }
    if (action === 4 && conf.voters.length > 1) {
      const target = rng.pick(conf.voters.filter((id) => id !== leader.id));
      this.trace(`admin transfers leadership n${leader.id} → n${target}`);
      this.stats.leaderTransfers++;
      leader.withCore((raft) => raft.transferLeadership(target));
    }
    return undefined;
  }

  /** Starts a brand-new, empty node (a member-to-be); it learns everything from the leader. */
  private spawnNode(): SimNode {
    const id = this.nextNodeId++;
    this.trace(`n${id} starts empty`);
    return this.addNode(id, new SimDisk());
  }

  private decommission(node: SimNode): void {
    if (members(this.membership).includes(node.id) || node.decommissioned) return;
    this.trace(`n${node.id} decommissioned (removed from the cluster)`);
    if (node.running) node.crash();
    node.decommissioned = true;
  }

  // ---- liveness ----------------------------------------------------------------------------

  private quiesce(): void {
    this.quiesced = true;
    this.quiesceAtUs = this.queue.now;
    this.trace('faults stop: heal the network, restart crashed nodes, disks back to normal');
    this.network.healAll();
    for (const node of this.nodes.values()) {
      node.fsyncLatencyUs = this.fsyncNormalUs;
      node.pausedUntilUs = 0;
      if (!node.running && !node.decommissioned) {
        this.trace(`n${node.id} restarts from its disk`);
        this.startNode(node);
      }
    }
    this.queue.after(LIVENESS_CHECK_US, { kind: 'liveness-check' });
  }

  private livenessCheck(): void {
    const elapsed = this.queue.now - this.quiesceAtUs;
    if (this.converged()) {
      this.stats.livenessUs = elapsed;
      this.trace(`converged ${elapsed}us after the faults stopped`);
      this.done = true;
      return;
    }
    if (elapsed > this.livenessBoundUs) {
      throw new InvariantViolation(
        'liveness',
        `no convergence within ${this.livenessBoundUs}us after faults stopped: ${this.why()}`,
      );
    }
    this.queue.after(LIVENESS_CHECK_US, { kind: 'liveness-check' });
  }

  private converged(): boolean {
    return this.why() === '';
  }

  /** Why the cluster has not converged yet ('' when it has). */
  private why(): string {
    const leader = this.leader();
    if (!leader) return 'no leader';
    const pending = this.clients.filter((c) => c.current !== undefined);
    if (pending.length > 0) return `proposals pending: ${pending.map((c) => c.current!.id).join(',')}`;
    const commit = leader.raft!.status().hardState.commit;
    for (const id of members(this.membership)) {
      const node = this.nodes.get(id);
      if (node?.running && node.app.appliedIndex < commit)
        return `n${id} applied ${node.app.appliedIndex} < ${commit}`;
    }
    return '';
  }

  private finalChecks(): void {
    const machines = [...this.nodes.values()]
      .filter((n) => n.running)
      .map((n) => ({ node: n.id, applied: n.app.appliedIndex, has: (id: number) => n.app.has(id) }));
    this.checker.checkNoAckLost(machines);
  }

  // ---- helpers -----------------------------------------------------------------------------

  private runningNodes(): SimNode[] {
    return [...this.nodes.values()].filter((n) => n.running);
  }

  /** The running leader with the highest term, if any. */
  private leader(): SimNode | undefined {
    let best: SimNode | undefined;
    let bestTerm = -1;
    for (const node of this.nodes.values()) {
      if (!node.running || node.role !== Role.Leader || node.pausedUntilUs > this.queue.now) continue;
      const term = node.raft!.status().hardState.term;
      if (term > bestTerm) {
        best = node;
        bestTerm = term;
      }
    }
    return best;
  }
}

export function runSimulation(options: SimOptions): Promise<SimResult> {
  return new Simulation(options).run();
}

export function encodeReadContext(readId: number): Uint8Array {
  const context = new Uint8Array(5);
  context[0] = 0x52;
  new DataView(context.buffer).setUint32(1, readId);
  return context;
}

export function decodeReadContext(context: Uint8Array): number {
  if (context.length !== 5 || context[0] !== 0x52) {
    throw new InvariantViolation('core-contract', 'a read state carries a context nobody sent');
  }
  return new DataView(context.buffer, context.byteOffset, context.byteLength).getUint32(1);
}

function members(conf: ConfState): NodeId[] {
  return [...new Set([...conf.voters, ...conf.learners, ...conf.votersOutgoing, ...conf.learnersNext])];
}

export function shuffle<T>(rng: SimRng, items: readonly T[]): T[] {
  const out = items.slice();
  for (let i = out.length - 1; i > 0; i--) {
    const j = rng.nextInt(i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

/** A copy as a real transport would deliver: the receiver never shares objects with the sender. */
export function cloneMessage(m: Message): Message {
  return { ...m, entries: m.entries.map((e) => ({ ...e })) };
}

export function formatMessage(m: Message): string {
  const entries =
    m.entries.length > 0 ? ` ents=${m.entries[0]!.index}..${m.entries[m.entries.length - 1]!.index}` : '';
  const reject = m.reject ? ` REJECT hint=${m.rejectHint}` : '';
  return `${MessageType[m.type]} n${m.from}→n${m.to} term=${m.term} logTerm=${m.logTerm} index=${m.index} commit=${m.commit}${entries}${reject}`;
}

function describeEvent(event: SimEvent): string {
  switch (event.kind) {
    case 'tick':
    case 'fsync':
    case 'restart':
    case 'disk-normal':
    case 'decommission':
      return `${event.kind} n${event.node.id}`;
    case 'unreachable':
      return `unreachable n${event.node.id}→n${event.peer}`;
    case 'deliver':
    case 'snapshot-done':
      return `${event.kind} ${formatMessage(event.message)}`;
    case 'client':
    case 'client-timeout':
      return `${event.kind} ${event.client.id}`;
    default:
      return event.kind;
  }
}

function formatConf(c: ConfState): string {
  const out = c.votersOutgoing.length > 0 ? ` outgoing=[${c.votersOutgoing}]` : '';
  const next = c.learnersNext.length > 0 ? ` learnersNext=[${c.learnersNext}]` : '';
  return `voters=[${c.voters}] learners=[${c.learners}]${out}${next}${c.autoLeave ? ' autoLeave' : ''}`;
}

function formatChange(c: ConfChange): string {
  if (c.changes.length === 0) return 'leave-joint';
  return `${c.transition}(${c.changes.map((s) => `${s.type} n${s.nodeId}`).join(', ')})`;
}
