// Linearizable reads through ReadIndex, batched: every read that arrives in one turn of the
// event loop shares one readIndex() call, hence one heartbeat round (Raft thesis §6.4). A batch
// whose read state does not come back (leader change, lost heartbeat) is re-issued: at once when
// a leader becomes known (a read that arrived before the first election is answered as soon as
// there is a leader, not a retry period later), otherwise after the retry period.

import type { ProposeResult } from '../raft/api.js';
import type { ReadState } from '../raft/types.js';

export interface ReadIndexSource {
  readIndex(context: Uint8Array): ProposeResult;
  /** Wakes the Raft loop so the read's heartbeat goes out this turn. */
  schedule(): void;
}

interface PendingBatch {
  id: bigint;
  context: Uint8Array;
  issuedAtMs: number;
  waiters: Array<{ resolve(index: number): void; reject(error: Error): void; deadlineMs: number }>;
}

export class ReadTimeoutError extends Error {
  readonly code = 'request-timeout';
  constructor() {
    super('etcdserver: request timed out');
  }
}

export class ReadBatcher {
  private nextId = 1n;
  private collecting: PendingBatch | undefined;
  private readonly inFlight = new Map<bigint, PendingBatch>();

  constructor(
    private readonly source: ReadIndexSource,
    private readonly retryAfterMs: number,
    private readonly timeoutMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** Resolves with a read index: serve the read once the applied index reaches it. */
  requestReadIndex(): Promise<number> {
    if (this.collecting === undefined) {
      const id = this.nextId++;
      const context = new Uint8Array(8);
      new DataView(context.buffer).setBigUint64(0, id);
      this.collecting = { id, context, issuedAtMs: 0, waiters: [] };
      setImmediate(() => this.issueCollecting());
    }
    const batch = this.collecting;
    return new Promise((resolve, reject) => {
      batch.waiters.push({ resolve, reject, deadlineMs: this.now() + this.timeoutMs });
    });
  }

  private issueCollecting(): void {
    const batch = this.collecting;
    if (batch === undefined) return;
    this.collecting = undefined;
    this.inFlight.set(batch.id, batch);
    this.issue(batch);
  }

  private issue(batch: PendingBatch): void {
    batch.issuedAtMs = this.now();
    // A drop (no leader yet) is retried by onTick until the deadline, as etcd does.
    this.source.readIndex(batch.context);
    this.source.schedule();
  }

  onReadStates(states: ReadState[]): void {
    for (const state of states) {
      if (state.context.length !== 8) continue;
      const id = new DataView(state.context.buffer, state.context.byteOffset, 8).getBigUint64(0);
      const batch = this.inFlight.get(id);
      if (batch === undefined) continue;
      this.inFlight.delete(id);
      for (const waiter of batch.waiters) waiter.resolve(state.index);
    }
  }

  /**
   * A (new) leader is known: re-issue every batch in flight. One issued with no leader was
   * dropped, one sent to the old leader may be lost with it; a duplicate ReadState is ignored.
   */
  onLeaderChange(): void {
    for (const batch of this.inFlight.values()) this.issue(batch);
  }

  /** Called every tick: re-issues stale batches and fails reads past their deadline. */
  onTick(): void {
    const now = this.now();
    for (const [id, batch] of this.inFlight) {
      batch.waiters = batch.waiters.filter((waiter) => {
        if (waiter.deadlineMs > now) return true;
        waiter.reject(new ReadTimeoutError());
        return false;
      });
      if (batch.waiters.length === 0) this.inFlight.delete(id);
      else if (now - batch.issuedAtMs >= this.retryAfterMs) this.issue(batch);
    }
  }

  rejectAll(error: Error): void {
    for (const batch of this.inFlight.values()) for (const waiter of batch.waiters) waiter.reject(error);
    this.inFlight.clear();
  }
}
