// The watch hub: ordered, resumable event streams over key ranges (etcd's watchableStore).
//
// A watcher is either
//   synced   — it has seen every revision up to the store's; new commits append to its buffer;
//   unsynced — it fell behind (buffer full, or it started in the past); its next events are read
//              from LMDB history when the consumer asks for more (take()).
// Writers never wait for a watcher: a commit that would overflow a watcher's buffer
// (eventsBufferedMax) just marks it unsynced, and it later re-reads exactly those revisions from
// history. `nextRevision` is the first revision not yet buffered or delivered, so no event is
// missed or repeated. Everything runs on the one JS thread and applyBatch is synchronous, so a
// catch-up read and the switch back to synced happen with no commit in between.

import { CompactedError } from './errors.js';
import type { Event, WatchFilter } from './types.js';

/** What the hub needs from the keyspace (kept narrow so tests can reason about it). */
export interface WatchHistory {
  currentRevision(): number;
  compactRevision(): number;
  readEvents(
    key: Uint8Array,
    rangeEnd: Uint8Array | undefined,
    fromRevision: number,
    toRevision: number,
    prevKv: boolean,
    eventsMax: number,
    recordsScannedMax?: number,
  ): { events: Event[]; nextRevision: number };
}

export interface WatchHubOptions {
  /** Per-watcher buffer bound (events); a commit that would exceed it makes the watcher unsynced. */
  eventsBufferedMax?: number;
}

export const EVENTS_BUFFERED_MAX_DEFAULT = 1024;
/** History records one take() may scan before yielding (then onReadable fires again soon). */
export const CATCH_UP_RECORDS_PER_TAKE_MAX = 20_000;
const CATCH_UP_ROUNDS_PER_TAKE_MAX = 4;

export interface WatchCreateRequest {
  key: Uint8Array;
  rangeEnd?: Uint8Array;
  /** 0 = from the next revision on; otherwise the first revision to deliver (may be historical). */
  startRevision?: number;
  prevKv?: boolean;
  filters?: WatchFilter[];
}

export type WatchBatch =
  /** `revision` is the store revision when the batch was taken (the response header revision). */
  | { kind: 'events'; events: Event[]; revision: number }
  /** The watcher's next revision was compacted away; the watcher is now canceled. */
  | { kind: 'compacted'; compactRevision: number };

export type WatcherState = 'synced' | 'unsynced' | 'canceled';

export class Watcher {
  private buffer: Event[] = [];
  private notified = false;
  private currentState: WatcherState;

  constructor(
    readonly id: number,
    readonly key: Uint8Array,
    readonly rangeEnd: Uint8Array | undefined,
    readonly prevKv: boolean,
    private readonly filters: ReadonlySet<WatchFilter>,
    /** First revision not yet buffered or delivered. */
    public nextRevision: number,
    synced: boolean,
    private readonly hub: WatchHub,
    private readonly onReadable: () => void,
  ) {
    this.currentState = synced ? 'synced' : 'unsynced';
  }

  get state(): WatcherState {
    return this.currentState;
  }

  get bufferedEvents(): number {
    return this.buffer.length;
  }

  /**
   * Hands out what is ready: buffered events, or (when unsynced and drained) the next chunk of
   * history. Undefined when there is nothing to deliver now; onReadable fires when there is.
   */
  take(): WatchBatch | undefined {
    this.notified = false;
    if (this.currentState === 'canceled') return undefined;
    // Filters and key ranges can leave a whole chunk of history empty for this watcher: keep
    // reading (each round advances nextRevision) within a bounded number of rounds.
    for (let round = 0; this.buffer.length === 0 && this.currentState === 'unsynced'; round++) {
      if (round === CATCH_UP_ROUNDS_PER_TAKE_MAX) {
        // Still nothing for this watcher: yield to I/O and let the consumer come back.
        setImmediate(() => this.signal());
        return undefined;
      }
      if (!this.catchUp()) return { kind: 'compacted', compactRevision: this.hub.history.compactRevision() };
    }
    if (this.buffer.length === 0) return undefined;
    const events = this.buffer;
    this.buffer = [];
    return { kind: 'events', events, revision: this.hub.history.currentRevision() };
  }

  /** The revision up to which this watcher has delivered everything, if it has (progress notify). */
  progressRevision(): number | undefined {
    if (this.currentState !== 'synced' || this.buffer.length > 0) return undefined;
    return this.hub.history.currentRevision();
  }

  cancel(): void {
    if (this.currentState === 'canceled') return;
    this.currentState = 'canceled';
    this.buffer = [];
    this.hub.remove(this);
  }

