// One etcd Watch stream: many watchers multiplexed over one bidirectional stream. Transport-free
// (the gRPC server and the JSON gateway both drive it). Responses follow etcd's server:
// - create: {created, watch_id}; a refused create: {created, canceled, cancel_reason, watch_id: -1};
// - a start revision lost to compaction: {canceled, compact_revision} (clients resume from it);
//   the watcher keeps its ID until the client cancels it, as in etcd;
// - cancel: {canceled, watch_id}; progress request: {header.revision, watch_id: -1};
// - progress_notify watchers get empty responses carrying the current revision when idle;
// - fragment: a revision too big for one message goes out in pieces, fragment=true on all but
//   the last.
// Flow control: `send` answers whether the transport can take more. Once it says no, watchers
// asking BackendWatcher's listener ready() hear false and queue up; drained() (the transport's
// 'drain') resumes them in the order they were stopped, so busy watchers cannot starve others.

import { CompactedError } from '../mvcc/errors.js';
import type { Event } from '../mvcc/types.js';
import type {
  BackendWatcher,
  Credentials,
  EtcdBackend,
  HeaderInfo,
  WatchFilter,
} from '../services/backend.js';
import { EtcdError } from '../wire/etcd-errors.js';
import { eventToWire, headerToWire, wireToNumber } from './convert.js';
import type { ClientLimitStats } from './limit-stats.js';
import type {
  WireEvent,
  WireHeader,
  WireWatchCreateRequest,
  WireWatchRequest,
  WireWatchResponse,
} from './wire.js';

export interface WatchSessionOptions {
  /** How often idle progress_notify watchers hear the current revision (etcd: 10 minutes). */
  progressNotifyIntervalMs: number;
  /** A watch response bigger than this is split when the watcher asked for fragments. */
  fragmentBytesMax: number;
  /** Watchers one stream may hold; creating more fails the create (--max-watchers-per-stream). */
  watchersPerStreamMax: number;
  /** Counts the creates refused by watchersPerStreamMax (one per client port). */
  limitStats?: ClientLimitStats;
}

export const defaultWatchSessionOptions: WatchSessionOptions = {
  progressNotifyIntervalMs: 10 * 60 * 1000,
  fragmentBytesMax: 1.5 * 1024 * 1024,
  watchersPerStreamMax: 10_000,
};

interface SessionWatcher {
  id: number;
  filterPut: boolean;
  filterDelete: boolean;
  progressNotify: boolean;
  fragment: boolean;
  /** Set when events went out since the last progress tick (then no notify is due). */
  sentSinceTick: boolean;
  /**
   * Compacted watchers stay on the stream, silent, until the client cancels them: etcd keeps
   * their ID taken (auto IDs skip it, a create with it is a duplicate) and answers the cancel.
   */
  compacted: boolean;
  backend?: BackendWatcher;
}

/**
 * The last response header made, frozen: every watcher's response of one revision shares it, so
 * the codec encodes it once (wire/etcd-codecs.ts). Reused only when every field matches.
 */
let lastHeader: { info: HeaderInfo; wire: WireHeader } | undefined;

function sharedHeaderToWire(info: HeaderInfo): WireHeader {
  const last = lastHeader;
  if (
    last !== undefined &&
    last.info.revision === info.revision &&
    last.info.raftTerm === info.raftTerm &&
    last.info.memberId === info.memberId &&
    last.info.clusterId === info.clusterId
  )
    return last.wire;
  const wire = Object.freeze(headerToWire(info));
  lastHeader = { info: { ...info }, wire };
  return wire;
}

/** clientv3's InvalidWatchID: a progress response meant for every watcher of the stream. */
const broadcastWatchId = -1;
const eventOverheadBytes = 48;

/**
 * Hands one response to the transport. False means its buffer is full: stop producing until
 * WatchSession.drained(). (void counts as true, for transports without backpressure.)
 */
export type WatchSend = (response: WireWatchResponse) => boolean | undefined;

