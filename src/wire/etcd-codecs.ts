// Hand-written codecs for the etcd messages on the hot path (KV requests and responses, watch
// responses, lease keep-alives). They produce and consume exactly the objects proto-loader does
// with our load options (etcd-proto.ts): snake_case names, int64 as decimal strings, bytes as
// Buffer, enums as names (unknown numbers stay numbers), defaults filled, repeated fields as
// arrays, message fields null when absent, and the oneof's name set to its present member.
// Field numbers are those of etcdserverpb/rpc.proto and mvccpb/kv.proto. Anything else still
// goes through proto-loader; test/wire checks both directions against protobufjs.

import { expectWireType, nestingDepthMax, ProtoDecodeError, ProtoReader, WireType } from './proto-reader.js';
import { ProtoShapeError, ProtoWriter } from './proto-writer.js';

type Fields = Record<string, unknown>;

const emptyBytes = Buffer.alloc(0);

const sortOrderNames = ['NONE', 'ASCEND', 'DESCEND'];
const sortTargetNames = ['KEY', 'VERSION', 'CREATE', 'MOD', 'VALUE'];
const compareResultNames = ['EQUAL', 'GREATER', 'LESS', 'NOT_EQUAL'];
const compareTargetNames = ['VERSION', 'CREATE', 'MOD', 'VALUE', 'LEASE'];
const eventTypeNumbers: Readonly<Record<string, number>> = { PUT: 0, DELETE: 1 };

function enumName(names: readonly string[], value: number): string | number {
  return names[value] ?? value;
}

function checkDepth(depth: number): void {
  if (depth > nestingDepthMax) throw new ProtoDecodeError('maximum nesting depth exceeded');
}

// ---- decoders (requests) ----

function readRangeRequest(r: ProtoReader, depth: number): Fields {
  checkDepth(depth);
  const m: Fields = {
    key: emptyBytes,
    range_end: emptyBytes,
    limit: '0',
    revision: '0',
    sort_order: 'NONE',
    sort_target: 'KEY',
    serializable: false,
    keys_only: false,
    count_only: false,
    min_mod_revision: '0',
    max_mod_revision: '0',
    min_create_revision: '0',
    max_create_revision: '0',
  };
  while (r.pos < r.end) {
    const tag = r.uint32();
    switch (tag >>> 3) {
      case 1:
        expectWireType(tag, WireType.delimited);
        m.key = r.bytes();
        break;
      case 2:
        expectWireType(tag, WireType.delimited);
        m.range_end = r.bytes();
        break;
      case 3:
        expectWireType(tag, WireType.varint);
        m.limit = r.int64String();
        break;
      case 4:
        expectWireType(tag, WireType.varint);
        m.revision = r.int64String();
        break;
      case 5:
        expectWireType(tag, WireType.varint);
        m.sort_order = enumName(sortOrderNames, r.int32());
        break;
      case 6:
        expectWireType(tag, WireType.varint);
        m.sort_target = enumName(sortTargetNames, r.int32());
        break;
      case 7:
        expectWireType(tag, WireType.varint);
        m.serializable = r.bool();
        break;
      case 8:
        expectWireType(tag, WireType.varint);
        m.keys_only = r.bool();
        break;
      case 9:
        expectWireType(tag, WireType.varint);
        m.count_only = r.bool();
        break;
      case 10:
        expectWireType(tag, WireType.varint);
        m.min_mod_revision = r.int64String();
        break;
      case 11:
        expectWireType(tag, WireType.varint);
        m.max_mod_revision = r.int64String();
        break;
      case 12:
        expectWireType(tag, WireType.varint);
        m.min_create_revision = r.int64String();
        break;
      case 13:
        expectWireType(tag, WireType.varint);
        m.max_create_revision = r.int64String();
        break;
      default:
        r.skip(tag & 7, depth);
    }
  }
  return m;
}

