// The operations a differential run sends, as plain JSON-able data. An operation names what to
// send, not the bytes: revisions may be relative to the newest one seen, leases and watchers are
// named by the label of the operation that made them. Each side (etcd, Concord) resolves these
// against its own state, so a sequence stays meaningful when the shrinker removes operations.

/** An absolute revision (0, negative and huge ones included), or one relative to the newest seen. */
export type RevisionSpec = number | { rel: number };

/** Latin-1 text (one byte per char), or `bytes` copies of one char (large values and keys). */
export type BytesSpec = string | { fill: string; bytes: number };

/** A lease granted by the leaseGrant with this label, or a literal ID (unknown, zero, negative). */
export type LeaseSpec = { grant: number } | { id: string };

/** Which member gets the request: a follower (the default, as a new user's client would), or the leader. */
export type Target = 'follower' | 'follower2' | 'leader';
export const targets: readonly Target[] = ['follower', 'follower2', 'leader'];

export type SortOrder = 'NONE' | 'ASCEND' | 'DESCEND';
export type SortTarget = 'KEY' | 'VERSION' | 'CREATE' | 'MOD' | 'VALUE';
export type CompareResult = 'EQUAL' | 'GREATER' | 'LESS' | 'NOT_EQUAL';

export interface RangeSpec {
  type: 'range';
  key: BytesSpec;
  rangeEnd?: BytesSpec;
  limit?: number;
  revision?: RevisionSpec;
  sortOrder?: SortOrder;
  sortTarget?: SortTarget;
  serializable?: boolean;
  keysOnly?: boolean;
  countOnly?: boolean;
  minModRevision?: RevisionSpec;
  maxModRevision?: RevisionSpec;
  minCreateRevision?: RevisionSpec;
  maxCreateRevision?: RevisionSpec;
}

export interface PutSpec {
  type: 'put';
  key: BytesSpec;
  value?: BytesSpec;
  lease?: LeaseSpec;
  prevKv?: boolean;
  ignoreValue?: boolean;
  ignoreLease?: boolean;
}

export interface DeleteSpec {
  type: 'delete';
  key: BytesSpec;
  rangeEnd?: BytesSpec;
  prevKv?: boolean;
}

export type CompareSpec =
  | { target: 'VERSION'; result: CompareResult; key: BytesSpec; rangeEnd?: BytesSpec; version: number }
  | {
      target: 'CREATE' | 'MOD';
      result: CompareResult;
      key: BytesSpec;
      rangeEnd?: BytesSpec;
      revision: RevisionSpec;
    }
  | { target: 'VALUE'; result: CompareResult; key: BytesSpec; rangeEnd?: BytesSpec; value: BytesSpec }
  | { target: 'LEASE'; result: CompareResult; key: BytesSpec; rangeEnd?: BytesSpec; lease: LeaseSpec };

/** A RequestOp inside a txn; `empty` is a RequestOp with no request set. */
export type TxnOpSpec = RangeSpec | PutSpec | DeleteSpec | TxnSpec | { type: 'empty' };

export interface TxnSpec {
  type: 'txn';
  compare: CompareSpec[];
  success: TxnOpSpec[];
  failure: TxnOpSpec[];
}

export type AlarmMember = Target | 'zero' | 'unknown';

/** Operations on watch streams; `stream` picks one of the runner's streams, `label` names a watcher. */
export interface WatchCreateSpec {
  type: 'watchCreate';
  stream: number;
  label: number;
  key: BytesSpec;
  rangeEnd?: BytesSpec;
  startRevision?: RevisionSpec;
  prevKv?: boolean;
  noPut?: boolean;
  noDelete?: boolean;
  progressNotify?: boolean;
  fragment?: boolean;
  /** A client-chosen watch ID; absent lets the server choose. */
  watchId?: number;
}

export type OpSpec = (
  | RangeSpec
  | PutSpec
  | DeleteSpec
  | TxnSpec
  | { type: 'compact'; revision: RevisionSpec; physical?: boolean }
  | { type: 'leaseGrant'; label: number; ttl: number; id: string }
  | { type: 'leaseRevoke'; lease: LeaseSpec }
  | { type: 'leaseTimeToLive'; lease: LeaseSpec; keys?: boolean }
  | { type: 'leaseLeases' }
  | { type: 'leaseKeepAlive'; lease: LeaseSpec }
  | {
      type: 'alarm';
      action: 'GET' | 'ACTIVATE' | 'DEACTIVATE';
      member: AlarmMember;
      alarm: 'NONE' | 'NOSPACE' | 'CORRUPT';
    }
  | { type: 'status' }
  | { type: 'memberList'; linearizable?: boolean }
  | { type: 'hashKV'; revision: RevisionSpec }
  /** Any other unary call, with a JSON request (strings, numbers, booleans only). */
  | { type: 'call'; method: string; request: Record<string, string | number | boolean> }
  /** Raw request bytes (hex) for a unary method, e.g. malformed protobuf. */
  | { type: 'raw'; method: string; hex: string }
  /** Raw bytes as the first message of a new stream (Watch, LeaseKeepAlive); the first answer counts. */
  | { type: 'rawStream'; method: string; hex: string }
  | WatchCreateSpec
  | { type: 'watchCancel'; stream: number; watcher: { label: number } | { id: number } }
  | { type: 'watchProgress'; stream: number }
) & { at?: Target };

export type OpType = OpSpec['type'];

export function bytesOf(spec: BytesSpec): Buffer {
  if (typeof spec === 'string') return Buffer.from(spec, 'latin1');
  return Buffer.alloc(spec.bytes, spec.fill, 'latin1');
}

/** True when the operation can change the keyspace, the leases or the alarms. */
export function isWrite(op: OpSpec): boolean {
  switch (op.type) {
    case 'put':
    case 'delete':
    case 'txn':
    case 'compact':
    case 'leaseGrant':
    case 'leaseRevoke':
    case 'raw':
    case 'rawStream':
      return true;
    case 'alarm':
      return op.action !== 'GET';
    default:
      return false;
  }
}

/** One line per operation, for printing a sequence so that it can be read and replayed. */
export function formatSequence(ops: readonly OpSpec[]): string {
  return ops.map((op, index) => `${String(index).padStart(4)}  ${JSON.stringify(op)}`).join('\n');
}
