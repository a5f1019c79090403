// The timestamp oracle: revisions from memory above a persisted high-water mark, batched
// leadership confirmation, the 2^53 limit, and the client-side batcher. The model test at the end
// drives three oracles through leader changes at random points against a model of the metadata
// Raft group and checks that released revisions are unique and increase in real-time order.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  OracleNotLeaderError,
  OracleRequestInvalidError,
  RevisionSpaceExhaustedError,
} from '../../src/shard/errors.js';
import {
  applyHighWaterRaise,
  REVISION_MAX,
  RevisionBatcher,
  type RevisionRange,
  TimestampOracle,
  type TimestampOracleOptions,
} from '../../src/shard/oracle.js';

const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

interface Deferred {
  resolve(): void;
  reject(error: unknown): void;
}

/** An oracle whose persists and confirmations the test settles by hand. */
function manualOracle(overrides: Partial<TimestampOracleOptions> = {}) {
  const persists: { mark: number; settle: Deferred }[] = [];
  const confirms: Deferred[] = [];
  const oracle = new TimestampOracle({
    persistHighWater: (mark) =>
      new Promise<void>((resolve, reject) => persists.push({ mark, settle: { resolve, reject } })),
    confirmLeadership: () => new Promise<void>((resolve, reject) => confirms.push({ resolve, reject })),
    windowRevisions: 10,
    refillBelowRevisions: 3,
    allocateRevisionsMax: 100,
    ...overrides,
  });
  return { oracle, persists, confirms };
}

/** An oracle whose persists and confirmations succeed at once (a healthy, stable leader). */
function autoOracle(overrides: Partial<TimestampOracleOptions> = {}) {
  const marks: number[] = [];
  let confirmations = 0;
  const oracle = new TimestampOracle({
    persistHighWater: async (mark) => {
      marks.push(mark);
    },
    confirmLeadership: async () => {
      confirmations++;
    },
    windowRevisions: 10,
    refillBelowRevisions: 3,
    allocateRevisionsMax: 100,
    ...overrides,
  });
  return { oracle, marks, confirmations: () => confirmations };
}

test('a new leader starts above the persisted mark and waits for its first raise', async () => {
  const { oracle, persists, confirms } = manualOracle();
  oracle.becomeLeader(500);
  assert.deepEqual(
    persists.map((p) => p.mark),
    [511],
  );
  let range: RevisionRange | undefined;
  void oracle.allocate(2).then((r) => {
    range = r;
  });
  await turn();
  assert.equal(range, undefined, 'nothing is handed out above the committed mark');
  persists[0]!.settle.resolve();
  await turn();
  assert.equal(range, undefined, 'nothing is released before leadership is confirmed');
  assert.equal(confirms.length, 1);
  confirms[0]!.resolve();
  await turn();
  assert.deepEqual(range, { first: 501, count: 2 });
  assert.equal(oracle.persistedMark, 511);
  assert.equal(oracle.lastRevision, 502);
});

test('the mark is raised by a window ahead of need, one raise at a time, and never lowered', async () => {
  const { oracle, marks } = autoOracle();
  oracle.becomeLeader(0);
  const ranges: RevisionRange[] = [];
  for (let i = 0; i < 10; i++) ranges.push(await oracle.allocate(3));
  assert.deepEqual(
    ranges.map((r) => r.first),
    [1, 4, 7, 10, 13, 16, 19, 22, 25, 28],
  );
  // Every raise is above the previous one, and the counter never passed the mark.
  for (let i = 1; i < marks.length; i++) assert.ok(marks[i]! > marks[i - 1]!);
  assert.ok(oracle.persistedMark >= oracle.lastRevision);
  // With a window of 10 and 30 revisions handed out, a handful of raises, not one per request.
  assert.ok(marks.length <= 5, `raises: ${marks.join(',')}`);
  assert.equal(applyHighWaterRaise(40, 30), 40);
  assert.equal(applyHighWaterRaise(40, 50), 50);
});

test('a batch larger than the window waits for a raise that covers it', async () => {
  const { oracle, marks } = autoOracle({ windowRevisions: 2, refillBelowRevisions: 0 });
  oracle.becomeLeader(0);
  assert.deepEqual(await oracle.allocate(7), { first: 1, count: 7 });
  assert.ok(oracle.persistedMark >= 7);
  assert.ok(marks.every((m, i) => i === 0 || m > marks[i - 1]!));
});

