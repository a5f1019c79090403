import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { AnomalyCode } from '../../src/sim/check/verdict.js';
import {
  checkWatches,
  type KeyspaceEvent,
  type WatcherRecord,
  type WatchHistory,
  type WatchSegment,
} from '../../src/sim/check/watch.js';

/** Revisions 2..9: puts to a, b, a, then a txn at 5 (a and c), delete a at 6, puts to b, a, a. */
const KEYSPACE: KeyspaceEvent[] = [
  { revision: 2, subOrder: 0, key: 'a', type: 'put', value: 'a1' },
  { revision: 3, subOrder: 0, key: 'b', type: 'put', value: 'b1' },
  { revision: 4, subOrder: 0, key: 'a', type: 'put', value: 'a2' },
  { revision: 5, subOrder: 0, key: 'a', type: 'put', value: 'a3' },
  { revision: 5, subOrder: 1, key: 'c', type: 'put', value: 'c1' },
  { revision: 6, subOrder: 0, key: 'a', type: 'delete' },
  { revision: 7, subOrder: 0, key: 'b', type: 'put', value: 'b2' },
  { revision: 8, subOrder: 0, key: 'a', type: 'put', value: 'a4' },
  { revision: 9, subOrder: 0, key: 'a', type: 'put', value: 'a5' },
];

function ev(revision: number, subOrder = 0): KeyspaceEvent {
  const found = KEYSPACE.find((e) => e.revision === revision && e.subOrder === subOrder);
  if (!found) throw new Error(`no test event ${revision}.${subOrder}`);
  return found;
}

function segment(
  startRevision: number,
  revisions: number[],
  extra: Partial<WatchSegment> = {},
): WatchSegment {
  return { startRevision, createdAt: 100, events: revisions.map((r) => ev(r)), ...extra };
}

function watchKeyA(...segments: WatchSegment[]): WatcherRecord {
  return { id: 'w1', key: 'a', segments };
}

function check(watchers: WatcherRecord[], extra: Partial<WatchHistory> = {}) {
  return checkWatches({ keyspace: KEYSPACE, watchers, ...extra });
}

function codes(watchers: WatcherRecord[], extra: Partial<WatchHistory> = {}): AnomalyCode[] {
  return check(watchers, extra).anomalies.map((a) => a.code);
}

describe('watch checker: valid streams', () => {
  it('accepts a single-key watch that saw every event in order', () => {
    const verdict = check([watchKeyA(segment(1, [2, 4, 5, 6, 8, 9], { caughtUpThrough: 9 }))]);
    assert.equal(verdict.valid, true, verdict.explanation);
  });

  it('accepts a prefix watch including a multi-key transaction in sub-order', () => {
    const all: WatcherRecord = {
      id: 'all',
      key: '',
      rangeEnd: '\0',
      segments: [{ startRevision: 4, createdAt: 1, events: KEYSPACE.slice(2), caughtUpThrough: 9 }],
    };
    assert.equal(check([all]).valid, true);
  });

  it('accepts a resumption from the revision after the last event received', () => {
    assert.equal(
      check([watchKeyA(segment(1, [2, 4]), segment(5, [5, 6, 8], { caughtUpThrough: 8 }))]).valid,
      true,
    );
  });

  it('accepts a stream that stops early when nothing claims it caught up', () => {
    assert.equal(check([watchKeyA(segment(1, [2, 4]))]).valid, true);
  });

  it('applies the noput filter', () => {
    const deletesOnly: WatcherRecord = {
      id: 'd',
      key: 'a',
      filters: ['noput'],
      segments: [segment(1, [6], { caughtUpThrough: 9 })],
    };
    assert.equal(check([deletesOnly]).valid, true);
  });
});

