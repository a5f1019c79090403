// Checks request bytes the way etcd 3.4's generated (gogo/protobuf) decoders read them, and
// returns the error text they return, or undefined when etcd would decode the message. etcd
// answers an undecodable request with that text ("grpc: error unmarshalling request: <text>"),
// so clients see the same answer from Concord; and bytes our decoders would read leniently
// (a scalar field sent length-delimited, say) are refused where etcd refuses them.
//
// The rules, from the shape of gogo's generated Unmarshal methods:
// - a tag is a varint (more than 10 bytes: "proto: integer overflow"; input ends: "unexpected
//   EOF"); field number = int32(tag >> 3); wire type 4 is "wiretype end group for non-group",
//   a field number <= 0 an "illegal tag";
// - a known field with another wire type than its own is "wrong wireType = N for field GoName"
//   (repeated numeric fields also take the packed form, wire type 2);
// - lengths are int64: negative is "negative length found during unmarshaling", past the end
//   is "unexpected EOF"; embedded messages are checked recursively with their own type name;
// - unknown fields are skipped (groups included); wire types 6 and 7 are "illegal wireType".
// The schema is read from our .proto files on first use (no protobuf reflection).

import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { findProtoDir } from './etcd-proto.js';

type FieldKind = 'varint' | 'fixed64' | 'fixed32' | 'bytes' | 'message';

interface FieldSchema {
  /** The Go field name gogo generates (its CamelCase of the proto name). */
  goName: string;
  kind: FieldKind;
  /** Full type name of an embedded message. */
  message?: string;
  repeated: boolean;
}

interface MessageSchema {
  /** The Go type name (nested types joined with "_"). */
  goName: string;
  fields: Map<number, FieldSchema>;
}

const scalarKinds: Readonly<Record<string, FieldKind>> = {
  int32: 'varint',
  int64: 'varint',
  uint32: 'varint',
  uint64: 'varint',
  sint32: 'varint',
  sint64: 'varint',
  bool: 'varint',
  fixed64: 'fixed64',
  sfixed64: 'fixed64',
  double: 'fixed64',
  fixed32: 'fixed32',
  sfixed32: 'fixed32',
  float: 'fixed32',
  string: 'bytes',
  bytes: 'bytes',
};

/** gogo's generator.CamelCase: "range_end" → "RangeEnd", "remaining_TTL" → "Remaining_TTL". */
export function goCamelCase(name: string): string {
  if (name === '') return '';
  const isLower = (c: string | undefined) => c !== undefined && c >= 'a' && c <= 'z';
  const isDigit = (c: string | undefined) => c !== undefined && c >= '0' && c <= '9';
  let out = '';
  let i = 0;
  if (name[0] === '_') {
    out += 'X';
    i++;
  }
  for (; i < name.length; i++) {
    const c = name[i]!;
    if (c === '_' && isLower(name[i + 1])) continue;
    if (isDigit(c)) {
      out += c;
      continue;
    }
    out += isLower(c) ? c.toUpperCase() : c;
    while (isLower(name[i + 1])) out += name[++i];
  }
  return out;
}

// ---- the schema, from the .proto text -------------------------------------------------------

interface RawField {
  type: string;
  name: string;
  number: number;
  repeated: boolean;
}

interface RawMessage {
  fullName: string;
  goName: string;
  pkg: string;
  fields: RawField[];
}

