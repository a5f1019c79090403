import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { readCpuProfile, topSelfTime } from '../../src/cli/bench/cpu-profile.js';
import { BenchFlagError, defaultTotal, parseBenchArgs } from '../../src/cli/bench/options.js';

function run(argv: string[]) {
  const parsed = parseBenchArgs(argv, true);
  assert.equal(parsed.kind, 'run');
  return parsed.kind === 'run' ? parsed.options : assert.fail();
}

describe('bench flags', () => {
  it('defaults follow etcd benchmark habits: one conn, one client, a fixed total', () => {
    const options = run(['put']);
    assert.equal(options.conns, 1);
    assert.equal(options.clients, 1);
    assert.equal(options.total, defaultTotal);
    assert.equal(options.durationMs, undefined);
    assert.deepEqual(options.endpoints, ['127.0.0.1:2379']);
    assert.equal(options.progress, true);
  });

  it('--json turns the progress bar off; --duration replaces --total', () => {
    const options = run([
      'range',
      '--json',
      '--duration',
      '2.5',
      '--consistency',
      's',
      '--endpoints',
      'a:1,b:2',
    ]);
    assert.equal(options.progress, false);
    assert.equal(options.total, undefined);
    assert.equal(options.durationMs, 2500);
    assert.equal(options.consistency, 's');
    assert.deepEqual(options.endpoints, ['a:1', 'b:2']);
  });

  it('--user NAME:PASSWORD signs in as that user (the password may hold colons); none: no credentials', () => {
    assert.deepEqual(run(['put', '--user', 'bench:pa:ss']).auth, { user: 'bench', password: 'pa:ss' });
    assert.equal(run(['put']).auth, undefined);
  });

  it('refuses combinations that cannot run', () => {
    const refused: string[][] = [
      [],
      ['nosuch'],
      ['put', '--total', '5', '--duration', '1'],
      ['put', '--clients', '0'],
      ['put', '--key-size', '2', '--key-space-size', '1000'],
      ['watch', '--val-size', '4'],
      ['lease-keepalive', '--clients', '20', '--leases', '10'],
      ['range', '--consistency', 'x'],
      ['mixed', '--read-ratio', '1.5'],
      ['put', '--bogus'],
      ['put', '--user', 'bench'],
      ['put', '--user', ':pw'],
    ];
    for (const argv of refused)
      assert.throws(() => parseBenchArgs(argv, false), BenchFlagError, argv.join(' '));
  });
});

describe('cpu profile summary', () => {
  it('attributes sample time to the sampled function and ranks by self time', () => {
    const dir = mkdtempSync(join(tmpdir(), 'bench-profile-test-'));
    try {
      const frame = (functionName: string, line: number) => ({
        functionName,
        url: 'file:///x/dist/src/raft/raft.js',
        lineNumber: line,
      });
      const profile = {
        nodes: [
          { id: 1, callFrame: frame('(root)', 0) },
          { id: 2, callFrame: frame('step', 9) },
          { id: 3, callFrame: frame('', 19) },
        ],
        startTime: 0,
        endTime: 100,
        samples: [2, 2, 3, 2],
        timeDeltas: [10_000, 20_000, 30_000, 40_000],
      };
      const path = join(dir, 'p.cpuprofile');
      writeFileSync(path, JSON.stringify(profile));
      const rows = topSelfTime(readCpuProfile(path), 5);
      assert.deepEqual(
        rows.map((r) => [r.functionName, r.location, r.selfMs, Math.round(r.percent)]),
        [
          ['step', 'src/raft/raft.js:10', 70, 70],
          ['(anonymous)', 'src/raft/raft.js:20', 30, 30],
        ],
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
