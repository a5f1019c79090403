// The watch hub's view of history: the events of a key range between two revisions, read from the
// revision records, with etcd's prev_kv.

import { logicallyPresent } from './compaction.js';
import { decodeRevKey, encodeRevKey, KIND_PUT, type StoredRecord } from './encoding.js';
import { invariant } from './errors.js';
import { inRange, toKeyRange } from './key-range.js';
import type { KeyspaceState } from './state.js';
import { tombstoneKv, versionKv } from './store.js';
import type { Event, KeyValue } from './types.js';

/**
 * Events with revision in [fromRevision, toRevision] for keys in [key, rangeEnd), oldest first.
 * Stops at the first revision boundary after `eventsMax` events or `recordsScannedMax` scanned
 * records: a revision's events are always delivered together, as etcd does. Returns the next
 * revision still to read.
 */
export function readEvents(
  state: KeyspaceState,
  key: Uint8Array,
  rangeEnd: Uint8Array | undefined,
  fromRevision: number,
  toRevision: number,
  prevKv: boolean,
  eventsMax: number,
  recordsScannedMax = Number.POSITIVE_INFINITY,
): { events: Event[]; nextRevision: number } {
  invariant(fromRevision >= state.compactRevision, 'reading compacted history');
  const range = toKeyRange(key, rangeEnd);
  const events: Event[] = [];
  let nextRevision = toRevision + 1;
  let lastMain = -1;
  let scanned = 0;
  let lastScannedMain = -1;
  const iter = state.store.dbs.revs.getRange({
    start: encodeRevKey(fromRevision, 0),
    end: encodeRevKey(toRevision + 1, 0),
  });
  for (const { key: revKey, value } of iter) {
    const { main, sub } = decodeRevKey(revKey);
    if (events.length >= eventsMax && main !== lastMain) {
      nextRevision = main;
      break;
    }
    // Bounds the work of one call for a watcher whose keys rarely change in a busy history.
    if (scanned >= recordsScannedMax && main !== lastScannedMain) {
      nextRevision = main;
      break;
    }
    scanned++;
    lastScannedMain = main;
    const r = state.store.loadRecord(revKey, value);
    if (!inRange(range, r.key) || !logicallyPresent(state, r.key, main, sub, r.kind)) continue;
    lastMain = main;
    events.push(eventFromRecord(state, r, main, prevKv));
  }
  return { events, nextRevision };
}

function eventFromRecord(state: KeyspaceState, r: StoredRecord, main: number, prevKv: boolean): Event {
  const kv = r.kind === KIND_PUT ? versionKv(r, main) : tombstoneKv(r.key, main);
  const event: Event = { type: r.kind === KIND_PUT ? 'put' : 'delete', kv };
  // As etcd: no prev_kv for a create event; else the key as of the revision before.
  if (prevKv && !(r.kind === KIND_PUT && r.createRevision === main)) {
    const prev = previousVersion(state, r.key, main);
    if (prev) event.prevKv = prev;
  }
  return event;
}

/** The version of `key` at revision main - 1 (before main's txn), if a put that compaction kept. */
function previousVersion(state: KeyspaceState, key: Uint8Array, main: number): KeyValue | undefined {
  // The version before an event at the compact revision is compacted away (maybe not yet
  // physically); for later events the latest entry below main is the one a read would see.
  if (main <= state.compactRevision) return undefined;
  const previous = state.store.latestVersionAt(key, main - 1);
  if (previous === undefined || previous.kind !== KIND_PUT) return undefined;
  return versionKv(state.store.readRecord(previous.main, previous.sub), previous.main);
}
