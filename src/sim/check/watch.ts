// Watch checker: compares what each watcher received with the keyspace's full event history
// (read once at the end of the test). The rules are etcd's watch guarantees:
//   - ordered: events arrive in strictly increasing (revision, order within the revision);
//   - unique: no event is delivered twice to one watcher (across reconnects too);
//   - reliable: no event in the watched range is skipped between the start revision and the
//     last delivered event (or the revision the watcher is known to have caught up to);
//   - resumable: a watch (re)created from revision R starts exactly at the first matching
//     event with revision >= R, and a client resuming after a disconnect leaves no gap;
//   - compaction: creating a watch from a revision older than a finished compaction yields the
//     compacted error (and no events), and that error is never invented.

import { formatValue, HistoryFormatError, type OpStatus } from './history.js';
import { AnomalyCollector, type Verdict } from './verdict.js';

export type WatchEventType = 'put' | 'delete';

export interface KeyspaceEvent {
  revision: number;
  /** Position among the events of one revision (a transaction can change several keys). */
  subOrder: number;
  key: string;
  type: WatchEventType;
  /** Compared when both sides carry it. */
  value?: string;
}

export type WatchFilter = 'noput' | 'nodelete';

/** One watch stream as created on the server: the first, or one resumption after a disconnect. */
export interface WatchSegment {
  /** Requested start revision; 0 means "from now" (then createdRevision tells where now was). */
  startRevision: number;
  /** When the create request was sent. */
  createdAt: number;
  /** Header revision of the create response, when known. */
  createdRevision?: number;
  /** Events in arrival order. */
  events: readonly KeyspaceEvent[];
  /** Set when the server answered with the compacted error (its compact_revision). */
  compactRevision?: number;
  /** The stream is known to have delivered every matching event up to this revision. */
  caughtUpThrough?: number;
}

export interface WatcherRecord {
  id: string;
  key: string;
  /** etcd semantics: absent or '' = the single key; '\0' = every key >= key; else [key, rangeEnd). */
  rangeEnd?: string;
  filters?: readonly WatchFilter[];
  segments: readonly WatchSegment[];
}

export interface CompactionRecord {
  revision: number;
  invokeTime: number;
  completeTime?: number;
  status: OpStatus;
}

export interface WatchHistory {
  /** Every committed event, from a full history read at the end. */
  keyspace: readonly KeyspaceEvent[];
  /** The keyspace list is complete from this revision on (older ones were compacted); default 1. */
  keyspaceFromRevision?: number;
  compactions?: readonly CompactionRecord[];
  watchers: readonly WatcherRecord[];
}

function eventId(event: KeyspaceEvent): string {
  return `${event.revision}.${event.subOrder}`;
}

function compareEvents(a: KeyspaceEvent, b: KeyspaceEvent): number {
  return a.revision - b.revision || a.subOrder - b.subOrder;
}

function describeEvent(event: KeyspaceEvent): string {
  const value = event.value === undefined ? '' : ` = ${formatValue(event.value)}`;
  return `${event.type} "${event.key}"${value} @${event.revision}.${event.subOrder}`;
}

export function watchMatches(watcher: WatcherRecord, event: KeyspaceEvent): boolean {
  if (watcher.filters?.includes(event.type === 'put' ? 'noput' : 'nodelete')) return false;
  const end = watcher.rangeEnd ?? '';
  if (end === '') return event.key === watcher.key;
  if (end === '\0') return event.key >= watcher.key;
  return event.key >= watcher.key && event.key < end;
}

function indexKeyspace(keyspace: readonly KeyspaceEvent[]): Map<string, KeyspaceEvent> {
  const byId = new Map<string, KeyspaceEvent>();
  for (const event of keyspace) {
    const id = eventId(event);
    if (byId.has(id))
      throw new HistoryFormatError('HISTORY_BAD_OPERATION', `keyspace event ${id} listed twice`);
    byId.set(id, event);
  }
  return byId;
}

/** What the checker knows for one watcher while walking its segments. */
interface WatcherContext {
  watcher: WatcherRecord;
  anomalies: AnomalyCollector;
  keyspaceById: Map<string, KeyspaceEvent>;
  keyspaceFrom: number;
  compactions: readonly CompactionRecord[];
  /** Matching keyspace events in order, and each one's position. */
  expected: KeyspaceEvent[];
  positionById: Map<string, number>;
  delivered: Set<string>;
  last: KeyspaceEvent | undefined;
  /** Position after the furthest expected event the stream so far must have delivered. */
  highWater: number | undefined;
}

