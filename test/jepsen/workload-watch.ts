// Watch workload: writers put and delete keys under a prefix while watchers follow the prefix,
// each through a stream to one member. A watcher's stream ends when its member dies, or on a
// timer so resumption is exercised all the time; it then resumes from the last revision it saw
// + 1, usually through another member. After the heal, the keyspace's full event history is
// read with a watch from revision 1, every watcher is given time to catch up, and the history
// is compacted half-way so watches started at or below the compaction must get the compacted
// error. checkWatches compares each watcher's segments with the keyspace.

import { setTimeout as sleep } from 'node:timers/promises';
import type { ClientDuplexStream } from '@grpc/grpc-js';
import {
  type CompactionRecord,
  checkRevisions,
  checkSet,
  checkWatches,
  combineVerdicts,
  HistoryRecorder,
  type KeyspaceEvent,
  type RevisionFacts,
  type SetOp,
  type SetVerdict,
  type WatcherRecord,
  type WatchSegment,
} from '../../src/sim/check/index.js';
import { classifyError, prefixEnd, revisionOf, type WatchResponse, type WireEvent } from './rpc.js';
import {
  deadline,
  pause,
  retryIdempotent,
  type Workload,
  type WorkloadContext,
  WorkloadError,
  type WorkloadResult,
} from './workload.js';

const prefix = '/jepsen/watch/';
const keysCount = 5;
/** A watcher's stream is cut after a random time in [min, min+spread) to exercise resumption. */
const segmentLifeMinMs = 800;
const segmentLifeSpreadMs = 2000;
/** Bounds the memory one watcher's records take. */
const segmentsPerWatcherMax = 400;
const catchUpTimeoutMs = 15_000;
const createTimeoutMs = 2000;
const historyReadTimeoutMs = 10_000;
const setupAttemptsMax = 20;

interface MutableSegment extends WatchSegment {
  events: KeyspaceEvent[];
}

interface WatcherState {
  id: string;
  segments: MutableSegment[];
  lastRevision: number;
  /** Revision the next segment starts from. */
  nextStart: number;
}

function toKeyspaceEvent(event: WireEvent, subOrder: number): KeyspaceEvent {
  return {
    revision: Number(event.kv.mod_revision),
    subOrder,
    key: event.kv.key.toString('utf8'),
    type: event.type === 'DELETE' ? 'delete' : 'put',
    ...(event.type === 'DELETE' ? {} : { value: event.kv.value.toString('utf8') }),
  };
}

/** Appends a response's events, numbering events that share a revision (a Txn's several changes). */
function appendEvents(into: KeyspaceEvent[], events: readonly WireEvent[]): void {
  for (const event of events) {
    const revision = Number(event.kv.mod_revision);
    const previous = into[into.length - 1];
    const subOrder = previous !== undefined && previous.revision === revision ? previous.subOrder + 1 : 0;
    into.push(toKeyspaceEvent(event, subOrder));
  }
}

function createRequest(startRevision: number): object {
  return {
    create_request: {
      key: Buffer.from(prefix),
      range_end: prefixEnd(prefix),
      start_revision: String(startRevision),
    },
  };
}

/**
 * One watch stream from `startRevision`. Calls onResponse for every response; resolves when the
 * stream ended (error, server cancel, or `until` aborted). Never rejects.
 */
function runStream(
  stream: ClientDuplexStream<object, WatchResponse>,
  startRevision: number,
  until: AbortSignal,
  onResponse: (response: WatchResponse) => void,
): Promise<void> {
  return new Promise((resolve) => {
    const finish = (): void => {
      until.removeEventListener('abort', finish);
      stream.removeAllListeners('data');
      stream.on('error', () => undefined);
      stream.cancel();
      resolve();
    };
    if (until.aborted) {
      finish();
      return;
    }
    until.addEventListener('abort', finish, { once: true });
    stream.on('data', (response: WatchResponse) => {
      onResponse(response);
      if (response.canceled) finish();
    });
    stream.on('error', finish);
    stream.on('end', finish);
    stream.write(createRequest(startRevision));
  });
}