export class WatchSession {
  private readonly watchers = new Map<number, SessionWatcher>();
  private nextWatchId = 0;
  private readonly progressTimer: NodeJS.Timeout;
  private closed = false;
  /** Set when send() reported a full transport; cleared by drained(). */
  private blocked = false;
  /** Watchers told "not ready" while blocked, in the order they were stopped (insertion order). */
  private readonly stalled = new Set<SessionWatcher>();
  private lastDelivered: SessionWatcher | undefined;

  constructor(
    private readonly backend: EtcdBackend,
    private readonly send: WatchSend,
    private readonly options: WatchSessionOptions = defaultWatchSessionOptions,
    /**
     * Ends the transport with an error status. Called (once, after the session closed itself)
     * when the backend throws where nobody awaits it: a request handler, a watcher callback or
     * the progress timer (e.g. the server stopping). Without it such a throw would be uncaught.
     */
    private readonly onFailure: (error: unknown) => void = () => {},
    /**
     * Why the stream's caller may not watch [key, rangeEnd), or undefined when it may (etcd's
     * isWatchPermitted: an invalid token, no user, an old auth revision, no read permission).
     * Absent: every watch is permitted.
     */
    private readonly permitted?: (key: Uint8Array, rangeEnd: Uint8Array) => string | undefined,
  ) {
    this.progressTimer = setInterval(
      () => this.guard(() => this.notifyProgress()),
      options.progressNotifyIntervalMs,
    );
    this.progressTimer.unref();
  }

  /** Runs `work`; a throw closes the session and reports it instead of escaping to the event loop. */
  private guard(work: () => void): void {
    try {
      work();
    } catch (error) {
      if (this.closed) return;
      this.close();
      this.onFailure(error);
    }
  }

  get watcherCount(): number {
    return this.watchers.size;
  }

  handle(request: WireWatchRequest): void {
    if (this.closed) return;
    this.guard(() => {
      if (request.create_request) this.create(request.create_request);
      else if (request.cancel_request) this.cancel(wireToNumber(request.cancel_request.watch_id));
      else if (request.progress_request) this.reply(this.backend.header(), { watch_id: broadcastWatchId });
    });
  }

  /** Whether the transport reported a full buffer and has not drained since. */
  get isBlocked(): boolean {
    return this.blocked;
  }

  /** The transport can take more again: resume the watchers that were stopped, oldest first. */
  drained(): void {
    if (this.closed) return;
    this.blocked = false;
    // The watcher that filled the transport last goes to the back of the line: otherwise it
    // would take first again after every drain and starve the others (round-robin instead).
    const last = this.lastDelivered;
    const resumed = [...this.stalled].filter((w) => w !== last);
    if (last !== undefined && this.stalled.has(last)) resumed.push(last);
    this.stalled.clear();
    for (const watcher of resumed) {
      if (this.watchers.get(watcher.id) === watcher) watcher.backend?.resume?.();
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.progressTimer);
    for (const watcher of this.watchers.values()) watcher.backend?.cancel();
    this.watchers.clear();
    this.stalled.clear();
    this.lastDelivered = undefined;
  }

  private create(request: WireWatchCreateRequest): void {
    const requestedId = wireToNumber(request.watch_id);
    const refusal = this.refusePermission(request) ?? emptyRange(request) ?? this.refuseCreate(requestedId);
    if (refusal !== undefined) {
      // etcd answers a refused create with watch_id -1: no watcher exists under any ID.
      this.reply(this.backend.header(), {
        watch_id: broadcastWatchId,
        created: true,
        canceled: true,
        cancel_reason: refusal,
      });
      return;
    }
    const id = requestedId === 0 ? this.allocateId() : requestedId;
    const watcher: SessionWatcher = {
      id,
      filterPut: request.filters.includes('NOPUT'),
      filterDelete: request.filters.includes('NODELETE'),
      progressNotify: request.progress_notify,
      fragment: request.fragment,
      sentSinceTick: false,
      compacted: false,
    };
    this.watchers.set(id, watcher);
    this.reply(this.backend.header(), { watch_id: id, created: true });
    this.startBackendWatcher(watcher, request);
  }

  private refusePermission(request: WireWatchCreateRequest): string | undefined {
    return this.permitted?.(request.key, request.range_end);
  }