test('allocations made while a confirmation is in flight share the next round', async () => {
  const { oracle, persists, confirms } = manualOracle({ windowRevisions: 100 });
  oracle.becomeLeader(0);
  persists[0]!.settle.resolve();
  await turn();
  const results: RevisionRange[] = [];
  const allocations = [1, 1, 1, 1].map((count) => oracle.allocate(count).then((r) => results.push(r)));
  await turn();
  assert.equal(confirms.length, 1, 'the first allocation started a round; the others wait for the next');
  confirms[0]!.resolve();
  await turn();
  assert.equal(results.length, 1);
  assert.equal(confirms.length, 2);
  confirms[1]!.resolve();
  await Promise.all(allocations);
  assert.deepEqual(
    results.map((r) => r.first),
    [1, 2, 3, 4],
  );
});

test('a failed confirmation releases nothing', async () => {
  const { oracle, persists, confirms } = manualOracle();
  oracle.becomeLeader(0);
  persists[0]!.settle.resolve();
  const allocation = oracle.allocate(1);
  await turn();
  confirms[0]!.reject(new OracleNotLeaderError());
  await assert.rejects(allocation, OracleNotLeaderError);
});

test('stepping down fails allocations in progress, and a follower refuses at once', async () => {
  const { oracle, persists } = manualOracle();
  await assert.rejects(oracle.allocate(1), OracleNotLeaderError);
  oracle.becomeLeader(0);
  const waiting = oracle.allocate(1);
  oracle.stepDown();
  persists[0]!.settle.resolve();
  await assert.rejects(waiting, OracleNotLeaderError);
  assert.equal(oracle.isLeader, false);
  assert.equal(oracle.persistedMark, 0);
});

test('a failed raise fails the allocations that need it', async () => {
  const { oracle, persists } = manualOracle();
  oracle.becomeLeader(0);
  const waiting = oracle.allocate(1);
  persists[0]!.settle.reject(new Error('proposal dropped'));
  await assert.rejects(waiting, /proposal dropped/);
  // The next allocation proposes again.
  void oracle.allocate(1).catch(() => {});
  await turn();
  assert.equal(persists.length, 2);
});

test('batch sizes outside 1..allocateRevisionsMax and bad options are refused', async () => {
  const { oracle } = autoOracle({ allocateRevisionsMax: 4 });
  oracle.becomeLeader(0);
  for (const count of [0, -1, 5, 1.5, Number.NaN]) {
    await assert.rejects(oracle.allocate(count), OracleRequestInvalidError);
  }
  assert.equal(oracle.lastRevision, 0);
  const base = { persistHighWater: async () => {}, confirmLeadership: async () => {} };
  const options = { windowRevisions: 1, refillBelowRevisions: 0, allocateRevisionsMax: 1 };
  assert.throws(() => new TimestampOracle({ ...base, ...options, windowRevisions: 0 }), /windowRevisions/);
  assert.throws(() => new TimestampOracle({ ...base, ...options, revisionMax: 2 ** 53 }), /2\^53/);
  assert.throws(() => oracle.becomeLeader(-1), /persisted high-water mark/);
});

test('revisions stop with a clear error at 2^53 − 1, and the mark is never proposed above it', async () => {
  assert.equal(REVISION_MAX, 2 ** 53 - 1);
  const { oracle, marks } = autoOracle();
  oracle.becomeLeader(REVISION_MAX - 3);
  assert.deepEqual(await oracle.allocate(2), { first: REVISION_MAX - 2, count: 2 });
  await assert.rejects(oracle.allocate(2), (error: unknown) => {
    assert.ok(error instanceof RevisionSpaceExhaustedError);
    assert.match(error.message, /below 2\^53/);
    return true;
  });
  assert.deepEqual(await oracle.allocate(1), { first: REVISION_MAX, count: 1 });
  await assert.rejects(oracle.allocate(1), RevisionSpaceExhaustedError);
  assert.ok(marks.every((m) => m <= REVISION_MAX));
  assert.ok(marks.every((m) => Number.isSafeInteger(m)));
  // A leader that starts at the limit hands out nothing.
  const { oracle: atLimit, marks: none } = autoOracle();
  atLimit.becomeLeader(REVISION_MAX);
  await assert.rejects(atLimit.allocate(1), RevisionSpaceExhaustedError);
  assert.deepEqual(none, []);
});

test('the batcher coalesces one turn of requests into one fetch, in call order', async () => {
  const fetches: number[] = [];
  let next = 100;
  const batcher = new RevisionBatcher({
    fetch: async (count) => {
      fetches.push(count);
      const range = { first: next, count };
      next += count;
      return range;
    },
    batchRevisionsMax: 64,
  });
  const first = await Promise.all([batcher.next(), batcher.next(), batcher.next()]);
  assert.deepEqual(first, [100, 101, 102]);
  const second = await Promise.all([batcher.next(), batcher.next()]);
  assert.deepEqual(second, [103, 104]);
  assert.deepEqual(fetches, [3, 2]);
});

