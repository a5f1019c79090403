// A minimal protobuf reader for the hand-written codecs of the hot etcd messages. It reads
// varints, fixed-width values and length-delimited slices, and skips unknown fields of every
// wire type protobufjs skips. Any truncated or malformed input throws ProtoDecodeError, which
// grpc-js turns into the same INTERNAL status it sends when protobufjs fails to decode.

export class ProtoDecodeError extends Error {
  readonly code = 'PROTO_DECODE';
}

/** protobufjs refuses messages nested deeper than this (Reader.recursionLimit); so do we. */
export const nestingDepthMax = 100;

const twoPow32 = 2 ** 32;
/** High word limit below which hi * 2^32 + lo is still an exact double (2^53). */
const safeHighWordLimit = 0x200000;

export const WireType = {
  varint: 0,
  fixed64: 1,
  delimited: 2,
  startGroup: 3,
  endGroup: 4,
  fixed32: 5,
} as const;
export type WireType = (typeof WireType)[keyof typeof WireType];

export class ProtoReader {
  pos: number;
  constructor(
    readonly buf: Buffer,
    start: number,
    public end: number,
  ) {
    this.pos = start;
  }

  /** A varint truncated to its low 32 bits, unsigned (tags, lengths, enums before int32 cast). */
  uint32(): number {
    const buf = this.buf;
    let pos = this.pos;
    const end = this.end;
    let value = 0;
    for (let shift = 0; shift < 35; shift += 7) {
      if (pos >= end) throw new ProtoDecodeError('truncated varint');
      const byte = buf[pos++] as number;
      value |= (byte & 0x7f) << shift;
      if (byte < 0x80) {
        this.pos = pos;
        return value >>> 0;
      }
    }
    // Past 5 bytes protobufjs skips exactly 5 more without looking at them; the only encoding
    // that makes sense of that is a sign-extended negative int32 (10 bytes), so that is the only
    // longer form we take: anything else would read differently here and there.
    for (let index = 5; index < 10; index++) {
      if (pos >= end) throw new ProtoDecodeError('truncated varint');
      const last = index === 9;
      if ((buf[pos++] as number) < 0x80 !== last) throw new ProtoDecodeError('invalid varint encoding');
    }
    this.pos = pos;
    return value >>> 0;
  }

  int32(): number {
    return this.uint32() | 0;
  }

  /** Like protobufjs: only the low 32 bits decide (a varint of exactly 2^32 reads as false). */
  bool(): boolean {
    return this.uint32() !== 0;
  }

  /** Low and high 32-bit words of the last varint64Words() call (kept in fields: no allocation). */
  lastLow = 0;
  lastHigh = 0;

  varint64Words(): void {
    const buf = this.buf;
    let pos = this.pos;
    const end = this.end;
    let low = 0;
    let high = 0;
    let byte = 0;
    let index = 0;
    for (; index < 4; index++) {
      if (pos >= end) throw new ProtoDecodeError('truncated varint');
      byte = buf[pos++] as number;
      low |= (byte & 0x7f) << (index * 7);
      if (byte < 0x80) return this.finishWords(pos, low, high);
    }
    if (pos >= end) throw new ProtoDecodeError('truncated varint');
    byte = buf[pos++] as number;
    low |= (byte & 0x7f) << 28;
    high = (byte & 0x7f) >> 4;
    if (byte < 0x80) return this.finishWords(pos, low, high);
    for (index = 0; index < 5; index++) {
      if (pos >= end) throw new ProtoDecodeError('truncated varint');
      byte = buf[pos++] as number;
      high |= (byte & 0x7f) << (index * 7 + 3);
      if (byte < 0x80) return this.finishWords(pos, low, high);
    }
    throw new ProtoDecodeError('invalid varint encoding');
  }

  private finishWords(pos: number, low: number, high: number): void {
    this.pos = pos;
    this.lastLow = low >>> 0;
    this.lastHigh = high >>> 0;
  }

  /** A signed int64 as the decimal string proto-loader gives with `longs: String`. */
  int64String(): string {
    this.varint64Words();
    const high = this.lastHigh;
    if (high < safeHighWordLimit) return String(high * twoPow32 + this.lastLow);
    const bits = (BigInt(high) << 32n) | BigInt(this.lastLow);
    return BigInt.asIntN(64, bits).toString();
  }

  /** A length-delimited field's bytes as a view into the received buffer (no copy). */
  bytes(): Buffer {
    const length = this.uint32();
    const start = this.pos;
    const stop = start + length;
    if (stop > this.end) throw new ProtoDecodeError('length-delimited field runs past its message');
    this.pos = stop;
    return this.buf.subarray(start, stop);
  }

  /** Starts reading an embedded message: returns the end to restore after it. */
  enterMessage(): number {
    const length = this.uint32();
    const stop = this.pos + length;
    if (stop > this.end) throw new ProtoDecodeError('embedded message runs past its parent');
    const parentEnd = this.end;
    this.end = stop;
    return parentEnd;
  }

  leaveMessage(parentEnd: number): void {
    if (this.pos !== this.end) throw new ProtoDecodeError('embedded message length mismatch');
    this.end = parentEnd;
  }

  /** Skips one field of an unknown number, as protobufjs' Reader.skipType does. */
  skip(wireType: number, depth: number): void {
    switch (wireType) {
      case WireType.varint:
        this.varint64Words();
        return;
      case WireType.fixed64:
        return this.advance(8);
      case WireType.delimited:
        return this.advance(this.uint32());
      case WireType.startGroup:
        return this.skipGroup(depth + 1);
      case WireType.fixed32:
        return this.advance(4);
      default:
        throw new ProtoDecodeError(`invalid wire type ${wireType} at offset ${this.pos}`);
    }
  }

  private skipGroup(depth: number): void {
    if (depth > nestingDepthMax) throw new ProtoDecodeError('maximum nesting depth exceeded');
    for (;;) {
      const wireType = this.uint32() & 7;
      if (wireType === WireType.endGroup) return;
      this.skip(wireType, depth);
    }
  }

  private advance(length: number): void {
    if (this.pos + length > this.end) throw new ProtoDecodeError('field runs past its message');
    this.pos += length;
  }
}

/** Throws unless a known field arrived with the wire type its declaration implies. */
export function expectWireType(tag: number, expected: WireType): void {
  if ((tag & 7) !== expected) {
    throw new ProtoDecodeError(`field ${tag >>> 3} has wire type ${tag & 7}, expected ${expected}`);
  }
}
