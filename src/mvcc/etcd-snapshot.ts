// Snapshots in etcd's format: the bbolt file etcd 3.4 keeps its backend in (and streams from
// Maintenance.Snapshot), written from our keyspace and read back into it. That is what lets
// `etcdctl snapshot status|restore` take a snapshot of Concord, and a Concord member start from a
// snapshot of etcd.
//
// The buckets etcd 3.4 writes, and what we put in them:
//   key              revision → mvccpb.KeyValue. The revision is main (8 bytes, big-endian) '_'
//                    sub (8 bytes, big-endian), plus a 't' for a tombstone, whose KeyValue holds
//                    only the key. Every version reads at or above the compact revision can see.
//   meta             consistent_index (8 bytes, big-endian: our applied raft index),
//                    finishedCompactRev and scheduledCompactRev (revision bytes; after the first
//                    compaction only).
//   lease            lease ID (8 bytes, big-endian) → leasepb.Lease {ID, TTL, RemainingTTL}.
//   members          member ID (hex) → JSON {id, peerURLs, isLearner, name, clientURLs};
//   members_removed  member ID (hex) → "removed".
//   cluster          clusterVersion → e.g. "3.4.0".
//   alarm            etcdserverpb.AlarmMember → empty.
//   auth             authRevision (8 bytes, big-endian), and authEnabled → 1 while auth is on.
//   authUsers        user name → authpb.User {name, password (bcrypt hash), roles, options}.
//   authRoles        role name → authpb.Role {name, keyPermission}.
// etcd's own snapshot of the same keyspace differs only in what etcd keeps and we do not (the
// tombstone at exactly the compact revision, etcd-io/etcd#18089; member IDs; the index).

import { type BboltReader, type BboltWriteOptions, planBboltFile } from '../storage/bbolt/index.js';
import { crc32c } from '../util/crc32c.js';
import { ProtoReader, WireType } from '../wire/proto-reader.js';
import { ProtoWriter } from '../wire/proto-writer.js';
import { SnapshotInvalidError } from './errors.js';
import type { HistoryImportResult, HistoryRecord } from './history-io.js';
import type { Keyspace } from './keyspace.js';
import type { LeaseRecord } from './types.js';

const bucket = (name: string): Buffer => Buffer.from(name);
const KEY_BUCKET = bucket('key');
const META_BUCKET = bucket('meta');
const LEASE_BUCKET = bucket('lease');
const MEMBERS_BUCKET = bucket('members');
const MEMBERS_REMOVED_BUCKET = bucket('members_removed');
const CLUSTER_BUCKET = bucket('cluster');
const ALARM_BUCKET = bucket('alarm');
const AUTH_BUCKET = bucket('auth');
const AUTH_USERS_BUCKET = bucket('authUsers');
const AUTH_ROLES_BUCKET = bucket('authRoles');

const CONSISTENT_INDEX_KEY = Buffer.from('consistent_index');
const FINISHED_COMPACT_KEY = Buffer.from('finishedCompactRev');
const SCHEDULED_COMPACT_KEY = Buffer.from('scheduledCompactRev');
const CLUSTER_VERSION_KEY = Buffer.from('clusterVersion');
const AUTH_ENABLED_KEY = Buffer.from('authEnabled');
const AUTH_REVISION_KEY = Buffer.from('authRevision');
const REMOVED_VALUE = Buffer.from('removed');

/** main (8) + '_' + sub (8); a tombstone adds 't'. */
const REVISION_BYTES = 17;
const REVISION_SEPARATOR = 0x5f;
const TOMBSTONE_MARK = 0x74;

const ALARM_NUMBERS = { NOSPACE: 1, CORRUPT: 2 } as const;

export interface EtcdMember {
  /** The member's ID as etcd's API shows it (64 bits). */
  id: bigint;
  name: string;
  peerUrls: string[];
  clientUrls: string[];
  isLearner: boolean;
}

/** What a snapshot records about the cluster beside the keyspace (etcd keeps it in the backend). */
export interface EtcdClusterState {
  members: EtcdMember[];
  removedMemberIds: bigint[];
  alarms: { memberId: bigint; alarm: keyof typeof ALARM_NUMBERS }[];
  /** etcd's cluster version, e.g. "3.4.0". */
  clusterVersion: string;
  /** Absent: what a fresh etcd writes (auth revision 1, no users or roles). */
  auth?: EtcdAuthState;
}

