// The MVCC keyspace: etcd v3's KV semantics (revisions, versions, historical reads, txns,
// compaction, leases) stored in LMDB. See encoding.ts for the on-disk layout.
//
// Writes arrive only through applyBatch (committed raft entries): one LMDB write transaction per
// batch, which also records the applied raft index, so a crash never applies an entry twice or
// skips one. Reads (range, read-only txn, hashKV) run against LMDB's read snapshot and never block
// the writer.

import {
  closeSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  openSync,
  readSync,
  renameSync,
  rmSync,
  statSync,
} from 'node:fs';
import { join } from 'node:path';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { open, type RootDatabase } from 'lmdb';
import { syncDirSync, syncFileSync } from '../storage/durable-fs.js';
import { type EncryptionKeys, envelopeKeyId } from '../storage/encryption.js';
import { type ApplyBatchOptions, type ApplyLimits, applyBatch } from './apply.js';
import {
  COMPACTION_RECORDS_PER_BATCH_MAX_DEFAULT,
  compactionPending,
  compactStep,
  keptByCompaction,
} from './compaction.js';
import {
  decodeRecord,
  decodeRevKey,
  encodeRecord,
  KIND_PUT,
  KIND_TOMBSTONE,
  REV_KEY_BYTES,
} from './encoding.js';
import {
  type Bin,
  binaryDb,
  FORMAT_VERSION,
  LMDB_DBS_MAX,
  META_INDEX_KEY,
  readCounters,
} from './environment.js';
import {
  ClosedError,
  InvalidRequestError,
  invariant,
  KeyspaceFailedError,
  SnapshotAbortedError,
  SnapshotInvalidError,
} from './errors.js';
import { readEvents } from './events.js';
import { hashKV } from './hash.js';
import { checkReadRevision, rangeAt } from './reads.js';
import type { KeyspaceSealing } from './sealing.js';
import type { KeyspaceState } from './state.js';
import { decodeLeaseRecord, RecordStore } from './store.js';
import { executeTxn, planTxn } from './txn.js';
import type {
  AppliedEntry,
  ApplyResult,
  Event,
  HashKVResult,
  LeaseId,
  LeaseRecord,
  RangeRequest,
  RangeResponse,
  TxnRequest,
  TxnResponse,
} from './types.js';
import { checkRangeRequest, isTxnReadOnly, TXN_OPS_MAX_DEFAULT } from './validate.js';
import { WatchHub, type WatchHubOptions } from './watch.js';
import type { WriteContext } from './writes.js';

export { type ApplyBatchOptions, LEASE_TTL_SECONDS_MAX } from './apply.js';
export { COMPACTION_RECORDS_PER_BATCH_MAX_DEFAULT } from './compaction.js';
export { sortKvs } from './reads.js';
export const INITIAL_REVISION = 1;
export interface KeyspaceOptions {
  /** etcd's --max-txn-ops. */
  txnOpsMax?: number;
  /** Revision of a fresh store: etcd's is 1 (the default); unit tests count from 0. */
  initialRevision?: number;
  /**
   * Skip LMDB's fsync per commit. For tests and benchmarks only: after a power cut such a store
   * may be corrupt (LMDB's meta page can reach the disk before the pages it points to), not just
   * behind. Without it each commit fdatasyncs its pages before writing its meta page, and the
   * meta page is flushed by the next commit's fdatasync (LMDB's NOMETASYNC): a power cut may undo
   * the last commit but never corrupts the tree, and the WAL replays what was undone.
   */
  noSync?: boolean;
  watch?: WatchHubOptions;
  /**
   * Physical compaction runs in bounded steps at the end of each applied batch (and via
   * compactStep()), so a large compaction never stalls the apply loop. Logical results (reads,
   * hashKV, watch history) never depend on how far it got.
   */
  compactionRecordsPerBatchMax?: number;
  /**
   * Encryption at rest (--encryption-key-file): records sealed with AES-256-GCM, user keys
   * replaced by index tokens in the LMDB keys (sealing.ts). Only for a new keyspace or one
   * created encrypted: opening an encrypted keyspace without it, or a plain one with it, fails.
   */
  encryption?: EncryptionKeys;
}

