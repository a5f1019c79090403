// Typed keyspace errors. `code` is stable (switch on it); `message` is etcd's text where etcd has
// one, because clients match on it; `grpcCode` / `grpcMessage` are what etcd puts on the wire
// (etcd's server prefixes mvcc errors with "etcdserver: ").

/** gRPC status codes used by the etcd v3 API for these errors. */
export const GrpcCode = {
  InvalidArgument: 3,
  NotFound: 5,
  FailedPrecondition: 9,
  ResourceExhausted: 8,
  OutOfRange: 11,
  Internal: 13,
  DataLoss: 15,
} as const;
export type GrpcCodeValue = (typeof GrpcCode)[keyof typeof GrpcCode];

export type MvccErrorCode =
  | 'compacted'
  | 'future-revision'
  | 'key-not-provided'
  | 'duplicate-key'
  | 'too-many-ops'
  | 'lease-not-found'
  | 'lease-exists'
  | 'lease-ttl-too-large'
  | 'value-provided'
  | 'lease-provided'
  | 'key-not-found'
  | 'invalid-request'
  | 'watch-not-found'
  | 'snapshot-invalid'
  | 'closed'
  | 'failed'
  | 'snapshot-aborted'
  | 'corrupt';

export abstract class MvccError extends Error {
  abstract readonly code: MvccErrorCode;
  abstract readonly grpcCode: GrpcCodeValue;
  /** The text etcd sends on the wire for this error. */
  get grpcMessage(): string {
    return this.message.startsWith('etcdserver: ') ? this.message : `etcdserver: ${this.message}`;
  }
}

/** A read or watch asked for a revision that compaction already removed. */
export class CompactedError extends MvccError {
  readonly code = 'compacted';
  readonly grpcCode = GrpcCode.OutOfRange;
  constructor(readonly compactRevision: number) {
    super('mvcc: required revision has been compacted');
    this.name = 'CompactedError';
  }
}

export class FutureRevisionError extends MvccError {
  readonly code = 'future-revision';
  readonly grpcCode = GrpcCode.OutOfRange;
  constructor(
    readonly requested: number,
    readonly current: number,
  ) {
    super('mvcc: required revision is a future revision');
    this.name = 'FutureRevisionError';
  }
}

export class KeyNotProvidedError extends MvccError {
  readonly code = 'key-not-provided';
  readonly grpcCode = GrpcCode.InvalidArgument;
  constructor() {
    super('etcdserver: key is not provided');
    this.name = 'KeyNotProvidedError';
  }
}

export class DuplicateKeyError extends MvccError {
  readonly code = 'duplicate-key';
  readonly grpcCode = GrpcCode.InvalidArgument;
  constructor() {
    super('etcdserver: duplicate key given in txn request');
    this.name = 'DuplicateKeyError';
  }
}

export class TooManyOpsError extends MvccError {
  readonly code = 'too-many-ops';
  readonly grpcCode = GrpcCode.InvalidArgument;
  constructor(
    readonly ops: number,
    readonly opsMax: number,
  ) {
    super('etcdserver: too many operations in txn request');
    this.name = 'TooManyOpsError';
  }
}

export class LeaseNotFoundError extends MvccError {
  readonly code = 'lease-not-found';
  readonly grpcCode = GrpcCode.NotFound;
  constructor(readonly leaseId: bigint) {
    super('etcdserver: requested lease not found');
    this.name = 'LeaseNotFoundError';
  }
}

export class LeaseExistsError extends MvccError {
  readonly code = 'lease-exists';
  readonly grpcCode = GrpcCode.FailedPrecondition;
  constructor(readonly leaseId: bigint) {
    super('etcdserver: lease already exists');
    this.name = 'LeaseExistsError';
  }
}

export class LeaseTtlTooLargeError extends MvccError {
  readonly code = 'lease-ttl-too-large';
  readonly grpcCode = GrpcCode.OutOfRange;
  constructor(readonly ttlSeconds: number) {
    super('etcdserver: too large lease TTL');
    this.name = 'LeaseTtlTooLargeError';
  }
}

