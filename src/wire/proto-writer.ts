// A minimal protobuf writer for the hand-written encoders of the hot etcd responses. Embedded
// messages are written in place after a one-byte length slot; a message of 128 bytes or more
// is moved right by the few extra bytes its length needs (one memmove per nesting level,
// cheaper than computing every size twice). Scalar fields holding their default are omitted,
// as proto3 allows; message fields are written whenever present, even when empty.

/** Thrown when a wire object holds a value of a type the fast encoder does not take; the caller
 * then falls back to protobufjs, which accepts more (base64 strings for bytes, Long objects). */
export class ProtoShapeError extends Error {
  readonly code = 'PROTO_SHAPE';
}

/** The scratch buffer never keeps more than this between calls (a huge range response grows
 * it for one call; the next call starts small again). */
const scratchBytesKeptMax = 1024 * 1024;
const scratchBytesInitial = 64 * 1024;
const twoPow32 = 2 ** 32;
/** Decimal strings this short are exact doubles (< 2^53), so Number() parses them safely. */
const safeDecimalDigitsMax = 15;
const decimalPattern = /^-?\d+$/;
/** Below this a byte loop beats TypedArray.set, whose call overhead dominates tiny keys. */
const smallCopyBytesMax = 32;
/** Distinct long decimal strings remembered; past this the cache starts over. */
const bigDecimalCacheEntriesMax = 256;

export class ProtoWriter {
  private buf: Buffer = Buffer.allocUnsafe(scratchBytesInitial);
  private pos = 0;

  /** Returns a copy of what was written and resets for the next message. */
  finish(): Buffer {
    const out = Buffer.allocUnsafe(this.pos);
    this.buf.copy(out, 0, 0, this.pos);
    this.pos = 0;
    if (this.buf.length > scratchBytesKeptMax) this.buf = Buffer.allocUnsafe(scratchBytesInitial);
    return out;
  }

  reset(): void {
    this.pos = 0;
  }

  private ensure(extraBytes: number): void {
    const needed = this.pos + extraBytes;
    if (needed <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < needed) size *= 2;
    const grown = Buffer.allocUnsafe(size);
    this.buf.copy(grown, 0, 0, this.pos);
    this.buf = grown;
  }

  private varint32(value: number): void {
    this.ensure(5);
    const buf = this.buf;
    let pos = this.pos;
    let rest = value >>> 0;
    while (rest >= 0x80) {
      buf[pos++] = (rest & 0x7f) | 0x80;
      rest >>>= 7;
    }
    buf[pos++] = rest;
    this.pos = pos;
  }

  private varintWords(low: number, high: number): void {
    this.ensure(10);
    const buf = this.buf;
    let pos = this.pos;
    let lo = low >>> 0;
    let hi = high >>> 0;
    while (hi !== 0 || lo >= 0x80) {
      buf[pos++] = (lo & 0x7f) | 0x80;
      lo = ((lo >>> 7) | (hi << 25)) >>> 0;
      hi >>>= 7;
    }
    buf[pos++] = lo;
    this.pos = pos;
  }

  private tag(field: number, wireType: number): void {
    this.varint32((field << 3) | wireType);
  }

  /** int64/uint64 field from a decimal string, a number or a bigint; zero is omitted. */
  int64(field: number, value: unknown): void {
    if (typeof value === 'number') return this.int64Number(field, value);
    if (typeof value === 'string') return this.int64String(field, value);
    if (typeof value === 'bigint') return this.int64Bigint(field, value);
    if (value === undefined || value === null) return;
    throw new ProtoShapeError(`int64 field ${field} holds a ${typeof value}`);
  }

  private int64Number(field: number, value: number): void {
    if (value === 0) return;
    if (!Number.isSafeInteger(value)) throw new ProtoShapeError(`int64 field ${field} holds ${value}`);
    if (value < 0) return this.int64Bigint(field, BigInt(value));
    this.tag(field, 0);
    if (value < twoPow32) return this.varint32(value);
    const low = value % twoPow32;
    this.varintWords(low, (value - low) / twoPow32);
  }