/** A snapshot file and the state it holds (read back from the file's own meta). */
export interface SnapshotInfo {
  path: string;
  appliedIndex: number;
  revision: number;
  compactRevision: number;
  bytes: number;
}

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

/** Records read from LMDB per step of an export (the step's records are copied out). */
const EXPORT_RECORDS_PER_READ_MAX = 1024;
/** Records written per LMDB transaction by importHistory. */
const IMPORT_RECORDS_PER_TXN_MAX = 10_000;

export class Keyspace {
  private state: KeyspaceState;
  private closed = false;
  /** Set when a restore lost the live database (see restoreSnapshot). */
  private failed: KeyspaceFailedError | undefined;
  /** LMDB copies in progress (createSnapshot); close() waits for them. */
  private readonly backups = new Set<Promise<unknown>>();
  /** Open exports (openExport); closing or replacing the environment aborts them first. */
  private readonly exports = new Set<() => void>();
  private readonly limits: ApplyLimits;
  private readonly initialRevision: number;
  private readonly noSync: boolean;
  private readonly encryption: EncryptionKeys | undefined;
  /** Revision key where re-encryption resumes; undefined = from the start. */
  private reencryptCursor: Buffer | undefined;
  private corruptionHandler: (error: Error) => void = () => undefined;
  readonly watchHub: WatchHub;

  private constructor(
    readonly path: string,
    options: KeyspaceOptions,
  ) {
    this.initialRevision = options.initialRevision ?? INITIAL_REVISION;
    this.noSync = options.noSync ?? false;
    this.encryption = options.encryption;
    this.limits = {
      txnOpsMax: options.txnOpsMax ?? TXN_OPS_MAX_DEFAULT,
      compactionRecordsPerBatchMax:
        options.compactionRecordsPerBatchMax ?? COMPACTION_RECORDS_PER_BATCH_MAX_DEFAULT,
    };
    invariant(
      this.limits.compactionRecordsPerBatchMax >= 1,
      'compactionRecordsPerBatchMax must be at least 1',
    );
    this.state = this.openState();
    this.watchHub = new WatchHub(this, options.watch ?? {});
  }

  /** Opens the store in this keyspace's directory and takes its counters. */
  private openState(): KeyspaceState {
    const store = RecordStore.open(this.path, {
      noSync: this.noSync,
      initialRevision: this.initialRevision,
      encryption: this.encryption,
      onCorruption: (error) => this.corruptionHandler(error),
    });
    const { revision, compactRevision, appliedIndex, compactCursor } = store.counters();
    if (compactRevision > revision) {
      void store.close().catch(() => undefined);
      invariant(false, 'compact revision above current revision');
    }
    return { store, revision, compactRevision, appliedIndex, compactCursor };
  }

  /** Opens (creating if needed) the keyspace stored in directory `path`. */
  static open(path: string, options: KeyspaceOptions = {}): Keyspace {
    return new Keyspace(path, options);
  }

  /** Called (before the read or write fails with CorruptError) when a sealed record does not open. */
  onCorruption(handler: (error: Error) => void): void {
    this.corruptionHandler = handler;
  }

  /** Whether the keyspace is encrypted at rest. */
  encrypted(): boolean {
    return this.sealing !== undefined;
  }

  /** The open store's sealing (it follows a restored snapshot); undefined in a plain keyspace. */
  private get sealing(): KeyspaceSealing | undefined {
    return this.state.store.sealing;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.watchHub.closeAll();
    // LMDB copies on a native thread; closing the environment under it crashes the process.
    await Promise.allSettled(this.backups);
    this.abortExports();
    try {
      await this.state.store.dbs.env.close();
    } catch (e) {
      // After a failed restore the environment may be closed already.
      if (this.failed === undefined) throw e;
    }
  }

  currentRevision(): number {
    return this.state.revision;
  }

  compactRevision(): number {
    return this.state.compactRevision;
  }

