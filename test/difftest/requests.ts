// Turns an operation into the request message one side sends: the gRPC method and the encoded
// bytes. Relative revisions, lease labels and member roles are resolved against that side's own
// state (see Resolver), so both sides get the same request as long as they have agreed so far.

import { serviceDefinition } from '../../src/wire/etcd-proto.js';
import {
  type AlarmMember,
  type BytesSpec,
  bytesOf,
  type CompareSpec,
  type DeleteSpec,
  type LeaseSpec,
  type OpSpec,
  type PutSpec,
  type RangeSpec,
  type RevisionSpec,
  type TxnOpSpec,
  type TxnSpec,
  type WatchCreateSpec,
} from './ops.js';

export interface Resolver {
  /** int64 decimal text of a revision spec. */
  revision(spec: RevisionSpec): string;
  /** The same for a watch's start revision (see Side.watchStartRevision). */
  watchStartRevision(spec: RevisionSpec): string;
  lease(spec: LeaseSpec): string;
  alarmMember(member: AlarmMember): string;
}

export type WireObject = Record<string, unknown>;

export interface UnaryRequest {
  /** "etcdserverpb.KV/Range" */
  method: string;
  body: Buffer;
}

const methods: Record<string, string> = {
  range: 'etcdserverpb.KV/Range',
  put: 'etcdserverpb.KV/Put',
  delete: 'etcdserverpb.KV/DeleteRange',
  txn: 'etcdserverpb.KV/Txn',
  compact: 'etcdserverpb.KV/Compact',
  leaseGrant: 'etcdserverpb.Lease/LeaseGrant',
  leaseRevoke: 'etcdserverpb.Lease/LeaseRevoke',
  leaseTimeToLive: 'etcdserverpb.Lease/LeaseTimeToLive',
  leaseLeases: 'etcdserverpb.Lease/LeaseLeases',
  alarm: 'etcdserverpb.Maintenance/Alarm',
  status: 'etcdserverpb.Maintenance/Status',
  hashKV: 'etcdserverpb.Maintenance/HashKV',
  memberList: 'etcdserverpb.Cluster/MemberList',
};

function codecOf(method: string) {
  const [service, name] = method.split('/') as [string, string];
  const definition = serviceDefinition(service as Parameters<typeof serviceDefinition>[0])[name];
  if (definition === undefined) throw new Error(`unknown method ${method}`);
  return definition;
}

export function encodeRequest(method: string, message: WireObject): Buffer {
  return codecOf(method).requestSerialize(message);
}

export function decodeResponse(method: string, bytes: Buffer): WireObject {
  return codecOf(method).responseDeserialize(bytes) as WireObject;
}

export function grpcPath(method: string): string {
  return `/${method}`;
}

function bytes(spec: BytesSpec | undefined): Buffer | undefined {
  return spec === undefined ? undefined : bytesOf(spec);
}

function rangeRequest(op: RangeSpec, r: Resolver): WireObject {
  const rev = (spec: RevisionSpec | undefined) => (spec === undefined ? undefined : r.revision(spec));
  return {
    key: bytesOf(op.key),
    range_end: bytes(op.rangeEnd),
    limit: op.limit === undefined ? undefined : String(op.limit),
    revision: rev(op.revision),
    sort_order: op.sortOrder,
    sort_target: op.sortTarget,
    serializable: op.serializable,
    keys_only: op.keysOnly,
    count_only: op.countOnly,
    min_mod_revision: rev(op.minModRevision),
    max_mod_revision: rev(op.maxModRevision),
    min_create_revision: rev(op.minCreateRevision),
    max_create_revision: rev(op.maxCreateRevision),
  };
}

function putRequest(op: PutSpec, r: Resolver): WireObject {
  return {
    key: bytesOf(op.key),
    value: bytes(op.value),
    lease: op.lease === undefined ? undefined : r.lease(op.lease),
    prev_kv: op.prevKv,
    ignore_value: op.ignoreValue,
    ignore_lease: op.ignoreLease,
  };
}

