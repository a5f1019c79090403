// The Watch bidirectional stream, checked message by message with a raw gRPC client.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type * as grpc from '@grpc/grpc-js';
import { defaultValidationLimits } from '../../src/api/validate.js';
import {
  backendKinds,
  type Harness,
  hostPort,
  type RawClient,
  rawCall,
  rawClient,
  startHarness,
} from './harness.js';

const b = (text: string) => Buffer.from(text);

interface WatchResponse {
  header: { revision: string };
  watch_id: string;
  created: boolean;
  canceled: boolean;
  compact_revision: string;
  cancel_reason: string;
  fragment: boolean;
  events: Array<{ type: string; kv: { key: Buffer; value: Buffer }; prev_kv: { value: Buffer } | null }>;
}

/** One watch stream whose responses can be awaited in order. */
class WatchStream {
  private readonly queue: WatchResponse[] = [];
  private waiter: (() => void) | undefined;
  readonly call: grpc.ClientDuplexStream<object, WatchResponse>;

  constructor(client: RawClient) {
    const open = (client as unknown as { Watch: () => grpc.ClientDuplexStream<object, WatchResponse> }).Watch;
    this.call = open.call(client);
    this.call.on('data', (response: WatchResponse) => {
      this.queue.push(response);
      this.waiter?.();
    });
    this.call.on('error', () => {});
  }

  send(request: object): void {
    this.call.write(request);
  }

  async next(timeoutMs = 2000): Promise<WatchResponse> {
    const deadline = Date.now() + timeoutMs;
    while (this.queue.length === 0) {
      if (Date.now() > deadline) throw new Error('no watch response in time');
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 20);
        this.waiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    return this.queue.shift()!;
  }

  get pending(): number {
    return this.queue.length;
  }

  close(): void {
    this.call.end();
    this.call.cancel();
  }
}

