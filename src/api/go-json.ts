// JSON as etcd's gateway reads and writes it: Go's encoding/json (the syntax errors, with their
// exact text, and the string escaping) under golang/protobuf's jsonpb (which field names count,
// quoted numbers, enum names, base64 bytes, and the "json: cannot unmarshal …" type errors). A
// client of etcd's gateway sees these texts in error bodies; the gateway sends the same ones.
//
// The reader keeps numbers as their literal text, so a 64-bit ID sent as a bare JSON number
// keeps every digit (JSON.parse would round it to a double).

import type * as protoLoader from '@grpc/proto-loader';
import { etcdPackageDefinition } from '../wire/etcd-proto.js';

/** A JSON error in Go's words; `code` is stable, `message` is what etcd's gateway says. */
export class GoJsonError extends Error {
  readonly code = 'go-json';
  constructor(message: string) {
    super(message);
    this.name = 'GoJsonError';
  }
}

export type JsonNode =
  | { kind: 'object'; entries: Array<[string, JsonNode]>; start: number; end: number }
  | { kind: 'array'; items: JsonNode[]; start: number; end: number }
  | { kind: 'string'; value: string; start: number; end: number }
  | { kind: 'number'; text: string; start: number; end: number }
  | { kind: 'bool'; value: boolean; start: number; end: number }
  | { kind: 'null'; start: number; end: number };

/** Nesting Go accepts before it gives up (encoding/json's maxNestingDepth). */
const nestingDepthMax = 10000;

/** Go's quoteChar: how its scanner names an offending byte. */
export function goQuoteChar(byte: number): string {
  if (byte === 0x27) return "'\\''";
  if (byte === 0x22) return `'"'`;
  return `'${goQuoteRune(byte)}'`;
}

/** strconv.Quote's body for one rune (Go's string(byte) is the rune of that value). */
function goQuoteRune(rune: number): string {
  switch (rune) {
    case 0x07:
      return '\\a';
    case 0x08:
      return '\\b';
    case 0x0c:
      return '\\f';
    case 0x0a:
      return '\\n';
    case 0x0d:
      return '\\r';
    case 0x09:
      return '\\t';
    case 0x0b:
      return '\\v';
    case 0x5c:
      return '\\\\';
  }
  if (rune < 0x20 || rune === 0x7f) return `\\x${rune.toString(16).padStart(2, '0')}`;
  // Latin-1 runes Go does not count as printable: C1 controls, no-break space, soft hyphen.
  if ((rune >= 0x80 && rune <= 0xa0) || rune === 0xad) return `\\u${rune.toString(16).padStart(4, '0')}`;
  return String.fromCodePoint(rune);
}

const isSpace = (c: number | undefined) => c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d;
const isDigit = (c: number | undefined) => c !== undefined && c >= 0x30 && c <= 0x39;
const isHex = (c: number | undefined) =>
  c !== undefined && (isDigit(c) || (c >= 0x61 && c <= 0x66) || (c >= 0x41 && c <= 0x46));

class EndOfInput extends Error {}

const simpleEscapes = new Map<number, string>([
  [0x22, '"'],
  [0x5c, '\\'],
  [0x2f, '/'],
  [0x62, '\b'],
  [0x66, '\f'],
  [0x6e, '\n'],
  [0x72, '\r'],
  [0x74, '\t'],
]);

/** A recursive-descent reader that fails where, and as, Go's scanner does. */
class Reader {
  at: number;
  constructor(
    private readonly bytes: Uint8Array,
    start: number,
  ) {
    this.at = start;
  }

  private peek(): number {
    const c = this.bytes[this.at];
    if (c === undefined) throw new EndOfInput();
    return c;
  }

  private fail(c: number, context: string): never {
    throw new GoJsonError(`invalid character ${goQuoteChar(c)} ${context}`);
  }

  skipSpace(): void {
    while (isSpace(this.bytes[this.at])) this.at++;
  }

  atEnd(): boolean {
    return this.at >= this.bytes.length;
  }

