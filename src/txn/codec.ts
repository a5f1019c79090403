// The transaction layer's bytes: a `ShardTxnCommand` as a shard log entry payload, and a
// `ShardTxnState` as the transaction part of a shard snapshot. Written with util/binary's writer as the
// metadata group's commands and snapshot are (shard/meta-commands.ts, shard/meta-snapshot.ts), read
// back by a stricter reader of its own (below).
//
// Command:  u8 encoding version (1) | u8 command tag | fields
// Snapshot: u8 format version (1) | int clock | uint last revision
//           | locks (acquisition order): meta | part | int expiresAt | prepare answer
//           | outcomes (decision order): string id | u8 outcome | int at | int startedAt | responses
//           | PENDING records | decided records (decision order)
//           | u32 LE CRC32 (zlib) of every byte before it
//
// Field encodings: `uint` a uvarint (revisions, ids, counts; a safe integer, checked on decode);
// `int` a sign byte and a uvarint magnitude (times and priorities, which clock skew can make
// negative, and the numbers of client requests, which etcd takes as int64); keys and values
// length-prefixed bytes; leases 8-byte little-endian int64; an optional field is a bit in a
// uvarint presence mask ahead of the struct's fields. Tags, enum orders and field orders are
// stable: a new field or command gets a new version or tag.
//
// Every encoding is canonical: decode(encode(x)) equals x (an optional field set to undefined is
// written as absent and comes back absent), and every payload decode accepts is the one encoding
// of its value, encode(decode(bytes)) = bytes (varints with redundant bytes, negative zero and
// flag bytes other than 0/1 are refused; strings are strict UTF-8, a leading BOM kept). Decoding
// anything else throws TxnCommandInvalidError or TxnSnapshotCorruptError, never another error and
// never a partial value.

import { crc32 } from 'node:zlib';
import { BinaryWriter, DecodeError } from '../util/binary.js';
import type { LockEntry } from './lock-table.js';
import type { Finished, ShardTxnImage } from './shard-txn-state.js';
import type {
  AbortReason,
  Compare,
  CompareOutcome,
  CompareResult,
  DeleteRangeRequest,
  DeleteRangeResponse,
  KeyValue,
  LeafOp,
  LeafResponse,
  LockInterval,
  OpCheckFailure,
  PartCompare,
  PartOp,
  PartResponse,
  PutRequest,
  PutResponse,
  RangeRequest,
  RangeResponse,
  RequestOp,
  ShardTxnCommand,
  SortOrder,
  SortTarget,
  TxnId,
  TxnMeta,
  TxnPart,
  TxnRecord,
  TxnRecordState,
  TxnRequest,
} from './types.js';

/** A log entry payload that is not a command this code wrote. */
export class TxnCommandInvalidError extends Error {
  readonly code = 'txn-command-invalid';
  constructor(message: string) {
    super(`invalid transaction command: ${message}`);
    this.name = 'TxnCommandInvalidError';
  }
}

/** A snapshot that fails its CRC (`txn-snapshot-crc`) or does not decode to a valid state (`txn-snapshot-invalid`). */
export class TxnSnapshotCorruptError extends Error {
  constructor(
    readonly code: 'txn-snapshot-crc' | 'txn-snapshot-invalid',
    message: string,
  ) {
    super(`corrupt transaction snapshot: ${message}`);
    this.name = 'TxnSnapshotCorruptError';
  }
}

export const TXN_COMMAND_ENCODING_VERSION = 1;
export const TXN_SNAPSHOT_FORMAT_VERSION = 1;
/** Nested txns deeper than this are refused both ways (decoding garbage must not exhaust the stack). */
export const MAX_TXN_NESTING = 64;

const CRC_BYTES = 4;
// ignoreBOM: a leading U+FEFF is part of the string, not a marker to strip (it would not round-trip).
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const utf8Encoder = new TextEncoder();
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

