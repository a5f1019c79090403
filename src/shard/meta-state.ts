// The replicated state machine of the metadata group (group 0): the nodes, the shard map with its
// placement table (each shard's voters, learners and leader hint, plus the scheduler's pins), the
// cluster's compaction revision, the timestamp oracle's persisted high-water mark and the
// replication factor.
//
// A MetaState value is immutable. Applying an entry returns the next state and an outcome: a
// typed result, or a typed refusal (a ShardError with a stable code) that leaves the state as it
// was. Apply is deterministic (the same entries give the same state on every replica) and total:
// a payload that does not decode, or a command the state does not allow, is a refusal, never a
// throw that would stop a replica. It throws only when the state itself would break its
// invariants, which is a bug.
//
// The derived views, `targetPlacement()` (rendezvous placement over the up nodes) and `plan()`
// (the moves from the current placement to it), let the scheduler read what to do and propose
// commands; the state machine itself never moves anything.

import {
  CompactionRevisionError,
  ConfEpochMismatchError,
  LeaderHintInvalidError,
  MetaStateInvariantError,
  NodeExistsError,
  NodeInUseError,
  NodeInvalidError,
  NodeNotFoundError,
  NodeStateError,
  OracleRequestInvalidError,
  PinInvalidError,
  ReplicaChangeInvalidError,
  ReplicationFactorInvalidError,
  ShardError,
  ShardMapInvariantError,
  StaleEpochError,
} from './errors.js';
import {
  decodeMetaCommand,
  type MetaCommand,
  type MetaCommandType,
  type MetaNode,
  type NodeAttributes,
} from './meta-commands.js';
import { applyHighWaterRaise, REVISION_MAX } from './oracle.js';
import { hostOf, type PlacementNode, type PlacementResult, placeReplicas } from './placement.js';
import { type CurrentReplicas, type Move, planRebalance } from './rebalance.js';
import { type ShardDescriptor, ShardMap } from './shard-map.js';
import type { NodeId, Replica, ShardId } from './types.js';

export const REPLICATION_FACTOR_DEFAULT = 3;
/** Raft groups above 7 voters only slow commits down; etcd recommends at most 7 members. */
export const REPLICATION_FACTOR_MAX = 7;

/** What a state is made of (e.g. decoded from a snapshot). */
export type MetaStateFields = Pick<
  MetaState,
  'nodes' | 'shardMap' | 'pins' | 'compactionRevision' | 'oracleMark' | 'replicationFactor' | 'version'
>;

export type MetaResult =
  /** addNode, updateNode, removeNode: the node as stored now. */
  | { readonly type: 'node'; readonly node: MetaNode }
  | { readonly type: 'split'; readonly left: ShardDescriptor; readonly right: ShardDescriptor }
  | { readonly type: 'merge'; readonly merged: ShardDescriptor; readonly retired: ShardId }
  /** changeReplicas, setLeaderHint: the shard as stored now. */
  | { readonly type: 'shard'; readonly shard: ShardDescriptor }
  /** pinShard, unpinShard (no nodes). */
  | { readonly type: 'pin'; readonly shardId: ShardId; readonly nodes: readonly NodeId[] }
  | { readonly type: 'oracleMark'; readonly mark: number }
  | { readonly type: 'compactionRevision'; readonly revision: number }
  | { readonly type: 'replicationFactor'; readonly replicationFactor: number };

export type MetaOutcome =
  | { readonly ok: true; readonly result: MetaResult }
  | { readonly ok: false; readonly refusal: ShardError };

export interface MetaApplied {
  readonly state: MetaState;
  readonly outcome: MetaOutcome;
}

/** The moves from the current placement to the target, and the target they lead to. */
export interface MetaPlan {
  readonly moves: readonly Move[];
  readonly placement: PlacementResult;
}