  value(depth: number): JsonNode {
    this.skipSpace();
    const start = this.at;
    const c = this.peek();
    if (c === 0x7b) return this.object(depth + 1);
    if (c === 0x5b) return this.array(depth + 1);
    if (c === 0x22) return { kind: 'string', value: this.string(), start, end: this.at };
    if (c === 0x2d || isDigit(c)) return { kind: 'number', text: this.number(), start, end: this.at };
    if (c === 0x74) return this.literal('true', { kind: 'bool', value: true, start, end: 0 });
    if (c === 0x66) return this.literal('false', { kind: 'bool', value: false, start, end: 0 });
    if (c === 0x6e) return this.literal('null', { kind: 'null', start, end: 0 });
    this.fail(c, 'looking for beginning of value');
  }

  private literal(word: string, node: JsonNode): JsonNode {
    this.at++;
    for (let i = 1; i < word.length; i++) {
      const c = this.peek();
      if (c !== word.charCodeAt(i)) this.fail(c, `in literal ${word} (expecting '${word[i]}')`);
      this.at++;
    }
    node.end = this.at;
    return node;
  }

  private object(depth: number): JsonNode {
    if (depth > nestingDepthMax) throw new GoJsonError('exceeded max depth');
    const start = this.at;
    this.at++;
    const entries: Array<[string, JsonNode]> = [];
    this.skipSpace();
    if (this.peek() === 0x7d) {
      this.at++;
      return { kind: 'object', entries, start, end: this.at };
    }
    for (;;) {
      this.skipSpace();
      const c = this.peek();
      if (c !== 0x22) this.fail(c, 'looking for beginning of object key string');
      const key = this.string();
      this.skipSpace();
      const colon = this.peek();
      if (colon !== 0x3a) this.fail(colon, 'after object key');
      this.at++;
      entries.push([key, this.value(depth)]);
      this.skipSpace();
      const next = this.peek();
      this.at++;
      if (next === 0x7d) return { kind: 'object', entries, start, end: this.at };
      if (next !== 0x2c) this.fail(next, 'after object key:value pair');
    }
  }

  private array(depth: number): JsonNode {
    if (depth > nestingDepthMax) throw new GoJsonError('exceeded max depth');
    const start = this.at;
    this.at++;
    const items: JsonNode[] = [];
    this.skipSpace();
    if (this.peek() === 0x5d) {
      this.at++;
      return { kind: 'array', items, start, end: this.at };
    }
    for (;;) {
      items.push(this.value(depth));
      this.skipSpace();
      const next = this.peek();
      this.at++;
      if (next === 0x5d) return { kind: 'array', items, start, end: this.at };
      if (next !== 0x2c) this.fail(next, 'after array element');
    }
  }

  private number(): string {
    const start = this.at;
    if (this.peek() === 0x2d) {
      this.at++;
      const c = this.peek();
      if (!isDigit(c)) this.fail(c, 'in numeric literal');
    }
    if (this.peek() === 0x30) this.at++;
    else while (isDigit(this.bytes[this.at])) this.at++;
    if (this.bytes[this.at] === 0x2e) {
      this.at++;
      const c = this.peek();
      if (!isDigit(c)) this.fail(c, 'after decimal point in numeric literal');
      while (isDigit(this.bytes[this.at])) this.at++;
    }
    const e = this.bytes[this.at];
    if (e === 0x65 || e === 0x45) {
      this.at++;
      let c = this.peek();
      if (c === 0x2b || c === 0x2d) {
        this.at++;
        c = this.peek();
      }
      if (!isDigit(c)) this.fail(c, 'in exponent of numeric literal');
      while (isDigit(this.bytes[this.at])) this.at++;
    }
    return Buffer.from(this.bytes.subarray(start, this.at)).toString('latin1');
  }

  /** Reads a string literal; Go replaces invalid UTF-8 and lone surrogates with U+FFFD. */
  private string(): string {
    this.at++;
    let out = '';
    let runStart = this.at;
    const flush = () => {
      out += Buffer.from(this.bytes.subarray(runStart, this.at)).toString('utf8');
    };
    for (;;) {
      const c = this.peek();
      if (c === 0x22) {
        flush();
        this.at++;
        return out;
      }
      if (c < 0x20) this.fail(c, 'in string literal');
      if (c !== 0x5c) {
        this.at++;
        continue;
      }
      flush();
      this.at++;
      const escaped = this.peek();
      this.at++;
      const simple = simpleEscapes.get(escaped);
      if (simple !== undefined) out += simple;
      else if (escaped === 0x75) out += this.unicodeEscape();
      else this.fail(escaped, 'in string escape code');
      runStart = this.at;
    }
  }

