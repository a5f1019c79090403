// The timestamp oracle: where every write's revision comes from once there is more than one
// shard (PD's TSO, with plain integer revisions instead of physical+logical timestamps).
//
// The metadata group's leader hands revisions out of an in-memory counter. Only a high-water mark
// is persisted, through the metadata group's Raft log: the leader never hands out a revision above
// the mark it knows is committed, and proposes to raise the mark by a window when the counter
// nears it, ahead of need. A new leader starts above the persisted mark, so it can never repeat or
// go below anything an earlier leader handed out. Revisions may therefore have gaps (a window left
// unused by a leader that stepped down), which etcd's guarantees allow: revisions increase, they
// need not be dense.
//
// Real-time order across leader changes also needs the old leader to stop: a deposed leader that
// has not heard of its successor could otherwise hand out revisions below the successor's after
// the successor has. So every allocation is released only after a leadership confirmation (a
// ReadIndex round: a quorum still follows this leader) that started after the allocation was made.
// Any later leader was elected after that confirmation started, hence after the allocation, and it
// starts above the persisted mark. Confirmations are batched: all allocations made while one round
// is in flight share the next round.
//
// This file is pure logic over injected callbacks (`persistHighWater`, `confirmLeadership`); the
// metadata group drives it, and tests drive it with a model of the Raft group.

import { OracleNotLeaderError, OracleRequestInvalidError, RevisionSpaceExhaustedError } from './errors.js';

/** Revisions first, first + 1, …, first + count − 1. */
export interface RevisionRange {
  readonly first: number;
  readonly count: number;
}

/** The largest revision a JavaScript client can do exact arithmetic on: 2^53 − 1. */
export const REVISION_MAX = Number.MAX_SAFE_INTEGER;

export interface TimestampOracleOptions {
  /**
   * Proposes raising the persisted high-water mark to `mark` through the metadata group's log.
   * Resolves once the entry is committed and applied; rejects if it will not be (leadership lost,
   * proposal dropped). The state machine applies a raise with `applyHighWaterRaise`.
   */
  persistHighWater(mark: number): Promise<void>;
  /**
   * Confirms that this node still leads the metadata group with a round that starts after the
   * call (a ReadIndex round); rejects if it does not.
   */
  confirmLeadership(): Promise<void>;
  /** How far above what is needed a raise puts the mark. */
  windowRevisions: number;
  /** A raise starts in the background when fewer revisions than this remain below the mark. */
  refillBelowRevisions: number;
  /** The most revisions one allocation may take. */
  allocateRevisionsMax: number;
  /** The highest revision ever handed out; defaults to REVISION_MAX (2^53 − 1). */
  revisionMax?: number;
}

/** How the metadata state machine applies a committed raise: the mark never goes down. */
export function applyHighWaterRaise(storedMark: number, proposedMark: number): number {
  return Math.max(storedMark, proposedMark);
}

interface Raise {
  readonly generation: number;
  readonly target: number;
  readonly done: Promise<void>;
}

interface ConfirmWaiter {
  resolve(): void;
  reject(error: unknown): void;
}

export class TimestampOracle {
  private readonly revisionMax: number;
  /** Bumped by becomeLeader and stepDown; work of an older generation no longer counts. */
  private generation = 0;
  private leading = false;
  /** The last revision handed out (or the mark this leadership started from). */
  private lastAllocated = 0;
  /** The highest mark this leadership knows is committed. */
  private durableMark = 0;
  private raise: Raise | undefined;
  private confirmInFlight = false;
  private confirmWaiting: ConfirmWaiter[] = [];

  constructor(private readonly options: TimestampOracleOptions) {
    this.revisionMax = options.revisionMax ?? REVISION_MAX;
    const positive = (name: string, value: number) => {
      if (!Number.isSafeInteger(value) || value < 1) {
        throw new OracleRequestInvalidError(`${name} must be a positive integer, not ${value}`);
      }
    };
    if (this.revisionMax > REVISION_MAX) {
      throw new OracleRequestInvalidError(`revisionMax must not exceed 2^53 − 1 (${REVISION_MAX})`);
    }
    positive('windowRevisions', options.windowRevisions);
    positive('allocateRevisionsMax', options.allocateRevisionsMax);
    positive('revisionMax', this.revisionMax);
    if (!Number.isSafeInteger(options.refillBelowRevisions) || options.refillBelowRevisions < 0) {
      throw new OracleRequestInvalidError(`refillBelowRevisions must be an integer ≥ 0`);
    }
  }