describe('watch checker: anomalies', () => {
  it('flags a duplicate event', () => {
    assert.deepEqual(codes([watchKeyA(segment(1, [2, 4, 4, 5]))]), ['WATCH_DUPLICATE_EVENT']);
  });

  it('flags a duplicate event redelivered after a reconnect', () => {
    assert.deepEqual(codes([watchKeyA(segment(1, [2, 4]), segment(4, [4, 5]))]), ['WATCH_DUPLICATE_EVENT']);
  });

  it('flags a gap in the middle of a stream', () => {
    const verdict = check([watchKeyA(segment(1, [2, 4, 6]))]);
    assert.deepEqual(
      verdict.anomalies.map((a) => a.code),
      ['WATCH_MISSING_EVENT'],
    );
    assert.match(verdict.anomalies[0]!.message, /never received put "a" = "a3" @5\.0/);
  });

  it('flags events missing at the end of a stream that caught up', () => {
    assert.deepEqual(codes([watchKeyA(segment(1, [2, 4, 5, 6], { caughtUpThrough: 9 }))]), [
      'WATCH_MISSING_EVENT',
    ]);
  });

  it('flags a first event later than the start revision', () => {
    assert.deepEqual(codes([watchKeyA(segment(3, [5, 6]))]), ['WATCH_MISSING_EVENT']);
  });

  it('checks a watch from "now" against the revision its create response carried', () => {
    assert.deepEqual(codes([watchKeyA(segment(0, [5, 6], { createdRevision: 3 }))]), ['WATCH_MISSING_EVENT']);
    assert.equal(check([watchKeyA(segment(0, [5, 6], { createdRevision: 4 }))]).valid, true);
    // Without the create revision the start cannot be judged, but later gaps still can.
    assert.equal(check([watchKeyA(segment(0, [5, 6]))]).valid, true);
    assert.deepEqual(codes([watchKeyA(segment(0, [4, 6]))]), ['WATCH_MISSING_EVENT']);
  });

  it('flags out-of-order delivery', () => {
    assert.deepEqual(codes([watchKeyA(segment(1, [2, 5, 4]))]), ['WATCH_OUT_OF_ORDER']);
  });

  it('flags a resumption whose first event is past the requested revision', () => {
    assert.deepEqual(codes([watchKeyA(segment(1, [2, 4]), segment(5, [6, 8]))]), ['WATCH_WRONG_RESUME']);
  });

  it('flags a client that resumed past events it never received', () => {
    assert.deepEqual(codes([watchKeyA(segment(1, [2]), segment(5, [5, 6]))]), ['WATCH_WRONG_RESUME']);
  });

  it('flags an event older than the start revision', () => {
    assert.deepEqual(codes([watchKeyA(segment(4, [2, 4]))]), ['WATCH_EVENT_BEFORE_START']);
  });

  it('flags invented, altered and out-of-range events', () => {
    const invented: KeyspaceEvent = { revision: 10, subOrder: 0, key: 'a', type: 'put', value: 'zz' };
    const altered: KeyspaceEvent = { ...ev(8), value: 'wrong' };
    assert.deepEqual(codes([watchKeyA({ startRevision: 8, createdAt: 1, events: [altered, invented] })]), [
      'WATCH_EVENT_MISMATCH',
      'WATCH_UNKNOWN_EVENT',
    ]);
    assert.deepEqual(codes([watchKeyA(segment(2, [2, 3, 4]))]), ['WATCH_EVENT_OUT_OF_RANGE']);
  });

  it('requires the compacted error for a start revision below a finished compaction', () => {
    const compactions = [{ revision: 5, invokeTime: 10, completeTime: 20, status: 'ok' as const }];
    assert.deepEqual(codes([watchKeyA(segment(2, [2, 4, 5]))], { compactions }), [
      'WATCH_COMPACTION_NOT_REPORTED',
    ]);
    assert.equal(check([watchKeyA(segment(2, [], { compactRevision: 5 }))], { compactions }).valid, true);
    // Starting at the compaction revision itself is still allowed.
    assert.equal(check([watchKeyA(segment(5, [5, 6]))], { compactions }).valid, true);
  });

  it('rejects an invented compaction and events after the compacted error', () => {
    const compactions = [{ revision: 5, invokeTime: 10, completeTime: 20, status: 'ok' as const }];
    assert.deepEqual(codes([watchKeyA(segment(2, [], { compactRevision: 4 }))], { compactions }), [
      'WATCH_SPURIOUS_COMPACTION',
    ]);
    assert.deepEqual(codes([watchKeyA(segment(2, [2], { compactRevision: 5 }))], { compactions }), [
      'WATCH_EVENTS_AFTER_COMPACTION',
    ]);
  });

  it('does not blame a resumption for events lost to compaction', () => {
    const compactions = [{ revision: 8, invokeTime: 10, completeTime: 20, status: 'ok' as const }];
    const w = watchKeyA(
      segment(1, [2], { createdAt: 1 }),
      segment(4, [], { compactRevision: 8 }),
      segment(8, [8, 9]),
    );
    assert.equal(check([w], { compactions }).valid, true);
  });
});
