// Starts the API server on an ephemeral loopback port over a MemoryBackend, and builds raw
// gRPC clients from our own protos for assertions on exact status codes and messages.

import * as grpc from '@grpc/grpc-js';
import { type ApiServer, type ApiServerOptions, startApiServer } from '../../src/api/api-server.js';
import { etcdPackageDefinition } from '../../src/wire/etcd-proto.js';
import { KeyspaceBackend } from './keyspace-backend.js';
import { MemoryBackend } from './memory-backend.js';

export type BackendKind = 'memory' | 'keyspace';
export const backendKinds: BackendKind[] = ['memory', 'keyspace'];

export interface Harness {
  backend: MemoryBackend;
  server: ApiServer;
  close(): Promise<void>;
}

export async function startHarness(
  options: Partial<ApiServerOptions> = {},
  kind: BackendKind = 'memory',
): Promise<Harness> {
  const backend = kind === 'keyspace' ? new KeyspaceBackend() : new MemoryBackend();
  const server = await startApiServer({ backend, port: 0, ...options });
  const close = async () => {
    await server.close(100);
    if (backend instanceof KeyspaceBackend) await backend.dispose();
  };
  return { backend, server, close };
}

type RawCallback = (error: grpc.ServiceError | null, response: Record<string, unknown>) => void;
/** A generic client's unary method over raw bytes (grpc-js with identity (de)serializers). */
export type RawBytesMethod = (
  body: Buffer,
  metadata: grpc.Metadata,
  options: grpc.CallOptions,
  callback: grpc.requestCallback<Buffer>,
) => grpc.ClientUnaryCall;

export type RawClient = grpc.Client & Record<string, (request: object, callback: RawCallback) => void>;

/** A raw client for one service ('etcdserverpb.KV', ...) speaking to `address` (host:port). */
export function rawClient(
  address: string,
  service: string,
  channelOptions: grpc.ChannelOptions = {},
): RawClient {
  const loaded = grpc.loadPackageDefinition(etcdPackageDefinition());
  const [pkg, name] = service.split('.') as [string, string];
  const ctor = (loaded[pkg] as grpc.GrpcObject)[name] as grpc.ServiceClientConstructor;
  return new ctor(address, grpc.credentials.createInsecure(), {
    'grpc.max_send_message_length': 16 * 1024 * 1024,
    ...channelOptions,
  }) as unknown as RawClient;
}

export function rawCall(
  client: RawClient,
  method: string,
  request: object,
): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    client[method]!(request, (error, response) => (error ? reject(error) : resolve(response)));
  });
}

export function hostPort(server: ApiServer): string {
  return `${server.host}:${server.port}`;
}
