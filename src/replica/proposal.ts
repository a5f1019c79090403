// What the server proposes through Raft: keyspace writes plus the cluster's own bookkeeping
// (member attributes, alarms). Encoded in a compact binary form: every write crosses the log,
// the WAL and the network, so the encoding is on the hot path.

import type {
  Compare,
  DeleteRangeRequest,
  PutRequest,
  RangeRequest,
  RequestOp,
  SortOrder,
  SortTarget,
  TxnRequest,
  WriteOp,
} from '../mvcc/types.js';
import { BinaryReader, BinaryWriter, DecodeError } from '../util/binary.js';
import type { AuthOp, PermissionType } from './auth-store.js';

export type AlarmType = 'NOSPACE' | 'CORRUPT' | 'NONE';

/** Operations on cluster state rather than the keyspace. */
export type ClusterOp =
  | { type: 'publishMember'; memberId: number; name: string; clientUrls: string[] }
  | { type: 'updateMember'; memberId: number; peerUrls: string[] }
  | { type: 'alarm'; action: 'activate' | 'deactivate'; memberId: number; alarm: AlarmType }
  /** Encryption at rest: from this entry on, every member seals new data with key `keyId`. */
  | { type: 'encryptionKey'; keyId: string }
  /**
   * A shard split, as an admin entry in the shard's own log: shard `shardId` at `expectedEpoch`
   * keeps [start, splitKey) and the new group `rightId` takes [splitKey, end) on the same members.
   */
  | { type: 'splitShard'; shardId: number; expectedEpoch: number; splitKey: Uint8Array; rightId: number };

/** A shard split entry (see ClusterOp). */
export type SplitOp = Extract<ClusterOp, { type: 'splitShard' }>;

/**
 * A request made with credentials while auth was enabled on the proposing member: applying it
 * checks the user's permissions (and the auth revision they were resolved at) on every member,
 * as etcd's apply does with its request header's username and auth revision.
 */
export interface AuthedOp {
  type: 'authed';
  username: string;
  authRevision: number;
  op: WriteOp | AuthChangeOp;
}

/** A change of the auth store (users, roles, enabled flag) or an authentication. */
export interface AuthChangeOp {
  type: 'auth';
  request: AuthOp;
}

export type ServerOp = WriteOp | ClusterOp | AuthChangeOp | AuthedOp;

export interface Proposal {
  /** The member that proposed it: only that member has a client waiting for the result. */
  proposer: number;
  /** Unique per proposer (a counter). */
  requestId: number;
  op: ServerOp;
}

const OP_TAGS = {
  noop: 0,
  put: 1,
  deleteRange: 2,
  txn: 3,
  compact: 4,
  leaseGrant: 5,
  leaseRevoke: 6,
  leaseCheckpoint: 7,
  publishMember: 8,
  updateMember: 9,
  alarm: 10,
  encryptionKey: 11,
  auth: 12,
  authed: 13,
  splitShard: 14,
} as const;

const AUTH_OP_TYPES: AuthOp['type'][] = [
  'authEnable',
  'authDisable',
  'authenticate',
  'userAdd',
  'userDelete',
  'userChangePassword',
  'userGrantRole',
  'userRevokeRole',
  'roleAdd',
  'roleDelete',
  'roleGrantPermission',
  'roleRevokePermission',
];
const PERMISSION_TYPES: PermissionType[] = ['READ', 'WRITE', 'READWRITE'];

const COMPACT_PHYSICAL = 1;
const COMPACT_NEGATIVE = 2;

const SORT_ORDERS: SortOrder[] = ['none', 'ascend', 'descend'];
const SORT_TARGETS: SortTarget[] = ['key', 'version', 'create', 'mod', 'value'];
const COMPARE_RESULTS: Compare['result'][] = ['equal', 'greater', 'less', 'not-equal'];
const ALARMS: AlarmType[] = ['NOSPACE', 'CORRUPT', 'NONE'];
const EMPTY = new Uint8Array(0);