function tokenize(text: string): string[] {
  const withoutComments = text.replace(/\/\*[\s\S]*?\*\//g, ' ').replace(/\/\/[^\n]*/g, ' ');
  return withoutComments.match(/"[^"]*"|[A-Za-z_][\w.]*|-?\d+|[{}=;<>(),[\]]/g) ?? [];
}

/** Parses the subset of proto3 our files use: packages, messages (nested), enums, oneofs, fields. */
function parseProtoFile(text: string, messages: RawMessage[], enums: Set<string>): void {
  const tokens = tokenize(text);
  let pos = 0;
  let pkg = '';
  const next = () => tokens[pos++];
  const skipStatement = () => {
    while (pos < tokens.length && tokens[pos] !== ';') pos++;
    pos++;
  };
  const skipBlock = () => {
    let depth = 0;
    do {
      const t = next();
      if (t === '{') depth++;
      else if (t === '}') depth--;
    } while (depth > 0 && pos < tokens.length);
  };
  const parseMessage = (scope: string, goScope: string): void => {
    const name = next()!;
    const message: RawMessage = {
      fullName: `${scope}.${name}`,
      goName: goScope === '' ? name : `${goScope}_${name}`,
      pkg,
      fields: [],
    };
    messages.push(message);
    next(); // {
    const parseFields = (closing: string) => {
      for (let t = next(); t !== undefined && t !== closing; t = next()) {
        if (t === 'message') parseMessage(message.fullName, message.goName);
        else if (t === 'enum') {
          enums.add(`${message.fullName}.${next()}`);
          skipBlock();
        } else if (t === 'oneof') {
          next(); // name
          next(); // {
          parseFields('}');
        } else if (t === 'option' || t === 'reserved' || t === 'extensions') skipStatement();
        else {
          const repeated = t === 'repeated';
          const type = repeated ? next()! : t;
          const fieldName = next()!;
          next(); // =
          const number = Number(next());
          message.fields.push({ type, name: fieldName, number, repeated });
          skipStatement();
        }
      }
    };
    parseFields('}');
  };
  while (pos < tokens.length) {
    const t = next();
    if (t === 'package') {
      pkg = next()!;
      skipStatement();
    } else if (t === 'message') parseMessage(pkg, '');
    else if (t === 'enum') {
      enums.add(`${pkg}.${next()}`);
      skipBlock();
    } else if (t === 'service') {
      next();
      skipBlock();
    } else if (t === 'syntax' || t === 'import' || t === 'option') skipStatement();
  }
}

function protoFiles(dir: string): string[] {
  const files: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) files.push(...protoFiles(path));
    else if (entry.name.endsWith('.proto')) files.push(path);
  }
  return files.sort();
}

/** Fields our .proto files carry that etcd 3.4's messages do not (etcd 3.5 additions Concord serves). */
const newerThanEtcd34: ReadonlySet<string> = new Set(['etcdserverpb.MemberListRequest.linearizable']);

function buildSchema(dir: string): Map<string, MessageSchema> {
  const raw: RawMessage[] = [];
  const enums = new Set<string>();
  for (const file of protoFiles(dir)) parseProtoFile(readFileSync(file, 'utf8'), raw, enums);
  const messageNames = new Set(raw.map((m) => m.fullName));
  const schema = new Map<string, MessageSchema>();
  for (const message of raw) {
    const fields = new Map<number, FieldSchema>();
    for (const field of message.fields) {
      // etcd 3.4 decodes a field it does not have as an unknown one.
      if (newerThanEtcd34.has(`${message.fullName}.${field.name}`)) continue;
      const goName = goCamelCase(field.name);
      const scalar = scalarKinds[field.type];
      if (scalar !== undefined) {
        fields.set(field.number, { goName, kind: scalar, repeated: field.repeated });
        continue;
      }
      // Scoping as protoc resolves names: the message's own nested types, then outwards.
      const scopes: string[] = [];
      for (
        let scope = message.fullName;
        scope !== '';
        scope = scope.slice(0, Math.max(0, scope.lastIndexOf('.')))
      ) {
        scopes.push(scope);
      }
      const candidates = [...scopes.map((s) => `${s}.${field.type}`), field.type];
      const resolved = candidates.find((c) => messageNames.has(c) || enums.has(c));
      if (resolved === undefined)
        throw new Error(`${message.fullName}.${field.name}: unknown type ${field.type}`);
      fields.set(
        field.number,
        enums.has(resolved)
          ? { goName, kind: 'varint', repeated: field.repeated }
          : { goName, kind: 'message', message: resolved, repeated: field.repeated },
      );
    }
    schema.set(message.fullName, { goName: message.goName, fields });
  }
  return schema;
}

