// `concordctl check capacity` against a real 3-member cluster with some load and a watcher: the
// report's fields are present and agree with each other (shards = ceil(target ÷ measured)), the
// benchmark's scratch keys are gone afterwards, and a saved run can be read back instead of
// benchmarking again.

import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CAPACITY_SCRATCH_PREFIX } from '../../src/cli/capacity/measure.js';
import { CAPACITY_RECORD_KEY } from '../../src/cli/capacity/recorded.js';
import type { CapacityReport, ResourceName } from '../../src/cli/capacity/report.js';
import { Client } from '../../src/client/index.js';
import { type ProcessCluster, startConcordCluster } from '../support/cluster.js';
import { runConcordctl } from '../support/concordctl.js';

const runTimeoutMs = 60_000;
const QUOTA_BYTES = 64 * 1024 * 1024;

const concordctl = (args: string[]) => runConcordctl(args, runTimeoutMs);

type JsonReport = CapacityReport & { calibration: Array<{ clients: number; writesPerSec: number }> };

describe('concordctl check capacity on a 3-member cluster', { timeout: 240_000 }, () => {
  let cluster: ProcessCluster;
  let client: Client;
  let scratch: string;
  let endpoints: string;

  before(async () => {
    [cluster, scratch] = await Promise.all([
      startConcordCluster({ size: 3, extraFlags: ['--quota-backend-bytes', String(QUOTA_BYTES)] }),
      mkdtemp(join(tmpdir(), 'capacity-test-')),
    ]);
    endpoints = cluster.endpoints().join(',');
    client = new Client({ endpoints: cluster.endpoints() });
    for (let i = 0; i < 200; i++) await client.put(`app/key-${i}`, 'x'.repeat(100));
  });
  after(async () => {
    client?.close();
    await cluster?.dispose();
    if (scratch !== undefined) await rm(scratch, { recursive: true, force: true });
  });

  const ok = async (args: string[]): Promise<string> => {
    const result = await concordctl([`--endpoints=${endpoints}`, ...args]);
    assert.equal(result.code, 0, `concordctl ${args.join(' ')}: ${result.stderr}${result.stdout}`);
    return result.stdout;
  };
  const row = (report: CapacityReport, name: ResourceName) => {
    const found = report.resources.find((r) => r.resource === name);
    assert.ok(found, `${name} in ${JSON.stringify(report.resources)}`);
    return found;
  };

  test('benchmarks, reports every resource and sizes a target with the arithmetic shown', async () => {
    await cluster.withLogsOnFailure(async () => {
      // Load during the sampling interval: a writer and one watcher.
      const watch = client.watch('app/', { prefix: true, eventsBufferedMax: 1_000_000 });
      await watch.ready;
      let writing = true;
      const writer = (async () => {
        for (let i = 0; writing; i++) await client.put(`app/load-${i % 50}`, 'y'.repeat(200));
      })();
      const saved = join(scratch, 'capacity.json');
      const target = 1_000_000;
      let stdout: string;
      try {
        stdout = await ok([
          'check',
          'capacity',
          '--duration',
          '2',
          '--interval',
          '1s',
          '-w',
          'json',
          '--target-writes-per-s',
          String(target),
          '--target-keys',
          '1000000',
          '--save',
          saved,
          '--publish',
        ]);
      } finally {
        writing = false;
        await writer;
      }
      const report = JSON.parse(stdout) as JsonReport;
      assert.equal(report.members, 3);
      assert.ok(report.intervalSec >= 1, `interval ${report.intervalSec}`);
      assert.ok(report.measured !== null && report.measured.writesPerSec > 0, 'a measured rate');
      assert.equal(report.measured.source, 'bench');
      assert.ok(report.calibration.length >= 1 && report.calibration.length <= 3);
      assert.equal(
        report.measured.writesPerSec,
        Math.max(...report.calibration.map((s) => s.writesPerSec)),
        'the best calibration step is the measured rate',
      );
      assert.ok(report.current.writesPerSec > 0, 'the writer shows as current load');
      assert.ok(report.current.keys >= 200);
      assert.ok(report.current.watchers >= 1, 'the open watcher is counted');
      assert.ok(report.current.bytesPerKey !== null && report.current.bytesPerKey > 0);

      const disk = row(report, 'disk quota');
      assert.equal(disk.limit, QUOTA_BYTES);
      assert.ok(disk.used > 0 && disk.used < QUOTA_BYTES);
      assert.equal(disk.headroom, QUOTA_BYTES - disk.used);
      const memory = row(report, 'memory');
      assert.ok(memory.used > 0 && memory.limit !== null && memory.limit > memory.used);
      const cpu = row(report, 'cpu');
      assert.equal(cpu.limit, 1);
      assert.ok(cpu.used > 0, 'the writer costs the members some CPU');
      const fsync = row(report, 'wal fsync');
      assert.ok(fsync.used > 0 && fsync.limit !== null && fsync.limit > 0);
      const writes = row(report, 'writes');
      assert.equal(writes.limit, report.measured.writesPerSec);
      assert.equal(writes.used, report.current.writesPerSec);

      const plan = report.plan;
      assert.ok(plan !== null);
      assert.equal(plan.writeShards, Math.ceil(target / report.measured.writesPerSec));
      assert.equal(plan.keyShards, Math.ceil((1_000_000 * report.current.bytesPerKey) / QUOTA_BYTES));
      assert.equal(plan.shardsNeeded, Math.max(plan.writeShards ?? 1, plan.keyShards ?? 1));
      assert.equal(plan.memberProcesses, plan.shardsNeeded * 3);
      assert.ok(
        report.arithmetic.some((l) => l.startsWith('writes: target 1,000,000/s ÷ measured ')),
        report.arithmetic.join('\n'),
      );
      assert.ok(report.arithmetic.some((l) => l.startsWith('disk quota full in: ')));

      // The scratch keys are gone; the run was saved to the file and published for the dashboard.
      const left = await client.get(CAPACITY_SCRATCH_PREFIX, { prefix: true, countOnly: true });
      assert.equal(left.count, 0n);
      const file = JSON.parse(await readFile(saved, 'utf8'));
      assert.equal(file.rate.writesPerSec, report.measured.writesPerSec);
      const published = await client.get(CAPACITY_RECORD_KEY);
      assert.equal(
        JSON.parse(published.kvs[0]!.value.toString()).rate.writesPerSec,
        report.measured.writesPerSec,
      );
      watch.close();

      // A recorded run instead of a new benchmark: same rate, marked recorded, same shard count.
      const again = JSON.parse(
        await ok([
          'check',
          'capacity',
          '--recorded',
          saved,
          '--interval',
          '500ms',
          '-w',
          'json',
          '--target-writes-per-s',
          String(target),
        ]),
      ) as JsonReport;
      assert.equal(again.measured?.source, 'recorded');
      assert.equal(again.measured?.writesPerSec, report.measured.writesPerSec);
      assert.equal(again.plan?.writeShards, plan.writeShards);
    });
  });

  test('the table names each resource; no benchmark means no write limit', async () => {
    const text = await ok(['check', 'capacity', '--no-bench', '--interval', '500ms', '-w', 'table']);
    assert.match(text, /RESOURCE/);
    for (const name of ['disk quota', 'memory', 'cpu', 'wal fsync', 'writes', 'keys', 'watchers'])
      assert.match(text, new RegExp(`\\| +${name} +\\|`));
    assert.match(text, /Note: no measured write rate/);
    assert.match(text, /disk quota full in: /);
  });

  test('bad flags are usage errors (exit 128) and change nothing', async () => {
    const bad = await concordctl([
      `--endpoints=${endpoints}`,
      'check',
      'capacity',
      '--target-writes-per-s',
      '-5',
    ]);
    assert.equal(bad.code, 128, bad.stderr);
    assert.match(bad.stderr, /--target-writes-per-s needs a positive number/);
    const both = await concordctl([
      `--endpoints=${endpoints}`,
      'check',
      'capacity',
      '--no-bench',
      '--save',
      'x',
    ]);
    assert.equal(both.code, 128, both.stderr);
    const missing = await concordctl([
      `--endpoints=${endpoints}`,
      'check',
      'capacity',
      '--recorded',
      join(scratch, 'none.json'),
      '--interval',
      '100ms',
    ]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /none\.json/);
  });
});
