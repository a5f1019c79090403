// The capacity arithmetic on hand-made samples: headroom per resource, time to fill the quota,
// shards for a target, and the edge cases (no growth, no quota, no measured rate, a target below
// the current load).

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { sampleFromMetrics, seriesTotals } from '../../src/cli/capacity/metrics-sample.js';
import { decodeRecord, encodeRecord } from '../../src/cli/capacity/recorded.js';
import {
  CapacityInputError,
  type CapacityReport,
  capacityReport,
  type MeasuredRate,
  type MemberSample,
  type ResourceName,
} from '../../src/cli/capacity/report.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

function sample(member: string, atMs: number, overrides: Partial<MemberSample> = {}): MemberSample {
  return {
    member,
    atMs,
    isLeader: false,
    appliedEntries: 1000,
    keys: 10_000,
    dbSizeBytes: 100 * MiB,
    dbSizeInUseBytes: 50 * MiB,
    quotaBytes: 2 * GiB,
    watchers: 0,
    rssBytes: 200 * MiB,
    memoryLimitBytes: 8 * GiB,
    cpuSeconds: 10,
    fsyncCount: 1000,
    fsyncSeconds: 2,
    ...overrides,
  };
}

/** Three members sampled 10 s apart; `grow` says what changed on each over those 10 s. */
function cluster(grow: Partial<MemberSample> = {}, base: Partial<MemberSample> = {}) {
  const names = ['n1', 'n2', 'n3'];
  const before = names.map((n, i) => sample(n, 0, { isLeader: i === 0, ...base }));
  const after = before.map((s) => {
    const next: MemberSample = { ...s, atMs: 10_000 };
    for (const [key, delta] of Object.entries(grow) as [keyof MemberSample, number][])
      (next as unknown as Record<string, number>)[key] = (s[key] as number) + delta;
    return next;
  });
  return { before, after };
}

const measured: MeasuredRate = {
  writesPerSec: 4100,
  clients: 64,
  valueBytes: 256,
  durationSec: 5,
  measuredAt: '2026-12-05T11:00:00.000Z',
  source: 'bench',
};

function resource(report: CapacityReport, name: ResourceName) {
  const row = report.resources.find((r) => r.resource === name);
  assert.ok(row, `resource ${name} in the report`);
  return row;
}