const COMPARE_TARGETS: readonly Compare['target'][] = ['version', 'create', 'mod', 'value', 'lease'];
const COMPARE_RESULTS: readonly CompareResult[] = ['equal', 'greater', 'less', 'not-equal'];
const SORT_ORDERS: readonly SortOrder[] = ['none', 'ascend', 'descend'];
const SORT_TARGETS: readonly SortTarget[] = ['key', 'version', 'create', 'mod', 'value'];
const OP_TYPES: readonly RequestOp['type'][] = ['range', 'put', 'deleteRange', 'txn'];
const ABORT_KINDS: readonly AbortReason['kind'][] = ['coordinator', 'expired', 'wound'];
const RECORD_STATUSES: readonly TxnRecordState['status'][] = ['pending', 'committed', 'aborted'];
const OUTCOMES: readonly Finished['outcome'][] = ['committed', 'aborted'];

/**
 * The reader for util/binary's writer, stricter than util/binary's: a varint with a redundant zero
 * last byte or above 2^53 - 1 is refused, so every accepted payload is the one encoding of its
 * value. Failures are DecodeErrors.
 */
class Reader {
  private offset = 0;
  private readonly view: DataView;

  constructor(private readonly buffer: Uint8Array) {
    this.view = new DataView(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  }

  private need(bytes: number): void {
    if (bytes > this.buffer.length - this.offset) {
      throw new DecodeError(
        `truncated: need ${bytes} bytes at offset ${this.offset} of ${this.buffer.length}`,
      );
    }
  }

  u8(): number {
    this.need(1);
    return this.buffer[this.offset++]!;
  }

  uint(): number {
    let value = 0;
    let scale = 1;
    for (let i = 0; i < 8; i++) {
      const byte = this.u8();
      value += (byte & 0x7f) * scale;
      if (byte < 0x80) {
        if (byte === 0 && i > 0) throw new DecodeError('a varint has a redundant zero byte');
        if (!Number.isSafeInteger(value)) throw new DecodeError(`integer ${value} is above 2^53 - 1`);
        return value;
      }
      scale *= 0x80;
    }
    throw new DecodeError('a varint is longer than 8 bytes');
  }

  i64(): bigint {
    this.need(8);
    const value = this.view.getBigInt64(this.offset, true);
    this.offset += 8;
    return value;
  }

  /** A view into the payload. */
  bytes(): Uint8Array {
    const length = this.uint();
    this.need(length);
    const value = this.buffer.subarray(this.offset, this.offset + length);
    this.offset += length;
    return value;
  }

  expectDone(): void {
    const left = this.buffer.length - this.offset;
    if (left > 0) throw new DecodeError(`${left} trailing bytes`);
  }
}

// --- primitives -------------------------------------------------------------------------------

function uint(w: BinaryWriter, value: number): BinaryWriter {
  return w.uvarint(value);
}

function readUint(r: Reader): number {
  return r.uint();
}

function int(w: BinaryWriter, value: number): BinaryWriter {
  if (!Number.isSafeInteger(value)) throw new RangeError(`not a safe integer: ${value}`);
  return value < 0 ? w.u8(1).uvarint(-value) : w.u8(0).uvarint(value);
}

function readInt(r: Reader): number {
  const sign = r.u8();
  if (sign > 1) throw new DecodeError(`sign byte ${sign} is not 0 or 1`);
  const magnitude = readUint(r);
  if (sign === 0) return magnitude;
  if (magnitude === 0) throw new DecodeError('negative zero');
  return -magnitude;
}

function bool(w: BinaryWriter, value: boolean): BinaryWriter {
  return w.u8(value ? 1 : 0);
}

function readBool(r: Reader): boolean {
  const value = r.u8();
  if (value > 1) throw new DecodeError(`boolean byte ${value} is not 0 or 1`);
  return value === 1;
}

/** A copy, as a plain Uint8Array (so a Buffer payload does not leak into the values). */
function readBytes(r: Reader): Uint8Array {
  return new Uint8Array(r.bytes());
}

function lease(w: BinaryWriter, value: bigint): BinaryWriter {
  if (typeof value !== 'bigint' || value < INT64_MIN || value > INT64_MAX) {
    throw new RangeError(`lease ${value} is not an int64`);
  }
  return w.i64(value);
}

function string(w: BinaryWriter, value: string): BinaryWriter {
  // A lone surrogate would come back as U+FFFD: refuse what cannot round-trip.
  if (/[\uD800-\uDFFF]/u.test(value)) throw new RangeError('string has a lone surrogate');
  return w.bytes(utf8Encoder.encode(value));
}

function readString(r: Reader): string {
  const bytes = r.bytes();
  try {
    return utf8.decode(bytes);
  } catch {
    throw new DecodeError('a string is not valid UTF-8');
  }
}

function enumIndex<T>(values: readonly T[], value: T, what: string): number {
  const index = values.indexOf(value);
  if (index < 0) throw new RangeError(`unknown ${what} ${String(value)}`);
  return index;
}

function readEnum<T>(r: Reader, values: readonly T[], what: string): T {
  const index = r.u8();
  const value = values[index];
  if (value === undefined) throw new DecodeError(`unknown ${what} ${index}`);
  return value;
}

function list<T>(
  w: BinaryWriter,
  items: readonly T[],
  write: (w: BinaryWriter, item: T) => void,
): BinaryWriter {
  w.uvarint(items.length);
  for (const item of items) write(w, item);
  return w;
}

function readList<T>(r: Reader, read: (r: Reader) => T): T[] {
  const count = readUint(r);
  const items: T[] = [];
  for (let i = 0; i < count; i++) items.push(read(r));
  return items;
}

/**
 * Optional fields: a uvarint mask with bit i set when field i is present, then the present
 * fields in order. A mask with a bit past the last field is refused.
 */
interface OptionalField<T> {
  readonly name: keyof T & string;
  write(w: BinaryWriter, value: never): void;
  read(r: Reader): unknown;
}

function optionalField<T, K extends keyof T & string>(
  name: K,
  write: (w: BinaryWriter, value: Exclude<T[K], undefined>) => void,
  read: (r: Reader) => Exclude<T[K], undefined>,
): OptionalField<T> {
  return { name, write: write as (w: BinaryWriter, value: never) => void, read };
}

function writeOptionals<T>(w: BinaryWriter, value: T, fields: readonly OptionalField<T>[]): void {
  let mask = 0;
  fields.forEach((f, i) => {
    if (value[f.name] !== undefined) mask += 2 ** i;
  });
  w.uvarint(mask);
  for (const f of fields) {
    const v = value[f.name];
    if (v !== undefined) f.write(w, v as never);
  }
}

function readOptionals<T>(r: Reader, fields: readonly OptionalField<T>[]): Partial<T> {
  const mask = readUint(r);
  if (mask >= 2 ** fields.length) throw new DecodeError(`presence mask ${mask} has unknown fields`);
  const out: Record<string, unknown> = {};
  fields.forEach((f, i) => {
    if (Math.floor(mask / 2 ** i) % 2 === 1) out[f.name] = f.read(r);
  });
  return out as Partial<T>;
}

// --- etcd requests --------------------------------------------------------------------------

const RANGE_OPTIONALS: readonly OptionalField<RangeRequest>[] = [
  optionalField<RangeRequest, 'rangeEnd'>('rangeEnd', (w, v) => w.bytes(v), readBytes),
  optionalField<RangeRequest, 'limit'>('limit', int, readInt),
  optionalField<RangeRequest, 'revision'>('revision', int, readInt),
  optionalField<RangeRequest, 'sortOrder'>(
    'sortOrder',
    (w, v) => w.u8(enumIndex(SORT_ORDERS, v, 'sort order')),
    (r) => readEnum(r, SORT_ORDERS, 'sort order'),
  ),
  optionalField<RangeRequest, 'sortTarget'>(
    'sortTarget',
    (w, v) => w.u8(enumIndex(SORT_TARGETS, v, 'sort target')),
    (r) => readEnum(r, SORT_TARGETS, 'sort target'),
  ),
  optionalField<RangeRequest, 'serializable'>('serializable', bool, readBool),
  optionalField<RangeRequest, 'keysOnly'>('keysOnly', bool, readBool),
  optionalField<RangeRequest, 'countOnly'>('countOnly', bool, readBool),
  optionalField<RangeRequest, 'minModRevision'>('minModRevision', int, readInt),
  optionalField<RangeRequest, 'maxModRevision'>('maxModRevision', int, readInt),
  optionalField<RangeRequest, 'minCreateRevision'>('minCreateRevision', int, readInt),
  optionalField<RangeRequest, 'maxCreateRevision'>('maxCreateRevision', int, readInt),
];

const PUT_OPTIONALS: readonly OptionalField<PutRequest>[] = [
  optionalField<PutRequest, 'value'>('value', (w, v) => w.bytes(v), readBytes),
  optionalField<PutRequest, 'lease'>('lease', lease, (r) => r.i64()),
  optionalField<PutRequest, 'prevKv'>('prevKv', bool, readBool),
  optionalField<PutRequest, 'ignoreValue'>('ignoreValue', bool, readBool),
  optionalField<PutRequest, 'ignoreLease'>('ignoreLease', bool, readBool),
];

const DELETE_OPTIONALS: readonly OptionalField<DeleteRangeRequest>[] = [
  optionalField<DeleteRangeRequest, 'rangeEnd'>('rangeEnd', (w, v) => w.bytes(v), readBytes),
  optionalField<DeleteRangeRequest, 'prevKv'>('prevKv', bool, readBool),
];

function writeCompare(w: BinaryWriter, c: Compare): void {
  w.u8(enumIndex(COMPARE_TARGETS, c.target, 'compare target'));
  w.u8(enumIndex(COMPARE_RESULTS, c.result, 'compare result'));
  w.bytes(c.key);
  if (c.rangeEnd === undefined) w.u8(0);
  else w.u8(1).bytes(c.rangeEnd);
  switch (c.target) {
    case 'version':
      int(w, c.version);
      return;
    case 'create':
      int(w, c.createRevision);
      return;
    case 'mod':
      int(w, c.modRevision);
      return;
    case 'value':
      w.bytes(c.value);
      return;
    case 'lease':
      lease(w, c.lease);
      return;
  }
}

function readCompare(r: Reader): Compare {
  const target = readEnum(r, COMPARE_TARGETS, 'compare target');
  const result = readEnum(r, COMPARE_RESULTS, 'compare result');
  const key = readBytes(r);
  const base = readBool(r) ? { result, key, rangeEnd: readBytes(r) } : { result, key };
  switch (target) {
    case 'version':
      return { ...base, target, version: readInt(r) };
    case 'create':
      return { ...base, target, createRevision: readInt(r) };
    case 'mod':
      return { ...base, target, modRevision: readInt(r) };
    case 'value':
      return { ...base, target, value: readBytes(r) };
    case 'lease':
      return { ...base, target, lease: r.i64() };
  }
}

function writeOp(w: BinaryWriter, op: RequestOp, depth: number): void {
  w.u8(enumIndex(OP_TYPES, op.type, 'op type'));
  switch (op.type) {
    case 'range':
      w.bytes(op.request.key);
      writeOptionals(w, op.request, RANGE_OPTIONALS);
      return;
    case 'put':
      w.bytes(op.request.key);
      writeOptionals(w, op.request, PUT_OPTIONALS);
      return;
    case 'deleteRange':
      w.bytes(op.request.key);
      writeOptionals(w, op.request, DELETE_OPTIONALS);
      return;
    case 'txn':
      writeTxnRequest(w, op.request, depth + 1);
      return;
  }
}

function readOp(r: Reader, depth: number): RequestOp {
  const type = readEnum(r, OP_TYPES, 'op type');
  switch (type) {
    case 'range':
      return { type, request: { key: readBytes(r), ...readOptionals(r, RANGE_OPTIONALS) } };
    case 'put':
      return { type, request: { key: readBytes(r), ...readOptionals(r, PUT_OPTIONALS) } };
    case 'deleteRange':
      return { type, request: { key: readBytes(r), ...readOptionals(r, DELETE_OPTIONALS) } };
    case 'txn':
      return { type, request: readTxnRequest(r, depth + 1) };
  }
}

function readLeafOp(r: Reader): LeafOp {
  const op = readOp(r, 0);
  if (op.type === 'txn') throw new DecodeError('a part op is a nested txn');
  return op;
}

function writeTxnRequest(w: BinaryWriter, t: TxnRequest, depth: number): void {
  if (depth > MAX_TXN_NESTING) throw new RangeError(`txn nested deeper than ${MAX_TXN_NESTING}`);
  list(w, t.compare, writeCompare);
  list(w, t.success, (ww, op) => writeOp(ww, op, depth));
  list(w, t.failure, (ww, op) => writeOp(ww, op, depth));
}

function readTxnRequest(r: Reader, depth: number): TxnRequest {
  if (depth > MAX_TXN_NESTING) throw new DecodeError(`txn nested deeper than ${MAX_TXN_NESTING}`);
  return {
    compare: readList(r, readCompare),
    success: readList(r, (rr) => readOp(rr, depth)),
    failure: readList(r, (rr) => readOp(rr, depth)),
  };
}

// --- etcd responses -------------------------------------------------------------------------

function writeKeyValue(w: BinaryWriter, kv: KeyValue): void {
  w.bytes(kv.key);
  uint(w, kv.createRevision);
  uint(w, kv.modRevision);
  uint(w, kv.version);
  w.bytes(kv.value);
  lease(w, kv.lease);
}

function readKeyValue(r: Reader): KeyValue {
  return {
    key: readBytes(r),
    createRevision: readUint(r),
    modRevision: readUint(r),
    version: readUint(r),
    value: readBytes(r),
    lease: r.i64(),
  };
}

function writeLeafResponse(w: BinaryWriter, op: LeafResponse): void {
  w.u8(enumIndex(OP_TYPES, op.type, 'response type'));
  switch (op.type) {
    case 'range': {
      const res: RangeResponse = op.response;
      uint(w, res.revision);
      list(w, res.kvs, writeKeyValue);
      bool(w, res.more);
      uint(w, res.count);
      return;
    }
    case 'put': {
      const res: PutResponse = op.response;
      uint(w, res.revision);
      if (res.prevKv === undefined) w.u8(0);
      else writeKeyValue(w.u8(1), res.prevKv);
      return;
    }
    case 'deleteRange': {
      const res: DeleteRangeResponse = op.response;
      uint(w, res.revision);
      uint(w, res.deleted);
      list(w, res.prevKvs, writeKeyValue);
      return;
    }
  }
}

function readLeafResponse(r: Reader): LeafResponse {
  const type = readEnum(r, OP_TYPES, 'response type');
  switch (type) {
    case 'range':
      return {
        type,
        response: {
          revision: readUint(r),
          kvs: readList(r, readKeyValue),
          more: readBool(r),
          count: readUint(r),
        },
      };
    case 'put': {
      const revision = readUint(r);
      return { type, response: readBool(r) ? { revision, prevKv: readKeyValue(r) } : { revision } };
    }
    case 'deleteRange':
      return {
        type,
        response: { revision: readUint(r), deleted: readUint(r), prevKvs: readList(r, readKeyValue) },
      };
    case 'txn':
      throw new DecodeError('a part response is a txn response');
  }
}

// --- protocol -------------------------------------------------------------------------------

function writeMeta(w: BinaryWriter, m: TxnMeta): void {
  string(w, m.id);
  uint(w, m.primary);
  int(w, m.priority);
  uint(w, m.startRevision);
  int(w, m.startedAtMs);
}

function readMeta(r: Reader): TxnMeta {
  return {
    id: readString(r),
    primary: readUint(r),
    priority: readInt(r),
    startRevision: readUint(r),
    startedAtMs: readInt(r),
  };
}

function writeLock(w: BinaryWriter, l: LockInterval): void {
  w.bytes(l.start).bytes(l.end);
  bool(w, l.write);
}

function readLock(r: Reader): LockInterval {
  return { start: readBytes(r), end: readBytes(r), write: readBool(r) };
}

function writePart(w: BinaryWriter, p: TxnPart): void {
  list(w, p.compares, (ww, c: PartCompare) => writeCompare(uint(ww, c.id), c.compare));
  list(w, p.ops, (ww, o: PartOp) => writeOp(uint(ww, o.id), o.op, 0));
  list(w, p.locks, writeLock);
}

function readPart(r: Reader): TxnPart {
  return {
    compares: readList(r, (rr) => ({ id: readUint(rr), compare: readCompare(rr) })),
    ops: readList(r, (rr) => ({ id: readUint(rr), op: readLeafOp(rr) })),
    locks: readList(r, readLock),
  };
}

function writeExecuted(w: BinaryWriter, executed: readonly number[]): void {
  list(w, executed, uint);
}

function readExecuted(r: Reader): number[] {
  return readList(r, readUint);
}

function writeReason(w: BinaryWriter, reason: AbortReason): void {
  w.u8(enumIndex(ABORT_KINDS, reason.kind, 'abort reason'));
  if (reason.kind === 'wound') int(w, reason.byPriority);
}

function readReason(r: Reader): AbortReason {
  const kind = readEnum(r, ABORT_KINDS, 'abort reason');
  return kind === 'wound' ? { kind, byPriority: readInt(r) } : { kind };
}

// --- commands -------------------------------------------------------------------------------

type CommandType = ShardTxnCommand['type'];
type CommandOf<K extends CommandType> = Extract<ShardTxnCommand, { type: K }>;

interface CommandCodec<K extends CommandType> {
  readonly tag: number;
  write(w: BinaryWriter, command: CommandOf<K>): void;
  read(r: Reader): CommandOf<K>;
}

/** One entry per command type (the mapped type makes a missing one a compile error). `nowMs` comes last in each. */
const CODECS: { readonly [K in CommandType]: CommandCodec<K> } = {
  prepare: {
    tag: 1,
    write: (w, c) => {
      writeMeta(w, c.meta);
      writePart(w, c.part);
      int(w, c.nowMs);
    },
    read: (r) => ({ type: 'prepare', meta: readMeta(r), part: readPart(r), nowMs: readInt(r) }),
  },
  commit: {
    tag: 2,
    write: (w, c) => {
      writeMeta(w, c.meta);
      uint(w, c.revision);
      writeExecuted(w, c.executed);
      int(w, c.nowMs);
    },
    read: (r) => ({
      type: 'commit',
      meta: readMeta(r),
      revision: readUint(r),
      executed: readExecuted(r),
      nowMs: readInt(r),
    }),
  },
  abort: {
    tag: 3,
    write: (w, c) => {
      writeMeta(w, c.meta);
      int(w, c.nowMs);
    },
    read: (r) => ({ type: 'abort', meta: readMeta(r), nowMs: readInt(r) }),
  },
  'record-begin': {
    tag: 4,
    write: (w, c) => {
      writeMeta(w, c.meta);
      int(w, c.nowMs);
    },
    read: (r) => ({ type: 'record-begin', meta: readMeta(r), nowMs: readInt(r) }),
  },
  'record-heartbeat': {
    tag: 5,
    write: (w, c) => int(string(w, c.txnId), c.nowMs),
    read: (r) => ({ type: 'record-heartbeat', txnId: readString(r), nowMs: readInt(r) }),
  },
  'record-forget': {
    tag: 6,
    write: (w, c) => int(string(w, c.txnId), c.nowMs),
    read: (r) => ({ type: 'record-forget', txnId: readString(r), nowMs: readInt(r) }),
  },
  'record-commit': {
    tag: 7,
    write: (w, c) => {
      uint(string(w, c.txnId), c.revision);
      writeExecuted(w, c.executed);
      int(w, c.nowMs);
    },
    read: (r) => ({
      type: 'record-commit',
      txnId: readString(r),
      revision: readUint(r),
      executed: readExecuted(r),
      nowMs: readInt(r),
    }),
  },
  'record-abort': {
    tag: 8,
    write: (w, c) => {
      writeMeta(w, c.meta);
      writeReason(w, c.reason);
      int(w, c.nowMs);
    },
    read: (r) => ({ type: 'record-abort', meta: readMeta(r), reason: readReason(r), nowMs: readInt(r) }),
  },
  single: {
    tag: 9,
    write: (w, c) => {
      writeTxnRequest(w, c.request, 0);
      uint(w, c.revision);
      int(w, c.nowMs);
    },
    read: (r) => ({
      type: 'single',
      request: readTxnRequest(r, 0),
      revision: readUint(r),
      nowMs: readInt(r),
    }),
  },
};

const TYPE_BY_TAG = new Map<number, CommandType>(
  (Object.keys(CODECS) as CommandType[]).map((type) => [CODECS[type].tag, type]),
);

/**
 * The log entry payload for a command. Throws RangeError on what it cannot write so that it reads
 * back the same: a negative or unsafe integer where a uint goes, a non-integer, a lease outside
 * int64, a string with a lone surrogate, an unknown enum value, txns nested past MAX_TXN_NESTING.
 */
export function encodeShardTxnCommand(command: ShardTxnCommand): Uint8Array {
  const codec = CODECS[command.type] as CommandCodec<CommandType> | undefined;
  if (!codec) throw new RangeError(`unknown transaction command ${String(command.type)}`);
  const w = new BinaryWriter(128).u8(TXN_COMMAND_ENCODING_VERSION).u8(codec.tag);
  codec.write(w, command);
  return w.finish();
}

/** The command in a log entry payload; any malformed payload throws TxnCommandInvalidError. */
export function decodeShardTxnCommand(payload: Uint8Array): ShardTxnCommand {
  return decodeWhole(
    payload,
    (message) => new TxnCommandInvalidError(message),
    (r) => {
      const version = r.u8();
      if (version !== TXN_COMMAND_ENCODING_VERSION) {
        throw new DecodeError(`unknown encoding version ${version}`);
      }
      const tag = r.u8();
      const type = TYPE_BY_TAG.get(tag);
      if (type === undefined) throw new DecodeError(`unknown command tag ${tag}`);
      return CODECS[type].read(r);
    },
  );
}

/** Reads the whole payload (trailing bytes are an error); every decoding failure becomes `fail`'s error. */
function decodeWhole<T>(payload: Uint8Array, fail: (message: string) => Error, read: (r: Reader) => T): T {
  try {
    const r = new Reader(payload);
    const value = read(r);
    r.expectDone();
    return value;
  } catch (error) {
    if (error instanceof DecodeError) throw fail(error.message);
    throw error;
  }
}

// --- snapshot -------------------------------------------------------------------------------

function writeRecord(w: BinaryWriter, record: TxnRecord): void {
  writeMeta(w, record.meta);
  const state = record.state;
  w.u8(enumIndex(RECORD_STATUSES, state.status, 'record status'));
  switch (state.status) {
    case 'pending':
      int(w, state.heartbeatAtMs);
      break;
    case 'committed':
      uint(w, state.revision);
      writeExecuted(w, state.executed);
      break;
    case 'aborted':
      break;
  }
  int(w, record.touchedAtMs);
  // forgotten: absent, false or true.
  w.u8(record.forgotten === undefined ? 0 : record.forgotten ? 2 : 1);
}

function readRecord(r: Reader): TxnRecord {
  const meta = readMeta(r);
  const status = readEnum(r, RECORD_STATUSES, 'record status');
  let state: TxnRecordState;
  switch (status) {
    case 'pending':
      state = { status, heartbeatAtMs: readInt(r) };
      break;
    case 'committed':
      state = { status, revision: readUint(r), executed: readExecuted(r) };
      break;
    case 'aborted':
      state = { status };
      break;
  }
  const touchedAtMs = readInt(r);
  const forgotten = r.u8();
  if (forgotten > 2) throw new DecodeError(`forgotten byte ${forgotten} is not 0, 1 or 2`);
  return forgotten === 0
    ? { meta, state, touchedAtMs }
    : { meta, state, touchedAtMs, forgotten: forgotten === 2 };
}

function writeLockEntry(w: BinaryWriter, lock: LockEntry): void {
  writeMeta(w, lock.meta);
  writePart(w, lock.part);
  int(w, lock.expiresAtMs);
  list(w, lock.prepared.compares, (ww, c: CompareOutcome) => {
    uint(uint(ww, c.id), c.keys);
    bool(ww, c.holds);
  });
  list(w, lock.prepared.failures, (ww, f: OpCheckFailure) =>
    string(string(uint(ww, f.id), f.code), f.message),
  );
}

function readLockEntry(r: Reader): LockEntry {
  return {
    meta: readMeta(r),
    part: readPart(r),
    expiresAtMs: readInt(r),
    prepared: {
      status: 'prepared',
      compares: readList(r, (rr) => ({ id: readUint(rr), keys: readUint(rr), holds: readBool(rr) })),
      failures: readList(r, (rr) => ({ id: readUint(rr), code: readString(rr), message: readString(rr) })),
    },
  };
}

function writeFinished(w: BinaryWriter, f: { readonly id: TxnId } & Finished): void {
  string(w, f.id);
  w.u8(enumIndex(OUTCOMES, f.outcome, 'outcome'));
  int(w, f.atMs);
  int(w, f.startedAtMs);
  list(w, f.responses, (ww, p: PartResponse) => writeLeafResponse(uint(ww, p.id), p.response));
}

function readFinished(r: Reader): { readonly id: TxnId } & Finished {
  return {
    id: readString(r),
    outcome: readEnum(r, OUTCOMES, 'outcome'),
    atMs: readInt(r),
    startedAtMs: readInt(r),
    responses: readList(r, (rr) => ({ id: readUint(rr), response: readLeafResponse(rr) })),
  };
}

/** The transaction part of a shard snapshot: `state.exportImage()` with a CRC32. */
export function encodeShardTxnSnapshot(image: ShardTxnImage): Uint8Array {
  const w = new BinaryWriter(1024).u8(TXN_SNAPSHOT_FORMAT_VERSION);
  int(w, image.clockMs);
  uint(w, image.lastRevision);
  list(w, image.locks, writeLockEntry);
  list(w, image.finished, writeFinished);
  list(w, image.pendingRecords, writeRecord);
  list(w, image.decidedRecords, writeRecord);
  const body = w.finish();
  const out = new Uint8Array(body.length + CRC_BYTES);
  out.set(body);
  new DataView(out.buffer).setUint32(body.length, crc32(body), true);
  return out;
}

/**
 * The image in a snapshot payload, for `ShardTxnState.restore`. Throws TxnSnapshotCorruptError:
 * `txn-snapshot-crc` when the CRC does not match, `txn-snapshot-invalid` when the bytes do not
 * decode or the image breaks the state's invariants (a txn twice in one table, a PENDING record
 * among the decided ones or the reverse).
 */
export function decodeShardTxnSnapshot(payload: Uint8Array): ShardTxnImage {
  if (payload.length < 1 + CRC_BYTES) {
    throw new TxnSnapshotCorruptError(
      'txn-snapshot-invalid',
      `${payload.length} bytes is shorter than any snapshot`,
    );
  }
  const body = payload.subarray(0, payload.length - CRC_BYTES);
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  const stored = view.getUint32(body.length, true);
  const computed = crc32(body);
  if (stored !== computed) {
    throw new TxnSnapshotCorruptError(
      'txn-snapshot-crc',
      `CRC32 ${hex(computed)} does not match the stored ${hex(stored)}`,
    );
  }
  return decodeWhole(
    body,
    (message) => new TxnSnapshotCorruptError('txn-snapshot-invalid', message),
    (r): ShardTxnImage => {
      const format = r.u8();
      if (format !== TXN_SNAPSHOT_FORMAT_VERSION) throw new DecodeError(`unknown format version ${format}`);
      const image: ShardTxnImage = {
        clockMs: readInt(r),
        lastRevision: readUint(r),
        locks: readList(r, readLockEntry),
        finished: readList(r, readFinished),
        pendingRecords: readList(r, readRecord),
        decidedRecords: readList(r, readRecord),
      };
      unique(
        image.locks.map((l) => l.meta.id),
        'lock',
      );
      unique(
        image.finished.map((f) => f.id),
        'outcome',
      );
      unique(
        [...image.pendingRecords, ...image.decidedRecords].map((rec) => rec.meta.id),
        'record',
      );
      if (image.pendingRecords.some((rec) => rec.state.status !== 'pending')) {
        throw new DecodeError('a decided record among the PENDING ones');
      }
      if (image.decidedRecords.some((rec) => rec.state.status === 'pending')) {
        throw new DecodeError('a PENDING record among the decided ones');
      }
      return image;
    },
  );
}

function unique(ids: readonly TxnId[], what: string): void {
  const seen = new Set<TxnId>();
  for (const id of ids) {
    if (seen.has(id)) throw new DecodeError(`${what} of ${id} appears twice`);
    seen.add(id);
  }
}

const hex = (value: number) => `0x${value.toString(16).padStart(8, '0')}`;
