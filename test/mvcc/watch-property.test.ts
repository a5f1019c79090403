// Property: however commits and consumer reads interleave, a watcher with a tiny buffer (so it
// keeps falling back to history) delivers exactly the same event sequence as a watcher that is
// drained after every commit — every event once, in revision order.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import type { Event, WriteOp } from '../../src/mvcc/types.js';
import type { Watcher } from '../../src/mvcc/watch.js';
import { applyOps, b, openTemp } from './helpers.js';

const keyArb = fc.constantFrom('a', 'b', 'c', 'd');
const opArb: fc.Arbitrary<WriteOp> = fc.oneof(
  keyArb.map((k): WriteOp => ({ type: 'put', request: { key: b(k), value: b(k) } })),
  keyArb.map((k): WriteOp => ({ type: 'deleteRange', request: { key: b(k), rangeEnd: b('d') } })),
  fc.tuple(keyArb, keyArb).map(
    ([x, y]): WriteOp => ({
      type: 'txn',
      request: {
        compare: [],
        success: [
          { type: 'put', request: { key: b(x), value: b('t') } },
          { type: 'put', request: { key: b(y), value: b('u') } },
        ],
        failure: [],
      },
    }),
  ),
);
type Step = { kind: 'batch'; ops: WriteOp[] } | { kind: 'take' };
const stepArb: fc.Arbitrary<Step> = fc.oneof(
  fc.array(opArb, { minLength: 1, maxLength: 4 }).map((ops): Step => ({ kind: 'batch', ops })),
  fc.constant<Step>({ kind: 'take' }),
);

const show = (events: Event[]): string[] =>
  events.map(
    (e) =>
      `${e.type} ${e.kv.key.toString()}@${e.kv.modRevision} v${e.kv.version} prev=${e.prevKv?.version ?? '-'}`,
  );

function takeAll(w: Watcher, into: Event[]): void {
  for (let i = 0; i < 1000; i++) {
    const batch = w.take();
    if (!batch) return;
    assert.equal(batch.kind, 'events');
    if (batch.kind === 'events') into.push(...batch.events);
  }
  throw new Error('watcher never drained');
}

test('slow watchers deliver the same events as fast ones, once each, in order', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(stepArb, { minLength: 10, maxLength: 40 }),
      fc.integer({ min: 1, max: 3 }),
      async (steps, bufferMax) => {
        const t = openTemp({ noSync: true, watch: { eventsBufferedMax: bufferMax } });
        try {
          applyOps(t.ks, [{ type: 'put', request: { key: b('a'), value: b('seed') } }]);
          const fast: Event[] = [];
          const slow: Event[] = [];
          const range = { key: b('a'), rangeEnd: b('c'), prevKv: true };
          const fastWatcher = t.ks.watchHub.watch({ ...range, startRevision: 1 }, () => {});
          const slowWatcher = t.ks.watchHub.watch({ ...range, startRevision: 1 }, () => {});
          // A single-key pair too: those are indexed by key rather than scanned.
          const single = { key: b('b'), prevKv: true };
          const fastSingle = t.ks.watchHub.watch(single, () => {});
          const slowSingle = t.ks.watchHub.watch(single, () => {});
          const fastSingleEvents: Event[] = [];
          const slowSingleEvents: Event[] = [];
          takeAll(fastWatcher, fast);
          for (const step of steps) {
            if (step.kind === 'take') {
              const batch = slowWatcher.take();
              if (batch?.kind === 'events') slow.push(...batch.events);
              const singleBatch = slowSingle.take();
              if (singleBatch?.kind === 'events') slowSingleEvents.push(...singleBatch.events);
              continue;
            }
            applyOps(t.ks, step.ops);
            takeAll(fastWatcher, fast);
            takeAll(fastSingle, fastSingleEvents);
            assert.ok(slowWatcher.bufferedEvents <= bufferMax);
          }
          takeAll(slowWatcher, slow);
          takeAll(slowSingle, slowSingleEvents);
          assert.deepEqual(show(slow), show(fast));
          assert.deepEqual(show(slowSingleEvents), show(fastSingleEvents));
          assert.deepEqual(show(fastSingleEvents), show(fast.filter((e) => e.kv.key.toString() === 'b')));
          const revisions = fast.map((e) => e.kv.modRevision);
          assert.deepEqual(
            revisions,
            [...revisions].sort((x, y) => x - y),
          );
          assert.equal(slowWatcher.state, 'synced');
        } finally {
          await t.cleanup();
        }
      },
    ),
    { numRuns: 100 },
  );
});
