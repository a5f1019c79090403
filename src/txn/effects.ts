// The seams between the protocol and the world: proposing a command to a shard's log, asking the
// oracle for a revision, the clock and sleeping. The simulator and the server each implement them;
// the protocol code reads no clock and starts no timer of its own.

import { TxnInvariantError } from './errors.js';
import type { Revision, ShardId, ShardTxnCommand, ShardTxnResult } from './types.js';

export interface TxnEffects {
  /**
   * Proposes `command` to shard `shard`'s log and resolves with what applying it returned.
   * Rejects when the outcome is unknown (leader lost, timeout): the command may or may not have
   * been applied. The protocol retries only the commands that are idempotent.
   */
  propose(shard: ShardId, command: ShardTxnCommand): Promise<ShardTxnResult>;
  /** A fresh revision from the timestamp oracle, above every revision handed out before the call. */
  nextRevision(): Promise<Revision>;
  nowMs(): number;
  sleep(ms: number): Promise<void>;
}

/** Thrown by `proposeIdempotent` when every attempt's outcome stayed unknown. */
export class ProposeFailedError extends Error {
  readonly code = 'txn-propose-failed';
  constructor(
    readonly shard: ShardId,
    readonly attempts: number,
  ) {
    super(`shard ${shard}: no answer after ${attempts} attempts`);
    this.name = 'ProposeFailedError';
  }
}

/**
 * Proposes an idempotent command until one attempt answers, at most `attemptsMax` times, waiting
 * `backoffMs` between attempts. `make` builds the command with the current time.
 */
export async function proposeIdempotent<T extends ShardTxnResult['type']>(
  effects: TxnEffects,
  shard: ShardId,
  type: T,
  make: (nowMs: number) => ShardTxnCommand,
  attemptsMax: number,
  backoffMs: number,
): Promise<Extract<ShardTxnResult, { type: T }>> {
  for (let attempt = 1; ; attempt++) {
    try {
      const result = await effects.propose(shard, make(effects.nowMs()));
      if (result.type !== type)
        throw new Error(`shard ${shard} answered ${result.type} to a ${type} command`);
      return result as Extract<ShardTxnResult, { type: T }>;
    } catch (error) {
      if (!isUnknownOutcome(error)) throw error;
      if (attempt >= attemptsMax) throw new ProposeFailedError(shard, attempt);
      await effects.sleep(backoffMs);
    }
  }
}

/** Any rejection of `propose` means an unknown outcome, except a broken invariant, which must stop loudly. */
function isUnknownOutcome(error: unknown): boolean {
  return !(error instanceof TxnInvariantError);
}
