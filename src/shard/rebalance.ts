// From the placement the cluster has to the placement it should have: the ordered list of replica
// moves, each spelled as the membership steps etcd (and our Raft) takes to move a voter safely:
// add the new node as a learner, let it catch up from a snapshot, promote it, move leadership away
// from the node that leaves if it leads, and only then remove that node. A shard therefore never
// has fewer voters than its replication factor during a move (it briefly has one more), and a
// learner that has not caught up never counts towards a quorum.
//
// Moves are ordered so that load moves evenly: among the next move of every shard, the one whose
// destination ends up least above that node's own bound (the larger of its replica count before
// and after the whole plan) goes first. A node then holds at most one replica above that bound at
// any point of the plan (tested as a property); within a shard, additions come before the moves
// that pair an addition with a removal, and removals of surplus voters come last.

import { RebalanceInvalidError } from './errors.js';
import type { NodeId, ShardId } from './types.js';

/** A shard's replicas as they are now (from the shard map). */
export interface CurrentReplicas {
  readonly voters: readonly NodeId[];
  /** Learners left by an unfinished move; promoted if the target wants them, removed if not. */
  readonly learners?: readonly NodeId[];
  /** The leader, if known; without it every removal is preceded by a conditional transfer. */
  readonly leader?: NodeId;
}

export type MoveStep =
  | { readonly kind: 'add-learner'; readonly node: NodeId }
  /** Wait until the learner has installed a snapshot and caught up with the leader's log. */
  | { readonly kind: 'snapshot'; readonly node: NodeId }
  | { readonly kind: 'promote'; readonly node: NodeId }
  /** Move leadership from `from` to `to`; the executor skips it if `from` does not lead by then. */
  | { readonly kind: 'transfer-leader'; readonly from: NodeId; readonly to: NodeId }
  | { readonly kind: 'remove'; readonly node: NodeId };

/** One replica moved (`from` → `to`), added (no `from`) or removed (no `to`). */
export interface Move {
  readonly shard: ShardId;
  readonly from: NodeId | undefined;
  readonly to: NodeId | undefined;
  readonly steps: readonly MoveStep[];
}

export interface RebalanceRequest {
  readonly current: ReadonlyMap<ShardId, CurrentReplicas>;
  /** The nodes each shard should end on, preferred leader first (e.g. PlacementResult.replicas). */
  readonly target: ReadonlyMap<ShardId, readonly NodeId[]>;
  readonly replicationFactor: number;
}

/** The moves that take `current` to `target`, in the order to run them. */
export function planRebalance(request: RebalanceRequest): Move[] {
  checkRequest(request);
  const queues = new Map<ShardId, Move[]>();
  const shards = [...request.current.keys()].sort((a, b) => a - b);
  for (const shard of shards) {
    const moves = planShard(shard, request.current.get(shard)!, request.target.get(shard)!);
    if (moves.length > 0) queues.set(shard, moves);
  }
  return orderByLoad(request, shards, queues);
}

/** A shard's moves in the order they must run: additions, paired moves, then surplus removals. */
function planShard(shard: ShardId, current: CurrentReplicas, target: readonly NodeId[]): Move[] {
  const voters = new Set(current.voters);
  const learners = new Set(current.learners ?? []);
  const wanted = new Set(target);
  let leader = current.leader;
  const moves: Move[] = [];
  // Learners the target does not want: removing a learner never touches the quorum.
  for (const node of [...learners].sort((a, b) => a - b)) {
    if (!wanted.has(node)) {
      moves.push({ shard, from: node, to: undefined, steps: [{ kind: 'remove', node }] });
      learners.delete(node);
    }
  }
  const adds = target.filter((node) => !voters.has(node));
  // Leader last, so the plan moves leadership at most once and as late as it can.
  const removes = [...voters]
    .filter((node) => !wanted.has(node))
    .sort((a, b) => (a === leader ? 1 : 0) - (b === leader ? 1 : 0) || a - b);
  const pairs = Math.min(adds.length, removes.length);
  const addSteps = (node: NodeId): MoveStep[] => {
    const steps: MoveStep[] = learners.has(node) ? [] : [{ kind: 'add-learner', node }];
    learners.delete(node);
    voters.add(node);
    steps.push({ kind: 'snapshot', node }, { kind: 'promote', node });
    return steps;
  };
  const removeSteps = (node: NodeId, arrived: NodeId | undefined): MoveStep[] => {
    const steps: MoveStep[] = [];
    voters.delete(node);
    if (leader === undefined || leader === node) {
      const successor = chooseSuccessor(target, voters, arrived);
      steps.push({ kind: 'transfer-leader', from: node, to: successor });
      // A conditional transfer under an unknown leader may be skipped: the leader stays unknown.
      if (leader === node) leader = successor;
    }
    steps.push({ kind: 'remove', node });
    return steps;
  };
  for (const node of adds.slice(pairs))
    moves.push({ shard, from: undefined, to: node, steps: addSteps(node) });
  for (let i = 0; i < pairs; i++) {
    const to = adds[i]!;
    const from = removes[i]!;
    moves.push({ shard, from, to, steps: [...addSteps(to), ...removeSteps(from, to)] });
  }
  for (const node of removes.slice(pairs)) {
    moves.push({ shard, from: node, to: undefined, steps: removeSteps(node, undefined) });
  }
  return moves;
}

