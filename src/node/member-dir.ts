// What a member keeps in its data dir beside the WAL, the snapshots and the keyspace.

import {
  closeSync,
  existsSync,
  fsyncSync,
  openSync,
  readFileSync,
  renameSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { syncDirSync } from '../storage/durable-fs.js';

/** This member's own ID, in a file of its own: the keyspace (and its meta) is replaced by snapshots. */
const SELF_ID_FILE = 'id';

export function writeSelfId(memberDir: string, id: number): void {
  const path = join(memberDir, SELF_ID_FILE);
  writeFileSync(`${path}.tmp`, `${id.toString(16)}\n`);
  const fd = openSync(`${path}.tmp`, 'r');
  fsyncSync(fd);
  closeSync(fd);
  renameSync(`${path}.tmp`, path);
  syncDirSync(memberDir);
}

export function readSelfId(memberDir: string): number | undefined {
  try {
    return Number.parseInt(readFileSync(join(memberDir, SELF_ID_FILE), 'utf8').trim(), 16);
  } catch {
    return undefined;
  }
}

/** `concord` was pointed at an etcd member's data dir, which it cannot run on. */
export class EtcdDataDirError extends Error {
  readonly code = 'etcd-data-dir';
  constructor(dataDir: string) {
    super(
      `data dir "${dataDir}" holds an etcd member (member/snap/db is etcd's bbolt backend) and Concord ` +
        `does not run on etcd's data dirs. Make a Concord data dir from a snapshot instead: ` +
        `"etcdctl snapshot save backup.db" against the running etcd, then "concordctl snapshot restore ` +
        `backup.db --data-dir <new dir> --name ... --initial-cluster ... --initial-advertise-peer-urls ..." ` +
        `(or restore member/snap/db of a cleanly stopped etcd with --skip-hash-check), and start concord ` +
        `with --data-dir <new dir>.`,
    );
    this.name = 'EtcdDataDirError';
  }
}

/**
 * Refuses an etcd member's data dir (made by etcd, or by `etcdctl snapshot restore`): its
 * backend is the file member/snap/db, where Concord keeps snapshot files, and its WAL in
 * member/wal is not ours. Importing it in place could also lose writes that etcd's WAL holds
 * beyond the backend.
 */
export function refuseEtcdDataDir(dataDir: string): void {
  const backend = join(dataDir, 'member', 'snap', 'db');
  if (existsSync(backend) && statSync(backend).isFile()) throw new EtcdDataDirError(dataDir);
}