export interface BootstrapRequest {
  /** The founding nodes; every one of them gets a voter of the first shard. */
  readonly nodes: readonly NodeAttributes[];
  readonly replicationFactor?: number;
}

export class MetaState {
  /** Every node ever added, removed ones included (their ids stay taken), by id. */
  readonly nodes: readonly MetaNode[];
  readonly shardMap: ShardMap;
  /** Scheduler overrides, by shard id: these shards get these nodes first. */
  readonly pins: ReadonlyMap<ShardId, readonly NodeId[]>;
  /** The cluster's compaction revision; only increases. */
  readonly compactionRevision: number;
  /** The timestamp oracle's persisted high-water mark; only increases. */
  readonly oracleMark: number;
  readonly replicationFactor: number;
  /** The number of commands applied, refusals excluded: replicas at one version hold one state. */
  readonly version: number;
  private readonly byId: ReadonlyMap<NodeId, MetaNode>;

  private constructor(fields: MetaStateFields) {
    this.nodes = [...fields.nodes].sort((a, b) => a.id - b.id);
    this.byId = new Map(this.nodes.map((node) => [node.id, node]));
    this.shardMap = fields.shardMap;
    this.pins = new Map([...fields.pins].sort(([a], [b]) => a - b));
    this.compactionRevision = fields.compactionRevision;
    this.oracleMark = fields.oracleMark;
    this.replicationFactor = fields.replicationFactor;
    this.version = fields.version;
    checkInvariants(this);
  }

  /**
   * A state from stored fields (e.g. a decoded snapshot). Throws MetaStateInvariantError or
   * ShardMapInvariantError if they break the rules every applied state keeps.
   */
  static fromFields(fields: MetaStateFields): MetaState {
    return new MetaState(fields);
  }

  /**
   * A new cluster: the founding nodes, up, and one shard (id 1) over the whole keyspace with a
   * voter on each of them, as today's single group runs on every member. `plan()` then trims it
   * to the replication factor. Throws on an invalid founding set (this is not a replicated apply).
   */
  static bootstrap(request: BootstrapRequest): MetaState {
    if (request.nodes.length === 0) throw new NodeInvalidError('a cluster needs at least one founding node');
    const replicationFactor = request.replicationFactor ?? REPLICATION_FACTOR_DEFAULT;
    checkReplicationFactor(replicationFactor);
    const nodes = request.nodes.map((node) => {
      checkNodeAttributes(node);
      return { ...copyAttributes(node), state: 'up' as const };
    });
    const ids = new Set(nodes.map((node) => node.id));
    if (ids.size !== nodes.length) throw new NodeInvalidError('a founding node id is listed twice');
    const voters = [...ids].sort((a, b) => a - b).map((node): Replica => ({ node, role: 'voter' }));
    return new MetaState({
      nodes,
      shardMap: ShardMap.initial(voters),
      pins: new Map(),
      compactionRevision: 0,
      oracleMark: 0,
      replicationFactor,
      version: 0,
    });
  }

  node(id: NodeId): MetaNode | undefined {
    return this.byId.get(id);
  }

  /** Applies a log entry's payload (an encoded MetaCommand). Never throws on a bad payload. */
  applyEntry(payload: Uint8Array): MetaApplied {
    let command: MetaCommand;
    try {
      command = decodeMetaCommand(payload);
    } catch (error) {
      return this.refuse(error);
    }
    return this.apply(command);
  }

  /** Applies a command: the next state and the result, or this state and a refusal. */
  apply(command: MetaCommand): MetaApplied {
    const handler = HANDLERS[command.type] as Handler<MetaCommandType>;
    let change: Change;
    try {
      change = handler(this, command);
    } catch (error) {
      return this.refuse(error);
    }
    const state = new MetaState({ ...this, ...change.fields, version: this.version + 1 });
    return { state, outcome: { ok: true, result: change.result } };
  }

