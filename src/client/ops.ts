// Request builders for KV operations and transactions, and the conversion of their responses.
// The same builders serve plain calls (client.get/put/delete) and txn branches.

import { assertNever } from './assert.js';
import {
  type Bytes,
  big,
  type KeyValue,
  prefixEnd,
  type ResponseHeader,
  toBuffer,
  toHeader,
  toKeyValue,
  type WireHeader,
  type WireKeyValue,
} from './types.js';

export type SortTarget = 'key' | 'version' | 'create' | 'mod' | 'value';
export type SortOrder = 'none' | 'ascend' | 'descend';

export interface RangeOptions {
  /** Every key starting with `key`. */
  prefix?: boolean;
  /** Explicit end of the range (exclusive); '\0' means "every key >= key". */
  rangeEnd?: Bytes;
  /** Every key >= key. */
  fromKey?: boolean;
}

export interface GetOptions extends RangeOptions {
  revision?: bigint | number;
  limit?: number;
  sort?: { target: SortTarget; order: SortOrder };
  keysOnly?: boolean;
  countOnly?: boolean;
  /** Read from the member's local state without a quorum round (may be stale). */
  serializable?: boolean;
  minModRevision?: bigint | number;
  maxModRevision?: bigint | number;
  minCreateRevision?: bigint | number;
  maxCreateRevision?: bigint | number;
}

export interface PutOptions {
  lease?: bigint | number;
  prevKv?: boolean;
  ignoreValue?: boolean;
  ignoreLease?: boolean;
}

export interface DeleteOptions extends RangeOptions {
  prevKv?: boolean;
}

export interface GetResult {
  header: ResponseHeader;
  kvs: KeyValue[];
  more: boolean;
  count: bigint;
}

export interface PutResult {
  header: ResponseHeader;
  prevKv: KeyValue | undefined;
}

export interface DeleteResult {
  header: ResponseHeader;
  deleted: bigint;
  prevKvs: KeyValue[];
}

// An empty bytes field must be left out, not sent empty: etcd (Go) decodes an explicitly
// encoded empty range_end as a non-nil slice and then serves a range instead of a single key.

export function rangeEndOf(key: Bytes, options: RangeOptions): Buffer | undefined {
  const set = [options.prefix === true, options.rangeEnd !== undefined, options.fromKey === true].filter(
    Boolean,
  );
  if (set.length > 1) throw new RangeError('use only one of prefix, rangeEnd and fromKey');
  if (options.prefix === true) return toBuffer(key).length === 0 ? Buffer.from([0]) : prefixEnd(key);
  if (options.fromKey === true) return Buffer.from([0]);
  if (options.rangeEnd === undefined) return undefined;
  const end = toBuffer(options.rangeEnd);
  return end.length === 0 ? undefined : end;
}

/** etcd refuses an empty key; a range from the empty key starts at "\0" instead (as clientv3 does). */
export function rangeStartOf(key: Bytes, rangeEnd: Buffer | undefined): Buffer {
  const start = toBuffer(key);
  return start.length === 0 && rangeEnd !== undefined ? Buffer.from([0]) : start;
}

const sortTargets: Record<SortTarget, string> = {
  key: 'KEY',
  version: 'VERSION',
  create: 'CREATE',
  mod: 'MOD',
  value: 'VALUE',
};
const sortOrders: Record<SortOrder, string> = { none: 'NONE', ascend: 'ASCEND', descend: 'DESCEND' };

function int64(value: bigint | number | undefined): string {
  return value === undefined ? '0' : BigInt(value).toString();
}

export function rangeRequest(key: Bytes, options: GetOptions = {}): Record<string, unknown> {
  const rangeEnd = rangeEndOf(key, options);
  return {
    key: rangeStartOf(key, rangeEnd),
    range_end: rangeEnd,
    limit: int64(options.limit),
    revision: int64(options.revision),
    sort_order: sortOrders[options.sort?.order ?? 'none'],
    sort_target: sortTargets[options.sort?.target ?? 'key'],
    serializable: options.serializable ?? false,
    keys_only: options.keysOnly ?? false,
    count_only: options.countOnly ?? false,
    min_mod_revision: int64(options.minModRevision),
    max_mod_revision: int64(options.maxModRevision),
    min_create_revision: int64(options.minCreateRevision),
    max_create_revision: int64(options.maxCreateRevision),
  };
}

export function putRequest(key: Bytes, value: Bytes, options: PutOptions = {}): Record<string, unknown> {
  return {
    key: toBuffer(key),
    value: toBuffer(value),
    lease: int64(options.lease),
    prev_kv: options.prevKv ?? false,
    ignore_value: options.ignoreValue ?? false,
    ignore_lease: options.ignoreLease ?? false,
  };
}

export function deleteRequest(key: Bytes, options: DeleteOptions = {}): Record<string, unknown> {
  const rangeEnd = rangeEndOf(key, options);
  return {
    key: rangeStartOf(key, rangeEnd),
    range_end: rangeEnd,
    prev_kv: options.prevKv ?? false,
  };
}

interface WireRange {
  header?: WireHeader;
  kvs?: WireKeyValue[];
  more?: boolean;
  count?: string;
}
interface WirePut {
  header?: WireHeader;
  prev_kv?: WireKeyValue | null;
}
interface WireDelete {
  header?: WireHeader;
  deleted?: string;
  prev_kvs?: WireKeyValue[];
}

export function toGetResult(wire: WireRange): GetResult {
  return {
    header: toHeader(wire.header),
    kvs: (wire.kvs ?? []).map(toKeyValue),
    more: wire.more ?? false,
    count: big(wire.count),
  };
}