for (const kind of backendKinds) {
  describe(`watch stream (${kind} backend)`, () => {
    let harness: Harness;
    let kv: RawClient;
    let watchClient: RawClient;
    const fragmentBytesMax = 400;
    const progressNotifyIntervalMs = 100;

    before(async () => {
      harness = await startHarness(
        {
          grpc: {
            limits: defaultValidationLimits,
            watch: { fragmentBytesMax, progressNotifyIntervalMs, watchersPerStreamMax: 8 },
            watchResponsesQueuedMax: 1000,
            keepAlivesInflightMax: 10,
          },
        },
        kind,
      );
      kv = rawClient(hostPort(harness.server), 'etcdserverpb.KV');
      watchClient = rawClient(hostPort(harness.server), 'etcdserverpb.Watch');
    });

    after(async () => {
      kv.close();
      watchClient.close();
      await harness.close();
    });

    it('server-chosen IDs count from 0; a client-chosen ID is honoured; a duplicate is refused', async () => {
      const stream = new WatchStream(watchClient);
      stream.send({ create_request: { key: b('ids') } });
      const first = await stream.next();
      assert.equal(first.created, true);
      assert.equal(first.watch_id, '0');
      stream.send({ create_request: { key: b('ids'), watch_id: 100 } });
      assert.equal((await stream.next()).watch_id, '100');
      stream.send({ create_request: { key: b('ids') } });
      assert.equal((await stream.next()).watch_id, '1');
      stream.send({ create_request: { key: b('ids'), watch_id: 100 } });
      const duplicate = await stream.next();
      assert.equal(duplicate.created, true);
      assert.equal(duplicate.canceled, true);
      assert.equal(duplicate.cancel_reason, 'mvcc: duplicate watch ID provided on the WatchStream');
      assert.equal(duplicate.watch_id, '-1');
      stream.close();
    });

    it('several watchers on one stream each receive only their own range', async () => {
      const stream = new WatchStream(watchClient);
      stream.send({ create_request: { key: b('w/a') } });
      stream.send({ create_request: { key: b('w/'), range_end: b('w0') } });
      const ids = [(await stream.next()).watch_id, (await stream.next()).watch_id];
      await rawCall(kv, 'Put', { key: b('w/b'), value: b('1') });
      await rawCall(kv, 'Put', { key: b('w/a'), value: b('2') });
      const got: string[] = [];
      for (let i = 0; i < 3; i++) {
        const response = await stream.next();
        for (const event of response.events) got.push(`${response.watch_id}:${event.kv.key.toString()}`);
      }
      assert.deepEqual(got.sort(), [`${ids[0]}:w/a`, `${ids[1]}:w/a`, `${ids[1]}:w/b`].sort());
      stream.close();
    });

    it('NOPUT filter drops puts; prev_kv carries the value before a delete', async () => {
      const stream = new WatchStream(watchClient);
      stream.send({ create_request: { key: b('f'), filters: ['NOPUT'], prev_kv: true } });
      await stream.next();
      await rawCall(kv, 'Put', { key: b('f'), value: b('before') });
      await rawCall(kv, 'DeleteRange', { key: b('f') });
      const response = await stream.next();
      assert.equal(response.events.length, 1);
      assert.equal(response.events[0]!.type, 'DELETE');
      assert.equal(response.events[0]!.prev_kv!.value.toString(), 'before');
      stream.close();
    });

    it('cancel answers canceled for the watch ID and stops its events', async () => {
      const stream = new WatchStream(watchClient);
      stream.send({ create_request: { key: b('c') } });
      const id = (await stream.next()).watch_id;
      stream.send({ cancel_request: { watch_id: id } });
      const canceled = await stream.next();
      assert.equal(canceled.canceled, true);
      assert.equal(canceled.watch_id, id);
      await rawCall(kv, 'Put', { key: b('c'), value: b('x') });
      await new Promise((resolve) => setTimeout(resolve, 50));
      assert.equal(stream.pending, 0);
      stream.close();
    });

    it('a progress request is answered with watch_id -1 and the current revision', async () => {
      const stream = new WatchStream(watchClient);
      stream.send({ progress_request: {} });
      const progress = await stream.next();
      assert.equal(progress.watch_id, '-1');
      assert.equal(progress.header.revision, String(harness.backend.header().revision));
      assert.equal(progress.events.length, 0);
      stream.close();
    });

    it('a start revision below the compaction point answers canceled with compact_revision', async () => {
      await rawCall(kv, 'Put', { key: b('old'), value: b('1') });
      await rawCall(kv, 'Put', { key: b('old'), value: b('2') });
      const revision = harness.backend.header().revision;
      await rawCall(kv, 'Compact', { revision });
      const stream = new WatchStream(watchClient);
      stream.send({ create_request: { key: b('old'), start_revision: revision - 1 } });
      const created = await stream.next();
      assert.equal(created.created, true);
      const compacted = await stream.next();
      assert.equal(compacted.canceled, true);
      assert.equal(compacted.compact_revision, String(revision));
      assert.equal(compacted.watch_id, created.watch_id);
      stream.close();
    });

    it('a compacted watcher keeps its ID until canceled, and its answer has header revision 0 (as etcd)', async () => {
      await rawCall(kv, 'Put', { key: b('kept'), value: b('1') });
      await rawCall(kv, 'Put', { key: b('kept'), value: b('2') });
      const revision = harness.backend.header().revision;
      await rawCall(kv, 'Compact', { revision });
      const stream = new WatchStream(watchClient);
      stream.send({ create_request: { key: b('kept'), start_revision: revision - 1, watch_id: 7 } });
      assert.equal((await stream.next()).watch_id, '7');
      const compacted = await stream.next();
      assert.equal(compacted.canceled, true);
      assert.equal(compacted.header.revision, '0');
      stream.send({ create_request: { key: b('kept'), watch_id: 7 } });
      const duplicate = await stream.next();
      assert.equal(duplicate.cancel_reason, 'mvcc: duplicate watch ID provided on the WatchStream');
      stream.send({ cancel_request: { watch_id: 7 } });
      const canceled = await stream.next();
      assert.deepEqual([canceled.watch_id, canceled.canceled], ['7', true]);
      stream.close();
    });

    it('an empty key range is refused before the watch ID is looked at; a negative ID is taken', async () => {
      const stream = new WatchStream(watchClient);
      stream.send({ create_request: { key: b('b'), range_end: b('a') } });
      const empty = await stream.next();
      assert.deepEqual(
        [empty.watch_id, empty.created, empty.canceled, empty.cancel_reason],
        ['-1', true, true, 'mvcc: watcher range is empty'],
      );
      stream.send({ create_request: { key: b('b'), range_end: b('\0') } });
      assert.equal((await stream.next()).canceled, false, 'a "\\0" range end means from the key on');
      stream.send({ create_request: { key: b('neg'), watch_id: -3 } });
      const negative = await stream.next();
      assert.deepEqual([negative.watch_id, negative.canceled], ['-3', false]);
      stream.close();
    });

    it('fragment splits one large revision; fragment=true on every piece but the last', async () => {
      const stream = new WatchStream(watchClient);
      stream.send({ create_request: { key: b('frag/'), range_end: b('frag0'), fragment: true } });
      await stream.next();
      const success = Array.from({ length: 6 }, (_, i) => ({
        request_put: { key: b(`frag/${i}`), value: Buffer.alloc(150, 65) },
      }));
      await rawCall(kv, 'Txn', { success });
      const pieces: WatchResponse[] = [];
      do pieces.push(await stream.next());
      while (pieces.at(-1)!.fragment);
      assert.ok(pieces.length > 1);
      assert.deepEqual(
        pieces.map((p) => p.fragment),
        pieces.map((_, i) => i < pieces.length - 1),
      );
      assert.equal(
        pieces.reduce((n, p) => n + p.events.length, 0),
        6,
      );
      stream.close();
    });

    it('a watcher without fragment gets the whole revision in one response', async () => {
      const stream = new WatchStream(watchClient);
      stream.send({ create_request: { key: b('whole/'), range_end: b('whole0') } });
      await stream.next();
      const success = Array.from({ length: 6 }, (_, i) => ({
        request_put: { key: b(`whole/${i}`), value: Buffer.alloc(150, 65) },
      }));
      await rawCall(kv, 'Txn', { success });
      const response = await stream.next();
      assert.equal(response.events.length, 6);
      assert.equal(response.fragment, false);
      stream.close();
    });

    it('progress_notify watchers hear the current revision while idle', async () => {
      const stream = new WatchStream(watchClient);
      stream.send({ create_request: { key: b('quiet'), progress_notify: true } });
      const created = await stream.next();
      const notify = await stream.next(progressNotifyIntervalMs * 10);
      assert.equal(notify.watch_id, created.watch_id);
      assert.equal(notify.events.length, 0);
      assert.equal(notify.header.revision, String(harness.backend.header().revision));
      stream.close();
    });

    it('creating more watchers than the per-stream bound is refused with a reason', async () => {
      const stream = new WatchStream(watchClient);
      for (let i = 0; i < 8; i++) {
        stream.send({ create_request: { key: b(`many${i}`) } });
        assert.equal((await stream.next()).canceled, false);
      }
      stream.send({ create_request: { key: b('one-too-many') } });
      const refused = await stream.next();
      assert.equal(refused.canceled, true);
      assert.match(refused.cancel_reason, /more than 8 watchers/);
      stream.close();
    });

    it('closing the stream cancels its backend watchers', async () => {
      await new Promise((resolve) => setTimeout(resolve, 100));
      const before = harness.backend.watcherCount;
      const stream = new WatchStream(watchClient);
      stream.send({ create_request: { key: b('gone') } });
      stream.send({ create_request: { key: b('gone2') } });
      await stream.next();
      await stream.next();
      assert.equal(harness.backend.watcherCount, before + 2);
      stream.close();
      const deadline = Date.now() + 2000;
      while (harness.backend.watcherCount !== before && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      assert.equal(harness.backend.watcherCount, before);
    });
  });
}