export function encodeProposal(proposal: Proposal): Uint8Array {
  const writer = new BinaryWriter(64);
  writer.uvarint(proposal.proposer).uvarint(proposal.requestId);
  writeOp(writer, proposal.op);
  return writer.finish();
}

export function decodeProposal(data: Uint8Array): Proposal {
  const reader = new BinaryReader(data);
  const proposer = reader.uvarint();
  const requestId = reader.uvarint();
  const op = readOp(reader);
  reader.expectDone();
  return { proposer, requestId, op };
}

function writeOp(w: BinaryWriter, op: ServerOp): void {
  w.u8(OP_TAGS[op.type]);
  switch (op.type) {
    case 'noop':
      return;
    case 'put':
      return writePut(w, op.request);
    case 'deleteRange':
      return writeDelete(w, op.request);
    case 'txn':
      return writeTxn(w, op.request);
    case 'compact':
      // etcd proposes any target, a negative one too (the apply refuses it as compacted): its
      // magnitude goes as a uvarint, the sign in the flags byte (0/1 before: physical only).
      w.uvarint(Math.abs(op.request.revision)).u8(
        (op.request.physical ? COMPACT_PHYSICAL : 0) | (op.request.revision < 0 ? COMPACT_NEGATIVE : 0),
      );
      return;
    case 'leaseGrant':
      w.i64(op.request.id).uvarint(op.request.ttlSeconds);
      return;
    case 'leaseRevoke':
      w.i64(op.request.id);
      return;
    case 'leaseCheckpoint':
      w.i64(op.request.id).uvarint(op.request.remainingTtlSeconds);
      return;
    case 'publishMember':
      w.uvarint(op.memberId).string(op.name);
      w.strings(op.clientUrls);
      return;
    case 'updateMember':
      w.uvarint(op.memberId);
      w.strings(op.peerUrls);
      return;
    case 'alarm':
      w.bool(op.action === 'activate')
        .uvarint(op.memberId)
        .u8(ALARMS.indexOf(op.alarm));
      return;
    case 'encryptionKey':
      w.string(op.keyId);
      return;
    case 'splitShard':
      w.uvarint(op.shardId).uvarint(op.expectedEpoch).bytes(op.splitKey).uvarint(op.rightId);
      return;
    case 'auth':
      return writeAuthOp(w, op.request);
    case 'authed':
      w.string(op.username).uvarint(op.authRevision);
      return writeOp(w, op.op);
    default:
      return assertNever(op);
  }
}

function writeAuthOp(w: BinaryWriter, op: AuthOp): void {
  w.u8(AUTH_OP_TYPES.indexOf(op.type));
  switch (op.type) {
    case 'authEnable':
    case 'authDisable':
      return;
    case 'authenticate':
      w.string(op.name).string(op.simpleToken);
      return;
    case 'userAdd':
      w.string(op.name).string(op.passwordHash).bool(op.noPassword);
      return;
    case 'userDelete':
      w.string(op.name);
      return;
    case 'userChangePassword':
      w.string(op.name).string(op.passwordHash);
      return;
    case 'userGrantRole':
      w.string(op.user).string(op.role);
      return;
    case 'userRevokeRole':
      w.string(op.name).string(op.role);
      return;
    case 'roleAdd':
      w.string(op.name);
      return;
    case 'roleDelete':
      w.string(op.role);
      return;
    case 'roleGrantPermission':
      w.string(op.name)
        .u8(PERMISSION_TYPES.indexOf(op.permission.permType))
        .bytes(op.permission.key)
        .bytes(op.permission.rangeEnd);
      return;
    case 'roleRevokePermission':
      w.string(op.role).bytes(op.key).bytes(op.rangeEnd);
      return;
    default:
      return assertNever(op);
  }
}

