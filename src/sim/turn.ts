// The end of a simulated event, as Node ends a turn: the host loops run on (microtasks) until each
// is idle or waits for its simulated fsync, then the callbacks queued for the end of the turn (the
// hosts' batches: the server's setImmediate) run, and so on until nothing is left. Virtual time
// stands still meanwhile. Shared by the single-group and the sharded simulations.

import { InvariantViolation } from './errors.js';

/**
 * Microtask rounds one event may take before the host loops are idle or wait for a disk; the
 * core's own livelock check (Ready cycles per event) fires long before this.
 */
const SETTLE_ROUNDS_MAX = 1_000_000;

export class TurnQueue {
  private queue: Array<() => void> = [];

  /** Runs `run` once the current event and the microtasks it started are done (setImmediate). */
  soon(run: () => void): void {
    this.queue.push(run);
  }

  get pending(): boolean {
    return this.queue.length > 0;
  }

  /**
   * Lets the hosts run until they are idle or wait for a disk and nothing is queued; throws the
   * first fatal error a host reported.
   */
  async settle(hostsRunning: () => boolean, fatal: () => Error | undefined): Promise<void> {
    for (let rounds = 0; ; rounds++) {
      if (rounds > SETTLE_ROUNDS_MAX)
        throw new InvariantViolation('core-contract', `host loops still busy after ${rounds} rounds`);
      const error = fatal();
      if (error) throw error;
      if (hostsRunning()) {
        await null;
        continue;
      }
      if (this.queue.length === 0) return;
      const runs = this.queue;
      this.queue = [];
      for (const run of runs) run();
    }
  }
}
