// Snapshots of the keyspace as files: a consistent copy of its LMDB environment (the whole
// keyspace with its applied index and server metadata), checked before it is trusted, and the
// steps that stage such a file and put it in place of the live one.

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
import { open, type RootDatabase } from 'lmdb';
import { syncDirSync, syncFileSync } from '../storage/durable-fs.js';
import { decodeRecord, decodeRevKey, KIND_PUT, KIND_TOMBSTONE, REV_KEY_BYTES } from './encoding.js';
import { binaryDb, FORMAT_VERSION, LMDB_DBS_MAX, META_INDEX_KEY, readCounters } from './environment.js';
import { invariant, SnapshotInvalidError } from './errors.js';
import type { RecordStore } from './store.js';

/** A snapshot file and the state it holds (read back from the file's own meta). */
export interface SnapshotInfo {
  path: string;
  appliedIndex: number;
  revision: number;
  compactRevision: number;
  bytes: number;
}

/** The LMDB file of the environment in directory `dir`. */
export function dataFile(dir: string): string {
  return join(dir, 'data.mdb');
}

/**
 * Writes a consistent copy of `store`'s environment, whose applied index is `appliedIndex`, to
 * `path` and verifies it. `backups` holds the copy while LMDB makes it (on a native thread: the
 * environment must not close under it). `compact`: LMDB writes only live pages, renumbered (free
 * pages dropped) — a defragmented copy.
 */
export async function copyToSnapshotFile(
  store: RecordStore,
  appliedIndex: number,
  path: string,
  compact: boolean,
  backups: Set<Promise<unknown>>,
): Promise<SnapshotInfo> {
  // LMDB copies a directory environment into a directory; stage there, then move the file.
  const stagingDir = `${path}.staging`;
  rmSync(stagingDir, { recursive: true, force: true });
  mkdirSync(stagingDir, { recursive: true });
  try {
    const backup = store.dbs.env.backup(stagingDir, compact);
    backups.add(backup);
    try {
      await backup;
    } finally {
      backups.delete(backup);
    }
    renameSync(dataFile(stagingDir), path);
  } finally {
    rmSync(stagingDir, { recursive: true, force: true });
  }
  const info = await verifySnapshotFile(path);
  invariant(info.appliedIndex >= appliedIndex, 'snapshot older than the state it copied');
  return info;
}

/**
 * Copies the snapshot at `path` beside the environment in `dir` and verifies the copy (removed
 * again if it fails): the live environment is untouched until installSnapshotFile.
 */
export async function stageSnapshotFile(
  path: string,
  dir: string,
  noSync: boolean,
): Promise<{ staged: string; info: SnapshotInfo }> {
  const staged = join(dir, 'restore.mdb');
  copyFileSync(path, staged);
  if (!noSync) syncFileSync(staged);
  try {
    return { staged, info: await verifySnapshotFile(staged) };
  } catch (e) {
    rmSync(staged, { force: true });
    throw e;
  }
}

/** Puts a staged snapshot in place of the (closed) environment in `dir`. */
export function installSnapshotFile(staged: string, dir: string, noSync: boolean): void {
  renameSync(staged, dataFile(dir));
  rmSync(join(dir, 'lock.mdb'), { force: true });
  if (!noSync) syncDirSync(dir);
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

/** Records verifySnapshotFile checks between yields to the event loop. */
export const SNAPSHOT_VERIFY_STEP_RECORDS = 5000;
const ZERO_BYTE = Buffer.alloc(1);

/** Opens a snapshot file read-only and checks its format and meta; throws SnapshotInvalidError. */
export async function verifySnapshotFile(path: string): Promise<SnapshotInfo> {
  if (!existsSync(path)) throw new SnapshotInvalidError(`${path} does not exist`);
  checkLmdbHeader(path);
  let env: RootDatabase | undefined;
  const openEnv = (): RootDatabase => open({ path, noSubdir: true, readOnly: true, maxDbs: LMDB_DBS_MAX });
  try {
    env = openEnv();
    const meta = binaryDb(env, 'meta');
    const counters = readCounters((name) => meta.getBinary(name));
    const format = counters.formatVersion;
    if (format !== FORMAT_VERSION)
      throw new SnapshotInvalidError(`format ${format}, expected ${FORMAT_VERSION}`);
    const revision = counters.revision;
    const compactRevision = counters.compactRevision;
    if (compactRevision > revision) throw new SnapshotInvalidError('compact revision above current revision');
    let revs = binaryDb(env, 'revs');
    // An encrypted keyspace's records are envelopes: their kind is checked when they are opened.
    const encrypted = meta.getBinary(META_INDEX_KEY) !== undefined;
    let lastMain = 0;
    // Walking every record exercises the whole B-tree and catches truncated or torn copies. In
    // steps, yielding between them: a member verifies its own snapshot while serving, and a
    // walk of a large keyspace in one go would stall heartbeats past the election timeout.
    // The file is opened again for each step: every page the walk reads stays mapped, and counted
    // in the member's RSS, until the environment is closed (the kernel also maps the cached pages
    // around each one read). Walked in one opening, a copy of a 49 MiB keyspace added 45 MiB to
    // the RSS of a member verifying its own snapshot; a step maps about 2 MiB.
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
      await env.close();
      env = undefined;
      await new Promise<void>((resolve) => setImmediate(resolve));
      env = openEnv();
      revs = binaryDb(env, 'revs');
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
