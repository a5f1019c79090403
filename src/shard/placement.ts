// Where each shard's replicas live: rendezvous (highest-random-weight) hashing with bounded load.
//
// Every (shard, node) pair gets a score from MurmurHash3; a shard prefers the nodes with the
// highest scores. Adding a node changes a shard's replica set only where the new node scores in
// the shard's top choices (about replicationFactor/(N+1) of the shards, one replica each: ~1/(N+1)
// of all replicas); removing one moves only the replicas it held (~1/N). No virtual nodes are
// needed: every node competes for every shard on its own score.
//
// Bounded load (Mirrokni, Thorup and Zadimoghaddam, "Consistent Hashing with Bounded Loads", as
// HAProxy and Envoy use it): no node takes more than loadMax = ⌈loadFactor × average⌉ replicas
// (loadFactor 1.25 by default); a shard whose preferred node is full takes its next choice. Two
// replicas of one shard never share a host label, and a shard's replicas spread over as many zone
// labels as it can get. The result is a pure function of its input (same input, same placement),
// so the metadata group can recompute it anywhere; the scheduler overrides it with pins.

import { PlacementInvalidError } from './errors.js';
import { murmur3_32 } from './hash.js';
import type { NodeId, ShardId } from './types.js';

export interface PlacementNode {
  readonly id: NodeId;
  /** Failure domain of one machine; defaults to the node's own id (each node its own host). */
  readonly host?: string;
  /** Wider failure domain (rack, zone); defaults to one zone shared by every node. */
  readonly zone?: string;
}

export interface PlacementRequest {
  readonly nodes: readonly PlacementNode[];
  readonly shards: readonly ShardId[];
  /** Replicas per shard (3 by default in a cluster). */
  readonly replicationFactor: number;
  /** No node above ⌈loadFactor × average⌉ replicas; at least 1, 1.25 by default. */
  readonly loadFactor?: number;
  /**
   * Scheduler overrides: these shards get these nodes first (then hashing fills up to the
   * replication factor). Pins always hold, even above the load bound; they must name known nodes
   * on distinct hosts, at most replicationFactor of them.
   */
  readonly pinned?: ReadonlyMap<ShardId, readonly NodeId[]>;
}

export interface PlacementResult {
  /** Each shard's nodes, pinned ones first, then in the order they were chosen (best score first). */
  readonly replicas: ReadonlyMap<ShardId, readonly NodeId[]>;
  /** Replicas per node. */
  readonly loads: ReadonlyMap<NodeId, number>;
  /** ⌈loadFactor × replicas placed / nodes⌉. */
  readonly loadMax: number;
  /** Shards that got a node above loadMax because no node on a free host had room (or a pin did it). */
  readonly overLoaded: readonly ShardId[];
  /** Shards with fewer than replicationFactor replicas because there are fewer distinct hosts. */
  readonly underReplicated: readonly ShardId[];
}

export const LOAD_FACTOR_DEFAULT = 1.25;

interface NodeInfo {
  readonly id: NodeId;
  readonly host: string;
  readonly zone: string;
}

/** The rendezvous score of a node for a shard (higher wins). */
export function rendezvousScore(shard: ShardId, node: NodeId): number {
  return murmur3_32(utf8.encode(`${shard}/${node}`));
}

const utf8 = new TextEncoder();