  appliedIndex(): number {
    return this.state.appliedIndex;
  }

  /**
   * Flushes every committed batch to disk and resolves with the applied index that is now
   * durable. The server calls it before discarding WAL entries up to that index: a commit's meta
   * page is otherwise flushed only by the next commit, so a power cut may undo the last batch.
   */
  sync(): Promise<number> {
    this.assertOpen();
    const applied = this.state.appliedIndex;
    const env = this.state.store.dbs.env as unknown as { sync(callback: (error?: Error) => void): void };
    return new Promise((resolve, reject) => {
      env.sync((error?: Error) => (error ? reject(error) : resolve(applied)));
    });
  }

  // ---- applying committed entries -----------------------------------------------------------

  /**
   * Applies committed raft entries in one LMDB write transaction together with the new applied
   * index. Entries at or below appliedIndex() are skipped (replay after restart). A request that
   * fails (typed MvccError) changes nothing; the others still apply. Any other exception aborts
   * the whole batch and leaves the keyspace as it was.
   */
  applyBatch(entries: readonly AppliedEntry[], options: ApplyBatchOptions = {}): ApplyResult[] {
    this.assertOpen();
    return applyBatch(this.state, entries, options, this.limits, this.watchHub);
  }

  // ---- primitive writes -------------------------------------------------------------------------

  // ---- txn --------------------------------------------------------------------------------------

  // ---- reads --------------------------------------------------------------------------------------

  /** A range read outside raft (serializable, or after ReadIndex) at the current or an old revision. */
  range(req: RangeRequest): RangeResponse {
    this.assertOpen();
    // etcd's range treats a negative revision as the current one (inside a txn it is "compacted").
    const revision = Math.max(0, req.revision ?? 0);
    const err =
      checkRangeRequest(req) ?? checkReadRevision(revision, this.state.revision, this.state.compactRevision);
    if (err) throw err;
    return rangeAt(this.state.store, req, this.state.revision);
  }

  /** A txn without writes, served outside raft. Throws InvalidRequestError for txns that write. */
  readTxn(req: TxnRequest): TxnResponse {
    this.assertOpen();
    if (!isTxnReadOnly(req)) throw new InvalidRequestError('txn with writes must go through raft');
    const beginRevision = this.state.revision;
    const path = planTxn(this.state, req, this.limits.txnOpsMax, beginRevision);
    const ctx: WriteContext = { beginRevision, sub: 0, events: undefined, prevKvInEvents: false };
    return executeTxn(this.state.store, req, path, ctx);
  }

  // ---- history for watchers -------------------------------------------------------------------

  /** Watch history: see events.ts readEvents. */
  readEvents(
    key: Uint8Array,
    rangeEnd: Uint8Array | undefined,
    fromRevision: number,
    toRevision: number,
    prevKv: boolean,
    eventsMax: number,
    recordsScannedMax = Number.POSITIVE_INFINITY,
  ): { events: Event[]; nextRevision: number } {
    return readEvents(
      this.state,
      key,
      rangeEnd,
      fromRevision,
      toRevision,
      prevKv,
      eventsMax,
      recordsScannedMax,
    );
  }

  // ---- compaction and hashing ------------------------------------------------------------------

  /** True while superseded versions at or below the compact revision still sit on disk. */
  compactionPending(): boolean {
    return compactionPending(this.state);
  }

  /**
   * Runs one bounded step of physical compaction in its own transaction. Safe at any time on any
   * replica (it changes no logical result); the server may call it when idle. Returns whether
   * more remains.
   */
  compactStep(recordsMax = this.limits.compactionRecordsPerBatchMax): boolean {
    this.assertOpen();
    return compactStep(this.state, recordsMax);
  }

  /** etcd 3.4's HashKV of the versions up to `revision` (0 = current); see hash.ts. */
  hashKV(revision = 0): HashKVResult {
    this.assertOpen();
    return hashKV(this.state, revision);
  }

