// Drives one Raft group: the loop that turns the core's Ready into I/O. Per batch it does each
// costly thing once: one WAL write + fsync for everything the core produced, one send per
// peer (the transport coalesces per turn), one state-machine transaction for all committed
// entries. A leader's appends go out while its own fsync is in flight (Ready.messages); the
// rest waits for durability (Ready.messagesAfterPersist).
//
// A group whose core hibernates (RaftConfig.quiesce: core.quiesced) is not ticked: the host gives
// its timer back to the scheduler and asks for it again when a message or proposal (which reach
// the host as schedule()) has woken the core. With node/tick-driver.ts as the scheduler, one
// timer per process ticks the groups that are awake and none when all sleep.
//
// The same loop runs in the server and in the simulator (sim/sim-node.ts): everything it touches
// (timers and turns, the durable log, the sender, the state machine) is injected, so a simulated
// seed exercises exactly the code that runs in production.

import type { RaftNodeApi, Ready } from '../raft/api.js';
import type { MemoryStorage } from '../raft/memory-storage.js';
import {
  EMPTY_BYTES,
  type Entry,
  type HardState,
  type Message,
  type ReadState,
  type Snapshot,
  type SoftState,
} from '../raft/types.js';

/** The durable half of the log (the WAL). */
export interface DurableLog {
  /** Writes hard state, entries and snapshot marker; resolves once they are on disk. */
  persist(update: { hardState?: HardState; entries: Entry[]; snapshot?: Snapshot }): Promise<void>;
  /** Records a hard state whose term and vote are already durable (only commit moved): no fsync. */
  persistCommit(hardState: HardState): void;
}

export interface MessageSender {
  /** Queues messages; they leave by the end of the turn, or at flush(). */
  send(messages: Message[]): void;
  /** Sends what is queued now. */
  flush(): void;
}

/** What the committed entries are applied to. */
export interface StateMachine {
  /** Replaces the state with a snapshot from the leader (already verified and durable). */
  restoreSnapshot(snapshot: Snapshot): Promise<void>;
  /** Applies entries in one transaction; returns once they are applied. */
  applyEntries(entries: Entry[]): Promise<void>;
}

export interface RaftHostEvents {
  onSoftState(state: SoftState): void;
  onHardState(state: HardState): void;
  onReadStates(states: ReadState[]): void;
  onApplied(index: number): void;
  /**
   * A failure the node cannot continue after (a disk error): the host has stopped; the node must
   * stop too, not limp on. `stage` says where it happened: persisting the Ready (WAL, snapshot
   * file), applying committed entries, restoring a snapshot, or anything else in the loop.
   */
  onFatal(error: Error, stage: HostStage): void;
}

export type HostStage = 'persist' | 'apply' | 'restore' | 'loop';

/**
 * Time and turns, as the host sees them. Production passes NODE_SCHEDULER (Node's timers); the
 * simulator passes its virtual clock, so a seed drives this same loop deterministically.
 */
export interface HostScheduler {
  /** Calls `tick` every `intervalMs` until the returned function is called. */
  every(intervalMs: number, tick: () => void): () => void;
  /** Calls `run` once, after the current turn (its synchronous work and its microtasks). */
  soon(run: () => void): void;
}

/** Node's timers: ticks from setInterval, batches at setImmediate. */
export const NODE_SCHEDULER: HostScheduler = {
  every(intervalMs, tick) {
    const timer = setInterval(tick, intervalMs);
    return () => clearInterval(timer);
  },
  soon(run) {
    setImmediate(run);
  },
};

export interface RaftHostOptions {
  /** Default NODE_SCHEDULER. */
  scheduler?: HostScheduler;
  /**
   * Test only, breaks durability: messages that must wait for the fsync (votes, append acks) leave
   * with the Ready's other messages, before it. Exists so the simulator can show it catches a
   * host that breaks the rule; never set by the server.
   */
  unsafeSendBeforeFsync?: boolean;
}

/** Carries the stage a failure happened in up to drain(). */
class StageFailure extends Error {
  constructor(
    readonly stage: HostStage,
    override readonly cause: Error,
  ) {
    super(cause.message);
  }
}