function firstPositionFrom(ctx: WatcherContext, revision: number): number {
  const index = ctx.expected.findIndex((e) => e.revision >= revision);
  return index === -1 ? ctx.expected.length : index;
}

function report(
  ctx: WatcherContext,
  code: Parameters<AnomalyCollector['add']>[0]['code'],
  message: string,
): void {
  ctx.anomalies.add({
    code,
    subject: ctx.watcher.id,
    opIds: [],
    message: `watcher ${ctx.watcher.id}: ${message}`,
  });
}

function listRevisions(events: readonly KeyspaceEvent[]): string {
  const shown = events.slice(0, 5).map(describeEvent).join(', ');
  return events.length > 5 ? `${shown} and ${events.length - 5} more` : shown;
}

function effectiveStart(segment: WatchSegment): number | undefined {
  if (segment.startRevision > 0) return segment.startRevision;
  return segment.createdRevision === undefined ? undefined : segment.createdRevision + 1;
}

/** Returns true when the segment was (rightly or wrongly) answered with the compacted error. */
function checkCompaction(
  ctx: WatcherContext,
  segment: WatchSegment,
  start: number | undefined,
  index: number,
): boolean {
  const what = `segment ${index} (start revision ${segment.startRevision})`;
  if (segment.compactRevision !== undefined) {
    const real = ctx.compactions.some(
      (c) =>
        c.status !== 'fail' &&
        c.revision === segment.compactRevision &&
        (start === undefined || c.revision > start),
    );
    if (!real) {
      report(
        ctx,
        'WATCH_SPURIOUS_COMPACTION',
        `${what} got compacted at ${segment.compactRevision}, but no such compaction covers its start`,
      );
    }
    if (segment.events.length > 0) {
      report(
        ctx,
        'WATCH_EVENTS_AFTER_COMPACTION',
        `${what} got the compacted error yet delivered ${segment.events.length} events`,
      );
    }
    return true;
  }
  if (start === undefined) return false;
  const required = ctx.compactions.find(
    (c) =>
      c.status === 'ok' &&
      c.completeTime !== undefined &&
      c.completeTime < segment.createdAt &&
      c.revision > start,
  );
  if (required) {
    report(
      ctx,
      'WATCH_COMPACTION_NOT_REPORTED',
      `${what} created at ${segment.createdAt} after compaction to ${required.revision} finished at ${required.completeTime}, but no compacted error came`,
    );
  }
  return false;
}

/** Checks one delivered event against the keyspace and the watch range; true if it is a known, matching event. */
function checkAgainstKeyspace(ctx: WatcherContext, event: KeyspaceEvent): boolean {
  if (event.revision < ctx.keyspaceFrom) return false;
  const truth = ctx.keyspaceById.get(eventId(event));
  if (!truth) {
    report(
      ctx,
      'WATCH_UNKNOWN_EVENT',
      `received ${describeEvent(event)}, which the keyspace history does not contain`,
    );
    return false;
  }
  const valueDiffers = event.value !== undefined && truth.value !== undefined && event.value !== truth.value;
  if (truth.key !== event.key || truth.type !== event.type || valueDiffers) {
    report(
      ctx,
      'WATCH_EVENT_MISMATCH',
      `received ${describeEvent(event)}, but the keyspace has ${describeEvent(truth)}`,
    );
    return false;
  }
  if (!watchMatches(ctx.watcher, event)) {
    report(
      ctx,
      'WATCH_EVENT_OUT_OF_RANGE',
      `received ${describeEvent(event)}, outside its key range or filters`,
    );
    return false;
  }
  return true;
}

/** Order and uniqueness over the watcher's whole stream; true when the event is new and in order. */
function checkOrder(ctx: WatcherContext, event: KeyspaceEvent): boolean {
  const id = eventId(event);
  if (ctx.delivered.has(id)) {
    report(ctx, 'WATCH_DUPLICATE_EVENT', `received ${describeEvent(event)} twice`);
    return false;
  }
  ctx.delivered.add(id);
  if (ctx.last && compareEvents(event, ctx.last) < 0) {
    report(ctx, 'WATCH_OUT_OF_ORDER', `received ${describeEvent(event)} after ${describeEvent(ctx.last)}`);
    return false;
  }
  ctx.last = event;
  return true;
}

