// Raw grpc-js clients for the benchmark, built from the package definition the server itself
// loads (api/proto.ts), so no client library sits between the tool and the wire. Each "conn" is
// its own HTTP/2 connection: grpc-js pools subchannels globally by target, so every channel gets
// a local subchannel pool, otherwise N channels to one endpoint would share one TCP socket.

import * as grpc from '@grpc/grpc-js';
import type {
  WirePutRequest,
  WirePutResponse,
  WireRangeRequest,
  WireRangeResponse,
  WireTxnRequest,
  WireTxnResponse,
  WireWatchRequest,
  WireWatchResponse,
} from '../../api/wire.js';
import { etcdPackageDefinition } from '../../wire/etcd-proto.js';
import type { BenchAuth, BenchTls } from './options.js';

export class BenchConnectionError extends Error {
  readonly code = 'BENCH_CONNECTION';
}

type Callback<Res> = (error: grpc.ServiceError | null, response?: Res) => void;
type UnaryMethod<Req, Res> = (
  request: Req,
  options: grpc.CallOptions,
  callback: Callback<Res>,
) => grpc.ClientUnaryCall;

export interface StatusResponse {
  header: { member_id: string };
  leader: string;
  version: string;
}

export interface LeaseGrantResponse {
  ID: string;
  TTL: string;
  error: string;
}

export interface LeaseKeepAliveResponse {
  ID: string;
  TTL: string;
}

interface KvStub extends grpc.Client {
  Range: UnaryMethod<Partial<WireRangeRequest>, WireRangeResponse>;
  Put: UnaryMethod<Partial<WirePutRequest>, WirePutResponse>;
  Txn: UnaryMethod<Partial<WireTxnRequest>, WireTxnResponse>;
}

interface WatchStub extends grpc.Client {
  Watch: (options?: grpc.CallOptions) => grpc.ClientDuplexStream<WireWatchRequest, WireWatchResponse>;
}

interface LeaseStub extends grpc.Client {
  LeaseGrant: UnaryMethod<{ TTL: number; ID: number }, LeaseGrantResponse>;
  LeaseRevoke: UnaryMethod<{ ID: string }, object>;
  LeaseKeepAlive: (
    options?: grpc.CallOptions,
  ) => grpc.ClientDuplexStream<{ ID: string }, LeaseKeepAliveResponse>;
}

interface MaintenanceStub extends grpc.Client {
  Status: UnaryMethod<object, StatusResponse>;
}

/** etcd's Auth service, as far as the benchmark sets up users and roles and signs in. */
interface AuthStub extends grpc.Client {
  Authenticate: UnaryMethod<{ name: string; password: string }, { token: string }>;
  AuthEnable: UnaryMethod<object, object>;
  UserAdd: UnaryMethod<{ name: string; password: string }, object>;
  UserGrantRole: UnaryMethod<{ user: string; role: string }, object>;
  RoleAdd: UnaryMethod<{ name: string }, object>;
  RoleGrantPermission: UnaryMethod<
    { name: string; perm: { permType: 'READ' | 'WRITE' | 'READWRITE'; key: Buffer; range_end: Buffer } },
    object
  >;
}

type StubConstructor = new (
  address: string,
  credentials: grpc.ChannelCredentials,
  options?: grpc.ClientOptions,
) => grpc.Client;

function stubConstructor(path: string[]): StubConstructor {
  let node: unknown = grpc.loadPackageDefinition(etcdPackageDefinition());
  for (const part of path) node = (node as Record<string, unknown>)[part];
  if (typeof node !== 'function')
    throw new BenchConnectionError(`service ${path.join('.')} missing from the proto`);
  return node as StubConstructor;
}