  /** etcd takes any client-chosen ID but 0 (which asks the server to choose), negative ones too. */
  private refuseCreate(requestedId: number): string | undefined {
    if (requestedId !== 0 && this.watchers.has(requestedId)) {
      return 'mvcc: duplicate watch ID provided on the WatchStream';
    }
    if (this.watchers.size >= this.options.watchersPerStreamMax) {
      this.options.limitStats?.refuse('watchers-per-stream');
      return `concord: more than ${this.options.watchersPerStreamMax} watchers on one stream; open another stream`;
    }
    return undefined;
  }

  private allocateId(): number {
    while (this.watchers.has(this.nextWatchId)) this.nextWatchId++;
    return this.nextWatchId++;
  }

  private startBackendWatcher(watcher: SessionWatcher, request: WireWatchCreateRequest): void {
    // etcd watches from the smallest key when none is given.
    const key = request.key.length === 0 ? Buffer.from([0]) : request.key;
    try {
      watcher.backend = this.backend.watch(
        {
          key,
          rangeEnd: request.range_end,
          startRevision: wireToNumber(request.start_revision),
          prevKv: request.prev_kv,
          filters: backendFilters(watcher),
        },
        {
          onEvents: (events, revision) => this.guard(() => this.deliver(watcher, events, revision)),
          onCompacted: (compactRevision) => this.guard(() => this.compacted(watcher, compactRevision)),
          ready: () => this.ready(watcher),
        },
      );
    } catch (error) {
      if (error instanceof CompactedError) {
        // etcd finds the compaction in its next watcher sync, not in the create: a cancel sent
        // right behind the create still wins and gets a plain {canceled} answer.
        const compactRevision = error.compactRevision;
        setImmediate(() => this.guard(() => this.compacted(watcher, compactRevision)));
        return;
      }
      this.watchers.delete(watcher.id);
      const reason = error instanceof Error ? error.message : String(error);
      this.reply(this.backend.header(), { watch_id: watcher.id, canceled: true, cancel_reason: reason });
    }
  }

  private ready(watcher: SessionWatcher): boolean {
    if (!this.blocked) return true;
    this.stalled.add(watcher);
    return false;
  }

  private cancel(id: number): void {
    const watcher = this.watchers.get(id);
    // etcd sends nothing for an unknown watch ID.
    if (watcher === undefined) return;
    watcher.backend?.cancel();
    this.watchers.delete(id);
    this.stalled.delete(watcher);
    this.reply(this.backend.header(), { watch_id: id, canceled: true });
  }

  private compacted(watcher: SessionWatcher, compactRevision: number): void {
    if (this.closed || this.watchers.get(watcher.id) !== watcher || watcher.compacted) return;
    watcher.compacted = true;
    this.stalled.delete(watcher);
    watcher.backend?.cancel();
    // etcd's compacted answer carries a header with revision 0, and counts as canceled only when
    // the compact revision is not 0 (its sendLoop: canceled = CompactRevision != 0).
    this.reply(
      { ...this.backend.header(), revision: 0 },
      { watch_id: watcher.id, canceled: compactRevision !== 0, compact_revision: compactRevision },
    );
  }

  private deliver(watcher: SessionWatcher, events: Event[], revision: number): void {
    if (this.closed || this.watchers.get(watcher.id) !== watcher || watcher.compacted) return;
    const kept =
      watcher.filterPut || watcher.filterDelete
        ? events.filter((e) => !(e.type === 'put' ? watcher.filterPut : watcher.filterDelete))
        : events;
    if (kept.length === 0) return;
    watcher.sentSinceTick = true;
    this.lastDelivered = watcher;
    const current = this.backend.header();
    const header = current.revision === revision ? current : { ...current, revision };
    // eventToWire hands every watcher of an event the same frozen object: encoded once.
    const wireEvents = kept.map(eventToWire);
    if (!watcher.fragment) {
      // The hot path of a fan-out: one literal, no spread of defaults.
      this.sendResponse({
        header: sharedHeaderToWire(header),
        watch_id: watcher.id,
        created: false,
        canceled: false,
        compact_revision: 0,
        cancel_reason: '',
        fragment: false,
        events: wireEvents,
      });
      return;
    }
    const pieces = splitEvents(wireEvents, this.options.fragmentBytesMax);
    pieces.forEach((piece, index) => {
      const fragment = index < pieces.length - 1;
      this.reply(header, { watch_id: watcher.id, events: piece, fragment });
    });
  }

