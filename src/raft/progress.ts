// The leader's view of one follower (etcd raft's Progress): how much of the log it is known to
// hold (match), what to send next, and how much may be in flight before it acknowledges.

import type { ProgressState, ProgressStatus } from './api.js';
import { RaftInvariantError } from './errors.js';

/**
 * Append messages sent but not yet acknowledged, as a ring of (last index, bytes). Bounded both in
 * messages (capacity) and in bytes (bytesMax, 0 = unbounded).
 */
export class Inflights {
  private start = 0;
  count = 0;
  bytes = 0;
  private readonly lastIndexes: Float64Array;
  private readonly sizes: Float64Array;

  constructor(
    readonly messagesMax: number,
    readonly bytesMax: number,
  ) {
    if (messagesMax < 1) throw new RaftInvariantError(`inflightMessagesMax must be ≥ 1, got ${messagesMax}`);
    this.lastIndexes = new Float64Array(messagesMax);
    this.sizes = new Float64Array(messagesMax);
  }

  add(lastIndex: number, bytes: number): void {
    if (this.count === this.messagesMax) throw new RaftInvariantError('inflight window overflow');
    const slot = (this.start + this.count) % this.messagesMax;
    this.lastIndexes[slot] = lastIndex;
    this.sizes[slot] = bytes;
    this.count++;
    this.bytes += bytes;
  }

  /** Frees every message whose last index is ≤ index (acknowledged). */
  freeLE(index: number): void {
    while (this.count > 0 && this.lastIndexes[this.start]! <= index) {
      this.bytes -= this.sizes[this.start]!;
      this.start = (this.start + 1) % this.messagesMax;
      this.count--;
    }
    if (this.count === 0) {
      this.start = 0;
      this.bytes = 0;
    }
  }

  freeFirst(): void {
    if (this.count > 0) this.freeLE(this.lastIndexes[this.start]!);
  }

  full(): boolean {
    return this.count === this.messagesMax || (this.bytesMax > 0 && this.bytes >= this.bytesMax);
  }

  reset(): void {
    this.start = 0;
    this.count = 0;
    this.bytes = 0;
  }
}

export class Progress {
  match = 0;
  next: number;
  state: ProgressState = 'probe';
  /** In snapshot state: the index of the snapshot being sent. */
  pendingSnapshot = 0;
  /** Heard from since the last check-quorum round. */
  recentActive: boolean;
  /** In probe state: one append is out, wait for its answer (or a heartbeat response). */
  msgAppFlowPaused = false;
  readonly inflights: Inflights;

  constructor(
    next: number,
    public isLearner: boolean,
    inflightMessagesMax: number,
    inflightBytesMax: number,
    recentActive: boolean,
  ) {
    this.next = next;
    this.recentActive = recentActive;
    this.inflights = new Inflights(inflightMessagesMax, inflightBytesMax);
  }

  private resetState(state: ProgressState): void {
    this.msgAppFlowPaused = false;
    this.pendingSnapshot = 0;
    this.state = state;
    this.inflights.reset();
  }

  becomeProbe(): void {
    if (this.state === 'snapshot') {
      const pending = this.pendingSnapshot;
      this.resetState('probe');
      this.next = Math.max(this.match + 1, pending + 1);
    } else {
      this.resetState('probe');
      this.next = this.match + 1;
    }
  }

  becomeReplicate(): void {
    this.resetState('replicate');
    this.next = this.match + 1;
  }

  becomeSnapshot(snapshotIndex: number): void {
    this.resetState('snapshot');
    this.pendingSnapshot = snapshotIndex;
  }

  /** An acknowledgement up to index. Returns whether match advanced. */
  maybeUpdate(index: number): boolean {
    let updated = false;
    if (this.match < index) {
      this.match = index;
      updated = true;
      this.msgAppFlowPaused = false;
    }
    if (this.next < index + 1) this.next = index + 1;
    return updated;
  }

  /**
   * A rejection of the append at `rejected`; `matchHint` is where the logs may match. Returns false
   * for stale rejections (out-of-order answers to earlier messages).
   */
  maybeDecrTo(rejected: number, matchHint: number): boolean {
    if (this.state === 'replicate') {
      if (rejected <= this.match) return false;
      this.next = this.match + 1;
      return true;
    }
    if (this.next - 1 !== rejected) return false;
    this.next = Math.max(Math.min(rejected, matchHint + 1), this.match + 1);
    this.msgAppFlowPaused = false;
    return true;
  }

  /** Records an append carrying `entries` entries up to lastIndex. */
  sentEntries(entries: number, lastIndex: number, bytes: number): void {
    if (this.state === 'replicate') {
      if (entries > 0) {
        this.next = lastIndex + 1;
        this.inflights.add(lastIndex, bytes);
      }
      this.msgAppFlowPaused = this.inflights.full();
    } else if (this.state === 'probe') {
      if (entries > 0) this.msgAppFlowPaused = true;
    } else {
      throw new RaftInvariantError('append sent to a follower in snapshot state');
    }
  }

  isPaused(): boolean {
    switch (this.state) {
      case 'probe':
        return this.msgAppFlowPaused;
      case 'replicate':
        return this.inflights.full();
      case 'snapshot':
        return true;
    }
  }

  status(): ProgressStatus {
    return {
      match: this.match,
      next: this.next,
      state: this.state,
      inflightMessages: this.inflights.count,
      isLearner: this.isLearner,
      recentActive: this.recentActive,
    };
  }
}