  /** Cheap space figures for metrics (see RecordStore.spaceStats). */
  spaceStats(): { liveKeys: number; usedBytes: number } {
    this.assertOpen();
    return this.state.store.spaceStats();
  }

  /** Entry counts of the raw sub-databases (tests, metrics, the benchmark). */
  storageStats(): ReturnType<RecordStore['storageStats']> {
    this.assertOpen();
    return this.state.store.storageStats();
  }

  // ---- leases ----------------------------------------------------------------------------------

  lease(id: LeaseId): LeaseRecord | undefined {
    return this.state.store.lease(id);
  }

  /** Every persisted lease (the lease layer rebuilds its timers from these on start). */
  leases(): LeaseRecord[] {
    return this.state.store.leases();
  }

  /** Keys attached to a lease, in byte order. */
  leaseKeys(id: LeaseId): Buffer[] {
    return this.state.store.leaseKeys(id);
  }

  /**
   * Rebases the applied Raft index (snapshot restore: the keyspace of one cluster becomes the
   * starting state of a new cluster whose log begins again at `index`). Nothing else changes.
   */
  rebaseAppliedIndex(index: number): void {
    this.assertOpen();
    invariant(Number.isSafeInteger(index) && index >= 0, `bad applied index ${index}`);
    this.state.store.dbs.env.transactionSync(() => {
      this.state.store.writeCounters({ appliedIndex: index });
    });
    this.state.appliedIndex = index;
  }

  // ---- copying the whole history out and in (etcd-format snapshots) ---------------------------

