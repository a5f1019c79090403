// One gRPC channel per endpoint, shared by every service, and the raw unary/stream calls on it.
// Which endpoint to use, retries and deadlines are decided by the caller (client.ts).

import * as grpc from '@grpc/grpc-js';
import { type EtcdServiceName, serviceDefinition } from '../wire/etcd-proto.js';
import { UnavailableError } from './errors.js';

export interface TlsOptions {
  /** PEM CA bundle; the system roots when absent. */
  ca?: Buffer;
  /** PEM client certificate and key, for mutual TLS. */
  cert?: Buffer;
  key?: Buffer;
  /** Do not verify the server's certificate (etcdctl's --insecure-skip-tls-verify, for --auto-tls). */
  insecureSkipVerify?: boolean;
}

export type ServiceName = 'KV' | 'Watch' | 'Lease' | 'Cluster' | 'Maintenance' | 'Auth' | 'Lock' | 'Election';

const qualifiedNames: Record<ServiceName, EtcdServiceName> = {
  KV: 'etcdserverpb.KV',
  Watch: 'etcdserverpb.Watch',
  Lease: 'etcdserverpb.Lease',
  Cluster: 'etcdserverpb.Cluster',
  Maintenance: 'etcdserverpb.Maintenance',
  Auth: 'etcdserverpb.Auth',
  Lock: 'v3lockpb.Lock',
  Election: 'v3electionpb.Election',
};

interface MethodInfo {
  path: string;
  serialize: (value: object) => Buffer;
  deserialize: (bytes: Buffer) => object;
}

const methodCache = new Map<string, MethodInfo>();

function methodInfo(service: ServiceName, method: string): MethodInfo {
  const cacheKey = `${service}.${method}`;
  const cached = methodCache.get(cacheKey);
  if (cached !== undefined) return cached;
  const definition = serviceDefinition(qualifiedNames[service])[method];
  if (definition === undefined) throw new Error(`no method ${method} in ${service}`);
  const info: MethodInfo = {
    path: definition.path,
    serialize: definition.requestSerialize as (value: object) => Buffer,
    deserialize: definition.responseDeserialize as (bytes: Buffer) => object,
  };
  methodCache.set(cacheKey, info);
  return info;
}

/** "http://127.0.0.1:2379" → "127.0.0.1:2379"; whether the URL asks for TLS. */
export function parseEndpoint(endpoint: string): { target: string; secure: boolean } {
  const match = /^(https?|unix|unixs):\/\/(.+)$/.exec(endpoint);
  if (match === null) return { target: endpoint, secure: false };
  const scheme = match[1] as string;
  const rest = (match[2] as string).replace(/\/+$/, '');
  if (scheme === 'unix' || scheme === 'unixs') return { target: `unix:${rest}`, secure: scheme === 'unixs' };
  return { target: rest, secure: scheme === 'https' };
}

const channelOptions: grpc.ChannelOptions = {
  // Reconnect quickly to a restarted member; grpc's default backoff starts at 1 s and grows to 2 min.
  'grpc.initial_reconnect_backoff_ms': 100,
  'grpc.max_reconnect_backoff_ms': 2000,
  'grpc.max_receive_message_length': 64 * 1024 * 1024,
  'grpc.max_send_message_length': 8 * 1024 * 1024,
};

export class Connection {
  private readonly grpcClient: grpc.Client;

  constructor(
    readonly endpoint: string,
    tls: TlsOptions | undefined,
  ) {
    const { target, secure } = parseEndpoint(endpoint);
    const credentials =
      secure || tls !== undefined
        ? grpc.credentials.createSsl(tls?.ca ?? null, tls?.key ?? null, tls?.cert ?? null, {
            rejectUnauthorized: !(tls?.insecureSkipVerify ?? false),
          })
        : grpc.credentials.createInsecure();
    this.grpcClient = new grpc.Client(target, credentials, channelOptions);
  }

  /**
   * Resolves once the channel is connected. A channel already in TRANSIENT_FAILURE fails at once,
   * so a dead endpoint costs nothing but a failover; the request was never sent.
   */
  async ready(deadlineMs: number): Promise<void> {
    const channel = this.grpcClient.getChannel();
    const state = channel.getConnectivityState(true);
    if (state === grpc.connectivityState.READY) return;
    if (state === grpc.connectivityState.TRANSIENT_FAILURE || state === grpc.connectivityState.SHUTDOWN) {
      throw new UnavailableError(`No connection established to ${this.endpoint}`, 'not-applied');
    }
    await new Promise<void>((resolve, reject) => {
      this.grpcClient.waitForReady(new Date(deadlineMs), (error) => {
        if (error === undefined || error === null) resolve();
        else
          reject(
            new UnavailableError(
              `No connection established to ${this.endpoint} before the dial timeout`,
              'not-applied',
            ),
          );
      });
    });
  }

  unary(
    service: ServiceName,
    method: string,
    request: object,
    metadata: grpc.Metadata,
    deadlineMs: number,
  ): Promise<object> {
    const info = methodInfo(service, method);
    return new Promise((resolve, reject) => {
      this.grpcClient.makeUnaryRequest(
        info.path,
        info.serialize,
        info.deserialize,
        request,
        metadata,
        { deadline: new Date(deadlineMs) },
        (error, response) => {
          if (error !== null && error !== undefined) reject(error);
          else if (response === undefined) reject(new Error(`${service}.${method}: empty response`));
          else resolve(response);
        },
      );
    });
  }

  duplex(
    service: ServiceName,
    method: string,
    metadata: grpc.Metadata,
  ): grpc.ClientDuplexStream<object, object> {
    const info = methodInfo(service, method);
    return this.grpcClient.makeBidiStreamRequest(info.path, info.serialize, info.deserialize, metadata, {});
  }

  serverStream(
    service: ServiceName,
    method: string,
    request: object,
    metadata: grpc.Metadata,
    deadlineMs?: number,
  ): grpc.ClientReadableStream<object> {
    const info = methodInfo(service, method);
    const options = deadlineMs === undefined ? {} : { deadline: new Date(deadlineMs) };
    return this.grpcClient.makeServerStreamRequest(
      info.path,
      info.serialize,
      info.deserialize,
      request,
      metadata,
      options,
    );
  }

  close(): void {
    this.grpcClient.close();
  }
}