let cachedSchema: Map<string, MessageSchema> | undefined;

function schemaOf(typeName: string): MessageSchema {
  cachedSchema ??= buildSchema(findProtoDir());
  const message = cachedSchema.get(typeName);
  if (message === undefined) throw new Error(`${typeName} is not a message type`);
  return message;
}

// ---- the check ------------------------------------------------------------------------------

const unexpectedEof = 'unexpected EOF';
const intOverflow = 'proto: integer overflow';
const negativeLength = 'proto: negative length found during unmarshaling';
/** Go's varint loops give up once the shift reaches 64: after 10 bytes. */
const varintBytesMax = 10;

/** Thrown inside the walk, caught at its top: an error text of gogo's. */
class GogoError {
  constructor(readonly text: string) {}
}

interface Cursor {
  bytes: Uint8Array;
  pos: number;
  end: number;
}

/** Reads a varint as Go's uint64 (bits past 64 dropped). */
function readVarint(c: Cursor): bigint | number {
  let small = 0;
  for (let i = 0; i < varintBytesMax; i++) {
    if (c.pos >= c.end) throw new GogoError(unexpectedEof);
    const byte = c.bytes[c.pos++]!;
    if (i < 7) small += (byte & 0x7f) * 2 ** (7 * i);
    if (byte < 0x80) return i < 7 ? small : bigVarint(c.bytes, c.pos - i - 1, i + 1);
  }
  throw new GogoError(intOverflow);
}

function bigVarint(bytes: Uint8Array, start: number, count: number): bigint {
  let value = 0n;
  for (let i = 0; i < count; i++) value |= BigInt(bytes[start + i]! & 0x7f) << BigInt(7 * i);
  return BigInt.asUintN(64, value);
}

/** A length as Go's int: negative when the top bit of the 64 is set. */
function readLength(c: Cursor): number {
  const raw = readVarint(c);
  if (typeof raw === 'number') return raw;
  const signed = BigInt.asIntN(64, raw);
  if (signed < 0n) throw new GogoError(negativeLength);
  return Number(signed);
}

function skipField(c: Cursor): void {
  const tag = readVarint(c);
  const wireType = Number(BigInt(tag) & 7n);
  switch (wireType) {
    case 0:
      for (let i = 0; ; i++) {
        if (i >= varintBytesMax) throw new GogoError(intOverflow);
        if (c.pos >= c.end) throw new GogoError(unexpectedEof);
        if (c.bytes[c.pos++]! < 0x80) return;
      }
    case 1:
      c.pos += 8;
      return;
    case 2: {
      const length = readLength(c);
      c.pos += length;
      return;
    }
    case 3:
      for (;;) {
        const start = c.pos;
        const inner = readVarint(c);
        if (Number(BigInt(inner) & 7n) === 4) return;
        c.pos = start;
        skipField(c);
      }
    case 4:
      return;
    case 5:
      c.pos += 4;
      return;
    default:
      throw new GogoError(`proto: illegal wireType ${wireType}`);
  }
}

function wrongWireType(wireType: number, field: FieldSchema): GogoError {
  return new GogoError(`proto: wrong wireType = ${wireType} for field ${field.goName}`);
}

function checkMessage(message: MessageSchema, c: Cursor): void {
  while (c.pos < c.end) {
    const before = c.pos;
    const tag = readVarint(c);
    const tagBig = BigInt(tag);
    const fieldNumber = Number(BigInt.asIntN(32, tagBig >> 3n));
    const wireType = Number(tagBig & 7n);
    if (wireType === 4) throw new GogoError(`proto: ${message.goName}: wiretype end group for non-group`);
    if (fieldNumber <= 0) {
      throw new GogoError(`proto: ${message.goName}: illegal tag ${fieldNumber} (wire type ${tagBig})`);
    }
    const field = message.fields.get(fieldNumber);
    if (field === undefined) {
      c.pos = before;
      skipField(c);
      if (c.pos > c.end) throw new GogoError(unexpectedEof);
      continue;
    }
    checkField(field, wireType, c);
  }
  if (c.pos > c.end) throw new GogoError(unexpectedEof);
}

