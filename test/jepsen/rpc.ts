// Raw gRPC calls to one chosen member, one call per operation: no client-side retries, so
// every recorded operation was sent at most once and its outcome is exactly what the client
// saw. The etcd3 npm client retries on some errors, which would turn one recorded op into
// several server-side effects and make the history lie.

import * as grpc from '@grpc/grpc-js';
import { type EtcdServiceName, serviceDefinition } from '../../src/wire/etcd-proto.js';

export interface WireHeader {
  revision: string;
  member_id?: string;
  raft_term?: string;
}

export interface WireKeyValue {
  key: Buffer;
  value: Buffer;
  create_revision: string;
  mod_revision: string;
  version: string;
  lease: string;
}

export interface RangeResponse {
  header: WireHeader;
  kvs: WireKeyValue[];
  count: string;
}

export interface PutResponse {
  header: WireHeader;
  prev_kv?: WireKeyValue | null;
}

export interface TxnResponse {
  header: WireHeader;
  succeeded: boolean;
  responses: Array<{ response_range?: RangeResponse | null; response?: string }>;
}

export interface WireEvent {
  type: 'PUT' | 'DELETE';
  kv: WireKeyValue;
  prev_kv?: WireKeyValue | null;
}

export interface WatchResponse {
  header: WireHeader;
  watch_id: string;
  created: boolean;
  canceled: boolean;
  compact_revision: string;
  cancel_reason: string;
  events: WireEvent[];
}

export type WireCompare = Record<string, unknown> & {
  result: 'EQUAL' | 'GREATER' | 'LESS' | 'NOT_EQUAL';
  target: 'VERSION' | 'CREATE' | 'MOD' | 'VALUE' | 'LEASE';
  key: Buffer;
};

export type WireRequestOp =
  | { request_put: { key: Buffer; value: Buffer; lease?: string } }
  | { request_range: { key: Buffer; range_end?: Buffer } }
  | { request_delete_range: { key: Buffer } };

/** How a failed call ended, for the history: 'fail' only when etcd guarantees no effect. */
export type ErrorOutcome = 'fail' | 'unknown';

/**
 * Codes etcd only returns before a request reaches the raft log (validation, compaction,
 * quota), so the request certainly had no effect. Anything else (deadline, lost connection,
 * "leader changed", "request timed out") may have been applied.
 */
const definitelyNotAppliedCodes = new Set<grpc.status>([
  grpc.status.INVALID_ARGUMENT,
  grpc.status.FAILED_PRECONDITION,
  grpc.status.OUT_OF_RANGE,
  grpc.status.NOT_FOUND,
  grpc.status.PERMISSION_DENIED,
  grpc.status.UNAUTHENTICATED,
  grpc.status.RESOURCE_EXHAUSTED,
]);

export function classifyError(error: unknown): ErrorOutcome {
  const code = (error as { code?: unknown }).code;
  if (typeof code !== 'number') return 'unknown';
  if (definitelyNotAppliedCodes.has(code)) return 'fail';
  // grpc-js fails a call without sending it when the channel has no connection.
  const details = String((error as { details?: unknown }).details ?? '');
  if (code === grpc.status.UNAVAILABLE && details.startsWith('No connection established')) return 'fail';
  return 'unknown';
}

export function errorText(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}

const channelOptions: grpc.ChannelOptions = {
  // Members are killed and restarted all the time; reconnect fast instead of backing off to 120 s.
  'grpc.initial_reconnect_backoff_ms': 100,
  'grpc.max_reconnect_backoff_ms': 500,
  'grpc.min_reconnect_backoff_ms': 100,
  'grpc.enable_retries': 0,
};

/** One gRPC channel per member URL, shared by the workload's clients; close() releases them. */
export class EtcdRpc {
  private readonly channels = new Map<string, grpc.Client>();
  private closed = false;
  /** When each member last refused a connection (performance.now()). */
  private readonly refusedAt = new Map<string, number>();

  /** Whether the member refused a connection within the last `withinMs`. */
  refusedRecently(clientUrl: string, withinMs: number): boolean {
    const at = this.refusedAt.get(clientUrl);
    return at !== undefined && performance.now() - at < withinMs;
  }

  private channel(clientUrl: string): grpc.Client {
    if (this.closed) throw new Error('EtcdRpc is closed');
    let client = this.channels.get(clientUrl);
    if (client === undefined) {
      const target = clientUrl.replace(/^https?:\/\//, '');
      client = new grpc.Client(target, grpc.credentials.createInsecure(), channelOptions);
      this.channels.set(clientUrl, client);
    }
    return client;
  }

  unary<Res>(
    clientUrl: string,
    service: EtcdServiceName,
    method: string,
    request: object,
    timeoutMs: number,
  ): Promise<Res> {
    const definition = serviceDefinition(service)[method];
    if (definition === undefined) throw new Error(`${service} has no method ${method}`);
    const client = this.channel(clientUrl);
    return new Promise((resolve, reject) => {
      client.makeUnaryRequest(
        definition.path,
        definition.requestSerialize as (value: object) => Buffer,
        definition.responseDeserialize as (value: Buffer) => Res,
        request,
        { deadline: Date.now() + timeoutMs },
        (error, response) => {
          if (error !== null && classifyError(error) === 'fail' && error.code === grpc.status.UNAVAILABLE) {
            this.refusedAt.set(clientUrl, performance.now());
          }
          if (error !== null || response === undefined) reject(error ?? new Error('empty response'));
          else resolve(response);
        },
      );
    });
  }

  watchStream(clientUrl: string): grpc.ClientDuplexStream<object, WatchResponse> {
    const definition = serviceDefinition('etcdserverpb.Watch').Watch;
    if (definition === undefined) throw new Error('Watch service has no Watch method');
    return this.channel(clientUrl).makeBidiStreamRequest(
      definition.path,
      definition.requestSerialize as (value: object) => Buffer,
      definition.responseDeserialize as (value: Buffer) => WatchResponse,
    );
  }

  range(clientUrl: string, request: object, timeoutMs: number): Promise<RangeResponse> {
    return this.unary(clientUrl, 'etcdserverpb.KV', 'Range', request, timeoutMs);
  }

  put(clientUrl: string, key: string, value: string, timeoutMs: number, lease = '0'): Promise<PutResponse> {
    return this.unary(
      clientUrl,
      'etcdserverpb.KV',
      'Put',
      { key: Buffer.from(key), value: Buffer.from(value), lease },
      timeoutMs,
    );
  }

  txn(
    clientUrl: string,
    compare: WireCompare[],
    success: WireRequestOp[],
    failure: WireRequestOp[],
    timeoutMs: number,
  ): Promise<TxnResponse> {
    return this.unary(clientUrl, 'etcdserverpb.KV', 'Txn', { compare, success, failure }, timeoutMs);
  }

  close(): void {
    this.closed = true;
    for (const client of this.channels.values()) client.close();
    this.channels.clear();
  }
}

/** A range_end covering every key with `prefix` (etcd's prefix convention). */
export function prefixEnd(prefix: string): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i]! += 1;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]);
}

export function revisionOf(header: WireHeader | undefined | null): number {
  const revision = Number(header?.revision ?? Number.NaN);
  if (!Number.isSafeInteger(revision)) throw new Error(`response header has no revision`);
  return revision;
}
