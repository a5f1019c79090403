// etcd 3.4's HashKV over the keyspace, for replicas (and a real etcd) to compare.

import { crc32c } from '../util/crc32c.js';
import { compactionPending, keptByCompaction } from './compaction.js';
import { decodeRevKey, encodeRevKey, KIND_PUT, type StoredRecord } from './encoding.js';
import { CompactedError, FutureRevisionError } from './errors.js';
import { encodeKeyValue, revisionBytes } from './etcd-snapshot.js';
import { rangeAt } from './reads.js';
import type { KeyspaceState } from './state.js';
import type { HashKVResult } from './types.js';

/** The name of etcd's bucket of versions, which its HashKV hashes first. */
const ETCD_KEY_BUCKET_NAME = Buffer.from('key');
/** From "\\0" to "\\0": every key, as a range request says it. */
const EVERY_KEY = { key: Buffer.from([0]), rangeEnd: Buffer.from([0]) };

/**
 * etcd 3.4's HashKV, bit for bit: CRC-32C over "key" and then, in revision order, every version
 * with revision ≤ `revision` in etcd's backend encoding (revision bytes with the tombstone mark,
 * mvccpb.KeyValue). Versions at or below the compact revision count as etcd's HashByRev counts
 * them once its compaction has finished: only puts the compaction kept (never a tombstone, not
 * even the one at the compact revision that Concord keeps for watches), and of those only the
 * ones still the latest version of a live key at `revision` — unless no key is live there, when
 * etcd hashes all it kept. Replicas that applied the same entries agree, and so does an etcd 3.4
 * member that applied the same requests.
 */
export function hashKV(state: KeyspaceState, revision: number): HashKVResult {
  const { store, compactRevision } = state;
  // etcd's HashByRev: a revision at (not only below) the compact revision is compacted.
  if (revision > 0 && revision <= compactRevision) throw new CompactedError(compactRevision);
  if (revision > state.revision) throw new FutureRevisionError(revision, state.revision);
  // A negative revision hashes no version at all, as etcd's (it is not the current revision).
  const at = revision === 0 ? state.revision : revision;
  let anyKeyLive: boolean | undefined;
  const counted = (r: StoredRecord, main: number, sub: number): boolean => {
    if (main > compactRevision) return true;
    if (r.kind !== KIND_PUT) return false;
    if (compactionPending(state) && !keptByCompaction(store, r.key, main, sub, r.kind, compactRevision))
      return false;
    anyKeyLive ??= rangeAt(store, { ...EVERY_KEY, revision: at, limit: 1 }, state.revision).kvs.length > 0;
    return !anyKeyLive || keptByCompaction(store, r.key, main, sub, r.kind, at);
  };
  let hash = crc32c(ETCD_KEY_BUCKET_NAME);
  for (const { key, value } of store.dbs.revs.getRange({
    start: encodeRevKey(0, 0),
    end: encodeRevKey(Math.max(at + 1, 0), 0),
  })) {
    const { main, sub } = decodeRevKey(key);
    const r = store.loadRecord(key, value);
    if (!counted(r, main, sub)) continue;
    const tombstone = r.kind !== KIND_PUT;
    hash = crc32c(revisionBytes(main, sub, tombstone), hash);
    hash = crc32c(encodeKeyValue({ ...r, main, sub, tombstone }), hash);
  }
  return { hash, compactRevision, revision: Math.max(at, 0) };
}