function checkField(field: FieldSchema, wireType: number, c: Cursor): void {
  switch (field.kind) {
    case 'varint':
      if (wireType === 0) {
        readVarint(c);
        return;
      }
      if (wireType !== 2 || !field.repeated) throw wrongWireType(wireType, field);
      {
        // Packed: the values' varints are read against the whole input, as gogo does.
        const packedLength = readLength(c);
        const packedEnd = c.pos + packedLength;
        if (packedEnd > c.end) throw new GogoError(unexpectedEof);
        while (c.pos < packedEnd) readVarint(c);
      }
      return;
    case 'fixed64':
    case 'fixed32': {
      const width = field.kind === 'fixed64' ? 8 : 4;
      if (wireType !== (width === 8 ? 1 : 5)) throw wrongWireType(wireType, field);
      if (c.pos + width > c.end) throw new GogoError(unexpectedEof);
      c.pos += width;
      return;
    }
    case 'bytes':
    case 'message': {
      if (wireType !== 2) throw wrongWireType(wireType, field);
      const length = readLength(c);
      const end = c.pos + length;
      if (end > c.end) throw new GogoError(unexpectedEof);
      if (field.kind === 'message')
        checkMessage(schemaOf(field.message!), { bytes: c.bytes, pos: c.pos, end });
      c.pos = end;
      return;
    }
  }
}

/**
 * The error etcd's decoder gives for `bytes` as a `typeName` ("etcdserverpb.RangeRequest"), or
 * undefined when it decodes them.
 */
export function gogoDecodeError(typeName: string, bytes: Uint8Array): string | undefined {
  try {
    checkMessage(schemaOf(typeName), { bytes, pos: 0, end: bytes.length });
    return undefined;
  } catch (error) {
    if (error instanceof GogoError) return error.text;
    throw error;
  }
}

function encodeVarint(value: number): Buffer {
  const out: number[] = [];
  let rest = value;
  while (rest >= 0x80) {
    out.push((rest % 0x80) | 0x80);
    rest = Math.floor(rest / 0x80);
  }
  out.push(rest);
  return Buffer.from(out);
}

function knownFieldsOf(message: MessageSchema, c: Cursor): Buffer[] {
  const parts: Buffer[] = [];
  while (c.pos < c.end) {
    const before = c.pos;
    const tag = readVarint(c);
    const tagEnd = c.pos;
    const field = message.fields.get(Number(BigInt.asIntN(32, BigInt(tag) >> 3n)));
    if (field === undefined) {
      c.pos = before;
      skipField(c);
      continue;
    }
    const wireType = Number(BigInt(tag) & 7n);
    if (field.kind === 'message' && wireType === 2) {
      const length = readLength(c);
      const inner = knownFieldsOf(schemaOf(field.message!), {
        bytes: c.bytes,
        pos: c.pos,
        end: c.pos + length,
      });
      const body = Buffer.concat(inner);
      parts.push(Buffer.from(c.bytes.subarray(before, tagEnd)), encodeVarint(body.length), body);
      c.pos += length;
      continue;
    }
    checkField(field, wireType, c);
    parts.push(Buffer.from(c.bytes.subarray(before, c.pos)));
  }
  return parts;
}

/**
 * `bytes` (which gogoDecodeError accepts) without the fields `typeName` does not declare, at
 * every depth: what etcd's decoder keeps. Our reflection decoder then reads what etcd reads even
 * when an unknown field's tag is one it cannot parse (a varint longer than 5 bytes).
 */
export function withoutUnknownFields(typeName: string, bytes: Uint8Array): Buffer {
  return Buffer.concat(knownFieldsOf(schemaOf(typeName), { bytes, pos: 0, end: bytes.length }));
}