  get isLeader(): boolean {
    return this.leading;
  }

  /** The highest mark this leadership knows is committed (0 when not leading). */
  get persistedMark(): number {
    return this.leading ? this.durableMark : 0;
  }

  /** The last revision handed out by this leadership. */
  get lastRevision(): number {
    return this.leading ? this.lastAllocated : 0;
  }

  /**
   * Starts serving as the metadata group's leader. `persistedMark` is the mark in the state
   * machine after the leader has applied every committed entry (the host calls this once the
   * leader's first entry of its term is applied). The first revision handed out is above it; a
   * raise is proposed at once, and allocations wait for it.
   */
  becomeLeader(persistedMark: number): void {
    if (!Number.isSafeInteger(persistedMark) || persistedMark < 0) {
      throw new OracleRequestInvalidError(`persisted high-water mark ${persistedMark} is not an integer ≥ 0`);
    }
    this.generation++;
    this.leading = true;
    this.lastAllocated = persistedMark;
    this.durableMark = persistedMark;
    this.raise = undefined;
    if (persistedMark < this.revisionMax) this.startRaise(persistedMark + 1).done.catch(() => {});
  }

  /** Stops serving: allocations in progress fail with OracleNotLeaderError. */
  stepDown(): void {
    this.generation++;
    this.leading = false;
    this.raise = undefined;
  }

  /**
   * Hands out `count` consecutive revisions, each above every revision this oracle or any
   * earlier leader's released. Waits for a raise of the mark if the counter has reached it, and
   * for a leadership confirmation. Fails with OracleNotLeaderError if leadership is lost on the
   * way (the revisions are then never used: a gap), with RevisionSpaceExhaustedError before
   * passing `revisionMax`.
   */
  async allocate(count: number): Promise<RevisionRange> {
    if (!Number.isSafeInteger(count) || count < 1 || count > this.options.allocateRevisionsMax) {
      throw new OracleRequestInvalidError(
        `a revision batch must ask for 1 to ${this.options.allocateRevisionsMax} revisions, not ${count}`,
      );
    }
    const generation = this.generation;
    this.checkServing(generation, count);
    while (this.lastAllocated + count > this.durableMark) {
      await this.startRaise(this.lastAllocated + count).done;
      this.checkServing(generation, count);
    }
    const range: RevisionRange = { first: this.lastAllocated + 1, count };
    this.lastAllocated += count;
    if (
      this.durableMark - this.lastAllocated < this.options.refillBelowRevisions &&
      this.durableMark < this.revisionMax
    ) {
      // Ahead of need; a failure here is retried by the next allocation that needs the room.
      this.startRaise(this.lastAllocated + 1).done.catch(() => {});
    }
    await this.confirm();
    if (generation !== this.generation) throw new OracleNotLeaderError();
    return range;
  }

  private checkServing(generation: number, count: number): void {
    if (!this.leading || generation !== this.generation) throw new OracleNotLeaderError();
    if (this.lastAllocated + count > this.revisionMax) {
      throw new RevisionSpaceExhaustedError(this.lastAllocated + 1, count, this.revisionMax);
    }
  }