function readPutRequest(r: ProtoReader, depth: number): Fields {
  checkDepth(depth);
  const m: Fields = {
    key: emptyBytes,
    value: emptyBytes,
    lease: '0',
    prev_kv: false,
    ignore_value: false,
    ignore_lease: false,
  };
  while (r.pos < r.end) {
    const tag = r.uint32();
    switch (tag >>> 3) {
      case 1:
        expectWireType(tag, WireType.delimited);
        m.key = r.bytes();
        break;
      case 2:
        expectWireType(tag, WireType.delimited);
        m.value = r.bytes();
        break;
      case 3:
        expectWireType(tag, WireType.varint);
        m.lease = r.int64String();
        break;
      case 4:
        expectWireType(tag, WireType.varint);
        m.prev_kv = r.bool();
        break;
      case 5:
        expectWireType(tag, WireType.varint);
        m.ignore_value = r.bool();
        break;
      case 6:
        expectWireType(tag, WireType.varint);
        m.ignore_lease = r.bool();
        break;
      default:
        r.skip(tag & 7, depth);
    }
  }
  return m;
}

function readDeleteRangeRequest(r: ProtoReader, depth: number): Fields {
  checkDepth(depth);
  const m: Fields = { key: emptyBytes, range_end: emptyBytes, prev_kv: false };
  while (r.pos < r.end) {
    const tag = r.uint32();
    switch (tag >>> 3) {
      case 1:
        expectWireType(tag, WireType.delimited);
        m.key = r.bytes();
        break;
      case 2:
        expectWireType(tag, WireType.delimited);
        m.range_end = r.bytes();
        break;
      case 3:
        expectWireType(tag, WireType.varint);
        m.prev_kv = r.bool();
        break;
      default:
        r.skip(tag & 7, depth);
    }
  }
  return m;
}

const compareUnionMembers = ['version', 'create_revision', 'mod_revision', 'value', 'lease'] as const;

function readCompare(r: ProtoReader, depth: number): Fields {
  checkDepth(depth);
  const m: Fields = { result: 'EQUAL', target: 'VERSION', key: emptyBytes, range_end: emptyBytes };
  while (r.pos < r.end) {
    const tag = r.uint32();
    const field = tag >>> 3;
    switch (field) {
      case 1:
        expectWireType(tag, WireType.varint);
        m.result = enumName(compareResultNames, r.int32());
        break;
      case 2:
        expectWireType(tag, WireType.varint);
        m.target = enumName(compareTargetNames, r.int32());
        break;
      case 3:
        expectWireType(tag, WireType.delimited);
        m.key = r.bytes();
        break;
      case 4:
      case 5:
      case 6:
      case 8:
        expectWireType(tag, WireType.varint);
        m[compareUnionMembers[field - 4] as string] = r.int64String();
        break;
      case 7:
        expectWireType(tag, WireType.delimited);
        m.value = r.bytes();
        break;
      case 64:
        expectWireType(tag, WireType.delimited);
        m.range_end = r.bytes();
        break;
      default:
        r.skip(tag & 7, depth);
    }
  }
  // protobufjs keeps every member it read and names the last one in declaration order.
  for (const member of compareUnionMembers) if (member in m) m.target_union = member;
  return m;
}

const requestOpMembers = ['request_range', 'request_put', 'request_delete_range', 'request_txn'] as const;
const requestOpReaders = [readRangeRequest, readPutRequest, readDeleteRangeRequest, readTxnRequest];

function readRequestOp(r: ProtoReader, depth: number): Fields {
  checkDepth(depth);
  const m: Fields = {};
  let present = -1;
  while (r.pos < r.end) {
    const tag = r.uint32();
    const field = tag >>> 3;
    if (field < 1 || field > 4) {
      r.skip(tag & 7, depth);
      continue;
    }
    expectWireType(tag, WireType.delimited);
    m[requestOpMembers[field - 1] as string] = readEmbedded(r, depth, requestOpReaders[field - 1] as Reader);
    present = Math.max(present, field - 1);
  }
  if (present >= 0) m.request = requestOpMembers[present];
  return m;
}

function readTxnRequest(r: ProtoReader, depth: number): Fields {
  checkDepth(depth);
  const compare: Fields[] = [];
  const success: Fields[] = [];
  const failure: Fields[] = [];
  while (r.pos < r.end) {
    const tag = r.uint32();
    switch (tag >>> 3) {
      case 1:
        expectWireType(tag, WireType.delimited);
        compare.push(readEmbedded(r, depth, readCompare));
        break;
      case 2:
        expectWireType(tag, WireType.delimited);
        success.push(readEmbedded(r, depth, readRequestOp));
        break;
      case 3:
        expectWireType(tag, WireType.delimited);
        failure.push(readEmbedded(r, depth, readRequestOp));
        break;
      default:
        r.skip(tag & 7, depth);
    }
  }
  return { compare, success, failure };
}