  /**
   * Where every shard's replicas should be: `placeReplicas` over the up nodes (draining and
   * removed nodes get none) with the pins. A pin keeps only its nodes that are up, on distinct
   * hosts (a host label may have changed since the pin was set).
   */
  targetPlacement(loadFactor?: number): PlacementResult {
    const up = this.nodes.filter((node) => node.state === 'up');
    return placeReplicas({
      nodes: up.map(placementNode),
      shards: this.shardMap.shards.map((shard) => shard.id),
      replicationFactor: this.replicationFactor,
      loadFactor,
      pinned: this.usablePins(),
    });
  }

  /**
   * The moves from the replicas the shards have to `targetPlacement()`, in the order to run them
   * (`planRebalance`). With fewer up hosts than the replication factor each shard aims for one
   * replica per host; with no up node there is nothing to move to and the plan is empty.
   */
  plan(loadFactor?: number): MetaPlan {
    const placement = this.targetPlacement(loadFactor);
    const hosts = new Set(this.nodes.filter((node) => node.state === 'up').map(hostOf)).size;
    const replicationFactor = Math.min(this.replicationFactor, hosts);
    if (replicationFactor === 0) return { moves: [], placement };
    const current = new Map<ShardId, CurrentReplicas>(
      this.shardMap.shards.map((shard) => [shard.id, currentReplicas(shard)]),
    );
    const moves = planRebalance({ current, target: placement.replicas, replicationFactor });
    return { moves, placement };
  }

  private usablePins(): Map<ShardId, NodeId[]> {
    const usable = new Map<ShardId, NodeId[]>();
    for (const [shardId, nodes] of this.pins) {
      const hosts = new Set<string>();
      const kept: NodeId[] = [];
      for (const id of nodes) {
        const node = this.byId.get(id)!;
        if (node.state !== 'up' || hosts.has(hostOf(node))) continue;
        hosts.add(hostOf(node));
        kept.push(id);
      }
      if (kept.length > 0) usable.set(shardId, kept);
    }
    return usable;
  }

  /** A refusal for a ShardError a command raised; anything else (invariants included) is a bug and propagates. */
  private refuse(error: unknown): MetaApplied {
    const refusable =
      error instanceof ShardError &&
      !(error instanceof MetaStateInvariantError) &&
      !(error instanceof ShardMapInvariantError);
    if (!refusable) throw error;
    return { state: this, outcome: { ok: false, refusal: error } };
  }
}

interface Change {
  readonly fields: Partial<MetaStateFields>;
  readonly result: MetaResult;
}

type Handler<K extends MetaCommandType> = (
  state: MetaState,
  command: Extract<MetaCommand, { type: K }>,
) => Change;