  /**
   * The raise in flight, or a new one to cover `needed` plus a window (capped at revisionMax).
   * Only one raise is in flight at a time; an allocation that needs more than it covers waits for
   * it and asks again.
   */
  private startRaise(needed: number): Raise {
    if (this.raise !== undefined && this.raise.generation === this.generation) return this.raise;
    const generation = this.generation;
    const target = Math.min(
      this.revisionMax,
      Math.max(this.durableMark, needed) + this.options.windowRevisions,
    );
    const done = this.options.persistHighWater(target).then(
      () => {
        if (generation === this.generation) this.durableMark = Math.max(this.durableMark, target);
      },
      (error: unknown) => {
        throw generation === this.generation ? error : new OracleNotLeaderError();
      },
    );
    const raise: Raise = { generation, target, done };
    this.raise = raise;
    const clear = () => {
      if (this.raise === raise) this.raise = undefined;
    };
    done.then(clear, clear);
    return raise;
  }

  /** Waits for a leadership confirmation that starts after this call (batched per round). */
  private confirm(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.confirmWaiting.push({ resolve, reject });
      this.startConfirmRound();
    });
  }

  private startConfirmRound(): void {
    if (this.confirmInFlight || this.confirmWaiting.length === 0) return;
    const round = this.confirmWaiting;
    this.confirmWaiting = [];
    this.confirmInFlight = true;
    const finish = () => {
      this.confirmInFlight = false;
      this.startConfirmRound();
    };
    this.options.confirmLeadership().then(
      () => {
        for (const waiter of round) waiter.resolve();
        finish();
      },
      (error: unknown) => {
        for (const waiter of round) waiter.reject(error);
        finish();
      },
    );
  }
}

export interface RevisionBatcherOptions {
  /** One request to the oracle (over the network, to the metadata leader). */
  fetch(count: number): Promise<RevisionRange>;
  /** Runs `flush` once at the end of this event-loop turn; defaults to setImmediate. */
  schedule?: (flush: () => void) => void;
  /** The most revisions one fetch asks for; the rest wait for the next turn. */
  batchRevisionsMax: number;
}

interface RevisionWaiter {
  resolve(revision: number): void;
  reject(error: unknown): void;
}

/**
 * A node's side of the oracle: every `next()` of one event-loop turn is coalesced into one
 * fetch, so a busy node sends one request per turn, not one per write. Revisions of one fetch go
 * to the callers in the order they asked.
 */
export class RevisionBatcher {
  private readonly schedule: (flush: () => void) => void;
  private waiting: RevisionWaiter[] = [];
  private flushScheduled = false;
  private closed = false;

  constructor(private readonly options: RevisionBatcherOptions) {
    if (!Number.isSafeInteger(options.batchRevisionsMax) || options.batchRevisionsMax < 1) {
      throw new OracleRequestInvalidError(`batchRevisionsMax must be a positive integer`);
    }
    this.schedule = options.schedule ?? ((flush) => setImmediate(flush));
  }

  /** One revision, from the fetch at the end of this turn. */
  next(): Promise<number> {
    if (this.closed) return Promise.reject(new OracleRequestInvalidError('the revision batcher is closed'));
    return new Promise<number>((resolve, reject) => {
      this.waiting.push({ resolve, reject });
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        this.schedule(() => this.flush());
      }
    });
  }

  /** Fails every waiting `next()`; fetches in flight still settle their own callers. */
  close(): void {
    this.closed = true;
    const waiting = this.waiting;
    this.waiting = [];
    for (const waiter of waiting)
      waiter.reject(new OracleRequestInvalidError('the revision batcher is closed'));
  }

  private flush(): void {
    this.flushScheduled = false;
    if (this.waiting.length === 0) return;
    const batch = this.waiting.splice(0, this.options.batchRevisionsMax);
    if (this.waiting.length > 0) {
      this.flushScheduled = true;
      this.schedule(() => this.flush());
    }
    this.options.fetch(batch.length).then(
      (range) => {
        if (range.count !== batch.length || !Number.isSafeInteger(range.first) || range.first < 1) {
          const error = new OracleRequestInvalidError(
            `the oracle answered ${range.count} revisions from ${range.first} to a request for ${batch.length}`,
          );
          for (const waiter of batch) waiter.reject(error);
          return;
        }
        batch.forEach((waiter, i) => {
          waiter.resolve(range.first + i);
        });
      },
      (error: unknown) => {
        for (const waiter of batch) waiter.reject(error);
      },
    );
  }
}
