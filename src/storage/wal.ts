// The write-ahead log: one per node, shared by every Raft group the node hosts.
//
// Usage:
//   const { wal, recovered } = await Wal.open(dir, { segmentBytes: 64 << 20 });
//   // recovered.groups.get(g) -> { hardState, snapshot, entries } to seed each group's storage
//   wal.saveHardState(g, hs); wal.appendEntries(g, entries); wal.saveSnapshotMarker(g, meta);
//   await wal.sync();            // everything buffered so far is on disk (one write + fdatasync)
//   await wal.releaseTo(g, idx); // entries <= idx (<= the group's snapshot marker) may be deleted
//   await wal.close();
//
// Group commit: the save/append calls only encode and buffer. The first one in a turn of the
// event loop schedules a flush with setImmediate, so everything buffered during that turn goes
// out as one write() and one fdatasync(); while that is in flight the next batch accumulates.
// sync() returns the promise of the batch holding everything buffered so far.
//
// Fail-stop: a failed write or fsync rejects its batch, and every later call throws
// WalFailedError. After an fsync error the page cache state is unknown (the "fsyncgate" lesson),
// so retrying could acknowledge data that never reached the disk.
//
// One writer per directory: open() takes <dir>/LOCK (see dir-lock.ts); close() releases it.
//
// Rollover: a record that does not fit the current segment starts a new one. A new segment is
// written as <seq>.wal.tmp holding a header plus the current hard state and snapshot marker of
// every group, made durable, then renamed; so deleting older segments never loses that state.

import { writeSync } from 'node:fs';
import { type FileHandle, mkdir, open, readdir, readFile, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Entry, HardState, SnapshotMetadata } from '../raft/types.js';
import { DirLock } from './dir-lock.js';
import type { EncryptionKeys } from './encryption.js';
import {
  invariant,
  WalClosedError,
  WalCorruptionError,
  WalFailedError,
  WalInvalidAppendError,
  WalOverloadError,
  WalRecordTooLargeError,
} from './errors.js';
import {
  encodeEntries,
  encodeHardState,
  encodeSealedEntries,
  encodeSegmentHeader,
  encodeSnapshotMarker,
  entriesPayloadBytes,
  RECORD_HEADER_BYTES,
  RecordType,
  sealedEntriesPayloadBytes,
} from './wal-record.js';
import { type RecoveredGroup, Replay } from './wal-replay.js';
import {
  parseSegmentName,
  type ScannedRecord,
  scanSegment,
  segmentPath,
  TEMP_SUFFIX,
  type TornTail,
} from './wal-segment.js';

export type { RecoveredGroup } from './wal-replay.js';
export type { TornTail } from './wal-segment.js';

/** The file operations on the write path, injectable so tests can count syncs and inject faults. */
export interface WalIo {
  write(fh: FileHandle, data: Buffer, position: number): Promise<void>;
  datasync(fh: FileHandle): Promise<void>;
  syncDir(dir: string): Promise<void>;
}

export interface WalOptions {
  /** Preallocated size of a segment; a record that does not fit starts the next one. */
  segmentBytes?: number;
  /** Largest single record (one appendEntries call); larger appends must be split by the caller. */
  recordBytesMax?: number;
  /** Bound on encoded bytes buffered and not yet handed to a flush. */
  pendingBytesMax?: number;
  /**
   * 'sparse' (default) sizes a new segment with ftruncate: cheap rollover, but each append then
   * allocates blocks, so its fdatasync also flushes that metadata. 'zero-fill' writes the zeros
   * at rollover (one segment-sized write, a latency spike for the batch that rolls) so later
   * fdatasyncs only flush data; `npm run bench:storage` shows the difference on this disk.
   */
  preallocate?: 'sparse' | 'zero-fill';
  io?: Partial<WalIo>;
  /**
   * Seal entry records with AES-256-GCM under the ring's active key (read at each append, so a
   * rotation applies to the next record), and open sealed ones on recovery. Absent: plain records.
   */
  encryption?: EncryptionKeys;
}