function readAuthOp(r: BinaryReader): AuthOp {
  const type = AUTH_OP_TYPES[r.u8()];
  switch (type) {
    case 'authEnable':
    case 'authDisable':
      return { type };
    case 'authenticate':
      return { type, name: r.string(), simpleToken: r.string() };
    case 'userAdd':
      return { type, name: r.string(), passwordHash: r.string(), noPassword: r.bool() };
    case 'userDelete':
      return { type, name: r.string() };
    case 'userChangePassword':
      return { type, name: r.string(), passwordHash: r.string() };
    case 'userGrantRole':
      return { type, user: r.string(), role: r.string() };
    case 'userRevokeRole':
      return { type, name: r.string(), role: r.string() };
    case 'roleAdd':
      return { type, name: r.string() };
    case 'roleDelete':
      return { type, role: r.string() };
    case 'roleGrantPermission': {
      const name = r.string();
      const permType = PERMISSION_TYPES[r.u8()];
      if (permType === undefined) throw new DecodeError('unknown permission type');
      return { type, name, permission: { permType, key: r.bytes(), rangeEnd: r.bytes() } };
    }
    case 'roleRevokePermission':
      return { type, role: r.string(), key: r.bytes(), rangeEnd: r.bytes() };
    case undefined:
      throw new DecodeError('unknown auth op');
    default:
      return assertNever(type);
  }
}

function readOp(r: BinaryReader): ServerOp {
  const tag = r.u8();
  switch (tag) {
    case OP_TAGS.noop:
      return { type: 'noop' };
    case OP_TAGS.put:
      return { type: 'put', request: readPut(r) };
    case OP_TAGS.deleteRange:
      return { type: 'deleteRange', request: readDelete(r) };
    case OP_TAGS.txn:
      return { type: 'txn', request: readTxn(r) };
    case OP_TAGS.compact: {
      const magnitude = r.uvarint();
      const flags = r.u8();
      const revision = (flags & COMPACT_NEGATIVE) !== 0 ? -magnitude : magnitude;
      return { type: 'compact', request: { revision, physical: (flags & COMPACT_PHYSICAL) !== 0 } };
    }
    case OP_TAGS.leaseGrant:
      return { type: 'leaseGrant', request: { id: r.i64(), ttlSeconds: r.uvarint() } };
    case OP_TAGS.leaseRevoke:
      return { type: 'leaseRevoke', request: { id: r.i64() } };
    case OP_TAGS.leaseCheckpoint:
      return { type: 'leaseCheckpoint', request: { id: r.i64(), remainingTtlSeconds: r.uvarint() } };
    case OP_TAGS.publishMember:
      return { type: 'publishMember', memberId: r.uvarint(), name: r.string(), clientUrls: r.strings() };
    case OP_TAGS.updateMember:
      return { type: 'updateMember', memberId: r.uvarint(), peerUrls: r.strings() };
    case OP_TAGS.alarm: {
      const action = r.bool() ? 'activate' : 'deactivate';
      const memberId = r.uvarint();
      const alarm = ALARMS[r.u8()];
      if (alarm === undefined) throw new DecodeError('unknown alarm type');
      return { type: 'alarm', action, memberId, alarm };
    }
    case OP_TAGS.encryptionKey:
      return { type: 'encryptionKey', keyId: r.string() };
    case OP_TAGS.splitShard:
      return {
        type: 'splitShard',
        shardId: r.uvarint(),
        expectedEpoch: r.uvarint(),
        splitKey: r.bytes(),
        rightId: r.uvarint(),
      };
    case OP_TAGS.auth:
      return { type: 'auth', request: readAuthOp(r) };
    case OP_TAGS.authed: {
      const username = r.string();
      const authRevision = r.uvarint();
      const op = readOp(r);
      if (op.type === 'authed' || !isAuthedInner(op)) throw new DecodeError('bad op inside an authed op');
      return { type: 'authed', username, authRevision, op };
    }
    default:
      throw new DecodeError(`unknown proposal op tag ${tag}`);
  }
}

function writePut(w: BinaryWriter, req: PutRequest): void {
  const flags = (req.prevKv ? 1 : 0) | (req.ignoreValue ? 2 : 0) | (req.ignoreLease ? 4 : 0);
  w.bytes(req.key)
    .bytes(req.value ?? EMPTY)
    .i64(req.lease ?? 0n)
    .u8(flags);
}

