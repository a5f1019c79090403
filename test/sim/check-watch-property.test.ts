import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import type { Verdict } from '../../src/sim/check/verdict.js';
import {
  checkWatches,
  type KeyspaceEvent,
  type WatcherRecord,
  type WatchSegment,
  watchMatches,
} from '../../src/sim/check/watch.js';

interface Scenario {
  keyspace: KeyspaceEvent[];
  watcher: WatcherRecord;
}

/** Per revision, the keys it changes (1-2 events: a put or delete each). */
const revisionArb = fc.array(fc.record({ key: fc.constantFrom('a', 'b', 'c'), del: fc.boolean() }), {
  minLength: 1,
  maxLength: 2,
});

const scenarioArb: fc.Arbitrary<Scenario> = fc
  .record({
    revisions: fc.array(revisionArb, { minLength: 1, maxLength: 25 }),
    prefix: fc.boolean(),
    startOffset: fc.integer({ min: 0, max: 5 }),
    cuts: fc.array(fc.boolean(), { maxLength: 30 }),
  })
  .map(({ revisions, prefix, startOffset, cuts }) => {
    const keyspace: KeyspaceEvent[] = [];
    revisions.forEach((changes, i) => {
      changes.forEach((change, subOrder) => {
        const type = change.del ? 'delete' : 'put';
        const event: KeyspaceEvent = { revision: i + 2, subOrder, key: change.key, type };
        if (type === 'put') event.value = `${change.key}@${i + 2}`;
        keyspace.push(event);
      });
    });
    const head = revisions.length + 1;
    const shape = prefix ? { id: 'w', key: '', rangeEnd: '\0' } : { id: 'w', key: 'a' };
    const start = Math.min(head, 2 + startOffset);
    const matching = keyspace.filter(
      (e) => e.revision >= start && watchMatches({ ...shape, segments: [] }, e),
    );
    // Reconnect only between revisions: a response carries whole revisions, and the client
    // resumes from the revision after the last one it saw.
    const segments: WatchSegment[] = [];
    let current: WatchSegment = { startRevision: start, createdAt: 0, events: [] };
    matching.forEach((event, i) => {
      const events = current.events as KeyspaceEvent[];
      const previous = events[events.length - 1];
      if (previous && previous.revision !== event.revision && cuts[i % Math.max(1, cuts.length)]) {
        segments.push(current);
        current = { startRevision: previous.revision + 1, createdAt: i, events: [] };
      }
      (current.events as KeyspaceEvent[]).push(event);
    });
    segments.push({ ...current, caughtUpThrough: head });
    return { keyspace, watcher: { ...shape, segments } };
  });

function check(scenario: Scenario): Verdict {
  return checkWatches({ keyspace: scenario.keyspace, watchers: [scenario.watcher] });
}

/** The scenario with the events of one segment replaced. */
function withEvents(scenario: Scenario, segmentIndex: number, events: KeyspaceEvent[]): Scenario {
  const segments = scenario.watcher.segments.map((s, i) => (i === segmentIndex ? { ...s, events } : s));
  return { ...scenario, watcher: { ...scenario.watcher, segments } };
}

/** Segment index and event index of the n-th delivered event (n modulo the total). */
function locate(scenario: Scenario, n: number): [number, number] | undefined {
  const total = scenario.watcher.segments.reduce((sum, s) => sum + s.events.length, 0);
  if (total === 0) return undefined;
  let rest = n % total;
  for (const [i, s] of scenario.watcher.segments.entries()) {
    if (rest < s.events.length) return [i, rest];
    rest -= s.events.length;
  }
  return undefined;
}

describe('watch checker against generated streams', () => {
  it('accepts every correctly delivered and correctly resumed stream', () => {
    fc.assert(
      fc.property(scenarioArb, (scenario) => {
        const verdict = check(scenario);
        assert.equal(verdict.valid, true, verdict.explanation);
      }),
      { numRuns: 300 },
    );
  });

  it('rejects the stream once any one event is dropped', () => {
    fc.assert(
      fc.property(scenarioArb, fc.nat(), (scenario, n) => {
        const at = locate(scenario, n);
        fc.pre(at !== undefined);
        const [s, e] = at!;
        const events = scenario.watcher.segments[s]!.events.filter((_, i) => i !== e);
        assert.equal(check(withEvents(scenario, s, events)).valid, false);
      }),
      { numRuns: 300 },
    );
  });

  it('rejects the stream once any one event is delivered twice', () => {
    fc.assert(
      fc.property(scenarioArb, fc.nat(), (scenario, n) => {
        const at = locate(scenario, n);
        fc.pre(at !== undefined);
        const [s, e] = at!;
        const original = scenario.watcher.segments[s]!.events;
        const events = [...original.slice(0, e + 1), original[e]!, ...original.slice(e + 1)];
        const verdict = check(withEvents(scenario, s, events));
        assert.deepEqual(
          verdict.anomalies.map((a) => a.code),
          ['WATCH_DUPLICATE_EVENT'],
        );
      }),
      { numRuns: 300 },
    );
  });

  it('rejects the stream once two adjacent events swap places', () => {
    fc.assert(
      fc.property(scenarioArb, fc.nat(), (scenario, n) => {
        const at = locate(scenario, n);
        fc.pre(at !== undefined);
        const [s, e] = at!;
        const original = [...scenario.watcher.segments[s]!.events];
        fc.pre(e + 1 < original.length);
        [original[e], original[e + 1]] = [original[e + 1]!, original[e]!];
        const verdict = check(withEvents(scenario, s, original));
        assert.ok(
          verdict.anomalies.some((a) => a.code === 'WATCH_OUT_OF_ORDER'),
          verdict.explanation,
        );
      }),
      { numRuns: 300 },
    );
  });
});