/** Each command's rule: the change it makes, or a thrown ShardError that `apply` turns into a refusal. */
const HANDLERS: { readonly [K in MetaCommandType]: Handler<K> } = {
  addNode: (state, { node }) => {
    checkNodeAttributes(node);
    if (state.node(node.id) !== undefined) throw new NodeExistsError(node.id);
    const added: MetaNode = { ...copyAttributes(node), state: 'up' };
    return { fields: { nodes: [...state.nodes, added] }, result: { type: 'node', node: added } };
  },
  updateNode: (state, { node, state: nodeState }) => {
    const existing = requireNode(state, node.id);
    if (existing.state === 'removed')
      throw new NodeStateError(`node ${node.id} was removed and cannot change`);
    checkNodeAttributes(node);
    const updated: MetaNode = { ...copyAttributes(node), state: nodeState };
    return { fields: { nodes: replaceNode(state, updated) }, result: { type: 'node', node: updated } };
  },
  removeNode: (state, { nodeId }) => {
    const existing = requireNode(state, nodeId);
    if (existing.state === 'removed') throw new NodeStateError(`node ${nodeId} is already removed`);
    const holding = state.shardMap.shards.filter((shard) => shard.replicas.some((r) => r.node === nodeId));
    if (holding.length > 0) throw new NodeInUseError(nodeId, ids(holding), 'replicas');
    const pinning = [...state.pins].filter(([, nodes]) => nodes.includes(nodeId)).map(([shard]) => shard);
    if (pinning.length > 0) throw new NodeInUseError(nodeId, pinning, 'pins');
    const removed: MetaNode = { ...existing, state: 'removed' };
    return { fields: { nodes: replaceNode(state, removed) }, result: { type: 'node', node: removed } };
  },
  splitShard: (state, { shardId, expectedEpoch, splitKey }) => {
    const { map, left, right } = state.shardMap.split(shardId, splitKey, expectedEpoch);
    const pins = new Map(state.pins);
    const pin = pins.get(shardId);
    // Both halves hold the range's data on the same replicas, so both keep the pin.
    if (pin !== undefined) pins.set(right.id, pin);
    return { fields: { shardMap: map, pins }, result: { type: 'split', left, right } };
  },
  mergeShards: (state, { leftId, leftEpoch, rightId, rightEpoch }) => {
    for (const [id, epoch] of [
      [leftId, leftEpoch],
      [rightId, rightEpoch],
    ] as const) {
      const shard = state.shardMap.require(id);
      if (shard.epoch !== epoch) {
        throw new StaleEpochError(`shard ${id} is at epoch ${shard.epoch}, not ${epoch}: re-plan the merge`, [
          { id, epoch: shard.epoch },
        ]);
      }
    }
    const { map, merged } = state.shardMap.merge(leftId, rightId);
    // The right id is retired with its pin; the merged shard keeps the left one's.
    const pins = new Map(state.pins);
    pins.delete(rightId);
    return { fields: { shardMap: map, pins }, result: { type: 'merge', merged, retired: rightId } };
  },
  changeReplicas: (state, command) => {
    const shard = state.shardMap.require(command.shardId);
    const replicas = steppedReplicas(state, shard, command);
    const shardMap = state.shardMap.withReplicas(shard.id, replicas, command.expectedConfEpoch);
    return { fields: { shardMap }, result: { type: 'shard', shard: shardMap.require(shard.id) } };
  },
  setLeaderHint: (state, { shardId, leader }) => {
    const shard = state.shardMap.require(shardId);
    if (leader !== undefined && !shard.replicas.some((r) => r.node === leader && r.role === 'voter')) {
      throw new LeaderHintInvalidError(
        `node ${leader} is not a voter of shard ${shardId} and cannot lead it`,
      );
    }
    const shardMap = state.shardMap.withLeaderHint(shardId, leader);
    return { fields: { shardMap }, result: { type: 'shard', shard: shardMap.require(shardId) } };
  },
  pinShard: (state, { shardId, nodes }) => {
    state.shardMap.require(shardId);
    checkPin(state, shardId, nodes);
    const pins = new Map(state.pins).set(shardId, [...nodes]);
    return { fields: { pins }, result: { type: 'pin', shardId, nodes: [...nodes] } };
  },
  unpinShard: (state, { shardId }) => {
    state.shardMap.require(shardId);
    if (!state.pins.has(shardId)) throw new PinInvalidError(`shard ${shardId} is not pinned`);
    const pins = new Map(state.pins);
    pins.delete(shardId);
    return { fields: { pins }, result: { type: 'pin', shardId, nodes: [] } };
  },
  raiseOracleMark: (state, { mark }) => {
    if (!Number.isSafeInteger(mark) || mark < 0 || mark > REVISION_MAX) {
      throw new OracleRequestInvalidError(`oracle mark ${mark} must be an integer in [0, ${REVISION_MAX}]`);
    }
    const raised = applyHighWaterRaise(state.oracleMark, mark);
    return { fields: { oracleMark: raised }, result: { type: 'oracleMark', mark: raised } };
  },
  setCompactionRevision: (state, { revision }) => {
    if (!Number.isSafeInteger(revision) || revision <= state.compactionRevision) {
      throw new CompactionRevisionError(revision, state.compactionRevision);
    }
    return {
      fields: { compactionRevision: revision },
      result: { type: 'compactionRevision', revision },
    };
  },
  setReplicationFactor: (state, { replicationFactor }) => {
    checkReplicationFactor(replicationFactor);
    const widest = [...state.pins].find(([, nodes]) => nodes.length > replicationFactor);
    if (widest !== undefined) {
      throw new ReplicationFactorInvalidError(
        `shard ${widest[0]} is pinned to ${widest[1].length} nodes, more than ${replicationFactor}: unpin it first`,
      );
    }
    return {
      fields: { replicationFactor },
      result: { type: 'replicationFactor', replicationFactor },
    };
  },
};

