// Snapshot streaming. A snapshot travels on its own short-lived connection:
//   SnapshotBegin (the MsgSnap, snapshot.data empty) → SnapshotChunk* → SnapshotEnd → SnapshotAck
// Each chunk frame carries its own CRC (the frame CRC) and its offset; SnapshotEnd carries the
// total length and the CRC of the whole data, checked after reassembly. The sender never holds
// more than one chunk plus the socket buffer in memory: it waits for 'drain' when write() says so.

import { createReadStream } from 'node:fs';
import { crc32 } from 'node:zlib';
import { type Message, MessageType } from '../raft/types.js';
import { decodeBatch, encodeBatch } from './codec.js';
import type { Connection } from './connection.js';
import { TransportError } from './errors.js';
import { FRAME_HEADER_BYTES, FRAME_OVERHEAD_BYTES, FrameType, sealFrame } from './frame.js';
import {
  decodeSnapshotChunk,
  decodeSnapshotEnd,
  encodeSnapshotEnd,
  snapshotChunkPayloadBytes,
  writeSnapshotChunk,
} from './wire.js';

/** Bytes of a snapshot, in pieces of any size; the transport re-cuts them to chunkBytes. */
export type SnapshotSource = AsyncIterable<Uint8Array> | Iterable<Uint8Array>;

/**
 * Supplies the data of an outgoing MsgSnap whose snapshot.data is empty, so a multi-GB snapshot
 * (an LMDB copy on disk) is streamed without ever being in memory at once. Return undefined when
 * the snapshot really is empty.
 */
export type SnapshotSourceProvider = (message: Message) => SnapshotSource | undefined;

/** A SnapshotSource reading a file in chunkBytes pieces. */
export function fileSnapshotSource(path: string, chunkBytes = 1 << 20): SnapshotSource {
  return createReadStream(path, { highWaterMark: chunkBytes });
}

async function* cutToChunks(source: SnapshotSource, chunkBytes: number): AsyncGenerator<Uint8Array> {
  for await (const piece of source) {
    for (let at = 0; at < piece.length; at += chunkBytes) {
      yield piece.subarray(at, Math.min(piece.length, at + chunkBytes));
    }
  }
}

export interface StreamedSnapshot {
  totalBytes: number;
  crc: number;
}

/** Writes Begin, all chunks (respecting backpressure) and End on an established connection. */
export async function streamSnapshot(
  conn: Connection,
  message: Message,
  source: SnapshotSource,
  chunkBytes: number,
): Promise<StreamedSnapshot> {
  const metadataOnly: Message = {
    ...message,
    snapshot: { metadata: message.snapshot!.metadata, data: new Uint8Array(0) },
  };
  conn.writeFrame(FrameType.SnapshotBegin, encodeBatch([metadataOnly]));
  let totalBytes = 0;
  let crc = 0;
  for await (const chunk of cutToChunks(source, chunkBytes)) {
    if (conn.closed) throw new TransportError('CLOSED', 'snapshot connection closed while streaming');
    const payloadBytes = snapshotChunkPayloadBytes(totalBytes, chunk.length);
    const frame = Buffer.allocUnsafe(FRAME_OVERHEAD_BYTES + payloadBytes);
    writeSnapshotChunk(frame, FRAME_HEADER_BYTES, totalBytes, chunk);
    sealFrame(frame, 0, FrameType.SnapshotChunk, payloadBytes);
    totalBytes += chunk.length;
    crc = crc32(chunk, crc);
    if (!conn.socket.write(frame)) await conn.waitDrain();
  }
  conn.writeFrame(FrameType.SnapshotEnd, encodeSnapshotEnd(totalBytes, crc));
  return { totalBytes, crc };
}

/** Receiving side of one snapshot connection: verifies as it goes, reassembles at the end. */
export class SnapshotReceiver {
  private message: Message | undefined;
  private readonly chunks: Buffer[] = [];
  private receivedBytes = 0;
  private crc = 0;

  constructor(
    private readonly from: number,
    private readonly to: number,
    private readonly snapshotBytesMax: number,
  ) {}

  get bytesReceived(): number {
    return this.receivedBytes;
  }

  /** Returns the complete, verified MsgSnap on SnapshotEnd; throws on any inconsistency. */
  onFrame(type: FrameType, payload: Buffer): Message | undefined {
    switch (type) {
      case FrameType.SnapshotBegin:
        this.begin(payload);
        return undefined;
      case FrameType.SnapshotChunk:
        this.chunk(payload);
        return undefined;
      case FrameType.SnapshotEnd:
        return this.end(payload);
      default:
        throw new TransportError('FRAME_UNEXPECTED', `frame type ${type} on a snapshot connection`);
    }
  }

  private begin(payload: Buffer): void {
    if (this.message !== undefined) throw corrupt('second SnapshotBegin on one connection');
    const messages = decodeBatch(payload);
    const m = messages[0];
    if (
      messages.length !== 1 ||
      m === undefined ||
      m.type !== MessageType.Snapshot ||
      m.snapshot === undefined
    ) {
      throw corrupt('SnapshotBegin must carry exactly one MsgSnap');
    }
    if (m.from !== this.from || m.to !== this.to) {
      throw corrupt(`MsgSnap ${m.from}→${m.to} on a connection from ${this.from} to ${this.to}`);
    }
    this.message = m;
  }

  private chunk(payload: Buffer): void {
    if (this.message === undefined) throw corrupt('SnapshotChunk before SnapshotBegin');
    const { offset, data } = decodeSnapshotChunk(payload);
    if (offset !== this.receivedBytes)
      throw corrupt(`chunk at offset ${offset}, expected ${this.receivedBytes}`);
    if (this.receivedBytes + data.length > this.snapshotBytesMax) {
      throw new TransportError(
        'SNAPSHOT_TOO_LARGE',
        `snapshot exceeds snapshotBytesMax ${this.snapshotBytesMax}`,
      );
    }
    this.chunks.push(data);
    this.receivedBytes += data.length;
    this.crc = crc32(data, this.crc);
  }

  private end(payload: Buffer): Message {
    const m = this.message;
    if (m === undefined) throw corrupt('SnapshotEnd before SnapshotBegin');
    const { totalBytes, crc } = decodeSnapshotEnd(payload);
    if (totalBytes !== this.receivedBytes)
      throw corrupt(`snapshot has ${this.receivedBytes} bytes, sender sent ${totalBytes}`);
    if (crc !== this.crc) throw corrupt(`whole-snapshot CRC ${this.crc} does not match sender's ${crc}`);
    const data = Buffer.concat(this.chunks, totalBytes);
    this.chunks.length = 0;
    // Verify the reassembled copy too: it is what gets installed.
    if (crc32(data) !== crc) throw corrupt('reassembled snapshot CRC mismatch');
    return { ...m, snapshot: { metadata: m.snapshot!.metadata, data } };
  }
}

function corrupt(reason: string): TransportError {
  return new TransportError('SNAPSHOT_CORRUPT', `snapshot stream: ${reason}`);
}