/** Places every shard's replicas; see the file comment for the rules. */
export function placeReplicas(request: PlacementRequest): PlacementResult {
  const nodes = checkNodes(request.nodes);
  const shards = checkShards(request.shards);
  const replicationFactor = request.replicationFactor;
  if (!Number.isSafeInteger(replicationFactor) || replicationFactor < 1) {
    throw new PlacementInvalidError(`replication factor ${replicationFactor} must be a positive integer`);
  }
  const loadFactor = request.loadFactor ?? LOAD_FACTOR_DEFAULT;
  if (!(loadFactor >= 1) || !Number.isFinite(loadFactor)) {
    throw new PlacementInvalidError(`load factor ${loadFactor} must be a finite number ≥ 1`);
  }
  const byId = new Map(nodes.map((node) => [node.id, node]));
  const pinned = checkPins(request.pinned ?? new Map(), byId, new Set(shards), replicationFactor);
  const hostCount = new Set(nodes.map((n) => n.host)).size;
  const wanted = Math.min(replicationFactor, hostCount);
  const replicaTotal = nodes.length === 0 ? 0 : shards.length * wanted;
  // The epsilon keeps 1.25 × 8 / 2 = 5 at 5 despite binary fractions.
  const loadMax = nodes.length === 0 ? 0 : Math.ceil((loadFactor * replicaTotal) / nodes.length - 1e-9);

  const state = new PlacementState(byId, loadMax);
  for (const shard of shards) {
    for (const node of pinned.get(shard) ?? []) state.add(shard, byId.get(node)!, true);
  }
  for (const shard of shards) {
    const ranked = rank(shard, nodes);
    while (state.replicasOf(shard).length < wanted) placeOne(state, shard, ranked);
  }
  const underReplicated = wanted < replicationFactor ? shards : [];
  return {
    replicas: new Map(shards.map((shard) => [shard, state.replicasOf(shard).map((n) => n.id)])),
    loads: new Map(nodes.map((node) => [node.id, state.load(node.id)])),
    loadMax,
    overLoaded: shards.filter((shard) => state.overLoaded.has(shard)),
    underReplicated,
  };
}

/** Nodes by descending score for the shard, ties by node id. */
function rank(shard: ShardId, nodes: readonly NodeInfo[]): NodeInfo[] {
  const scored = nodes.map((node) => ({ node, score: rendezvousScore(shard, node.id) }));
  scored.sort((a, b) => b.score - a.score || a.node.id - b.node.id);
  return scored.map((s) => s.node);
}

/**
 * Adds one replica of `shard`: the best-ranked node with room on an unused host, preferring an
 * unused zone; else makes room by moving another shard's replica off a full node (one step of an
 * augmenting path, which always succeeds when every node is its own host); else the least-loaded
 * node on an unused host, above the bound (reported in overLoaded).
 */
function placeOne(state: PlacementState, shard: ShardId, ranked: readonly NodeInfo[]): void {
  const free = ranked.filter((node) => state.canHost(shard, node));
  const roomy = free.filter((node) => state.load(node.id) < state.loadMax);
  const chosen = roomy.find((node) => !state.usesZone(shard, node.zone)) ?? roomy[0];
  if (chosen !== undefined) {
    state.add(shard, chosen, false);
    return;
  }
  for (const full of free) {
    if (state.moveOneAway(full)) {
      state.add(shard, full, false);
      return;
    }
  }
  const least = free.reduce<NodeInfo | undefined>(
    (best, node) => (best === undefined || state.load(node.id) < state.load(best.id) ? node : best),
    undefined,
  );
  if (least === undefined)
    throw new PlacementInvalidError(`no host left for shard ${shard}: a bug in the host count`);
  state.add(shard, least, false);
  state.overLoaded.add(shard);
}

class PlacementState {
  private readonly loads = new Map<NodeId, number>();
  private readonly placed = new Map<ShardId, NodeInfo[]>();
  /** Shards on each node that hashing put there (pins never move). */
  private readonly movable = new Map<NodeId, ShardId[]>();
  readonly overLoaded = new Set<ShardId>();

  constructor(
    private readonly nodes: ReadonlyMap<NodeId, NodeInfo>,
    readonly loadMax: number,
  ) {}

  load(node: NodeId): number {
    return this.loads.get(node) ?? 0;
  }

  replicasOf(shard: ShardId): readonly NodeInfo[] {
    return this.placed.get(shard) ?? [];
  }

  canHost(shard: ShardId, node: NodeInfo): boolean {
    return !this.replicasOf(shard).some((r) => r.host === node.host);
  }

  usesZone(shard: ShardId, zone: string): boolean {
    return this.replicasOf(shard).some((r) => r.zone === zone);
  }

