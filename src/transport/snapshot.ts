// Snapshot streaming. A snapshot travels on its own short-lived connection:
//   SnapshotBegin (the MsgSnap with its group id, snapshot.data empty) → SnapshotChunk* →
//   SnapshotEnd → SnapshotAck
// Each chunk frame carries its own CRC (the frame CRC) and its offset; SnapshotEnd carries the
// total length and the CRC of the whole data, checked once every chunk went to the sink. The
// sender never holds more than one chunk plus the socket buffer in memory: it waits for 'drain'
// when write() says so; the receiver holds a few chunks at most when its sink writes to a file
// (the socket is paused while the sink is behind).

import { createReadStream } from 'node:fs';
import { type FileHandle, open as fsOpen } from 'node:fs/promises';
import { crc32 } from 'node:zlib';
import { EMPTY_BYTES, type Message, MessageType } from '../raft/types.js';
import { decodeBatch, encodeBatch, type GroupMessage } from './codec.js';
import type { Connection } from './connection.js';
import { TransportError } from './errors.js';
import { FRAME_HEADER_BYTES, FRAME_OVERHEAD_BYTES, FrameType, sealFrame } from './frame.js';
import type { GroupId } from './transport.js';
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
export type SnapshotSourceProvider = (message: Message, group: GroupId) => SnapshotSource | undefined;

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
  { group, message }: GroupMessage,
  source: SnapshotSource,
  chunkBytes: number,
  onProgress: () => void,
): Promise<StreamedSnapshot> {
  const metadataOnly: Message = {
    ...message,
    snapshot: { metadata: message.snapshot!.metadata, data: new Uint8Array(0) },
  };
  conn.writeFrame(FrameType.SnapshotBegin, encodeBatch([{ group, message: metadataOnly }]));
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
    onProgress();
  }
  conn.writeFrame(FrameType.SnapshotEnd, encodeSnapshotEnd(totalBytes, crc));
  return { totalBytes, crc };
}

/**
 * Where a receiver puts incoming snapshot bytes. write() is called once per verified chunk, in
 * order; a returned promise holds the stream back (the socket is paused) until it settles.
 * finish() runs after the whole-snapshot length and CRC checked out and returns what goes into
 * the delivered message's snapshot.data (EMPTY_BYTES, or a reference the receiving node
 * understands, when the bytes stay where the sink put them, e.g. a file). abort() is called
 * instead of finish() when the stream fails, and after it when the finished snapshot is not
 * delivered after all (the connection closed first): the sink drops what it kept.
 */
export interface SnapshotSink {
  write(chunk: Uint8Array): void | Promise<void>;
  finish(): Uint8Array | Promise<Uint8Array>;
  abort(error: Error): void;
}

/** Picks a sink for an incoming MsgSnap (snapshot.data still empty: only metadata is known). */
export type SnapshotSinkProvider = (message: Message, group: GroupId) => SnapshotSink;

/** The default sink: reassembles in memory (bounded by the receiver's snapshotBytesMax). */
export function memorySnapshotSink(): SnapshotSink {
  let chunks: Uint8Array[] = [];
  return {
    write: (chunk) => {
      chunks.push(chunk);
    },
    finish: () => {
      const data = Buffer.concat(chunks);
      chunks = [];
      return data;
    },
    abort: () => {
      chunks = [];
    },
  };
}

/**
 * A sink writing the snapshot to a file (created or truncated), fsynced before finish() returns;
 * the delivered message carries empty data and the caller knows the path it chose.
 */
export function fileSnapshotSink(path: string): SnapshotSink {
  let handle: Promise<FileHandle> | undefined;
  const open = (): Promise<FileHandle> => {
    handle ??= fsOpen(path, 'w');
    return handle;
  };
  return {
    write: async (chunk) => {
      const fh = await open();
      let written = 0;
      while (written < chunk.length) {
        const { bytesWritten } = await fh.write(chunk, written, chunk.length - written);
        written += bytesWritten;
      }
    },
    finish: async () => {
      const fh = await open();
      await fh.sync();
      await fh.close();
      return EMPTY_BYTES;
    },
    abort: () => {
      void open().then(
        (fh) => fh.close(),
        () => undefined,
      );
    },
  };
}

export interface SnapshotReceiverHooks {
  /** Whether this node hosts the snapshot's group (asked before any data is read). */
  admit(group: GroupId, message: Message): boolean;
  /** The sink is behind: stop reading the socket. */
  pause(): void;
  /** The sink caught up (also a sign of progress for idle deadlines). */
  resume(): void;
  /** The sink failed: the stream must be abandoned. */
  fail(error: Error): void;
}

/** Sink writes allowed in flight before the socket is paused. */
const SINK_WRITES_PENDING_MAX = 2;

