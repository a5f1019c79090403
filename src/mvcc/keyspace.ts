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
import { type Database, open, type RootDatabase, type Transaction } from 'lmdb';
import { mkdirDurableSync, syncDirSync, syncFileSync } from '../storage/durable-fs.js';
import { EncryptionError, type EncryptionKeys, envelopeKeyId } from '../storage/encryption.js';
import { crc32c } from '../util/crc32c.js';
import {
  decodeHistoryKey,
  decodeLeaseKey,
  decodeLive,
  decodeRecord,
  decodeRevKey,
  encodeHistoryKey,
  encodeHistoryPrefix,
  encodeLeaseKey,
  encodeLive,
  encodeRecord,
  encodeRevKey,
  KIND_PUT,
  KIND_TOMBSTONE,
  type LiveEntry,
  REV_KEY_BYTES,
  readU64,
  type StoredRecord,
  writeU64,
} from './encoding.js';
import {
  assertNever,
  ClosedError,
  CompactedError,
  CorruptError,
  FutureRevisionError,
  InvalidRequestError,
  invariant,
  KeyNotFoundError,
  KeyspaceFailedError,
  LeaseExistsError,
  LeaseNotFoundError,
  LeaseTtlTooLargeError,
  MvccError,
  SnapshotAbortedError,
  SnapshotInvalidError,
} from './errors.js';
import { encodeKeyValue, revisionBytes } from './etcd-snapshot.js';
import { KeyspaceSealing } from './sealing.js';
import type {
  AppliedEntry,
  ApplyResult,
  CompactionRequest,
  CompactionResponse,
  Compare,
  DeleteRangeRequest,
  DeleteRangeResponse,
  Event,
  HashKVResult,
  KeyValue,
  LeaseCheckpointRequest,
  LeaseGrantRequest,
  LeaseGrantResponse,
  LeaseId,
  LeaseRecord,
  LeaseRevokeRequest,
  LeaseRevokeResponse,
  PutRequest,
  PutResponse,
  RangeRequest,
  RangeResponse,
  RequestOp,
  ResponseOp,
  TxnRequest,
  TxnResponse,
  WriteOp,
  WriteResponse,
} from './types.js';
import {
  checkDeleteRequest,
  checkPutRequest,
  checkRangeRequest,
  checkTxnRequest,
  isTxnReadOnly,
  TXN_OPS_MAX_DEFAULT,
} from './validate.js';
import { WatchHub, type WatchHubOptions } from './watch.js';

/** The name of etcd's bucket of versions, which its HashKV hashes first. */
const ETCD_KEY_BUCKET_NAME = Buffer.from('key');
/** Key and range end "\0": every key. */
/** From "\\0" to "\\0": every key, as a range request says it. */
const EVERY_KEY = { key: Buffer.from([0]), rangeEnd: Buffer.from([0]) };

/** etcd's MaxLeaseTTL (seconds). */
export const LEASE_TTL_SECONDS_MAX = 9_000_000_000;
const FORMAT_VERSION = 1;
export const INITIAL_REVISION = 1;
const DB_NAMES = ['revs', 'history', 'live', 'leases', 'leaseKeys', 'meta'] as const;
const META_APPLIED = Buffer.from('appliedIndex');
const META_REVISION = Buffer.from('currentRevision');
const META_COMPACT = Buffer.from('compactRevision');
const META_FORMAT = Buffer.from('formatVersion');
/** 0x00 = physical compaction done; 0x01 ‖ history key = continue from that history entry. */
const META_COMPACT_CURSOR = Buffer.from('compactCursor');
/** Present only in an encrypted keyspace: its index key, sealed (see sealing.ts). */
const META_INDEX_KEY = Buffer.from('indexKey');
/** Bound on the encrypted keyspace's token → key map (see plainKeys); about 100 MB of 64-byte keys. */
const PLAIN_KEYS_MAX = 1_000_000;
/** Default bound on revision records examined by physical compaction per applied batch. */
export const COMPACTION_RECORDS_PER_BATCH_MAX_DEFAULT = 10_000;
const EMPTY = new Uint8Array(0);

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

export interface ApplyBatchOptions {
  /**
   * Server metadata records (see putMeta) written in the same LMDB transaction as the batch and
   * its applied index, e.g. the membership a conf-change entry in this batch produced.
   */
  meta?: Readonly<Record<string, Uint8Array>>;
}