/** The new leader when `leaving` goes: the target's preferred voter, else the node just promoted. */
function chooseSuccessor(
  target: readonly NodeId[],
  voters: ReadonlySet<NodeId>,
  arrived: NodeId | undefined,
): NodeId {
  const preferred = target.find((node) => voters.has(node));
  const successor = preferred ?? arrived ?? [...voters].sort((a, b) => a - b)[0];
  if (successor === undefined)
    throw new RebalanceInvalidError('a shard would be left with no voter to lead it');
  return successor;
}

/**
 * Interleaves the shards' moves: each round takes, among the next move of every shard, the one
 * whose destination ends furthest below (or least above) its bound; moves that add no replica
 * anywhere (removals, promotions of learners already there) go first, as they only free room;
 * ties go to the lower shard id.
 */
function orderByLoad(
  request: RebalanceRequest,
  shards: readonly ShardId[],
  queues: Map<ShardId, Move[]>,
): Move[] {
  const load = new Map<NodeId, number>();
  const finalLoad = new Map<NodeId, number>();
  const bump = (map: Map<NodeId, number>, node: NodeId, by: number) =>
    map.set(node, (map.get(node) ?? 0) + by);
  for (const replicas of request.current.values()) {
    for (const node of [...replicas.voters, ...(replicas.learners ?? [])]) bump(load, node, 1);
  }
  for (const nodes of request.target.values()) for (const node of nodes) bump(finalLoad, node, 1);
  const bound = (node: NodeId) => Math.max(load.get(node) ?? 0, finalLoad.get(node) ?? 0);
  const bounds = new Map(
    [...new Set([...load.keys(), ...finalLoad.keys()])].map((node) => [node, bound(node)]),
  );
  const ordered: Move[] = [];
  for (;;) {
    let best: { move: Move; score: number } | undefined;
    for (const shard of shards) {
      const move = queues.get(shard)?.[0];
      if (move === undefined) continue;
      const score = !arrives(move)
        ? Number.NEGATIVE_INFINITY
        : (load.get(move.to!) ?? 0) + 1 - bounds.get(move.to!)!;
      if (best === undefined || score < best.score) best = { move, score };
    }
    if (best === undefined) return ordered;
    const { move } = best;
    queues.get(move.shard)!.shift();
    ordered.push(move);
    if (arrives(move)) bump(load, move.to!, 1);
    if (move.from !== undefined) bump(load, move.from, -1);
  }
}

/** Whether the move puts a new replica on its destination (not one promoting a learner already there). */
function arrives(move: Move): boolean {
  return move.to !== undefined && move.steps[0]?.kind === 'add-learner';
}

function checkRequest(request: RebalanceRequest): void {
  const rf = request.replicationFactor;
  if (!Number.isSafeInteger(rf) || rf < 1) {
    throw new RebalanceInvalidError(`replication factor ${rf} must be a positive integer`);
  }
  for (const shard of request.target.keys()) {
    if (!request.current.has(shard)) {
      throw new RebalanceInvalidError(
        `shard ${shard} has a target but no current replicas: create it, do not move it`,
      );
    }
  }
  for (const [shard, current] of request.current) {
    const target = request.target.get(shard);
    if (target === undefined) throw new RebalanceInvalidError(`shard ${shard} has no target placement`);
    if (new Set(target).size !== target.length) {
      throw new RebalanceInvalidError(`shard ${shard}'s target lists a node twice`);
    }
    if (target.length < rf) {
      throw new RebalanceInvalidError(
        `shard ${shard}'s target has ${target.length} nodes, fewer than the replication factor ${rf}`,
      );
    }
    const voters = new Set(current.voters);
    if (voters.size !== current.voters.length || voters.size === 0) {
      throw new RebalanceInvalidError(`shard ${shard} must have distinct voters, at least one`);
    }
    const learners = current.learners ?? [];
    if (new Set(learners).size !== learners.length || learners.some((node) => voters.has(node))) {
      throw new RebalanceInvalidError(`shard ${shard}'s learners must be distinct and not voters`);
    }
    if (current.leader !== undefined && !voters.has(current.leader)) {
      throw new RebalanceInvalidError(`shard ${shard}'s leader ${current.leader} is not one of its voters`);
    }
  }
}