test('the batcher sends at most batchRevisionsMax per turn and fails a batch together', async () => {
  const queued: (() => void)[] = [];
  const fetches: number[] = [];
  let fail = false;
  const batcher = new RevisionBatcher({
    fetch: async (count) => {
      fetches.push(count);
      if (fail) throw new Error('leader gone');
      return { first: 10 * fetches.length, count };
    },
    schedule: (flush) => queued.push(flush),
    batchRevisionsMax: 2,
  });
  const results = [1, 2, 3, 4, 5].map(() => batcher.next());
  assert.equal(queued.length, 1, 'one flush per turn');
  queued.shift()!();
  assert.deepEqual(fetches, [2]);
  queued.shift()!();
  fail = true;
  queued.shift()!();
  assert.deepEqual(fetches, [2, 2, 1]);
  assert.equal(queued.length, 0);
  const settled = await Promise.allSettled(results);
  assert.deepEqual(
    settled.map((s) => (s.status === 'fulfilled' ? s.value : 'rejected')),
    [10, 11, 20, 21, 'rejected'],
  );
});

test('the batcher refuses an answer of the wrong size and rejects waiters on close', async () => {
  const batcher = new RevisionBatcher({ fetch: async () => ({ first: 1, count: 1 }), batchRevisionsMax: 8 });
  const two = [batcher.next(), batcher.next()];
  for (const result of await Promise.allSettled(two)) {
    assert.equal(result.status, 'rejected');
  }
  const queued: (() => void)[] = [];
  const closing = new RevisionBatcher({
    fetch: async (count) => ({ first: 1, count }),
    schedule: (flush) => queued.push(flush),
    batchRevisionsMax: 8,
  });
  const pending = closing.next();
  closing.close();
  await assert.rejects(pending, /closed/);
  await assert.rejects(closing.next(), /closed/);
  queued.shift()!();
});

// ---- The model test --------------------------------------------------------------------------

type Event =
  /** A request to a node, or (node −1) to the node the model knows leads. */
  | { kind: 'request'; node: number; count: number }
  | { kind: 'persist'; pick: number }
  | { kind: 'confirm'; pick: number }
  | { kind: 'elect'; node: number; fates: boolean[] }
  | { kind: 'notice'; node: number };

const NODES = 3;
const eventArb: fc.Arbitrary<Event> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant('request' as const),
      node: fc.integer({ min: -1, max: NODES - 1 }),
      count: fc.integer({ min: 1, max: 3 }),
    }),
  },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('persist' as const), pick: fc.nat() }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('confirm' as const), pick: fc.nat() }) },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('elect' as const),
      node: fc.nat(NODES - 1),
      fates: fc.array(fc.boolean(), { maxLength: 4 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('notice' as const), node: fc.nat(NODES - 1) }) },
);

interface ModelFaults {
  /** Confirm leadership even for a deposed leader (what skipping the ReadIndex round would do). */
  confirmAlways?: boolean;
  /** Start a new leader this far below the persisted mark (a leader that did not apply its log). */
  startBelowMark?: number;
}

interface Allocation {
  issued: number;
  completed?: number;
  range?: RevisionRange;
  failed?: boolean;
}

/**
 * The metadata Raft group, as far as the oracle can tell: terms and one leader per term; a
 * proposal of the current leader commits; proposals pending at an election are committed or lost
 * (the new leader reads the mark after the committed ones); a proposal by a deposed leader after
 * the election is lost. A confirmation succeeds only if its node led the latest term when it
 * started (Raft's guarantee: any later leader was elected after the round started). Deposed
 * leaders learn of it only at a later 'notice' event, so they keep serving from memory until then.
 */
