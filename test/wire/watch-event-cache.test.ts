// A frozen watch event is encoded once and its bytes are spliced into every WatchResponse that
// carries it. The spliced response must be byte-identical to encoding the event inline, and read
// back by protobufjs exactly as protobufjs reads its own encoding.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { MethodDefinition } from '@grpc/grpc-js';
import fc from 'fast-check';
import { eventToWire } from '../../src/api/convert.js';
import type { WireEvent, WireWatchResponse } from '../../src/api/wire.js';
import type { Event, KeyValue } from '../../src/mvcc/types.js';
import {
  encodeWatchResponse,
  ProtoShapeError,
  watchEventEncodings,
  watchHeaderEncodings,
} from '../../src/wire/etcd-codecs.js';
import { serviceDefinition } from '../../src/wire/etcd-proto.js';

const runs = Number(process.env.CONCORD_CODEC_RUNS ?? 200);
const reference = serviceDefinition('etcdserverpb.Watch').Watch as MethodDefinition<unknown, unknown>;

const keyValue = (key: string, value: string, modRevision: number): KeyValue => ({
  key: Buffer.from(key),
  value: Buffer.from(value),
  createRevision: 2,
  modRevision,
  version: modRevision - 1,
  lease: 0n,
});

function response(events: WireEvent[], watchId = 7, revision = 9): WireWatchResponse {
  return {
    header: { cluster_id: '11', member_id: '22', revision, raft_term: '3' },
    watch_id: watchId,
    created: false,
    canceled: false,
    compact_revision: 0,
    cancel_reason: '',
    fragment: false,
    events,
  };
}

/** A deep copy that is not frozen: the codec encodes it inline, never from the cache. */
function thawed(event: WireEvent): WireEvent {
  const copy: WireEvent = { type: event.type, kv: { ...event.kv } };
  if (event.prev_kv) copy.prev_kv = { ...event.prev_kv };
  return copy;
}

function decodedByProtobufjs(bytes: Buffer): unknown {
  return reference.responseDeserialize(bytes);
}

const mvccKv = fc.record({
  key: fc.uint8Array({ minLength: 1, maxLength: 40 }).map((a) => Buffer.from(a)),
  value: fc.oneof(
    fc.constant(Buffer.alloc(0)),
    fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)),
  ),
  createRevision: fc.integer({ min: 0, max: 2 ** 40 }),
  modRevision: fc.integer({ min: 0, max: 2 ** 40 }),
  version: fc.integer({ min: 0, max: 2 ** 20 }),
  lease: fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
});
const mvccEvent: fc.Arbitrary<Event> = fc
  .record({ type: fc.constantFrom('put' as const, 'delete' as const), kv: mvccKv, prevKv: fc.option(mvccKv) })
  .map(({ type, kv, prevKv }) => (prevKv === null ? { type, kv } : { type, kv, prevKv }));