export type EtcdPermissionType = 'READ' | 'WRITE' | 'READWRITE';
const PERMISSION_NUMBERS: Readonly<Record<EtcdPermissionType, number>> = { READ: 0, WRITE: 1, READWRITE: 2 };
const PERMISSION_TYPES: readonly EtcdPermissionType[] = ['READ', 'WRITE', 'READWRITE'];

/** etcd's auth store as its backend keeps it (buckets auth, authUsers, authRoles). */
export interface EtcdAuthState {
  enabled: boolean;
  revision: number;
  users: { name: string; passwordHash: string; noPassword: boolean; roles: string[] }[];
  roles: {
    name: string;
    permissions: { permType: EtcdPermissionType; key: Uint8Array; rangeEnd: Uint8Array }[];
  }[];
}

export interface EtcdSnapshotStream {
  /** The keyspace revision the snapshot holds. */
  readonly revision: number;
  /** Size of the file chunks() yields. */
  readonly totalBytes: number;
  /** The file (without etcd's sha256 trailer, which the stream's sender appends). */
  chunks(): AsyncGenerator<Buffer>;
  /** Releases the keyspace view; chunks() closes it when it ends. */
  close(): void;
}

/**
 * Plans an etcd-format snapshot of `keyspace` as it is now (one LMDB read transaction; writes go
 * on meanwhile) and returns the stream that writes it. Planning reads every record once (and
 * yields to the event loop as it goes); chunks() reads them a second time.
 */
export async function createEtcdSnapshot(
  keyspace: Keyspace,
  cluster: EtcdClusterState,
  options: BboltWriteOptions = {},
): Promise<EtcdSnapshotStream> {
  const view = keyspace.openExport();
  try {
    const fixed = (name: Buffer, entries: { key: Buffer; value: Buffer }[]) => ({
      name,
      entries: () => [...entries].sort((a, b) => Buffer.compare(a.key, b.key)),
    });
    const meta = [{ key: CONSISTENT_INDEX_KEY, value: u64be(view.appliedIndex) }];
    if (view.compactRevision > 0) {
      const mark = revisionBytes(view.compactRevision, 0, false);
      meta.push({ key: FINISHED_COMPACT_KEY, value: mark }, { key: SCHEDULED_COMPACT_KEY, value: mark });
    }
    const plan = await planBboltFile(
      [
        {
          name: KEY_BUCKET,
          *entries() {
            for (const r of view.records())
              yield { key: revisionBytes(r.main, r.sub, r.tombstone), value: encodeKeyValue(r) };
          },
        },
        {
          name: LEASE_BUCKET,
          *entries() {
            // Ours come in signed order, etcd's keys sort as unsigned bytes: negative IDs go last.
            for (const negative of [false, true])
              for (const l of view.leases())
                if (l.id < 0n === negative) yield { key: leaseIdBytes(l.id), value: encodeLease(l) };
          },
        },
        fixed(META_BUCKET, meta),
        fixed(
          MEMBERS_BUCKET,
          cluster.members.map((m) => ({
            key: Buffer.from(m.id.toString(16)),
            value: Buffer.from(memberJson(m)),
          })),
        ),
        fixed(
          MEMBERS_REMOVED_BUCKET,
          cluster.removedMemberIds.map((id) => ({ key: Buffer.from(id.toString(16)), value: REMOVED_VALUE })),
        ),
        fixed(CLUSTER_BUCKET, [{ key: CLUSTER_VERSION_KEY, value: Buffer.from(cluster.clusterVersion) }]),
        fixed(
          ALARM_BUCKET,
          cluster.alarms.map((a) => ({
            key: encodeAlarmMember(a.memberId, ALARM_NUMBERS[a.alarm]),
            value: Buffer.alloc(0),
          })),
        ),
        fixed(AUTH_BUCKET, authEntries(cluster.auth)),
        fixed(
          AUTH_USERS_BUCKET,
          (cluster.auth?.users ?? []).map((u) => ({ key: Buffer.from(u.name), value: encodeUser(u) })),
        ),
        fixed(
          AUTH_ROLES_BUCKET,
          (cluster.auth?.roles ?? []).map((r) => ({ key: Buffer.from(r.name), value: encodeRole(r) })),
        ),
      ],
      options,
    );
    return {
      revision: view.revision,
      totalBytes: plan.totalBytes,
      async *chunks() {
        try {
          yield* plan.chunks();
        } finally {
          view.close();
        }
      },
      close: () => view.close(),
    };
  } catch (error) {
    view.close();
    throw error;
  }
}

