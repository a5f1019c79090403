// Watch flow control: a client that stops reading must cost the server a bounded amount of
// memory (the hub watcher falls behind and re-reads history later), and once it reads again it
// must receive every event exactly once, in revision order.

import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import { setImmediate as turn } from 'node:timers/promises';
import type * as grpc from '@grpc/grpc-js';
import { EtcdError } from '../../src/api/errors.js';
import { defaultGrpcServerOptions } from '../../src/api/grpc-server.js';
import { WatchSession } from '../../src/api/watch-session.js';
import type { Event } from '../../src/mvcc/types.js';
import type { Watcher } from '../../src/mvcc/watch.js';
import type { BackendWatcher, WatchCreate, WatchListener } from '../../src/services/backend.js';
import { watchFromHub } from '../../src/services/hub-watch.js';
import { type Harness, hostPort, type RawClient, rawClient, startHarness } from './harness.js';
import { KeyspaceBackend } from './keyspace-backend.js';
import { MemoryBackend } from './memory-backend.js';

interface WatchResponse {
  watch_id: string;
  created: boolean;
  canceled: boolean;
  events: Array<{ kv: { key: Buffer; mod_revision: string } }>;
}

/** Small on purpose: a server that queued responses instead of pausing would hit it at once. */
const watchResponsesQueuedMax = 64;
const eventsTotal = 50_000;
const putsPerBatch = 500;

function openWatch(client: RawClient): grpc.ClientDuplexStream<object, WatchResponse> {
  const open = (client as unknown as { Watch: () => grpc.ClientDuplexStream<object, WatchResponse> }).Watch;
  return open.call(client);
}

/** Resolves with the first response; the stream is left paused (the client stops reading). */
function firstResponsePaused(call: grpc.ClientDuplexStream<object, WatchResponse>): Promise<WatchResponse> {
  return new Promise((resolve, reject) => {
    call.once('data', (response: WatchResponse) => {
      call.pause();
      resolve(response);
    });
    call.once('error', reject);
  });
}

function hubWatchers(backend: KeyspaceBackend): Watcher[] {
  const found: Watcher[] = [];
  for (let id = 1; id <= 16; id++) {
    const watcher = backend.keyspace.watchHub.get(id);
    if (watcher !== undefined) found.push(watcher);
  }
  return found;
}

function keyOf(i: number): Buffer {
  return Buffer.from(`flow/${String(i).padStart(6, '0')}`);
}

