// Restores a snapshot into a fresh data dir, as `etcdctl snapshot restore` does: every member of
// the new cluster is restored from the same file with its own name and peer URLs, then started
// with --initial-cluster-state new. Two formats are taken, told apart by their content:
//   etcd's  a bbolt file: what `snapshot save` gets from etcd (and from Concord, which streams
//           etcd's format), or an etcd member's member/snap/db. Every revision, the leases and
//           the compaction point are imported (mvcc/etcd-snapshot.ts), and so are users, roles
//           and the auth flag; members and alarms are not.
//   ours    an LMDB copy of a Concord keyspace (what Concord's Maintenance.Snapshot streamed
//           before it spoke etcd's format): the file becomes the keyspace.
// Either way the applied index starts at 0, since the new cluster's log starts over.
//
// Membership: given the new cluster (--initial-cluster and friends), the restore fixes it now,
// as etcdctl writes it into the new WAL: the member IDs are the ones `concord` computes from
// the same flags, and the member later starts with this membership whatever --initial-cluster
// it is given. Without it the membership comes from the flags the member starts with.

import { createHash } from 'node:crypto';
import {
  closeSync,
  copyFileSync,
  createReadStream,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readSync,
  rmSync,
  statSync,
  truncateSync,
} from 'node:fs';
import { join } from 'node:path';
import { importEtcdSnapshot } from '../mvcc/etcd-snapshot.js';
import { Keyspace, verifySnapshotFile } from '../mvcc/keyspace.js';
import { AUTH_META_NAME, AuthStore } from '../replica/auth-store.js';
import { clusterIdFor, memberIdFor } from '../replica/ids.js';
import { MEMBERS_META_NAME, Members } from '../replica/members.js';
import {
  BBOLT_MAGIC,
  BBOLT_PAGE_BYTES_DEFAULT,
  BboltReader,
  PAGE_HEADER_BYTES,
} from '../storage/bbolt/index.js';
import { writeSelfId } from './member-dir.js';

const SHA256_BYTES = 32;
/** etcdctl tells a trailer is there by the size: bbolt files are whole pages, a multiple of this. */
const SNAPSHOT_ALIGN_BYTES = 512;

export class RestoreError extends Error {
  readonly code = 'restore';
}

/** The cluster a restored member will found (etcdctl's restore flags). */
export interface RestoreCluster {
  name: string;
  /** name → peer URLs */
  initialCluster: Map<string, string[]>;
  initialClusterToken: string;
  initialAdvertisePeerUrls: string[];
}

export interface RestoreOptions {
  snapshotPath: string;
  dataDir: string;
  /** Accept a file without etcd's sha256 trailer (an etcd member's member/snap/db). */
  skipHashCheck?: boolean;
  cluster?: RestoreCluster;
}

export interface RestoreResult {
  format: 'etcd' | 'concord';
  revision: number;
  compactRevision: number;
  dataBytes: number;
  /** Keys and leases restored (etcd format). */
  keys?: number;
  leases?: number;
  /** The restored member's ID, when the membership was fixed by the restore. */
  memberId?: number;
  /** What was in the snapshot and not restored. */
  notes: string[];
}

export type SnapshotFormat = 'etcd' | 'concord';

/** The format of a snapshot file by its content: bbolt's magic in a meta page, or else ours. */
export function snapshotFormat(path: string): SnapshotFormat {
  const fd = openSync(path, 'r');
  try {
    const header = Buffer.alloc(PAGE_HEADER_BYTES + 4);
    // Meta page 0, or meta page 1 when page 0 is damaged (bbolt reads either).
    for (const offset of [0, BBOLT_PAGE_BYTES_DEFAULT]) {
      if (readSync(fd, header, 0, header.length, offset) < header.length) break;
      if (header.readUInt32LE(PAGE_HEADER_BYTES) === BBOLT_MAGIC) return 'etcd';
    }
    return 'concord';
  } finally {
    closeSync(fd);
  }
}

/** Whether the file ends in etcd's sha256 trailer: its size is whole 512-byte blocks plus 32. */
export function hasHashTrailer(bytes: number): boolean {
  return bytes % SNAPSHOT_ALIGN_BYTES === SHA256_BYTES;
}

/**
 * Checks the sha256 trailer (streaming, the file is not loaded) and returns the length of the
 * database before it; a file without one is refused unless skipHashCheck, as etcdctl does.
 */
export async function verifySnapshotHash(path: string, skipHashCheck: boolean): Promise<number> {
  const size = statSync(path).size;
  if (!hasHashTrailer(size)) {
    if (!skipHashCheck) throw new RestoreError(`${path}: snapshot missing hash but --skip-hash-check=false`);
    return size;
  }
  const dataBytes = size - SHA256_BYTES;
  if (skipHashCheck) return dataBytes;
  const digest = createHash('sha256');
  if (dataBytes > 0)
    for await (const chunk of createReadStream(path, { end: dataBytes - 1 })) digest.update(chunk);
  const trailer = Buffer.alloc(SHA256_BYTES);
  const fd = openSync(path, 'r');
  try {
    readSync(fd, trailer, 0, SHA256_BYTES, dataBytes);
  } finally {
    closeSync(fd);
  }
  if (!digest.digest().equals(trailer))
    throw new RestoreError(`${path}: snapshot sha256 mismatch (corrupt or truncated)`);
  return dataBytes;
}

