// A watch as an async iterator that survives endpoint failures. The watcher remembers the
// revision after the last event it delivered (`nextRevision`) and, when its stream breaks,
// re-creates the watch on another endpoint from exactly that revision. Events below it are
// dropped, so none is repeated; the server sends every event from start_revision on, so none
// is skipped. If that revision was compacted meanwhile, the iterator throws CompactedError:
// the caller must re-read the state (get + watch from the new revision).

import type * as grpc from '@grpc/grpc-js';
import type { Client } from './client.js';
import { CompactedError, type ConcordError, fromGrpcError, ServerError } from './errors.js';
import { type RangeOptions, rangeEndOf, rangeStartOf } from './ops.js';
import { type Bytes, big, type KeyValue, toKeyValue, type WireHeader, type WireKeyValue } from './types.js';

export interface WatchOptions extends RangeOptions {
  /** First revision to deliver; default: changes after the watch is created. */
  fromRevision?: bigint | number;
  prevKv?: boolean;
  noPut?: boolean;
  noDelete?: boolean;
  /** Events queued for a slow consumer before the stream is paused. */
  eventsBufferedMax?: number;
}

export interface WatchEvent {
  type: 'put' | 'delete';
  kv: KeyValue;
  prevKv: KeyValue | undefined;
}

/** The events of one response, all at revisions <= `revision` (the header's). */
export interface WatchBatch {
  revision: bigint;
  events: WatchEvent[];
}

interface WireWatchResponse {
  header?: WireHeader;
  watch_id: string;
  created: boolean;
  canceled: boolean;
  compact_revision: string;
  cancel_reason: string;
  events?: { type: 'PUT' | 'DELETE'; kv: WireKeyValue; prev_kv?: WireKeyValue | null }[];
}

const defaultEventsBufferedMax = 10_000;
/** Watch cancel reasons after which the watch is re-created elsewhere instead of failing. */
const transientCancelReasons = ['no leader', 'leader changed', 'server stopped'];

function toEvent(wire: NonNullable<WireWatchResponse['events']>[number]): WatchEvent {
  return {
    type: wire.type === 'DELETE' ? 'delete' : 'put',
    kv: toKeyValue(wire.kv),
    prevKv: wire.prev_kv ? toKeyValue(wire.prev_kv) : undefined,
  };
}

export class Watcher implements AsyncIterable<WatchEvent> {
  private readonly queue: WatchBatch[] = [];
  private queuedEvents = 0;
  private waiter: (() => void) | undefined;
  private failure: ConcordError | undefined;
  private closedFlag = false;
  private stream: grpc.ClientDuplexStream<object, object> | undefined;
  private paused = false;
  /** The lowest revision not yet delivered; 0 until the first watch is created. */
  private nextRevisionValue: bigint;
  private readonly key: Buffer;
  private readonly rangeEnd: Buffer | undefined;
  private readonly eventsBufferedMax: number;
  /** Resolves once the first watch is created on the server (events from then on are covered). */
  readonly ready: Promise<void>;
  private markReady: () => void = () => {};
  /** How many times the watch was re-created after a broken stream. */
  reconnects = 0;
  /** The endpoint the current stream is on (undefined between streams). */
  currentEndpoint: string | undefined;

  constructor(
    private readonly client: Client,
    key: Bytes,
    private readonly options: WatchOptions,
  ) {
    this.rangeEnd = rangeEndOf(key, options);
    this.key = rangeStartOf(key, this.rangeEnd);
    this.nextRevisionValue = options.fromRevision === undefined ? 0n : BigInt(options.fromRevision);
    this.eventsBufferedMax = options.eventsBufferedMax ?? defaultEventsBufferedMax;
    this.ready = new Promise((resolve) => {
      this.markReady = resolve;
    });
    this.ready.catch(() => undefined);
    void this.run();
  }

  get nextRevision(): bigint {
    return this.nextRevisionValue;
  }

  private async run(): Promise<void> {
    const tried = new Set<string>();
    for (let attempt = 1; !this.closedFlag && this.failure === undefined; attempt++) {
      if (tried.size >= this.client.pool.endpoints.length) tried.clear();
      const endpoint = this.client.pool.pick(this.key, tried);
      try {
        await this.session(endpoint.address, () => {
          attempt = 0;
          this.client.pool.recordSuccess(endpoint);
        });
      } catch (raw) {
        const error = fromGrpcError(raw);
        if (this.closedFlag) return;
        if (error instanceof CompactedError || error instanceof ServerError) {
          this.fail(error);
          return;
        }
        this.client.pool.recordFailure(endpoint);
        tried.add(endpoint.address);
        this.reconnects++;
        await new Promise((resolve) => setTimeout(resolve, this.client.backoffMs(Math.max(attempt, 1))));
      }
    }
  }