export class WatchWorkload implements Workload {
  readonly name = 'watch';
  private readonly writes: HistoryRecorder<string | null, RevisionFacts>;
  /** When the final history read began and ended (it is the set checker's final read). */
  private keyspaceReadTimes = { invoke: 0, complete: 0 };
  private readonly watchers = new Map<number, WatcherState>();
  private readonly watcherLoops: Promise<void>[] = [];
  private readonly watchersStop = new AbortController();
  private readonly extraWatchers: WatcherRecord[] = [];
  private readonly compactions: CompactionRecord[] = [];
  private keyspace: KeyspaceEvent[] = [];
  private initialRevision = 1;
  private nextValue = 1;

  constructor(
    private readonly now: () => number,
    /** Processes below this number write; the others watch. */
    private readonly writersCount: number,
  ) {
    this.writes = new HistoryRecorder(now);
  }

  /**
   * One acknowledged put before the watchers start. A timed-out attempt may still commit, so every
   * attempt is its own operation with its own value: the keyspace check then knows each one.
   */
  async setup(ctx: WorkloadContext): Promise<void> {
    let lastError: unknown;
    for (let attempt = 1; attempt <= setupAttemptsMax; attempt++) {
      const value = `initial${attempt}`;
      const op = this.writes.invoke('setup', 'put', `${prefix}k0`, value);
      try {
        const response = await ctx.rpc.put(ctx.anyEndpoint(), `${prefix}k0`, value, ctx.requestTimeoutMs);
        this.initialRevision = revisionOf(response.header);
        op.ok({ revision: this.initialRevision, mutation: true });
        return;
      } catch (error) {
        lastError = error;
        if (classifyError(error) === 'fail') op.fail();
        else op.unknown();
        await sleep(200);
      }
    }
    const cause = lastError instanceof Error ? lastError.message : String(lastError);
    throw new WorkloadError(`watch setup write failed ${setupAttemptsMax} times; last error: ${cause}`);
  }

  async runClient(ctx: WorkloadContext, process: number, stop: AbortSignal): Promise<void> {
    if (process < this.writersCount) {
      await this.writeLoop(ctx, process, stop);
      return;
    }
    const watcher: WatcherState = {
      id: `w${process}`,
      segments: [],
      // So that a watcher which saw nothing yet resumes at the start, not after it.
      lastRevision: this.initialRevision - 1,
      nextStart: this.initialRevision,
    };
    this.watchers.set(process, watcher);
    // Watchers outlive the run: finish() lets them catch up before stopping them.
    this.watcherLoops.push(this.watchLoop(ctx, process, watcher));
  }

  private async writeLoop(ctx: WorkloadContext, process: number, stop: AbortSignal): Promise<void> {
    const random = ctx.random(process);
    while (!stop.aborted) {
      const key = `${prefix}k${Math.floor(random() * keysCount)}`;
      const isDelete = random() < 0.2;
      const value = isDelete ? null : `v${this.nextValue++}`;
      const op = this.writes.invoke(process, isDelete ? 'delete' : 'put', key, value);
      try {
        const endpoint = ctx.endpointFor(process);
        if (value === null) {
          const response = await ctx.rpc.unary<{ header: { revision: string }; deleted: string }>(
            endpoint,
            'etcdserverpb.KV',
            'DeleteRange',
            { key: Buffer.from(key) },
            ctx.requestTimeoutMs,
          );
          // Deleting a missing key creates no revision; the header then only tells where "now" was.
          op.ok({ revision: revisionOf(response.header), mutation: Number(response.deleted) > 0 });
        } else {
          const response = await ctx.rpc.put(endpoint, key, value, ctx.requestTimeoutMs);
          op.ok({ revision: revisionOf(response.header), mutation: true });
        }
      } catch (error) {
        if (classifyError(error) === 'fail') op.fail();
        else op.unknown();
      }
      await ctx.pace(process, stop);
    }
  }