  private hex4(): number {
    let value = 0;
    for (let i = 0; i < 4; i++) {
      const c = this.peek();
      if (!isHex(c)) this.fail(c, 'in \\u hexadecimal character escape');
      value = value * 16 + Number.parseInt(String.fromCharCode(c), 16);
      this.at++;
    }
    return value;
  }

  private unicodeEscape(): string {
    const unit = this.hex4();
    if (unit < 0xd800 || unit > 0xdfff) return String.fromCharCode(unit);
    // A high surrogate joins a following \u low surrogate; anything else is U+FFFD.
    if (unit <= 0xdbff && this.bytes[this.at] === 0x5c && this.bytes[this.at + 1] === 0x75) {
      const save = this.at;
      this.at += 2;
      const low = this.hex4();
      if (low >= 0xdc00 && low <= 0xdfff) return String.fromCharCode(unit, low);
      this.at = save;
    }
    return '\ufffd';
  }
}

/**
 * Reads the next JSON value of a stream, as Go's json.Decoder does: undefined at the end of the
 * input (only spaces left), "unexpected EOF" when it ends inside a value.
 */
export function readNextJson(bytes: Uint8Array, start: number): { node: JsonNode; end: number } | undefined {
  const reader = new Reader(bytes, start);
  reader.skipSpace();
  if (reader.atEnd()) return undefined;
  try {
    const node = reader.value(0);
    return { node, end: reader.at };
  } catch (error) {
    if (error instanceof EndOfInput) throw new GoJsonError('unexpected EOF');
    throw error;
  }
}

/** Reads a whole text as one JSON value, as Go's json.Unmarshal does. */
export function readWholeJson(bytes: Uint8Array): JsonNode {
  const reader = new Reader(bytes, 0);
  try {
    const node = reader.value(0);
    reader.skipSpace();
    const c = bytes[reader.at];
    if (c !== undefined) throw new GoJsonError(`invalid character ${goQuoteChar(c)} after top-level value`);
    return node;
  } catch (error) {
    if (error instanceof EndOfInput) throw new GoJsonError('unexpected end of JSON input');
    throw error;
  }
}

// --- writing ---

/** A JSON string literal as Go's encoding/json writes it (HTML-safe, U+2028/9 escaped). */
export function goJsonString(text: string): string {
  let out = '"';
  for (const ch of text) {
    const code = ch.codePointAt(0) as number;
    if (ch === '"') out += '\\"';
    else if (ch === '\\') out += '\\\\';
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (code < 0x20 || ch === '<' || ch === '>' || ch === '&' || code === 0x2028 || code === 0x2029) {
      out += `\\u${code.toString(16).padStart(4, '0')}`;
    } else if (code >= 0xd800 && code <= 0xdfff) out += '\\ufffd';
    else out += ch;
  }
  return `${out}"`;
}

/** Serializes plain JSON data (objects keep their key order) with Go's string escaping. */
export function goJsonStringify(value: unknown): string {
  if (typeof value === 'string') return goJsonString(value);
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  if (value === null || value === undefined) return 'null';
  if (Array.isArray(value)) return `[${value.map(goJsonStringify).join(',')}]`;
  const parts: string[] = [];
  for (const [key, field] of Object.entries(value as Record<string, unknown>)) {
    if (field !== undefined) parts.push(`${goJsonString(key)}:${goJsonStringify(field)}`);
  }
  return `{${parts.join(',')}}`;
}

// --- base64 ---

const base64Alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
const base64Values = new Map([...base64Alphabet].map((c, i) => [c.charCodeAt(0), i]));

/**
 * Go's base64.StdEncoding.Decode: padding required, CR and LF skipped, and on bad input the
 * offset Go reports ("illegal base64 data at input byte N").
 */