export interface RecoveredState {
  groups: Map<number, RecoveredGroup>;
  /** Set when an interrupted append was cut off the end of the last segment. */
  tornTail: TornTail | null;
  segmentCount: number;
}

export interface WalStats {
  batches: number;
  writes: number;
  datasyncs: number;
  dirSyncs: number;
  bytesWritten: number;
  recordsWritten: number;
  segmentsCreated: number;
  segmentsDeleted: number;
}

/**
 * Fault injection for the power-loss harness's self-test only (test/powerloss): a member started
 * with this variable set to 1 writes its WAL without fdatasync, so that the harness can show it
 * catches a write path that acknowledges what is not on disk. Never set it anywhere else.
 */
export const UNSAFE_WAL_NO_FDATASYNC_ENV = 'CONCORD_UNSAFE_WAL_NO_FDATASYNC';

/**
 * Likewise for the keyspace: a member started with this set to 1 opens its LMDB store without
 * any sync (as Concord did before the harness existed), to show the harness catches that too.
 */
export const UNSAFE_KEYSPACE_NO_SYNC_ENV = 'CONCORD_UNSAFE_KEYSPACE_NO_SYNC';

/** The WAL io for UNSAFE_WAL_NO_FDATASYNC_ENV: every data sync is skipped. */
export const unsafeNoDatasyncIo: Partial<WalIo> = { datasync: async () => {} };

export const DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024;
const DEFAULT_RECORD_BYTES_MAX = 64 * 1024 * 1024;
const DEFAULT_PENDING_BYTES_MAX = 256 * 1024 * 1024;