describe('watch flow control', () => {
  let harness: Harness | undefined;
  let client: RawClient | undefined;

  afterEach(async () => {
    client?.close();
    await harness?.close();
  });

  it('a client that stops reading makes its hub watcher fall behind; later it gets every event once, in order', {
    timeout: 60_000,
  }, async () => {
    harness = await startHarness(
      { grpc: { ...defaultGrpcServerOptions, watchResponsesQueuedMax } },
      'keyspace',
    );
    const backend = harness.backend as KeyspaceBackend;
    client = rawClient(hostPort(harness.server), 'etcdserverpb.Watch');
    const call = openWatch(client);
    let streamError: Error | undefined;
    call.on('error', (error: Error) => {
      streamError = error;
    });
    const created = firstResponsePaused(call);
    call.write({ create_request: { key: Buffer.from('flow/'), range_end: Buffer.from('flow0') } });
    assert.equal((await created).created, true);
    const firstRevision = backend.keyspace.currentRevision() + 1;

    let sawUnsynced = false;
    for (let written = 0; written < eventsTotal; written += putsPerBatch) {
      const keys = Array.from({ length: putsPerBatch }, (_, i) => keyOf(written + i));
      backend.putMany(keys, Buffer.from('v'));
      // Give the server every chance to push: without flow control it would queue here.
      await turn();
      await turn();
      sawUnsynced ||= hubWatchers(backend).some((w) => w.state === 'unsynced');
    }
    assert.equal(streamError, undefined, 'the stream survived the slow reader');
    assert.ok(sawUnsynced, 'the hub watcher fell behind instead of the server queueing responses');
    for (const watcher of hubWatchers(backend)) {
      assert.ok(watcher.bufferedEvents <= backend.keyspace.watchHub.eventsBufferedMax);
    }

    const revisions: number[] = [];
    const keys: string[] = [];
    const all = new Promise<void>((resolve, reject) => {
      call.on('data', (response: WatchResponse) => {
        for (const event of response.events) {
          revisions.push(Number(event.kv.mod_revision));
          keys.push(event.kv.key.toString());
        }
        if (revisions.length >= eventsTotal) resolve();
      });
      call.once('error', reject);
    });
    call.resume();
    await all;
    // Nothing extra arrives after the last event.
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(revisions.length, eventsTotal);
    for (let i = 0; i < eventsTotal; i++) {
      if (revisions[i] !== firstRevision + i) assert.fail(`event ${i} has revision ${revisions[i]}`);
      if (keys[i] !== keyOf(i).toString()) assert.fail(`event ${i} has key ${keys[i]}`);
    }
    assert.equal(streamError, undefined);
    call.end();
    call.cancel();
  });

  it('a backend that ignores flow control hits the queued-responses bound and the stream ends with RESOURCE_EXHAUSTED', {
    timeout: 30_000,
  }, async () => {
    harness = await startHarness(
      { grpc: { ...defaultGrpcServerOptions, watchResponsesQueuedMax } },
      'memory',
    );
    client = rawClient(hostPort(harness.server), 'etcdserverpb.Watch');
    const call = openWatch(client);
    const ended = new Promise<grpc.ServiceError>((resolve) => call.on('error', resolve));
    const created = firstResponsePaused(call);
    call.write({ create_request: { key: Buffer.from('push/'), range_end: Buffer.from('push0') } });
    assert.equal((await created).created, true);
    for (let i = 0; i < 5_000; i++) {
      await harness.backend.put({ key: Buffer.from(`push/${i}`), value: Buffer.from('v') });
    }
    call.resume();
    const error = await ended;
    assert.equal(error.code, 8, 'RESOURCE_EXHAUSTED');
    assert.match(error.details, /fell too far behind/);
  });
});

describe('watch stream failures', () => {
  it('a backend that throws under an open watch stream ends that stream with its status, nothing uncaught', {
    timeout: 10_000,
  }, async () => {
    const harness = await startHarness();
    const client = rawClient(hostPort(harness.server), 'etcdserverpb.Watch');
    const uncaught: unknown[] = [];
    const onUncaught = (error: unknown) => uncaught.push(error);
    process.on('uncaughtException', onUncaught);
    try {
      let stopped = false;
      const header = harness.backend.header.bind(harness.backend);
      harness.backend.header = () => {
        if (stopped) throw new EtcdError('stopped');
        return header();
      };
      const call = openWatch(client);
      const ended = new Promise<grpc.ServiceError>((resolve) => call.on('error', resolve));
      const created = new Promise<WatchResponse>((resolve) => call.once('data', resolve));
      call.write({ create_request: { key: Buffer.from('s') } });
      assert.equal((await created).created, true);
      stopped = true;
      call.write({ progress_request: {} });
      const error = await ended;
      assert.equal(error.code, 14, 'UNAVAILABLE');
      assert.equal(error.details, 'etcdserver: server stopped');
      assert.equal(harness.backend.watcherCount, 0, 'the failed session canceled its watchers');
      stopped = false;
      const again = openWatch(client);
      again.on('error', () => {});
      const createdAgain = new Promise<WatchResponse>((resolve) => again.once('data', resolve));
      again.write({ create_request: { key: Buffer.from('s') } });
      assert.equal((await createdAgain).created, true, 'other streams keep working');
      again.cancel();
      assert.deepEqual(uncaught, []);
    } finally {
      process.off('uncaughtException', onUncaught);
      client.close();
      await harness.close();
    }
  });
});

