// watch and lease-keepalive: workloads over bidirectional gRPC streams.

import { performance } from 'node:perf_hooks';
import type { ClientDuplexStream } from '@grpc/grpc-js';
import type { WireWatchRequest, WireWatchResponse } from '../../api/wire.js';
import { type ConnectionPool, type LeaseKeepAliveResponse, unary } from './connections.js';
import { LatencyHistogram } from './histogram.js';
import { KeyFormat, randomIndex } from './kv-workloads.js';
import { type BenchOptions, watchKeyPrefix } from './options.js';
import { forEachConcurrently, type LoopStats } from './runner.js';
import type { Workload, WorkloadOutcome } from './workload.js';

const setupTimeoutMs = 15_000;
/** After the writers stop, watch events still arriving count; give up after this much silence. */
const deliveryQuietMs = 5000;
const pollMs = 20;

async function waitFor(what: string, timeoutMs: number, done: () => boolean): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!done()) {
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, pollMs));
  }
}

function prefixEnd(prefix: string): Buffer {
  const end = Buffer.from(prefix);
  end[end.length - 1]! += 1;
  return end;
}

/**
 * W watchers on one prefix, --clients writers putting under it. The value of every put carries
 * performance.now() at send time, so each delivered event yields a put→event latency; the
 * headline throughput is events delivered per second over all watchers.
 */
export class WatchWorkload implements Workload {
  private readonly streams: Array<ClientDuplexStream<WireWatchRequest, WireWatchResponse>> = [];
  private readonly keys: KeyFormat;
  private readonly delivery = new LatencyHistogram();
  private created = 0;
  private delivered = 0;
  private lastEventMs = 0;
  private closing = false;
  private streamError: string | undefined;

  constructor(
    private readonly pool: ConnectionPool,
    private readonly options: BenchOptions,
  ) {
    this.keys = new KeyFormat(options.keySize, watchKeyPrefix);
  }

  async prepare(): Promise<void> {
    for (let s = 0; s < this.options.watchStreams; s++) {
      const connection = this.pool.forClient(s);
      const call = connection.watch.Watch();
      call.on('data', (response: WireWatchResponse) => this.onResponse(response));
      call.on('error', (error: Error) => {
        if (!this.closing) this.streamError ??= `watch stream failed: ${error.message}`;
      });
      this.streams.push(call);
    }
    for (let w = 0; w < this.options.watchers; w++) {
      const call = this.streams[w % this.streams.length]!;
      call.write({
        create_request: {
          key: Buffer.from(watchKeyPrefix),
          range_end: prefixEnd(watchKeyPrefix),
          start_revision: '0',
          progress_notify: false,
          filters: [],
          prev_kv: false,
          watch_id: '0',
          fragment: false,
        },
      });
    }
    await waitFor(`${this.options.watchers} watchers to be created`, setupTimeoutMs, () => {
      if (this.streamError !== undefined) throw new Error(this.streamError);
      return this.created >= this.options.watchers;
    });
  }

  private onResponse(response: WireWatchResponse): void {
    if (response.created) this.created++;
    if (response.canceled && !this.closing) this.streamError ??= `watch canceled: ${response.cancel_reason}`;
    if (response.events.length === 0) return;
    const nowMs = performance.now();
    for (const event of response.events) {
      const sentMs = event.kv.value.readDoubleLE(0);
      this.delivery.record(Math.max(0, nowMs - sentMs) * 1000);
      this.delivered++;
    }
    this.lastEventMs = nowMs;
  }

  async op(clientIndex: number): Promise<void> {
    if (this.streamError !== undefined) throw new Error(this.streamError);
    const value = Buffer.alloc(this.options.valSize, 'v');
    value.writeDoubleLE(performance.now(), 0);
    const key = this.keys.key(randomIndex(this.options.keySpaceSize));
    const connection = this.pool.forClient(clientIndex);
    await unary(connection.kv.Put, connection.kv, { key, value }, this.options.requestTimeoutMs);
  }

  async finish(stats: LoopStats): Promise<WorkloadOutcome> {
    const expected = stats.ok * this.options.watchers;
    let lastCount = -1;
    let quietSinceMs = performance.now();
    while (this.delivered < expected && performance.now() - quietSinceMs < deliveryQuietMs) {
      if (this.delivered !== lastCount) {
        lastCount = this.delivered;
        quietSinceMs = performance.now();
      }
      await new Promise((resolve) => setTimeout(resolve, pollMs));
    }
    const missing = Math.max(0, expected - this.delivered);
    const putLatency = stats.latency.summary();
    const endMs = Math.max(stats.endMs, this.lastEventMs);
    const errorSamples = [...stats.errorSamples];
    if (missing > 0) errorSamples.push(`${missing} of ${expected} watch events never arrived`);
    if (this.streamError !== undefined) errorSamples.push(this.streamError);
    return {
      ops: this.delivered,
      errors: stats.errors + missing,
      errorSamples,
      durationMs: endMs - stats.startMs,
      latency: this.delivery,
      extra: {
        watchers: this.options.watchers,
        puts: stats.ok,
        putsPerSec: stats.ok / ((stats.endMs - stats.startMs) / 1000),
        putP50Ms: putLatency.p50Us / 1000,
        putP99Ms: putLatency.p99Us / 1000,
        eventsMissing: missing,
      },
    };
  }

