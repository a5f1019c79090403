// Typed errors of the Multi-Paxos core. Invariant errors mean a bug or a lying disk: the node
// must stop. Quorum configuration errors are user-facing (a bad --paxos-phase2-quorum).

export abstract class PaxosError extends Error {
  abstract readonly code: string;
}

/** No valid pair of phase-1/phase-2 quorums exists for this configuration. */
export class QuorumConfigError extends PaxosError {
  readonly code = 'PAXOS_QUORUM_CONFIG';
}

/** An impossible state: a bug in the core, a misbehaving driver, or storage that lost data. */
export class PaxosInvariantError extends PaxosError {
  readonly code = 'PAXOS_INVARIANT';
  constructor(message: string) {
    super(`paxos invariant violated: ${message}`);
  }
}

/** A driver misuse of the API (e.g. ready() twice without advance()). */
export class PaxosUsageError extends PaxosError {
  readonly code = 'PAXOS_USAGE';
}
