// Typed client errors. Every error a caller can see is a ConcordError with a stable `code`; the
// etcd message text (which other etcd clients match on) is kept in `etcdMessage`.
//
// `outcome` says what the caller may assume about a write that failed:
//   'not-applied' — the server (or the client, before sending) guarantees nothing was applied;
//   'unknown'     — the write may or may not have been applied (timeouts, dropped connections).

import { status as GrpcStatus, type ServiceError } from '@grpc/grpc-js';

export type WriteOutcome = 'not-applied' | 'unknown';

export type ConcordErrorCode =
  | 'unavailable'
  | 'no-leader'
  | 'deadline-exceeded'
  | 'compacted'
  | 'future-revision'
  | 'invalid-argument'
  | 'lease-not-found'
  | 'not-found'
  | 'permission-denied'
  | 'unauthenticated'
  | 'resource-exhausted'
  | 'failed-precondition'
  | 'cancelled'
  | 'client-closed'
  | 'lease-lost'
  | 'election-not-leader'
  | 'conflict-retries-exhausted'
  | 'server';

export class ConcordError extends Error {
  constructor(
    readonly code: ConcordErrorCode,
    message: string,
    readonly outcome: WriteOutcome,
    readonly grpcCode?: GrpcStatus,
    readonly etcdMessage?: string,
  ) {
    super(message);
    this.name = 'ConcordError';
  }
}

/** No endpoint could be reached, or the connection broke. */
export class UnavailableError extends ConcordError {
  constructor(message: string, outcome: WriteOutcome, grpcCode?: GrpcStatus, etcdMessage?: string) {
    super('unavailable', message, outcome, grpcCode, etcdMessage);
    this.name = 'UnavailableError';
  }
}

/** The member had no leader and refused the request before proposing it. */
export class NoLeaderError extends ConcordError {
  constructor(etcdMessage: string) {
    super('no-leader', etcdMessage, 'not-applied', GrpcStatus.UNAVAILABLE, etcdMessage);
    this.name = 'NoLeaderError';
  }
}

export class DeadlineExceededError extends ConcordError {
  constructor(message: string, outcome: WriteOutcome = 'unknown') {
    super('deadline-exceeded', message, outcome, GrpcStatus.DEADLINE_EXCEEDED);
    this.name = 'DeadlineExceededError';
  }
}

/** The requested revision was compacted; `compactRevision` is the oldest one still readable. */
export class CompactedError extends ConcordError {
  constructor(
    readonly compactRevision: bigint,
    etcdMessage = 'etcdserver: mvcc: required revision has been compacted',
  ) {
    super('compacted', etcdMessage, 'not-applied', GrpcStatus.OUT_OF_RANGE, etcdMessage);
    this.name = 'CompactedError';
  }
}

export class FutureRevisionError extends ConcordError {
  constructor(etcdMessage: string) {
    super('future-revision', etcdMessage, 'not-applied', GrpcStatus.OUT_OF_RANGE, etcdMessage);
    this.name = 'FutureRevisionError';
  }
}

export class InvalidArgumentError extends ConcordError {
  constructor(message: string, grpcCode?: GrpcStatus, etcdMessage?: string) {
    super('invalid-argument', message, 'not-applied', grpcCode, etcdMessage);
    this.name = 'InvalidArgumentError';
  }
}

export class LeaseNotFoundError extends ConcordError {
  constructor(etcdMessage = 'etcdserver: requested lease not found') {
    super('lease-not-found', etcdMessage, 'not-applied', GrpcStatus.NOT_FOUND, etcdMessage);
    this.name = 'LeaseNotFoundError';
  }
}

export class NotFoundError extends ConcordError {
  constructor(etcdMessage: string) {
    super('not-found', etcdMessage, 'not-applied', GrpcStatus.NOT_FOUND, etcdMessage);
    this.name = 'NotFoundError';
  }
}

export class PermissionDeniedError extends ConcordError {
  constructor(etcdMessage: string) {
    super('permission-denied', etcdMessage, 'not-applied', GrpcStatus.PERMISSION_DENIED, etcdMessage);
    this.name = 'PermissionDeniedError';
  }
}

export class UnauthenticatedError extends ConcordError {
  constructor(etcdMessage: string) {
    super('unauthenticated', etcdMessage, 'not-applied', GrpcStatus.UNAUTHENTICATED, etcdMessage);
    this.name = 'UnauthenticatedError';
  }
}

export class ResourceExhaustedError extends ConcordError {
  constructor(etcdMessage: string) {
    super('resource-exhausted', etcdMessage, 'not-applied', GrpcStatus.RESOURCE_EXHAUSTED, etcdMessage);
    this.name = 'ResourceExhaustedError';
  }
}

export class FailedPreconditionError extends ConcordError {
  constructor(etcdMessage: string, outcome: WriteOutcome = 'not-applied') {
    super('failed-precondition', etcdMessage, outcome, GrpcStatus.FAILED_PRECONDITION, etcdMessage);
    this.name = 'FailedPreconditionError';
  }
}