/** The shard's replicas after one membership step; the conf epoch is checked first. */
function steppedReplicas(
  state: MetaState,
  shard: ShardDescriptor,
  { expectedConfEpoch, step, nodeId }: Extract<MetaCommand, { type: 'changeReplicas' }>,
): Replica[] {
  if (shard.confEpoch !== expectedConfEpoch) {
    throw new ConfEpochMismatchError(shard.id, expectedConfEpoch, shard.confEpoch);
  }
  const replica = shard.replicas.find((r) => r.node === nodeId);
  switch (step) {
    case 'add-learner':
      requireUpNode(state, nodeId, `receive a replica of shard ${shard.id}`);
      if (replica !== undefined) {
        throw new ReplicaChangeInvalidError(
          `node ${nodeId} already holds a ${replica.role} of shard ${shard.id}`,
        );
      }
      return [...shard.replicas, { node: nodeId, role: 'learner' }];
    case 'promote':
      if (replica?.role !== 'learner') {
        throw new ReplicaChangeInvalidError(
          `node ${nodeId} is not a learner of shard ${shard.id}: add it first`,
        );
      }
      requireUpNode(state, nodeId, `become a voter of shard ${shard.id}`);
      return shard.replicas.map((r) => (r.node === nodeId ? { node: nodeId, role: 'voter' } : r));
    case 'remove': {
      if (replica === undefined) {
        throw new ReplicaChangeInvalidError(`node ${nodeId} holds no replica of shard ${shard.id}`);
      }
      const voters = shard.replicas.filter((r) => r.role === 'voter').length;
      if (replica.role === 'voter' && voters === 1) {
        throw new ReplicaChangeInvalidError(`node ${nodeId} is the last voter of shard ${shard.id}`);
      }
      return shard.replicas.filter((r) => r.node !== nodeId);
    }
  }
}

function checkPin(state: MetaState, shardId: ShardId, nodes: readonly NodeId[]): void {
  if (nodes.length === 0) throw new PinInvalidError(`a pin of shard ${shardId} needs a node: unpin instead`);
  if (nodes.length > state.replicationFactor) {
    throw new PinInvalidError(
      `shard ${shardId} pinned to ${nodes.length} nodes, more than the replication factor ${state.replicationFactor}`,
    );
  }
  const hosts = new Set<string>();
  for (const id of nodes) {
    const node = requireUpNode(state, id, `be pinned by shard ${shardId}`);
    if (hosts.has(hostOf(node))) {
      throw new PinInvalidError(`shard ${shardId} pinned to two nodes on one host (node ${id})`);
    }
    hosts.add(hostOf(node));
  }
}

function requireNode(state: MetaState, id: NodeId): MetaNode {
  const node = state.node(id);
  if (node === undefined) throw new NodeNotFoundError(id);
  return node;
}

function requireUpNode(state: MetaState, id: NodeId, purpose: string): MetaNode {
  const node = requireNode(state, id);
  if (node.state !== 'up') throw new NodeStateError(`node ${id} is ${node.state} and cannot ${purpose}`);
  return node;
}