async function runModel(events: readonly Event[], window: number, refill: number, faults: ModelFaults) {
  let step = 0;
  let term = 0;
  let leader = -1;
  let logMark = 0;
  const leaderTerm = new Array<number>(NODES).fill(-1);
  const persists: { node: number; term: number; mark: number; fate?: boolean; settle: Deferred }[] = [];
  const confirms: { allowed: boolean; settle: Deferred }[] = [];
  const allocations: Allocation[] = [];
  const oracles = Array.from(
    { length: NODES },
    (_, node) =>
      new TimestampOracle({
        persistHighWater: (mark) =>
          new Promise<void>((resolve, reject) => {
            const lost = leaderTerm[node]! < term;
            persists.push({
              node,
              term: leaderTerm[node]!,
              mark,
              ...(lost ? { fate: false } : {}),
              settle: { resolve, reject },
            });
          }),
        confirmLeadership: () =>
          new Promise<void>((resolve, reject) => {
            confirms.push({
              allowed: faults.confirmAlways === true || leader === node,
              settle: { resolve, reject },
            });
          }),
        windowRevisions: window,
        refillBelowRevisions: refill,
        allocateRevisionsMax: 3,
      }),
  );
  const settlePersist = (index: number) => {
    const [p] = persists.splice(index, 1);
    if (p === undefined) return;
    const committed = p.fate ?? (p.term === term && leader === p.node);
    if (committed) {
      logMark = applyHighWaterRaise(logMark, p.mark);
      p.settle.resolve();
    } else {
      p.settle.reject(new OracleNotLeaderError());
    }
  };
  const settleConfirm = (index: number) => {
    const [c] = confirms.splice(index, 1);
    if (c === undefined) return;
    if (c.allowed) c.settle.resolve();
    else c.settle.reject(new OracleNotLeaderError());
  };
  for (const event of events) {
    step++;
    switch (event.kind) {
      case 'request': {
        const allocation: Allocation = { issued: step };
        allocations.push(allocation);
        oracles[event.node < 0 ? leader : event.node]!.allocate(event.count).then(
          (range) => {
            allocation.range = range;
            allocation.completed = step;
          },
          () => {
            allocation.failed = true;
          },
        );
        break;
      }
      case 'persist':
        if (persists.length > 0) settlePersist(event.pick % persists.length);
        break;
      case 'confirm':
        if (confirms.length > 0) settleConfirm(event.pick % confirms.length);
        break;
      case 'elect': {
        term++;
        // Proposals still pending are decided now: in the new leader's log (committed) or lost.
        let i = 0;
        for (const p of persists) {
          if (p.fate !== undefined) continue;
          p.fate = event.fates[i++ % Math.max(1, event.fates.length)] ?? false;
          if (p.fate) logMark = applyHighWaterRaise(logMark, p.mark);
        }
        leader = event.node;
        leaderTerm[leader] = term;
        oracles[leader]!.becomeLeader(Math.max(0, logMark - (faults.startBelowMark ?? 0)));
        break;
      }
      case 'notice':
        if (event.node !== leader && oracles[event.node]!.isLeader) oracles[event.node]!.stepDown();
        break;
    }
    await turn();
  }
  // Drain: settle everything still pending so every allocation finishes.
  for (let round = 0; round < 1000 && (persists.length > 0 || confirms.length > 0); round++) {
    step++;
    while (persists.length > 0) settlePersist(0);
    while (confirms.length > 0) settleConfirm(0);
    await turn();
  }
  return allocations;
}

function checkAllocations(allocations: readonly Allocation[]): void {
  const done = allocations.filter((a) => a.range !== undefined);
  const seen = new Set<number>();
  for (const a of done) {
    for (let r = a.range!.first; r < a.range!.first + a.range!.count; r++) {
      assert.ok(r >= 1 && Number.isSafeInteger(r));
      assert.ok(!seen.has(r), `revision ${r} handed out twice`);
      seen.add(r);
    }
  }
  for (const a of done) {
    for (const b of done) {
      if (a.completed! < b.issued) {
        assert.ok(
          a.range!.first + a.range!.count - 1 < b.range!.first,
          `revisions ${a.range!.first}+${a.range!.count} released at step ${a.completed} before ` +
            `${b.range!.first} was asked for at step ${b.issued}`,
        );
      }
    }
  }
  for (const a of allocations) assert.ok(a.range !== undefined || a.failed, 'an allocation never finished');
}

const modelArb = fc.tuple(
  fc.array(eventArb, { minLength: 20, maxLength: 120 }),
  fc.integer({ min: 1, max: 6 }),
  fc.integer({ min: 0, max: 4 }),
);

test('across random leader changes, released revisions are unique and increase in real-time order', async () => {
  let served = 0;
  await fc.assert(
    fc.asyncProperty(modelArb, async ([events, window, refill]) => {
      const allocations = await runModel(
        [{ kind: 'elect', node: 0, fates: [] }, ...events],
        window,
        refill,
        {},
      );
      checkAllocations(allocations);
      served += allocations.filter((a) => a.range !== undefined).length;
    }),
    { numRuns: 300 },
  );
  assert.ok(served > 1000, `the model released only ${served} allocations: it does not exercise the oracle`);
});

test('the model catches a deposed leader released without confirmation, and a leader starting below the mark', async () => {
  for (const faults of [{ confirmAlways: true }, { startBelowMark: 3 }] satisfies ModelFaults[]) {
    const result = await fc.check(
      fc.asyncProperty(modelArb, async ([events, window, refill]) => {
        checkAllocations(
          await runModel([{ kind: 'elect', node: 0, fates: [] }, ...events], window, refill, faults),
        );
      }),
      { numRuns: 300, seed: 15 },
    );
    assert.equal(result.failed, true, `the model missed the fault ${JSON.stringify(faults)}`);
  }
});