  private int64String(field: number, value: string): void {
    if (value.length <= safeDecimalDigitsMax && decimalPattern.test(value)) {
      return this.int64Number(field, Number(value));
    }
    if (!decimalPattern.test(value)) throw new ProtoShapeError(`int64 field ${field} holds "${value}"`);
    this.int64BigDecimal(field, value);
  }

  /** Long decimals seen lately (cluster and member IDs recur on every header) → their words. */
  private readonly bigDecimalWords = new Map<string, readonly [number, number]>();

  private int64BigDecimal(field: number, value: string): void {
    let words = this.bigDecimalWords.get(value);
    if (words === undefined) {
      const bits = BigInt.asUintN(64, BigInt(value));
      words = [Number(bits & 0xffffffffn), Number(bits >> 32n)];
      if (this.bigDecimalWords.size >= bigDecimalCacheEntriesMax) this.bigDecimalWords.clear();
      this.bigDecimalWords.set(value, words);
    }
    if (words[0] === 0 && words[1] === 0) return;
    this.tag(field, 0);
    this.varintWords(words[0], words[1]);
  }

  private int64Bigint(field: number, value: bigint): void {
    const bits = BigInt.asUintN(64, value);
    if (bits === 0n) return;
    this.tag(field, 0);
    this.varintWords(Number(bits & 0xffffffffn), Number(bits >> 32n));
  }

  /** Enum field from its name (looked up in `numbers`) or its number; zero is omitted. */
  enumeration(field: number, value: unknown, numbers: Readonly<Record<string, number>>): void {
    const number = typeof value === 'string' ? numbers[value] : value;
    if (typeof number !== 'number' || !Number.isInteger(number)) {
      if (value === undefined || value === null) return;
      throw new ProtoShapeError(`enum field ${field} holds ${String(value)}`);
    }
    if (number === 0) return;
    this.tag(field, 0);
    if (number < 0) return this.varintWords(number, -1);
    this.varint32(number);
  }

  bool(field: number, value: unknown): void {
    if (!value) return;
    this.tag(field, 0);
    this.varint32(1);
  }

  bytes(field: number, value: unknown): void {
    if (value === undefined || value === null) return;
    if (!(value instanceof Uint8Array))
      throw new ProtoShapeError(`bytes field ${field} holds a ${typeof value}`);
    if (value.length === 0) return;
    this.tag(field, 2);
    this.varint32(value.length);
    this.ensure(value.length);
    const length = value.length;
    if (length <= smallCopyBytesMax) {
      const buf = this.buf;
      const start = this.pos;
      for (let index = 0; index < length; index++) buf[start + index] = value[index] as number;
    } else {
      this.buf.set(value, this.pos);
    }
    this.pos += length;
  }

  string(field: number, value: unknown): void {
    if (value === undefined || value === null || value === '') return;
    const text = String(value);
    const length = Buffer.byteLength(text);
    this.tag(field, 2);
    this.varint32(length);
    this.ensure(length);
    this.pos += this.buf.write(text, this.pos, length, 'utf8');
  }

  /** Opens an embedded message field; pass the result to endMessage once its fields are written. */
  beginMessage(field: number): number {
    this.tag(field, 2);
    this.ensure(1);
    const lengthSlot = this.pos;
    this.pos += 1;
    return lengthSlot;
  }

  endMessage(lengthSlot: number): void {
    const length = this.pos - lengthSlot - 1;
    if (length < 0x80) {
      this.buf[lengthSlot] = length;
      return;
    }
    let lengthBytes = 1;
    for (let rest = length >>> 7; rest !== 0; rest >>>= 7) lengthBytes++;
    this.ensure(lengthBytes - 1);
    this.buf.copyWithin(lengthSlot + lengthBytes, lengthSlot + 1, this.pos);
    const end = this.pos + lengthBytes - 1;
    this.pos = lengthSlot;
    this.varint32(length);
    this.pos = end;
  }
}
