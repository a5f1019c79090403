// Typed failures of a simulated run. A violation is a bug in the consensus core (or the simulator);
// a SimulatorError is a broken assumption of the simulator itself.

export type InvariantCode =
  | 'leader-per-term'
  | 'log-matching'
  /** Multi-Paxos: an acceptor's ballot for a slot went down (it forgot an accepted value). */
  | 'ballot-regressed'
  | 'leader-completeness'
  | 'committed-entry-changed'
  | 'state-machine-safety'
  | 'commit-regressed'
  | 'term-regressed'
  | 'vote-changed'
  | 'apply-regressed'
  | 'acked-proposal-lost'
  | 'stale-read'
  | 'unproposed-entry'
  /** A vote, promise or append acknowledgement left before the state it vouches for was durable. */
  | 'ack-before-durable'
  /** Sharded runs: two writes (or two oracle releases) got the same revision. */
  | 'revision-reused'
  /**
   * Sharded runs: a revision not above one released or acknowledged before it was asked for
   * (real-time order), or a shard applying a revision not above its own.
   */
  | 'revision-order'
  /** Sharded runs: a revision above every high-water mark the metadata group committed. */
  | 'revision-above-mark'
  /** Sharded runs: a key's history differs from one group applying the acknowledged writes. */
  | 'key-history'
  /** Sharded runs: a shard applied a write routed at another epoch or for a key outside its range. */
  | 'stale-route'
  /** Sharded runs: the shard groups' ranges and epochs differ from the metadata group's shard map. */
  | 'shard-map'
  /** Sharded runs: a shard group's resolved revision went back. */
  | 'resolved-regressed'
  /** Sharded runs: the merged watch missed an event (or one came after its revision was released). */
  | 'watch-gap'
  /** Sharded runs: the merged watch released an event twice, or one no shard holds. */
  | 'watch-repeat'
  /**
   * Sharded runs with moves: a shard's newest membership has fewer voters than the replication
   * factor, or a voter that never caught up to where it joined (promoted before its snapshot).
   */
  | 'move-quorum'
  /** Sharded runs with moves: a settled placement breaks bounded load or puts two replicas on one host. */
  | 'placement'
  | 'core-contract'
  | 'liveness';

export class InvariantViolation extends Error {
  constructor(
    readonly code: InvariantCode,
    message: string,
  ) {
    super(`[${code}] ${message}`);
    this.name = 'InvariantViolation';
  }
}

export class SimulatorError extends Error {
  readonly code = 'simulator-error';
  constructor(message: string) {
    super(message);
    this.name = 'SimulatorError';
  }
}

export function assertNever(value: never): never {
  throw new SimulatorError(`unexpected value ${JSON.stringify(value)}`);
}