export function goBase64Decode(text: string): Buffer {
  const src = Buffer.from(text, 'utf8');
  const out: number[] = [];
  const fail = (offset: number): never => {
    throw new GoJsonError(`illegal base64 data at input byte ${offset}`);
  };
  const isNewline = (c: number | undefined) => c === 0x0a || c === 0x0d;
  let si = 0;
  for (;;) {
    const quantum: number[] = [];
    let padded = false;
    for (let j = 0; j < 4; j++) {
      if (si === src.length) {
        if (j === 0) return Buffer.from(out);
        fail(si - j);
      }
      const c = src[si] as number;
      si++;
      const value = base64Values.get(c);
      if (value !== undefined) {
        quantum.push(value);
        continue;
      }
      if (isNewline(c)) {
        j--;
        continue;
      }
      if (c !== 0x3d || j < 2) fail(si - 1);
      if (j === 2) {
        while (isNewline(src[si])) si++;
        if (si === src.length) fail(src.length);
        if (src[si] !== 0x3d) fail(si - 1);
        si++;
      }
      while (isNewline(src[si])) si++;
      if (si < src.length) fail(si);
      padded = true;
      break;
    }
    const [a = 0, b = 0, c = 0, d = 0] = quantum;
    const bits = (a << 18) | (b << 12) | (c << 6) | d;
    out.push((bits >> 16) & 0xff);
    if (quantum.length > 2) out.push((bits >> 8) & 0xff);
    if (quantum.length > 3) out.push(bits & 0xff);
    if (padded) return Buffer.from(out);
  }
}

// --- jsonpb ---

interface FieldDescriptor {
  name: string;
  type: string;
  typeName: string;
  label: string;
}

interface MessageDescriptor {
  field: FieldDescriptor[];
  enumType: Array<{ name: string; value: Array<{ name: string; number: number }> }>;
}

interface EnumInfo {
  /** The Go type name in error texts, e.g. etcdserverpb.RangeRequest_SortOrder. */
  goName: string;
  values: Map<string, number>;
}

function lookupMessage(fullName: string): MessageDescriptor {
  const definition = etcdPackageDefinition()[fullName] as
    | protoLoader.MessageTypeDefinition<object, object>
    | undefined;
  if (definition === undefined || !('type' in definition))
    throw new Error(`unknown message type ${fullName}`);
  return definition.type as unknown as MessageDescriptor;
}

function packageOf(fullName: string): string {
  return fullName.slice(0, Math.max(0, fullName.lastIndexOf('.')));
}

function resolveMessageName(typeName: string, scope: string): string {
  const definitions = etcdPackageDefinition();
  for (const candidate of [`${scope}.${typeName}`, typeName]) {
    const definition = definitions[candidate] as { format?: string } | undefined;
    if (definition?.format === 'Protocol Buffer 3 DescriptorProto') return candidate;
  }
  throw new Error(`unknown message type ${typeName} in ${scope}`);
}

function resolveEnum(typeName: string, message: MessageDescriptor, messageName: string): EnumInfo {
  const nested = message.enumType.find((e) => e.name === typeName);
  if (nested !== undefined) {
    const dot = messageName.lastIndexOf('.');
    return {
      goName: `${messageName.slice(0, dot)}.${messageName.slice(dot + 1)}_${typeName}`,
      values: new Map(nested.value.map((v) => [v.name, v.number])),
    };
  }
  const scope = packageOf(messageName);
  const definitions = etcdPackageDefinition();
  for (const candidate of [`${scope}.${typeName}`, typeName]) {
    const definition = definitions[candidate] as protoLoader.EnumTypeDefinition | undefined;
    if (definition !== undefined && definition.format === 'Protocol Buffer 3 EnumDescriptorProto') {
      const values = (definition.type as unknown as { value: Array<{ name: string; number: number }> }).value;
      return { goName: candidate, values: new Map(values.map((v) => [v.name, v.number])) };
    }
  }
  throw new Error(`unknown enum type ${typeName} in ${messageName}`);
}

/** protoc's json_name: each underscore dropped and the letter after it upper-cased. */
function jsonName(name: string): string {
  return name.replace(/_(.)/g, (_, c: string) => c.toUpperCase());
}