function readPut(r: BinaryReader): PutRequest {
  const key = r.bytes();
  const value = r.bytes();
  const lease = r.i64();
  const flags = r.u8();
  return {
    key,
    value,
    lease,
    prevKv: (flags & 1) !== 0,
    ignoreValue: (flags & 2) !== 0,
    ignoreLease: (flags & 4) !== 0,
  };
}

function writeDelete(w: BinaryWriter, req: DeleteRangeRequest): void {
  w.bytes(req.key)
    .bytes(req.rangeEnd ?? EMPTY)
    .bool(req.prevKv ?? false);
}

function readDelete(r: BinaryReader): DeleteRangeRequest {
  return { key: r.bytes(), rangeEnd: r.bytes(), prevKv: r.bool() };
}

/**
 * Range flag: the revision fields follow the flags as i64s (the revision slot before the flags
 * then holds 0). etcd keeps a revision's sign (a negative one is below the compact revision inside
 * a txn, a negative max_mod_revision filters out every key), so it crosses the log as sent;
 * entries without the flag hold non-negative revisions as uvarints.
 */
const RANGE_SIGNED_REVISIONS = 8;

function writeRange(w: BinaryWriter, req: RangeRequest): void {
  const revisions = [
    req.revision ?? 0,
    req.minModRevision ?? 0,
    req.maxModRevision ?? 0,
    req.minCreateRevision ?? 0,
    req.maxCreateRevision ?? 0,
  ];
  const signed = revisions.some((value) => value < 0);
  const flags =
    (req.serializable ? 1 : 0) |
    (req.keysOnly ? 2 : 0) |
    (req.countOnly ? 4 : 0) |
    (signed ? RANGE_SIGNED_REVISIONS : 0);
  w.bytes(req.key)
    .bytes(req.rangeEnd ?? EMPTY)
    .uvarint(req.limit ?? 0)
    .uvarint(signed ? 0 : revisions[0]!)
    .u8(SORT_ORDERS.indexOf(req.sortOrder ?? 'none'))
    .u8(SORT_TARGETS.indexOf(req.sortTarget ?? 'key'))
    .u8(flags);
  if (signed) for (const value of revisions) w.i64(BigInt(value));
  else for (const value of revisions.slice(1)) w.uvarint(value);
}

function readRange(r: BinaryReader): RangeRequest {
  const key = r.bytes();
  const rangeEnd = r.bytes();
  const limit = r.uvarint();
  const unsignedRevision = r.uvarint();
  const sortOrder = SORT_ORDERS[r.u8()];
  const sortTarget = SORT_TARGETS[r.u8()];
  if (sortOrder === undefined || sortTarget === undefined) throw new DecodeError('bad sort option');
  const flags = r.u8();
  const signed = (flags & RANGE_SIGNED_REVISIONS) !== 0;
  const revision = signed ? Number(r.i64()) : unsignedRevision;
  const next = () => (signed ? Number(r.i64()) : r.uvarint());
  return {
    key,
    rangeEnd,
    limit,
    revision,
    sortOrder,
    sortTarget,
    serializable: (flags & 1) !== 0,
    keysOnly: (flags & 2) !== 0,
    countOnly: (flags & 4) !== 0,
    minModRevision: next(),
    maxModRevision: next(),
    minCreateRevision: next(),
    maxCreateRevision: next(),
  };
}

const COMPARE_SIGNED_VERSION = 5;
const COMPARE_SIGNED_CREATE = 6;
const COMPARE_SIGNED_MOD = 7;

const safeOperand = (value: number): number => Math.min(value, Number.MAX_SAFE_INTEGER);

