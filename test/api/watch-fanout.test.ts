// Watch fan-out through WatchSession over the real keyspace: many watchers (on one stream and on
// many) of one commit get correct responses, each event is encoded to protobuf once however many
// watchers it goes to, and filters and prev_kv still shape each watcher's responses.

import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import { setImmediate as turn } from 'node:timers/promises';
import type { MethodDefinition } from '@grpc/grpc-js';
import { WatchSession } from '../../src/api/watch-session.js';
import type { WireWatchCreateRequest, WireWatchResponse } from '../../src/api/wire.js';
import {
  encodeWatchResponse,
  watchEventEncodings,
  watchHeaderEncodings,
} from '../../src/wire/etcd-codecs.js';
import { serviceDefinition } from '../../src/wire/etcd-proto.js';
import { KeyspaceBackend } from './keyspace-backend.js';

const reference = serviceDefinition('etcdserverpb.Watch').Watch as MethodDefinition<unknown, unknown>;

interface Decoded {
  watch_id: string;
  created: boolean;
  events: Array<{ type: string; kv: { key: Buffer; value: Buffer }; prev_kv: { value: Buffer } | null }>;
}

function create(
  key: string,
  rangeEnd: string,
  extra: Partial<WireWatchCreateRequest> = {},
): WireWatchCreateRequest {
  return {
    key: Buffer.from(key),
    range_end: Buffer.from(rangeEnd),
    start_revision: '0',
    progress_notify: false,
    filters: [],
    prev_kv: false,
    watch_id: '0',
    fragment: false,
    ...extra,
  };
}

/** A stream whose responses go through the fast encoder and back through protobufjs. */
function stream(backend: KeyspaceBackend): { session: WatchSession; events: Decoded[] } {
  const events: Decoded[] = [];
  const session = new WatchSession(backend, (response: WireWatchResponse) => {
    const decoded = reference.responseDeserialize(encodeWatchResponse(response)) as Decoded;
    // The spliced bytes read back as protobufjs' own encoding of the same response.
    assert.deepStrictEqual(decoded, reference.responseDeserialize(reference.responseSerialize(response)));
    if (decoded.events.length > 0) events.push(decoded);
    return true;
  });
  return { session, events };
}

async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await turn();
}

let backend: KeyspaceBackend | undefined;
afterEach(async () => {
  await backend?.dispose();
  backend = undefined;
});

describe('watch fan-out through WatchSession', () => {
  it('100 watchers on 100 streams each get every event; each event and each header is encoded once', async () => {
    backend = new KeyspaceBackend();
    const streams = Array.from({ length: 100 }, () => stream(backend!));
    for (const { session } of streams) session.handle({ create_request: create('w/', 'w0') });
    await settle();
    const before = watchEventEncodings();
    const headersBefore = watchHeaderEncodings();
    const puts = 5;
    for (let i = 0; i < puts; i++) {
      await backend.put({ key: Buffer.from(`w/${i}`), value: Buffer.from(`v${i}`) });
      await settle();
    }
    assert.equal(watchEventEncodings() - before, puts);
    // One header per revision, shared by the 100 responses of that revision.
    assert.equal(watchHeaderEncodings() - headersBefore, puts);
    for (const { events } of streams) {
      const keys = events.flatMap((r) => r.events.map((e) => e.kv.key.toString()));
      assert.deepEqual(keys, ['w/0', 'w/1', 'w/2', 'w/3', 'w/4']);
    }
    for (const { session } of streams) session.close();
  });

  it('watchers of one stream with prev_kv, NOPUT and plain each get their own form of the same commit', async () => {
    backend = new KeyspaceBackend();
    await backend.put({ key: Buffer.from('k/a'), value: Buffer.from('old') });
    const { session, events } = stream(backend);
    session.handle({ create_request: create('k/', 'k0', { watch_id: '1' }) });
    session.handle({ create_request: create('k/', 'k0', { watch_id: '2', prev_kv: true }) });
    session.handle({ create_request: create('k/', 'k0', { watch_id: '3', filters: ['NOPUT'] }) });
    session.handle({ create_request: create('k/a', '', { watch_id: '4' }) });
    await settle();
    const before = watchEventEncodings();
    await backend.put({ key: Buffer.from('k/a'), value: Buffer.from('new') });
    await backend.deleteRange({ key: Buffer.from('k/a') });
    await settle();
    const byWatcher = new Map<string, string[]>();
    for (const response of events) {
      const shown = response.events.map(
        (e) => `${e.type} ${e.kv.value.toString()}${e.prev_kv ? ` prev=${e.prev_kv.value.toString()}` : ''}`,
      );
      byWatcher.set(response.watch_id, [...(byWatcher.get(response.watch_id) ?? []), ...shown]);
    }
    assert.deepEqual(byWatcher.get('1'), ['PUT new', 'DELETE ']);
    assert.deepEqual(byWatcher.get('2'), ['PUT new prev=old', 'DELETE  prev=new']);
    assert.deepEqual(byWatcher.get('3'), ['DELETE ']);
    assert.deepEqual(byWatcher.get('4'), ['PUT new', 'DELETE ']);
    // Two events, each in two forms (with and without prev_kv): four encodings for 7 deliveries.
    assert.equal(watchEventEncodings() - before, 4);
    session.close();
  });
});