const goIntTypes: Record<string, { goName: string; min: bigint; max: bigint }> = {
  TYPE_INT64: { goName: 'int64', min: -(2n ** 63n), max: 2n ** 63n - 1n },
  TYPE_SINT64: { goName: 'int64', min: -(2n ** 63n), max: 2n ** 63n - 1n },
  TYPE_SFIXED64: { goName: 'int64', min: -(2n ** 63n), max: 2n ** 63n - 1n },
  TYPE_UINT64: { goName: 'uint64', min: 0n, max: 2n ** 64n - 1n },
  TYPE_FIXED64: { goName: 'uint64', min: 0n, max: 2n ** 64n - 1n },
  TYPE_INT32: { goName: 'int32', min: -(2n ** 31n), max: 2n ** 31n - 1n },
  TYPE_SINT32: { goName: 'int32', min: -(2n ** 31n), max: 2n ** 31n - 1n },
  TYPE_SFIXED32: { goName: 'int32', min: -(2n ** 31n), max: 2n ** 31n - 1n },
  TYPE_UINT32: { goName: 'uint32', min: 0n, max: 2n ** 32n - 1n },
  TYPE_FIXED32: { goName: 'uint32', min: 0n, max: 2n ** 32n - 1n },
};

/** How encoding/json names a JSON value it cannot store ("number" gains its text for numbers). */
function kindName(node: JsonNode): string {
  switch (node.kind) {
    case 'object':
      return 'object';
    case 'array':
      return 'array';
    case 'string':
      return 'string';
    case 'number':
      return 'number';
    case 'bool':
      return 'bool';
    case 'null':
      return 'null';
  }
}

function typeError(value: string, goType: string): never {
  throw new GoJsonError(`json: cannot unmarshal ${value} into Go value of type ${goType}`);
}

/** Parses an integer literal as strconv.ParseInt/ParseUint would, within the type's range. */
function integerFromLiteral(text: string, goType: { goName: string; min: bigint; max: bigint }): string {
  if (!/^-?\d+$/.test(text)) typeError(`number ${text}`, goType.goName);
  const value = BigInt(text);
  if (value < goType.min || value > goType.max) typeError(`number ${text}`, goType.goName);
  return value.toString();
}

/**
 * Decodes one request the way etcd's gateway does (jsonpb with original and lowerCamelCase
 * names, the camelCase one winning when both are present; unknown fields ignored), into the
 * plain object protobufjs takes. `bytes` is the source the node was read from (quoted numbers
 * are re-read from it).
 */
export function decodeJsonpb(node: JsonNode, fullName: string, bytes: Uint8Array): Record<string, unknown> {
  return decodeMessage(node, fullName, bytes);
}

function decodeMessage(node: JsonNode, fullName: string, bytes: Uint8Array): Record<string, unknown> {
  if (node.kind === 'null') return {};
  if (node.kind !== 'object') typeError(kindName(node), 'map[string]json.RawMessage');
  const fields = new Map<string, JsonNode>();
  for (const [key, value] of node.entries) fields.set(key, value);
  const descriptor = lookupMessage(fullName);
  const out: Record<string, unknown> = {};
  for (const field of descriptor.field) {
    const camel = jsonName(field.name);
    const value = fields.get(camel) ?? fields.get(field.name);
    if (value === undefined) continue;
    const decoded = decodeField(value, field, descriptor, fullName, bytes);
    if (decoded !== undefined) out[field.name] = decoded;
  }
  return out;
}

function decodeField(
  node: JsonNode,
  field: FieldDescriptor,
  message: MessageDescriptor,
  messageName: string,
  bytes: Uint8Array,
): unknown {
  if (field.label === 'LABEL_REPEATED' && field.type !== 'TYPE_BYTES') {
    if (node.kind === 'null') return undefined;
    if (node.kind !== 'array') typeError(kindName(node), '[]json.RawMessage');
    return node.items.map(
      (item) => decodeSingle(item, field, message, messageName, bytes) ?? defaultOf(field),
    );
  }
  if (field.label === 'LABEL_REPEATED') {
    if (node.kind === 'null') return undefined;
    if (node.kind !== 'array') typeError(kindName(node), '[]json.RawMessage');
    return node.items.map(
      (item) => decodeSingle(item, field, message, messageName, bytes) ?? Buffer.alloc(0),
    );
  }
  return decodeSingle(node, field, message, messageName, bytes);
}