describe('capacityReport', () => {
  test('rates come from the difference of the two samples over the interval', () => {
    const { before, after } = cluster({
      appliedEntries: 5000,
      keys: 1000,
      dbSizeInUseBytes: 10 * MiB,
      cpuSeconds: 3,
      fsyncCount: 500,
      fsyncSeconds: 1,
      watchers: 5,
    });
    const report = capacityReport(before, after, measured);
    assert.equal(report.intervalSec, 10);
    assert.equal(report.members, 3);
    assert.equal(report.current.writesPerSec, 500);
    assert.equal(report.current.keysPerSec, 100);
    assert.equal(report.current.bytesInUsePerSec, MiB);
    assert.equal(report.current.keys, 11_000);
    assert.equal(report.current.watchers, 15, 'watchers add up over the members');
    assert.equal(report.current.watchersPerSec, 1.5);
    const cpu = resource(report, 'cpu');
    assert.equal(cpu.used, 0.3);
    assert.equal(cpu.limit, 1);
    assert.ok(Math.abs((cpu.headroom ?? 0) - 0.7) < 1e-9);
    // 500 fsyncs taking 1 s in all: 2 ms each → 500 fsyncs/s at most; 50/s now → 10 % busy.
    const fsync = resource(report, 'wal fsync');
    assert.equal(fsync.used, 50);
    assert.equal(fsync.limit, 500);
    assert.equal(fsync.usedShare, 0.1);
    const writes = resource(report, 'writes');
    assert.equal(writes.used, 500);
    assert.equal(writes.limit, 4100);
    assert.equal(writes.headroom, 3600);
    assert.equal(report.plan, null, 'no targets, no plan');
    assert.ok(report.arithmetic.some((l) => l.startsWith('writes now: Δapplied 5,000 ÷ 10 s = 500/s')));
  });

  test('time to fill the quota: free bytes over the growth of bytes in use', () => {
    const { before, after } = cluster({ dbSizeInUseBytes: 10 * MiB, dbSizeBytes: 0 });
    const report = capacityReport(before, after, measured);
    const disk = resource(report, 'disk quota');
    assert.equal(disk.used, 100 * MiB);
    assert.equal(disk.limit, 2 * GiB);
    assert.equal(disk.headroom, 2 * GiB - 100 * MiB);
    assert.equal(disk.growthPerSec, MiB);
    assert.equal(disk.timeToFullSec, (2 * GiB - 100 * MiB) / MiB);
    assert.ok(report.arithmetic.some((l) => /^disk quota full in: 1\.90 GiB free ÷ 1\.00 MiB\/s/.test(l)));
  });

  test('the fullest member sets the disk headroom', () => {
    const { before, after } = cluster({ dbSizeInUseBytes: MiB });
    after[2] = { ...(after[2] as MemberSample), dbSizeBytes: GiB };
    const disk = resource(capacityReport(before, after, measured), 'disk quota');
    assert.equal(disk.member, 'n3');
    assert.equal(disk.usedShare, 0.5);
  });

  test('zero growth: the quota never fills at the current rate', () => {
    const { before, after } = cluster();
    const report = capacityReport(before, after, measured);
    const disk = resource(report, 'disk quota');
    assert.equal(disk.growthPerSec, 0);
    assert.equal(disk.timeToFullSec, null);
    assert.equal(report.current.writesPerSec, 0);
    assert.ok(report.arithmetic.some((l) => l.includes('never at the current rate')));
  });

  test('shrinking use (a compaction between the samples) does not fill the quota either', () => {
    const { before, after } = cluster({ dbSizeInUseBytes: -5 * MiB });
    const disk = resource(capacityReport(before, after, measured), 'disk quota');
    assert.ok((disk.growthPerSec ?? 0) < 0);
    assert.equal(disk.timeToFullSec, null);
  });

  test('no quota: no limit, no time to full, and byte targets need no shards for it', () => {
    const { before, after } = cluster({ dbSizeInUseBytes: MiB }, { quotaBytes: 0 });
    const report = capacityReport(before, after, measured, { keys: 1e9, bytes: 100 * GiB });
    const disk = resource(report, 'disk quota');
    assert.equal(disk.limit, null);
    assert.equal(disk.usedShare, null);
    assert.equal(disk.timeToFullSec, null);
    assert.equal(report.plan?.keyShards, null);
    assert.equal(report.plan?.byteShards, null);
    assert.equal(report.plan?.shardsNeeded, 1);
  });

  test('a write target above one group needs ceil(target ÷ measured) shards, shown as arithmetic', () => {
    const { before, after } = cluster({ appliedEntries: 1000 });
    const report = capacityReport(before, after, measured, { writesPerSec: 20_000 });
    assert.equal(report.plan?.writeShards, 5);
    assert.equal(report.plan?.shardsNeeded, 5);
    assert.equal(report.plan?.replicasPerShard, 3);
    assert.equal(report.plan?.memberProcesses, 15);
    assert.ok(
      report.arithmetic.includes('writes: target 20,000/s ÷ measured 4,100/s per group = 4.88 → 5 shards'),
      report.arithmetic.join('\n'),
    );
    assert.ok(report.arithmetic.some((l) => l.startsWith('shards: max(5) = 5; member processes: 5 × 3')));
    assert.ok(report.notes.some((n) => n.includes('needs 5 Raft groups')));
  });

  test('a target exactly at the measured rate fits one group', () => {
    const { before, after } = cluster();
    const report = capacityReport(before, after, measured, { writesPerSec: 4100 });
    assert.equal(report.plan?.writeShards, 1);
    assert.equal(report.plan?.shardsNeeded, 1);
  });

  test('a target below the current load still plans one shard and says so', () => {
    const { before, after } = cluster({ appliedEntries: 30_000 });
    const report = capacityReport(before, after, measured, { writesPerSec: 100 });
    assert.equal(report.current.writesPerSec, 3000);
    assert.equal(report.plan?.writeShards, 1);
    assert.ok(report.notes.some((n) => n.includes('below the current load')));
  });

  test('a key target is sized by the bytes per key in use today against the quota', () => {
    // 50 MiB in use over 10,000 keys = 5,242.88 B per key; 1,000,000 keys → 5,000 MiB ÷ 2,048 MiB.
    const { before, after } = cluster();
    const report = capacityReport(before, after, measured, { keys: 1_000_000, bytes: 5 * GiB });
    assert.equal(report.current.bytesPerKey, (50 * MiB) / 10_000);
    assert.equal(report.plan?.keyShards, 3);
    assert.equal(report.plan?.byteShards, 3);
    assert.equal(report.plan?.shardsNeeded, 3);
  });

  test('no keys yet: a key target cannot be sized, the other targets still are', () => {
    const { before, after } = cluster({}, { keys: 0 });
    const report = capacityReport(before, after, measured, { keys: 1e6, writesPerSec: 9000 });
    assert.equal(report.current.bytesPerKey, null);
    assert.equal(report.plan?.keyShards, null);
    assert.equal(report.plan?.writeShards, 3);
    assert.ok(report.arithmetic.some((l) => l.startsWith('keys: no keys yet')));
  });

  test('no measured rate: writes have no limit and the write target no shard count', () => {
    const { before, after } = cluster({ appliedEntries: 100 });
    const report = capacityReport(before, after, null, { writesPerSec: 20_000 });
    const writes = resource(report, 'writes');
    assert.equal(writes.limit, null);
    assert.equal(writes.headroom, null);
    assert.equal(report.plan?.writeShards, null);
    assert.equal(report.plan?.shardsNeeded, 1);
    assert.ok(report.notes.some((n) => n.startsWith('no measured write rate')));
  });

  test('a rate that still rose at the last benchmark step is called a lower bound', () => {
    const { before, after } = cluster();
    const rising = capacityReport(before, after, { ...measured, stillRising: true });
    assert.ok(rising.notes.some((n) => n.includes('is a lower bound')));
    const flat = capacityReport(before, after, { ...measured, stillRising: false });
    assert.ok(!flat.notes.some((n) => n.includes('lower bound')));
  });

  test('no fsync timed yet: the fsync rate has no limit rather than a division by zero', () => {
    const { before, after } = cluster({}, { fsyncCount: 0, fsyncSeconds: 0 });
    const fsync = resource(capacityReport(before, after, measured), 'wal fsync');
    assert.equal(fsync.limit, null);
    assert.equal(fsync.used, 0);
  });

  test('no fsync in the interval: the lifetime mean latency bounds the rate', () => {
    const { before, after } = cluster();
    const fsync = resource(capacityReport(before, after, measured), 'wal fsync');
    assert.equal(fsync.limit, 500, '1000 fsyncs in 2 s: 2 ms each');
    assert.equal(fsync.usedShare, 0);
  });

  test('unknown memory limit: RSS is reported without a share', () => {
    const { before, after } = cluster({}, { memoryLimitBytes: 0 });
    const memory = resource(capacityReport(before, after, measured), 'memory');
    assert.equal(memory.used, 200 * MiB);
    assert.equal(memory.limit, null);
  });

  test('only members sampled twice count; none at all is an error', () => {
    const { before, after } = cluster();
    assert.equal(capacityReport(before, after.slice(0, 2), measured).members, 2);
    assert.throws(() => capacityReport(before, [], measured), CapacityInputError);
    assert.throws(
      () => capacityReport(before, before, measured),
      CapacityInputError,
      'samples at the same moment',
    );
    assert.throws(() => capacityReport(before, after, measured, { writesPerSec: -1 }), CapacityInputError);
  });
});

