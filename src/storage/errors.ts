// Typed failures of the storage layer. Each carries a stable `code` so callers (the server, the
// CLI) can react without parsing messages, and corruption errors name the file and byte offset so
// an operator can inspect the damage instead of guessing.

export type StorageErrorCode =
  | 'WAL_CORRUPT'
  | 'WAL_FAILED'
  | 'WAL_CLOSED'
  | 'WAL_LOCKED'
  | 'WAL_RECORD_TOO_LARGE'
  | 'WAL_OVERLOAD'
  | 'WAL_INVALID_APPEND'
  | 'SNAPSHOT_CORRUPT'
  | 'SNAPSHOT_INVALID';

export abstract class StorageError extends Error {
  abstract readonly code: StorageErrorCode;
}

/** A record that fails its CRC or cannot be decoded, somewhere a torn write cannot explain. */
export class WalCorruptionError extends StorageError {
  readonly code = 'WAL_CORRUPT' as const;
  constructor(
    readonly file: string,
    readonly offset: number,
    readonly reason: string,
  ) {
    super(
      `WAL corrupt in ${file} at byte offset ${offset}: ${reason}. ` +
        'The node must not start on a damaged log: restore this member from a peer or a backup.',
    );
    this.name = 'WalCorruptionError';
  }
}

/** A write or fsync failed earlier; the WAL is fail-stop and accepts nothing more. */
export class WalFailedError extends StorageError {
  readonly code = 'WAL_FAILED' as const;
  constructor(override readonly cause: unknown) {
    super(`WAL write failed and the log refuses further writes: ${describe(cause)}`);
    this.name = 'WalFailedError';
  }
}

export class WalClosedError extends StorageError {
  readonly code = 'WAL_CLOSED' as const;
  constructor() {
    super('WAL is closed');
    this.name = 'WalClosedError';
  }
}

/** Another live process (or another Wal in this one) has the directory open. */
export class WalLockedError extends StorageError {
  readonly code = 'WAL_LOCKED' as const;
  constructor(
    readonly dir: string,
    readonly ownerPid: number,
  ) {
    super(`WAL directory ${dir} is in use by process ${ownerPid}; stop it or use another data dir`);
    this.name = 'WalLockedError';
  }
}

export class WalRecordTooLargeError extends StorageError {
  readonly code = 'WAL_RECORD_TOO_LARGE' as const;
  constructor(
    readonly recordBytes: number,
    readonly recordBytesMax: number,
  ) {
    super(`WAL record of ${recordBytes} bytes exceeds recordBytesMax ${recordBytesMax}; split the append`);
    this.name = 'WalRecordTooLargeError';
  }
}

/** More bytes are buffered than pendingBytesMax: the caller must wait for sync() before adding more. */
export class WalOverloadError extends StorageError {
  readonly code = 'WAL_OVERLOAD' as const;
  constructor(
    readonly pendingBytes: number,
    readonly pendingBytesMax: number,
  ) {
    super(
      `WAL has ${pendingBytes} unsynced bytes buffered (pendingBytesMax ${pendingBytesMax}); await sync()`,
    );
    this.name = 'WalOverloadError';
  }
}

/** An append that would break the log's shape (a gap, an index under the snapshot, a bad id). */
export class WalInvalidAppendError extends StorageError {
  readonly code = 'WAL_INVALID_APPEND' as const;
  constructor(message: string) {
    super(message);
    this.name = 'WalInvalidAppendError';
  }
}

export class SnapshotCorruptionError extends StorageError {
  readonly code = 'SNAPSHOT_CORRUPT' as const;
  constructor(
    readonly file: string,
    readonly offset: number,
    readonly reason: string,
  ) {
    super(`snapshot ${file} corrupt at byte offset ${offset}: ${reason}`);
    this.name = 'SnapshotCorruptionError';
  }
}

/** Misuse of the snapshot API (finish before the trailer, bytes after it, bad metadata). */
export class SnapshotInvalidError extends StorageError {
  readonly code = 'SNAPSHOT_INVALID' as const;
  constructor(message: string) {
    super(message);
    this.name = 'SnapshotInvalidError';
  }
}

export function assertNever(value: never): never {
  throw new Error(`unreachable: unexpected value ${String(value)}`);
}

/** Invariant check: a broken one is a bug, so it throws loudly rather than limping on. */
export function invariant(condition: boolean, message: string): asserts condition {
  if (!condition) throw new Error(`storage invariant violated: ${message}`);
}

function describe(cause: unknown): string {
  return cause instanceof Error ? cause.message : String(cause);
}