  private async watchLoop(ctx: WorkloadContext, process: number, watcher: WatcherState): Promise<void> {
    const random = ctx.random(process);
    const stop = this.watchersStop.signal;
    while (!stop.aborted && watcher.segments.length < segmentsPerWatcherMax) {
      const endpoint = ctx.endpointFor(process + watcher.segments.length);
      const segment: MutableSegment = { startRevision: watcher.nextStart, createdAt: this.now(), events: [] };
      watcher.segments.push(segment);
      const life = deadline(segmentLifeMinMs + Math.floor(random() * segmentLifeSpreadMs), stop);
      let stream: ClientDuplexStream<object, WatchResponse>;
      try {
        stream = ctx.rpc.watchStream(endpoint);
      } catch {
        life.dispose();
        return; // the rpc layer was closed: the run is over
      }
      await runStream(stream, segment.startRevision, life.signal, (response) => {
        this.onResponse(watcher, segment, response);
      });
      life.dispose();
      watcher.nextStart = watcher.lastRevision + 1;
      await pause(50, stop);
    }
  }

  private onResponse(watcher: WatcherState, segment: MutableSegment, response: WatchResponse): void {
    if (response.created && segment.createdRevision === undefined && response.header) {
      segment.createdRevision = Number(response.header.revision);
    }
    const compactRevision = Number(response.compact_revision ?? '0');
    if (compactRevision > 0) {
      segment.compactRevision = compactRevision;
      return;
    }
    appendEvents(segment.events, response.events ?? []);
    const last = segment.events[segment.events.length - 1];
    if (last !== undefined) watcher.lastRevision = last.revision;
  }

  async finish(ctx: WorkloadContext): Promise<void> {
    const endpoint = ctx.anyEndpoint();
    const currentRevision = await retryIdempotent('current revision', 50, async () =>
      revisionOf((await ctx.rpc.range(endpoint, { key: Buffer.from(prefix) }, ctx.requestTimeoutMs)).header),
    );
    this.keyspaceReadTimes.invoke = this.now();
    this.keyspace = await retryIdempotent('keyspace history read', 10, () =>
      this.readHistory(ctx, endpoint, 1, currentRevision),
    );
    this.keyspaceReadTimes.complete = this.now();
    const lastMatching = this.keyspace[this.keyspace.length - 1]?.revision ?? 0;
    await this.awaitCatchUp(lastMatching);
    this.watchersStop.abort();
    await Promise.all(this.watcherLoops);
    await this.checkCompaction(ctx, endpoint, currentRevision);
  }

  /** Every event under the prefix in [from, through], via one watch stream. */
  private async readHistory(
    ctx: WorkloadContext,
    endpoint: string,
    from: number,
    through: number,
  ): Promise<KeyspaceEvent[]> {
    const events: KeyspaceEvent[] = [];
    const done = deadline(historyReadTimeoutMs);
    let compacted = 0;
    await runStream(ctx.rpc.watchStream(endpoint), from, done.signal, (response) => {
      compacted = Number(response.compact_revision ?? '0');
      appendEvents(events, response.events ?? []);
      if ((events[events.length - 1]?.revision ?? 0) >= through) done.abort();
    });
    done.dispose();
    if (compacted > 0) throw new Error(`history read from ${from} hit compaction at ${compacted}`);
    // Writes only touch the prefix, so the stream reaches `through` unless it was cut short.
    if ((events[events.length - 1]?.revision ?? 0) < through) {
      throw new Error(`history read reached ${events[events.length - 1]?.revision ?? 0} of ${through}`);
    }
    return events.filter((e) => e.revision <= through);
  }

  private async awaitCatchUp(lastMatching: number): Promise<void> {
    const deadline = Date.now() + catchUpTimeoutMs;
    while (Date.now() < deadline && [...this.watchers.values()].some((w) => w.lastRevision < lastMatching)) {
      await pause(100, this.watchersStop.signal);
    }
    for (const watcher of this.watchers.values()) {
      const segment = watcher.segments[watcher.segments.length - 1];
      if (
        segment !== undefined &&
        watcher.lastRevision >= lastMatching &&
        segment.compactRevision === undefined
      ) {
        segment.caughtUpThrough = lastMatching;
      }
    }
  }

