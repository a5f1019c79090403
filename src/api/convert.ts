// The one place where protobuf wire objects and keyspace (mvcc) types meet.

import { status as grpcStatus } from '@grpc/grpc-js';
import { assertNever } from '../mvcc/errors.js';
import type {
  Compare,
  CompareResult,
  DeleteRangeRequest,
  DeleteRangeResponse,
  Event,
  KeyValue,
  PutRequest,
  PutResponse,
  RangeRequest,
  RangeResponse,
  RequestOp,
  ResponseOp,
  SortOrder,
  SortTarget,
  TxnRequest,
  TxnResponse,
} from '../mvcc/types.js';
import { emptyRequestOps } from '../mvcc/validate.js';
import type { HeaderInfo, LeaderKey, Member } from '../services/backend.js';
import { ApiRequestError } from './errors.js';
import type {
  WireCompare,
  WireDeleteRangeRequest,
  WireDeleteRangeResponse,
  WireEvent,
  WireHeader,
  WireKeyValue,
  WireLeaderKey,
  WireMember,
  WirePutRequest,
  WirePutResponse,
  WireRangeRequest,
  WireRangeResponse,
  WireRequestOp,
  WireResponseOp,
  WireTxnRequest,
  WireTxnResponse,
} from './wire.js';

const EMPTY = Buffer.alloc(0);

