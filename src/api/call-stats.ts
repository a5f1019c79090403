// Per-method gRPC call counters for grpc_server_started_total / grpc_server_handled_total, as
// etcd exports them through go-grpc-prometheus. A call bumps two numbers in a preallocated
// object of its method; labels are only built when /metrics is scraped.

/** gRPC status names as go-grpc-prometheus writes them in the grpc_code label, by code. */
export const GRPC_CODE_NAMES = [
  'OK',
  'Canceled',
  'Unknown',
  'InvalidArgument',
  'DeadlineExceeded',
  'NotFound',
  'AlreadyExists',
  'PermissionDenied',
  'ResourceExhausted',
  'FailedPrecondition',
  'Aborted',
  'OutOfRange',
  'Unimplemented',
  'Internal',
  'Unavailable',
  'DataLoss',
  'Unauthenticated',
] as const;

export type GrpcCallType = 'unary' | 'client_stream' | 'server_stream' | 'bidi_stream';

export class MethodCallStats {
  started = 0;
  /** Calls finished, by gRPC status code (index = code). */
  readonly handled = new Float64Array(GRPC_CODE_NAMES.length);

  constructor(
    readonly service: string,
    readonly method: string,
    readonly type: GrpcCallType,
  ) {}
}

export class GrpcCallStats {
  readonly methods: MethodCallStats[] = [];

  /** The counters of a method path such as /etcdserverpb.KV/Range (created once, at registration). */
  register(path: string, requestStream: boolean, responseStream: boolean): MethodCallStats {
    const slash = path.lastIndexOf('/');
    const service = path.slice(1, slash);
    const method = path.slice(slash + 1);
    const type: GrpcCallType = requestStream
      ? responseStream
        ? 'bidi_stream'
        : 'client_stream'
      : responseStream
        ? 'server_stream'
        : 'unary';
    const stats = new MethodCallStats(service, method, type);
    this.methods.push(stats);
    return stats;
  }
}