/** What `etcdctl snapshot status` prints for a snapshot file. */
export interface EtcdSnapshotStatus {
  /** CRC-32C over every bucket name, key and value in order (etcdctl's hash). */
  hash: number;
  /** Main revision of the last record in the key bucket. */
  revision: number;
  /** Entries over all buckets. */
  totalKey: number;
  /** The database's size (pages times page size). */
  totalSize: number;
}

/** etcdctl's snapshot status, computed the same way (the file's consistency is checked first). */
export function etcdSnapshotStatus(reader: BboltReader): EtcdSnapshotStatus {
  const problems = reader.check();
  if (problems.length > 0)
    throw new SnapshotInvalidError(
      `integrity check failed, ${problems.length} errors found: ${problems.join('; ')}`,
    );
  let hash = 0;
  let revision = 0;
  let totalKey = 0;
  for (const root of reader.entries([])) {
    if (!root.isBucket)
      throw new SnapshotInvalidError(`${printable(root.key)} in the root bucket is not a bucket`);
    hash = crc32c(root.key, hash);
    const isKeyBucket = root.key.equals(KEY_BUCKET);
    for (const { key, value, isBucket } of reader.entries([root.key])) {
      hash = crc32c(key, hash);
      if (!isBucket) hash = crc32c(value, hash);
      if (isKeyBucket) revision = decodeRevision(key).main;
      totalKey++;
    }
  }
  return { hash, revision, totalKey, totalSize: reader.databaseBytes() };
}

export interface EtcdImportResult extends HistoryImportResult {
  /** The snapshot's consistent index (the raft index etcd had applied). */
  consistentIndex: number;
  /** Users, roles, the enabled flag and the auth revision the snapshot holds. */
  auth: EtcdAuthState;
  /** What the snapshot held that Concord does not restore. */
  notes: string[];
}

/**
 * Restores an etcd snapshot (or an etcd member's backend file) into an empty keyspace: every
 * revision of the key bucket, the leases, the compaction point (a scheduled compaction etcd did
 * not finish is completed), and the auth store (returned for the caller to keep). Membership and
 * alarms are not carried over (the restored member joins a new cluster, as with `etcdctl snapshot
 * restore`).
 */
export async function importEtcdSnapshot(reader: BboltReader, keyspace: Keyspace): Promise<EtcdImportResult> {
  if (!reader.hasBucket([KEY_BUCKET]) || !reader.hasBucket([META_BUCKET]))
    throw new SnapshotInvalidError('not an etcd snapshot: it has no "key" and "meta" buckets');
  const meta = new Map<string, Buffer>();
  for (const { key, value } of reader.entries([META_BUCKET])) meta.set(key.toString('latin1'), value);
  const auth = readAuth(reader);
  const notes: string[] = [];
  const count = (name: Buffer): number => [...reader.entries([name])].length;
  const alarms = count(ALARM_BUCKET);
  if (alarms > 0) notes.push(`${alarms} alarms not restored`);
  const finished = compactMark(meta.get(FINISHED_COMPACT_KEY.toString('latin1')), 'finishedCompactRev');
  const scheduled = compactMark(meta.get(SCHEDULED_COMPACT_KEY.toString('latin1')), 'scheduledCompactRev');
  const consistentIndexBytes = meta.get(CONSISTENT_INDEX_KEY.toString('latin1'));
  const consistentIndex =
    consistentIndexBytes === undefined ? 0 : readU64be(consistentIndexBytes, 'consistent_index');
  const result = await keyspace.importHistory({
    records: (function* () {
      for (const { key, value } of reader.entries([KEY_BUCKET])) yield decodeRecord(key, value);
    })(),
    leases: (function* () {
      for (const { key, value } of reader.entries([LEASE_BUCKET])) yield decodeLease(key, value);
    })(),
    // etcd finishes a compaction it had scheduled when it next starts; so do we.
    compactRevision: Math.max(finished, scheduled),
    compactionPending: scheduled > finished,
  });
  return { ...result, consistentIndex, auth, notes };
}

function authEntries(auth: EtcdAuthState | undefined): { key: Buffer; value: Buffer }[] {
  const entries = [{ key: AUTH_REVISION_KEY, value: u64be(auth?.revision ?? 1) }];
  if (auth?.enabled === true) entries.push({ key: AUTH_ENABLED_KEY, value: Buffer.of(1) });
  return entries;
}