export class CancelledError extends ConcordError {
  constructor(message: string) {
    super('cancelled', message, 'unknown', GrpcStatus.CANCELLED);
    this.name = 'CancelledError';
  }
}

export class ClientClosedError extends ConcordError {
  constructor() {
    super('client-closed', 'the client was closed', 'not-applied');
    this.name = 'ClientClosedError';
  }
}

/** A lease could not be kept alive (it expired, was revoked, or could not be renewed in time). */
export class LeaseLostError extends ConcordError {
  constructor(
    readonly leaseId: bigint,
    readonly reason: 'expired' | 'revoked' | 'unrenewable',
  ) {
    super('lease-lost', `lease ${leaseId.toString(16)} lost: ${reason}`, 'unknown');
    this.name = 'LeaseLostError';
  }
}

export class ElectionNotLeaderError extends ConcordError {
  constructor(message = 'election: not leader') {
    super('election-not-leader', message, 'not-applied');
    this.name = 'ElectionNotLeaderError';
  }
}

export class ConflictRetriesExhaustedError extends ConcordError {
  constructor(what: string, attempts: number) {
    super(
      'conflict-retries-exhausted',
      `${what}: still conflicting after ${attempts} attempts`,
      'not-applied',
    );
    this.name = 'ConflictRetriesExhaustedError';
  }
}

/** Any other server error, with its gRPC code and text. */
export class ServerError extends ConcordError {
  constructor(grpcCode: GrpcStatus, etcdMessage: string, outcome: WriteOutcome) {
    super('server', etcdMessage, outcome, grpcCode, etcdMessage);
    this.name = 'ServerError';
  }
}

/**
 * etcd errors that are sent before a request is proposed to Raft, so a write that got one was
 * certainly not applied and may be retried:
 * - "no leader": the member has no leader (the proposal was dropped or never made);
 * - "too many requests": the apply backlog or rate limit refused it up front;
 * - "not capable", "unhealthy cluster": refused by admission checks;
 * - "leader changed": in Concord the proposal was dropped during a leader transfer; in etcd it
 *   only ends linearizable reads, which are idempotent anyway.
 * Everything else from the server after it accepted the call ("request timed out", "server
 * stopped", a dropped connection) leaves the outcome unknown.
 */
const notAppliedMessages = new Set([
  'etcdserver: no leader',
  'etcdserver: too many requests',
  'etcdserver: not capable',
  'etcdserver: unhealthy cluster',
  'etcdserver: leader changed',
]);

/** grpc-js texts that mean the call never reached a server (no stream was opened). */
const notSentPrefixes = ['No connection established', 'Failed to connect', 'Name resolution failed'];

export function isGrpcServiceError(error: unknown): error is ServiceError {
  return error instanceof Error && typeof (error as Partial<ServiceError>).code === 'number';
}

function grpcDetails(error: ServiceError): string {
  return typeof error.details === 'string' && error.details !== '' ? error.details : error.message;
}

/** Converts a gRPC failure into the typed error a caller sees. */
export function fromGrpcError(error: unknown): ConcordError {
  if (error instanceof ConcordError) return error;
  if (!isGrpcServiceError(error)) {
    const text = error instanceof Error ? error.message : String(error);
    return new UnavailableError(text, 'unknown');
  }
  const details = grpcDetails(error);
  const S = GrpcStatus;
  switch (error.code) {
    case S.UNAVAILABLE:
      if (details === 'etcdserver: no leader') return new NoLeaderError(details);
      if (notAppliedMessages.has(details))
        return new UnavailableError(details, 'not-applied', error.code, details);
      if (notSentPrefixes.some((prefix) => details.startsWith(prefix)))
        return new UnavailableError(details, 'not-applied', error.code);
      return new UnavailableError(
        details,
        'unknown',
        error.code,
        details.startsWith('etcdserver:') ? details : undefined,
      );
    case S.DEADLINE_EXCEEDED:
      return new DeadlineExceededError(details);
    case S.CANCELLED:
      return new CancelledError(details);
    case S.OUT_OF_RANGE:
      if (details.includes('compacted')) return new CompactedError(0n, details);
      if (details.includes('future revision')) return new FutureRevisionError(details);
      return new InvalidArgumentError(details, error.code, details);
    case S.INVALID_ARGUMENT:
      return new InvalidArgumentError(details, error.code, details);
    case S.NOT_FOUND:
      if (details.includes('lease not found')) return new LeaseNotFoundError(details);
      return new NotFoundError(details);
    case S.PERMISSION_DENIED:
      return new PermissionDeniedError(details);
    case S.UNAUTHENTICATED:
      return new UnauthenticatedError(details);
    case S.RESOURCE_EXHAUSTED:
      return new ResourceExhaustedError(details);
    case S.FAILED_PRECONDITION:
      return new FailedPreconditionError(details);
    default:
      return new ServerError(error.code, details, 'unknown');
  }
}

/** Whether an error says the endpoint itself is unusable (counts toward its ejection). */
export function isEndpointFailure(error: ConcordError): boolean {
  return error.code === 'unavailable' || error.code === 'deadline-exceeded' || error.code === 'no-leader';
}
