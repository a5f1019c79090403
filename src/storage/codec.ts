// Little-endian binary encoding shared by WAL records and snapshot frames. Integers that are
// u64 on disk are JavaScript numbers in memory, so they are limited to safe integers (2^53 - 1);
// that bound is checked on both encode and decode rather than silently wrapping.

import type { ConfState } from '../raft/types.js';
import { invariant } from './errors.js';

const TWO_POW_32 = 0x1_0000_0000;

/** Thrown by Reader on malformed input; callers translate it into a file/offset error. */
export class DecodeError extends Error {
  constructor(
    message: string,
    readonly position: number,
  ) {
    super(message);
    this.name = 'DecodeError';
  }
}

export class Writer {
  position = 0;
  constructor(readonly buf: Buffer) {}

  u8(value: number): void {
    this.buf[this.position] = value;
    this.position += 1;
  }

  u16(value: number): void {
    this.buf.writeUInt16LE(value, this.position);
    this.position += 2;
  }

  u32(value: number): void {
    this.buf.writeUInt32LE(value, this.position);
    this.position += 4;
  }

  u64(value: number): void {
    invariant(Number.isSafeInteger(value) && value >= 0, `u64 out of range: ${value}`);
    this.buf.writeUInt32LE(value >>> 0, this.position);
    this.buf.writeUInt32LE(Math.floor(value / TWO_POW_32), this.position + 4);
    this.position += 8;
  }

  bytes(data: Uint8Array): void {
    this.buf.set(data, this.position);
    this.position += data.length;
  }

  u64List(values: readonly number[]): void {
    this.u32(values.length);
    for (const value of values) this.u64(value);
  }

  confState(cs: ConfState): void {
    this.u64List(cs.voters);
    this.u64List(cs.learners);
    this.u64List(cs.votersOutgoing);
    this.u64List(cs.learnersNext);
    this.u8(cs.autoLeave ? 1 : 0);
  }
}

export class Reader {
  position: number;
  constructor(
    readonly buf: Buffer,
    start: number,
    readonly end: number,
  ) {
    this.position = start;
  }

  private need(bytes: number): void {
    if (this.position + bytes > this.end) {
      throw new DecodeError(`payload truncated: need ${bytes} bytes`, this.position);
    }
  }

  u8(): number {
    this.need(1);
    return this.buf[this.position++]!;
  }

  u16(): number {
    this.need(2);
    const value = this.buf.readUInt16LE(this.position);
    this.position += 2;
    return value;
  }

  u32(): number {
    this.need(4);
    const value = this.buf.readUInt32LE(this.position);
    this.position += 4;
    return value;
  }

  u64(): number {
    this.need(8);
    const lo = this.buf.readUInt32LE(this.position);
    const hi = this.buf.readUInt32LE(this.position + 4);
    if (hi >= 0x20_0000) throw new DecodeError('u64 exceeds the safe integer range', this.position);
    this.position += 8;
    return hi * TWO_POW_32 + lo;
  }

  /** A copy, so decoded values never alias the (large, reused) file buffer. */
  bytes(length: number): Uint8Array {
    this.need(length);
    const out = new Uint8Array(length);
    out.set(this.buf.subarray(this.position, this.position + length));
    this.position += length;
    return out;
  }

  /**
   * The next `length` bytes as a view of the buffer being read (no copy); advances past them.
   * The caller owns the aliasing: it must copy what it keeps once the buffer is reused or freed.
   */
  view(length: number): Uint8Array {
    this.need(length);
    const out = this.buf.subarray(this.position, this.position + length);
    this.position += length;
    return out;
  }

  u64List(): number[] {
    const count = this.u32();
    this.need(count * 8);
    const values: number[] = [];
    for (let i = 0; i < count; i++) values.push(this.u64());
    return values;
  }

  confState(): ConfState {
    const voters = this.u64List();
    const learners = this.u64List();
    const votersOutgoing = this.u64List();
    const learnersNext = this.u64List();
    const autoLeave = this.u8();
    if (autoLeave > 1) throw new DecodeError(`autoLeave flag ${autoLeave} is not 0 or 1`, this.position - 1);
    return { voters, learners, votersOutgoing, learnersNext, autoLeave: autoLeave === 1 };
  }

  expectEnd(): void {
    if (this.position !== this.end) {
      throw new DecodeError(`${this.end - this.position} unexpected trailing payload bytes`, this.position);
    }
  }
}

export function confStateBytes(cs: ConfState): number {
  const lists = cs.voters.length + cs.learners.length + cs.votersOutgoing.length + cs.learnersNext.length;
  return 4 * 4 + lists * 8 + 1;
}

/** True when buf[start, end) holds only zero bytes. Compares in blocks (memcmp speed). */
export function isAllZero(buf: Buffer, start: number, end: number): boolean {
  const block = ZERO_BLOCK.length;
  let pos = start;
  while (end - pos >= block) {
    if (!buf.subarray(pos, pos + block).equals(ZERO_BLOCK)) return false;
    pos += block;
  }
  for (; pos < end; pos++) if (buf[pos] !== 0) return false;
  return true;
}

const ZERO_BLOCK = Buffer.alloc(64 * 1024);