  async close(): Promise<void> {
    this.closing = true;
    for (const call of this.streams) {
      call.end();
      call.cancel();
    }
  }
}

interface PendingKeepAlive {
  resolve: () => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
}

interface KeepAliveStream {
  call: ClientDuplexStream<{ ID: string }, LeaseKeepAliveResponse>;
  pending: Map<string, PendingKeepAlive>;
  failure: Error | undefined;
}

const leaseTtlSec = 600;
const grantConcurrency = 32;
const revokeTimeoutMs = 2000;

/**
 * --leases leases, each owned by one of --clients loops (lease i belongs to loop i mod clients),
 * so at most one keep-alive per lease is in flight and responses match requests by lease ID.
 * One keep-alive stream per connection, as a client library would keep.
 */
export class LeaseKeepAliveWorkload implements Workload {
  private readonly leaseIds: string[] = [];
  private readonly streams: KeepAliveStream[] = [];
  private readonly cursors: number[];
  private closing = false;

  constructor(
    private readonly pool: ConnectionPool,
    private readonly options: BenchOptions,
  ) {
    this.cursors = Array.from({ length: options.clients }, () => 0);
  }

  async prepare(): Promise<void> {
    const ids: string[] = new Array(this.options.leases);
    await forEachConcurrently(this.options.leases, grantConcurrency, async (index) => {
      const connection = this.pool.forClient(index);
      const granted = await unary(
        connection.lease.LeaseGrant,
        connection.lease,
        { TTL: leaseTtlSec, ID: 0 },
        this.options.requestTimeoutMs,
      );
      if (granted.error !== '') throw new Error(`lease grant failed: ${granted.error}`);
      ids[index] = String(granted.ID);
    });
    this.leaseIds.push(...ids);
    for (const connection of this.pool.connections)
      this.streams.push(this.openStream(connection.lease.LeaseKeepAlive()));
  }

  private openStream(call: KeepAliveStream['call']): KeepAliveStream {
    const stream: KeepAliveStream = { call, pending: new Map(), failure: undefined };
    call.on('data', (response: LeaseKeepAliveResponse) => {
      const id = String(response.ID);
      const waiter = stream.pending.get(id);
      if (waiter === undefined) return;
      stream.pending.delete(id);
      clearTimeout(waiter.timer);
      if (Number(response.TTL) <= 0) waiter.reject(new Error(`lease ${id} not found or expired`));
      else waiter.resolve();
    });
    const fail = (error: Error) => {
      if (this.closing) return;
      stream.failure ??= new Error(`keep-alive stream failed: ${error.message}`);
      for (const waiter of stream.pending.values()) {
        clearTimeout(waiter.timer);
        waiter.reject(stream.failure);
      }
      stream.pending.clear();
    };
    call.on('error', fail);
    call.on('end', () => fail(new Error('server ended the stream')));
    return stream;
  }

  op(clientIndex: number): Promise<void> {
    const stream = this.streams[clientIndex % this.streams.length]!;
    if (stream.failure !== undefined) return Promise.reject(stream.failure);
    const owned = Math.ceil((this.options.leases - clientIndex) / this.options.clients);
    const leaseIndex = clientIndex + (this.cursors[clientIndex]! % owned) * this.options.clients;
    this.cursors[clientIndex]! += 1;
    const id = this.leaseIds[leaseIndex]!;
    return new Promise((resolve, reject) => {
      if (stream.pending.has(id)) throw new Error(`two keep-alives in flight for lease ${id}`);
      const timer = setTimeout(() => {
        stream.pending.delete(id);
        reject(new Error(`keep-alive for lease ${id} timed out after ${this.options.requestTimeoutMs} ms`));
      }, this.options.requestTimeoutMs);
      stream.pending.set(id, { resolve, reject, timer });
      stream.call.write({ ID: id });
    });
  }

  async finish(stats: LoopStats): Promise<WorkloadOutcome> {
    return {
      ops: stats.ok,
      errors: stats.errors,
      errorSamples: stats.errorSamples,
      durationMs: stats.endMs - stats.startMs,
      latency: stats.latency,
      extra: { leases: this.options.leases },
    };
  }

  async close(): Promise<void> {
    this.closing = true;
    for (const stream of this.streams) {
      stream.call.end();
      stream.call.cancel();
    }
    await forEachConcurrently(this.leaseIds.length, grantConcurrency, async (index) => {
      const connection = this.pool.forClient(index);
      await unary(
        connection.lease.LeaseRevoke,
        connection.lease,
        { ID: this.leaseIds[index]! },
        revokeTimeoutMs,
      ).catch(() => undefined);
    });
  }
}
