// Quorum arithmetic, kept apart from the protocol so it can be checked on its own (Raft thesis
// §4.3: a joint configuration needs a majority of both the old and the new voter set).

import type { NodeId } from './types.js';

export enum VoteResult {
  Pending = 'pending',
  Lost = 'lost',
  Won = 'won',
}

/** A configuration's voter sets; `outgoing` is empty unless in joint consensus. */
export interface QuorumConfig {
  incoming: ReadonlySet<NodeId>;
  outgoing: ReadonlySet<NodeId>;
}

// Reused across calls: committedIndex runs on every append acknowledgement.
const scratch: number[] = [];

/**
 * The largest index acknowledged by a majority of `voters`. An empty set imposes no constraint
 * (returns MAX_SAFE_INTEGER) so that min() with the other half of a joint config works.
 */
export function majorityCommittedIndex(
  voters: ReadonlySet<NodeId>,
  ackedIndex: (id: NodeId) => number,
): number {
  const n = voters.size;
  if (n === 0) return Number.MAX_SAFE_INTEGER;
  scratch.length = n;
  let i = 0;
  for (const id of voters) {
    const v = ackedIndex(id);
    // Insertion sort, ascending: n is tiny.
    let j = i;
    while (j > 0 && scratch[j - 1]! > v) {
      scratch[j] = scratch[j - 1]!;
      j--;
    }
    scratch[j] = v;
    i++;
  }
  const quorum = (n >> 1) + 1;
  return scratch[n - quorum]!;
}

export function jointCommittedIndex(config: QuorumConfig, ackedIndex: (id: NodeId) => number): number {
  const a = majorityCommittedIndex(config.incoming, ackedIndex);
  const b = majorityCommittedIndex(config.outgoing, ackedIndex);
  return Math.min(a, b);
}

/** Votes: true = granted, false = rejected, absent = not yet answered. */
export function majorityVoteResult(
  voters: ReadonlySet<NodeId>,
  votes: ReadonlyMap<NodeId, boolean>,
): VoteResult {
  const n = voters.size;
  // An empty configuration wins every vote, which makes joint results compose.
  if (n === 0) return VoteResult.Won;
  let granted = 0;
  let missing = 0;
  for (const id of voters) {
    const v = votes.get(id);
    if (v === undefined) missing++;
    else if (v) granted++;
  }
  const quorum = (n >> 1) + 1;
  if (granted >= quorum) return VoteResult.Won;
  if (granted + missing >= quorum) return VoteResult.Pending;
  return VoteResult.Lost;
}

export function jointVoteResult(config: QuorumConfig, votes: ReadonlyMap<NodeId, boolean>): VoteResult {
  const a = majorityVoteResult(config.incoming, votes);
  const b = majorityVoteResult(config.outgoing, votes);
  if (a === b) return a;
  if (a === VoteResult.Lost || b === VoteResult.Lost) return VoteResult.Lost;
  return VoteResult.Pending;
}