function checkNodeAttributes(node: NodeAttributes): void {
  if (!Number.isSafeInteger(node.id) || node.id < 1) {
    throw new NodeInvalidError(`node id ${node.id} must be a positive integer`);
  }
  if (node.peerUrls.length === 0) throw new NodeInvalidError(`node ${node.id} needs a peer URL`);
}

function isReplicationFactor(replicationFactor: number): boolean {
  return (
    Number.isSafeInteger(replicationFactor) &&
    replicationFactor >= 1 &&
    replicationFactor <= REPLICATION_FACTOR_MAX
  );
}

function checkReplicationFactor(replicationFactor: number): void {
  if (!isReplicationFactor(replicationFactor)) {
    throw new ReplicationFactorInvalidError(
      `replication factor ${replicationFactor} must be an integer from 1 to ${REPLICATION_FACTOR_MAX}`,
    );
  }
}

/** Only the attributes, copied, so a state never shares arrays with a caller's command. */
function copyAttributes(node: NodeAttributes): NodeAttributes {
  return {
    id: node.id,
    peerUrls: [...node.peerUrls],
    clientUrls: [...node.clientUrls],
    host: node.host,
    zone: node.zone,
  };
}

function replaceNode(state: MetaState, node: MetaNode): MetaNode[] {
  return state.nodes.map((n) => (n.id === node.id ? node : n));
}

function placementNode(node: MetaNode): PlacementNode {
  return { id: node.id, host: node.host, zone: node.zone };
}

function currentReplicas(shard: ShardDescriptor): CurrentReplicas {
  return {
    voters: shard.replicas.filter((r) => r.role === 'voter').map((r) => r.node),
    learners: shard.replicas.filter((r) => r.role === 'learner').map((r) => r.node),
    leader: shard.leaderHint,
  };
}

const ids = (shards: readonly ShardDescriptor[]): ShardId[] => shards.map((shard) => shard.id);

/** The rules every state keeps (the shard map checks its own when it is built). */
function checkInvariants(state: MetaState): void {
  const fail = (message: string): never => {
    throw new MetaStateInvariantError(message);
  };
  let previous = 0;
  for (const node of state.nodes) {
    if (!Number.isSafeInteger(node.id) || node.id <= previous) fail(`node ids must be distinct and positive`);
    if (node.peerUrls.length === 0) fail(`node ${node.id} has no peer URL`);
    previous = node.id;
  }
  const live = (id: NodeId) => {
    const node = state.node(id);
    return node !== undefined && node.state !== 'removed';
  };
  for (const shard of state.shardMap.shards) {
    if (!shard.replicas.some((r) => r.role === 'voter')) fail(`shard ${shard.id} has no voter`);
    const stray = shard.replicas.find((r) => !live(r.node));
    if (stray !== undefined)
      fail(`shard ${shard.id} has a replica on node ${stray.node}, not in the cluster`);
  }
  for (const [shardId, nodes] of state.pins) {
    if (state.shardMap.get(shardId) === undefined) fail(`shard ${shardId} is pinned but not in the map`);
    if (
      nodes.length === 0 ||
      nodes.length > state.replicationFactor ||
      new Set(nodes).size !== nodes.length
    ) {
      fail(`shard ${shardId}'s pin must list 1 to ${state.replicationFactor} distinct nodes`);
    }
    if (!nodes.every(live)) fail(`shard ${shardId} is pinned to a node not in the cluster`);
  }
  for (const [name, value] of [
    ['compaction revision', state.compactionRevision],
    ['oracle mark', state.oracleMark],
    ['version', state.version],
  ] as const) {
    if (!Number.isSafeInteger(value) || value < 0) fail(`${name} ${value} is not a non-negative integer`);
  }
  if (!isReplicationFactor(state.replicationFactor)) {
    fail(`replication factor ${state.replicationFactor} is out of range`);
  }
}