/** Views a Uint8Array as a Buffer without copying. */
export function asBuffer(bytes: Uint8Array | undefined): Buffer {
  if (bytes === undefined) return EMPTY;
  if (Buffer.isBuffer(bytes)) return bytes;
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** int64 revision/count fields; values beyond 2^53 cannot be revisions we issued. */
export function wireToNumber(value: string | number | undefined): number {
  if (value === undefined || value === '') return 0;
  const n = Number(value);
  if (!Number.isFinite(n)) throw new Error(`not an integer: ${String(value)}`);
  return n;
}

export function wireToBigInt(value: string | number | undefined): bigint {
  if (value === undefined || value === '') return 0n;
  return BigInt(value);
}

export function bigToWire(value: bigint): string {
  return value.toString();
}

/** uint64 fields (member IDs, cluster IDs) arrive as unsigned decimal; keep them unsigned. */
export function uint64ToWire(value: bigint): string {
  return BigInt.asUintN(64, value).toString();
}

/** int64 lease IDs are signed on the wire. */
export function int64ToWire(value: bigint): string {
  return BigInt.asIntN(64, value).toString();
}

/** Remembers the last conversion: header IDs and terms are the same on nearly every response. */
function lastValueMemo(convert: (value: bigint) => string): (value: bigint) => string {
  let lastValue: bigint | undefined;
  let lastWire = '';
  return (value) => {
    if (value !== lastValue) {
      lastWire = convert(value);
      lastValue = value;
    }
    return lastWire;
  };
}

const clusterIdToWire = lastValueMemo(uint64ToWire);
const memberIdToWire = lastValueMemo(uint64ToWire);
const raftTermToWire = lastValueMemo(uint64ToWire);

export function headerToWire(header: HeaderInfo): WireHeader {
  return {
    cluster_id: clusterIdToWire(header.clusterId),
    member_id: memberIdToWire(header.memberId),
    revision: header.revision,
    raft_term: raftTermToWire(header.raftTerm),
  };
}

export function kvToWire(kv: KeyValue): WireKeyValue {
  return {
    key: asBuffer(kv.key),
    create_revision: kv.createRevision,
    mod_revision: kv.modRevision,
    version: kv.version,
    value: asBuffer(kv.value),
    lease: int64ToWire(kv.lease),
  };
}

/**
 * Each event's wire form, made once and shared by every watcher the hub hands the same Event to.
 * It is frozen: nothing may change it under the other watchers, and the codec may then cache its
 * encoded bytes (wire/etcd-codecs.ts).
 */
const wireEvents = new WeakMap<Event, WireEvent>();

export function eventToWire(event: Event): WireEvent {
  const cached = wireEvents.get(event);
  if (cached !== undefined) return cached;
  const wire: WireEvent = {
    type: event.type === 'put' ? 'PUT' : 'DELETE',
    kv: Object.freeze(kvToWire(event.kv)),
  };
  if (event.prevKv !== undefined) wire.prev_kv = Object.freeze(kvToWire(event.prevKv));
  Object.freeze(wire);
  wireEvents.set(event, wire);
  return wire;
}

const sortOrders: Record<WireRangeRequest['sort_order'], SortOrder> = {
  NONE: 'none',
  ASCEND: 'ascend',
  DESCEND: 'descend',
};
const sortTargets: Record<WireRangeRequest['sort_target'], SortTarget> = {
  KEY: 'key',
  VERSION: 'version',
  CREATE: 'create',
  MOD: 'mod',
  VALUE: 'value',
};

/** etcd treats a limit <= 0 as "no limit". */
function limitFromWire(value: string): number {
  return Math.max(0, wireToNumber(value));
}

export function rangeFromWire(wire: WireRangeRequest): RangeRequest {
  return {
    key: wire.key,
    rangeEnd: wire.range_end,
    limit: limitFromWire(wire.limit),
    // Revisions keep their sign, as in etcd: a negative revision reads the current one outside a
    // txn but is below the compact revision inside one; a negative max_mod_revision filters out
    // every key, a negative min_mod_revision none.
    revision: wireToNumber(wire.revision),
    sortOrder: sortOrders[wire.sort_order] ?? 'none',
    sortTarget: sortTargets[wire.sort_target] ?? 'key',
    serializable: wire.serializable,
    keysOnly: wire.keys_only,
    countOnly: wire.count_only,
    minModRevision: wireToNumber(wire.min_mod_revision),
    maxModRevision: wireToNumber(wire.max_mod_revision),
    minCreateRevision: wireToNumber(wire.min_create_revision),
    maxCreateRevision: wireToNumber(wire.max_create_revision),
  };
}

export function putFromWire(wire: WirePutRequest): PutRequest {
  return {
    key: wire.key,
    value: wire.value,
    lease: wireToBigInt(wire.lease),
    prevKv: wire.prev_kv,
    ignoreValue: wire.ignore_value,
    ignoreLease: wire.ignore_lease,
  };
}

export function deleteRangeFromWire(wire: WireDeleteRangeRequest): DeleteRangeRequest {
  return { key: wire.key, rangeEnd: wire.range_end, prevKv: wire.prev_kv };
}

const compareResults: Record<WireCompare['result'], CompareResult> = {
  EQUAL: 'equal',
  GREATER: 'greater',
  LESS: 'less',
  NOT_EQUAL: 'not-equal',
};

export function compareFromWire(wire: WireCompare): Compare {
  const base = { result: compareResults[wire.result] ?? 'equal', key: wire.key, rangeEnd: wire.range_end };
  // etcd reads the operand named by `target`, whichever union member the client set.
  switch (wire.target) {
    case 'VERSION':
      return { ...base, target: 'version', version: wireToNumber(wire.version) };
    case 'CREATE':
      return { ...base, target: 'create', createRevision: wireToNumber(wire.create_revision) };
    case 'MOD':
      return { ...base, target: 'mod', modRevision: wireToNumber(wire.mod_revision) };
    case 'VALUE':
      return { ...base, target: 'value', value: wire.value ?? EMPTY };
    case 'LEASE':
      return { ...base, target: 'lease', lease: wireToBigInt(wire.lease) };
    default:
      // Unknown enum numbers arrive as numbers (a newer or broken client): refuse, not crash.
      throw new ApiRequestError(
        grpcStatus.INVALID_ARGUMENT,
        `concord: unknown compare target ${String(wire.target)}`,
      );
  }
}

export function requestOpFromWire(wire: WireRequestOp): RequestOp | undefined {
  if (wire.request_range) return { type: 'range', request: rangeFromWire(wire.request_range) };
  if (wire.request_put) return { type: 'put', request: putFromWire(wire.request_put) };
  if (wire.request_delete_range) {
    return { type: 'deleteRange', request: deleteRangeFromWire(wire.request_delete_range) };
  }
  if (wire.request_txn) return { type: 'txn', request: txnFromWire(wire.request_txn) };
  return undefined;
}

function opsFromWire(ops: WireRequestOp[]): RequestOp[] {
  return ops.map((op) => requestOpFromWire(op) ?? emptyRequestOp());
}

/** A RequestOp with no request set: etcd's checks refuse it ("key not found") where they meet it. */
function emptyRequestOp(): RequestOp {
  const placeholder: RequestOp = { type: 'range', request: { key: EMPTY } };
  emptyRequestOps.add(placeholder);
  return placeholder;
}

export function txnFromWire(wire: WireTxnRequest): TxnRequest {
  return {
    compare: wire.compare.map(compareFromWire),
    success: opsFromWire(wire.success),
    failure: opsFromWire(wire.failure),
  };
}

export function rangeToWire(response: RangeResponse, header: WireHeader): WireRangeResponse {
  return { header, kvs: response.kvs.map(kvToWire), more: response.more, count: response.count };
}

export function putToWire(response: PutResponse, header: WireHeader): WirePutResponse {
  const wire: WirePutResponse = { header };
  if (response.prevKv !== undefined) wire.prev_kv = kvToWire(response.prevKv);
  return wire;
}

export function deleteRangeToWire(
  response: DeleteRangeResponse,
  header: WireHeader,
): WireDeleteRangeResponse {
  return { header, deleted: response.deleted, prev_kvs: response.prevKvs.map(kvToWire) };
}

/** etcd fills only the revision of headers nested in a txn response (the server fills the outer one). */
function nestedHeader(revision: number): WireHeader {
  return { cluster_id: 0, member_id: 0, revision, raft_term: 0 };
}

function responseOpToWire(op: ResponseOp): WireResponseOp {
  const header = nestedHeader(op.response.revision);
  switch (op.type) {
    case 'range':
      return { response_range: rangeToWire(op.response, header) };
    case 'put':
      return { response_put: putToWire(op.response, header) };
    case 'deleteRange':
      return { response_delete_range: deleteRangeToWire(op.response, header) };
    case 'txn':
      return { response_txn: txnToWire(op.response, header) };
    default:
      return assertNever(op);
  }
}

export function txnToWire(response: TxnResponse, header: WireHeader): WireTxnResponse {
  return { header, succeeded: response.succeeded, responses: response.responses.map(responseOpToWire) };
}

export function memberToWire(member: Member): WireMember {
  return {
    ID: uint64ToWire(member.id),
    name: member.name,
    peerURLs: member.peerUrls,
    clientURLs: member.clientUrls,
    isLearner: member.isLearner,
  };
}

export function leaderKeyToWire(leader: LeaderKey): WireLeaderKey {
  return {
    name: asBuffer(leader.name),
    key: asBuffer(leader.key),
    rev: String(leader.rev),
    lease: int64ToWire(leader.lease),
  };
}

export function leaderKeyFromWire(wire: WireLeaderKey): LeaderKey {
  return { name: wire.name, key: wire.key, rev: wireToNumber(wire.rev), lease: wireToBigInt(wire.lease) };
}