export async function restoreSnapshotToDataDir(options: RestoreOptions): Promise<RestoreResult> {
  const memberDir = join(options.dataDir, 'member');
  if (existsSync(memberDir) && readdirSync(memberDir).length > 0) {
    throw new RestoreError(`data-dir "${options.dataDir}" exists and is not empty`);
  }
  if (!existsSync(options.snapshotPath)) throw new RestoreError(`${options.snapshotPath} does not exist`);
  const members = options.cluster === undefined ? undefined : newClusterMembers(options.cluster);
  const format = snapshotFormat(options.snapshotPath);
  const dbDir = join(memberDir, 'db');
  mkdirSync(dbDir, { recursive: true });
  try {
    const result =
      format === 'etcd'
        ? await restoreEtcdFormat(options, dbDir)
        : await restoreConcordFormat(options, memberDir, dbDir);
    if (members === undefined) return result;
    const keyspace = Keyspace.open(dbDir);
    try {
      keyspace.putMeta(MEMBERS_META_NAME, members.members.encode());
    } finally {
      await keyspace.close();
    }
    writeSelfId(memberDir, members.selfId);
    return { ...result, memberId: members.selfId };
  } catch (error) {
    rmSync(memberDir, { recursive: true, force: true });
    throw error;
  }
}

async function restoreEtcdFormat(options: RestoreOptions, dbDir: string): Promise<RestoreResult> {
  const dataBytes = await verifySnapshotHash(options.snapshotPath, options.skipHashCheck ?? false);
  const reader = BboltReader.open(options.snapshotPath, { dataBytes });
  const keyspace = Keyspace.open(dbDir);
  try {
    const imported = await importEtcdSnapshot(reader, keyspace);
    // Users, roles and the enabled flag come along: the restored cluster keeps its access control.
    const auth = AuthStore.fromEtcd(imported.auth);
    keyspace.putMeta(AUTH_META_NAME, auth.encode());
    const { users, roles } = imported.auth;
    if (users.length + roles.length > 0 || auth.enabled)
      imported.notes.push(
        `auth ${auth.enabled ? 'enabled' : 'disabled'}: ${users.length} users and ${roles.length} roles restored`,
      );
    return {
      format: 'etcd',
      revision: imported.revision,
      compactRevision: imported.compactRevision,
      dataBytes,
      keys: imported.liveKeys,
      leases: imported.leases,
      notes: imported.notes,
    };
  } finally {
    reader.close();
    await keyspace.close();
  }
}

async function restoreConcordFormat(
  options: RestoreOptions,
  memberDir: string,
  dbDir: string,
): Promise<RestoreResult> {
  const staged = join(memberDir, 'restore.mdb');
  try {
    // Our own files always came with etcd's trailer; one without is taken as it is.
    const size = statSync(options.snapshotPath).size;
    const dataBytes = hasHashTrailer(size)
      ? await verifySnapshotHash(options.snapshotPath, options.skipHashCheck ?? false)
      : size;
    copyFileSync(options.snapshotPath, staged);
    if (dataBytes < size) truncateSync(staged, dataBytes);
    const info = await verifySnapshotFile(staged).catch((error: Error) => {
      throw new RestoreError(
        `${options.snapshotPath} is neither an etcd snapshot (bbolt) nor a readable Concord one (LMDB): ${error.message}`,
      );
    });
    copyFileSync(staged, join(dbDir, 'data.mdb'));
    const keyspace = Keyspace.open(dbDir);
    try {
      keyspace.rebaseAppliedIndex(0);
      return {
        format: 'concord',
        revision: keyspace.currentRevision(),
        compactRevision: keyspace.compactRevision(),
        dataBytes: info.bytes,
        notes: [],
      };
    } finally {
      await keyspace.close();
    }
  } finally {
    rmSync(staged, { force: true });
  }
}

/**
 * The new cluster's membership from etcdctl's restore flags, checked as etcd checks them at
 * bootstrap, with the IDs `concord` derives from the same flags.
 */
function newClusterMembers(cluster: RestoreCluster): { members: Members; selfId: number } {
  const own = cluster.initialCluster.get(cluster.name);
  if (own === undefined)
    throw new RestoreError(`couldn't find local name "${cluster.name}" in the initial cluster configuration`);
  const sorted = (urls: string[]) => [...urls].sort().join(',');
  if (sorted(own) !== sorted(cluster.initialAdvertisePeerUrls))
    throw new RestoreError(
      `--initial-cluster has ${cluster.name}=${own.join(',')} but missing from --initial-advertise-peer-urls=${cluster.initialAdvertisePeerUrls.join(',')}`,
    );
  const initial = [...cluster.initialCluster].map(([name, peerUrls]) => ({
    id: memberIdFor(peerUrls, cluster.initialClusterToken),
    name,
    peerUrls,
  }));
  const members = new Members(clusterIdFor(initial.map((m) => m.id)));
  for (const m of initial)
    members.add({ ...m, isLearner: false, clusterId: members.clusterId, proposer: 0, requestId: 0 });
  return { members, selfId: memberIdFor(own, cluster.initialClusterToken) };
}