export const defaultWalIo: WalIo = {
  // Synchronous on purpose: a write only copies into the page cache (microseconds for a batch),
  // while a thread-pool round trip costs two thread wake-ups, each waiting for a core on a busy
  // machine. Only the fdatasync, which waits for the disk, goes to the thread pool.
  async write(fh, data, position) {
    let done = 0;
    while (done < data.length) {
      const bytesWritten = writeSync(fh.fd, data, done, data.length - done, position + done);
      invariant(bytesWritten > 0, 'write() made no progress');
      done += bytesWritten;
    }
  },
  datasync: (fh) => fh.datasync(),
  async syncDir(dir) {
    const fh = await open(dir, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  },
};

interface PendingRecord {
  bytes: Buffer;
  group: number;
  hardState?: HardState;
  marker?: SnapshotMetadata;
  /** For entries records: the highest index written. */
  lastIndex?: number;
  /** For sealed entries records: the key id they are sealed with. */
  keyId?: string;
}

interface SealedSegment {
  seq: number;
  path: string;
  /** Highest entry index each group wrote in this segment. */
  maxIndexByGroup: Map<number, number>;
  /** Encryption key ids its sealed entries records are sealed with. */
  keyIds: Set<string>;
}

interface ActiveSegment extends SealedSegment {
  fh: FileHandle;
  offset: number;
  size: number;
}

/** What the writer knows about a group, to reject appends that would break the log's shape. */
interface GroupCursor {
  lastIndex: number | null;
  snapshotIndex: number;
}

interface Batch {
  promise: Promise<void>;
  resolve: () => void;
  reject: (err: Error) => void;
}

function newBatch(): Batch {
  let resolve!: () => void;
  let reject!: (err: Error) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // Callers that only buffer and never await must not crash the process with an unhandled
  // rejection: the failure is also recorded and surfaces on the next call.
  promise.catch(() => {});
  return { promise, resolve, reject };
}

export class Wal {
  private readonly io: WalIo;
  private readonly segmentBytes: number;
  private readonly recordBytesMax: number;
  private readonly pendingBytesMax: number;
  private readonly preallocate: 'sparse' | 'zero-fill';
  private readonly encryption: EncryptionKeys | undefined;
  private readonly sealed: SealedSegment[];
  private active: ActiveSegment;
  private readonly cursors = new Map<number, GroupCursor>();
  /** Hard state and marker per group as of the records already placed in segments. */
  private readonly placedHardStates = new Map<number, HardState>();
  private readonly placedMarkers = new Map<number, SnapshotMetadata>();
  /** The newest hard state per group handed to the WAL (buffered, in flight or placed). */
  private readonly bufferedHardStates = new Map<number, HardState>();
  private readonly released = new Map<number, number>();
  private pending: PendingRecord[] = [];
  private pendingBytes = 0;
  private pendingBatch: Batch | null = null;
  private inflightBatch: Batch | null = null;
  private flushScheduled = false;
  /** Whether the pending batch holds a record that asked for a flush (not only lazy ones). */
  private pendingEager = false;
  private failure: WalFailedError | null = null;
  private closed = false;
  private purgeChain: Promise<number> = Promise.resolve(0);
  /** The next batch starts a new segment (rolloverNow). */
  private rolloverRequested = false;
  private lock: DirLock | null = null;
  private readonly counters: WalStats = {
    batches: 0,
    writes: 0,
    datasyncs: 0,
    dirSyncs: 0,
    bytesWritten: 0,
    recordsWritten: 0,
    segmentsCreated: 0,
    segmentsDeleted: 0,
  };

  private constructor(
    readonly dir: string,
    options: WalOptions,
    sealed: SealedSegment[],
    active: ActiveSegment,
  ) {
    const io = { ...defaultWalIo, ...options.io };
    this.io = {
      write: (fh, data, position) => {
        this.counters.writes++;
        this.counters.bytesWritten += data.length;
        return io.write(fh, data, position);
      },
      datasync: (fh) => {
        this.counters.datasyncs++;
        return io.datasync(fh);
      },
      syncDir: (d) => {
        this.counters.dirSyncs++;
        return io.syncDir(d);
      },
    };
    this.segmentBytes = options.segmentBytes ?? DEFAULT_SEGMENT_BYTES;
    this.recordBytesMax = options.recordBytesMax ?? DEFAULT_RECORD_BYTES_MAX;
    this.pendingBytesMax = options.pendingBytesMax ?? DEFAULT_PENDING_BYTES_MAX;
    this.preallocate = options.preallocate ?? 'sparse';
    this.encryption = options.encryption;
    this.sealed = sealed;
    this.active = active;
  }

  /**
   * Opens (creating if needed) the WAL in `dir`, verifies every record of every segment and
   * replays them. Throws WalCorruptionError for damage a torn write cannot explain.
   */
  static async open(dir: string, options: WalOptions = {}): Promise<{ wal: Wal; recovered: RecoveredState }> {
    validateOptions(options);
    await mkdir(dir, { recursive: true });
    const lock = await DirLock.acquire(dir);
    try {
      const opened = await Wal.openLocked(dir, options);
      opened.wal.lock = lock;
      return opened;
    } catch (err) {
      await lock.release();
      throw err;
    }
  }

  private static async openLocked(
    dir: string,
    options: WalOptions,
  ): Promise<{ wal: Wal; recovered: RecoveredState }> {
    const io = { ...defaultWalIo, ...options.io };
    const seqs = await listSegments(dir, io);
    if (seqs.length === 0) {
      const active = await createSegment(dir, 1, [encodeSegmentHeader(1)], options, io);
      const wal = new Wal(dir, options, [], active);
      return { wal, recovered: { groups: new Map(), tornTail: null, segmentCount: 1 } };
    }
    const replay = new Replay();
    const sealed: SealedSegment[] = [];
    let last: { seq: number; validEnd: number; fileBytes: number; torn: TornTail | null } | null = null;
    let lastMaxIndexes = new Map<number, number>();
    let lastKeyIds = new Set<string>();
    for (let i = 0; i < seqs.length; i++) {
      const seq = seqs[i]!;
      const path = segmentPath(dir, seq);
      const buf = await readFile(path);
      const scan = scanSegment(path, seq, buf, i === seqs.length - 1, options.encryption);
      for (const { record, offset } of scan.records) replay.apply(record, path, offset);
      replay.detachFrom(buf.buffer);
      if (i < seqs.length - 1)
        sealed.push({ seq, path, maxIndexByGroup: maxIndexes(scan.records), keyIds: keyIdsOf(scan.records) });
      else {
        last = scan;
        lastMaxIndexes = maxIndexes(scan.records);
        lastKeyIds = keyIdsOf(scan.records);
      }
    }
    replay.finish();
    invariant(last !== null, 'at least one segment scanned');
    const path = segmentPath(dir, last.seq);
    if (last.torn) await zeroTail(path, last.validEnd, last.fileBytes);
    const fh = await open(path, 'r+');
    const active: ActiveSegment = {
      seq: last.seq,
      path,
      fh,
      offset: last.validEnd,
      size: last.fileBytes,
      maxIndexByGroup: lastMaxIndexes,
      keyIds: lastKeyIds,
    };
    const wal = new Wal(dir, options, sealed, active);
    wal.adoptRecovered(replay);
    const groups = new Map<number, RecoveredGroup>();
    for (const [groupId, g] of replay.groups) {
      groups.set(groupId, { groupId, hardState: g.hardState, snapshot: g.snapshot, entries: g.entries });
    }
    const recovered: RecoveredState = {
      groups,
      tornTail: last.torn,
      segmentCount: seqs.length,
    };
    return { wal, recovered };
  }

  private adoptRecovered(replay: Replay): void {
    for (const [groupId, g] of replay.groups) {
      this.cursors.set(groupId, { lastIndex: g.lastIndex, snapshotIndex: g.snapshotIndex });
      if (g.hardState) this.placedHardStates.set(groupId, g.hardState);
      if (g.snapshot) this.placedMarkers.set(groupId, g.snapshot);
    }
  }

  /** Buffers the group's hard state; durable once the batch's sync() resolves. */
  saveHardState(group: number, hardState: HardState): void {
    this.bufferHardState(group, hardState, true);
  }

  /**
   * Buffers a hard state that need not be durable by itself: only its commit index moved, which
   * Raft can always learn again from the leader (etcd's MustSync is false for it). It costs no
   * write or fdatasync of its own: it goes out with the next batch that does.
   */
  saveHardStateLazily(group: number, hardState: HardState): void {
    this.bufferHardState(group, hardState, false);
  }

  private bufferHardState(group: number, hardState: HardState, eager: boolean): void {
    this.checkWritable();
    checkId('group', group);
    checkId('term', hardState.term);
    checkId('vote', hardState.vote);
    checkId('commit', hardState.commit);
    const hs: HardState = { term: hardState.term, vote: hardState.vote, commit: hardState.commit };
    this.enqueue({ bytes: encodeHardState(group, hs), group, hardState: hs }, eager);
    this.bufferedHardStates.set(group, hs);
  }

  /**
   * Buffers consecutive entries for a group. The first index may be at most lastIndex + 1; an
   * index at or below lastIndex truncates the log there (Raft's conflict resolution).
   */
  appendEntries(group: number, entries: readonly Entry[]): void {
    this.checkWritable();
    checkId('group', group);
    if (entries.length === 0) return;
    checkConsecutive(group, entries);
    const cursor = this.cursor(group);
    const first = entries[0]!.index;
    const last = entries[entries.length - 1]!.index;
    if (first <= cursor.snapshotIndex) {
      throw new WalInvalidAppendError(
        `group ${group}: entry ${first} is inside the snapshot at ${cursor.snapshotIndex}`,
      );
    }
    if (cursor.lastIndex !== null && first > cursor.lastIndex + 1) {
      throw new WalInvalidAppendError(
        `group ${group}: entry ${first} leaves a gap after ${cursor.lastIndex}`,
      );
    }
    const payloadBytes = entriesPayloadBytes(entries);
    const keys = this.encryption;
    this.checkRecordSize(keys === undefined ? payloadBytes : sealedEntriesPayloadBytes(payloadBytes, keys));
    const bytes =
      keys === undefined
        ? encodeEntries(group, entries, payloadBytes)
        : encodeSealedEntries(group, entries, payloadBytes, keys);
    this.enqueue({ bytes, group, lastIndex: last, keyId: keys?.activeKeyId() });
    cursor.lastIndex = last;
  }

  /** Buffers a snapshot marker: the group's state up to meta.index lives in a snapshot file. */
  saveSnapshotMarker(group: number, metadata: SnapshotMetadata): void {
    this.checkWritable();
    checkId('group', group);
    checkId('snapshot index', metadata.index);
    checkId('snapshot term', metadata.term);
    const cursor = this.cursor(group);
    if (metadata.index < cursor.snapshotIndex) {
      throw new WalInvalidAppendError(
        `group ${group}: snapshot marker ${metadata.index} is older than ${cursor.snapshotIndex}`,
      );
    }
    const marker = structuredClone(metadata);
    this.enqueue({ bytes: encodeSnapshotMarker(group, marker), group, marker });
    cursor.snapshotIndex = marker.index;
    cursor.lastIndex = Math.max(cursor.lastIndex ?? 0, marker.index);
  }

  /** Resolves when everything buffered before this call is durable; rejects if its batch failed. */
  sync(): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.pendingBatch) {
      // Somebody waits for it: a batch of lazy records only must go out now.
      this.pendingEager = true;
      this.scheduleFlush();
      return this.pendingBatch.promise;
    }
    if (this.inflightBatch) return this.inflightBatch.promise;
    return Promise.resolve();
  }

  /**
   * sync(), but the buffered records are written now rather than at the end of the turn: for a
   * single writer that has gathered its batch already (the Raft loop, once per Ready), where
   * waiting a turn would only add latency. Later appends of this turn form the next batch.
   */
  syncNow(): Promise<void> {
    const batch = this.pendingBatch;
    if (this.failure || batch === null || this.inflightBatch !== null) return this.sync();
    void this.flush();
    return batch.promise;
  }

  /**
   * Starts a new segment now (the next batch goes to it) and resolves once it is durable: after
   * a key rotation, so that the records sealed under the old key sit only in sealed segments,
   * which releaseTo can delete. Writes each group's current hard state again to make the batch.
   */
  rolloverNow(): Promise<void> {
    this.checkWritable();
    this.rolloverRequested = true;
    // The newest hard state of each group, never an older one after a newer one still in flight.
    const latest = new Map([...this.placedHardStates, ...this.bufferedHardStates]);
    for (const [group, hardState] of latest) this.bufferHardState(group, hardState, true);
    return this.sync();
  }

  /** Encryption key ids that sealed entries records in the segments still on disk use. */
  keyIdsInUse(): string[] {
    const ids = new Set<string>();
    for (const segment of [...this.sealed, this.active]) for (const id of segment.keyIds) ids.add(id);
    return [...ids].sort();
  }

  /**
   * Declares the group no longer needs entries <= index (index must not pass the group's snapshot
   * marker), then deletes whole old segments that no group needs. Waits for buffered records
   * (the marker) to be durable first, so a crash never leaves entries deleted but unmarked.
   * Resolves with the number of segments deleted.
   */
  async releaseTo(group: number, index: number): Promise<number> {
    this.checkWritable();
    checkId('group', group);
    checkId('release index', index);
    const snapshotIndex = this.cursors.get(group)?.snapshotIndex ?? 0;
    if (index > snapshotIndex) {
      throw new WalInvalidAppendError(
        `group ${group}: cannot release to ${index}, past its snapshot marker at ${snapshotIndex}`,
      );
    }
    this.released.set(group, Math.max(this.released.get(group) ?? 0, index));
    await this.sync();
    return this.schedulePurge();
  }

  /**
   * Queues a deletion of the segments no group needs. A deletion that fails fails the WAL like a
   * failed write (the disk misbehaves; fail-stop): a rollover's purge has no caller waiting, so
   * its failure surfaces on the next call instead of as an unhandled rejection.
   */
  private schedulePurge(): Promise<number> {
    const run = this.purgeChain
      .then(() => {
        if (this.failure) throw this.failure;
        return this.purgeSegments();
      })
      .catch((err: unknown) => {
        this.failure ??= err instanceof WalFailedError ? err : new WalFailedError(err);
        throw this.failure;
      });
    run.catch(() => {});
    this.purgeChain = run;
    return run;
  }

  /** Flushes what is buffered, waits for deletions, and closes the active segment. */
  async close(): Promise<void> {
    if (this.closed) return;
    try {
      await this.sync();
      await this.purgeChain;
    } finally {
      this.closed = true;
      try {
        await this.active.fh.close();
      } finally {
        await this.lock?.release();
      }
    }
  }

  stats(): WalStats {
    return { ...this.counters };
  }

  /** Sequence numbers of the segment files currently in use, oldest first. */
  segmentSeqs(): number[] {
    return [...this.sealed.map((s) => s.seq), this.active.seq];
  }

  private cursor(group: number): GroupCursor {
    let c = this.cursors.get(group);
    if (!c) {
      c = { lastIndex: null, snapshotIndex: 0 };
      this.cursors.set(group, c);
    }
    return c;
  }

  private checkWritable(): void {
    if (this.failure) throw this.failure;
    if (this.closed) throw new WalClosedError();
  }

  private checkRecordSize(payloadBytes: number): void {
    const recordBytes = RECORD_HEADER_BYTES + payloadBytes;
    if (recordBytes > this.recordBytesMax) throw new WalRecordTooLargeError(recordBytes, this.recordBytesMax);
    if (this.pendingBytes + recordBytes > this.pendingBytesMax) {
      throw new WalOverloadError(this.pendingBytes + recordBytes, this.pendingBytesMax);
    }
  }

  /** `eager`: the record asks for a flush; a lazy one waits for the next record that does. */
  private enqueue(record: PendingRecord, eager = true): void {
    if (record.lastIndex === undefined) this.checkRecordSize(record.bytes.length - RECORD_HEADER_BYTES);
    this.pending.push(record);
    this.pendingBytes += record.bytes.length;
    if (!this.pendingBatch) this.pendingBatch = newBatch();
    if (!eager) return;
    this.pendingEager = true;
    this.scheduleFlush();
  }

  private scheduleFlush(): void {
    if (this.flushScheduled || this.inflightBatch) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      void this.flush();
    });
  }

  private async flush(): Promise<void> {
    if (this.inflightBatch || !this.pendingBatch) return;
    const batch = this.pendingBatch;
    const records = this.pending;
    this.pending = [];
    this.pendingBytes = 0;
    this.pendingBatch = null;
    this.pendingEager = false;
    this.inflightBatch = batch;
    try {
      await this.writeBatch(records);
      this.counters.batches++;
      this.counters.recordsWritten += records.length;
      batch.resolve();
    } catch (err) {
      this.failure = new WalFailedError(err);
      batch.reject(this.failure);
    } finally {
      this.inflightBatch = null;
    }
    // Records buffered while this batch was in flight form the next one.
    const next = this.pendingBatch as Batch | null;
    if (!next) return;
    if (this.failure) {
      next.reject(this.failure);
      this.pendingBatch = null;
      this.pending = [];
      return;
    }
    if (this.pendingEager) this.scheduleFlush();
  }

  /** One write + one fdatasync per segment touched (one, unless the batch crosses a rollover). */
  private async writeBatch(records: PendingRecord[]): Promise<void> {
    let run: Buffer[] = [];
    let runBytes = 0;
    const rolloverRequested = this.rolloverRequested;
    this.rolloverRequested = false;
    for (const [i, record] of records.entries()) {
      if (
        (i === 0 && rolloverRequested) ||
        this.active.offset + runBytes + record.bytes.length > this.active.size
      ) {
        if (runBytes > 0) await this.writeRun(run, runBytes);
        run = [];
        runBytes = 0;
        await this.rollover(record.bytes.length);
      }
      run.push(record.bytes);
      runBytes += record.bytes.length;
      this.place(record);
    }
    if (runBytes > 0) await this.writeRun(run, runBytes);
  }

  private async writeRun(run: Buffer[], runBytes: number): Promise<void> {
    const data = run.length === 1 ? run[0]! : Buffer.concat(run, runBytes);
    await this.io.write(this.active.fh, data, this.active.offset);
    this.active.offset += runBytes;
    await this.io.datasync(this.active.fh);
  }

  private place(record: PendingRecord): void {
    if (record.keyId !== undefined) this.active.keyIds.add(record.keyId);
    if (record.hardState) this.placedHardStates.set(record.group, record.hardState);
    if (record.marker) this.placedMarkers.set(record.group, record.marker);
    if (record.lastIndex !== undefined) {
      const max = this.active.maxIndexByGroup;
      max.set(record.group, Math.max(max.get(record.group) ?? 0, record.lastIndex));
    }
  }

  private async rollover(nextRecordBytes: number): Promise<void> {
    const seq = this.active.seq + 1;
    const head: Buffer[] = [encodeSegmentHeader(seq)];
    for (const [group, hs] of this.placedHardStates) head.push(encodeHardState(group, hs));
    for (const [group, marker] of this.placedMarkers) head.push(encodeSnapshotMarker(group, marker));
    const options = {
      segmentBytes: this.segmentBytes,
      minimumBytes: nextRecordBytes,
      preallocate: this.preallocate,
    };
    const next = await createSegment(this.dir, seq, head, options, this.io);
    this.counters.segmentsCreated++;
    const previous = this.active;
    const { seq: prevSeq, path, maxIndexByGroup, keyIds } = previous;
    this.sealed.push({ seq: prevSeq, path, maxIndexByGroup, keyIds });
    this.active = next;
    await previous.fh.close();
    // The segment just sealed may hold nothing any group still needs.
    if (this.released.size > 0) void this.schedulePurge();
  }

  /**
   * How many of the oldest segments may go: those in which every group released all its entries.
   * Replay then starts at a segment whose head may hold an older marker than the one that allowed
   * the deletion; Replay heals exactly that gap once it meets the newer (durable) marker.
   */
  private deletableCount(): number {
    let count = 0;
    while (count < this.sealed.length && this.isReleased(this.sealed[count]!)) count++;
    return count;
  }

  private isReleased(segment: SealedSegment): boolean {
    for (const [group, maxIndex] of segment.maxIndexByGroup) {
      if (maxIndex > (this.released.get(group) ?? 0)) return false;
    }
    return true;
  }

  /** Deletes the longest prefix of sealed segments no group needs, oldest first. */
  private async purgeSegments(): Promise<number> {
    let deleted = 0;
    for (let count = this.deletableCount(); count > 0; count--) {
      const victim = this.sealed.shift()!;
      await unlink(victim.path);
      // One directory sync per unlink keeps deletions in order on disk: a crash can never leave
      // a later segment gone while an earlier one survives (a sequence gap fails recovery).
      await this.io.syncDir(this.dir);
      deleted++;
      this.counters.segmentsDeleted++;
    }
    return deleted;
  }
}