function inStage<T>(stage: HostStage, work: Promise<T>): Promise<T> {
  return work.catch((error: unknown) => {
    throw new StageFailure(stage, error instanceof Error ? error : new Error(String(error)));
  });
}

export class RaftHost {
  private running = false;
  private scheduled = false;
  private draining = false;
  private stopped = false;
  private stopTicking: (() => void) | undefined;
  /** The core is quiesced and the host gave its timer back (see syncTicking). */
  private hibernating = false;
  /** Term and vote of the last hard state on disk. */
  private durableTerm: number;
  private durableVote: number;
  private readonly scheduler: HostScheduler;
  private readonly unsafeSendBeforeFsync: boolean;

  constructor(
    readonly node: RaftNodeApi,
    private readonly storage: MemoryStorage,
    private readonly log: DurableLog,
    private readonly sender: MessageSender,
    private readonly stateMachine: StateMachine,
    private readonly events: RaftHostEvents,
    private readonly tickMs: number,
    options: RaftHostOptions = {},
  ) {
    const recovered = storage.initialState().hardState;
    this.durableTerm = recovered.term;
    this.durableVote = recovered.vote;
    this.scheduler = options.scheduler ?? NODE_SCHEDULER;
    this.unsafeSendBeforeFsync = options.unsafeSendBeforeFsync === true;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.stopTicking = this.scheduler.every(this.tickMs, this.onTick);
    this.schedule();
  }

  /** Stops ticking and processing; an in-flight batch completes but nothing new starts. */
  stop(): void {
    this.stopped = true;
    this.running = false;
    this.stopTicking?.();
    this.stopTicking = undefined;
    this.hibernating = false;
  }

  /** The group hibernates: its core is quiesced and nothing ticks it. */
  get isHibernating(): boolean {
    return this.hibernating;
  }

  /** Gives the timer back while the core is quiesced; takes it again once it woke. */
  private syncTicking(): void {
    if (!this.running) return;
    const quiesced = this.node.quiesced === true;
    if (quiesced && !this.hibernating) {
      this.hibernating = true;
      this.stopTicking?.();
      this.stopTicking = undefined;
    } else if (!quiesced && this.hibernating) {
      this.hibernating = false;
      this.stopTicking = this.scheduler.every(this.tickMs, this.onTick);
    }
  }

  /** Processes the core's output at the end of this turn; many calls in one turn → one batch. */
  schedule(): void {
    if (this.scheduled || this.stopped) return;
    this.scheduled = true;
    this.scheduler.soon(this.runScheduled);
  }

  /** A batch is in progress: a Ready is being persisted, sent or applied. */
  get busy(): boolean {
    return this.draining;
  }

  private readonly onTick = (): void => {
    this.node.tick();
    this.schedule();
  };

  private readonly runScheduled = (): void => {
    this.scheduled = false;
    this.syncTicking();
    void this.drain();
  };

  private async drain(): Promise<void> {
    if (this.draining || this.stopped) return;
    this.draining = true;
    try {
      while (!this.stopped && this.node.hasReady()) await this.handleReady(this.node.ready());
      this.syncTicking();
    } catch (error) {
      this.stop();
      if (error instanceof StageFailure) this.events.onFatal(error.cause, error.stage);
      else this.events.onFatal(error instanceof Error ? error : new Error(String(error)), 'loop');
    } finally {
      this.draining = false;
    }
  }

