// The MVCC keyspace: etcd v3's KV semantics (revisions, versions, historical reads, txns,
// compaction, leases) stored in LMDB. This is its public face and owner of its lifetime (open,
// close, snapshots, restore); the work is done by the modules it delegates to (see README.md):
// the record store below, and apply, reads, txn, compaction, history copy and re-encryption on it.
//
// Writes arrive only through applyBatch (committed raft entries): one LMDB write transaction per
// batch, which also records the applied raft index, so a crash never applies an entry twice or
// skips one. Reads (range, read-only txn, hashKV) run against LMDB's read snapshot and never block
// the writer.

import { rmSync, statSync } from 'node:fs';
import { setImmediate as nextTurn } from 'node:timers/promises';
import type { EncryptionKeys } from '../storage/encryption.js';
import { type ApplyBatchOptions, type ApplyLimits, applyBatch } from './apply.js';
import { COMPACTION_RECORDS_PER_BATCH_MAX_DEFAULT, compactionPending, compactStep } from './compaction.js';
import { ClosedError, InvalidRequestError, invariant, KeyspaceFailedError } from './errors.js';
import { readEvents } from './events.js';
import { hashKV } from './hash.js';
import {
  type HistoryImport,
  type HistoryImportResult,
  importHistory,
  type KeyspaceExport,
  openExport,
} from './history-io.js';
import { checkReadRevision, rangeAt } from './reads.js';
import { encryptionKeyUse, reencryptStep } from './reencrypt.js';
import type { KeyspaceSealing } from './sealing.js';
import {
  copyToSnapshotFile,
  dataFile,
  installSnapshotFile,
  type SnapshotInfo,
  stageSnapshotFile,
} from './snapshot-file.js';
import type { KeyspaceState } from './state.js';
import { RecordStore } from './store.js';
import { executeTxn, planTxn } from './txn.js';
import type {
  AppliedEntry,
  ApplyResult,
  HashKVResult,
  LeaseId,
  LeaseRecord,
  RangeRequest,
  RangeResponse,
  TxnRequest,
  TxnResponse,
} from './types.js';
import { checkRangeRequest, isTxnReadOnly, TXN_OPS_MAX_DEFAULT } from './validate.js';
import { type WatchHistory, WatchHub, type WatchHubOptions } from './watch.js';
import type { WriteContext } from './writes.js';

export { type ApplyBatchOptions, LEASE_TTL_SECONDS_MAX } from './apply.js';
export { COMPACTION_RECORDS_PER_BATCH_MAX_DEFAULT } from './compaction.js';
export type { HistoryImport, HistoryImportResult, HistoryRecord, KeyspaceExport } from './history-io.js';
export { sortKvs } from './reads.js';
export { SNAPSHOT_VERIFY_STEP_RECORDS, type SnapshotInfo, verifySnapshotFile } from './snapshot-file.js';

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
      await this.state.store.close();
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
    return this.state.store.sync().then(() => applied);
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

  /** Watch history: the events of a key range between two revisions (events.ts). */
  readEvents(...args: Parameters<WatchHistory['readEvents']>): ReturnType<WatchHistory['readEvents']> {
    return readEvents(this.state, ...args);
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
    this.state.store.transaction(() => this.state.store.writeCounters({ appliedIndex: index }));
    this.state.appliedIndex = index;
  }

  // ---- copying the whole history out and in (etcd-format snapshots) ---------------------------

  /** A consistent view of the keyspace to copy out; see KeyspaceExport. */
  openExport(): KeyspaceExport {
    this.assertOpen();
    return openExport(this.state, this.exports);
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
    const result = await importHistory(this.state, input, this.initialRevision);
    while (this.compactStep()) await nextTurn();
    return result;
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
    this.reencryptCursor = reencryptStep(this.state.store, sealing, this.reencryptCursor, recordsMax);
    return this.reencryptCursor !== undefined;
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
    if (this.sealing === undefined) return new Map();
    return encryptionKeyUse(this.state.store);
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

  /** Several server metadata records in one LMDB transaction. */
  putMetaRecords(records: Readonly<Record<string, Uint8Array>>): void {
    this.assertOpen();
    this.state.store.transaction(() => {
      for (const [name, value] of Object.entries(records)) this.state.store.writeServerMeta(name, value);
    });
  }

  getMeta(name: string): Uint8Array | undefined {
    this.assertOpen();
    return this.state.store.readServerMeta(name);
  }

  // ---- snapshots -------------------------------------------------------------------------------

  /** Writes a consistent copy of the whole environment (data, leases, applied index) to `path`. */
  async createSnapshot(path: string, options: { compact?: boolean } = {}): Promise<SnapshotInfo> {
    this.assertOpen();
    const { store, appliedIndex } = this.state;
    return copyToSnapshotFile(store, appliedIndex, path, options.compact ?? false, this.backups);
  }

  /**
   * Rewrites the database without its free pages (etcd's defrag): a compacting copy replaces the
   * file. Returns the file size before and after.
   */
  async defragment(scratchPath: string): Promise<{ bytesBefore: number; bytesAfter: number }> {
    const file = dataFile(this.path);
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
    const { staged, info } = await stageSnapshotFile(path, this.path, this.noSync);
    await Promise.allSettled(this.backups);
    this.abortExports();
    await this.state.store.close();
    const revisionBefore = this.state.revision;
    try {
      installSnapshotFile(staged, this.path, this.noSync);
      this.state = this.openState();
    } catch (e) {
      this.failed = new KeyspaceFailedError(this.path, e);
      throw this.failed;
    }
    this.watchHub.onRestore(revisionBefore);
    return { ...info, path, bytes: statSync(dataFile(this.path)).size };
  }

  private assertOpen(): void {
    if (this.failed !== undefined) throw this.failed;
    if (this.closed) throw new ClosedError();
  }
}
