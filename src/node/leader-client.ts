// Requests only the leader can answer (lease keep-alive and time-to-live, which depend on the
// leader's lease clock; member promotion, which needs the leader's view of the learner's
// progress), forwarded from a follower over the leader's own etcd v3 client API.

import * as grpc from '@grpc/grpc-js';
import { etcdPackageDefinition } from '../wire/etcd-proto.js';

type UnaryCall = (
  request: object,
  metadata: grpc.Metadata,
  options: grpc.CallOptions,
  callback: (error: grpc.ServiceError | null, response?: Record<string, unknown>) => void,
) => grpc.ClientUnaryCall;

interface KeepAliveStream {
  call: grpc.ClientDuplexStream<object, { ID: string; TTL: string }>;
  pending: Map<string, Array<(ttl: number | Error) => void>>;
}

/** The services a member calls on the leader. */
type ServiceName = 'Lease' | 'Cluster' | 'Shard';

export class LeaderClient {
  private readonly clients = new Map<string, grpc.Client>();
  private readonly streams = new Map<string, KeepAliveStream>();
  private services: Record<ServiceName, grpc.ServiceClientConstructor> | undefined;

  /**
   * `credentials` picks the channel credentials for a leader URL (TLS for an https:// client URL);
   * plaintext when absent.
   */
  constructor(
    private readonly requestTimeoutMs: number,
    private readonly credentials: (url: string) => grpc.ChannelCredentials = () =>
      grpc.credentials.createInsecure(),
  ) {}

  /** Built on first use: most members never forward, and protobuf reflection costs start-up time. */
  private service(name: ServiceName): grpc.ServiceClientConstructor {
    if (this.services === undefined) {
      const pkg = grpc.loadPackageDefinition(etcdPackageDefinition()) as unknown as {
        etcdserverpb: Record<'Lease' | 'Cluster', grpc.ServiceClientConstructor>;
        concordpb: Record<'Shard', grpc.ServiceClientConstructor>;
      };
      this.services = {
        Lease: pkg.etcdserverpb.Lease,
        Cluster: pkg.etcdserverpb.Cluster,
        Shard: pkg.concordpb.Shard,
      };
    }
    return this.services[name];
  }

  private client(url: string, service: grpc.ServiceClientConstructor): grpc.Client {
    const key = `${service.serviceName}@${url}`;
    let client = this.clients.get(key);
    if (client === undefined) {
      client = new service(url.replace(/^https?:\/\//, ''), this.credentials(url));
      this.clients.set(key, client);
    }
    return client;
  }

  private unary(
    url: string,
    service: grpc.ServiceClientConstructor,
    method: string,
    request: object,
  ): Promise<Record<string, unknown>> {
    const client = this.client(url, service) as unknown as Record<string, UnaryCall>;
    const call = client[method];
    if (call === undefined) throw new Error(`no method ${method}`);
    return new Promise((resolve, reject) => {
      call.call(
        client,
        request,
        new grpc.Metadata(),
        { deadline: Date.now() + this.requestTimeoutMs },
        (error, response) => (error ? reject(error) : resolve(response ?? {})),
      );
    });
  }

  /** Renews a lease on the leader; resolves with the TTL it granted (0 = lease unknown). */
  keepAlive(url: string, id: bigint): Promise<number> {
    const stream = this.keepAliveStream(url);
    const key = id.toString();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error('etcdserver: request timed out')),
        this.requestTimeoutMs,
      );
      const waiters = stream.pending.get(key) ?? [];
      waiters.push((ttl) => {
        clearTimeout(timer);
        if (ttl instanceof Error) reject(ttl);
        else resolve(ttl);
      });
      stream.pending.set(key, waiters);
      stream.call.write({ ID: key });
    });
  }

  private keepAliveStream(url: string): KeepAliveStream {
    const existing = this.streams.get(url);
    if (existing !== undefined) return existing;
    const client = this.client(url, this.service('Lease')) as unknown as {
      LeaseKeepAlive(): grpc.ClientDuplexStream<object, { ID: string; TTL: string }>;
    };
    const stream: KeepAliveStream = { call: client.LeaseKeepAlive(), pending: new Map() };
    stream.call.on('data', (response: { ID: string; TTL: string }) => {
      const waiters = stream.pending.get(response.ID);
      const next = waiters?.shift();
      if (waiters !== undefined && waiters.length === 0) stream.pending.delete(response.ID);
      next?.(Number(response.TTL));
    });
    const fail = (error: Error) => {
      this.streams.delete(url);
      for (const waiters of stream.pending.values()) for (const waiter of waiters) waiter(error);
      stream.pending.clear();
    };
    stream.call.on('error', fail);
    stream.call.on('end', () => fail(new Error('etcdserver: leader changed')));
    this.streams.set(url, stream);
    return stream;
  }

  async timeToLive(
    url: string,
    id: bigint,
    keys: boolean,
  ): Promise<{ ttlSeconds: number; grantedTtlSeconds: number; keys: Uint8Array[] }> {
    const response = await this.unary(url, this.service('Lease'), 'LeaseTimeToLive', {
      ID: id.toString(),
      keys,
    });
    return {
      ttlSeconds: Number(response.TTL),
      grantedTtlSeconds: Number(response.grantedTTL),
      keys: (response.keys as Uint8Array[] | undefined) ?? [],
    };
  }

  async memberPromote(url: string, id: bigint): Promise<void> {
    await this.unary(url, this.service('Cluster'), 'MemberPromote', { ID: id.toString() });
  }

  /** concordpb.Shard/Split on the metadata group's leader: the wire response (left, right). */
  shardSplit(url: string, key: Uint8Array): Promise<Record<string, unknown>> {
    return this.unary(url, this.service('Shard'), 'Split', { key: Buffer.from(key) });
  }

  /** concordpb.Shard/Revisions on the metadata group's leader: revisions from its oracle. */
  async revisions(url: string, count: number): Promise<{ first: number; count: number }> {
    const response = await this.unary(url, this.service('Shard'), 'Revisions', { count: String(count) });
    return { first: Number(response.first ?? 0), count: Number(response.count ?? 0) };
  }

  close(): void {
    for (const stream of this.streams.values()) stream.call.cancel();
    this.streams.clear();
    for (const client of this.clients.values()) client.close();
    this.clients.clear();
  }
}