function writeCompare(w: BinaryWriter, cmp: Compare): void {
  w.u8(COMPARE_RESULTS.indexOf(cmp.result))
    .bytes(cmp.key)
    .bytes(cmp.rangeEnd ?? EMPTY);
  // Negative operands (etcd compares them as int64) take the signed tags. A positive operand at or
  // beyond 2^53 compares as 2^53 - 1 does: no version or revision reaches either.
  switch (cmp.target) {
    case 'version':
      if (cmp.version < 0) w.u8(COMPARE_SIGNED_VERSION).i64(BigInt(cmp.version));
      else w.u8(0).uvarint(safeOperand(cmp.version));
      return;
    case 'create':
      if (cmp.createRevision < 0) w.u8(COMPARE_SIGNED_CREATE).i64(BigInt(cmp.createRevision));
      else w.u8(1).uvarint(safeOperand(cmp.createRevision));
      return;
    case 'mod':
      if (cmp.modRevision < 0) w.u8(COMPARE_SIGNED_MOD).i64(BigInt(cmp.modRevision));
      else w.u8(2).uvarint(safeOperand(cmp.modRevision));
      return;
    case 'value':
      w.u8(3).bytes(cmp.value);
      return;
    case 'lease':
      w.u8(4).i64(cmp.lease);
      return;
    default:
      return assertNever(cmp);
  }
}

function readCompare(r: BinaryReader): Compare {
  const result = COMPARE_RESULTS[r.u8()];
  if (result === undefined) throw new DecodeError('bad compare result');
  const key = r.bytes();
  const rangeEnd = r.bytes();
  const target = r.u8();
  switch (target) {
    case 0:
      return { result, key, rangeEnd, target: 'version', version: r.uvarint() };
    case 1:
      return { result, key, rangeEnd, target: 'create', createRevision: r.uvarint() };
    case 2:
      return { result, key, rangeEnd, target: 'mod', modRevision: r.uvarint() };
    case COMPARE_SIGNED_VERSION:
      return { result, key, rangeEnd, target: 'version', version: Number(r.i64()) };
    case COMPARE_SIGNED_CREATE:
      return { result, key, rangeEnd, target: 'create', createRevision: Number(r.i64()) };
    case COMPARE_SIGNED_MOD:
      return { result, key, rangeEnd, target: 'mod', modRevision: Number(r.i64()) };
    case 3:
      return { result, key, rangeEnd, target: 'value', value: r.bytes() };
    case 4:
      return { result, key, rangeEnd, target: 'lease', lease: r.i64() };
    default:
      throw new DecodeError(`bad compare target ${target}`);
  }
}

function writeRequestOps(w: BinaryWriter, ops: RequestOp[]): void {
  w.uvarint(ops.length);
  for (const op of ops) {
    switch (op.type) {
      case 'range':
        w.u8(0);
        writeRange(w, op.request);
        break;
      case 'put':
        w.u8(1);
        writePut(w, op.request);
        break;
      case 'deleteRange':
        w.u8(2);
        writeDelete(w, op.request);
        break;
      case 'txn':
        w.u8(3);
        writeTxn(w, op.request);
        break;
      default:
        assertNever(op);
    }
  }
}

function readRequestOps(r: BinaryReader): RequestOp[] {
  const count = r.uvarint();
  const ops: RequestOp[] = [];
  for (let i = 0; i < count; i++) {
    const tag = r.u8();
    if (tag === 0) ops.push({ type: 'range', request: readRange(r) });
    else if (tag === 1) ops.push({ type: 'put', request: readPut(r) });
    else if (tag === 2) ops.push({ type: 'deleteRange', request: readDelete(r) });
    else if (tag === 3) ops.push({ type: 'txn', request: readTxn(r) });
    else throw new DecodeError(`bad request op tag ${tag}`);
  }
  return ops;
}

function writeTxn(w: BinaryWriter, txn: TxnRequest): void {
  w.uvarint(txn.compare.length);
  for (const cmp of txn.compare) writeCompare(w, cmp);
  writeRequestOps(w, txn.success);
  writeRequestOps(w, txn.failure);
}

function readTxn(r: BinaryReader): TxnRequest {
  const count = r.uvarint();
  const compare: Compare[] = [];
  for (let i = 0; i < count; i++) compare.push(readCompare(r));
  return { compare, success: readRequestOps(r), failure: readRequestOps(r) };
}

function isAuthedInner(op: ServerOp): op is WriteOp | AuthChangeOp {
  return (
    op.type !== 'publishMember' && op.type !== 'updateMember' && op.type !== 'alarm' && op.type !== 'authed'
  );
}

export function assertNever(value: never): never {
  throw new Error(`unexpected value: ${JSON.stringify(value)}`);
}