describe('sampleFromMetrics', () => {
  const text = [
    '# HELP etcd_server_is_leader Whether or not this member is a leader.',
    '# TYPE etcd_server_is_leader gauge',
    'etcd_server_is_leader 1',
    'etcd_server_proposals_applied_total 1234',
    'etcd_debugging_mvcc_keys_total 42',
    'etcd_debugging_mvcc_watcher_total 3',
    'etcd_mvcc_db_total_size_in_bytes 1048576',
    'etcd_mvcc_db_total_size_in_use_in_bytes 524288',
    'etcd_server_quota_backend_bytes 2147483648',
    'process_resident_memory_bytes 1e+08',
    'process_cpu_seconds_total 12.5',
    'etcd_disk_wal_fsync_duration_seconds_bucket{le="0.001"} 5',
    'etcd_disk_wal_fsync_duration_seconds_bucket{le="+Inf"} 10',
    'etcd_disk_wal_fsync_duration_seconds_sum 0.02',
    'etcd_disk_wal_fsync_duration_seconds_count 10',
    'etcd_network_peer_sent_bytes_total{To="a"} 100',
    'etcd_network_peer_sent_bytes_total{To="b"} 50',
  ].join('\n');

  test('reads the etcd names, sums label sets, and leaves what is missing at 0', () => {
    const s = sampleFromMetrics('n1', 5, text);
    assert.equal(s.isLeader, true);
    assert.equal(s.appliedEntries, 1234);
    assert.equal(s.keys, 42);
    assert.equal(s.watchers, 3);
    assert.equal(s.dbSizeBytes, MiB);
    assert.equal(s.dbSizeInUseBytes, MiB / 2);
    assert.equal(s.quotaBytes, 2 * GiB);
    assert.equal(s.rssBytes, 1e8);
    assert.equal(s.cpuSeconds, 12.5);
    assert.equal(s.fsyncCount, 10);
    assert.equal(s.fsyncSeconds, 0.02);
    assert.equal(s.memoryLimitBytes, 0, 'concord_memory_limit_bytes missing (an etcd member)');
    assert.equal(seriesTotals(text).get('etcd_network_peer_sent_bytes_total'), 150);
  });

  test('a page without the etcd series is refused', () => {
    assert.throws(() => sampleFromMetrics('x', 0, 'up 1\n'), /no etcd_server_proposals_applied_total/);
  });
});

