// Compaction: the logical compact revision moves at once (apply), the superseded versions at or
// below it leave the store in bounded steps (compactChunk, at the end of each applied batch and in
// compactStep). Logical results (reads, hashKV, watch history, exports) never depend on how far
// the physical part got: logicallyPresent and keptByCompaction answer as if it had finished.

import type { Transaction } from 'lmdb';
import { decodeRevKey, encodeRevKey, KIND_PUT, REV_KEY_BYTES, readU64 } from './encoding.js';
import { invariant } from './errors.js';
import type { KeyspaceState } from './state.js';
import type { RecordStore } from './store.js';

/** Default bound on revision records examined by physical compaction per applied batch. */
export const COMPACTION_RECORDS_PER_BATCH_MAX_DEFAULT = 10_000;

/** True while superseded versions at or below the compact revision still sit on disk. */
export function compactionPending(state: KeyspaceState): boolean {
  return state.compactCursor !== undefined;
}

/** Moves the compact revision to `revision` (validated by the caller) and schedules the physical part. */
export function startCompaction(state: KeyspaceState, revision: number): void {
  state.compactRevision = revision;
  // Records kept for an earlier target may be superseded under this one: rescan from the start
  // (what earlier steps left is one record per key, so the rescan is cheap).
  state.compactCursor = Buffer.alloc(0);
}

/**
 * Runs one bounded step of physical compaction in its own transaction. Returns whether more
 * remains.
 */
export function compactStep(state: KeyspaceState, recordsMax: number): boolean {
  if (!compactionPending(state)) return false;
  const saved = state.compactCursor;
  try {
    state.store.transaction(() => compactChunk(state, recordsMax));
  } catch (e) {
    state.compactCursor = saved;
    throw e;
  }
  return compactionPending(state);
}

/**
 * Walks up to entriesMax history entries (key-major, so each key's versions are adjacent and
 * no per-record lookups are needed) and deletes the versions at or below the compact revision
 * that a read there no longer needs: everything but the latest put of each key, so tombstoned
 * keys vanish — except a tombstone at exactly the compact revision, which a watch starting
 * there must still see (etcd keeps it too, etcd-io/etcd#18089). Must run inside a write
 * transaction.
 */
export function compactChunk(state: KeyspaceState, entriesMax: number): void {
  if (state.compactCursor === undefined) return;
  const { revs, history } = state.store.dbs;
  const doomed: Buffer[] = [];
  const compactRev = state.compactRevision;
  type Entry = { hk: Buffer; prefixLength: number; main: number; kind: number };
  // An entry's fate depends only on the next entry of the same key, so a chunk may stop
  // anywhere and the next one resumes at the first undecided entry.
  const decide = (entry: Entry, next: Entry | undefined): void => {
    if (entry.main > compactRev) return;
    const supersededInTime =
      next !== undefined &&
      next.main <= compactRev &&
      next.prefixLength === entry.prefixLength &&
      next.hk.compare(entry.hk, 0, entry.prefixLength, 0, entry.prefixLength) === 0;
    const deadTombstone = entry.kind !== KIND_PUT && entry.main < compactRev;
    if (deadTombstone || supersededInTime) doomed.push(entry.hk);
  };
  let previous: Entry | undefined;
  let resume: Buffer | undefined;
  let examined = 0;
  const start = state.compactCursor.length > 0 ? state.compactCursor : undefined;
  for (const { key: hk, value } of history.getRange({ start })) {
    const entry: Entry = {
      hk,
      prefixLength: hk.length - REV_KEY_BYTES,
      main: readU64(hk, hk.length - REV_KEY_BYTES),
      kind: value[0]!,
    };
    if (previous) decide(previous, entry);
    if (examined === entriesMax) {
      resume = Buffer.from(hk);
      previous = undefined;
      break;
    }
    examined++;
    previous = entry;
  }
  if (previous) decide(previous, undefined);
  for (const hk of doomed) {
    const { main, sub } = decodeRevKey(hk, hk.length - REV_KEY_BYTES);
    invariant(revs.removeSync(encodeRevKey(main, sub)), 'compaction lost a revision record');
    invariant(history.removeSync(hk), 'compaction lost a history entry');
  }
  state.compactCursor = resume;
  state.store.writeCounters({ compactCursor: resume });
}

/**
 * Whether the version (main, sub) ≤ `compactRev` is the latest put of its key at that point
 * (read in `transaction` when given: an export's view).
 */
export function keptByCompaction(
  store: RecordStore,
  key: Uint8Array,
  main: number,
  sub: number,
  kind: number,
  compactRev: number,
  transaction?: Transaction,
): boolean {
  if (kind !== KIND_PUT && main < compactRev) return false;
  const latest = store.latestVersionAt(key, compactRev, transaction);
  invariant(latest !== undefined, `history entry missing for revision ${main}.${sub}`);
  return latest.main === main && latest.sub === sub;
}

/** Logical presence of a stored record, whatever physical compaction has reached. */
export function logicallyPresent(
  state: KeyspaceState,
  key: Uint8Array,
  main: number,
  sub: number,
  kind: number,
): boolean {
  if (main > state.compactRevision || !compactionPending(state)) return true;
  return keptByCompaction(state.store, key, main, sub, kind, state.compactRevision);
}