  /** False when the history this watcher needs was compacted (the watcher is then canceled). */
  private catchUp(): boolean {
    const history = this.hub.history;
    // etcd's rule: reading from the compact revision itself is allowed.
    if (this.nextRevision < history.compactRevision()) {
      this.cancel();
      return false;
    }
    const current = history.currentRevision();
    if (this.nextRevision <= current) {
      const { events, nextRevision } = history.readEvents(
        this.key,
        this.rangeEnd,
        this.nextRevision,
        current,
        this.prevKv,
        this.hub.eventsBufferedMax,
        CATCH_UP_RECORDS_PER_TAKE_MAX / CATCH_UP_ROUNDS_PER_TAKE_MAX,
      );
      this.buffer = this.filter(events);
      this.nextRevision = nextRevision;
    }
    if (this.nextRevision > current) this.currentState = 'synced';
    return true;
  }

  /** `fromRevision`: events below it were delivered already (kept out). */
  private filter(events: readonly Event[], fromRevision = 0): Event[] {
    const out: Event[] = [];
    for (const e of events) {
      if (e.kv.modRevision < fromRevision) continue;
      if (e.type === 'put' && this.filters.has('noput')) continue;
      if (e.type === 'delete' && this.filters.has('nodelete')) continue;
      out.push(this.prevKv || !e.prevKv ? e : withoutPrevKv(e));
    }
    return out;
  }

  /**
   * Called by the hub after a commit; `matching` are this watcher's events of that commit (the
   * array is shared with other watchers of the same range: read it, never keep or change it).
   */
  deliver(matching: readonly Event[], revision: number): void {
    if (this.currentState !== 'synced') return this.signal();
    const filtered = this.filter(matching, this.nextRevision);
    if (this.buffer.length + filtered.length > this.hub.eventsBufferedMax) {
      this.currentState = 'unsynced';
      return this.signal();
    }
    this.buffer.push(...filtered);
    this.nextRevision = Math.max(this.nextRevision, revision + 1);
    if (filtered.length > 0) this.signal();
  }

  /**
   * After a snapshot restore the buffer may describe a different history: re-read it. A synced
   * watcher had seen every revision up to `seenRevision` (the store's before the restore), events
   * of its own or not: it resumes after it, so an idle watcher is not taken for one that lost
   * compacted history (a defragment restores the store's own copy).
   */
  resync(seenRevision: number): void {
    if (this.currentState === 'canceled') return;
    if (this.buffer.length > 0) this.nextRevision = this.buffer[0]!.kv.modRevision;
    else if (this.currentState === 'synced')
      this.nextRevision = Math.max(this.nextRevision, seenRevision + 1);
    this.buffer = [];
    this.currentState = 'unsynced';
    this.signal();
  }

  signal(): void {
    if (this.notified || this.currentState === 'canceled') return;
    this.notified = true;
    try {
      this.onReadable();
    } catch {
      // A consumer's callback must never break the writer; it will poll again via take().
    }
  }

  matches(key: Uint8Array): boolean {
    return rangeMatches(this.key, this.rangeEnd, key);
  }
}

function rangeMatches(start: Uint8Array, rangeEnd: Uint8Array | undefined, key: Uint8Array): boolean {
  if (!rangeEnd || rangeEnd.length === 0) return Buffer.compare(start, key) === 0;
  if (Buffer.compare(key, start) < 0) return false;
  if (rangeEnd.length === 1 && rangeEnd[0] === 0) return true;
  return Buffer.compare(key, rangeEnd) < 0;
}

/**
 * The copy without prevKv that watchers not asking for it get, one per event: every such watcher
 * then holds the same object, so the API layer converts and encodes it once (api/convert.ts).
 */
const strippedEvents = new WeakMap<Event, Event>();

function withoutPrevKv(event: Event): Event {
  let stripped = strippedEvents.get(event);
  if (stripped === undefined) {
    stripped = { type: event.type, kv: event.kv };
    strippedEvents.set(event, stripped);
  }
  return stripped;
}

/** Watchers of one exact [key, rangeEnd): a commit is matched against the range once for all. */
interface RangeGroup {
  key: Uint8Array;
  rangeEnd: Uint8Array;
  watchers: Set<Watcher>;
}

function rangeGroupId(key: Uint8Array, rangeEnd: Uint8Array): string {
  return `${key.length}:${Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString('latin1')}${Buffer.from(rangeEnd.buffer, rangeEnd.byteOffset, rangeEnd.byteLength).toString('latin1')}`;
}

export class WatchHub {
  readonly eventsBufferedMax: number;
  private readonly watchers = new Map<number, Watcher>();
  /** Single-key watchers by key (latin1), so a commit finds them without scanning every watcher. */
  private readonly byKey = new Map<string, Set<Watcher>>();
  /** Range watchers grouped by their exact range: many watchers of one prefix cost one match. */
  private readonly rangeGroups = new Map<string, RangeGroup>();
  private prevKvWatchers = 0;
  private nextId = 1;

