// Length-prefixed frames: length u32be | type u8 | payload | crc32 u32be.
// The CRC (node:zlib crc32, IEEE) covers length, type and payload, so a flipped bit anywhere but
// in the CRC itself is caught; the length is checked against frameBytesMax before any
// allocation, so a corrupt or hostile length cannot make the reader allocate gigabytes.

import { crc32 } from 'node:zlib';
import { batchBytes, type GroupMessage, writeBatch } from './codec.js';
import { invariant, TransportError } from './errors.js';

export enum FrameType {
  /** Dialer → acceptor: protocol version, cluster id, from, to, connection kind. */
  Hello = 1,
  /** Acceptor → dialer: accepted, or rejected with a code and a reason. */
  HelloAck = 2,
  /** A batch of Raft messages, each with its group id (codec batch payload). */
  Messages = 3,
  /** Snapshot stream: the MsgSnap with snapshot.data empty. */
  SnapshotBegin = 4,
  /** Snapshot stream: offset varint + data bytes; the frame CRC is the chunk CRC. */
  SnapshotChunk = 5,
  /** Snapshot stream: total byte count + CRC32 of the whole snapshot data. */
  SnapshotEnd = 6,
  /** Receiver → sender: snapshot verified and delivered, or failed with a reason. */
  SnapshotAck = 7,
  /** Empty frame on an idle message connection, so a silent peer can be told from a quiet one. */
  KeepAlive = 8,
}

const FRAME_TYPE_MAX = FrameType.KeepAlive;
export const FRAME_HEADER_BYTES = 5;
export const FRAME_TRAILER_BYTES = 4;
export const FRAME_OVERHEAD_BYTES = FRAME_HEADER_BYTES + FRAME_TRAILER_BYTES;

/** Writes header and CRC trailer around a payload already written at start+5; returns the end. */
export function sealFrame(buf: Buffer, start: number, type: FrameType, payloadBytes: number): number {
  buf.writeUInt32BE(payloadBytes, start);
  buf[start + 4] = type;
  const end = start + FRAME_HEADER_BYTES + payloadBytes;
  buf.writeUInt32BE(crc32(buf.subarray(start, end)), end);
  return end + FRAME_TRAILER_BYTES;
}

export function encodeFrame(type: FrameType, payload: Uint8Array): Buffer {
  const buf = Buffer.allocUnsafe(FRAME_OVERHEAD_BYTES + payload.length);
  buf.set(payload, FRAME_HEADER_BYTES);
  sealFrame(buf, 0, type, payload.length);
  return buf;
}

/**
 * Encodes messages of any groups (with precomputed sizes, groupMessageBytes) into as few Messages
 * frames as frameBytesMax allows, all in ONE buffer so the caller issues one socket write. Every
 * single message must fit a frame on its own (the caller rejects oversize messages at send time).
 */
export function encodeMessageFrames(
  messages: readonly GroupMessage[],
  messageSizes: readonly number[],
  frameBytesMax: number,
): Buffer {
  invariant(messages.length === messageSizes.length, 'one size per message');
  const groups = groupMessages(messageSizes, frameBytesMax);
  let total = 0;
  for (let g = 0; g < groups.length - 1; g++) {
    total += FRAME_OVERHEAD_BYTES + batchBytes(messageSizes, groups[g]!, groups[g + 1]!);
  }
  const buf = Buffer.allocUnsafe(total);
  let pos = 0;
  for (let g = 0; g < groups.length - 1; g++) {
    const from = groups[g]!;
    const to = groups[g + 1]!;
    const payloadEnd = writeBatch(buf, pos + FRAME_HEADER_BYTES, messages, from, to);
    pos = sealFrame(buf, pos, FrameType.Messages, payloadEnd - pos - FRAME_HEADER_BYTES);
  }
  invariant(pos === total, `frames sized ${total} bytes but wrote ${pos}`);
  return buf;
}