/** Key ids of the sealed entries records of one recovered segment. */
function keyIdsOf(records: readonly ScannedRecord[]): Set<string> {
  const ids = new Set<string>();
  for (const { record } of records)
    if (record.type === RecordType.Entries && record.keyId) ids.add(record.keyId);
  return ids;
}

/** Highest entry index per group in one recovered segment, for deciding what may be deleted. */
function maxIndexes(records: readonly ScannedRecord[]): Map<number, number> {
  const maxIndexByGroup = new Map<number, number>();
  for (const { record } of records) {
    if (record.type !== RecordType.Entries) continue;
    const lastIndex = record.entries[record.entries.length - 1]!.index;
    maxIndexByGroup.set(record.group, Math.max(maxIndexByGroup.get(record.group) ?? 0, lastIndex));
  }
  return maxIndexByGroup;
}

function validateOptions(options: WalOptions): void {
  const { segmentBytes, recordBytesMax, pendingBytesMax, preallocate } = options;
  if (preallocate !== undefined && preallocate !== 'sparse' && preallocate !== 'zero-fill') {
    throw new RangeError(
      `WAL option preallocate must be 'sparse' or 'zero-fill', got ${String(preallocate)}`,
    );
  }
  for (const [name, value] of Object.entries({ segmentBytes, recordBytesMax, pendingBytesMax })) {
    if (value !== undefined && (!Number.isSafeInteger(value) || value < 1024)) {
      throw new RangeError(`WAL option ${name} must be an integer >= 1024, got ${value}`);
    }
  }
}