/** Every watcher always has another event: only flow control stops them. */
class EndlessBackend extends MemoryBackend {
  override watch(request: WatchCreate, listener: WatchListener): BackendWatcher {
    let paused = false;
    let canceled = false;
    const kv = {
      key: request.key,
      value: Buffer.from('v'),
      createRevision: 1,
      modRevision: 1,
      version: 1,
      lease: 0n,
    };
    const stop = (): boolean => {
      if (listener.ready?.() !== false) return false;
      paused = true;
      return true;
    };
    // Like watchFromHub: ask ready() before every batch, including right after one.
    const pump = (): void => {
      setImmediate(() => {
        if (canceled || paused || stop()) return;
        listener.onEvents([{ type: 'put', kv }], 1);
        if (!stop()) pump();
      });
    };
    pump();
    return {
      synced: true,
      cancel: () => {
        canceled = true;
      },
      resume: () => {
        if (!paused) return;
        paused = false;
        pump();
      },
    };
  }
}

describe('watch session fairness', () => {
  it('busy watchers on one full stream take turns after each drain instead of one starving the rest', async () => {
    const backend = new EndlessBackend();
    const perWatcher = new Map<string, number>();
    let sent = 0;
    const responsesMax = 300;
    let session: WatchSession | undefined;
    const finished = new Promise<void>((resolve) => {
      session = new WatchSession(backend, (response) => {
        if (response.events.length === 0) return true;
        const id = String(response.watch_id);
        perWatcher.set(id, (perWatcher.get(id) ?? 0) + 1);
        sent++;
        if (sent >= responsesMax) {
          session?.close();
          resolve();
          return false;
        }
        // A transport that fills after every response and drains on the next turn.
        setImmediate(() => session?.drained());
        return false;
      });
    });
    for (const key of ['a', 'b', 'c']) {
      session!.handle({
        create_request: {
          key: Buffer.from(key),
          range_end: Buffer.alloc(0),
          start_revision: '0',
          progress_notify: false,
          filters: [],
          prev_kv: false,
          watch_id: '0',
          fragment: false,
        },
      });
    }
    await finished;
    assert.equal(perWatcher.size, 3);
    for (const [id, count] of perWatcher) {
      assert.ok(count >= responsesMax / 3 - 2, `watcher ${id} sent ${count} of ${responsesMax}`);
    }
  });
});

describe('watch filters reach the hub', () => {
  it('a NOPUT watcher stays synced through a put storm larger than its buffer and still sees deletes', async () => {
    const backend = new KeyspaceBackend();
    try {
      const hub = backend.keyspace.watchHub;
      const received: { filtered: Event[]; plain: Event[] } = { filtered: [], plain: [] };
      const watch = (filters: ('noput' | 'nodelete')[], into: Event[]) =>
        watchFromHub(
          hub,
          { key: Buffer.from('f/'), rangeEnd: Buffer.from('f0'), startRevision: 0, prevKv: false, filters },
          { onEvents: (events) => into.push(...events), onCompacted: () => assert.fail('not compacted') },
        );
      const filtered = watch(['noput'], received.filtered);
      const plain = watch([], received.plain);
      const keys = Array.from({ length: hub.eventsBufferedMax + 10 }, (_, i) => Buffer.from(`f/${i}`));
      backend.putMany(keys, Buffer.from('v'));
      // The puts never entered the filtered watcher's buffer; the plain one overflowed.
      assert.equal(filtered.synced, true);
      assert.equal(plain.synced, false);
      await backend.deleteRange({ key: Buffer.from('f/0') });
      for (let i = 0; i < 200 && received.plain.length < keys.length + 1; i++) await turn();
      assert.deepEqual(
        received.filtered.map((e) => [e.type, Buffer.from(e.kv.key).toString()]),
        [['delete', 'f/0']],
      );
      assert.equal(received.plain.length, keys.length + 1, 'the plain watcher catches up on everything');
      filtered.cancel();
      plain.cancel();
      assert.equal(hub.watcherCount, 0);
    } finally {
      await backend.dispose();
    }
  });
});