  add(shard: ShardId, node: NodeInfo, pinned: boolean): void {
    const replicas = this.placed.get(shard) ?? [];
    replicas.push(node);
    this.placed.set(shard, replicas);
    this.loads.set(node.id, this.load(node.id) + 1);
    if (!pinned) this.movable.set(node.id, [...(this.movable.get(node.id) ?? []), shard]);
    if (this.load(node.id) > this.loadMax) this.overLoaded.add(shard);
  }

  /**
   * Frees a slot on `full` by moving one of its hashed replicas to a node with room that the
   * replica's shard may use (distinct host), keeping the shard's order of replicas. The shard
   * moved and the node it moves to are the first that fit, in a deterministic order (the moved
   * shard's own rendezvous ranking). Zones are not considered here: a repaired shard may lose
   * zone spread it had.
   */
  moveOneAway(full: NodeInfo): boolean {
    for (const shard of this.movable.get(full.id) ?? []) {
      for (const target of rank(shard, [...this.nodes.values()])) {
        if (target.id === full.id || this.load(target.id) >= this.loadMax) continue;
        const others = this.replicasOf(shard).filter((r) => r.id !== full.id);
        if (others.some((r) => r.host === target.host)) continue;
        const replicas = this.replicasOf(shard).map((r) => (r.id === full.id ? target : r));
        this.placed.set(shard, replicas);
        this.loads.set(full.id, this.load(full.id) - 1);
        this.loads.set(target.id, this.load(target.id) + 1);
        this.movable.set(
          full.id,
          (this.movable.get(full.id) ?? []).filter((s) => s !== shard),
        );
        this.movable.set(target.id, [...(this.movable.get(target.id) ?? []), shard]);
        return true;
      }
    }
    return false;
  }
}

/**
 * The host (failure domain of one machine) placement puts at most one replica of a shard on: the
 * node's host label, or the node itself when it has none. Prefixed so a host label can never
 * collide with a default (node-id) host.
 */
export function hostOf(node: PlacementNode): string {
  return node.host === undefined ? `node:${node.id}` : `host:${node.host}`;
}

function checkNodes(nodes: readonly PlacementNode[]): NodeInfo[] {
  const seen = new Set<NodeId>();
  const infos: NodeInfo[] = [];
  for (const node of nodes) {
    if (!Number.isSafeInteger(node.id))
      throw new PlacementInvalidError(`node id ${node.id} is not an integer`);
    if (seen.has(node.id)) throw new PlacementInvalidError(`node ${node.id} is listed twice`);
    seen.add(node.id);
    infos.push({ id: node.id, host: hostOf(node), zone: node.zone ?? '' });
  }
  return infos.sort((a, b) => a.id - b.id);
}

function checkShards(shards: readonly ShardId[]): ShardId[] {
  const sorted = [...shards].sort((a, b) => a - b);
  for (let i = 0; i < sorted.length; i++) {
    if (!Number.isSafeInteger(sorted[i]))
      throw new PlacementInvalidError(`shard id ${sorted[i]} is not an integer`);
    if (i > 0 && sorted[i] === sorted[i - 1])
      throw new PlacementInvalidError(`shard ${sorted[i]} is listed twice`);
  }
  return sorted;
}

function checkPins(
  pins: ReadonlyMap<ShardId, readonly NodeId[]>,
  nodes: ReadonlyMap<NodeId, NodeInfo>,
  shards: ReadonlySet<ShardId>,
  replicationFactor: number,
): ReadonlyMap<ShardId, readonly NodeId[]> {
  for (const [shard, pinned] of pins) {
    if (!shards.has(shard)) throw new PlacementInvalidError(`shard ${shard} is pinned but not placed`);
    if (pinned.length > replicationFactor) {
      throw new PlacementInvalidError(
        `shard ${shard} is pinned to ${pinned.length} nodes, more than the replication factor ${replicationFactor}`,
      );
    }
    const hosts = new Set<string>();
    for (const id of pinned) {
      const node = nodes.get(id);
      if (node === undefined)
        throw new PlacementInvalidError(`shard ${shard} is pinned to unknown node ${id}`);
      if (hosts.has(node.host)) {
        throw new PlacementInvalidError(`shard ${shard} is pinned to two nodes on one host (node ${id})`);
      }
      hosts.add(node.host);
    }
  }
  return pins;
}