  private notifyProgress(): void {
    const header = this.backend.header();
    for (const watcher of this.watchers.values()) {
      const due =
        watcher.progressNotify &&
        !watcher.compacted &&
        !watcher.sentSinceTick &&
        watcher.backend?.synced === true;
      watcher.sentSinceTick = false;
      if (due) this.reply(header, { watch_id: watcher.id });
    }
  }

  private reply(header: HeaderInfo, fields: Partial<WireWatchResponse>): void {
    this.sendResponse({
      header: sharedHeaderToWire(header),
      watch_id: 0,
      created: false,
      canceled: false,
      compact_revision: 0,
      cancel_reason: '',
      fragment: false,
      events: [],
      ...fields,
    });
  }

  private sendResponse(response: WireWatchResponse): void {
    if (this.send(response) === false) this.blocked = true;
  }
}

/**
 * etcd's watchStream.Watch refuses a range whose end is not after its key (an end of "\0" means
 * "from the key on", an empty key means "\0"), before it looks at the watch ID.
 */
function emptyRange(request: WireWatchCreateRequest): string | undefined {
  const end = request.range_end;
  if (end.length === 0 || (end.length === 1 && end[0] === 0)) return undefined;
  const key = request.key.length === 0 ? Buffer.from([0]) : request.key;
  return Buffer.compare(key, end) >= 0 ? 'mvcc: watcher range is empty' : undefined;
}

/** The session filters too (for backends that ignore these); the hub skips them at the source. */
function backendFilters(watcher: SessionWatcher): WatchFilter[] {
  const filters: WatchFilter[] = [];
  if (watcher.filterPut) filters.push('noput');
  if (watcher.filterDelete) filters.push('nodelete');
  return filters;
}

function eventBytes(event: WireEvent): number {
  const prev = event.prev_kv ? event.prev_kv.key.length + event.prev_kv.value.length : 0;
  return eventOverheadBytes + event.kv.key.length + event.kv.value.length + prev;
}

/** Greedy split keeping each piece under the limit; a single oversized event travels alone. */
const grpcCodeNames: Record<number, string> = {
  3: 'InvalidArgument',
  7: 'PermissionDenied',
  16: 'Unauthenticated',
};
const watchRefusalCodes: ReadonlySet<string> = new Set(['invalidAuthToken', 'userEmpty', 'authOldRevision']);

/** etcd's cancel_reason for a refused watch: the gRPC error's text ("rpc error: code = … desc = …"). */
function watchRefusalReason(error: unknown): string {
  const refusal =
    error instanceof EtcdError && watchRefusalCodes.has(error.code)
      ? error
      : new EtcdError('permissionDenied');
  return `rpc error: code = ${grpcCodeNames[refusal.grpcCode]} desc = ${refusal.message}`;
}

/** The `permitted` callback of a WatchSession for a caller with these credentials. */
export function watchPermission(
  backend: EtcdBackend,
  credentials: Credentials,
): ((key: Uint8Array, rangeEnd: Uint8Array) => string | undefined) | undefined {
  const auth = backend.auth;
  if (auth === undefined) return undefined;
  return (key, rangeEnd) => {
    try {
      const info =
        credentials.token === undefined && credentials.commonName === undefined
          ? undefined
          : auth.resolve(credentials);
      if (auth.enabled()) auth.checkRead(info, key, rangeEnd);
      return undefined;
    } catch (error) {
      return watchRefusalReason(error);
    }
  };
}

export function splitEvents(events: WireEvent[], bytesMax: number): WireEvent[][] {
  const pieces: WireEvent[][] = [];
  let current: WireEvent[] = [];
  let currentBytes = 0;
  for (const event of events) {
    const size = eventBytes(event);
    if (current.length > 0 && currentBytes + size > bytesMax) {
      pieces.push(current);
      current = [];
      currentBytes = 0;
    }
    current.push(event);
    currentBytes += size;
  }
  if (current.length > 0 || pieces.length === 0) pieces.push(current);
  return pieces;
}