/** authpb.User {name 1 (bytes), password 2 (bytes), roles 3 (repeated string), options 4 {no_password 1}}. */
function encodeUser(user: EtcdAuthState['users'][number]): Buffer {
  writer.reset();
  writer.bytes(1, Buffer.from(user.name));
  writer.bytes(2, Buffer.from(user.passwordHash));
  for (const role of user.roles) writer.string(3, role);
  if (user.noPassword) {
    const slot = writer.beginMessage(4);
    writer.bool(1, true);
    writer.endMessage(slot);
  }
  return writer.finish();
}

/** authpb.Role {name 1 (bytes), keyPermission 2 (repeated Permission {permType 1, key 2, range_end 3})}. */
function encodeRole(role: EtcdAuthState['roles'][number]): Buffer {
  writer.reset();
  writer.bytes(1, Buffer.from(role.name));
  for (const p of role.permissions) {
    const slot = writer.beginMessage(2);
    writer.enumeration(1, PERMISSION_NUMBERS[p.permType], {});
    writer.bytes(2, p.key);
    writer.bytes(3, p.rangeEnd);
    writer.endMessage(slot);
  }
  return writer.finish();
}

function readAuth(reader: BboltReader): EtcdAuthState {
  const auth: EtcdAuthState = { enabled: false, revision: 1, users: [], roles: [] };
  if (reader.hasBucket([AUTH_BUCKET]))
    for (const { key, value } of reader.entries([AUTH_BUCKET])) {
      if (key.equals(AUTH_ENABLED_KEY)) auth.enabled = value.length === 1 && value[0] === 1;
      else if (key.equals(AUTH_REVISION_KEY)) auth.revision = readU64be(value, 'authRevision');
    }
  if (reader.hasBucket([AUTH_USERS_BUCKET]))
    for (const { key, value } of reader.entries([AUTH_USERS_BUCKET])) auth.users.push(decodeUser(key, value));
  if (reader.hasBucket([AUTH_ROLES_BUCKET]))
    for (const { key, value } of reader.entries([AUTH_ROLES_BUCKET])) auth.roles.push(decodeRole(key, value));
  return auth;
}

function decodeUser(key: Buffer, value: Buffer): EtcdAuthState['users'][number] {
  const what = `user ${printable(key)}`;
  const user = { name: key.toString('utf8'), passwordHash: '', noPassword: false, roles: [] as string[] };
  const r = new ProtoReader(value, 0, value.length);
  try {
    while (r.pos < r.end) {
      const tag = r.uint32();
      switch (tag >>> 3) {
        case 1:
          user.name = r.bytes().toString('utf8');
          break;
        case 2:
          user.passwordHash = r.bytes().toString('latin1');
          break;
        case 3:
          user.roles.push(r.bytes().toString('utf8'));
          break;
        case 4: {
          const parentEnd = r.enterMessage();
          while (r.pos < r.end) {
            const inner = r.uint32();
            if (inner >>> 3 === 1) user.noPassword = r.bool();
            else r.skip(inner & 7, 0);
          }
          r.leaveMessage(parentEnd);
          break;
        }
        default:
          r.skip(tag & 7, 0);
      }
    }
  } catch (error) {
    throw new SnapshotInvalidError(`${what} does not decode: ${(error as Error).message}`);
  }
  user.roles.sort();
  return user;
}

function decodeRole(key: Buffer, value: Buffer): EtcdAuthState['roles'][number] {
  const what = `role ${printable(key)}`;
  const role: EtcdAuthState['roles'][number] = { name: key.toString('utf8'), permissions: [] };
  const r = new ProtoReader(value, 0, value.length);
  try {
    while (r.pos < r.end) {
      const tag = r.uint32();
      if (tag >>> 3 === 1) role.name = r.bytes().toString('utf8');
      else if (tag >>> 3 === 2) {
        const parentEnd = r.enterMessage();
        let permType: EtcdPermissionType = 'READ';
        let permKey = Buffer.alloc(0);
        let rangeEnd = Buffer.alloc(0);
        while (r.pos < r.end) {
          const inner = r.uint32();
          const field = inner >>> 3;
          if (field === 1) {
            const number = r.uint32();
            const type = PERMISSION_TYPES[number];
            if (type === undefined)
              throw new SnapshotInvalidError(`${what}: unknown permission type ${number}`);
            permType = type;
          } else if (field === 2) permKey = Buffer.from(r.bytes());
          else if (field === 3) rangeEnd = Buffer.from(r.bytes());
          else r.skip(inner & 7, 0);
        }
        r.leaveMessage(parentEnd);
        role.permissions.push({ permType, key: permKey, rangeEnd });
      } else r.skip(tag & 7, 0);
    }
  } catch (error) {
    if (error instanceof SnapshotInvalidError) throw error;
    throw new SnapshotInvalidError(`${what} does not decode: ${(error as Error).message}`);
  }
  return role;
}