  /** A consistent view of the keyspace to copy out; see KeyspaceExport. */
  openExport(): KeyspaceExport {
    this.assertOpen();
    const { env, revs, leases, meta } = this.state.store.dbs;
    const transaction = env.useReadTransaction();
    let open = true;
    const release = (): void => {
      if (!open) return;
      open = false;
      this.exports.delete(release);
      transaction.done();
    };
    this.exports.add(release);
    const read = (name: Buffer): Buffer | undefined => {
      if (!open) throw new SnapshotAbortedError();
      return meta.get(name, { transaction });
    };
    const counters = readCounters(read);
    const revision = counters.revision;
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
    const keyspace = this;
    return {
      revision,
      compactRevision,
      appliedIndex: counters.appliedIndex,
      *records() {
        let after: Buffer | undefined;
        for (;;) {
          const batch = step(revs, after);
          for (const { key, value } of batch) {
            const { main, sub } = decodeRevKey(key);
            const r = keyspace.state.store.loadRecord(key, value);
            if (
              compactionPending &&
              main <= compactRevision &&
              !keptByCompaction(keyspace.state.store, r.key, main, sub, r.kind, compactRevision, transaction)
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
          if (batch.length < EXPORT_RECORDS_PER_READ_MAX) return;
          after = batch[batch.length - 1]!.key;
        }
      },
      *leases() {
        let after: Buffer | undefined;
        for (;;) {
          const batch = step(leases, after);
          for (const { key, value } of batch) yield decodeLeaseRecord(key, value);
          if (batch.length < EXPORT_RECORDS_PER_READ_MAX) return;
          after = batch[batch.length - 1]!.key;
        }
      },
      close: release,
    };
  }

  private abortExports(): void {
    for (const release of [...this.exports]) release();
  }

  /**
   * Loads history copied out of another store (a snapshot in etcd's format) into this keyspace,
   * which must be empty: the records, the leases (first, so keys attach to them) and the compact
   * revision. The current revision becomes the last record's, or the compact revision if that is
   * higher (etcd's rule when compaction removed the newest revisions). The applied index stays 0.
   * Throws SnapshotInvalidError on records out of order or inconsistent with each other; the
   * keyspace is then partly loaded (records go in in bounded transactions) and must be discarded.
   */
  async importHistory(input: HistoryImport): Promise<HistoryImportResult> {
    this.assertOpen();
    const { env, revs, live } = this.state.store.dbs;
    if (
      this.state.appliedIndex !== 0 ||
      this.state.revision !== this.initialRevision ||
      revs.getKeysCount({ limit: 1 }) > 0
    )
      throw new InvalidRequestError(`keyspace at ${this.path} is not empty; import into a fresh one`);
    const leaseIds = new Set<bigint>();
    env.transactionSync(() => {
      for (const lease of input.leases) {
        if (leaseIds.has(lease.id)) throw new SnapshotInvalidError(`lease ${lease.id} is listed twice`);
        leaseIds.add(lease.id);
        this.state.store.writeLease(lease);
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
      const previousLease = this.state.store.getLive(r.key)?.lease ?? 0n;
      if (r.tombstone) {
        this.state.store.writeTombstone(r.key, r.main, r.sub, previousLease);
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
      this.state.store.writePut(r.key, entry, r.value, previousLease, attached);
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
    const revision = Math.max(last.main, compactRev, this.initialRevision);
    env.transactionSync(() => {
      this.state.store.writeCounters({
        revision,
        compactRevision: compactRev,
        compactCursor: input.compactionPending ? Buffer.alloc(0) : undefined,
      });
    });
    this.state.revision = revision;
    this.state.compactRevision = compactRev;
    this.state.compactCursor = input.compactionPending ? Buffer.alloc(0) : undefined;
    while (this.compactStep()) await nextTurn();
    return {
      revision,
      compactRevision: compactRev,
      records,
      liveKeys: live.getKeysCount(),
      leases: leaseIds.size,
      keysWithMissingLease,
    };
  }

  // ---- encryption key rotation -----------------------------------------------------------------

  /**
   * Re-seals, in one write transaction, up to `recordsMax` records (and the sealed index key)
   * that are sealed under another key than the active one. Like compactStep it changes no logical
   * result, so it runs on each member on its own. Returns whether more of the pass remains; a
   * finished pass starts again from the first record the next time.
   */
  reencryptStep(recordsMax = this.limits.compactionRecordsPerBatchMax): boolean {
    this.assertOpen();
    const sealing = this.sealing;
    if (sealing === undefined) return false;
    const { revs } = this.state.store.dbs;
    const where = `keyspace ${this.path} revision record`;
    let resume: Buffer | undefined;
    this.state.store.dbs.env.transactionSync(() => {
      const sealedIndexKey = this.state.store.sealedIndexKey();
      invariant(sealedIndexKey !== undefined, 'encrypted keyspace without its index key');
      if (sealing.isStale(sealedIndexKey, this.path))
        this.state.store.writeSealedIndexKey(sealing.resealIndexKey());
      const stale: { key: Buffer; value: Buffer }[] = [];
      let examined = 0;
      for (const { key, value } of revs.getRange({ start: this.reencryptCursor })) {
        if (examined === recordsMax) {
          resume = Buffer.from(key);
          break;
        }
        examined++;
        if (sealing.isStale(value, where)) stale.push({ key: Buffer.from(key), value: Buffer.from(value) });
      }
      for (const { key, value } of stale) {
        const record = this.state.store.loadRecord(key, value);
        const plain = encodeRecord(
          record.kind,
          record.key,
          record.createRevision,
          record.version,
          record.lease,
          record.value,
        );
        revs.putSync(key, sealing.sealRecord(key, plain));
      }
    });
    this.reencryptCursor = resume;
    return resume !== undefined;
  }

  /** The next reencryptStep starts a new pass from the first record (a newer key was made active). */
  restartReencryption(): void {
    this.reencryptCursor = undefined;
  }

  /**
   * How many stored envelopes each key id seals (revision records and the index key), by a scan
   * of every record: what `concordctl encryption status` reports. Empty for a plain keyspace.
   */
  encryptionKeyUse(): Map<string, number> {
    this.assertOpen();
    const use = new Map<string, number>();
    if (this.sealing === undefined) return use;
    const count = (sealed: Uint8Array): void => {
      const id = envelopeKeyId(sealed, this.path);
      use.set(id, (use.get(id) ?? 0) + 1);
    };
    const sealedIndexKey = this.state.store.sealedIndexKey();
    if (sealedIndexKey !== undefined) count(sealedIndexKey);
    for (const { value } of this.state.store.dbs.revs.getRange({})) count(value);
    return use;
  }

  // ---- server metadata -------------------------------------------------------------------------

  /**
   * Small records the server keeps beside the keyspace (cluster membership), so they travel in
   * snapshots with it. Names live under a prefix of their own in the meta sub-database.
   */
  putMeta(name: string, value: Uint8Array): void {
    this.assertOpen();
    this.state.store.transaction(() => this.state.store.writeServerMeta(name, value));
  }

  getMeta(name: string): Uint8Array | undefined {
    this.assertOpen();
    return this.state.store.readServerMeta(name);
  }

  // ---- snapshots -------------------------------------------------------------------------------

  /** Writes a consistent copy of the whole environment (data, leases, applied index) to `path`. */
  async createSnapshot(path: string, options: { compact?: boolean } = {}): Promise<SnapshotInfo> {
    this.assertOpen();
    const meta = {
      appliedIndex: this.state.appliedIndex,
      revision: this.state.revision,
      compactRevision: this.state.compactRevision,
    };
    // LMDB copies a directory environment into a directory; stage there, then move the file.
    const stagingDir = `${path}.staging`;
    rmSync(stagingDir, { recursive: true, force: true });
    mkdirSync(stagingDir, { recursive: true });
    try {
      // compact: LMDB writes only live pages, renumbered (free pages dropped) — a defragmented copy.
      const backup = this.state.store.dbs.env.backup(stagingDir, options.compact ?? false);
      this.backups.add(backup);
      try {
        await backup;
      } finally {
        this.backups.delete(backup);
      }
      renameSync(join(stagingDir, 'data.mdb'), path);
    } finally {
      rmSync(stagingDir, { recursive: true, force: true });
    }
    const info = await verifySnapshotFile(path);
    invariant(info.appliedIndex >= meta.appliedIndex, 'snapshot older than the state it copied');
    return info;
  }

  /**
   * Rewrites the database without its free pages (etcd's defrag): a compacting copy replaces the
   * file. Returns the file size before and after.
   */
  async defragment(scratchPath: string): Promise<{ bytesBefore: number; bytesAfter: number }> {
    const file = join(this.path, 'data.mdb');
    const bytesBefore = statSync(file).size;
    await this.createSnapshot(scratchPath, { compact: true });
    try {
      await this.restoreSnapshot(scratchPath);
    } finally {
      rmSync(scratchPath, { force: true });
    }
    return { bytesBefore, bytesAfter: statSync(file).size };
  }

  /**
   * Replaces the keyspace with the snapshot at `path`. The file is verified first (opened, format
   * and meta checked); on failure the live keyspace is untouched. Watchers resume from history.
   */
  async restoreSnapshot(path: string): Promise<SnapshotInfo> {
    this.assertOpen();
    const staged = join(this.path, 'restore.mdb');
    copyFileSync(path, staged);
    if (!this.noSync) syncFileSync(staged);
    let info: SnapshotInfo;
    try {
      info = await verifySnapshotFile(staged);
    } catch (e) {
      rmSync(staged, { force: true });
      throw e;
    }
    await Promise.allSettled(this.backups);
    this.abortExports();
    await this.state.store.dbs.env.close();
    const revisionBefore = this.state.revision;
    try {
      renameSync(staged, join(this.path, 'data.mdb'));
      rmSync(join(this.path, 'lock.mdb'), { force: true });
      if (!this.noSync) syncDirSync(this.path);
      this.state = this.openState();
    } catch (e) {
      this.failed = new KeyspaceFailedError(this.path, e);
      throw this.failed;
    }
    this.watchHub.onRestore(revisionBefore);
    return { ...info, path, bytes: statSync(join(this.path, 'data.mdb')).size };
  }

  private assertOpen(): void {
    if (this.failed !== undefined) throw this.failed;
    if (this.closed) throw new ClosedError();
  }
}

const LMDB_MAGIC = 0xbeefc0de;
const LMDB_MAGIC_OFFSET = 24;
const LMDB_PAGE_BYTES_MIN = 4096;

/** Refuse to mmap a file that is not an LMDB environment: a garbage file can crash the process. */
function checkLmdbHeader(path: string): void {
  const size = statSync(path).size;
  if (size < 2 * LMDB_PAGE_BYTES_MIN || size % LMDB_PAGE_BYTES_MIN !== 0) {
    throw new SnapshotInvalidError(`${path}: size ${size} is not a whole number of LMDB pages`);
  }
  const header = Buffer.alloc(LMDB_MAGIC_OFFSET + 4);
  const fd = openSync(path, 'r');
  try {
    readSync(fd, header, 0, header.length, 0);
  } finally {
    closeSync(fd);
  }
  if (header.readUInt32LE(LMDB_MAGIC_OFFSET) !== LMDB_MAGIC)
    throw new SnapshotInvalidError(`${path}: not an LMDB file`);
}

/** Opens a snapshot file read-only and checks its format and meta; throws SnapshotInvalidError. */
/** Records verifySnapshotFile checks between yields to the event loop. */
export const SNAPSHOT_VERIFY_STEP_RECORDS = 5000;
const ZERO_BYTE = Buffer.alloc(1);

export async function verifySnapshotFile(path: string): Promise<SnapshotInfo> {
  if (!existsSync(path)) throw new SnapshotInvalidError(`${path} does not exist`);
  checkLmdbHeader(path);
  let env: RootDatabase | undefined;
  try {
    env = open({ path, noSubdir: true, readOnly: true, maxDbs: LMDB_DBS_MAX });
    const meta = binaryDb(env, 'meta');
    const counters = readCounters((name) => meta.getBinary(name));
    const format = counters.formatVersion;
    if (format !== FORMAT_VERSION)
      throw new SnapshotInvalidError(`format ${format}, expected ${FORMAT_VERSION}`);
    const revision = counters.revision;
    const compactRevision = counters.compactRevision;
    if (compactRevision > revision) throw new SnapshotInvalidError('compact revision above current revision');
    const revs = binaryDb(env, 'revs');
    // An encrypted keyspace's records are envelopes: their kind is checked when they are opened.
    const encrypted = meta.getBinary(META_INDEX_KEY) !== undefined;
    let lastMain = 0;
    // Walking every record exercises the whole B-tree and catches truncated or torn copies. In
    // steps, yielding between them: a member verifies its own snapshot while serving, and a
    // walk of a large keyspace in one go would stall heartbeats past the election timeout.
    let start: Buffer | undefined;
    for (;;) {
      let seen = 0;
      let lastKey: Buffer | undefined;
      for (const { key, value } of revs.getRange({ start, limit: SNAPSHOT_VERIFY_STEP_RECORDS })) {
        seen++;
        lastKey = key;
        if (key.length !== REV_KEY_BYTES) throw new SnapshotInvalidError('malformed revision key');
        const { main } = decodeRevKey(key);
        if (main < lastMain || main > revision)
          throw new SnapshotInvalidError(`revision ${main} out of order`);
        const kind = encrypted ? KIND_PUT : decodeRecord(value).kind;
        if (kind !== KIND_PUT && kind !== KIND_TOMBSTONE)
          throw new SnapshotInvalidError('unknown record kind');
        lastMain = main;
      }
      if (seen < SNAPSHOT_VERIFY_STEP_RECORDS || lastKey === undefined) break;
      // The smallest key after lastKey: the next step starts there.
      start = Buffer.concat([lastKey, ZERO_BYTE]);
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    return {
      path,
      appliedIndex: counters.appliedIndex,
      revision,
      compactRevision,
      bytes: statSync(path).size,
    };
  } catch (e) {
    if (e instanceof SnapshotInvalidError) throw e;
    throw new SnapshotInvalidError(`${path}: ${(e as Error).message}`);
  } finally {
    if (env) await env.close();
    // A read-only open of a file environment leaves LMDB's "<file>-lock" beside it.
    rmSync(`${path}-lock`, { force: true });
  }
}
