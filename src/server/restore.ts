// Restores a snapshot (from `snapshot save`) into a fresh data dir, as `etcdctl snapshot restore`
// does: every member of the new cluster is restored from the same file with its own name and
// peer URLs, then started with --initial-cluster-state new. The keyspace keeps its data,
// revisions and leases; its applied index is rebased to 0 because the new cluster's log starts
// over, and the membership is the new cluster's (written when the member boots).

import { createHash } from 'node:crypto';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { Keyspace, verifySnapshotFile } from '../mvcc/keyspace.js';

const SHA256_BYTES = 32;
const SNAPSHOT_PAGE_BYTES = 512;

export class RestoreError extends Error {
  readonly code = 'restore';
}

export interface RestoreOptions {
  snapshotPath: string;
  dataDir: string;
}

export interface RestoreResult {
  revision: number;
  compactRevision: number;
  dataBytes: number;
}

/** The LMDB bytes of a saved snapshot, its sha256 trailer (etcd's format) checked when present. */
export function snapshotData(path: string): Buffer {
  const file = readFileSync(path);
  if (file.length % SNAPSHOT_PAGE_BYTES !== SHA256_BYTES) return file;
  const body = file.subarray(0, file.length - SHA256_BYTES);
  const digest = createHash('sha256').update(body).digest();
  if (!digest.equals(file.subarray(file.length - SHA256_BYTES))) {
    throw new RestoreError(`${path}: snapshot sha256 mismatch (corrupt or truncated)`);
  }
  return body;
}

export async function restoreSnapshotToDataDir(options: RestoreOptions): Promise<RestoreResult> {
  const memberDir = join(options.dataDir, 'member');
  if (existsSync(memberDir) && readdirSync(memberDir).length > 0) {
    throw new RestoreError(`data-dir "${options.dataDir}" exists and is not empty`);
  }
  const dbDir = join(memberDir, 'db');
  mkdirSync(dbDir, { recursive: true });
  const staged = join(memberDir, 'restore.mdb');
  try {
    writeFileSync(staged, snapshotData(options.snapshotPath));
    const info = await verifySnapshotFile(staged);
    copyFileSync(staged, join(dbDir, 'data.mdb'));
    const keyspace = Keyspace.open(dbDir);
    keyspace.rebaseAppliedIndex(0);
    const result = {
      revision: keyspace.currentRevision(),
      compactRevision: keyspace.compactRevision(),
      dataBytes: info.bytes,
    };
    await keyspace.close();
    return result;
  } catch (error) {
    rmSync(memberDir, { recursive: true, force: true });
    throw error;
  } finally {
    rmSync(staged, { force: true });
  }
}