/** put with ignore_value and a non-empty value. */
export class ValueProvidedError extends MvccError {
  readonly code = 'value-provided';
  readonly grpcCode = GrpcCode.InvalidArgument;
  constructor() {
    super('etcdserver: value is provided');
    this.name = 'ValueProvidedError';
  }
}

/** put with ignore_lease and a non-zero lease. */
export class LeaseProvidedError extends MvccError {
  readonly code = 'lease-provided';
  readonly grpcCode = GrpcCode.InvalidArgument;
  constructor() {
    super('etcdserver: lease is provided');
    this.name = 'LeaseProvidedError';
  }
}

/** put with ignore_value / ignore_lease on a key that does not exist. */
export class KeyNotFoundError extends MvccError {
  readonly code = 'key-not-found';
  readonly grpcCode = GrpcCode.InvalidArgument;
  constructor() {
    super('etcdserver: key not found');
    this.name = 'KeyNotFoundError';
  }
}

/** A request the keyspace cannot interpret (negative limit, non-integer revision, ...). */
export class InvalidRequestError extends MvccError {
  readonly code = 'invalid-request';
  readonly grpcCode = GrpcCode.InvalidArgument;
  constructor(detail: string) {
    super(`etcdserver: invalid request: ${detail}`);
    this.name = 'InvalidRequestError';
  }
}

export class WatchNotFoundError extends MvccError {
  readonly code = 'watch-not-found';
  readonly grpcCode = GrpcCode.NotFound;
  constructor(readonly watchId: number) {
    super(`mvcc: watcher ${watchId} does not exist`);
    this.name = 'WatchNotFoundError';
  }
}

/** A snapshot file failed verification before restore; the live keyspace was left untouched. */
export class SnapshotInvalidError extends MvccError {
  readonly code = 'snapshot-invalid';
  readonly grpcCode = GrpcCode.DataLoss;
  constructor(detail: string) {
    super(`mvcc: snapshot is invalid: ${detail}`);
    this.name = 'SnapshotInvalidError';
  }
}

export class ClosedError extends MvccError {
  readonly code = 'closed';
  readonly grpcCode = GrpcCode.FailedPrecondition;
  constructor() {
    super('mvcc: keyspace is closed');
    this.name = 'ClosedError';
  }
}

/**
 * Replacing the database file failed after the live one was closed: there is no keyspace to serve
 * from any more, and every later call fails with this. The node must stop.
 */
export class KeyspaceFailedError extends MvccError {
  readonly code = 'failed';
  readonly grpcCode = GrpcCode.Internal;
  constructor(
    readonly path: string,
    override readonly cause: unknown,
  ) {
    super(
      `mvcc: replacing the database in ${path} failed: ${cause instanceof Error ? cause.message : String(cause)}`,
    );
    this.name = 'KeyspaceFailedError';
  }
}

/** A copy of the keyspace being read out (a snapshot stream) lost its view: the keyspace was closed or replaced. */
export class SnapshotAbortedError extends MvccError {
  readonly code = 'snapshot-aborted';
  readonly grpcCode = GrpcCode.Internal;
  constructor() {
    super('mvcc: snapshot aborted: the keyspace was closed or replaced while it was being read');
    this.name = 'SnapshotAbortedError';
  }
}

/** The on-disk state broke an invariant. Never caught and ignored: the node must stop. */
export class CorruptError extends MvccError {
  readonly code = 'corrupt';
  readonly grpcCode = GrpcCode.DataLoss;
  constructor(detail: string) {
    super(`mvcc: corrupt keyspace: ${detail}`);
    this.name = 'CorruptError';
  }
}

export function assertNever(value: never): never {
  throw new Error(`unexpected value: ${JSON.stringify(value)}`);
}

export function invariant(condition: boolean, detail: string): asserts condition {
  if (!condition) throw new CorruptError(detail);
}
