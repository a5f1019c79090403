// Mapping errors to what etcd sends: gRPC status + message, and the gateway's HTTP status.
// etcd's error table itself lives with the server that throws it (src/server/errors.ts).

import { status as GrpcStatus } from '@grpc/grpc-js';
import { MvccError } from '../mvcc/errors.js';

export { EtcdError, type EtcdErrorCode, etcdErrors } from '../wire/etcd-errors.js';

import { EtcdError } from '../wire/etcd-errors.js';

const S = GrpcStatus;

/** An error the API layer produces itself for requests etcd would also refuse. */
export class ApiRequestError extends Error {
  readonly code = 'api-request';
  constructor(
    readonly grpcCode: GrpcStatus,
    message: string,
  ) {
    super(message);
    this.name = 'ApiRequestError';
  }
}

export interface WireStatus {
  code: GrpcStatus;
  details: string;
}

/** Maps anything a backend may throw to the status etcd would send. */
export function toWireStatus(error: unknown): WireStatus {
  if (error instanceof EtcdError || error instanceof ApiRequestError) {
    return { code: error.grpcCode, details: error.message };
  }
  if (error instanceof MvccError) {
    return { code: error.grpcCode as GrpcStatus, details: error.grpcMessage };
  }
  // Errors of Concord's own admin calls (node/shard-admin.ts) carry the status they answer with.
  if (error instanceof Error && error.name === 'ShardAdminError') {
    return { code: (error as Error & { grpcCode: GrpcStatus }).grpcCode, details: error.message };
  }
  // etcd sends unknown server errors with their text and code Unknown.
  const details = error instanceof Error ? error.message : String(error);
  return { code: S.UNKNOWN, details };
}

/** HTTP status etcd 3.4's grpc-gateway (v1) uses for a gRPC code (its HTTPStatusFromCode). */
export function httpStatusFromGrpc(code: GrpcStatus): number {
  switch (code) {
    case S.OK:
      return 200;
    case S.CANCELLED:
      return 408;
    case S.UNKNOWN:
      return 500;
    case S.INVALID_ARGUMENT:
      return 400;
    case S.DEADLINE_EXCEEDED:
      return 504;
    case S.NOT_FOUND:
      return 404;
    case S.ALREADY_EXISTS:
      return 409;
    case S.PERMISSION_DENIED:
      return 403;
    case S.UNAUTHENTICATED:
      return 401;
    case S.RESOURCE_EXHAUSTED:
      return 429;
    case S.FAILED_PRECONDITION:
      // grpc-gateway v1 (etcd 3.4's) answers 412; v2 changed it to 400.
      return 412;
    case S.ABORTED:
      return 409;
    case S.OUT_OF_RANGE:
      return 400;
    case S.UNIMPLEMENTED:
      return 501;
    case S.INTERNAL:
      return 500;
    case S.UNAVAILABLE:
      return 503;
    case S.DATA_LOSS:
      return 500;
    default:
      return 500;
  }
}