/** Boundaries [0, b1, ..., n] of message groups whose batch payload fits frameBytesMax. */
function groupMessages(sizes: readonly number[], frameBytesMax: number): number[] {
  const bounds = [0];
  // Batch header: version byte + count varint (≤ 5 bytes for any realistic count).
  const batchHeaderBytesMax = 6;
  let groupBytes = batchHeaderBytesMax;
  for (let i = 0; i < sizes.length; i++) {
    const size = sizes[i]!;
    if (size + batchHeaderBytesMax > frameBytesMax) {
      throw new TransportError(
        'MESSAGE_TOO_LARGE',
        `message of ${size} bytes exceeds frameBytesMax ${frameBytesMax}`,
      );
    }
    if (groupBytes + size > frameBytesMax && i > bounds[bounds.length - 1]!) {
      bounds.push(i);
      groupBytes = batchHeaderBytesMax;
    }
    groupBytes += size;
  }
  if (sizes.length > 0) bounds.push(sizes.length);
  return bounds;
}

export type FrameHandler = (type: FrameType, payload: Buffer) => void;

/**
 * Incremental frame parser for one connection. push() throws a TransportError on an oversize
 * length, an unknown type or a CRC mismatch; the connection must then be dropped (the stream
 * position can no longer be trusted). Payloads handed out are owned: they never alias a socket
 * chunk that also holds other frames.
 */
export class FrameDecoder {
  private readonly header = Buffer.alloc(FRAME_HEADER_BYTES);
  private headerFill = 0;
  private body: Buffer | null = null;
  private bodyFill = 0;
  private stopped = false;

  constructor(
    private readonly frameBytesMax: number,
    private readonly onFrame: FrameHandler,
  ) {}

  /** Stop delivering frames (the connection is going away). */
  stop(): void {
    this.stopped = true;
  }

  push(chunk: Buffer): void {
    let pos = 0;
    while (pos < chunk.length && !this.stopped) {
      pos = this.body === null ? this.readHeader(chunk, pos) : this.fillBody(chunk, pos);
    }
  }

  private readHeader(chunk: Buffer, pos: number): number {
    const take = Math.min(FRAME_HEADER_BYTES - this.headerFill, chunk.length - pos);
    chunk.copy(this.header, this.headerFill, pos, pos + take);
    this.headerFill += take;
    pos += take;
    if (this.headerFill < FRAME_HEADER_BYTES) return pos;
    const payloadBytes = this.header.readUInt32BE(0);
    const type = this.header[4]!;
    if (payloadBytes > this.frameBytesMax) {
      throw new TransportError(
        'FRAME_TOO_LARGE',
        `frame of ${payloadBytes} bytes exceeds frameBytesMax ${this.frameBytesMax}`,
      );
    }
    if (type < FrameType.Hello || type > FRAME_TYPE_MAX) {
      throw new TransportError('FRAME_UNEXPECTED', `unknown frame type ${type}`);
    }
    const bodyBytes = payloadBytes + FRAME_TRAILER_BYTES;
    const headerStart = pos - FRAME_HEADER_BYTES;
    // Fast path: the whole frame sits in this chunk and the chunk is exactly this frame: no copy.
    if (headerStart === 0 && chunk.length === FRAME_HEADER_BYTES + bodyBytes) {
      this.headerFill = 0;
      this.deliver(type, chunk.subarray(pos, pos + payloadBytes), chunk.readUInt32BE(pos + payloadBytes));
      return chunk.length;
    }
    this.body = Buffer.allocUnsafe(bodyBytes);
    this.bodyFill = 0;
    return pos;
  }

  private fillBody(chunk: Buffer, pos: number): number {
    const body = this.body!;
    const take = Math.min(body.length - this.bodyFill, chunk.length - pos);
    chunk.copy(body, this.bodyFill, pos, pos + take);
    this.bodyFill += take;
    if (this.bodyFill === body.length) {
      this.body = null;
      this.headerFill = 0;
      const payloadBytes = body.length - FRAME_TRAILER_BYTES;
      this.deliver(
        this.header[4]! as FrameType,
        body.subarray(0, payloadBytes),
        body.readUInt32BE(payloadBytes),
      );
    }
    return pos + take;
  }

  private deliver(type: FrameType, payload: Buffer, expectedCrc: number): void {
    const actual = crc32(payload, crc32(this.header));
    if (actual !== expectedCrc) {
      throw new TransportError(
        'FRAME_CRC_MISMATCH',
        `frame CRC mismatch (type ${type}, ${payload.length} bytes): expected ${expectedCrc >>> 0}, got ${actual >>> 0}`,
      );
    }
    this.onFrame(type, payload);
  }
}