function readLeaseKeepAliveRequest(r: ProtoReader, depth: number): Fields {
  const m: Fields = { ID: '0' };
  while (r.pos < r.end) {
    const tag = r.uint32();
    if (tag >>> 3 === 1) {
      expectWireType(tag, WireType.varint);
      m.ID = r.int64String();
    } else {
      r.skip(tag & 7, depth);
    }
  }
  return m;
}

type Reader = (r: ProtoReader, depth: number) => Fields;

function readEmbedded(r: ProtoReader, depth: number, read: Reader): Fields {
  const parentEnd = r.enterMessage();
  const message = read(r, depth + 1);
  r.leaveMessage(parentEnd);
  return message;
}

function topLevelDecoder(read: Reader): (bytes: Buffer) => Fields {
  return (bytes) => read(new ProtoReader(bytes, 0, bytes.length), 0);
}

export const decodeRangeRequest = topLevelDecoder(readRangeRequest);
export const decodePutRequest = topLevelDecoder(readPutRequest);
export const decodeDeleteRangeRequest = topLevelDecoder(readDeleteRangeRequest);
export const decodeTxnRequest = topLevelDecoder(readTxnRequest);
export const decodeLeaseKeepAliveRequest = topLevelDecoder(readLeaseKeepAliveRequest);

// ---- encoders (responses) ----

function fieldsOf(value: unknown, what: string): Fields {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ProtoShapeError(`${what} is not an object`);
  }
  return value as Fields;
}

function listOf(value: unknown, what: string): readonly unknown[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) throw new ProtoShapeError(`${what} is not an array`);
  return value;
}

type Writer = (w: ProtoWriter, m: Fields) => void;

function writeEmbedded(w: ProtoWriter, field: number, value: unknown, write: Writer, what: string): void {
  if (value === undefined || value === null) return;
  const slot = w.beginMessage(field);
  write(w, fieldsOf(value, what));
  w.endMessage(slot);
}

function writeRepeated(w: ProtoWriter, field: number, value: unknown, write: Writer, what: string): void {
  for (const item of listOf(value, what)) {
    const slot = w.beginMessage(field);
    write(w, fieldsOf(item, what));
    w.endMessage(slot);
  }
}

function writeHeader(w: ProtoWriter, m: Fields): void {
  w.int64(1, m.cluster_id);
  w.int64(2, m.member_id);
  w.int64(3, m.revision);
  w.int64(4, m.raft_term);
}

function writeKeyValue(w: ProtoWriter, m: Fields): void {
  w.bytes(1, m.key);
  w.int64(2, m.create_revision);
  w.int64(3, m.mod_revision);
  w.int64(4, m.version);
  w.bytes(5, m.value);
  w.int64(6, m.lease);
}

function writeRangeResponse(w: ProtoWriter, m: Fields): void {
  writeEmbedded(w, 1, m.header, writeHeader, 'header');
  writeRepeated(w, 2, m.kvs, writeKeyValue, 'kvs');
  w.bool(3, m.more);
  w.int64(4, m.count);
}

function writePutResponse(w: ProtoWriter, m: Fields): void {
  writeEmbedded(w, 1, m.header, writeHeader, 'header');
  writeEmbedded(w, 2, m.prev_kv, writeKeyValue, 'prev_kv');
}

function writeDeleteRangeResponse(w: ProtoWriter, m: Fields): void {
  writeEmbedded(w, 1, m.header, writeHeader, 'header');
  w.int64(2, m.deleted);
  writeRepeated(w, 3, m.prev_kvs, writeKeyValue, 'prev_kvs');
}

function writeResponseOp(w: ProtoWriter, m: Fields): void {
  writeEmbedded(w, 1, m.response_range, writeRangeResponse, 'response_range');
  writeEmbedded(w, 2, m.response_put, writePutResponse, 'response_put');
  writeEmbedded(w, 3, m.response_delete_range, writeDeleteRangeResponse, 'response_delete_range');
  writeEmbedded(w, 4, m.response_txn, writeTxnResponse, 'response_txn');
}

