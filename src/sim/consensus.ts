// Which consensus engine a simulated cluster runs. Both satisfy the same driver contract
// (raft/api.ts ConsensusEngine); the simulator, its fault model and its invariants are shared,
// except where Raft's invariants speak of terms and Paxos's of ballots (see invariants.ts).

import { PaxosNode } from '../paxos/node.js';
import { quorumSizes } from '../paxos/quorum.js';
import type { ConsensusFactory } from '../raft/api.js';
import { RaftNode } from '../raft/node.js';
import { SimulatorError } from './errors.js';

export type Consensus = 'raft' | 'multi-paxos';
export const CONSENSUS_KINDS: readonly Consensus[] = ['raft', 'multi-paxos'];

export function parseConsensus(text: string): Consensus {
  const kind = CONSENSUS_KINDS.find((k) => k === text);
  if (!kind)
    throw new SimulatorError(`unknown consensus engine '${text}' (one of: ${CONSENSUS_KINDS.join(', ')})`);
  return kind;
}

/**
 * The engine factory; `phase2Quorum` is Paxos's flexible phase-2 quorum (undefined: majority),
 * checked against the founding voter count here so a bad value fails before the run starts.
 */
export function engineFactory(consensus: Consensus, voters: number, phase2Quorum?: number): ConsensusFactory {
  switch (consensus) {
    case 'raft':
      if (phase2Quorum !== undefined)
        throw new SimulatorError('a phase-2 quorum applies to multi-paxos only');
      return (config) => new RaftNode(config);
    case 'multi-paxos':
      quorumSizes(voters, phase2Quorum);
      return (config) => new PaxosNode({ ...config, phase2Quorum });
    default:
      throw new SimulatorError(`unknown consensus engine ${String(consensus)}`);
  }
}
