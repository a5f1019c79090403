// Snapshot file format: a sequence of self-checking frames.
//
// Frame (little-endian):  u32 length (type + payload) | u32 crc32 (length bytes, type, payload)
//                         | u8 type | payload
//   Header  (type 1)  u32 magic 'CSNP' | u16 version | u32 chunkBytes | u64 index | u64 term
//                     | conf state (see codec.ts)
//   Chunk   (type 2)  the next bytes of the application's state (at most chunkBytes)
//   Trailer (type 3)  u64 data bytes | u32 chunk count | u32 crc32 of every file byte before
//                     the trailer frame
// The file ends right after the trailer. A receiver can check each frame as it arrives, so a
// damaged chunk is caught at its own offset, and the trailer catches lost or reordered chunks.

import { crc32 } from 'node:zlib';
import type { SnapshotMetadata } from '../raft/types.js';
import { confStateBytes, DecodeError, Reader, Writer } from './codec.js';
import { SnapshotCorruptionError } from './errors.js';

export const FRAME_HEADER_BYTES = 9;
export const SNAPSHOT_MAGIC = 0x504e5343; // 'CSNP' read as little-endian u32
export const SNAPSHOT_VERSION = 1;
/** Reader-side bound: no frame of ours is near this, so a larger length is damage, not data. */
export const FRAME_BYTES_MAX = 64 * 1024 * 1024;

export enum FrameType {
  Header = 1,
  Chunk = 2,
  Trailer = 3,
}

export interface SnapshotTrailer {
  dataBytes: number;
  chunkCount: number;
  fileCrc: number;
}

function frame(type: FrameType, payloadBytes: number, fill: (w: Writer) => void): Buffer {
  const buf = Buffer.allocUnsafe(FRAME_HEADER_BYTES + payloadBytes);
  const w = new Writer(buf);
  w.position = 8;
  w.u8(type);
  fill(w);
  if (w.position !== buf.length) throw new Error(`snapshot frame size mismatch for type ${type}`);
  buf.writeUInt32LE(payloadBytes + 1, 0);
  buf.writeUInt32LE(frameCrc(buf), 4);
  return buf;
}

function frameCrc(frameBytes: Buffer): number {
  return crc32(frameBytes.subarray(8), crc32(frameBytes.subarray(0, 4)));
}

export function encodeHeader(meta: SnapshotMetadata, chunkBytes: number): Buffer {
  return frame(FrameType.Header, 4 + 2 + 4 + 16 + confStateBytes(meta.confState), (w) => {
    w.u32(SNAPSHOT_MAGIC);
    w.u16(SNAPSHOT_VERSION);
    w.u32(chunkBytes);
    w.u64(meta.index);
    w.u64(meta.term);
    w.confState(meta.confState);
  });
}

/**
 * The 9 bytes that precede `data` in its chunk frame; the frame is these followed by the data,
 * written side by side so a chunk is never copied into a frame buffer.
 */
export function encodeChunkHeader(data: Uint8Array): Buffer {
  const head = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
  head.writeUInt32LE(data.length + 1, 0);
  head[8] = FrameType.Chunk;
  head.writeUInt32LE(crc32(data, crc32(head.subarray(8), crc32(head.subarray(0, 4)))), 4);
  return head;
}

export function encodeTrailer(trailer: SnapshotTrailer): Buffer {
  return frame(FrameType.Trailer, 16, (w) => {
    w.u64(trailer.dataBytes);
    w.u32(trailer.chunkCount);
    w.u32(trailer.fileCrc);
  });
}

/** Total frame length (header included) from its first 4 bytes, or a reason it is implausible. */
export function frameLength(head: Buffer, offset: number): number | string {
  const length = head.readUInt32LE(offset);
  if (length === 0) return 'zero frame length';
  if (length > FRAME_BYTES_MAX) return `frame length ${length} exceeds ${FRAME_BYTES_MAX}`;
  return 8 + length;
}

export type VerifiedFrame =
  | { type: FrameType.Header; metadata: SnapshotMetadata; chunkBytes: number }
  | { type: FrameType.Chunk; data: Buffer }
  | { type: FrameType.Trailer; trailer: SnapshotTrailer };

/**
 * Checks frames in file order: each frame's CRC, header first, trailer last and consistent with
 * what came before. Shared by the file reader and the stream receiver, so both reject the same
 * damage with the same file/offset.
 */
export class FrameVerifier {
  private offset = 0;
  private fileCrc = 0;
  private dataBytes = 0;
  private chunkCount = 0;
  private chunkBytesMax = 0;
  private metadata: SnapshotMetadata | null = null;
  private done = false;

  constructor(readonly file: string) {}

  get bytesSeen(): number {
    return this.offset;
  }

  get finished(): boolean {
    return this.done;
  }

