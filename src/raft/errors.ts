// Typed errors of the consensus core. Storage errors mirror the conditions etcd's raft Storage
// reports (compacted, unavailable, snapshot not ready); invariant errors mean a bug or a lying
// disk and must stop the node.

export abstract class RaftError extends Error {
  abstract readonly code: string;
}

/** The requested index is below the first available index (covered by a snapshot). */
export class CompactedError extends RaftError {
  readonly code = 'RAFT_COMPACTED';
  constructor(index: number, firstIndex: number) {
    super(`raft log index ${index} is compacted (first available index is ${firstIndex})`);
  }
}

/** The requested index is beyond the last index of the log. */
export class UnavailableError extends RaftError {
  readonly code = 'RAFT_UNAVAILABLE';
  constructor(index: number, lastIndex: number) {
    super(`raft log index ${index} is unavailable (last index is ${lastIndex})`);
  }
}

/** The storage is still building a snapshot; the leader retries on a later heartbeat. */
export class SnapshotTemporarilyUnavailableError extends RaftError {
  readonly code = 'RAFT_SNAPSHOT_TEMPORARILY_UNAVAILABLE';
  constructor() {
    super('raft snapshot is temporarily unavailable');
  }
}

/** A snapshot older than the one already held was offered. */
export class SnapshotOutOfDateError extends RaftError {
  readonly code = 'RAFT_SNAPSHOT_OUT_OF_DATE';
  constructor(index: number, current: number) {
    super(`raft snapshot at index ${index} is older than the current snapshot at index ${current}`);
  }
}

/** A membership change that would produce an invalid configuration. */
export class ConfChangeError extends RaftError {
  readonly code = 'RAFT_CONF_CHANGE_INVALID';
}

/** An impossible state: a bug in the core, a misbehaving driver, or storage that lost data. */
export class RaftInvariantError extends RaftError {
  readonly code = 'RAFT_INVARIANT';
  constructor(message: string) {
    super(`raft invariant violated: ${message}`);
  }
}

/** A driver misuse of the API (e.g. ready() twice without advance()). */
export class RaftUsageError extends RaftError {
  readonly code = 'RAFT_USAGE';
}

export function assertNever(value: never): never {
  throw new RaftInvariantError(`unexpected value ${String(value)}`);
}