function checkId(name: string, value: number): void {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new WalInvalidAppendError(`${name} must be a non-negative safe integer, got ${value}`);
  }
}

function checkConsecutive(group: number, entries: readonly Entry[]): void {
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i]!;
    checkId('entry index', e.index);
    checkId('entry term', e.term);
    if (e.index === 0) throw new WalInvalidAppendError(`group ${group}: entry index 0 is reserved`);
    if (i > 0 && e.index !== entries[i - 1]!.index + 1) {
      throw new WalInvalidAppendError(
        `group ${group}: entries ${entries[i - 1]!.index}, ${e.index} not consecutive`,
      );
    }
  }
}

/** Lists segment sequence numbers in order, removing half-created temp files first. */
async function listSegments(dir: string, io: WalIo): Promise<number[]> {
  const names = await readdir(dir);
  const stale = names.filter((n) => n.endsWith(`.wal${TEMP_SUFFIX}`));
  for (const name of stale) await unlink(join(dir, name));
  if (stale.length > 0) await io.syncDir(dir);
  const seqs = names
    .map(parseSegmentName)
    .filter((s): s is number => s !== null)
    .sort((a, b) => a - b);
  for (let i = 1; i < seqs.length; i++) {
    if (seqs[i] !== seqs[i - 1]! + 1) {
      throw new WalCorruptionError(segmentPath(dir, seqs[i]!), 0, `segment ${seqs[i - 1]! + 1} is missing`);
    }
  }
  return seqs;
}

