// Copying the whole history out of the keyspace and into an empty one: what etcd-format
// snapshots (etcd-snapshot.ts) are written from and restored into.

import { setImmediate as nextTurn } from 'node:timers/promises';
import { keptByCompaction } from './compaction.js';
import { decodeRevKey, KIND_PUT } from './encoding.js';
import { type Bin, readCounters } from './environment.js';
import { InvalidRequestError, SnapshotAbortedError, SnapshotInvalidError } from './errors.js';
import type { KeyspaceState } from './state.js';
import { decodeLeaseRecord } from './store.js';
import type { LeaseRecord } from './types.js';

/** Records read from LMDB per step of an export (the step's records are copied out). */
const EXPORT_RECORDS_PER_READ_MAX = 1024;
/** Records written per LMDB transaction by importHistory. */
const IMPORT_RECORDS_PER_TXN_MAX = 10_000;
const ZERO_BYTE = Buffer.alloc(1);

/**
 * One stored version of a key as export and import see it: a put (with its metadata) or a
 * tombstone (key only). etcd's backend stores the same thing per revision.
 */
export interface HistoryRecord {
  main: number;
  sub: number;
  tombstone: boolean;
  key: Buffer;
  createRevision: number;
  version: number;
  lease: bigint;
  value: Buffer;
}

/**
 * A consistent read-only view of the whole keyspace for copying it out (an LMDB read transaction:
 * writes go on meanwhile). Reads throw SnapshotAbortedError once the keyspace is closed or
 * replaced. The owner closes it.
 */
export interface KeyspaceExport {
  readonly revision: number;
  readonly compactRevision: number;
  readonly appliedIndex: number;
  /** Every version a read at or above the compact revision can see, in revision order. */
  records(): Generator<HistoryRecord>;
  leases(): Generator<LeaseRecord>;
  close(): void;
}

export interface HistoryImport {
  /** In increasing revision order. */
  records: Iterable<HistoryRecord>;
  leases: Iterable<LeaseRecord>;
  compactRevision: number;
  /** Versions at or below the compact revision may still include superseded ones: compact them. */
  compactionPending: boolean;
}

export interface HistoryImportResult {
  revision: number;
  compactRevision: number;
  records: number;
  liveKeys: number;
  leases: number;
  /** Keys whose lease is not among the leases: kept, but attached to nothing (etcd does the same). */
  keysWithMissingLease: number;
}

/**
 * A consistent view of the keyspace to copy out (see KeyspaceExport). `exports` holds the release
 * of every open export: the keyspace calls them before it closes or replaces its environment.
 */
export function openExport(state: KeyspaceState, exports: Set<() => void>): KeyspaceExport {
  const { store } = state;
  const { env, revs, leases, meta } = store.dbs;
  const transaction = env.useReadTransaction();
  let open = true;
  const release = (): void => {
    if (!open) return;
    open = false;
    exports.delete(release);
    transaction.done();
  };
  exports.add(release);
  const read = (name: Buffer): Buffer | undefined => {
    if (!open) throw new SnapshotAbortedError();
    return meta.get(name, { transaction });
  };
  const counters = readCounters(read);
  // An export reports a never-compacted keyspace's compact revision as 0.
  const compactRevision = Math.max(0, counters.compactRevision);
  const compactionPending = counters.compactCursor !== undefined;
  /** Copies of up to `limit` entries after `after` (a step's entries outlive its LMDB cursor). */
  const step = (db: Bin, after: Buffer | undefined): { key: Buffer; value: Buffer }[] => {
    if (!open) throw new SnapshotAbortedError();
    const start = after === undefined ? undefined : Buffer.concat([after, ZERO_BYTE]);
    const out: { key: Buffer; value: Buffer }[] = [];
    for (const { key, value } of db.getRange({ start, limit: EXPORT_RECORDS_PER_READ_MAX, transaction }))
      out.push({ key: Buffer.from(key), value: Buffer.from(value) });
    return out;
  };
  /** Every entry of `db`, read in steps. */
  function* entries(db: Bin): Generator<{ key: Buffer; value: Buffer }> {
    let after: Buffer | undefined;
    for (;;) {
      const batch = step(db, after);
      yield* batch;
      if (batch.length < EXPORT_RECORDS_PER_READ_MAX) return;
      after = batch[batch.length - 1]!.key;
    }
  }
  return {
    revision: counters.revision,
    compactRevision,
    appliedIndex: counters.appliedIndex,
    *records() {
      for (const { key, value } of entries(revs)) {
        const { main, sub } = decodeRevKey(key);
        const r = store.loadRecord(key, value);
        if (
          compactionPending &&
          main <= compactRevision &&
          !keptByCompaction(store, r.key, main, sub, r.kind, compactRevision, transaction)
        )
          continue;
        yield {
          main,
          sub,
          tombstone: r.kind !== KIND_PUT,
          key: r.key,
          createRevision: r.createRevision,
          version: r.version,
          lease: r.lease,
          value: r.value,
        };
      }
    },
    *leases() {
      for (const { key, value } of entries(leases)) yield decodeLeaseRecord(key, value);
    },
    close: release,
  };
}

