// Flexible quorums (Howard, Malkhi, Spiegelman, "Flexible Paxos", 2016): a phase-1 quorum (Q1,
// elections) and a phase-2 quorum (Q2, commits) need only intersect, |Q1| + |Q2| > N. With a
// configured phase-2 size K, Q2 = K and Q1 = max(majority, N - K + 1). Q1 never drops below a
// majority because ballots are plain numbers owned by whoever gathered a Q1 of promises for them
// (as Raft's terms are): two Q1s must intersect, or two nodes could lead one ballot.
// Kept apart from the protocol so the arithmetic is tested on its own (table-driven).

import type { NodeId } from '../raft/types.js';
import { QuorumConfigError } from './errors.js';

export interface QuorumSizes {
  /** Promises a ballot needs (phase 1). */
  phase1: number;
  /** Acceptances a slot needs to be chosen (phase 2). */
  phase2: number;
}

export function majority(voters: number): number {
  return (voters >> 1) + 1;
}

/**
 * Quorum sizes for `voters` acceptors with an optional fixed phase-2 size (undefined: majority).
 * Throws QuorumConfigError when no valid pair exists (K < 1 or K > voters).
 */
export function quorumSizes(voters: number, phase2Quorum: number | undefined): QuorumSizes {
  if (!Number.isSafeInteger(voters) || voters < 1) {
    throw new QuorumConfigError(`a configuration needs at least one voter, got ${voters}`);
  }
  if (phase2Quorum === undefined) {
    const m = majority(voters);
    return { phase1: m, phase2: m };
  }
  if (!Number.isSafeInteger(phase2Quorum) || phase2Quorum < 1) {
    throw new QuorumConfigError(`the phase-2 quorum must be a positive integer, got ${phase2Quorum}`);
  }
  if (phase2Quorum > voters) {
    throw new QuorumConfigError(
      `the phase-2 quorum ${phase2Quorum} is larger than the ${voters} voters: no write could ever commit`,
    );
  }
  const sizes = { phase1: Math.max(majority(voters), voters - phase2Quorum + 1), phase2: phase2Quorum };
  checkIntersection(voters, sizes);
  return sizes;
}

/** The two conditions Paxos safety rests on; a failure here is a bug in quorumSizes. */
export function checkIntersection(voters: number, sizes: QuorumSizes): void {
  if (sizes.phase1 + sizes.phase2 <= voters) {
    throw new QuorumConfigError(
      `phase-1 quorum ${sizes.phase1} and phase-2 quorum ${sizes.phase2} do not intersect among ${voters} voters`,
    );
  }
  if (2 * sizes.phase1 <= voters) {
    throw new QuorumConfigError(
      `two phase-1 quorums of ${sizes.phase1} need not intersect among ${voters} voters`,
    );
  }
  if (sizes.phase1 > voters || sizes.phase2 > voters) {
    throw new QuorumConfigError(`a quorum larger than the ${voters} voters can never form`);
  }
}

/** One configuration's voter sets; `outgoing` is empty unless in joint consensus. */
export interface VoterSets {
  incoming: ReadonlySet<NodeId>;
  outgoing: ReadonlySet<NodeId>;
}

export type Phase = 'phase1' | 'phase2';

/** Whether `has` covers a quorum of the given phase in every non-empty half of `voters`. */
export function isQuorum(
  voters: VoterSets,
  phase: Phase,
  phase2Quorum: number | undefined,
  has: (id: NodeId) => boolean,
): boolean {
  return (
    halfIsQuorum(voters.incoming, phase, phase2Quorum, has) &&
    halfIsQuorum(voters.outgoing, phase, phase2Quorum, has)
  );
}

function halfIsQuorum(
  half: ReadonlySet<NodeId>,
  phase: Phase,
  phase2Quorum: number | undefined,
  has: (id: NodeId) => boolean,
): boolean {
  if (half.size === 0) return true;
  const need = quorumSizes(half.size, phase2Quorum)[phase];
  let count = 0;
  for (const id of half) if (has(id)) count++;
  return count >= need;
}

/** Whether `rejected` already rules out a quorum of the given phase (an election is lost). */
export function isQuorumImpossible(
  voters: VoterSets,
  phase: Phase,
  phase2Quorum: number | undefined,
  rejected: (id: NodeId) => boolean,
): boolean {
  for (const half of [voters.incoming, voters.outgoing]) {
    if (half.size === 0) continue;
    const need = quorumSizes(half.size, phase2Quorum)[phase];
    let possible = 0;
    for (const id of half) if (!rejected(id)) possible++;
    if (possible < need) return true;
  }
  return false;
}

// Reused across calls: the leader computes its commit index on every acceptance.
const scratch: number[] = [];

/**
 * The highest slot accepted by a quorum of the given phase in every half: the K-th highest of the
 * voters' accepted indexes, K the quorum size. An empty half imposes no constraint.
 */
export function quorumIndex(
  voters: VoterSets,
  phase: Phase,
  phase2Quorum: number | undefined,
  acked: (id: NodeId) => number,
): number {
  return Math.min(
    halfQuorumIndex(voters.incoming, phase, phase2Quorum, acked),
    halfQuorumIndex(voters.outgoing, phase, phase2Quorum, acked),
  );
}

function halfQuorumIndex(
  half: ReadonlySet<NodeId>,
  phase: Phase,
  phase2Quorum: number | undefined,
  acked: (id: NodeId) => number,
): number {
  const n = half.size;
  if (n === 0) return Number.MAX_SAFE_INTEGER;
  const need = quorumSizes(n, phase2Quorum)[phase];
  scratch.length = 0;
  for (const id of half) scratch.push(acked(id));
  scratch.sort((a, b) => b - a);
  return scratch[need - 1]!;
}