export function toPutResult(wire: WirePut): PutResult {
  return {
    header: toHeader(wire.header),
    prevKv: wire.prev_kv === null || wire.prev_kv === undefined ? undefined : toKeyValue(wire.prev_kv),
  };
}

export function toDeleteResult(wire: WireDelete): DeleteResult {
  return {
    header: toHeader(wire.header),
    deleted: big(wire.deleted),
    prevKvs: (wire.prev_kvs ?? []).map(toKeyValue),
  };
}

// ---- transactions -------------------------------------------------------------------------------

export type CompareOperator = '=' | '!=' | '>' | '<';
export type CompareTarget = 'version' | 'createRevision' | 'modRevision' | 'value' | 'lease';

export interface Compare {
  readonly key: Buffer;
  readonly target: CompareTarget;
  readonly operator: CompareOperator;
  readonly operand: bigint | Buffer;
  readonly rangeEnd?: Buffer;
}

function makeCompare(
  target: CompareTarget,
  key: Bytes,
  operator: CompareOperator,
  operand: bigint | Buffer,
): Compare {
  return { key: toBuffer(key), target, operator, operand };
}

/** Comparison builders for txn().if(...). */
export const compare = {
  version: (key: Bytes, operator: CompareOperator, version: bigint | number) =>
    makeCompare('version', key, operator, BigInt(version)),
  createRevision: (key: Bytes, operator: CompareOperator, revision: bigint | number) =>
    makeCompare('createRevision', key, operator, BigInt(revision)),
  modRevision: (key: Bytes, operator: CompareOperator, revision: bigint | number) =>
    makeCompare('modRevision', key, operator, BigInt(revision)),
  value: (key: Bytes, operator: CompareOperator, value: Bytes) =>
    makeCompare('value', key, operator, toBuffer(value)),
  lease: (key: Bytes, operator: CompareOperator, lease: bigint | number) =>
    makeCompare('lease', key, operator, BigInt(lease)),
  /** The key does not exist (create revision 0). */
  missing: (key: Bytes) => makeCompare('createRevision', key, '=', 0n),
};

const compareResults: Record<CompareOperator, string> = {
  '=': 'EQUAL',
  '!=': 'NOT_EQUAL',
  '>': 'GREATER',
  '<': 'LESS',
};

function compareToWire(c: Compare): Record<string, unknown> {
  const base = {
    key: c.key,
    result: compareResults[c.operator],
    range_end: c.rangeEnd,
  };
  const operand = c.operand;
  switch (c.target) {
    case 'version':
      return { ...base, target: 'VERSION', version: String(operand) };
    case 'createRevision':
      return { ...base, target: 'CREATE', create_revision: String(operand) };
    case 'modRevision':
      return { ...base, target: 'MOD', mod_revision: String(operand) };
    case 'lease':
      return { ...base, target: 'LEASE', lease: String(operand) };
    case 'value':
      if (!Buffer.isBuffer(operand)) throw new TypeError('a value comparison needs bytes');
      return { ...base, target: 'VALUE', value: operand };
    default:
      return assertNever(c.target);
  }
}

export type Operation =
  | { type: 'get'; key: Bytes; options?: GetOptions }
  | { type: 'put'; key: Bytes; value: Bytes; options?: PutOptions }
  | { type: 'delete'; key: Bytes; options?: DeleteOptions };

/** Operation builders for txn().then(...)/.else(...). */
export const op = {
  get: (key: Bytes, options?: GetOptions): Operation => ({ type: 'get', key, options }),
  put: (key: Bytes, value: Bytes, options?: PutOptions): Operation => ({ type: 'put', key, value, options }),
  delete: (key: Bytes, options?: DeleteOptions): Operation => ({ type: 'delete', key, options }),
};

function operationToWire(operation: Operation): Record<string, unknown> {
  switch (operation.type) {
    case 'get':
      return { request_range: rangeRequest(operation.key, operation.options) };
    case 'put':
      return { request_put: putRequest(operation.key, operation.value, operation.options) };
    case 'delete':
      return { request_delete_range: deleteRequest(operation.key, operation.options) };
    default:
      return assertNever(operation);
  }
}

export function txnRequest(
  compares: readonly Compare[],
  success: readonly Operation[],
  failure: readonly Operation[],
): Record<string, unknown> {
  return {
    compare: compares.map(compareToWire),
    success: success.map(operationToWire),
    failure: failure.map(operationToWire),
  };
}

export type OperationResult =
  | ({ type: 'get' } & GetResult)
  | ({ type: 'put' } & PutResult)
  | ({ type: 'delete' } & DeleteResult);

export interface TxnResult {
  header: ResponseHeader;
  succeeded: boolean;
  responses: OperationResult[];
}

interface WireResponseOp {
  response_range?: WireRange | null;
  response_put?: WirePut | null;
  response_delete_range?: WireDelete | null;
}

export function toTxnResult(wire: {
  header?: WireHeader;
  succeeded?: boolean;
  responses?: WireResponseOp[];
}): TxnResult {
  return {
    header: toHeader(wire.header),
    succeeded: wire.succeeded ?? false,
    responses: (wire.responses ?? []).map((r): OperationResult => {
      if (r.response_range) return { type: 'get', ...toGetResult(r.response_range) };
      if (r.response_put) return { type: 'put', ...toPutResult(r.response_put) };
      if (r.response_delete_range) return { type: 'delete', ...toDeleteResult(r.response_delete_range) };
      throw new Error('txn response holds an operation type this client does not know');
    }),
  };
}

export function isReadOnly(operations: readonly Operation[]): boolean {
  return operations.every((o) => o.type === 'get');
}