/**
 * Loads history copied out of another store (a snapshot in etcd's format) into this keyspace,
 * which must be empty: the records, the leases (first, so keys attach to them) and the compact
 * revision. The current revision becomes the last record's, or the compact revision if that is
 * higher (etcd's rule when compaction removed the newest revisions). The applied index stays 0.
 * Throws SnapshotInvalidError on records out of order or inconsistent with each other; the
 * keyspace is then partly loaded (records go in in bounded transactions) and must be discarded.
 * The caller runs the physical compaction the import leaves pending.
 */
export async function importHistory(
  state: KeyspaceState,
  input: HistoryImport,
  initialRevision: number,
): Promise<HistoryImportResult> {
  const { store } = state;
  const { env, revs, live } = store.dbs;
  if (state.appliedIndex !== 0 || state.revision !== initialRevision || revs.getKeysCount({ limit: 1 }) > 0)
    throw new InvalidRequestError(`keyspace at ${store.path} is not empty; import into a fresh one`);
  const leaseIds = new Set<bigint>();
  env.transactionSync(() => {
    for (const lease of input.leases) {
      if (leaseIds.has(lease.id)) throw new SnapshotInvalidError(`lease ${lease.id} is listed twice`);
      leaseIds.add(lease.id);
      store.writeLease(lease);
    }
  });
  let last = { main: 0, sub: 0 };
  let records = 0;
  let keysWithMissingLease = 0;
  const importOne = (r: HistoryRecord): void => {
    if (
      !Number.isSafeInteger(r.main) ||
      r.main < 1 ||
      !Number.isInteger(r.sub) ||
      r.sub < 0 ||
      r.sub > 0xffffffff
    )
      throw new SnapshotInvalidError(`revision ${r.main}.${r.sub} is out of range`);
    if (r.main < last.main || (r.main === last.main && r.sub <= last.sub))
      throw new SnapshotInvalidError(`revision ${r.main}.${r.sub} comes after ${last.main}.${last.sub}`);
    if (r.key.length === 0) throw new SnapshotInvalidError(`revision ${r.main}.${r.sub} has an empty key`);
    last = { main: r.main, sub: r.sub };
    const previousLease = store.getLive(r.key)?.lease ?? 0n;
    if (r.tombstone) {
      store.writeTombstone(r.key, r.main, r.sub, previousLease);
      return;
    }
    const { createRevision, version, lease } = r;
    if (!Number.isSafeInteger(createRevision) || createRevision < 1 || createRevision > r.main)
      throw new SnapshotInvalidError(`revision ${r.main}.${r.sub} has create revision ${createRevision}`);
    if (!Number.isSafeInteger(version) || version < 1)
      throw new SnapshotInvalidError(`revision ${r.main}.${r.sub} has version ${version}`);
    // A key whose lease is not among the leases keeps its lease id but is attached to none.
    const attached = lease === 0n || leaseIds.has(lease);
    if (!attached) keysWithMissingLease++;
    const entry = { main: r.main, sub: r.sub, createRevision, version, lease };
    store.writePut(r.key, entry, r.value, previousLease, attached);
  };
  const iterator = input.records[Symbol.iterator]();
  try {
    for (let done = false; !done; ) {
      env.transactionSync(() => {
        for (let n = 0; n < IMPORT_RECORDS_PER_TXN_MAX; n++) {
          const next = iterator.next();
          if (next.done) {
            done = true;
            return;
          }
          importOne(next.value);
          records++;
        }
      });
      await nextTurn();
    }
  } finally {
    iterator.return?.();
  }
  const compactRev = input.compactRevision;
  if (!Number.isSafeInteger(compactRev) || compactRev < 0)
    throw new SnapshotInvalidError(`compact revision ${compactRev} is out of range`);
  const revision = Math.max(last.main, compactRev, initialRevision);
  env.transactionSync(() => {
    store.writeCounters({
      revision,
      compactRevision: compactRev,
      compactCursor: input.compactionPending ? Buffer.alloc(0) : undefined,
    });
  });
  state.revision = revision;
  state.compactRevision = compactRev;
  state.compactCursor = input.compactionPending ? Buffer.alloc(0) : undefined;
  return {
    revision,
    compactRevision: compactRev,
    records,
    liveKeys: live.getKeysCount(),
    leases: leaseIds.size,
    keysWithMissingLease,
  };
}