  /**
   * Compacts about half-way, at a delete when there is one: a tombstone at exactly the
   * compaction revision must survive for watches from that revision (etcd lost it until
   * etcd-io/etcd#18274). Then watches from 1 (must be refused), from the compaction revision
   * and from the one after (both must deliver everything from their start).
   */
  private async checkCompaction(
    ctx: WorkloadContext,
    endpoint: string,
    currentRevision: number,
  ): Promise<void> {
    const compactAt = this.compactionTarget(currentRevision);
    const record: CompactionRecord = { revision: compactAt, invokeTime: this.now(), status: 'unknown' };
    this.compactions.push(record);
    await retryIdempotent('compaction', 20, () =>
      ctx.rpc.unary(
        endpoint,
        'etcdserverpb.KV',
        'Compact',
        { revision: String(compactAt), physical: true },
        ctx.requestTimeoutMs * 3,
      ),
    );
    record.status = 'ok';
    record.completeTime = this.now();
    for (const start of [1, compactAt, compactAt + 1]) {
      this.extraWatchers.push(await this.oneShotWatcher(ctx, endpoint, start, currentRevision));
    }
  }

  private compactionTarget(currentRevision: number): number {
    const middle = Math.max(2, Math.floor(currentRevision / 2));
    let best: number | undefined;
    for (const event of this.keyspace) {
      if (event.type !== 'delete' || event.revision < 2 || event.revision >= currentRevision) continue;
      if (best === undefined || Math.abs(event.revision - middle) < Math.abs(best - middle))
        best = event.revision;
    }
    return best ?? middle;
  }

  private async oneShotWatcher(
    ctx: WorkloadContext,
    endpoint: string,
    start: number,
    through: number,
  ): Promise<WatcherRecord> {
    const segment: MutableSegment = { startRevision: start, createdAt: this.now(), events: [] };
    const state: WatcherState = {
      id: `after-compaction-from-${start}`,
      segments: [segment],
      lastRevision: 0,
      nextStart: 0,
    };
    const done = deadline(createTimeoutMs * 3);
    await runStream(ctx.rpc.watchStream(endpoint), start, done.signal, (response) => {
      this.onResponse(state, segment, response);
      if (segment.compactRevision !== undefined || state.lastRevision >= through) done.abort();
    });
    done.dispose();
    if (segment.compactRevision === undefined && state.lastRevision >= through)
      segment.caughtUpThrough = through;
    return { id: state.id, key: prefix, rangeEnd: prefixEnd(prefix).toString('utf8'), segments: [segment] };
  }

  check(): WorkloadResult {
    const watchers: WatcherRecord[] = [...this.watchers.values()].map((w) => ({
      id: w.id,
      key: prefix,
      rangeEnd: prefixEnd(prefix).toString('utf8'),
      segments: w.segments,
    }));
    watchers.push(...this.extraWatchers);
    const verdict = checkWatches({
      keyspace: this.keyspace,
      keyspaceFromRevision: 1,
      compactions: this.compactions,
      watchers,
    });
    const segments = watchers.reduce((sum, w) => sum + w.segments.length, 0);
    const delivered = watchers.reduce(
      (sum, w) => sum + w.segments.reduce((s, g) => s + g.events.length, 0),
      0,
    );
    const writes = this.writes.history();
    const revisions = checkRevisions(writes, (op) => op.output);
    return {
      verdict: combineVerdicts([verdict, this.checkWritesInKeyspace(writes), revisions]),
      operations: writes,
      notes: `keyspace-events=${this.keyspace.length} watchers=${watchers.length} segments=${segments} delivered=${delivered}`,
    };
  }

  /**
   * The keyspace read is what every watcher is compared with, so it must itself hold every
   * acknowledged put and nothing never written: a set check with elements "key=value" (values
   * are unique) and the history read as the final read.
   */
  private checkWritesInKeyspace(writes: ReturnType<typeof this.writes.history>): SetVerdict {
    const puts: SetOp[] = writes
      .filter((op) => op.kind === 'put')
      .map((op) => ({ ...op, kind: 'add', key: prefix, input: `${op.key}=${op.input}`, output: [] }));
    const finalRead: SetOp = {
      id: writes.length + 1,
      process: 'final',
      kind: 'read',
      key: prefix,
      input: undefined,
      output: this.keyspace.filter((e) => e.type === 'put').map((e) => `${e.key}=${e.value}`),
      invokeTime: this.keyspaceReadTimes.invoke,
      completeTime: this.keyspaceReadTimes.complete,
      status: 'ok',
    };
    return checkSet([...puts, finalRead]);
  }

  dispose(): void {
    this.watchersStop.abort();
  }
}