function defaultOf(field: FieldDescriptor): unknown {
  if (field.type === 'TYPE_STRING') return '';
  if (field.type === 'TYPE_BOOL') return false;
  if (field.type === 'TYPE_MESSAGE') return {};
  return 0;
}

function decodeSingle(
  node: JsonNode,
  field: FieldDescriptor,
  message: MessageDescriptor,
  messageName: string,
  bytes: Uint8Array,
): unknown {
  if (field.type === 'TYPE_MESSAGE') {
    if (node.kind === 'null') return undefined;
    return decodeMessage(node, resolveMessageName(field.typeName, packageOf(messageName)), bytes);
  }
  if (field.type === 'TYPE_ENUM') {
    const info = resolveEnum(field.typeName, message, messageName);
    if (node.kind === 'string') {
      // jsonpb looks the raw text between the quotes up, escapes and all.
      const raw = Buffer.from(bytes.subarray(node.start + 1, node.end - 1)).toString('utf8');
      const number = info.values.get(raw);
      if (number === undefined)
        throw new GoJsonError(`unknown value ${goQuoteString(raw)} for enum ${info.goName}`);
      return number;
    }
    if (node.kind === 'null') return undefined;
    if (node.kind !== 'number') typeError(kindName(node), info.goName);
    return Number(
      integerFromLiteral(node.text, { goName: info.goName, min: -(2n ** 31n), max: 2n ** 31n - 1n }),
    );
  }
  const intType = goIntTypes[field.type];
  if (intType !== undefined) {
    let value: JsonNode = node;
    // jsonpb drops the quotes of a quoted number and reads what is inside as JSON.
    if (node.kind === 'string') value = readWholeJson(bytes.subarray(node.start + 1, node.end - 1));
    if (value.kind === 'null') return undefined;
    if (value.kind !== 'number') typeError(kindName(value), intType.goName);
    const text = integerFromLiteral(value.text, intType);
    return field.type.endsWith('64') ? text : Number(text);
  }
  if (node.kind === 'null') return undefined;
  switch (field.type) {
    case 'TYPE_BOOL':
      if (node.kind !== 'bool') typeError(kindName(node), 'bool');
      return node.value;
    case 'TYPE_STRING':
      if (node.kind !== 'string') typeError(kindName(node), 'string');
      return node.value;
    case 'TYPE_BYTES':
      if (node.kind === 'array') return bytesFromArray(node);
      if (node.kind !== 'string') typeError(kindName(node), '[]uint8');
      return goBase64Decode(node.value);
    case 'TYPE_DOUBLE':
    case 'TYPE_FLOAT': {
      let value: JsonNode = node;
      if (node.kind === 'string') value = readWholeJson(bytes.subarray(node.start + 1, node.end - 1));
      if (value.kind !== 'number')
        typeError(kindName(value), field.type === 'TYPE_DOUBLE' ? 'float64' : 'float32');
      return Number(value.text);
    }
  }
  throw new Error(`field ${field.name} has unsupported type ${field.type}`);
}

/** encoding/json stores a JSON array of numbers 0..255 into a []byte too. */
function bytesFromArray(node: Extract<JsonNode, { kind: 'array' }>): Buffer {
  const out: number[] = [];
  for (const item of node.items) {
    if (item.kind === 'null') {
      out.push(0);
      continue;
    }
    if (item.kind !== 'number') typeError(kindName(item), 'uint8');
    out.push(Number(integerFromLiteral(item.text, { goName: 'uint8', min: 0n, max: 255n })));
  }
  return Buffer.from(out);
}

/** fmt's %q of a string. */
function goQuoteString(text: string): string {
  let out = '"';
  for (const ch of text) {
    const code = ch.codePointAt(0) as number;
    if (ch === '"') out += '\\"';
    else if (code < 0x20 || ch === '\\' || (code >= 0x7f && code <= 0xa0) || code === 0xad)
      out += goQuoteRune(code);
    else out += ch;
  }
  return `${out}"`;
}