function writeTxnResponse(w: ProtoWriter, m: Fields): void {
  writeEmbedded(w, 1, m.header, writeHeader, 'header');
  w.bool(2, m.succeeded);
  writeRepeated(w, 3, m.responses, writeResponseOp, 'responses');
}

function writeEvent(w: ProtoWriter, m: Fields): void {
  w.enumeration(1, m.type, eventTypeNumbers);
  writeEmbedded(w, 2, m.kv, writeKeyValue, 'kv');
  writeEmbedded(w, 3, m.prev_kv, writeKeyValue, 'prev_kv');
}

function writeWatchResponse(w: ProtoWriter, m: Fields): void {
  if (m.header !== undefined && m.header !== null)
    writeShared(w, 1, fieldsOf(m.header, 'header'), writeHeader, headerEncodings);
  w.int64(2, m.watch_id);
  w.bool(3, m.created);
  w.bool(4, m.canceled);
  w.int64(5, m.compact_revision);
  w.string(6, m.cancel_reason);
  w.bool(7, m.fragment);
  for (const item of listOf(m.events, 'events'))
    writeShared(w, 11, fieldsOf(item, 'events'), writeEvent, eventEncodings);
}

/**
 * Encoded embedded messages of frozen objects (watch events and headers). A frozen message
 * cannot change, so its bytes are made once and spliced into the response of every watcher it
 * goes to (api/convert.ts and api/watch-session.ts freeze what they share between watchers).
 * Weak: an entry lives as long as its message.
 */
const encodedShared = new WeakMap<Fields, Buffer>();
/** Separate from sharedWriter: a message is encoded here while a response is half written there. */
const sharedPartWriter = new ProtoWriter();
/** Frozen messages encoded so far, per kind: tests check that a shared one is encoded once. */
interface EncodingCount {
  count: number;
}
const eventEncodings: EncodingCount = { count: 0 };
const headerEncodings: EncodingCount = { count: 0 };

export function watchEventEncodings(): number {
  return eventEncodings.count;
}

export function watchHeaderEncodings(): number {
  return headerEncodings.count;
}

function writeShared(
  w: ProtoWriter,
  field: number,
  message: Fields,
  write: Writer,
  encodings: EncodingCount,
): void {
  if (!Object.isFrozen(message)) {
    const slot = w.beginMessage(field);
    write(w, message);
    w.endMessage(slot);
    return;
  }
  let bytes = encodedShared.get(message);
  if (bytes === undefined) {
    try {
      write(sharedPartWriter, message);
    } catch (error) {
      sharedPartWriter.reset();
      throw error;
    }
    bytes = sharedPartWriter.finish();
    encodings.count++;
    encodedShared.set(message, bytes);
  }
  // A length-delimited field carrying a message's bytes is that embedded message on the wire;
  // bytes() drops an empty value, but an empty message is still present (an event, a header).
  if (bytes.length === 0) w.endMessage(w.beginMessage(field));
  else w.bytes(field, bytes);
}

function writeLeaseKeepAliveResponse(w: ProtoWriter, m: Fields): void {
  writeEmbedded(w, 1, m.header, writeHeader, 'header');
  w.int64(2, m.ID);
  w.int64(3, m.TTL);
}

/** One scratch writer for all encoders: serialization is synchronous, so calls never overlap. */
const sharedWriter = new ProtoWriter();

function topLevelEncoder(write: Writer): (message: unknown) => Buffer {
  return (message) => {
    try {
      write(sharedWriter, fieldsOf(message, 'message'));
      return sharedWriter.finish();
    } catch (error) {
      sharedWriter.reset();
      throw error;
    }
  };
}

export const encodeRangeResponse = topLevelEncoder(writeRangeResponse);
export const encodePutResponse = topLevelEncoder(writePutResponse);
export const encodeDeleteRangeResponse = topLevelEncoder(writeDeleteRangeResponse);
export const encodeTxnResponse = topLevelEncoder(writeTxnResponse);
export const encodeWatchResponse = topLevelEncoder(writeWatchResponse);
export const encodeLeaseKeepAliveResponse = topLevelEncoder(writeLeaseKeepAliveResponse);

export { ProtoDecodeError, ProtoShapeError };