/** Receiving side of one snapshot connection: verifies every chunk as it arrives and the whole. */
export class SnapshotReceiver {
  private begun: GroupMessage | undefined;
  private sink: SnapshotSink | undefined;
  private receivedBytes = 0;
  private crc = 0;
  private writes: Promise<void> = Promise.resolve();
  private writesPending = 0;
  private settled = false;
  private finished = false;

  constructor(
    private readonly from: number,
    private readonly to: number,
    private readonly snapshotBytesMax: number,
    private readonly sinkProvider: SnapshotSinkProvider,
    private readonly hooks: SnapshotReceiverHooks,
  ) {}

  get bytesReceived(): number {
    return this.receivedBytes;
  }

  /**
   * On SnapshotEnd returns a promise of the complete MsgSnap (after the sink finished);
   * throws synchronously on any inconsistency in the stream, and UNKNOWN_GROUP on a SnapshotBegin
   * for a group the hooks do not admit.
   */
  onFrame(type: FrameType, payload: Buffer): Promise<GroupMessage> | undefined {
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

  /** The stream failed or was refused: discard whatever the sink holds (idempotent). */
  abort(error: Error): void {
    if (this.settled) return;
    this.settled = true;
    this.sink?.abort(error);
  }

  /** The snapshot was finished but will not be delivered: the sink drops it. */
  discardFinished(error: Error): void {
    if (this.finished) this.sink?.abort(error);
  }

  private begin(payload: Buffer): void {
    if (this.begun !== undefined) throw corrupt('second SnapshotBegin on one connection');
    const items = decodeBatch(payload);
    const m = items[0]?.message;
    if (
      items.length !== 1 ||
      m === undefined ||
      m.type !== MessageType.Snapshot ||
      m.snapshot === undefined
    ) {
      throw corrupt('SnapshotBegin must carry exactly one MsgSnap');
    }
    if (m.from !== this.from || m.to !== this.to) {
      throw corrupt(`MsgSnap ${m.from}→${m.to} on a connection from ${this.from} to ${this.to}`);
    }
    const group = items[0]!.group;
    if (!this.hooks.admit(group, m))
      throw new TransportError('UNKNOWN_GROUP', `snapshot for group ${group}, which this node does not host`);
    this.begun = items[0];
    this.sink = this.sinkProvider(m, group);
  }

  private chunk(payload: Buffer): void {
    const sink = this.sink;
    if (sink === undefined) throw corrupt('SnapshotChunk before SnapshotBegin');
    const { offset, data } = decodeSnapshotChunk(payload);
    if (offset !== this.receivedBytes)
      throw corrupt(`chunk at offset ${offset}, expected ${this.receivedBytes}`);
    if (this.receivedBytes + data.length > this.snapshotBytesMax) {
      throw new TransportError(
        'SNAPSHOT_TOO_LARGE',
        `snapshot exceeds snapshotBytesMax ${this.snapshotBytesMax}`,
      );
    }
    this.receivedBytes += data.length;
    this.crc = crc32(data, this.crc);
    if (++this.writesPending >= SINK_WRITES_PENDING_MAX) this.hooks.pause();
    this.writes = this.writes.then(async () => {
      if (this.settled) return;
      try {
        await sink.write(data);
      } catch (error) {
        this.hooks.fail(error instanceof Error ? error : new Error(String(error)));
        return;
      }
      if (--this.writesPending < SINK_WRITES_PENDING_MAX) this.hooks.resume();
    });
  }

  private end(payload: Buffer): Promise<GroupMessage> {
    const begun = this.begun;
    const sink = this.sink;
    if (begun === undefined || sink === undefined) throw corrupt('SnapshotEnd before SnapshotBegin');
    const { totalBytes, crc } = decodeSnapshotEnd(payload);
    if (totalBytes !== this.receivedBytes)
      throw corrupt(`snapshot has ${this.receivedBytes} bytes, sender sent ${totalBytes}`);
    if (crc !== this.crc) throw corrupt(`whole-snapshot CRC ${this.crc} does not match sender's ${crc}`);
    return this.writes.then(async () => {
      if (this.settled) throw new TransportError('SNAPSHOT_FAILED', 'snapshot stream was abandoned');
      const data = await sink.finish();
      // Aborted while finishing: the sink drops what it finished.
      if (this.settled) throw new TransportError('SNAPSHOT_FAILED', 'snapshot stream was abandoned');
      this.settled = true;
      this.finished = true;
      const m = begun.message;
      return { group: begun.group, message: { ...m, snapshot: { metadata: m.snapshot!.metadata, data } } };
    });
  }
}

function corrupt(reason: string): TransportError {
  return new TransportError('SNAPSHOT_CORRUPT', `snapshot stream: ${reason}`);
}