  private async handleReady(ready: Ready): Promise<void> {
    if (ready.softState !== undefined) this.events.onSoftState(ready.softState);
    if (this.unsafeSendBeforeFsync) this.sendBeforeFsync(ready);
    if (ready.messages.length > 0) {
      // Out before our fsync starts, so the followers' fsyncs overlap ours.
      this.sender.send(ready.messages);
      this.sender.flush();
    }

    // What our own disk held before this Ready (persist below does not touch MemoryStorage).
    const durableIndex = this.storage.lastIndex();

    // Term and vote must be durable before any message that depends on them leaves; a commit
    // index need not be (Raft relearns it from the leader), so a Ready that only moves commit
    // costs no fsync, as etcd's MustSync.
    const hardState = ready.hardState;
    const commitOnly =
      hardState !== undefined &&
      ready.entries.length === 0 &&
      ready.snapshot === undefined &&
      hardState.term === this.durableTerm &&
      hardState.vote === this.durableVote;
    const mustPersist =
      !commitOnly && (hardState !== undefined || ready.entries.length > 0 || ready.snapshot !== undefined);
    if (commitOnly) this.log.persistCommit(hardState);
    let persisting: Promise<void> | undefined;
    if (mustPersist) {
      const update: { hardState?: HardState; entries: Entry[]; snapshot?: Snapshot } = {
        entries: ready.entries,
      };
      if (ready.hardState !== undefined) update.hardState = ready.hardState;
      if (ready.snapshot !== undefined) update.snapshot = ready.snapshot;
      persisting = inStage('persist', this.log.persist(update));
    }

    // Committed entries already on our own disk are applied while this Ready's fsync runs (as
    // etcd does): committed means durable on a quorum, and none of them waits for this write.
    // Entries committed in the same Ready that brings them wait for the fsync, like a snapshot.
    // The apply starts only after persist() was called: the WAL writes and hands its fdatasync
    // to the thread pool before the apply's (synchronous) transaction takes the event loop, so
    // the disk and the apply overlap instead of queueing one behind the other.
    // "On our own disk" means below the first entry this Ready writes, too: a deposed leader's
    // uncommitted tail may be replaced and committed in one Ready, and its old entries at those
    // indexes are durable but not the ones committed.
    const lastCommitted = ready.committedEntries.at(-1)?.index ?? 0;
    const firstWritten = ready.entries[0]?.index ?? Number.POSITIVE_INFINITY;
    const applyEarly =
      ready.snapshot === undefined &&
      lastCommitted > 0 &&
      lastCommitted <= durableIndex &&
      lastCommitted < firstWritten;
    const earlyApply = applyEarly ? this.applyCommitted(ready) : undefined;
    // Its failure is taken up below, after the fsync; until then it must not count as unhandled
    // (Node would end the process on it, skipping the orderly stop).
    earlyApply?.catch(() => undefined);

    if (persisting !== undefined) {
      try {
        await persisting;
      } catch (error) {
        // The disk error is what stops this member; an apply still running must not surface
        // later as an unhandled rejection on top of it.
        await earlyApply?.catch(() => undefined);
        throw error;
      }
      if (hardState !== undefined) {
        this.durableTerm = hardState.term;
        this.durableVote = hardState.vote;
      }
      // Stopped while the fsync ran: the transport may be closed; the batch is durable, and the
      // rest (sends, apply) is what a restart redoes from the log.
      if (this.stopped) {
        await earlyApply;
        return;
      }
    }
    // The snapshot's data is durable in the log's snapshot file now (the transport streams it
    // from there); holding it here too would keep a whole keyspace in memory.
    if (ready.snapshot !== undefined)
      this.storage.applySnapshot({ metadata: ready.snapshot.metadata, data: EMPTY_BYTES });
    if (ready.entries.length > 0) this.storage.append(ready.entries);
    if (ready.hardState !== undefined) {
      this.storage.setHardState(ready.hardState);
      this.events.onHardState(ready.hardState);
    }
    if (ready.messagesAfterPersist.length > 0) {
      this.sender.send(ready.messagesAfterPersist);
      this.sender.flush();
    }

    if (ready.snapshot !== undefined) {
      await inStage('restore', this.stateMachine.restoreSnapshot(ready.snapshot));
      this.events.onApplied(ready.snapshot.metadata.index);
    }
    await (earlyApply ?? this.applyCommitted(ready));
    if (ready.readStates.length > 0) this.events.onReadStates(ready.readStates);
    this.node.advance(ready);
  }

  /** The order-violating mutation (RaftHostOptions.unsafeSendBeforeFsync): test use only. */
  private sendBeforeFsync(ready: Ready): void {
    ready.messages.push(...ready.messagesAfterPersist);
    ready.messagesAfterPersist.length = 0;
  }

  private async applyCommitted(ready: Ready): Promise<void> {
    if (ready.committedEntries.length === 0) return;
    await inStage('apply', this.stateMachine.applyEntries(ready.committedEntries));
    this.events.onApplied(ready.committedEntries[ready.committedEntries.length - 1]!.index);
  }
}