// ---- encodings -----------------------------------------------------------------------------------

function u64be(value: number): Buffer {
  const out = Buffer.alloc(8);
  out.writeBigUInt64BE(BigInt(value));
  return out;
}

function readU64be(bytes: Buffer, what: string): number {
  if (bytes.length !== 8) throw new SnapshotInvalidError(`${what} has ${bytes.length} bytes, expected 8`);
  return safeNumber(bytes.readBigUInt64BE(0), what);
}

function safeNumber(value: bigint, what: string): number {
  if (value < 0n || value > BigInt(Number.MAX_SAFE_INTEGER))
    throw new SnapshotInvalidError(`${what} ${value} is outside 0..2^53 (not supported)`);
  return Number(value);
}

export function revisionBytes(main: number, sub: number, tombstone: boolean): Buffer {
  const out = Buffer.alloc(REVISION_BYTES + (tombstone ? 1 : 0));
  out.writeUInt32BE(Math.floor(main / 2 ** 32), 0);
  out.writeUInt32BE(main >>> 0, 4);
  out[8] = REVISION_SEPARATOR;
  out.writeUInt32BE(Math.floor(sub / 2 ** 32), 9);
  out.writeUInt32BE(sub >>> 0, 13);
  if (tombstone) out[REVISION_BYTES] = TOMBSTONE_MARK;
  return out;
}

function decodeRevision(key: Buffer): { main: number; sub: number; tombstone: boolean } {
  const tombstone = key.length === REVISION_BYTES + 1 && key[REVISION_BYTES] === TOMBSTONE_MARK;
  if ((key.length !== REVISION_BYTES && !tombstone) || key[8] !== REVISION_SEPARATOR)
    throw new SnapshotInvalidError(`key bucket entry 0x${key.toString('hex')} is not a revision`);
  return {
    main: safeNumber(key.readBigUInt64BE(0), 'revision'),
    sub: safeNumber(key.readBigUInt64BE(9), 'sub revision'),
    tombstone,
  };
}

/** finishedCompactRev / scheduledCompactRev: revision bytes whose main part is the revision. */
function compactMark(value: Buffer | undefined, what: string): number {
  if (value === undefined) return 0;
  if (value.length < 8) throw new SnapshotInvalidError(`${what} has ${value.length} bytes`);
  return safeNumber(value.readBigUInt64BE(0), what);
}

function leaseIdBytes(id: bigint): Buffer {
  const out = Buffer.alloc(8);
  out.writeBigUInt64BE(BigInt.asUintN(64, id));
  return out;
}

const writer = new ProtoWriter();

/** mvccpb.KeyValue {key 1, create_revision 2, mod_revision 3, version 4, value 5, lease 6}. */
export function encodeKeyValue(r: HistoryRecord): Buffer {
  writer.reset();
  writer.bytes(1, r.key);
  if (!r.tombstone) {
    writer.int64(2, r.createRevision);
    writer.int64(3, r.main);
    writer.int64(4, r.version);
    writer.bytes(5, r.value);
    writer.int64(6, r.lease);
  }
  return writer.finish();
}

/** leasepb.Lease {ID 1, TTL 2, RemainingTTL 3}. */
function encodeLease(lease: LeaseRecord): Buffer {
  writer.reset();
  writer.int64(1, lease.id);
  writer.int64(2, Math.round(lease.ttlSeconds));
  writer.int64(3, Math.round(lease.remainingTtlSeconds));
  return writer.finish();
}

/** etcdserverpb.AlarmMember {MemberID 1, Alarm 2}. */
function encodeAlarmMember(memberId: bigint, alarm: number): Buffer {
  writer.reset();
  writer.int64(1, BigInt.asIntN(64, memberId));
  writer.enumeration(2, alarm, {});
  return writer.finish();
}

