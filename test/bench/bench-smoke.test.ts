// Keeps `concord bench` working: a few hundred operations of every workload against a 1-member
// Concord, checking the shape and internal consistency of the JSON result. Never absolute speed:
// the CI machine is shared.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { type BenchOptions, WORKLOADS } from '../../src/cli/bench/options.js';
import { type BenchResult, runWorkload } from '../../src/cli/bench/run.js';
import { type ProcessCluster, startConcordCluster } from '../support/cluster.js';
import { smokeOptions } from './smoke-options.js';

function options(
  endpoint: string,
  overrides: Partial<BenchOptions> & Pick<BenchOptions, 'workload'>,
): BenchOptions {
  return smokeOptions([endpoint], overrides);
}

const benchModuleUrl = new URL('../../src/cli/bench/index.js', import.meta.url).href;

/** Runs runBench(argv) in a child process, as `concord bench` will, capturing its output. */
function runBenchProcess(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const script = `const { runBench } = await import(${JSON.stringify(benchModuleUrl)}); process.exitCode = await runBench(JSON.parse(process.argv[1]));`;
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--input-type=module', '-e', script, JSON.stringify(argv)],
      { timeout: 30_000 },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === 'number' ? error.code : -1;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

function assertSane(result: BenchResult, expectedOps: number): void {
  assert.equal(result.errors, 0, `errors: ${result.errorSamples.join('; ')}`);
  assert.equal(result.ops, expectedOps);
  assert.ok(result.durationSec > 0);
  assert.ok(Math.abs(result.opsPerSec - result.ops / result.durationSec) < 1e-6 * result.opsPerSec + 1e-9);
  const l = result.latencyMs;
  assert.ok(l.min > 0, 'a request over the network takes more than 0 ms');
  assert.ok(
    l.min <= l.p50 && l.p50 <= l.p90 && l.p90 <= l.p99 && l.p99 <= l.p999 && l.p999 <= l.max,
    JSON.stringify(l),
  );
  assert.equal(
    result.histogram.reduce((sum, range) => sum + range.count, 0),
    expectedOps,
    'the histogram holds every measured operation',
  );
  assert.ok(
    result.clientCpuPercent > 0 && result.clientCpuPercent < 400,
    `client CPU ${result.clientCpuPercent}`,
  );
}

describe('concord bench smoke', { timeout: 60_000 }, () => {
  let cluster: ProcessCluster;
  let endpoint: string;

  before(async () => {
    cluster = await startConcordCluster({ size: 1 });
    endpoint = cluster.endpoint(0);
  });

  after(async () => {
    await cluster?.dispose();
  });

  it('put, range (both consistencies) and mixed complete every requested op without errors', async () => {
    assertSane(await runWorkload(options(endpoint, { workload: 'put', sequentialKeys: true })), 200);
    assertSane(await runWorkload(options(endpoint, { workload: 'range', consistency: 'l' })), 200);
    assertSane(
      await runWorkload(options(endpoint, { workload: 'range', consistency: 's', skipPreload: true })),
      200,
    );
    const mixed = await runWorkload(
      options(endpoint, { workload: 'mixed', readRatio: 0.5, skipPreload: true }),
    );
    assertSane(mixed, 200);
    assert.equal((mixed.extra.reads ?? 0) + (mixed.extra.writes ?? 0), 200);
  });

  it('txn counts every compare-and-swap as a swap or a conflict; contention on 2 keys causes conflicts', async () => {
    const result = await runWorkload(options(endpoint, { workload: 'txn', keySpaceSize: 2, clients: 8 }));
    assertSane(result, 200);
    assert.equal((result.extra.swaps ?? 0) + (result.extra.conflicts ?? 0), 200);
    assert.ok((result.extra.swaps ?? 0) > 0);
    assert.ok((result.extra.conflicts ?? 0) > 0, '8 clients racing on 2 keys must lose some swaps');
  });

  it('watch delivers every put to every watcher and measures each delivery', async () => {
    const result = await runWorkload(
      options(endpoint, { workload: 'watch', total: 40, clients: 2, watchers: 5 }),
    );
    assertSane(result, 40 * 5);
    assert.equal(result.extra.puts, 40);
    assert.equal(result.extra.eventsMissing, 0);
  });

  it('lease-keepalive keeps every lease alive and answers each keep-alive', async () => {
    assertSane(
      await runWorkload(options(endpoint, { workload: 'lease-keepalive', leases: 8, clients: 4 })),
      200,
    );
  });

  it('--target-leader finds the leader; --duration bounds the run by time', async () => {
    const result = await runWorkload(
      options(endpoint, { workload: 'put', targetLeader: true, total: undefined, durationMs: 500 }),
    );
    assert.equal(result.errors, 0);
    assert.ok(result.ops > 0);
    assert.ok(result.durationSec >= 0.5 && result.durationSec < 10, `duration ${result.durationSec}`);
    assert.deepEqual(result.endpoints, [endpoint.replace('http://', '')]);
  });

  it('runBench prints one JSON line with --json and exits 0; bad flags exit 2', async () => {
    const ok = await runBenchProcess([
      'put',
      '--endpoints',
      endpoint,
      '--total',
      '50',
      '--clients',
      '2',
      '--json',
    ]);
    assert.equal(ok.code, 0, ok.stderr);
    const lines = ok.stdout.trim().split('\n');
    assert.equal(lines.length, 1, ok.stdout);
    const parsed = JSON.parse(lines[0]!) as BenchResult;
    assert.equal(parsed.workload, 'put');
    assert.equal(parsed.ops, 50);
    assert.equal(typeof parsed.latencyMs.p99, 'number');
    assert.equal(ok.stderr, '', 'no progress bar with --json');

    const unknown = await runBenchProcess(['nosuch']);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, new RegExp(WORKLOADS.join('.*')));
    assert.equal((await runBenchProcess(['put', '--total', '5', '--duration', '1'])).code, 2);
  });

  it('a dead endpoint makes the run fail with errors, not hang', async () => {
    const result = await runWorkload(
      options('127.0.0.1:1', { workload: 'put', total: 3, clients: 1, requestTimeoutMs: 300 }),
    );
    assert.equal(result.ops, 0);
    assert.equal(result.errors, 3);
    assert.ok(result.errorSamples.length > 0);
  });
});