  /** One stream on one endpoint; rejects when it breaks, resolves only when closed. */
  private async session(endpoint: string, onCreated: () => void): Promise<void> {
    const connection = this.client.connection(endpoint);
    await connection.ready(Date.now() + this.client.dialTimeoutMs);
    const metadata = await this.client.metadata();
    // etcd's clients ask the member to end the watch when it loses its leader, so a watcher
    // stuck on a partitioned member moves elsewhere.
    metadata.set('hasleader', 'true');
    const stream = connection.duplex('Watch', 'Watch', metadata);
    this.stream = stream;
    this.currentEndpoint = endpoint;
    this.paused = false;
    await new Promise<void>((resolve, reject) => {
      stream.on('data', (response: WireWatchResponse) => {
        try {
          this.onResponse(response, onCreated);
        } catch (error) {
          stream.cancel();
          reject(error);
        }
      });
      stream.on('error', (error) => (this.closedFlag ? resolve() : reject(error)));
      stream.on('end', () =>
        this.closedFlag ? resolve() : reject(fromGrpcError(new Error('watch stream ended'))),
      );
      stream.write({ create_request: this.createRequest() });
    });
  }

  private createRequest(): Record<string, unknown> {
    const filters: string[] = [];
    if (this.options.noPut === true) filters.push('NOPUT');
    if (this.options.noDelete === true) filters.push('NODELETE');
    return {
      key: this.key,
      range_end: this.rangeEnd,
      start_revision: this.nextRevisionValue.toString(),
      // No progress notifications: advancing the resume revision on one is only safe when the
      // member is fully caught up, which the response does not say.
      progress_notify: false,
      filters,
      prev_kv: this.options.prevKv ?? false,
    };
  }

  private onResponse(response: WireWatchResponse, onCreated: () => void): void {
    const headerRevision = big(response.header?.revision);
    if (response.canceled) {
      const compactRevision = big(response.compact_revision);
      if (compactRevision > 0n) throw new CompactedError(compactRevision);
      const reason = response.cancel_reason ?? '';
      if (transientCancelReasons.some((r) => reason.includes(r))) throw fromGrpcError(new Error(reason));
      throw new ServerError(2, `watch canceled by the server: ${reason}`, 'not-applied');
    }
    if (response.created) {
      if (this.nextRevisionValue === 0n) this.nextRevisionValue = headerRevision + 1n;
      onCreated();
      this.markReady();
    }
    const events = (response.events ?? [])
      .filter((e) => big(e.kv.mod_revision) >= this.nextRevisionValue)
      .map(toEvent);
    if (events.length === 0) return;
    const last = events[events.length - 1] as WatchEvent;
    if (last.kv.modRevision < (events[0] as WatchEvent).kv.modRevision)
      throw new Error('watch invariant: events out of revision order');
    this.nextRevisionValue = last.kv.modRevision + 1n;
    this.push({
      // biome-ignore lint/complexity/useMathMinMax: bigints; Math.max would throw
      revision: headerRevision > last.kv.modRevision ? headerRevision : last.kv.modRevision,
      events,
    });
  }

  private push(batch: WatchBatch): void {
    this.queue.push(batch);
    this.queuedEvents += batch.events.length;
    if (this.queuedEvents >= this.eventsBufferedMax && !this.paused) {
      this.paused = true;
      this.stream?.pause();
    }
    this.wake();
  }

  private wake(): void {
    const waiter = this.waiter;
    this.waiter = undefined;
    waiter?.();
  }

  private fail(error: ConcordError): void {
    this.failure = error;
    this.stream?.cancel();
    this.wake();
  }

  /** The next batch of events (one server response), or undefined once closed. */
  async nextBatch(): Promise<WatchBatch | undefined> {
    for (;;) {
      const batch = this.queue.shift();
      if (batch !== undefined) {
        this.queuedEvents -= batch.events.length;
        if (this.paused && this.queuedEvents < this.eventsBufferedMax / 2) {
          this.paused = false;
          this.stream?.resume();
        }
        return batch;
      }
      if (this.failure !== undefined) throw this.failure;
      if (this.closedFlag) return undefined;
      await new Promise<void>((resolve) => {
        this.waiter = resolve;
      });
    }
  }

  async *batches(): AsyncGenerator<WatchBatch> {
    try {
      for (;;) {
        const batch = await this.nextBatch();
        if (batch === undefined) return;
        yield batch;
      }
    } finally {
      this.close();
    }
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<WatchEvent> {
    for await (const batch of this.batches()) yield* batch.events;
  }

  close(): void {
    if (this.closedFlag) return;
    this.closedFlag = true;
    this.stream?.cancel();
    this.client.disown(this);
    this.wake();
  }
}
