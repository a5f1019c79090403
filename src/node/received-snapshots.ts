// Snapshots a peer streams to this member go to a file as they arrive, never whole into memory
// (a keyspace may be gigabytes), and reach the snapshot directory only once Raft takes them:
//
//   SnapshotBegin → sink(message): a snapshot file `<scratch>/received-<term>-<index>-<n>.snap`
//   SnapshotChunk → append(): a framed chunk with its own CRC (the transport already checked the
//                   chunk's CRC on arrival); the socket pauses while the disk is behind
//   SnapshotEnd   → finish() (the transport checked length and whole-stream CRC): trailer, fsync,
//                   rename; the MsgSnap is delivered with a token naming the file as its data
//   Raft accepts  → WalLog.persist adopts the file into the snap dir (rename), then writes the
//                   WAL marker; the install reads it back, verifying every frame
//
// A transfer that fails or is refused leaves nothing: the unfinished file is removed, and so is a
// finished one Raft does not take (a stale snapshot: see discard). What a crash leaves behind goes
// at the next start (the scratch dir is emptied). A failure to write is a storage failure: the
// member stops.

import { readdir, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { EMPTY_BYTES, type Message, type Snapshot, type SnapshotMetadata } from '../raft/types.js';
import type { SnapshotFileWriter, SnapshotStore } from '../storage/snapshot-store.js';
import type { SnapshotSink } from '../transport/snapshot.js';

const TOKEN_PREFIX = 'concord-received-snapshot:';
const RECEIVED_NAME = /^received-([0-9a-f]{16})-([0-9a-f]{16})-(\d+)\.snap$/;

export class ReceivedSnapshots {
  private sequence = 0;

  constructor(
    /** Scratch dir on the same file system as the snapshot dir (emptied at start). */
    private readonly dir: string,
    private readonly store: SnapshotStore,
    /** Writing a received snapshot failed: the member must stop. */
    private readonly onStorageError: (error: unknown) => void,
  ) {}

  /** A sink for the MsgSnap whose data is about to stream in. */
  sink(message: Message): SnapshotSink {
    const metadata = message.snapshot!.metadata;
    const name = receivedName(metadata, ++this.sequence);
    const path = join(this.dir, name);
    let writer: Promise<SnapshotFileWriter> | undefined;
    /** Every write, in order; abort() discards after the last one settled. */
    let pending: Promise<unknown> = Promise.resolve();
    let aborted = false;
    const open = (): Promise<SnapshotFileWriter> => {
      writer ??= this.store.writer(metadata, path);
      return writer;
    };
    const guarded = async <T>(work: () => Promise<T>): Promise<T> => {
      const run = pending.then(work);
      pending = run.catch(() => undefined);
      try {
        return await run;
      } catch (error) {
        if (!aborted) this.onStorageError(error);
        throw error;
      }
    };
    return {
      write: (chunk) => guarded(async () => (await open()).append(chunk)),
      finish: () =>
        guarded(async () => {
          // No data: the bootstrap snapshot (an empty keyspace), delivered as such, as in memory.
          if (writer === undefined) return EMPTY_BYTES;
          await (await open()).commit();
          return tokenFor(name);
        }),
      abort: () => {
        aborted = true;
        pending = pending.then(async () => {
          if (writer === undefined) return;
          await (await writer.catch(() => undefined))?.discard();
          // Aborted after finish() committed (the connection dropped before delivery).
          await unlink(path).catch(() => undefined);
        });
      },
    };
  }

  /** The received file a delivered snapshot's data names, or undefined (in-memory data). */
  fileOf(snapshot: Snapshot): string | undefined {
    const data = snapshot.data;
    if (data.length <= TOKEN_PREFIX.length || data.length > TOKEN_PREFIX.length + 64) return undefined;
    const text = Buffer.from(data.buffer, data.byteOffset, data.length).toString('latin1');
    if (!text.startsWith(TOKEN_PREFIX)) return undefined;
    const name = text.slice(TOKEN_PREFIX.length);
    const match = RECEIVED_NAME.exec(name);
    if (match === null) return undefined;
    const { term, index } = snapshot.metadata;
    if (Number.parseInt(match[1]!, 16) !== term || Number.parseInt(match[2]!, 16) !== index) return undefined;
    return join(this.dir, name);
  }

  /**
   * Moves the received file of a snapshot Raft took into the snapshot dir (durably). Received
   * files of older snapshots go: Raft can no longer take them (one it took and then replaced
   * with a newer one before persisting would otherwise stay).
   */
  async adopt(snapshot: Snapshot): Promise<void> {
    const path = this.fileOf(snapshot);
    if (path === undefined)
      throw new Error(`snapshot at index ${snapshot.metadata.index} was not received to a file`);
    await this.store.adopt(path, snapshot.metadata);
    await this.discardBelow(snapshot.metadata.index + 1);
  }

  /** Removes the received file of a delivered snapshot Raft did not take. */
  discard(snapshot: Snapshot): void {
    const path = this.fileOf(snapshot);
    if (path !== undefined) void unlink(path).catch(() => undefined);
  }

  /** Removes finished files of snapshots below `index`. */
  private async discardBelow(index: number): Promise<void> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch {
      return;
    }
    for (const name of names) {
      const match = RECEIVED_NAME.exec(name);
      if (match !== null && Number.parseInt(match[2]!, 16) < index)
        await unlink(join(this.dir, name)).catch(() => undefined);
    }
  }
}

function receivedName(metadata: SnapshotMetadata, sequence: number): string {
  const hex = (n: number) => n.toString(16).padStart(16, '0');
  return `received-${hex(metadata.term)}-${hex(metadata.index)}-${sequence}.snap`;
}

function tokenFor(name: string): Uint8Array {
  return Buffer.from(`${TOKEN_PREFIX}${name}`, 'latin1');
}
