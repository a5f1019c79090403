// Snapshot files on disk: `<dir>/<term>-<index>.snap` (each number 16 hex digits, so names sort),
// in the frame format of snapshot-format.ts.
//
//   const store = await SnapshotStore.open(dir, { chunkBytes: 1 << 20, retain: 2 });
//   const info = await store.write(metadata, source);     // source: bytes, iterable or stream
//   const w = await store.writer(metadata, path); await w.append(bytes)…; await w.commit();
//   await store.adopt(path, metadata);                     // a file written elsewhere moves in
//   for await (const piece of store.readData(info.path)) … // verified chunks (transport source)
//   await store.installTo(info.path, '/data/db.lmdb');     // verify all, then atomically place
//   for await (const frame of store.frames(info.path)) …   // the raw file, frame by frame
//   const rx = store.receive(); await rx.push(bytes)…; const info = await rx.finish();
//   await store.prune();                                   // keep the newest `retain` files
//
// Every write goes to a temp name, is fsynced, renamed and the directory fsynced, so a crash
// leaves either the old set of snapshots or the new one plus a temp file removed on open().

import { createReadStream } from 'node:fs';
import { type FileHandle, mkdir, open, readdir, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { crc32 } from 'node:zlib';
import type { SnapshotMetadata } from '../raft/types.js';
import { invariant, SnapshotCorruptionError, SnapshotInvalidError } from './errors.js';
import {
  encodeChunkHeader,
  encodeHeader,
  encodeTrailer,
  FrameAssembler,
  FrameType,
  FrameVerifier,
  type VerifiedFrame,
} from './snapshot-format.js';

export const DEFAULT_CHUNK_BYTES = 1024 * 1024;
const DEFAULT_RETAIN = 2;
const SNAP_NAME = /^([0-9a-f]{16})-([0-9a-f]{16})\.snap$/;
const TEMP_SUFFIX = '.tmp';

/** Bytes of a snapshot's application state, in pieces of any size. */
export type SnapshotData = Uint8Array | Iterable<Uint8Array> | AsyncIterable<Uint8Array>;

export interface SnapshotStoreOptions {
  /** Bytes of application data per chunk frame written. */
  chunkBytes?: number;
  /** How many snapshot files prune() keeps (newest by index). */
  retain?: number;
}

export interface SnapshotFileInfo {
  path: string;
  metadata: SnapshotMetadata;
  dataBytes: number;
  chunkCount: number;
}

export interface SnapshotFileName {
  path: string;
  term: number;
  index: number;
}

export function snapshotFileName(term: number, index: number): string {
  return `${term.toString(16).padStart(16, '0')}-${index.toString(16).padStart(16, '0')}.snap`;
}

export class SnapshotStore {
  readonly chunkBytes: number;
  readonly retain: number;

  private constructor(
    readonly dir: string,
    options: SnapshotStoreOptions,
  ) {
    this.chunkBytes = options.chunkBytes ?? DEFAULT_CHUNK_BYTES;
    this.retain = options.retain ?? DEFAULT_RETAIN;
    if (!Number.isSafeInteger(this.chunkBytes) || this.chunkBytes < 1 || this.chunkBytes > 16 * 1024 * 1024) {
      throw new RangeError(`chunkBytes must be in [1, 16 MiB], got ${this.chunkBytes}`);
    }
    if (!Number.isSafeInteger(this.retain) || this.retain < 1) {
      throw new RangeError(`retain must be a positive integer, got ${this.retain}`);
    }
  }

  /** Creates the directory if needed and removes temp files a crash left behind. */
  static async open(dir: string, options: SnapshotStoreOptions = {}): Promise<SnapshotStore> {
    const store = new SnapshotStore(dir, options);
    await mkdir(dir, { recursive: true });
    const stale = (await readdir(dir)).filter((n) => n.endsWith(TEMP_SUFFIX));
    for (const name of stale) await unlink(join(dir, name));
    if (stale.length > 0) await syncDir(dir);
    return store;
  }

  /** Writes a snapshot file atomically. Existing files for the same term/index are replaced. */
  async write(metadata: SnapshotMetadata, data: SnapshotData): Promise<SnapshotFileInfo> {
    const out = await this.writer(metadata);
    try {
      for await (const chunk of rechunk(data, this.chunkBytes)) await out.append(chunk);
      return await out.commit();
    } catch (err) {
      await out.discard();
      throw err;
    }
  }

  /**
   * A writer for one snapshot file whose data arrives piece by piece (a peer's stream), at `path`
   * (default: its place in this store). Nothing appears under `path` before commit().
   */
  writer(metadata: SnapshotMetadata, path?: string): Promise<SnapshotFileWriter> {
    const target = path ?? join(this.dir, snapshotFileName(metadata.term, metadata.index));
    return SnapshotFileWriter.create(target, metadata, this.chunkBytes);
  }

  /**
   * Moves a complete snapshot file (committed by a SnapshotFileWriter on this file system) into
   * the store under its name, durably. Its content is checked when it is read (installTo).
   */
  async adopt(path: string, metadata: SnapshotMetadata): Promise<string> {
    const target = join(this.dir, snapshotFileName(metadata.term, metadata.index));
    await rename(path, target);
    await syncDir(this.dir);
    return target;
  }

  /** Snapshot files by name, newest (highest index, then term) first. No content is read. */
  async list(): Promise<SnapshotFileName[]> {
    const names: SnapshotFileName[] = [];
    for (const name of await readdir(this.dir)) {
      const match = SNAP_NAME.exec(name);
      if (!match) continue;
      const term = Number.parseInt(match[1]!, 16);
      const index = Number.parseInt(match[2]!, 16);
      names.push({ path: join(this.dir, name), term, index });
    }
    return names.sort((a, b) => b.index - a.index || b.term - a.term);
  }

  /**
   * The newest snapshot that verifies completely, or null if there is none. A newer file that
   * fails verification is reported through `onCorrupt` and skipped (it was never installed, so
   * an older one is still a valid starting point; the WAL marker decides what is needed).
   */
  async newestValid(onCorrupt?: (err: SnapshotCorruptionError) => void): Promise<SnapshotFileInfo | null> {
    for (const candidate of await this.list()) {
      try {
        return await this.verify(candidate.path);
      } catch (err) {
        if (!(err instanceof SnapshotCorruptionError)) throw err;
        onCorrupt?.(err);
      }
    }
    return null;
  }

  /** Reads and checks the whole file: every frame CRC, the trailer, and the name. */
  async verify(path: string): Promise<SnapshotFileInfo> {
    let info: SnapshotFileInfo | null = null;
    for await (const event of this.walk(path)) if (event.kind === 'end') info = event.info;
    invariant(info !== null, 'walk ends with the trailer');
    return info;
  }

  /**
   * The application data, chunk by chunk, each chunk's CRC checked before it is yielded; throws
   * at the end if the trailer disagrees. To install nothing from a bad file, verify() first or
   * use installTo().
   */
  async *readData(path: string): AsyncGenerator<Buffer> {
    for await (const event of this.walk(path)) if (event.kind === 'chunk') yield event.data;
  }

  /** The raw file as verified frames, for a transport that ships snapshot files verbatim. */
  async *frames(path: string): AsyncGenerator<Buffer> {
    for await (const event of this.walk(path)) yield event.frame;
  }

  /**
   * Verifies the whole snapshot while copying its data to `destPath` under a temp name; only a
   * fully verified copy is fsynced and renamed into place.
   */
  async installTo(path: string, destPath: string): Promise<SnapshotFileInfo> {
    const out = await TempFile.create(destPath);
    try {
      let info: SnapshotFileInfo | null = null;
      for await (const event of this.walk(path)) {
        if (event.kind === 'chunk') await out.append(event.data);
        if (event.kind === 'end') info = event.info;
      }
      invariant(info !== null, 'walk ends with the trailer');
      await out.commit(dirname(destPath));
      return info;
    } catch (err) {
      await out.discard();
      throw err;
    }
  }

  /** Accepts a snapshot file streamed from a peer (pieces of any size), verifying as it goes. */
  receive(): SnapshotFileReceiver {
    return new SnapshotFileReceiver(this.dir);
  }

  /** Deletes all but the newest `keep` snapshot files; returns the deleted paths. */
  async prune(keep = this.retain): Promise<string[]> {
    const victims = (await this.list()).slice(keep).map((f) => f.path);
    for (const path of victims) await unlink(path);
    if (victims.length > 0) await syncDir(this.dir);
    return victims;
  }

  private async *walk(path: string): AsyncGenerator<WalkEvent> {
    const verifier = new FrameVerifier(path);
    const assembler = new FrameAssembler(verifier);
    for await (const piece of createReadStream(path, { highWaterMark: this.chunkBytes + 64 })) {
      for (const frame of assembler.push(piece as Buffer)) {
        const verified = verifier.verify(frame);
        yield* frameEvents(verified, frame, verifier);
      }
    }
    if (!verifier.finished) verifier.fail(verifier.bytesSeen, 'file ends before the trailer');
    if (assembler.bufferedBytes > 0) verifier.fail(verifier.bytesSeen, 'bytes after the trailer');
    checkName(path, verifier.snapshotMetadata!);
  }
}

type WalkEvent =
  | { kind: 'frame'; frame: Buffer }
  | { kind: 'chunk'; frame: Buffer; data: Buffer }
  | { kind: 'end'; frame: Buffer; info: SnapshotFileInfo };

function* frameEvents(verified: VerifiedFrame, frame: Buffer, verifier: FrameVerifier): Generator<WalkEvent> {
  switch (verified.type) {
    case FrameType.Header:
      yield { kind: 'frame', frame };
      return;
    case FrameType.Chunk:
      yield { kind: 'chunk', frame, data: verified.data };
      return;
    case FrameType.Trailer:
      yield { kind: 'end', frame, info: infoOf(verifier) };
      return;
    default: {
      const unknown: never = verified;
      throw new Error(`unreachable frame ${String(unknown)}`);
    }
  }
}

function infoOf(verifier: FrameVerifier): SnapshotFileInfo {
  return {
    path: verifier.file,
    metadata: verifier.snapshotMetadata!,
    dataBytes: verifier.dataBytesSeen,
    chunkCount: verifier.chunks,
  };
}

function checkName(path: string, metadata: SnapshotMetadata): void {
  const expected = snapshotFileName(metadata.term, metadata.index);
  if (SNAP_NAME.test(basename(path)) && basename(path) !== expected) {
    throw new SnapshotCorruptionError(path, 0, `header says term ${metadata.term} index ${metadata.index}`);
  }
}

/**
 * Receives a snapshot file as a stream of bytes. Each frame's CRC is checked the moment the frame
 * is complete, so corruption is reported at its offset without waiting for the end; the file
 * appears under its final name only after the trailer verified and the data is on disk.
 * push() resolves once the bytes are written: awaiting it is the backpressure.
 */
export class SnapshotFileReceiver {
  private readonly verifier = new FrameVerifier('(incoming snapshot)');
  private readonly assembler = new FrameAssembler(this.verifier);
  private out: TempFile | null = null;
  private finalPath: string | null = null;
  private failed = false;

  constructor(private readonly dir: string) {}

  async push(piece: Uint8Array): Promise<void> {
    if (this.failed) throw new SnapshotInvalidError('snapshot receive already failed');
    try {
      for (const frame of this.assembler.push(piece)) {
        const verified = this.verifier.verify(frame);
        if (verified.type === FrameType.Header) await this.start(verified.metadata);
        await this.out!.append(frame);
      }
    } catch (err) {
      await this.abort();
      throw err;
    }
  }

  /** Feeds a whole stream, awaiting each write before pulling the next piece. */
  async pushAll(source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>): Promise<SnapshotFileInfo> {
    for await (const piece of source) await this.push(piece);
    return this.finish();
  }

  async finish(): Promise<SnapshotFileInfo> {
    if (this.failed) throw new SnapshotInvalidError('snapshot receive already failed');
    if (!this.verifier.finished || this.assembler.bufferedBytes > 0 || !this.out) {
      await this.abort();
      throw new SnapshotCorruptionError(
        this.finalPath ?? '(incoming snapshot)',
        this.verifier.bytesSeen,
        'stream ended before the trailer',
      );
    }
    await this.out.commit(this.dir);
    return { ...infoOf(this.verifier), path: this.finalPath! };
  }

  /** Drops the partial file. Safe to call more than once. */
  async abort(): Promise<void> {
    this.failed = true;
    await this.out?.discard();
  }

  private async start(metadata: SnapshotMetadata): Promise<void> {
    this.finalPath = join(this.dir, snapshotFileName(metadata.term, metadata.index));
    this.out = await TempFile.create(this.finalPath);
  }
}

/**
 * Writes one snapshot file frame by frame as its data arrives: the header at create(), a chunk
 * frame per chunkBytes of data (at most; a smaller piece makes a smaller frame, so nothing is
 * held back in memory), the trailer with the whole-file CRC at commit(). Until commit() has
 * fsynced it, the file lives under `<path>.tmp`; discard() removes it.
 */
export class SnapshotFileWriter {
  private fileCrc = 0;
  private dataBytes = 0;
  private chunkCount = 0;

  private constructor(
    private readonly out: TempFile,
    readonly path: string,
    private readonly metadata: SnapshotMetadata,
    private readonly chunkBytes: number,
  ) {}

  static async create(
    path: string,
    metadata: SnapshotMetadata,
    chunkBytes: number,
  ): Promise<SnapshotFileWriter> {
    const out = await TempFile.create(path);
    const writer = new SnapshotFileWriter(out, path, structuredClone(metadata), chunkBytes);
    try {
      await writer.put(encodeHeader(metadata, chunkBytes));
    } catch (err) {
      await out.discard();
      throw err;
    }
    return writer;
  }

  get bytesOfData(): number {
    return this.dataBytes;
  }

  /** Appends data; resolves once it is written (not yet durable). */
  async append(data: Uint8Array): Promise<void> {
    for (let at = 0; at < data.length; at += this.chunkBytes) {
      const chunk = data.subarray(at, Math.min(data.length, at + this.chunkBytes));
      // Header and data go out side by side: no copy of the chunk into a frame buffer.
      await this.put(encodeChunkHeader(chunk));
      await this.put(chunk);
      this.dataBytes += chunk.length;
      this.chunkCount++;
    }
  }

  /** Writes the trailer, fsyncs, and renames the file into place (the directory fsynced). */
  async commit(): Promise<SnapshotFileInfo> {
    const trailer = { dataBytes: this.dataBytes, chunkCount: this.chunkCount, fileCrc: this.fileCrc };
    await this.out.append(encodeTrailer(trailer));
    await this.out.commit(dirname(this.path));
    return {
      path: this.path,
      metadata: this.metadata,
      dataBytes: this.dataBytes,
      chunkCount: this.chunkCount,
    };
  }

  /** Removes the unfinished file. Safe to call more than once, and after a failed commit. */
  discard(): Promise<void> {
    return this.out.discard();
  }

  private async put(bytes: Uint8Array): Promise<void> {
    await this.out.append(bytes);
    this.fileCrc = crc32(bytes, this.fileCrc);
  }
}

/** A file written under `<path>.tmp`, then fsynced and renamed into place (or removed). */
class TempFile {
  private position = 0;
  private closed = false;
  private renamed = false;

  private constructor(
    private readonly fh: FileHandle,
    private readonly tmpPath: string,
    private readonly finalPath: string,
  ) {}

  static async create(finalPath: string): Promise<TempFile> {
    const tmpPath = finalPath + TEMP_SUFFIX;
    return new TempFile(await open(tmpPath, 'w'), tmpPath, finalPath);
  }

  async append(data: Uint8Array): Promise<void> {
    let done = 0;
    while (done < data.length) {
      const { bytesWritten } = await this.fh.write(data, done, data.length - done, this.position + done);
      invariant(bytesWritten > 0, 'write() made no progress');
      done += bytesWritten;
    }
    this.position += data.length;
  }

  async commit(dir: string): Promise<void> {
    await this.fh.sync();
    await this.close();
    await rename(this.tmpPath, this.finalPath);
    this.renamed = true;
    await syncDir(dir);
  }

  async discard(): Promise<void> {
    if (this.renamed) return;
    await this.close().catch(() => {});
    await unlink(this.tmpPath).catch(() => {});
  }

  private async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.fh.close();
  }
}

async function* rechunk(data: SnapshotData, chunkBytes: number): AsyncGenerator<Uint8Array> {
  const source: Iterable<Uint8Array> | AsyncIterable<Uint8Array> = data instanceof Uint8Array ? [data] : data;
  let pending: Uint8Array[] = [];
  let pendingBytes = 0;
  for await (const piece of source) {
    let at = 0;
    while (at < piece.length) {
      const take = Math.min(chunkBytes - pendingBytes, piece.length - at);
      pending.push(piece.subarray(at, at + take));
      pendingBytes += take;
      at += take;
      if (pendingBytes === chunkBytes) {
        yield pending.length === 1 ? pending[0]! : Buffer.concat(pending, pendingBytes);
        pending = [];
        pendingBytes = 0;
      }
    }
  }
  if (pendingBytes > 0) yield pending.length === 1 ? pending[0]! : Buffer.concat(pending, pendingBytes);
}

async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
