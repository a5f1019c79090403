// What the keyspace's modules (reads, writes, txn, apply, compaction, history) work on.

import type { RecordStore } from './store.js';

/**
 * The open record store and the counters the applied entries have reached. The counters are
 * kept here and written to the store's meta in each apply transaction; a restored snapshot
 * replaces the whole state.
 */
export interface KeyspaceState {
  store: RecordStore;
  revision: number;
  /** NEVER_COMPACTED until the first compaction. */
  compactRevision: number;
  appliedIndex: number;
  /** History-db key where physical compaction resumes (empty = from the start); undefined = done. */
  compactCursor: Buffer | undefined;
}