function serverMetaKey(name: string): Buffer {
  return Buffer.from(`server/${name}`);
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

type Bin = Database<Buffer, Buffer>;

interface Dbs {
  env: RootDatabase;
  revs: Bin;
  history: Bin;
  live: Bin;
  leases: Bin;
  leaseKeys: Bin;
  meta: Bin;
}

/** Per-revision write state: all changes of one request share main = beginRevision + 1. */
interface WriteContext {
  beginRevision: number;
  sub: number;
  events: Event[] | undefined;
  prevKvInEvents: boolean;
  /** Keys this request changed, as they were before it (null: absent); for events' prevKv. */
  before?: Map<string, KeyValue | null>;
}

/** [begin, end) in bytes; end undefined = up to the last key. */
interface KeyRange {
  begin: Uint8Array;
  end: Uint8Array | undefined;
  single: boolean;
}

function toKeyRange(key: Uint8Array, rangeEnd: Uint8Array | undefined): KeyRange {
  if (!rangeEnd || rangeEnd.length === 0) return { begin: key, end: undefined, single: true };
  if (rangeEnd.length === 1 && rangeEnd[0] === 0) return { begin: key, end: undefined, single: false };
  return { begin: key, end: rangeEnd, single: false };
}

/**
 * Address space reserved for the database file up front (not memory, not disk: the file grows
 * with the data). Left to grow on demand, LMDB maps the file again at each doubling and the old
 * mappings stay, so every page read before a growth is resident twice: 80 MiB of RSS for a
 * 44 MiB file after 100k puts, 42 MiB with one mapping. 8 GiB is etcd's largest recommended
 * backend quota; a bigger database still grows past it.
 */
const LMDB_MAP_BYTES = 8 * 1024 ** 3;

function openDbs(path: string, noSync: boolean): Dbs {
  if (!noSync) mkdirDurableSync(path);
  else mkdirSync(path, { recursive: true });
  const env = open({
    path,
    maxDbs: DB_NAMES.length + 2,
    noSync,
    // One fdatasync per commit (see KeyspaceOptions.noSync). Not lmdb-js's overlappingSync: it
    // trusts an unflushed commit after restart unless the boot id changed, and a lost disk write
    // without a reboot (a storage path failing over, a power-cut test) would then read a torn tree.
    noMetaSync: !noSync,
    overlappingSync: false,
    noSubdir: false,
    mapSize: LMDB_MAP_BYTES,
  });
  // LMDB creates data.mdb without syncing the directory: make its name durable with it.
  if (!noSync) syncDirSync(path);
  const sub = (name: string): Bin => env.openDB({ name, encoding: 'binary', keyEncoding: 'binary' }) as Bin;
  return {
    env,
    revs: sub('revs'),
    history: sub('history'),
    live: sub('live'),
    leases: sub('leases'),
    leaseKeys: sub('leaseKeys'),
    meta: sub('meta'),
  };
}

function u64(value: number): Buffer {
  const b = Buffer.allocUnsafe(8);
  writeU64(b, 0, value);
  return b;
}

function decodeLeaseRecord(key: Buffer, value: Buffer): LeaseRecord {
  return {
    id: decodeLeaseKey(key),
    ttlSeconds: value.readDoubleBE(0),
    remainingTtlSeconds: value.readDoubleBE(8),
  };
}

function readMeta(meta: Bin, name: Buffer): number {
  const v = meta.getBinary(name);
  return v ? readU64(v, 0) : 0;
}

/** etcd's compactMainRev starts at -1 (never compacted), so Compact(0) succeeds once; stored only from then on. */
const NEVER_COMPACTED = -1;

function readCompactMeta(meta: Bin): number {
  return meta.getBinary(META_COMPACT) ? readMeta(meta, META_COMPACT) : NEVER_COMPACTED;
}

function compareNumbers(a: number, b: number): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function compareBigints(a: bigint, b: bigint): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export class Keyspace {
  private dbs: Dbs;
  private revision = 0;
  private compactRev = NEVER_COMPACTED;
  private applied = 0;
  private closed = false;
  /** Set when a restore lost the live database (see restoreSnapshot). */
  private failed: KeyspaceFailedError | undefined;
  /** LMDB copies in progress (createSnapshot); close() waits for them. */
  private readonly backups = new Set<Promise<unknown>>();
  /** Open exports (openExport); closing or replacing the environment aborts them first. */
  private readonly exports = new Set<() => void>();
  /** History-db key where physical compaction resumes (empty = from the start); undefined = done. */
  private compactCursor: Buffer | undefined;
  private readonly compactionRecordsPerBatchMax: number;
  private readonly txnOpsMax: number;
  private readonly initialRevision: number;
  private readonly noSync: boolean;
  private readonly encryption: EncryptionKeys | undefined;
  /** Set in an encrypted keyspace (from meta, so it follows a restored snapshot). */
  private sealing: KeyspaceSealing | undefined;
  /** Revision key where re-encryption resumes; undefined = from the start. */
  private reencryptCursor: Buffer | undefined;
  private corruptionHandler: (error: Error) => void = () => undefined;
  /**
   * Encrypted keyspace: user key by index token (latin1), filled as keys are written or read, so
   * a range scan opens a record only for keys it has not met yet. A token always names the same
   * key, so entries never go stale; the map is dropped when it reaches plainKeysMax.
   */
  private readonly plainKeys = new Map<string, Buffer>();
  readonly watchHub: WatchHub;

  private constructor(
    readonly path: string,
    options: KeyspaceOptions,
  ) {
    this.txnOpsMax = options.txnOpsMax ?? TXN_OPS_MAX_DEFAULT;
    this.initialRevision = options.initialRevision ?? INITIAL_REVISION;
    this.noSync = options.noSync ?? false;
    this.encryption = options.encryption;
    this.compactionRecordsPerBatchMax =
      options.compactionRecordsPerBatchMax ?? COMPACTION_RECORDS_PER_BATCH_MAX_DEFAULT;
    invariant(this.compactionRecordsPerBatchMax >= 1, 'compactionRecordsPerBatchMax must be at least 1');
    this.dbs = openDbs(path, this.noSync);
    try {
      this.loadMeta();
    } catch (e) {
      void this.dbs.env.close().catch(() => undefined);
      throw e;
    }
    this.watchHub = new WatchHub(this, options.watch ?? {});
  }

  /** Opens (creating if needed) the keyspace stored in directory `path`. */
  static open(path: string, options: KeyspaceOptions = {}): Keyspace {
    return new Keyspace(path, options);
  }

  private loadMeta(): void {
    const { meta } = this.dbs;
    const format = readMeta(meta, META_FORMAT);
    if (format === 0) {
      // etcd's store starts at revision 1: a fresh cluster answers with header revision 1 and
      // the first write gets revision 2. Clients and scripts see these numbers, so we match.
      const created = this.encryption ? KeyspaceSealing.create(this.encryption) : undefined;
      this.dbs.env.transactionSync(() => {
        meta.putSync(META_FORMAT, u64(FORMAT_VERSION));
        meta.putSync(META_REVISION, u64(this.initialRevision));
        if (created) meta.putSync(META_INDEX_KEY, created.sealedIndexKey);
      });
    } else if (format !== FORMAT_VERSION) {
      throw new InvalidRequestError(`unsupported keyspace format ${format} at ${this.path}`);
    }
    this.sealing = this.openSealing(meta.getBinary(META_INDEX_KEY));
    // Another keyspace (a restored snapshot) has another index key, so other tokens.
    this.plainKeys.clear();
    this.revision = readMeta(meta, META_REVISION);
    this.compactRev = readCompactMeta(meta);
    this.applied = readMeta(meta, META_APPLIED);
    const cursor = meta.getBinary(META_COMPACT_CURSOR);
    this.compactCursor = cursor && cursor[0] === 1 ? Buffer.from(cursor.subarray(1)) : undefined;
    invariant(this.compactRev <= this.revision, 'compact revision above current revision');
  }

  private openSealing(sealedIndexKey: Buffer | undefined): KeyspaceSealing | undefined {
    if (sealedIndexKey === undefined && this.encryption === undefined) return undefined;
    if (sealedIndexKey === undefined) {
      throw new EncryptionError(
        'ENCRYPTION_KEY_FILE',
        `keyspace at ${this.path} was created without encryption; encryption at rest can only be turned on for a new data dir`,
      );
    }
    if (this.encryption === undefined) {
      throw new EncryptionError(
        'ENCRYPTION_KEY_MISSING',
        `keyspace at ${this.path} is encrypted with key "${envelopeKeyId(sealedIndexKey, this.path)}"; start the member with --encryption-key-file`,
        envelopeKeyId(sealedIndexKey, this.path),
      );
    }
    return KeyspaceSealing.open(this.encryption, sealedIndexKey, `keyspace at ${this.path}`);
  }

  /** Called (before the read or write fails with CorruptError) when a sealed record does not open. */
  onCorruption(handler: (error: Error) => void): void {
    this.corruptionHandler = handler;
  }

  /** Whether the keyspace is encrypted at rest. */
  encrypted(): boolean {
    return this.sealing !== undefined;
  }

  /** What live, history and leaseKeys are keyed by for user key `key`. */
  private indexKey(key: Uint8Array): Buffer {
    if (!this.sealing) return key as Buffer;
    const token = this.sealing.token(key);
    this.rememberKey(token, key);
    return token;
  }

  private rememberKey(token: Buffer, key: Uint8Array): void {
    const id = token.toString('latin1');
    if (this.plainKeys.has(id)) return;
    if (this.plainKeys.size >= PLAIN_KEYS_MAX) this.plainKeys.clear();
    this.plainKeys.set(id, Buffer.from(key));
  }

  /** The user key behind a token, from plainKeys or else from the record (main, sub) it has. */
  private keyOfToken(token: Buffer, main: number, sub: number): Buffer {
    const known = this.plainKeys.get(token.toString('latin1'));
    if (known !== undefined) return known;
    const key = this.readRecord(main, sub).key;
    this.rememberKey(token, key);
    return key;
  }

  private storedRecord(revKey: Buffer, record: Buffer): Buffer {
    return this.sealing ? this.sealing.sealRecord(revKey, record) : record;
  }

  /** Decodes a revs value (opening it in an encrypted keyspace); a failed open is corruption. */
  private loadRecord(revKey: Uint8Array, value: Buffer): StoredRecord {
    if (!this.sealing) return decodeRecord(value);
    try {
      return decodeRecord(this.sealing.openRecord(revKey, value, `keyspace ${this.path} revision record`));
    } catch (e) {
      if (!(e instanceof EncryptionError)) throw e;
      const error = new CorruptError(e.message);
      this.corruptionHandler(error);
      throw error;
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.watchHub.closeAll();
    // LMDB copies on a native thread; closing the environment under it crashes the process.
    await Promise.allSettled(this.backups);
    this.abortExports();
    try {
      await this.dbs.env.close();
    } catch (e) {
      // After a failed restore the environment may be closed already.
      if (this.failed === undefined) throw e;
    }
  }

  currentRevision(): number {
    return this.revision;
  }

  compactRevision(): number {
    return this.compactRev;
  }

  appliedIndex(): number {
    return this.applied;
  }

  /**
   * Flushes every committed batch to disk and resolves with the applied index that is now
   * durable. The server calls it before discarding WAL entries up to that index: a commit's meta
   * page is otherwise flushed only by the next commit, so a power cut may undo the last batch.
   */
  sync(): Promise<number> {
    this.assertOpen();
    const applied = this.applied;
    const env = this.dbs.env as unknown as { sync(callback: (error?: Error) => void): void };
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
    const results: ApplyResult[] = [];
    const saved = {
      revision: this.revision,
      compactRev: this.compactRev,
      applied: this.applied,
      compactCursor: this.compactCursor,
    };
    const events: Event[] | undefined = this.watchHub.wantsEvents() ? [] : undefined;
    const prevKvInEvents = this.watchHub.wantsPrevKv();
    let lastIndex = this.applied;
    try {
      this.dbs.env.transactionSync(() => {
        for (const entry of entries) {
          if (entry.index <= saved.applied) {
            results.push({ index: entry.index, status: 'skipped' });
            continue;
          }
          invariant(entry.index > lastIndex, `raft index ${entry.index} not increasing`);
          lastIndex = entry.index;
          results.push(this.applyEntry(entry, events, prevKvInEvents));
          this.applied = entry.index;
        }
        const { meta } = this.dbs;
        meta.putSync(META_APPLIED, u64(this.applied));
        meta.putSync(META_REVISION, u64(this.revision));
        if (this.compactRev !== NEVER_COMPACTED) meta.putSync(META_COMPACT, u64(this.compactRev));
        this.compactChunk(this.compactionRecordsPerBatchMax);
        for (const [name, value] of Object.entries(options.meta ?? {}))
          meta.putSync(serverMetaKey(name), Buffer.from(value));
      });
    } catch (e) {
      this.revision = saved.revision;
      this.compactRev = saved.compactRev;
      this.applied = saved.applied;
      this.compactCursor = saved.compactCursor;
      throw e;
    }
    this.watchHub.onCommit(events ?? [], this.revision);
    return results;
  }

  private applyEntry(entry: AppliedEntry, events: Event[] | undefined, prevKvInEvents: boolean): ApplyResult {
    const ctx: WriteContext = { beginRevision: this.revision, sub: 0, events, prevKvInEvents };
    const eventsBefore = events?.length ?? 0;
    try {
      const response = this.applyOp(entry.op, ctx);
      if (ctx.sub > 0) this.revision = ctx.beginRevision + 1;
      return { index: entry.index, status: 'ok', response };
    } catch (e) {
      if (!(e instanceof MvccError) || e.code === 'corrupt') throw e;
      invariant(ctx.sub === 0, `request failed after writing (${e.code})`);
      if (events) events.length = eventsBefore;
      return { index: entry.index, status: 'error', error: e };
    }
  }

  private applyOp(op: WriteOp, ctx: WriteContext): WriteResponse {
    switch (op.type) {
      case 'put':
        return { type: 'put', response: this.applyPut(op.request, ctx) };
      case 'deleteRange':
        return { type: 'deleteRange', response: this.applyDeleteRange(op.request, ctx) };
      case 'txn':
        return { type: 'txn', response: this.applyTxn(op.request, ctx) };
      case 'compact':
        return { type: 'compact', response: this.applyCompact(op.request) };
      case 'leaseGrant':
        return { type: 'leaseGrant', response: this.applyLeaseGrant(op.request) };
      case 'leaseRevoke':
        return { type: 'leaseRevoke', response: this.applyLeaseRevoke(op.request, ctx) };
      case 'leaseCheckpoint':
        this.applyLeaseCheckpoint(op.request);
        return { type: 'leaseCheckpoint', response: { revision: this.revision } };
      case 'noop':
        return { type: 'noop', response: { revision: this.revision } };
      default:
        return assertNever(op);
    }
  }

  private applyPut(req: PutRequest, ctx: WriteContext): PutResponse {
    const err = checkPutRequest(req);
    if (err) throw err;
    const lease = req.lease ?? 0n;
    if (lease !== 0n && !this.leaseExists(lease)) throw new LeaseNotFoundError(lease);
    return this.put(req, ctx);
  }

  private applyDeleteRange(req: DeleteRangeRequest, ctx: WriteContext): DeleteRangeResponse {
    const err = checkDeleteRequest(req);
    if (err) throw err;
    return this.deleteRange(req, ctx);
  }

  private applyTxn(req: TxnRequest, ctx: WriteContext): TxnResponse {
    const err = checkTxnRequest(req, this.txnOpsMax);
    if (err) throw err;
    const path = this.comparePath(req);
    const checkError = this.checkTxnPath(req, path, { pos: 0 }, ctx.beginRevision);
    if (checkError) throw checkError;
    // Validation above covers every error etcd checks up front; a child transaction still guards
    // the rare case etcd would panic on (an ignore_value put after a from-key delete of that key).
    let response: TxnResponse | undefined;
    const subBefore = ctx.sub;
    const eventsBefore = ctx.events?.length ?? 0;
    try {
      this.dbs.env.transactionSync(() => {
        response = this.executeTxn(req, path, { pos: 0 }, ctx, true);
      });
    } catch (e) {
      ctx.sub = subBefore;
      if (ctx.events) ctx.events.length = eventsBefore;
      throw e;
    }
    invariant(response !== undefined, 'txn produced no response');
    return response;
  }

  private applyCompact(req: CompactionRequest): CompactionResponse {
    const target = req.revision;
    if (!Number.isSafeInteger(target))
      throw new InvalidRequestError('compaction revision must be an integer');
    if (target <= this.compactRev) throw new CompactedError(this.compactRev);
    if (target > this.revision) throw new FutureRevisionError(target, this.revision);
    this.compactRev = target;
    // Records kept for an earlier target may be superseded under this one: rescan from the start
    // (what earlier steps left is one record per key, so the rescan is cheap).
    this.compactCursor = Buffer.alloc(0);
    return { revision: this.revision };
  }

  private applyLeaseGrant(req: LeaseGrantRequest): LeaseGrantResponse {
    if (req.id === 0n) throw new InvalidRequestError('lease id must be chosen before proposal');
    if (req.ttlSeconds > LEASE_TTL_SECONDS_MAX) throw new LeaseTtlTooLargeError(req.ttlSeconds);
    if (!Number.isFinite(req.ttlSeconds) || req.ttlSeconds < 0) {
      throw new InvalidRequestError('lease ttl must be a non-negative number');
    }
    if (this.leaseExists(req.id)) throw new LeaseExistsError(req.id);
    this.writeLease({ id: req.id, ttlSeconds: req.ttlSeconds, remainingTtlSeconds: 0 });
    return { revision: this.revision, id: req.id, ttlSeconds: req.ttlSeconds };
  }

  private applyLeaseRevoke(req: LeaseRevokeRequest, ctx: WriteContext): LeaseRevokeResponse {
    if (!this.leaseExists(req.id)) throw new LeaseNotFoundError(req.id);
    // Keys come back in byte order, which is the order etcd deletes them in (sorted).
    for (const key of this.leaseKeys(req.id)) {
      this.deleteRange({ key }, ctx);
    }
    this.dbs.leases.removeSync(encodeLeaseKey(req.id));
    return { revision: ctx.beginRevision + (ctx.sub > 0 ? 1 : 0) };
  }

  /** etcd ignores checkpoints of leases that are gone (revoked meanwhile). */
  private applyLeaseCheckpoint(req: LeaseCheckpointRequest): void {
    const current = this.lease(req.id);
    if (!current) return;
    this.writeLease({ ...current, remainingTtlSeconds: req.remainingTtlSeconds });
  }

  private writeLease(record: LeaseRecord): void {
    const value = Buffer.allocUnsafe(16);
    value.writeDoubleBE(record.ttlSeconds, 0);
    value.writeDoubleBE(record.remainingTtlSeconds, 8);
    this.dbs.leases.putSync(encodeLeaseKey(record.id), value);
  }

  // ---- primitive writes -------------------------------------------------------------------------

  private getLive(key: Uint8Array): LiveEntry | undefined {
    const v = this.dbs.live.getBinary(this.indexKey(key));
    return v ? decodeLive(v) : undefined;
  }

  private readRecord(main: number, sub: number): StoredRecord {
    const revKey = encodeRevKey(main, sub);
    const v = this.dbs.revs.getBinary(revKey);
    invariant(v !== undefined, `missing revision record ${main}.${sub}`);
    return this.loadRecord(revKey, v);
  }

  private liveKv(key: Uint8Array, live: LiveEntry, withValue: boolean): KeyValue {
    return {
      key: Buffer.from(key),
      createRevision: live.createRevision,
      modRevision: live.main,
      version: live.version,
      // lmdb-js hands out a fresh buffer per read, so subarrays of it need no copy.
      value: withValue ? this.readRecord(live.main, live.sub).value : EMPTY,
      lease: live.lease,
    };
  }

  private put(req: PutRequest, ctx: WriteContext): PutResponse {
    const live = this.getLive(req.key);
    if ((req.ignoreValue || req.ignoreLease) && !live) throw new KeyNotFoundError();
    const prev =
      live && (req.prevKv || req.ignoreValue || ctx.prevKvInEvents)
        ? this.liveKv(req.key, live, true)
        : undefined;
    const value = req.ignoreValue ? prev!.value : (req.value ?? EMPTY);
    const lease = req.ignoreLease ? live!.lease : (req.lease ?? 0n);
    const main = ctx.beginRevision + 1;
    const sub = ctx.sub++;
    const createRevision = live ? live.createRevision : main;
    const version = live ? live.version + 1 : 1;
    const { revs, history, leaseKeys } = this.dbs;
    const revKey = encodeRevKey(main, sub);
    revs.putSync(
      revKey,
      this.storedRecord(revKey, encodeRecord(KIND_PUT, req.key, createRevision, version, lease, value)),
    );
    const indexKey = this.indexKey(req.key);
    history.putSync(encodeHistoryKey(indexKey, main, sub), Buffer.of(KIND_PUT));
    this.dbs.live.putSync(indexKey, encodeLive({ main, sub, createRevision, version, lease }));
    if (live && live.lease !== 0n && live.lease !== lease)
      leaseKeys.removeSync(encodeLeaseKey(live.lease, indexKey));
    if (lease !== 0n) leaseKeys.putSync(encodeLeaseKey(lease, indexKey), Buffer.alloc(0));
    if (ctx.events) {
      const kv = {
        key: Buffer.from(req.key),
        createRevision,
        modRevision: main,
        version,
        value: Buffer.from(value),
        lease,
      };
      const eventPrev = this.eventPrev(ctx, req.key, prev, createRevision === main);
      ctx.events.push(eventPrev ? { type: 'put', kv, prevKv: eventPrev } : { type: 'put', kv });
    }
    const response: PutResponse = { revision: main };
    if (req.prevKv && prev) response.prevKv = prev;
    return response;
  }

  /**
   * etcd fills an event's prev_kv with the key as of the revision before the event (before the
   * whole txn, not before an earlier op of it), and none for a create event.
   */
  private eventPrev(
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

  private deleteKey(key: Uint8Array, live: LiveEntry, ctx: WriteContext, prev: KeyValue | undefined): void {
    const main = ctx.beginRevision + 1;
    const sub = ctx.sub++;
    const revKey = encodeRevKey(main, sub);
    this.dbs.revs.putSync(
      revKey,
      this.storedRecord(revKey, encodeRecord(KIND_TOMBSTONE, key, 0, 0, 0n, EMPTY)),
    );
    const indexKey = this.indexKey(key);
    this.dbs.history.putSync(encodeHistoryKey(indexKey, main, sub), Buffer.of(KIND_TOMBSTONE));
    this.dbs.live.removeSync(indexKey);
    if (live.lease !== 0n) this.dbs.leaseKeys.removeSync(encodeLeaseKey(live.lease, indexKey));
    if (ctx.events) {
      const kv: KeyValue = {
        key: Buffer.from(key),
        createRevision: 0,
        modRevision: main,
        version: 0,
        value: EMPTY,
        lease: 0n,
      };
      const eventPrev = this.eventPrev(ctx, key, prev, false);
      ctx.events.push(eventPrev ? { type: 'delete', kv, prevKv: eventPrev } : { type: 'delete', kv });
    }
  }

  private deleteRange(req: DeleteRangeRequest, ctx: WriteContext): DeleteRangeResponse {
    const targets = this.liveInRange(toKeyRange(req.key, req.rangeEnd));
    const prevKvs: KeyValue[] = [];
    for (const { key, live } of targets) {
      const prev = req.prevKv || ctx.prevKvInEvents ? this.liveKv(key, live, true) : undefined;
      if (req.prevKv && prev) prevKvs.push(prev);
      this.deleteKey(key, live, ctx, prev);
    }
    const changed = targets.length > 0 || ctx.sub > 0;
    return { revision: ctx.beginRevision + (changed ? 1 : 0), deleted: targets.length, prevKvs };
  }

  private liveInRange(range: KeyRange): { key: Buffer; live: LiveEntry }[] {
    if (range.single) {
      const live = this.getLive(range.begin);
      return live ? [{ key: Buffer.from(range.begin), live }] : [];
    }
    if (this.sealing) return this.sealedLiveInRange(range);
    const out: { key: Buffer; live: LiveEntry }[] = [];
    for (const { key, value } of this.dbs.live.getRange({
      start: range.begin as Buffer,
      end: range.end as Buffer,
    })) {
      out.push({ key, live: decodeLive(value) });
    }
    return out;
  }

  /**
   * liveInRange of an encrypted keyspace: tokens keep no key order, so every live entry's record
   * is opened, those in range kept, and the result sorted by key (see sealing.ts).
   */
  private sealedLiveInRange(range: KeyRange): { key: Buffer; live: LiveEntry }[] {
    const out: { key: Buffer; live: LiveEntry }[] = [];
    for (const { key: token, value } of this.dbs.live.getRange({})) {
      const live = decodeLive(value);
      const key = this.keyOfToken(token, live.main, live.sub);
      if (inRange(range, key)) out.push({ key, live });
    }
    return out.sort((a, b) => Buffer.compare(a.key, b.key));
  }

  // ---- txn --------------------------------------------------------------------------------------

  /** etcd evaluates every compare, nested ones included, against the state before the txn. */
  private comparePath(req: TxnRequest): boolean[] {
    const ok = req.compare.every((c) => this.evaluateCompare(c));
    const path = [ok];
    for (const op of ok ? req.success : req.failure) {
      if (op.type === 'txn') path.push(...this.comparePath(op.request));
    }
    return path;
  }

  private evaluateCompare(c: Compare): boolean {
    const targets = this.liveInRange(toKeyRange(c.key, c.rangeEnd));
    if (targets.length === 0) {
      if (c.target === 'value') return false;
      return this.compareResult(c, compareTarget(c, undefined, EMPTY));
    }
    for (const { key, live } of targets) {
      const value = c.target === 'value' ? this.readRecord(live.main, live.sub).value : EMPTY;
      if (!this.compareResult(c, compareTarget(c, { key, live }, value))) return false;
    }
    return true;
  }

  private compareResult(c: Compare, result: number): boolean {
    switch (c.result) {
      case 'equal':
        return result === 0;
      case 'not-equal':
        return result !== 0;
      case 'greater':
        return result > 0;
      case 'less':
        return result < 0;
      default:
        return assertNever(c.result);
    }
  }

  /** etcd's checkTxn: range revisions and put preconditions along the chosen path, before writing. */
  private checkTxnPath(
    req: TxnRequest,
    path: boolean[],
    cursor: { pos: number },
    beginRevision: number,
  ): MvccError | undefined {
    const ops = path[cursor.pos++] ? req.success : req.failure;
    for (const op of ops) {
      let err: MvccError | undefined;
      switch (op.type) {
        case 'range':
          err = this.checkReadRevision(op.request.revision ?? 0, beginRevision);
          break;
        case 'put':
          err = this.checkTxnPut(op.request);
          break;
        case 'deleteRange':
          break;
        case 'txn':
          err = this.checkTxnPath(op.request, path, cursor, beginRevision);
          break;
        default:
          assertNever(op);
      }
      if (err) return err;
    }
    return undefined;
  }

  private checkTxnPut(req: PutRequest): MvccError | undefined {
    if ((req.ignoreValue || req.ignoreLease) && !this.getLive(req.key)) return new KeyNotFoundError();
    const lease = req.lease ?? 0n;
    if (lease !== 0n && !this.leaseExists(lease)) return new LeaseNotFoundError(lease);
    return undefined;
  }

  /** etcd's checkRange: 0 = current; note a negative revision is below any compact revision. */
  private checkReadRevision(revision: number, current: number): MvccError | undefined {
    if (revision === 0) return undefined;
    if (revision > current) return new FutureRevisionError(revision, current);
    if (revision < this.compactRev) return new CompactedError(this.compactRev);
    return undefined;
  }

  private executeTxn(
    req: TxnRequest,
    path: boolean[],
    cursor: { pos: number },
    ctx: WriteContext,
    top: boolean,
  ): TxnResponse {
    const succeeded = path[cursor.pos++]!;
    const responses: ResponseOp[] = [];
    for (const op of succeeded ? req.success : req.failure) {
      responses.push(this.executeOp(op, path, cursor, ctx));
    }
    // etcd fills the header only on the outermost txn response; nested ones report revision 0.
    const revision = top ? ctx.beginRevision + (ctx.sub > 0 ? 1 : 0) : 0;
    return { revision, succeeded, responses };
  }

  private executeOp(op: RequestOp, path: boolean[], cursor: { pos: number }, ctx: WriteContext): ResponseOp {
    switch (op.type) {
      case 'range':
        return {
          type: 'range',
          response: this.rangeAt(op.request, ctx.beginRevision + (ctx.sub > 0 ? 1 : 0)),
        };
      case 'put':
        return { type: 'put', response: this.put(op.request, ctx) };
      case 'deleteRange':
        return { type: 'deleteRange', response: this.deleteRange(op.request, ctx) };
      case 'txn':
        return { type: 'txn', response: this.executeTxn(op.request, path, cursor, ctx, false) };
      default:
        return assertNever(op);
    }
  }

  // ---- reads --------------------------------------------------------------------------------------

  /** A range read outside raft (serializable, or after ReadIndex) at the current or an old revision. */
  range(req: RangeRequest): RangeResponse {
    this.assertOpen();
    // etcd's range treats a negative revision as the current one (inside a txn it is "compacted").
    const revision = Math.max(0, req.revision ?? 0);
    const err = checkRangeRequest(req) ?? this.checkReadRevision(revision, this.revision);
    if (err) throw err;
    return this.rangeAt(req, this.revision);
  }

  /** A txn without writes, served outside raft. Throws InvalidRequestError for txns that write. */
  readTxn(req: TxnRequest): TxnResponse {
    this.assertOpen();
    if (!isTxnReadOnly(req)) throw new InvalidRequestError('txn with writes must go through raft');
    const err = checkTxnRequest(req, this.txnOpsMax);
    if (err) throw err;
    const path = this.comparePath(req);
    const checkError = this.checkTxnPath(req, path, { pos: 0 }, this.revision);
    if (checkError) throw checkError;
    const ctx: WriteContext = {
      beginRevision: this.revision,
      sub: 0,
      events: undefined,
      prevKvInEvents: false,
    };
    return this.executeTxn(req, path, { pos: 0 }, ctx, true);
  }

  /** etcd's executeRange over `current` (the revision a write txn would report). */
  private rangeAt(req: RangeRequest, current: number): RangeResponse {
    const atRevision = req.revision && req.revision > 0 ? req.revision : current;
    const range = toKeyRange(req.key, req.rangeEnd);
    const sortOrder = req.sortOrder ?? 'none';
    const sortTarget = req.sortTarget ?? 'key';
    const limit = Math.max(0, req.limit ?? 0);
    const filtered = !!(
      req.minModRevision ||
      req.maxModRevision ||
      req.minCreateRevision ||
      req.maxCreateRevision
    );
    // Without sort order or filters only limit+1 kvs are fetched (one extra for `more`). As in etcd
    // this looks at the raw sort order: target≠key with order none fetches limit+1 in key order,
    // then sorts those ascending by the target.
    const fetchMax = limit > 0 && sortOrder === 'none' && !filtered ? limit + 1 : 0;
    // keys_only blanks values after sorting, so a sort by value still needs them.
    const withValue = !req.keysOnly || sortTarget === 'value';
    const { kvs: raw, count } =
      atRevision >= current
        ? this.collectLive(range, req.countOnly ? -1 : fetchMax, withValue)
        : this.collectHistorical(range, atRevision, req.countOnly ? -1 : fetchMax, withValue);
    let kvs = !filtered
      ? raw
      : raw.filter(
          (kv) =>
            !(req.maxModRevision && kv.modRevision > req.maxModRevision) &&
            !(req.minModRevision && kv.modRevision < req.minModRevision) &&
            !(req.maxCreateRevision && kv.createRevision > req.maxCreateRevision) &&
            !(req.minCreateRevision && kv.createRevision < req.minCreateRevision),
        );
    kvs = sortKvs(kvs, sortOrder, sortTarget);
    let more = false;
    if (limit > 0 && kvs.length > limit) {
      kvs = kvs.slice(0, limit);
      more = true;
    }
    if (req.keysOnly && withValue) kvs = kvs.map((kv) => ({ ...kv, value: EMPTY }));
    return { revision: current, kvs, more, count };
  }

  /** fetchMax: 0 = all, -1 = none (count only). */
  private collectLive(
    range: KeyRange,
    fetchMax: number,
    withValue: boolean,
  ): { kvs: KeyValue[]; count: number } {
    const kvs: KeyValue[] = [];
    if (range.single) {
      const live = this.getLive(range.begin);
      if (!live) return { kvs, count: 0 };
      if (fetchMax >= 0) kvs.push(this.liveKv(range.begin, live, withValue));
      return { kvs, count: 1 };
    }
    if (this.sealing) {
      const found = this.sealedLiveInRange(range);
      const kept = fetchMax < 0 ? [] : fetchMax > 0 ? found.slice(0, fetchMax) : found;
      for (const { key, live } of kept) kvs.push(this.liveKv(key, live, withValue));
      return { kvs, count: found.length };
    }
    let count = 0;
    for (const { key, value } of this.dbs.live.getRange({
      start: range.begin as Buffer,
      end: range.end as Buffer,
    })) {
      count++;
      if (fetchMax < 0 || (fetchMax > 0 && kvs.length >= fetchMax)) continue;
      kvs.push(this.liveKv(key, decodeLive(value), withValue));
    }
    return { kvs, count };
  }

  private historyBounds(range: KeyRange): { start: Buffer; end: Buffer | undefined } {
    invariant(range.single || !this.sealing, 'history range bounds in an encrypted keyspace');
    const start = encodeHistoryPrefix(this.indexKey(range.begin));
    if (range.single) {
      const end = Buffer.from(start);
      end[end.length - 1] = 0x02;
      return { start, end };
    }
    return { start, end: range.end ? encodeHistoryPrefix(range.end) : undefined };
  }

  /** Latest put at or below `revision` of every key in range (tombstoned keys skipped). */
  private *historicalVersions(range: KeyRange, revision: number): Generator<{ main: number; sub: number }> {
    if (this.sealing && !range.single) {
      yield* this.sealedHistoricalVersions(range, revision);
      return;
    }
    let groupPrefix: Buffer | undefined;
    let best: { main: number; sub: number; kind: number } | undefined;
    for (const { key, value } of this.dbs.history.getRange(this.historyBounds(range))) {
      const prefix = key.subarray(0, key.length - REV_KEY_BYTES);
      if (!groupPrefix || !prefix.equals(groupPrefix)) {
        if (best && best.kind === KIND_PUT) yield best;
        groupPrefix = Buffer.from(prefix);
        best = undefined;
      }
      const rev = decodeRevKey(key, key.length - REV_KEY_BYTES);
      if (rev.main <= revision) best = { ...rev, kind: value[0]! };
    }
    if (best && best.kind === KIND_PUT) yield best;
  }

  /** historicalVersions of an encrypted keyspace: every key's history, filtered by key, sorted. */
  private sealedHistoricalVersions(range: KeyRange, revision: number): { main: number; sub: number }[] {
    const found: { main: number; sub: number; key: Buffer }[] = [];
    let groupPrefix: Buffer | undefined;
    let token: Buffer | undefined;
    let best: { main: number; sub: number; kind: number } | undefined;
    const flush = (): void => {
      if (!best || best.kind !== KIND_PUT || token === undefined) return;
      const key = this.keyOfToken(token, best.main, best.sub);
      if (inRange(range, key)) found.push({ main: best.main, sub: best.sub, key });
    };
    for (const { key, value } of this.dbs.history.getRange({})) {
      const prefix = key.subarray(0, key.length - REV_KEY_BYTES);
      if (!groupPrefix || !prefix.equals(groupPrefix)) {
        flush();
        groupPrefix = Buffer.from(prefix);
        token = decodeHistoryKey(key).key;
        best = undefined;
      }
      const rev = decodeRevKey(key, key.length - REV_KEY_BYTES);
      if (rev.main <= revision) best = { ...rev, kind: value[0]! };
    }
    flush();
    return found.sort((a, b) => Buffer.compare(a.key, b.key));
  }

  private collectHistorical(
    range: KeyRange,
    revision: number,
    fetchMax: number,
    withValue: boolean,
  ): { kvs: KeyValue[]; count: number } {
    const kvs: KeyValue[] = [];
    let count = 0;
    for (const { main, sub } of this.historicalVersions(range, revision)) {
      count++;
      if (fetchMax < 0 || (fetchMax > 0 && kvs.length >= fetchMax)) continue;
      const r = this.readRecord(main, sub);
      kvs.push({
        key: r.key,
        createRevision: r.createRevision,
        modRevision: main,
        version: r.version,
        value: withValue ? r.value : EMPTY,
        lease: r.lease,
      });
    }
    return { kvs, count };
  }

  // ---- history for watchers -------------------------------------------------------------------

  /**
   * Events with revision in [fromRevision, toRevision] for keys in [key, rangeEnd), oldest first.
   * Stops at the first revision boundary after `eventsMax` events or `recordsScannedMax` scanned
   * records: a revision's events are always delivered together, as etcd does. Returns the next
   * revision still to read.
   */
  readEvents(
    key: Uint8Array,
    rangeEnd: Uint8Array | undefined,
    fromRevision: number,
    toRevision: number,
    prevKv: boolean,
    eventsMax: number,
    recordsScannedMax = Number.POSITIVE_INFINITY,
  ): { events: Event[]; nextRevision: number } {
    invariant(fromRevision >= this.compactRev, 'reading compacted history');
    const range = toKeyRange(key, rangeEnd);
    const events: Event[] = [];
    let nextRevision = toRevision + 1;
    let lastMain = -1;
    let scanned = 0;
    let lastScannedMain = -1;
    const iter = this.dbs.revs.getRange({
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
      const r = this.loadRecord(revKey, value);
      if (!inRange(range, r.key) || !this.logicallyPresent(r.key, main, sub, r.kind)) continue;
      lastMain = main;
      events.push(this.eventFromRecord(r, main, prevKv));
    }
    return { events, nextRevision };
  }

  private eventFromRecord(r: StoredRecord, main: number, prevKv: boolean): Event {
    const kv: KeyValue =
      r.kind === KIND_PUT
        ? {
            key: r.key,
            createRevision: r.createRevision,
            modRevision: main,
            version: r.version,
            value: r.value,
            lease: r.lease,
          }
        : {
            key: r.key,
            createRevision: 0,
            modRevision: main,
            version: 0,
            value: EMPTY,
            lease: 0n,
          };
    const event: Event = { type: r.kind === KIND_PUT ? 'put' : 'delete', kv };
    // As etcd: no prev_kv for a create event; else the key as of the revision before.
    if (prevKv && !(r.kind === KIND_PUT && r.createRevision === main)) {
      const prev = this.previousVersion(r.key, main);
      if (prev) event.prevKv = prev;
    }
    return event;
  }

  /** The version of `key` at revision main - 1 (before main's txn), if a put that compaction kept. */
  private previousVersion(key: Uint8Array, main: number): KeyValue | undefined {
    // The version before an event at the compact revision is compacted away (maybe not yet
    // physically); for later events the latest entry below main is the one a read would see.
    if (main <= this.compactRev) return undefined;
    const indexKey = this.indexKey(key);
    const start = encodeHistoryKey(indexKey, main, 0);
    for (const { key: hk, value } of this.dbs.history.getRange({
      start,
      end: encodeHistoryPrefix(indexKey),
      reverse: true,
      limit: 2,
    })) {
      const rev = decodeRevKey(hk, hk.length - REV_KEY_BYTES);
      if (rev.main === main) continue;
      if (value[0] !== KIND_PUT) return undefined;
      const r = this.readRecord(rev.main, rev.sub);
      return {
        key: r.key,
        createRevision: r.createRevision,
        modRevision: rev.main,
        version: r.version,
        value: r.value,
        lease: r.lease,
      };
    }
    return undefined;
  }

  // ---- compaction and hashing ------------------------------------------------------------------

  /** True while superseded versions at or below the compact revision still sit on disk. */
  compactionPending(): boolean {
    return this.compactCursor !== undefined;
  }

  /**
   * Runs one bounded step of physical compaction in its own transaction. Safe at any time on any
   * replica (it changes no logical result); the server may call it when idle. Returns whether
   * more remains.
   */
  compactStep(recordsMax = this.compactionRecordsPerBatchMax): boolean {
    this.assertOpen();
    if (!this.compactionPending()) return false;
    const saved = this.compactCursor;
    try {
      this.dbs.env.transactionSync(() => this.compactChunk(recordsMax));
    } catch (e) {
      this.compactCursor = saved;
      throw e;
    }
    return this.compactionPending();
  }

  /**
   * Walks up to entriesMax history entries (key-major, so each key's versions are adjacent and
   * no per-record lookups are needed) and deletes the versions at or below the compact revision
   * that a read there no longer needs: everything but the latest put of each key, so tombstoned
   * keys vanish — except a tombstone at exactly the compact revision, which a watch starting
   * there must still see (etcd keeps it too, etcd-io/etcd#18089). Must run inside a write
   * transaction.
   */
  private compactChunk(entriesMax: number): void {
    if (this.compactCursor === undefined) return;
    const { revs, history, meta } = this.dbs;
    const doomed: Buffer[] = [];
    const compactRev = this.compactRev;
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
    const start = this.compactCursor.length > 0 ? this.compactCursor : undefined;
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
    this.compactCursor = resume;
    meta.putSync(META_COMPACT_CURSOR, resume ? Buffer.concat([Buffer.of(1), resume]) : Buffer.of(0));
  }

  /**
   * Whether the version (main, sub) ≤ compact revision is the latest put of its key at that point
   * (read in `transaction` against `compactRev` when given: an export's view).
   */
  private keptByCompaction(
    key: Uint8Array,
    main: number,
    sub: number,
    kind: number,
    compactRev = this.compactRev,
    transaction?: Transaction,
  ): boolean {
    if (kind !== KIND_PUT && main < compactRev) return false;
    const indexKey = this.indexKey(key);
    const start = encodeHistoryKey(indexKey, compactRev, 0xffffffff);
    for (const { key: hk } of this.dbs.history.getRange({
      start,
      end: encodeHistoryPrefix(indexKey),
      reverse: true,
      limit: 1,
      transaction,
    })) {
      const rev = decodeRevKey(hk, hk.length - REV_KEY_BYTES);
      return rev.main === main && rev.sub === sub;
    }
    invariant(false, `history entry missing for revision ${main}.${sub}`);
  }

  /** Logical presence of a stored record, whatever physical compaction has reached. */
  private logicallyPresent(key: Uint8Array, main: number, sub: number, kind: number): boolean {
    if (main > this.compactRev || !this.compactionPending()) return true;
    return this.keptByCompaction(key, main, sub, kind);
  }

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
  hashKV(revision = 0): HashKVResult {
    this.assertOpen();
    // etcd's HashByRev: a revision at (not only below) the compact revision is compacted.
    if (revision > 0 && revision <= this.compactRev) throw new CompactedError(this.compactRev);
    if (revision > this.revision) throw new FutureRevisionError(revision, this.revision);
    // A negative revision hashes no version at all, as etcd's (it is not the current revision).
    const at = revision === 0 ? this.revision : revision;
    let anyKeyLive: boolean | undefined;
    const counted = (r: StoredRecord, main: number, sub: number): boolean => {
      if (main > this.compactRev) return true;
      if (r.kind !== KIND_PUT) return false;
      if (this.compactionPending() && !this.keptByCompaction(r.key, main, sub, r.kind)) return false;
      anyKeyLive ??= this.rangeAt({ ...EVERY_KEY, revision: at, limit: 1 }, this.revision).kvs.length > 0;
      return !anyKeyLive || this.keptByCompaction(r.key, main, sub, r.kind, at);
    };
    let hash = crc32c(ETCD_KEY_BUCKET_NAME);
    for (const { key, value } of this.dbs.revs.getRange({
      start: encodeRevKey(0, 0),
      end: encodeRevKey(Math.max(at + 1, 0), 0),
    })) {
      const { main, sub } = decodeRevKey(key);
      const r = this.loadRecord(key, value);
      if (!counted(r, main, sub)) continue;
      const tombstone = r.kind !== KIND_PUT;
      hash = crc32c(revisionBytes(main, sub, tombstone), hash);
      hash = crc32c(encodeKeyValue({ ...r, main, sub, tombstone }), hash);
    }
    return { hash, compactRevision: this.compactRev, revision: Math.max(at, 0) };
  }

  /**
   * Cheap space figures for metrics (LMDB's own counters, no scan): live keys, and the bytes of
   * the file up to LMDB's last used page (freed pages below it are reused, not returned).
   */
  spaceStats(): { liveKeys: number; usedBytes: number } {
    this.assertOpen();
    type LmdbStats = { entryCount?: number; lastPageNumber?: number; pageSize?: number };
    const live = (this.dbs.live as unknown as { getStats(): LmdbStats }).getStats();
    const env = (this.dbs.env as unknown as { getStats(): LmdbStats }).getStats();
    return {
      liveKeys: live.entryCount ?? 0,
      usedBytes: ((env.lastPageNumber ?? 0) + 1) * (env.pageSize ?? 4096),
    };
  }

  /** Entry counts of the raw sub-databases (tests, metrics, the benchmark). */
  storageStats(): {
    revisions: number;
    historyEntries: number;
    liveKeys: number;
    leases: number;
    leaseKeys: number;
  } {
    this.assertOpen();
    const count = (db: Bin): number => {
      let n = 0;
      for (const _ of db.getKeys({})) n++;
      return n;
    };
    const { revs, history, live, leases, leaseKeys } = this.dbs;
    return {
      revisions: count(revs),
      historyEntries: count(history),
      liveKeys: count(live),
      leases: count(leases),
      leaseKeys: count(leaseKeys),
    };
  }

  // ---- leases ----------------------------------------------------------------------------------

  private leaseExists(id: LeaseId): boolean {
    return this.dbs.leases.getBinary(encodeLeaseKey(id)) !== undefined;
  }

  lease(id: LeaseId): LeaseRecord | undefined {
    const v = this.dbs.leases.getBinary(encodeLeaseKey(id));
    if (!v) return undefined;
    return { id, ttlSeconds: v.readDoubleBE(0), remainingTtlSeconds: v.readDoubleBE(8) };
  }

  /** Every persisted lease (the lease layer rebuilds its timers from these on start). */
  leases(): LeaseRecord[] {
    const out: LeaseRecord[] = [];
    for (const { key, value } of this.dbs.leases.getRange({})) out.push(decodeLeaseRecord(key, value));
    return out;
  }

  /** Keys attached to a lease, in byte order. */
  leaseKeys(id: LeaseId): Buffer[] {
    const start = encodeLeaseKey(id);
    const end = id === (1n << 63n) - 1n ? undefined : encodeLeaseKey(id + 1n);
    const out: Buffer[] = [];
    for (const key of this.dbs.leaseKeys.getKeys({ start, end })) out.push(Buffer.from(key.subarray(8)));
    if (!this.sealing) return out;
    // Tokens: the keys come from their live records, sorted as the plain index would have them.
    const keys: Buffer[] = [];
    for (const token of out) {
      const v = this.dbs.live.getBinary(token);
      invariant(v !== undefined, 'lease key without a live entry');
      const live = decodeLive(v);
      keys.push(this.keyOfToken(token, live.main, live.sub));
    }
    return keys.sort(Buffer.compare);
  }

  /**
   * Rebases the applied Raft index (snapshot restore: the keyspace of one cluster becomes the
   * starting state of a new cluster whose log begins again at `index`). Nothing else changes.
   */
  rebaseAppliedIndex(index: number): void {
    this.assertOpen();
    invariant(Number.isSafeInteger(index) && index >= 0, `bad applied index ${index}`);
    this.dbs.env.transactionSync(() => {
      this.dbs.meta.putSync(META_APPLIED, u64(index));
    });
    this.applied = index;
  }

  // ---- copying the whole history out and in (etcd-format snapshots) ---------------------------

  /** A consistent view of the keyspace to copy out; see KeyspaceExport. */
  openExport(): KeyspaceExport {
    this.assertOpen();
    const { env, revs, leases, meta } = this.dbs;
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
    const number = (name: Buffer): number => {
      const value = read(name);
      return value === undefined ? 0 : readU64(value, 0);
    };
    const revision = number(META_REVISION);
    const compactRevision = number(META_COMPACT);
    const cursor = read(META_COMPACT_CURSOR);
    const compactionPending = cursor !== undefined && cursor[0] === 1;
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
      appliedIndex: number(META_APPLIED),
      *records() {
        let after: Buffer | undefined;
        for (;;) {
          const batch = step(revs, after);
          for (const { key, value } of batch) {
            const { main, sub } = decodeRevKey(key);
            const r = keyspace.loadRecord(key, value);
            if (
              compactionPending &&
              main <= compactRevision &&
              !keyspace.keptByCompaction(r.key, main, sub, r.kind, compactRevision, transaction)
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
    const { env, revs, history, live, leaseKeys, meta } = this.dbs;
    if (this.applied !== 0 || this.revision !== this.initialRevision || revs.getKeysCount({ limit: 1 }) > 0)
      throw new InvalidRequestError(`keyspace at ${this.path} is not empty; import into a fresh one`);
    const leaseIds = new Set<bigint>();
    env.transactionSync(() => {
      for (const lease of input.leases) {
        if (leaseIds.has(lease.id)) throw new SnapshotInvalidError(`lease ${lease.id} is listed twice`);
        leaseIds.add(lease.id);
        this.writeLease(lease);
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
      const indexKey = this.indexKey(r.key);
      const previous = live.get(indexKey);
      const previousLease = previous === undefined ? 0n : decodeLive(previous).lease;
      if (previousLease !== 0n) leaseKeys.removeSync(encodeLeaseKey(previousLease, indexKey));
      const revKey = encodeRevKey(r.main, r.sub);
      if (r.tombstone) {
        revs.putSync(revKey, this.storedRecord(revKey, encodeRecord(KIND_TOMBSTONE, r.key, 0, 0, 0n, EMPTY)));
        history.putSync(encodeHistoryKey(indexKey, r.main, r.sub), Buffer.of(KIND_TOMBSTONE));
        live.removeSync(indexKey);
        return;
      }
      const { createRevision, version, lease } = r;
      if (!Number.isSafeInteger(createRevision) || createRevision < 1 || createRevision > r.main)
        throw new SnapshotInvalidError(`revision ${r.main}.${r.sub} has create revision ${createRevision}`);
      if (!Number.isSafeInteger(version) || version < 1)
        throw new SnapshotInvalidError(`revision ${r.main}.${r.sub} has version ${version}`);
      revs.putSync(
        revKey,
        this.storedRecord(revKey, encodeRecord(KIND_PUT, r.key, createRevision, version, lease, r.value)),
      );
      history.putSync(encodeHistoryKey(indexKey, r.main, r.sub), Buffer.of(KIND_PUT));
      live.putSync(indexKey, encodeLive({ main: r.main, sub: r.sub, createRevision, version, lease }));
      if (lease === 0n) return;
      if (leaseIds.has(lease)) leaseKeys.putSync(encodeLeaseKey(lease, indexKey), Buffer.alloc(0));
      else keysWithMissingLease++;
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
      meta.putSync(META_REVISION, u64(revision));
      meta.putSync(META_COMPACT, u64(compactRev));
      meta.putSync(META_COMPACT_CURSOR, input.compactionPending ? Buffer.of(1) : Buffer.of(0));
    });
    this.revision = revision;
    this.compactRev = compactRev;
    this.compactCursor = input.compactionPending ? Buffer.alloc(0) : undefined;
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
  reencryptStep(recordsMax = this.compactionRecordsPerBatchMax): boolean {
    this.assertOpen();
    const sealing = this.sealing;
    if (sealing === undefined) return false;
    const { revs, meta } = this.dbs;
    const where = `keyspace ${this.path} revision record`;
    let resume: Buffer | undefined;
    this.dbs.env.transactionSync(() => {
      const sealedIndexKey = meta.getBinary(META_INDEX_KEY);
      invariant(sealedIndexKey !== undefined, 'encrypted keyspace without its index key');
      if (sealing.isStale(sealedIndexKey, this.path)) meta.putSync(META_INDEX_KEY, sealing.resealIndexKey());
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
        const record = this.loadRecord(key, value);
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
    const sealedIndexKey = this.dbs.meta.getBinary(META_INDEX_KEY);
    if (sealedIndexKey !== undefined) count(sealedIndexKey);
    for (const { value } of this.dbs.revs.getRange({})) count(value);
    return use;
  }

  // ---- server metadata -------------------------------------------------------------------------

  /**
   * Small records the server keeps beside the keyspace (cluster membership), so they travel in
   * snapshots with it. Names live under a prefix of their own in the meta sub-database.
   */
  putMeta(name: string, value: Uint8Array): void {
    this.assertOpen();
    const key = serverMetaKey(name);
    this.dbs.env.transactionSync(() => {
      this.dbs.meta.putSync(key, Buffer.from(value));
    });
  }

  getMeta(name: string): Uint8Array | undefined {
    this.assertOpen();
    const value = this.dbs.meta.getBinary(serverMetaKey(name));
    return value === undefined ? undefined : Uint8Array.from(value);
  }

  // ---- snapshots -------------------------------------------------------------------------------

  /** Writes a consistent copy of the whole environment (data, leases, applied index) to `path`. */
  async createSnapshot(path: string, options: { compact?: boolean } = {}): Promise<SnapshotInfo> {
    this.assertOpen();
    const meta = { appliedIndex: this.applied, revision: this.revision, compactRevision: this.compactRev };
    // LMDB copies a directory environment into a directory; stage there, then move the file.
    const stagingDir = `${path}.staging`;
    rmSync(stagingDir, { recursive: true, force: true });
    mkdirSync(stagingDir, { recursive: true });
    try {
      // compact: LMDB writes only live pages, renumbered (free pages dropped) — a defragmented copy.
      const backup = this.dbs.env.backup(stagingDir, options.compact ?? false);
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
    await this.dbs.env.close();
    const revisionBefore = this.revision;
    try {
      renameSync(staged, join(this.path, 'data.mdb'));
      rmSync(join(this.path, 'lock.mdb'), { force: true });
      if (!this.noSync) syncDirSync(this.path);
      this.dbs = openDbs(this.path, this.noSync);
      this.loadMeta();
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

function inRange(range: KeyRange, key: Uint8Array): boolean {
  if (range.single) return Buffer.compare(range.begin, key) === 0;
  if (Buffer.compare(key, range.begin) < 0) return false;
  return range.end === undefined || Buffer.compare(key, range.end) < 0;
}

/** Compares the kv's target field with the compare's operand; missing key = zero values. */
function compareTarget(
  c: Compare,
  target: { key: Uint8Array; live: LiveEntry } | undefined,
  value: Uint8Array,
): number {
  const live = target?.live;
  switch (c.target) {
    case 'value':
      return Buffer.compare(value, c.value);
    case 'version':
      return compareNumbers(live?.version ?? 0, c.version);
    case 'create':
      return compareNumbers(live?.createRevision ?? 0, c.createRevision);
    case 'mod':
      return compareNumbers(live?.main ?? 0, c.modRevision);
    case 'lease':
      return compareBigints(live?.lease ?? 0n, c.lease);
    default:
      return assertNever(c);
  }
}

/**
 * etcd's sort rules: target key + order none (or ascend) keeps key order; any other target with
 * order none sorts ascending. Ties keep key order (etcd's sort of small results is stable).
 */
export function sortKvs(
  kvs: KeyValue[],
  order: RangeRequest['sortOrder'],
  target: RangeRequest['sortTarget'],
): KeyValue[] {
  let effective = order ?? 'none';
  const t = target ?? 'key';
  if (t !== 'key' && effective === 'none') effective = 'ascend';
  else if (t === 'key' && effective === 'ascend') effective = 'none';
  if (effective === 'none') return kvs;
  const cmp = (a: KeyValue, b: KeyValue): number => {
    switch (t) {
      case 'key':
        return Buffer.compare(a.key, b.key);
      case 'version':
        return compareNumbers(a.version, b.version);
      case 'create':
        return compareNumbers(a.createRevision, b.createRevision);
      case 'mod':
        return compareNumbers(a.modRevision, b.modRevision);
      case 'value':
        return Buffer.compare(a.value, b.value);
      default:
        return assertNever(t);
    }
  };
  const sign = effective === 'descend' ? -1 : 1;
  return [...kvs].sort((a, b) => sign * cmp(a, b));
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
    env = open({ path, noSubdir: true, readOnly: true, maxDbs: DB_NAMES.length + 2 });
    const meta = env.openDB({ name: 'meta', encoding: 'binary', keyEncoding: 'binary' }) as Bin;
    const format = readMeta(meta, META_FORMAT);
    if (format !== FORMAT_VERSION)
      throw new SnapshotInvalidError(`format ${format}, expected ${FORMAT_VERSION}`);
    const revision = readMeta(meta, META_REVISION);
    const compactRevision = readCompactMeta(meta);
    if (compactRevision > revision) throw new SnapshotInvalidError('compact revision above current revision');
    const revs = env.openDB({ name: 'revs', encoding: 'binary', keyEncoding: 'binary' }) as Bin;
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
      appliedIndex: readMeta(meta, META_APPLIED),
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