/** `http(s)://127.0.0.1:2379` or `127.0.0.1:2379` → `127.0.0.1:2379` (grpc-js wants no scheme). */
export function grpcTarget(endpoint: string): string {
  return endpoint
    .trim()
    .replace(/^https?:\/\//, '')
    .replace(/\/+$/, '');
}

function channelCredentials(tls: BenchTls | undefined): grpc.ChannelCredentials {
  if (tls === undefined) return grpc.credentials.createInsecure();
  return grpc.credentials.createSsl(tls.ca ?? null, tls.key ?? null, tls.cert ?? null, {
    rejectUnauthorized: !(tls.insecureSkipVerify ?? false),
  });
}

/** Adds etcd's `token` metadata (an Authenticate answer) to every call of a client. */
function tokenInterceptor(token: string): grpc.Interceptor {
  return (options, nextCall) =>
    new grpc.InterceptingCall(nextCall(options), {
      start: (metadata, listener, next) => {
        metadata.set('token', token);
        next(metadata, listener);
      },
    });
}

/** One HTTP/2 connection with a stub per etcd service, all sharing the channel. */
export class BenchConnection {
  readonly kv: KvStub;
  readonly watch: WatchStub;
  readonly lease: LeaseStub;
  readonly maintenance: MaintenanceStub;
  readonly auth: AuthStub;
  private readonly channel: grpc.Channel;

  /**
   * `reconnectBackoffMs` caps grpc-js's reconnect backoff (default: 1 s growing to 120 s). A probe
   * of a starting server sets it low, or it would time the client's backoff, not the server.
   * `token` (from Authenticate) goes with every call; without it the calls carry no credentials.
   */
  constructor(
    readonly target: string,
    reconnectBackoffMs?: number,
    tls?: BenchTls,
    token?: string,
  ) {
    const credentials = channelCredentials(tls);
    const backoff =
      reconnectBackoffMs === undefined
        ? {}
        : {
            'grpc.initial_reconnect_backoff_ms': reconnectBackoffMs,
            'grpc.max_reconnect_backoff_ms': reconnectBackoffMs,
          };
    this.channel = new grpc.Channel(target, credentials, {
      'grpc.use_local_subchannel_pool': 1,
      'grpc.max_receive_message_length': 64 * 1024 * 1024,
      ...backoff,
    });
    const options: grpc.ClientOptions = {
      channelOverride: this.channel,
      ...(token === undefined ? {} : { interceptors: [tokenInterceptor(token)] }),
    };
    this.kv = new (stubConstructor(['etcdserverpb', 'KV']))(target, credentials, options) as KvStub;
    this.watch = new (stubConstructor(['etcdserverpb', 'Watch']))(target, credentials, options) as WatchStub;
    this.lease = new (stubConstructor(['etcdserverpb', 'Lease']))(target, credentials, options) as LeaseStub;
    this.maintenance = new (stubConstructor(['etcdserverpb', 'Maintenance']))(
      target,
      credentials,
      options,
    ) as MaintenanceStub;
    this.auth = new (stubConstructor(['etcdserverpb', 'Auth']))(target, credentials, options) as AuthStub;
  }

  close(): void {
    this.channel.close();
  }
}

/** Calls a unary stub method as a promise, with a deadline. */
export function unary<Req, Res>(
  method: UnaryMethod<Req, Res>,
  stub: grpc.Client,
  request: Req,
  timeoutMs: number,
): Promise<Res> {
  return new Promise((resolve, reject) => {
    method.call(stub, request, { deadline: Date.now() + timeoutMs }, (error, response) => {
      if (error !== null) reject(error);
      else if (response === undefined) reject(new BenchConnectionError('empty gRPC response'));
      else resolve(response);
    });
  });
}

/** Signs in over `connection` and returns the token to send with later calls. */
export async function authenticate(
  connection: BenchConnection,
  auth: BenchAuth,
  timeoutMs: number,
): Promise<string> {
  const response = await unary(
    connection.auth.Authenticate,
    connection.auth,
    { name: auth.user, password: auth.password },
    timeoutMs,
  );
  return response.token;
}

export class ConnectionPool {
  readonly connections: BenchConnection[];

  /** `count` connections spread round-robin over `targets`, each sending `token` if given. */
  constructor(targets: string[], count: number, tls?: BenchTls, token?: string) {
    if (targets.length === 0) throw new BenchConnectionError('no endpoints given');
    if (!(count >= 1)) throw new BenchConnectionError(`--conns must be at least 1, got ${count}`);
    this.connections = Array.from(
      { length: count },
      (_, i) => new BenchConnection(targets[i % targets.length]!, undefined, tls, token),
    );
  }

  /** The connection a client index uses: clients are spread evenly over the connections. */
  forClient(clientIndex: number): BenchConnection {
    return this.connections[clientIndex % this.connections.length]!;
  }

  close(): void {
    for (const connection of this.connections) connection.close();
  }
}

const statusTimeoutMs = 3000;

/** Asks each endpoint for Maintenance.Status and returns the target of the leader. */
export async function findLeaderTarget(targets: string[], tls?: BenchTls): Promise<string> {
  const errors: string[] = [];
  for (const target of targets) {
    const connection = new BenchConnection(target, undefined, tls);
    try {
      const status = await unary(connection.maintenance.Status, connection.maintenance, {}, statusTimeoutMs);
      if (status.leader !== '0' && status.leader === status.header.member_id) return target;
    } catch (error) {
      errors.push(`${target}: ${(error as Error).message}`);
    } finally {
      connection.close();
    }
  }
  const detail = errors.length > 0 ? ` (${errors.join('; ')})` : '';
  throw new BenchConnectionError(`no endpoint reports itself as the leader${detail}`);
}
