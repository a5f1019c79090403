// One LMDB environment of the keyspace: its named databases (layout in encoding.ts) and the
// counters and format version kept in its meta database.

import { mkdirSync } from 'node:fs';
import { type Database, open, type RootDatabase } from 'lmdb';
import { mkdirDurableSync, syncDirSync } from '../storage/durable-fs.js';
import { readU64, writeU64 } from './encoding.js';
import { InvalidRequestError } from './errors.js';

export const FORMAT_VERSION = 1;
const DB_NAMES = ['revs', 'history', 'live', 'leases', 'leaseKeys', 'meta'] as const;
/** Named databases an environment of the keyspace may open (with room to spare). */
export const LMDB_DBS_MAX = DB_NAMES.length + 2;
const META_APPLIED = Buffer.from('appliedIndex');
const META_REVISION = Buffer.from('currentRevision');
const META_COMPACT = Buffer.from('compactRevision');
const META_FORMAT = Buffer.from('formatVersion');
/** 0x00 = physical compaction done; 0x01 ‖ history key = continue from that history entry. */
const META_COMPACT_CURSOR = Buffer.from('compactCursor');
/** Present only in an encrypted keyspace: its index key, sealed (see sealing.ts). */
export const META_INDEX_KEY = Buffer.from('indexKey');
/** etcd's compactMainRev starts at -1 (never compacted), so Compact(0) succeeds once; stored only from then on. */
export const NEVER_COMPACTED = -1;

export type Bin = Database<Buffer, Buffer>;

export interface Dbs {
  env: RootDatabase;
  revs: Bin;
  history: Bin;
  live: Bin;
  leases: Bin;
  leaseKeys: Bin;
  meta: Bin;
}

/** The counters a keyspace keeps in its meta database. */
export interface StoredCounters {
  formatVersion: number;
  revision: number;
  compactRevision: number;
  appliedIndex: number;
  /** History-db key where physical compaction resumes (empty = from the start); undefined = done. */
  compactCursor: Buffer | undefined;
}

/** The counters stored in meta, read with `read` (the store's, an export's transaction, a snapshot file's). */
export function readCounters(read: (name: Buffer) => Buffer | undefined): StoredCounters {
  const number = (name: Buffer): number => {
    const value = read(name);
    return value ? readU64(value, 0) : 0;
  };
  const cursor = read(META_COMPACT_CURSOR);
  return {
    formatVersion: number(META_FORMAT),
    revision: number(META_REVISION),
    compactRevision: read(META_COMPACT) ? number(META_COMPACT) : NEVER_COMPACTED,
    appliedIndex: number(META_APPLIED),
    compactCursor: cursor && cursor[0] === 1 ? Buffer.from(cursor.subarray(1)) : undefined,
  };
}

/**
 * Address space reserved for the database file up front (not memory, not disk: the file grows
 * with the data). Left to grow on demand, LMDB maps the file again at each doubling and the old
 * mappings stay, so every page read before a growth is resident twice: 80 MiB of RSS for a
 * 44 MiB file after 100k puts, 42 MiB with one mapping. 8 GiB is etcd's largest recommended
 * backend quota; a bigger database still grows past it.
 */
const LMDB_MAP_BYTES = 8 * 1024 ** 3;

export function binaryDb(env: RootDatabase, name: (typeof DB_NAMES)[number]): Bin {
  return env.openDB({ name, encoding: 'binary', keyEncoding: 'binary' }) as Bin;
}

export function openDbs(path: string, noSync: boolean): Dbs {
  if (!noSync) mkdirDurableSync(path);
  else mkdirSync(path, { recursive: true });
  const env = open({
    path,
    maxDbs: LMDB_DBS_MAX,
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
  return {
    env,
    revs: binaryDb(env, 'revs'),
    history: binaryDb(env, 'history'),
    live: binaryDb(env, 'live'),
    leases: binaryDb(env, 'leases'),
    leaseKeys: binaryDb(env, 'leaseKeys'),
    meta: binaryDb(env, 'meta'),
  };
}

function u64(value: number): Buffer {
  const b = Buffer.allocUnsafe(8);
  writeU64(b, 0, value);
  return b;
}

/**
 * Writes a new environment's format and counters (and, in an encrypted keyspace, the sealed
 * index key that `sealedIndexKey` makes), or refuses one of another format.
 */
export function initializeMeta(
  dbs: Dbs,
  path: string,
  initialRevision: number,
  sealedIndexKey: (() => Buffer) | undefined,
): void {
  const { meta } = dbs;
  const { formatVersion } = readCounters((name) => meta.getBinary(name));
  if (formatVersion === 0) {
    // etcd's store starts at revision 1: a fresh cluster answers with header revision 1 and
    // the first write gets revision 2. Clients and scripts see these numbers, so we match.
    const created = sealedIndexKey?.();
    dbs.env.transactionSync(() => {
      meta.putSync(META_FORMAT, u64(FORMAT_VERSION));
      meta.putSync(META_REVISION, u64(initialRevision));
      if (created) meta.putSync(META_INDEX_KEY, created);
    });
  } else if (formatVersion !== FORMAT_VERSION) {
    throw new InvalidRequestError(`unsupported keyspace format ${formatVersion} at ${path}`);
  }
}

/** Writes the counters given (inside a write transaction); NEVER_COMPACTED is not stored. */
export function writeCounters(meta: Bin, counters: Partial<Omit<StoredCounters, 'formatVersion'>>): void {
  const { revision, compactRevision, appliedIndex, compactCursor } = counters;
  if (appliedIndex !== undefined) meta.putSync(META_APPLIED, u64(appliedIndex));
  if (revision !== undefined) meta.putSync(META_REVISION, u64(revision));
  if (compactRevision !== undefined && compactRevision !== NEVER_COMPACTED)
    meta.putSync(META_COMPACT, u64(compactRevision));
  if ('compactCursor' in counters) {
    const value = compactCursor ? Buffer.concat([Buffer.of(1), compactCursor]) : Buffer.of(0);
    meta.putSync(META_COMPACT_CURSOR, value);
  }
}

/** Server metadata records (Keyspace.putMeta) live under a prefix of their own in meta. */
export function serverMetaKey(name: string): Buffer {
  return Buffer.from(`server/${name}`);
}
