// etcd's put and delete-range over the record store, within one request's revision: the versions
// they write, their responses (prev_kv) and the watch events they produce.

import type { LiveEntry } from './encoding.js';
import { KeyNotFoundError } from './errors.js';
import { toKeyRange } from './key-range.js';
import { EMPTY, type RecordStore, tombstoneKv } from './store.js';
import type {
  DeleteRangeRequest,
  DeleteRangeResponse,
  Event,
  KeyValue,
  PutRequest,
  PutResponse,
} from './types.js';

/** Per-revision write state: all changes of one request share main = beginRevision + 1. */
export interface WriteContext {
  beginRevision: number;
  sub: number;
  events: Event[] | undefined;
  prevKvInEvents: boolean;
  /** Keys this request changed, as they were before it (null: absent); for events' prevKv. */
  before?: Map<string, KeyValue | null>;
}

/** The revision a request's response reports: its own if it wrote anything, else the one it read. */
export function responseRevision(ctx: WriteContext): number {
  return ctx.beginRevision + (ctx.sub > 0 ? 1 : 0);
}

export function put(store: RecordStore, req: PutRequest, ctx: WriteContext): PutResponse {
  const live = store.getLive(req.key);
  if ((req.ignoreValue || req.ignoreLease) && !live) throw new KeyNotFoundError();
  const prev =
    live && (req.prevKv || req.ignoreValue || ctx.prevKvInEvents)
      ? store.liveKv(req.key, live, true)
      : undefined;
  const value = req.ignoreValue ? prev!.value : (req.value ?? EMPTY);
  const lease = req.ignoreLease ? live!.lease : (req.lease ?? 0n);
  const main = ctx.beginRevision + 1;
  const sub = ctx.sub++;
  const createRevision = live ? live.createRevision : main;
  const version = live ? live.version + 1 : 1;
  store.writePut(req.key, { main, sub, createRevision, version, lease }, value, live?.lease ?? 0n);
  if (ctx.events) {
    const kv = {
      key: Buffer.from(req.key),
      createRevision,
      modRevision: main,
      version,
      value: Buffer.from(value),
      lease,
    };
    const prevKv = eventPrev(ctx, req.key, prev, createRevision === main);
    ctx.events.push(prevKv ? { type: 'put', kv, prevKv } : { type: 'put', kv });
  }
  const response: PutResponse = { revision: main };
  if (req.prevKv && prev) response.prevKv = prev;
  return response;
}

export function deleteRange(
  store: RecordStore,
  req: DeleteRangeRequest,
  ctx: WriteContext,
): DeleteRangeResponse {
  const targets = store.liveInRange(toKeyRange(req.key, req.rangeEnd));
  const prevKvs: KeyValue[] = [];
  for (const { key, live } of targets) {
    const prev = req.prevKv || ctx.prevKvInEvents ? store.liveKv(key, live, true) : undefined;
    if (req.prevKv && prev) prevKvs.push(prev);
    deleteKey(store, key, live, ctx, prev);
  }
  const changed = targets.length > 0 || ctx.sub > 0;
  return { revision: ctx.beginRevision + (changed ? 1 : 0), deleted: targets.length, prevKvs };
}

function deleteKey(
  store: RecordStore,
  key: Uint8Array,
  live: LiveEntry,
  ctx: WriteContext,
  prev: KeyValue | undefined,
): void {
  const main = ctx.beginRevision + 1;
  const sub = ctx.sub++;
  store.writeTombstone(key, main, sub, live.lease);
  if (ctx.events) {
    const kv = tombstoneKv(Buffer.from(key), main);
    const prevKv = eventPrev(ctx, key, prev, false);
    ctx.events.push(prevKv ? { type: 'delete', kv, prevKv } : { type: 'delete', kv });
  }
}

/**
 * etcd fills an event's prev_kv with the key as of the revision before the event (before the
 * whole txn, not before an earlier op of it), and none for a create event.
 */
function eventPrev(
  ctx: WriteContext,
  key: Uint8Array,
  current: KeyValue | undefined,
  createEvent: boolean,
): KeyValue | undefined {
  const id = Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString('latin1');
  ctx.before ??= new Map();
  let before = ctx.before.get(id);
  if (before === undefined) {
    before = current ?? null;
    ctx.before.set(id, before);
  }
  return createEvent ? undefined : (before ?? undefined);
}