/** Positions (in ctx.expected) of the new, known, in-range events the segment delivered at or after its start. */
function deliveredPositions(
  ctx: WatcherContext,
  segment: WatchSegment,
  start: number | undefined,
  index: number,
): number[] {
  const positions: number[] = [];
  for (const event of segment.events) {
    const fresh = checkOrder(ctx, event);
    const known = checkAgainstKeyspace(ctx, event);
    if (!fresh) continue;
    if (start !== undefined && event.revision < start) {
      report(
        ctx,
        'WATCH_EVENT_BEFORE_START',
        `segment ${index} from revision ${start} received ${describeEvent(event)}`,
      );
      continue;
    }
    const position = ctx.positionById.get(eventId(event));
    if (known && position !== undefined) positions.push(position);
  }
  return positions;
}

/**
 * Every matching event between the segment's start and the furthest point it is known to have
 * reached must have been delivered to the watcher (in this segment or, before a resumption,
 * an earlier one). Checked after the whole segment so late (out-of-order) arrivals are not
 * also counted as missing.
 */
function checkGaps(
  ctx: WatcherContext,
  segment: WatchSegment,
  start: number | undefined,
  index: number,
  positions: number[],
): void {
  const from =
    start !== undefined
      ? firstPositionFrom(ctx, start)
      : positions.length > 0
        ? Math.min(...positions)
        : undefined;
  if (from === undefined) return;
  let to = positions.length > 0 ? Math.max(...positions) + 1 : from;
  if (segment.caughtUpThrough !== undefined)
    to = Math.max(to, firstPositionFrom(ctx, segment.caughtUpThrough + 1));
  if (index > 0 && ctx.highWater !== undefined && from > ctx.highWater) {
    report(
      ctx,
      'WATCH_WRONG_RESUME',
      `resumed from revision ${segment.startRevision} after last receiving ${ctx.last ? describeEvent(ctx.last) : 'nothing'}, skipping ${listRevisions(ctx.expected.slice(ctx.highWater, from))}`,
    );
  }
  const missing = ctx.expected.slice(from, to).filter((e) => !ctx.delivered.has(eventId(e)));
  if (missing.length > 0) {
    const firstDelivered = positions.length > 0 ? ctx.expected[positions[0]!]! : undefined;
    const beforeFirst = firstDelivered !== undefined && compareEvents(missing[0]!, firstDelivered) < 0;
    const reach =
      segment.caughtUpThrough !== undefined ? ` (caught up through ${segment.caughtUpThrough})` : '';
    report(
      ctx,
      index > 0 && beforeFirst ? 'WATCH_WRONG_RESUME' : 'WATCH_MISSING_EVENT',
      `segment ${index} from revision ${segment.startRevision}${reach} never received ${listRevisions(missing)}`,
    );
  }
  ctx.highWater = Math.max(ctx.highWater ?? 0, to);
}

function checkSegment(ctx: WatcherContext, segment: WatchSegment, index: number): void {
  const start = effectiveStart(segment);
  if (checkCompaction(ctx, segment, start, index)) {
    // Compacted events are gone for good; the next resumption is not blamed for them.
    ctx.highWater = undefined;
    return;
  }
  const positions = deliveredPositions(ctx, segment, start, index);
  checkGaps(ctx, segment, start, index, positions);
}

export function checkWatches(history: WatchHistory): Verdict {
  const keyspace = [...history.keyspace].sort(compareEvents);
  const keyspaceById = indexKeyspace(keyspace);
  const anomalies = new AnomalyCollector();
  let eventsDelivered = 0;
  for (const watcher of history.watchers) {
    const expected = keyspace.filter((e) => watchMatches(watcher, e));
    const ctx: WatcherContext = {
      watcher,
      anomalies,
      keyspaceById,
      keyspaceFrom: history.keyspaceFromRevision ?? 1,
      compactions: history.compactions ?? [],
      expected,
      positionById: new Map(expected.map((e, i) => [eventId(e), i])),
      delivered: new Set(),
      last: undefined,
      highWater: undefined,
    };
    watcher.segments.forEach((segment, index) => {
      eventsDelivered += segment.events.length;
      checkSegment(ctx, segment, index);
    });
  }
  return anomalies.toVerdict(
    'watch',
    `${history.watchers.length} watchers, ${eventsDelivered} events delivered in order, without gaps or duplicates.`,
  );
}