describe('watch responses splice each shared event encoding', () => {
  it('a spliced response is byte-identical to the inline encoding and protobufjs reads it as its own', () => {
    fc.assert(
      fc.property(
        fc.array(mvccEvent, { maxLength: 5 }),
        fc.integer({ min: 0, max: 2 ** 31 }),
        (events, id) => {
          const shared = events.map(eventToWire);
          for (const event of shared) assert.ok(Object.isFrozen(event));
          const inline = encodeWatchResponse(response(shared.map(thawed), id));
          // Twice: the second time every event comes from the cache.
          for (let round = 0; round < 2; round++) {
            const spliced = encodeWatchResponse(response(shared, id));
            assert.deepStrictEqual(spliced, inline);
            assert.deepStrictEqual(
              decodedByProtobufjs(spliced),
              decodedByProtobufjs(reference.responseSerialize(response(shared, id))),
            );
          }
        },
      ),
      { numRuns: runs },
    );
  });

  it('with prev_kv and without: protobufjs decodes the same events either way', () => {
    const withPrev = eventToWire({
      type: 'put',
      kv: keyValue('k', 'new', 5),
      prevKv: keyValue('k', 'old', 4),
    });
    const withoutPrev = eventToWire({ type: 'delete', kv: keyValue('k', '', 6) });
    const wire = response([withPrev, withoutPrev]);
    const decoded = decodedByProtobufjs(encodeWatchResponse(wire)) as {
      events: Array<{ type: string; kv: { value: Buffer }; prev_kv: { value: Buffer } | null }>;
    };
    assert.deepStrictEqual(decoded, decodedByProtobufjs(reference.responseSerialize(wire)));
    assert.equal(decoded.events[0]?.prev_kv?.value.toString(), 'old');
    assert.equal(decoded.events[0]?.kv.value.toString(), 'new');
    assert.equal(decoded.events[1]?.type, 'DELETE');
    assert.equal(decoded.events[1]?.prev_kv, null);
  });

  it('an event delivered to 100 watchers is encoded once', () => {
    const event = eventToWire({ type: 'put', kv: keyValue('w/1', 'x'.repeat(256), 9) });
    const before = watchEventEncodings();
    const first = encodeWatchResponse(response([event], 0));
    for (let watcher = 1; watcher < 100; watcher++) {
      const bytes = encodeWatchResponse(response([event], watcher));
      const decoded = decodedByProtobufjs(bytes) as { watch_id: string; events: unknown[] };
      assert.equal(decoded.watch_id, String(watcher));
      assert.deepStrictEqual(decoded.events, (decodedByProtobufjs(first) as { events: unknown[] }).events);
    }
    assert.equal(watchEventEncodings() - before, 1);
  });

  it('a frozen header is encoded once and spliced; a header that is not frozen is encoded inline', () => {
    const event = eventToWire({ type: 'put', kv: keyValue('h', 'v', 9) });
    const shared = Object.freeze({
      cluster_id: '18446744073709551615',
      member_id: '5',
      revision: 9,
      raft_term: '2',
    });
    const before = watchHeaderEncodings();
    for (let watcher = 0; watcher < 10; watcher++) {
      const wire = { ...response([event], watcher), header: shared };
      const inline = { ...wire, header: { ...shared } };
      assert.deepStrictEqual(encodeWatchResponse(wire), encodeWatchResponse(inline));
      assert.deepStrictEqual(
        decodedByProtobufjs(encodeWatchResponse(wire)),
        decodedByProtobufjs(reference.responseSerialize(wire)),
      );
    }
    assert.equal(watchHeaderEncodings() - before, 1);
    // An all-default header is an empty message, still present on the wire.
    const zero = Object.freeze({ cluster_id: '0', member_id: '0', revision: 0, raft_term: '0' });
    const decoded = decodedByProtobufjs(encodeWatchResponse({ ...response([]), header: zero })) as {
      header: unknown;
    };
    assert.notEqual(decoded.header, null);
  });

  it('an empty event still counts as one event', () => {
    const empty = Object.freeze({}) as WireEvent;
    const decoded = decodedByProtobufjs(encodeWatchResponse(response([empty, empty]))) as {
      events: unknown[];
    };
    assert.equal(decoded.events.length, 2);
  });

  it('events that are not frozen are encoded every time (they may have changed)', () => {
    const event = thawed(eventToWire({ type: 'put', kv: keyValue('m', 'one', 3) }));
    const before = watchEventEncodings();
    const first = decodedByProtobufjs(encodeWatchResponse(response([event]))) as {
      events: Array<{ kv: { value: Buffer } }>;
    };
    event.kv.value = Buffer.from('two');
    const second = decodedByProtobufjs(encodeWatchResponse(response([event]))) as {
      events: Array<{ kv: { value: Buffer } }>;
    };
    assert.equal(first.events[0]?.kv.value.toString(), 'one');
    assert.equal(second.events[0]?.kv.value.toString(), 'two');
    assert.equal(watchEventEncodings(), before, 'inline events never enter the cache');
  });

  it('a frozen event the fast encoder does not take still throws ProtoShapeError, and the next response is intact', () => {
    const bad = Object.freeze({
      type: 'PUT',
      kv: Object.freeze({ key: 'not bytes' }),
    }) as unknown as WireEvent;
    assert.throws(() => encodeWatchResponse(response([bad])), ProtoShapeError);
    const good = eventToWire({ type: 'put', kv: keyValue('g', 'ok', 4) });
    const wire = response([good]);
    assert.deepStrictEqual(
      decodedByProtobufjs(encodeWatchResponse(wire)),
      decodedByProtobufjs(reference.responseSerialize(wire)),
    );
  });
});

describe('eventToWire shares one frozen wire event per mvcc event', () => {
  it('the same event converts to the same frozen object; another event to another', () => {
    const event: Event = { type: 'put', kv: keyValue('a', '1', 2), prevKv: keyValue('a', '0', 1) };
    const wire = eventToWire(event);
    assert.equal(eventToWire(event), wire);
    assert.notEqual(eventToWire({ ...event }), wire);
    assert.ok(Object.isFrozen(wire) && Object.isFrozen(wire.kv) && Object.isFrozen(wire.prev_kv));
    assert.throws(() => {
      (wire as { type: string }).type = 'DELETE';
    }, TypeError);
  });
});
