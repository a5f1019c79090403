// What a member does when its storage fails: it stops (fail-stop), never limps on. A member that
// cannot persist but keeps its peer connections open is worse than a dead one: as leader it
// keeps heartbeating and holds leadership while refusing every request, and a supervisor
// (systemd, Kubernetes) that only watches the process sees nothing wrong. So every storage
// failure ends in ConcordNode.failStop() (src/node): Raft stops, the peer transport closes (the
// others elect a new leader), client calls are refused, the cause is logged once, and
// whenFailed() hands it to the embedder — the CLI then closes its listeners and exits with
// EX_IOERR.
//
// After an fsync error the page cache no longer tells what is on disk ("fsyncgate"), so a retry
// could acknowledge data that never reached it: restarting from the WAL is the only safe retry.

import { statfsSync } from 'node:fs';
import { constants as osConstants } from 'node:os';

/** Exit status of `concord` after a fatal storage error: sysexits.h EX_IOERR. */
export const EXIT_STORAGE_FAILED = 74;

/** The operations whose failure stops the member (named in the error and the log). */
export type FailStopOperation =
  /** The Raft loop's persist: WAL append, fdatasync, segment rollover, a snapshot file it points at. */
  | 'wal-write'
  /** The LMDB transaction applying committed entries (lease grants and revokes included). */
  | 'apply'
  /** Replacing the keyspace with a snapshot from the leader. */
  | 'snapshot-install'
  /** Writing a snapshot a peer streams to this member. */
  | 'snapshot-receive'
  /** The background copy of the keyspace and the snapshot file made from it. */
  | 'snapshot-create'
  /** The snapshot's WAL marker and the deletion of the WAL segments it frees. */
  | 'wal-release'
  /** Deleting snapshot files beyond the retained ones. */
  | 'snapshot-prune'
  /** Looking at the database file's size for the space quota. */
  | 'quota-check'
  /** A physical compaction step outside an apply. */
  | 'compaction'
  /** Swapping the defragmented database file in (the live one was already closed). */
  | 'defragment'
  /**
   * Encryption at rest: a sealed record whose AES-GCM tag fails on read, a key the cluster agreed
   * on that the key file lacks, or a step of the re-encryption after a key rotation.
   */
  | 'encryption'
  /** Anything else the Raft loop threw: a broken invariant. */
  | 'raft-loop';

/** Below this many available bytes on the data dir's file system, an I/O error is reported as a full disk. */
const NEARLY_FULL_BYTES = 16 * 1024 * 1024;

interface ErrnoLike {
  code?: unknown;
  errno?: unknown;
  syscall?: unknown;
  path?: unknown;
  file?: unknown;
  offset?: unknown;
  cause?: unknown;
  message?: unknown;
}

export class FailStopError extends Error {
  readonly code = 'FAIL_STOP';
  /** The system error code (EIO, ENOSPC, …) found in the cause chain, if any. */
  readonly errno: string | undefined;
  /** The file the failed operation was on, where the cause names one. */
  readonly file: string | undefined;
  /** Byte offset in that file (corruption errors carry one). */
  readonly offset: number | undefined;
  /** Bytes available to us on the data dir's file system when the failure was handled. */
  readonly availableBytes: number | undefined;

  constructor(
    readonly operation: FailStopOperation,
    override readonly cause: unknown,
    dataDir?: string,
  ) {
    const found = inspect(cause);
    const availableBytes = dataDir === undefined ? undefined : available(dataDir);
    const what =
      operation === 'raft-loop' ? 'fatal error in the Raft loop' : `fatal storage error in ${operation}`;
    let text = `${what}: ${found.message}`;
    if (found.errno !== undefined && !found.message.includes(found.errno)) text += ` (${found.errno})`;
    if (found.file !== undefined && !found.message.includes(found.file)) text += `; file ${found.file}`;
    if (found.offset !== undefined) text += ` at byte offset ${found.offset}`;
    if (availableBytes !== undefined && availableBytes < NEARLY_FULL_BYTES) {
      text += `; the file system holding ${dataDir} has ${availableBytes} bytes available: the disk is full`;
    }
    super(text);
    this.name = 'FailStopError';
    this.errno = found.errno;
    this.file = found.file;
    this.offset = found.offset;
    this.availableBytes = availableBytes;
  }

  /** Fields for the structured log line. */
  logFields(): Record<string, unknown> {
    return {
      operation: this.operation,
      error: this.message,
      errno: this.errno,
      file: this.file,
      offset: this.offset,
      availableBytes: this.availableBytes,
      stack: this.cause instanceof Error ? this.cause.stack : undefined,
    };
  }
}

/** The first message, errno name, file and offset along the cause chain (wrappers add context). */
function inspect(cause: unknown): { message: string; errno?: string; file?: string; offset?: number } {
  const message = cause instanceof Error ? cause.message : String(cause);
  const found: { message: string; errno?: string; file?: string; offset?: number } = { message };
  let current: unknown = cause;
  for (let depth = 0; depth < 8 && typeof current === 'object' && current !== null; depth++) {
    const e = current as ErrnoLike;
    found.errno ??= errnoName(e.code) ?? errnoName(e.errno);
    if (found.file === undefined) {
      if (typeof e.path === 'string') found.file = e.path;
      else if (typeof e.file === 'string') found.file = e.file;
    }
    if (found.offset === undefined && typeof e.offset === 'number') found.offset = e.offset;
    current = e.cause;
  }
  return found;
}

/** 'EIO' for 'EIO', 5 or -5 (LMDB reports the number). */
function errnoName(code: unknown): string | undefined {
  if (typeof code === 'string' && /^E[A-Z0-9]+$/.test(code)) return code;
  if (typeof code !== 'number' || code === 0) return undefined;
  const wanted = Math.abs(code);
  for (const [name, value] of Object.entries(osConstants.errno)) if (value === wanted) return name;
  return undefined;
}

function available(dir: string): number | undefined {
  try {
    const stats = statfsSync(dir);
    return Number(stats.bavail) * Number(stats.bsize);
  } catch {
    return undefined;
  }
}