describe('recorded measurements', () => {
  const rate: MeasuredRate = {
    writesPerSec: 4100,
    clients: 64,
    valueBytes: 256,
    durationSec: 1.6,
    measuredAt: '2026-12-05T11:00:00.000Z',
    source: 'bench',
  };

  test('a saved run reads back as recorded with the same rate', () => {
    const text = encodeRecord(['127.0.0.1:2379'], rate, [
      { clients: 16, writesPerSec: 4100, p99Ms: 5, errors: 0, clientCpuPercent: 40 },
    ]);
    const record = decodeRecord(text, 'file');
    assert.equal(record.rate.writesPerSec, 4100);
    assert.equal(record.rate.source, 'recorded');
    assert.deepEqual(record.endpoints, ['127.0.0.1:2379']);
    assert.equal(record.steps.length, 1);
  });

  test('what is not a recording is refused with where it came from', () => {
    assert.throws(() => decodeRecord('not json', 'x.json'), /x\.json is not JSON/);
    assert.throws(
      () => decodeRecord('{"kind":"other","version":1}', 'x.json'),
      /x\.json is not a concord-capacity/,
    );
    const zero = encodeRecord([], { ...rate, writesPerSec: 0 }, []);
    assert.throws(() => decodeRecord(zero, 'x.json'), /no positive rate/);
  });
});