async function createSegment(
  dir: string,
  seq: number,
  head: Buffer[],
  options: { segmentBytes?: number; minimumBytes?: number; preallocate?: 'sparse' | 'zero-fill' },
  io: WalIo,
): Promise<ActiveSegment> {
  const path = segmentPath(dir, seq);
  const tmp = path + TEMP_SUFFIX;
  const headBytes = Buffer.concat(head);
  const size = Math.max(
    options.segmentBytes ?? DEFAULT_SEGMENT_BYTES,
    headBytes.length + (options.minimumBytes ?? 0),
  );
  const fh = await open(tmp, 'w+');
  try {
    await fh.truncate(size);
    if (options.preallocate === 'zero-fill') await writeZeros(fh, headBytes.length, size);
    await io.write(fh, headBytes, 0);
    await io.datasync(fh);
    await rename(tmp, path);
    await io.syncDir(dir);
  } catch (err) {
    await fh.close();
    throw err;
  }
  return { seq, path, fh, offset: headBytes.length, size, maxIndexByGroup: new Map(), keyIds: new Set() };
}

const ZERO_FILL_BLOCK = Buffer.alloc(1024 * 1024);

async function writeZeros(fh: FileHandle, from: number, to: number): Promise<void> {
  for (let at = from; at < to; at += ZERO_FILL_BLOCK.length) {
    const length = Math.min(ZERO_FILL_BLOCK.length, to - at);
    await defaultWalIo.write(fh, ZERO_FILL_BLOCK.subarray(0, length), at);
  }
}

/** Cuts a torn append off the last segment, keeping its preallocated size, durably. */
async function zeroTail(path: string, validEnd: number, fileBytes: number): Promise<void> {
  const fh = await open(path, 'r+');
  try {
    await fh.truncate(validEnd);
    await fh.truncate(fileBytes);
    await fh.sync();
  } finally {
    await fh.close();
  }
}