function deleteRequest(op: DeleteSpec): WireObject {
  return { key: bytesOf(op.key), range_end: bytes(op.rangeEnd), prev_kv: op.prevKv };
}

function compare(c: CompareSpec, r: Resolver): WireObject {
  const base = { result: c.result, target: c.target, key: bytesOf(c.key), range_end: bytes(c.rangeEnd) };
  switch (c.target) {
    case 'VERSION':
      return { ...base, version: String(c.version) };
    case 'CREATE':
      return { ...base, create_revision: r.revision(c.revision) };
    case 'MOD':
      return { ...base, mod_revision: r.revision(c.revision) };
    case 'VALUE':
      return { ...base, value: bytesOf(c.value) };
    case 'LEASE':
      return { ...base, lease: r.lease(c.lease) };
  }
}

function requestOp(op: TxnOpSpec, r: Resolver): WireObject {
  switch (op.type) {
    case 'range':
      return { request_range: rangeRequest(op, r) };
    case 'put':
      return { request_put: putRequest(op, r) };
    case 'delete':
      return { request_delete_range: deleteRequest(op) };
    case 'txn':
      return { request_txn: txnRequest(op, r) };
    case 'empty':
      return {};
  }
}

export function txnRequest(op: TxnSpec, r: Resolver): WireObject {
  return {
    compare: op.compare.map((c) => compare(c, r)),
    success: op.success.map((o) => requestOp(o, r)),
    failure: op.failure.map((o) => requestOp(o, r)),
  };
}

export function watchCreateRequest(op: WatchCreateSpec, r: Resolver): WireObject {
  const filters: string[] = [];
  if (op.noPut) filters.push('NOPUT');
  if (op.noDelete) filters.push('NODELETE');
  return {
    create_request: {
      key: bytesOf(op.key),
      range_end: bytes(op.rangeEnd),
      start_revision: op.startRevision === undefined ? undefined : r.watchStartRevision(op.startRevision),
      progress_notify: op.progressNotify,
      filters,
      prev_kv: op.prevKv,
      watch_id: op.watchId === undefined ? undefined : String(op.watchId),
      fragment: op.fragment,
    },
  };
}

/** The unary request for an operation; undefined for stream operations. */
export function unaryRequest(op: OpSpec, r: Resolver): UnaryRequest | undefined {
  const make = (type: string, message: WireObject): UnaryRequest => {
    const method = methods[type]!;
    return { method, body: encodeRequest(method, message) };
  };
  switch (op.type) {
    case 'range':
      return make('range', rangeRequest(op, r));
    case 'put':
      return make('put', putRequest(op, r));
    case 'delete':
      return make('delete', deleteRequest(op));
    case 'txn':
      return make('txn', txnRequest(op, r));
    case 'compact':
      return make('compact', { revision: r.revision(op.revision), physical: op.physical });
    case 'leaseGrant':
      return make('leaseGrant', { TTL: String(op.ttl), ID: op.id });
    case 'leaseRevoke':
      return make('leaseRevoke', { ID: r.lease(op.lease) });
    case 'leaseTimeToLive':
      return make('leaseTimeToLive', { ID: r.lease(op.lease), keys: op.keys });
    case 'leaseLeases':
      return make('leaseLeases', {});
    case 'alarm':
      return make('alarm', { action: op.action, memberID: r.alarmMember(op.member), alarm: op.alarm });
    case 'status':
      return make('status', {});
    case 'memberList':
      return make('memberList', { linearizable: op.linearizable });
    case 'hashKV':
      return make('hashKV', { revision: r.revision(op.revision) });
    case 'raw':
      return { method: op.method, body: Buffer.from(op.hex, 'hex') };
    case 'call':
      return { method: op.method, body: encodeRequest(op.method, op.request) };
    case 'leaseKeepAlive':
    case 'rawStream':
    case 'watchCreate':
    case 'watchCancel':
    case 'watchProgress':
      return undefined;
  }
}
