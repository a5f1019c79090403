// The cross-shard txn protocol under the seeded harness: concurrent txns over three shards, with
// proposals delayed, dropped, duplicated (a participant re-driven) and their replies lost, clock
// skew between actors, and coordinators crashed at every effect of the protocol. Each run checks
// atomicity and serializability (the committed history replayed in revision order against the
// reference model, every response compared), lock lifetimes after a coordinator stops, that
// every txn finishes (no deadlock), that the fast path takes no lock, and that each shard
// replayed from its log reaches the same state.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CRASH_STEPS, DEFAULT_OPTIONS, type HarnessReport, TxnHarness } from './harness.js';

const SEEDS = Number(process.env.TXN_SEEDS ?? 200);

function summarize(reports: HarnessReport[]) {
  const sum = (f: (r: HarnessReport) => number) => reports.reduce((n, r) => n + f(r), 0);
  const points = new Map<string, number>();
  for (const r of reports) for (const [k, v] of r.crashPoints) points.set(k, (points.get(k) ?? 0) + v);
  return {
    runs: reports.length,
    committed: sum((r) => r.committed),
    fastPath: sum((r) => r.fastPath),
    aborts: sum((r) => r.aborts),
    opFailed: sum((r) => r.opFailed),
    unknown: sum((r) => r.unknown),
    gaveUp: sum((r) => r.gaveUp),
    lockAgeAfterStopMaxMs: Math.max(...reports.map((r) => r.lockAgeAfterStopMaxMs)),
    crashed: sum((r) => r.crashed),
    events: sum((r) => r.events),
    crashPoints: Object.fromEntries([...points].sort()),
  };
}

test('one seed replays identically', async () => {
  const a = await new TxnHarness({ ...DEFAULT_OPTIONS, seed: 7 }).run();
  const b = await new TxnHarness({ ...DEFAULT_OPTIONS, seed: 7 }).run();
  assert.equal(a.traceHash, b.traceHash);
  assert.equal(a.events, b.events);
});

test('no faults, no crashes: every txn commits', async () => {
  const reports: HarnessReport[] = [];
  for (let seed = 1; seed <= 20; seed++) {
    reports.push(
      await new TxnHarness({
        ...DEFAULT_OPTIONS,
        seed,
        crashP: 0,
        dropP: 0,
        lostReplyP: 0,
        duplicateP: 0,
      }).run(),
    );
  }
  const s = summarize(reports);
  assert.equal(s.committed + s.opFailed, 20 * DEFAULT_OPTIONS.clients);
  assert.ok(s.fastPath > 0, 'some txns took the fast path');
  assert.ok(s.committed > s.fastPath, 'some txns crossed shards');
});

test('coordinator crashed at every effect, under message faults and skew, over many seeds', async () => {
  const reports: HarnessReport[] = [];
  for (let seed = 1; seed <= SEEDS; seed++) {
    // The seed picks the crash point (every step, effects 0 to 3 after it); crashing clients land there.
    const crashAt = {
      step: CRASH_STEPS[seed % CRASH_STEPS.length]!,
      offset: Math.floor(seed / CRASH_STEPS.length) % 4,
    };
    try {
      reports.push(await new TxnHarness({ ...DEFAULT_OPTIONS, seed, crashAt, crashP: 0.4 }).run());
    } catch (error) {
      assert.fail(`seed ${seed}: ${(error as Error).stack}`);
    }
  }
  const s = summarize(reports);
  console.log(JSON.stringify(s));
  const points = s.crashPoints as Record<string, number>;
  for (const step of CRASH_STEPS) {
    assert.ok((points[`${step}+0`] ?? 0) > 0, `some coordinators crashed at the first effect after ${step}`);
  }
});

test('four shards, txns spanning up to all of them', async () => {
  const reports: HarnessReport[] = [];
  for (let seed = 1; seed <= 50; seed++) {
    const crashAt = { step: CRASH_STEPS[seed % CRASH_STEPS.length]!, offset: seed % 3 };
    reports.push(
      await new TxnHarness({
        ...DEFAULT_OPTIONS,
        seed,
        boundaries: ['c', 'f', 'i'],
        crashAt,
        crashP: 0.3,
      }).run(),
    );
  }
  const s = summarize(reports);
  console.log(`four shards: ${JSON.stringify({ ...s, crashPoints: undefined })}`);
  assert.ok(s.committed > s.fastPath);
});

test('shard outages (participant and primary leaders lost) on top of coordinator crashes', async () => {
  const reports: HarnessReport[] = [];
  for (let seed = 1; seed <= 60; seed++) {
    const crashAt = { step: CRASH_STEPS[seed % CRASH_STEPS.length]!, offset: seed % 3 };
    reports.push(await new TxnHarness({ ...DEFAULT_OPTIONS, seed, crashAt, crashP: 0.3, outages: 3 }).run());
  }
  const s = summarize(reports);
  console.log(`outages: ${JSON.stringify({ ...s, crashPoints: undefined })}`);
});

test('alive but slow coordinators (heartbeats slower than the TTL): expiry aborts them, never half-commits', async () => {
  const reports: HarnessReport[] = [];
  for (let seed = 1; seed <= 40; seed++) {
    reports.push(
      await new TxnHarness({
        ...DEFAULT_OPTIONS,
        seed,
        ttlMs: 25,
        heartbeatMs: 400,
        sweepMs: 5,
        delayMaxMs: 8,
        livenessNotExpected: true,
      }).run(),
    );
  }
  const s = summarize(reports);
  console.log(`slow coordinators: ${JSON.stringify(s)}`);
  assert.ok(s.aborts > 0, 'some txns lost their record to expiry');
  assert.ok(s.committed - s.fastPath > 0, 'cross-shard txns still commit');
});

test('contention on hot keys: every txn finishes; abort rate with and without client retry backoff', async () => {
  for (const retryBackoffMs of [0, 5]) {
    const reports: HarnessReport[] = [];
    for (let seed = 1; seed <= 20; seed++) {
      reports.push(
        await new TxnHarness({
          ...DEFAULT_OPTIONS,
          seed,
          clients: 16,
          keys: ['a', 'f', 'j'],
          crashP: 0.1,
          retryBackoffMs,
        }).run(),
      );
    }
    const s = summarize(reports);
    const virtualMs = reports.reduce((n, r) => n + r.endMs, 0);
    console.log(
      `hot keys, retry backoff ${retryBackoffMs} ms: ${JSON.stringify({
        txns: 20 * 16,
        committed: s.committed,
        abortedAttempts: s.aborts,
        abortsPerTxn: Number((s.aborts / (20 * 16)).toFixed(2)),
        virtualMs,
      })}`,
    );
  }
});