  constructor(
    readonly history: WatchHistory,
    options: WatchHubOptions,
  ) {
    this.eventsBufferedMax = options.eventsBufferedMax ?? EVENTS_BUFFERED_MAX_DEFAULT;
    if (!(this.eventsBufferedMax >= 1)) throw new RangeError('eventsBufferedMax must be at least 1');
  }

  get watcherCount(): number {
    return this.watchers.size;
  }

  /**
   * Starts a watcher. Throws CompactedError (with the compact revision) when startRevision is
   * below the compaction point. `onReadable` is called (synchronously, after a commit or soon
   * after creation) when take() has something; it must only schedule work.
   */
  watch(req: WatchCreateRequest, onReadable: () => void): Watcher {
    const current = this.history.currentRevision();
    const start = req.startRevision ?? 0;
    // As etcd's watchable store: a start below the compact revision (-1 until the first
    // compaction) is compacted, a negative one included; any other start <= 0 watches from the
    // next revision (etcd reads history from a negative start as an empty range).
    if (start !== 0 && start < this.history.compactRevision())
      throw new CompactedError(this.history.compactRevision());
    const nextRevision = start <= 0 ? current + 1 : start;
    const synced = nextRevision > current;
    const w = new Watcher(
      this.nextId++,
      Buffer.from(req.key),
      req.rangeEnd && req.rangeEnd.length > 0 ? Buffer.from(req.rangeEnd) : undefined,
      req.prevKv ?? false,
      new Set(req.filters ?? []),
      nextRevision,
      synced,
      this,
      onReadable,
    );
    this.watchers.set(w.id, w);
    if (w.prevKv) this.prevKvWatchers++;
    if (w.rangeEnd === undefined) {
      const k = Buffer.from(w.key).toString('latin1');
      let set = this.byKey.get(k);
      if (!set) this.byKey.set(k, (set = new Set()));
      set.add(w);
    } else {
      const id = rangeGroupId(w.key, w.rangeEnd);
      let group = this.rangeGroups.get(id);
      if (!group)
        this.rangeGroups.set(id, (group = { key: w.key, rangeEnd: w.rangeEnd, watchers: new Set() }));
      group.watchers.add(w);
    }
    if (!synced) queueMicrotask(() => w.signal());
    return w;
  }

  get(id: number): Watcher | undefined {
    return this.watchers.get(id);
  }

  remove(w: Watcher): void {
    if (!this.watchers.delete(w.id)) return;
    if (w.prevKv) this.prevKvWatchers--;
    if (w.rangeEnd !== undefined) {
      const id = rangeGroupId(w.key, w.rangeEnd);
      const group = this.rangeGroups.get(id);
      if (group?.watchers.delete(w) && group.watchers.size === 0) this.rangeGroups.delete(id);
      return;
    }
    const k = Buffer.from(w.key).toString('latin1');
    const set = this.byKey.get(k);
    if (set?.delete(w) && set.size === 0) this.byKey.delete(k);
  }

  /** Cheap per-batch checks: collecting events for a hub with only lagging watchers is harmless. */
  wantsEvents(): boolean {
    return this.watchers.size > 0;
  }

  wantsPrevKv(): boolean {
    return this.prevKvWatchers > 0;
  }

  /** Called by the keyspace after each committed batch with its events in revision order. */
  onCommit(events: Event[], revision: number): void {
    // Only watchers with matching events need a delivery: a watcher that sees no event in a
    // commit loses nothing by keeping its older nextRevision (re-reading those revisions from
    // history finds nothing for it).
    // Every watcher sits in exactly one set (its key's, or its range group's), so the events
    // matched per set are exactly each member watcher's events, and one list serves them all.
    const perSet = new Map<Set<Watcher>, Event[]>();
    const add = (set: Set<Watcher>, e: Event): void => {
      const list = perSet.get(set);
      if (list) list.push(e);
      else perSet.set(set, [e]);
    };
    for (const e of events) {
      const exact = this.byKey.get(
        Buffer.from(e.kv.key.buffer, e.kv.key.byteOffset, e.kv.key.byteLength).toString('latin1'),
      );
      if (exact) add(exact, e);
      for (const group of this.rangeGroups.values()) {
        if (rangeMatches(group.key, group.rangeEnd, e.kv.key)) add(group.watchers, e);
      }
    }
    // deliver() only schedules its consumer (onReadable must not do more), so the sets do not
    // change under this loop.
    for (const [set, matching] of perSet) for (const w of set) w.deliver(matching, revision);
  }

  /** `previousRevision`: the store's revision before the restore. */
  onRestore(previousRevision: number): void {
    for (const w of [...this.watchers.values()]) w.resync(previousRevision);
  }

  closeAll(): void {
    for (const w of [...this.watchers.values()]) w.cancel();
  }
}
