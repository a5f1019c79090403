// The keyspace's records in one LMDB environment (environment.ts; layout in encoding.ts): revision
// records, the history and live indexes, leases and the keys attached to them. In an encrypted
// keyspace it seals the records and keys the indexes by tokens (sealing.ts), so the modules above
// it deal in user keys and plain records either way. It stores and finds versions of keys; what a
// request means (etcd's rules for puts, ranges, txns, compaction) lives in those modules.

import type { Transaction } from 'lmdb';
import { EncryptionError, type EncryptionKeys, envelopeKeyId } from '../storage/encryption.js';
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
  type StoredRecord,
} from './encoding.js';
import {
  type Bin,
  type Dbs,
  initializeMeta,
  META_INDEX_KEY,
  openDbs,
  readCounters,
  type StoredCounters,
  serverMetaKey,
  writeCounters,
} from './environment.js';
import { CorruptError, invariant } from './errors.js';
import { inRange, type KeyRange } from './key-range.js';
import { KeyspaceSealing } from './sealing.js';
import type { KeyValue, LeaseId, LeaseRecord } from './types.js';

/** Bound on the encrypted keyspace's token → key map (see plainKeys); about 100 MB of 64-byte keys. */
const PLAIN_KEYS_MAX = 1_000_000;
export const EMPTY = new Uint8Array(0);

export function decodeLeaseRecord(key: Buffer, value: Buffer): LeaseRecord {
  return {
    id: decodeLeaseKey(key),
    ttlSeconds: value.readDoubleBE(0),
    remainingTtlSeconds: value.readDoubleBE(8),
  };
}

/** A stored version as etcd's KeyValue (modRevision = the version's main revision). */
export function versionKv(r: StoredRecord, main: number, withValue = true): KeyValue {
  return {
    key: r.key,
    createRevision: r.createRevision,
    modRevision: main,
    version: r.version,
    value: withValue ? r.value : EMPTY,
    lease: r.lease,
  };
}

/** What etcd reports for a deleted key: the key and the revision of its deletion. */
export function tombstoneKv(key: Buffer, main: number): KeyValue {
  return { key, createRevision: 0, modRevision: main, version: 0, value: EMPTY, lease: 0n };
}

export interface RecordStoreOptions {
  noSync: boolean;
  /** Revision stored in a new keyspace's meta. */
  initialRevision: number;
  encryption: EncryptionKeys | undefined;
  /** Called (before the read or write fails with CorruptError) when a sealed record does not open. */
  onCorruption: (error: Error) => void;
}

export class RecordStore {
  /**
   * Encrypted keyspace: user key by index token (latin1), filled as keys are written or read, so
   * a range scan opens a record only for keys it has not met yet. A token always names the same
   * key, so entries never go stale; the map is dropped when it reaches PLAIN_KEYS_MAX. Another
   * store (a restored snapshot) has another index key, so other tokens and its own map.
   */
  private readonly plainKeys = new Map<string, Buffer>();

  private constructor(
    readonly path: string,
    readonly dbs: Dbs,
    /** Set in an encrypted keyspace (from meta, so it follows a restored snapshot). */
    readonly sealing: KeyspaceSealing | undefined,
    private readonly onCorruption: (error: Error) => void,
  ) {}

  /** Opens (creating if needed) the LMDB environment in directory `path` and checks its format. */
  static open(path: string, options: RecordStoreOptions): RecordStore {
    const dbs = openDbs(path, options.noSync);
    try {
      const { encryption } = options;
      const newIndexKey = encryption ? () => KeyspaceSealing.create(encryption).sealedIndexKey : undefined;
      initializeMeta(dbs, path, options.initialRevision, newIndexKey);
      const sealing = openSealing(path, dbs.meta.getBinary(META_INDEX_KEY), options.encryption);
      return new RecordStore(path, dbs, sealing, options.onCorruption);
    } catch (e) {
      void dbs.env.close().catch(() => undefined);
      throw e;
    }
  }

  close(): Promise<void> {
    return this.dbs.env.close();
  }

  /** Flushes every committed transaction to disk (see Keyspace.sync). */
  sync(): Promise<void> {
    const env = this.dbs.env as unknown as { sync(callback: (error?: Error) => void): void };
    return new Promise((resolve, reject) => {
      env.sync((error?: Error) => (error ? reject(error) : resolve()));
    });
  }

  transaction<T>(action: () => T): T {
    return this.dbs.env.transactionSync(action);
  }

  // ---- meta ------------------------------------------------------------------------------------