  get snapshotMetadata(): SnapshotMetadata | null {
    return this.metadata;
  }

  get dataBytesSeen(): number {
    return this.dataBytes;
  }

  get chunks(): number {
    return this.chunkCount;
  }

  /** `frameBytes` is one complete frame (as cut by frameLength). */
  verify(frameBytes: Buffer): VerifiedFrame {
    const at = this.offset;
    if (this.done) this.fail(at, 'bytes after the trailer');
    if (frameCrc(frameBytes) !== frameBytes.readUInt32LE(4)) this.fail(at, 'frame CRC mismatch');
    const type = frameBytes[8] as FrameType;
    const verified = this.decode(type, frameBytes, at);
    if (type !== FrameType.Trailer) this.fileCrc = crc32(frameBytes, this.fileCrc);
    this.offset += frameBytes.length;
    return verified;
  }

  fail(offset: number, reason: string): never {
    throw new SnapshotCorruptionError(this.file, offset, reason);
  }

  private decode(type: FrameType, frameBytes: Buffer, at: number): VerifiedFrame {
    if (type !== FrameType.Header && this.metadata === null) this.fail(at, 'first frame is not a header');
    try {
      switch (type) {
        case FrameType.Header:
          return this.header(frameBytes, at);
        case FrameType.Chunk:
          return this.chunk(frameBytes, at);
        case FrameType.Trailer:
          return this.trailer(frameBytes, at);
        default:
          return this.fail(at, `unknown frame type ${type as number}`);
      }
    } catch (err) {
      if (err instanceof DecodeError) this.fail(at, `malformed frame: ${err.message}`);
      throw err;
    }
  }

  private header(frameBytes: Buffer, at: number): VerifiedFrame {
    if (this.metadata !== null) this.fail(at, 'second header');
    const r = new Reader(frameBytes, FRAME_HEADER_BYTES, frameBytes.length);
    if (r.u32() !== SNAPSHOT_MAGIC) this.fail(at, 'bad magic: not a Concord snapshot');
    const version = r.u16();
    if (version !== SNAPSHOT_VERSION) this.fail(at, `unsupported snapshot version ${version}`);
    const chunkBytes = r.u32();
    const index = r.u64();
    const term = r.u64();
    const confState = r.confState();
    r.expectEnd();
    if (chunkBytes === 0) this.fail(at, 'chunk size 0');
    this.chunkBytesMax = chunkBytes;
    this.metadata = { index, term, confState };
    return { type: FrameType.Header, metadata: this.metadata, chunkBytes };
  }

  private chunk(frameBytes: Buffer, at: number): VerifiedFrame {
    const data = frameBytes.subarray(FRAME_HEADER_BYTES);
    if (data.length > this.chunkBytesMax)
      this.fail(at, `chunk of ${data.length} bytes exceeds ${this.chunkBytesMax}`);
    this.dataBytes += data.length;
    this.chunkCount++;
    return { type: FrameType.Chunk, data };
  }

  private trailer(frameBytes: Buffer, at: number): VerifiedFrame {
    const r = new Reader(frameBytes, FRAME_HEADER_BYTES, frameBytes.length);
    const trailer = { dataBytes: r.u64(), chunkCount: r.u32(), fileCrc: r.u32() };
    r.expectEnd();
    if (trailer.dataBytes !== this.dataBytes) {
      this.fail(at, `trailer says ${trailer.dataBytes} data bytes, file holds ${this.dataBytes}`);
    }
    if (trailer.chunkCount !== this.chunkCount) {
      this.fail(at, `trailer says ${trailer.chunkCount} chunks, file holds ${this.chunkCount}`);
    }
    if (trailer.fileCrc !== this.fileCrc) this.fail(at, 'whole-file CRC mismatch');
    this.done = true;
    return { type: FrameType.Trailer, trailer };
  }
}

/**
 * Re-cuts arbitrary byte pieces (socket reads, stream chunks) into whole frames, holding at most
 * one partial frame. Throws through the verifier on an implausible frame length.
 */
export class FrameAssembler {
  private pending: Buffer = Buffer.alloc(0);

  constructor(private readonly verifier: FrameVerifier) {}

  get bufferedBytes(): number {
    return this.pending.length;
  }

  *push(piece: Uint8Array): Generator<Buffer> {
    this.pending = this.pending.length === 0 ? Buffer.from(piece) : Buffer.concat([this.pending, piece]);
    let start = 0;
    while (this.pending.length - start >= 4) {
      const length = frameLength(this.pending, start);
      if (typeof length === 'string') this.verifier.fail(this.verifier.bytesSeen, length);
      if (this.pending.length - start < length) break;
      yield this.pending.subarray(start, start + length);
      start += length;
    }
    this.pending = this.pending.subarray(start);
  }
}