/** etcd's membership.Member as encoding/json writes it (omitempty on learner, name, client URLs). */
function memberJson(m: EtcdMember): string {
  const fields: string[] = [`"id":${m.id}`, `"peerURLs":${JSON.stringify(m.peerUrls)}`];
  if (m.isLearner) fields.push('"isLearner":true');
  if (m.name !== '') fields.push(`"name":${JSON.stringify(m.name)}`);
  if (m.clientUrls.length > 0) fields.push(`"clientURLs":${JSON.stringify(m.clientUrls)}`);
  return `{${fields.join(',')}}`;
}

function int64(reader: ProtoReader, tag: number, what: string): bigint {
  if ((tag & 7) !== WireType.varint)
    throw new SnapshotInvalidError(`${what}: field ${tag >>> 3} is not a varint`);
  reader.varint64Words();
  return BigInt.asIntN(64, (BigInt(reader.lastHigh) << 32n) | BigInt(reader.lastLow));
}

function bytesField(reader: ProtoReader, tag: number, what: string): Buffer {
  if ((tag & 7) !== WireType.delimited)
    throw new SnapshotInvalidError(`${what}: field ${tag >>> 3} is not bytes`);
  return reader.bytes();
}

function decodeRecord(key: Buffer, value: Buffer): HistoryRecord {
  const { main, sub, tombstone } = decodeRevision(key);
  const what = `KeyValue at revision ${main}.${sub}`;
  const r = new ProtoReader(value, 0, value.length);
  const record: HistoryRecord = {
    main,
    sub,
    tombstone,
    key: Buffer.alloc(0),
    createRevision: 0,
    version: 0,
    lease: 0n,
    value: Buffer.alloc(0),
  };
  let modRevision = 0;
  try {
    while (r.pos < r.end) {
      const tag = r.uint32();
      switch (tag >>> 3) {
        case 1:
          record.key = Buffer.from(bytesField(r, tag, what));
          break;
        case 2:
          record.createRevision = safeNumber(int64(r, tag, what), `${what}: create_revision`);
          break;
        case 3:
          modRevision = safeNumber(int64(r, tag, what), `${what}: mod_revision`);
          break;
        case 4:
          record.version = safeNumber(int64(r, tag, what), `${what}: version`);
          break;
        case 5:
          record.value = Buffer.from(bytesField(r, tag, what));
          break;
        case 6:
          record.lease = int64(r, tag, what);
          break;
        default:
          r.skip(tag & 7, 0);
      }
    }
  } catch (error) {
    if (error instanceof SnapshotInvalidError) throw error;
    throw new SnapshotInvalidError(`${what} does not decode: ${(error as Error).message}`);
  }
  if (!tombstone && modRevision !== main)
    throw new SnapshotInvalidError(`${what} has mod_revision ${modRevision}`);
  return record;
}

function decodeLease(key: Buffer, value: Buffer): LeaseRecord {
  if (key.length !== 8)
    throw new SnapshotInvalidError(`lease bucket key 0x${key.toString('hex')} is not a lease ID`);
  const id = BigInt.asIntN(64, key.readBigUInt64BE(0));
  const what = `lease ${id.toString(16)}`;
  const r = new ProtoReader(value, 0, value.length);
  let storedId = 0n;
  let ttl = 0n;
  let remaining = 0n;
  try {
    while (r.pos < r.end) {
      const tag = r.uint32();
      switch (tag >>> 3) {
        case 1:
          storedId = int64(r, tag, what);
          break;
        case 2:
          ttl = int64(r, tag, what);
          break;
        case 3:
          remaining = int64(r, tag, what);
          break;
        default:
          r.skip(tag & 7, 0);
      }
    }
  } catch (error) {
    if (error instanceof SnapshotInvalidError) throw error;
    throw new SnapshotInvalidError(`${what} does not decode: ${(error as Error).message}`);
  }
  if (storedId !== id) throw new SnapshotInvalidError(`${what} holds lease ID ${storedId.toString(16)}`);
  return {
    id,
    ttlSeconds: safeNumber(ttl, `${what}: TTL`),
    remainingTtlSeconds: safeNumber(remaining, `${what}: remaining TTL`),
  };
}

function printable(name: Buffer): string {
  const text = name.toString('latin1');
  return /^[\x20-\x7e]*$/.test(text) ? `"${text}"` : `0x${name.toString('hex')}`;
}