  counters(): StoredCounters {
    return readCounters((name) => this.dbs.meta.getBinary(name));
  }

  /** Writes the counters given (inside a write transaction). */
  writeCounters(counters: Parameters<typeof writeCounters>[1]): void {
    writeCounters(this.dbs.meta, counters);
  }

  /** A server metadata record (see Keyspace.putMeta), inside a write transaction. */
  writeServerMeta(name: string, value: Uint8Array): void {
    this.dbs.meta.putSync(serverMetaKey(name), Buffer.from(value));
  }

  readServerMeta(name: string): Uint8Array | undefined {
    const value = this.dbs.meta.getBinary(serverMetaKey(name));
    return value === undefined ? undefined : Uint8Array.from(value);
  }

  /** An encrypted keyspace's index key as stored: sealed under a data key. */
  sealedIndexKey(): Buffer | undefined {
    return this.dbs.meta.getBinary(META_INDEX_KEY);
  }

  writeSealedIndexKey(sealed: Buffer): void {
    this.dbs.meta.putSync(META_INDEX_KEY, sealed);
  }

  // ---- index tokens and sealed records ---------------------------------------------------------

  /** What live, history and leaseKeys are keyed by for user key `key`. */
  indexKey(key: Uint8Array): Buffer {
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

  /** A revs value for `record` (sealed in an encrypted keyspace). */
  sealRecord(revKey: Buffer, record: Buffer): Buffer {
    return this.sealing ? this.sealing.sealRecord(revKey, record) : record;
  }

  /** Decodes a revs value (opening it in an encrypted keyspace); a failed open is corruption. */
  loadRecord(revKey: Uint8Array, value: Buffer): StoredRecord {
    if (!this.sealing) return decodeRecord(value);
    try {
      return decodeRecord(this.sealing.openRecord(revKey, value, `keyspace ${this.path} revision record`));
    } catch (e) {
      if (!(e instanceof EncryptionError)) throw e;
      const error = new CorruptError(e.message);
      this.onCorruption(error);
      throw error;
    }
  }

  readRecord(main: number, sub: number): StoredRecord {
    const revKey = encodeRevKey(main, sub);
    const v = this.dbs.revs.getBinary(revKey);
    invariant(v !== undefined, `missing revision record ${main}.${sub}`);
    return this.loadRecord(revKey, v);
  }

  // ---- versions: writing -----------------------------------------------------------------------

  /**
   * Stores version `entry` of `key` as a put: its record, history entry and live entry, and moves
   * the key's lease attachment from `previousLease` to `entry.lease` (attachLease false: the key
   * keeps its lease id but is attached to no lease).
   */
  writePut(
    key: Uint8Array,
    entry: LiveEntry,
    value: Uint8Array,
    previousLease: bigint,
    attachLease = true,
  ): void {
    const { main, sub, createRevision, version, lease } = entry;
    const { revs, history, live, leaseKeys } = this.dbs;
    const revKey = encodeRevKey(main, sub);
    revs.putSync(
      revKey,
      this.sealRecord(revKey, encodeRecord(KIND_PUT, key, createRevision, version, lease, value)),
    );
    const indexKey = this.indexKey(key);
    history.putSync(encodeHistoryKey(indexKey, main, sub), Buffer.of(KIND_PUT));
    live.putSync(indexKey, encodeLive(entry));
    if (previousLease !== 0n && previousLease !== lease)
      leaseKeys.removeSync(encodeLeaseKey(previousLease, indexKey));
    if (lease !== 0n && attachLease) leaseKeys.putSync(encodeLeaseKey(lease, indexKey), Buffer.alloc(0));
  }

  /** Stores a tombstone of `key` at (main, sub): the key leaves the live index and its lease. */
  writeTombstone(key: Uint8Array, main: number, sub: number, previousLease: bigint): void {
    const revKey = encodeRevKey(main, sub);
    this.dbs.revs.putSync(
      revKey,
      this.sealRecord(revKey, encodeRecord(KIND_TOMBSTONE, key, 0, 0, 0n, EMPTY)),
    );
    const indexKey = this.indexKey(key);
    this.dbs.history.putSync(encodeHistoryKey(indexKey, main, sub), Buffer.of(KIND_TOMBSTONE));
    this.dbs.live.removeSync(indexKey);
    if (previousLease !== 0n) this.dbs.leaseKeys.removeSync(encodeLeaseKey(previousLease, indexKey));
  }

  // ---- versions: reading -----------------------------------------------------------------------

  getLive(key: Uint8Array): LiveEntry | undefined {
    const v = this.dbs.live.getBinary(this.indexKey(key));
    return v ? decodeLive(v) : undefined;
  }

  liveKv(key: Uint8Array, live: LiveEntry, withValue: boolean): KeyValue {
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

  /** The live keys in `range`, in key order. */
  liveInRange(range: KeyRange): { key: Buffer; live: LiveEntry }[] {
    if (range.single) {
      const live = this.getLive(range.begin);
      return live ? [{ key: Buffer.from(range.begin), live }] : [];
    }
    if (this.sealing) return this.sealedLiveInRange(range);
    const out: { key: Buffer; live: LiveEntry }[] = [];
    for (const { key, value } of this.liveEntries(range)) out.push({ key, live: decodeLive(value) });
    return out;
  }

  /** The raw live entries of `range` (not single) in a plain keyspace, for scans that stop early. */
  liveEntries(range: KeyRange): Iterable<{ key: Buffer; value: Buffer }> {
    invariant(!range.single && !this.sealing, 'raw live range of a single key or an encrypted keyspace');
    return this.dbs.live.getRange({ start: range.begin as Buffer, end: range.end as Buffer });
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

  /**
   * The latest history entry of `key` at or below `revision` (read in `transaction` when given),
   * or undefined if the key has none.
   */
  latestVersionAt(
    key: Uint8Array,
    revision: number,
    transaction?: Transaction,
  ): { main: number; sub: number; kind: number } | undefined {
    const indexKey = this.indexKey(key);
    for (const { key: hk, value } of this.dbs.history.getRange({
      start: encodeHistoryKey(indexKey, revision, 0xffffffff),
      end: encodeHistoryPrefix(indexKey),
      reverse: true,
      limit: 1,
      transaction,
    })) {
      return { ...decodeRevKey(hk, hk.length - REV_KEY_BYTES), kind: value[0]! };
    }
    return undefined;
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

  /** Latest put at or below `revision` of every key in range (tombstoned keys skipped), in key order. */
  *historicalVersions(range: KeyRange, revision: number): Generator<{ main: number; sub: number }> {
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

  // ---- leases ----------------------------------------------------------------------------------

  leaseExists(id: LeaseId): boolean {
    return this.dbs.leases.getBinary(encodeLeaseKey(id)) !== undefined;
  }

  lease(id: LeaseId): LeaseRecord | undefined {
    const v = this.dbs.leases.getBinary(encodeLeaseKey(id));
    if (!v) return undefined;
    return { id, ttlSeconds: v.readDoubleBE(0), remainingTtlSeconds: v.readDoubleBE(8) };
  }

  leases(): LeaseRecord[] {
    const out: LeaseRecord[] = [];
    for (const { key, value } of this.dbs.leases.getRange({})) out.push(decodeLeaseRecord(key, value));
    return out;
  }

  writeLease(record: LeaseRecord): void {
    const value = Buffer.allocUnsafe(16);
    value.writeDoubleBE(record.ttlSeconds, 0);
    value.writeDoubleBE(record.remainingTtlSeconds, 8);
    this.dbs.leases.putSync(encodeLeaseKey(record.id), value);
  }

  removeLease(id: LeaseId): void {
    this.dbs.leases.removeSync(encodeLeaseKey(id));
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

  // ---- space -----------------------------------------------------------------------------------

  /**
   * Cheap space figures for metrics (LMDB's own counters, no scan): live keys, and the bytes of
   * the file up to LMDB's last used page (freed pages below it are reused, not returned).
   */
  spaceStats(): { liveKeys: number; usedBytes: number } {
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
}

function openSealing(
  path: string,
  sealedIndexKey: Buffer | undefined,
  encryption: EncryptionKeys | undefined,
): KeyspaceSealing | undefined {
  if (sealedIndexKey === undefined && encryption === undefined) return undefined;
  if (sealedIndexKey === undefined) {
    throw new EncryptionError(
      'ENCRYPTION_KEY_FILE',
      `keyspace at ${path} was created without encryption; encryption at rest can only be turned on for a new data dir`,
    );
  }
  if (encryption === undefined) {
    throw new EncryptionError(
      'ENCRYPTION_KEY_MISSING',
      `keyspace at ${path} is encrypted with key "${envelopeKeyId(sealedIndexKey, path)}"; start the member with --encryption-key-file`,
      envelopeKeyId(sealedIndexKey, path),
    );
  }
  return KeyspaceSealing.open(encryption, sealedIndexKey, `keyspace at ${path}`);
}
