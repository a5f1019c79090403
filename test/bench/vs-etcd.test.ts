// The pure parts of `bench:vs-etcd` (the clusters themselves are exercised by running it).

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { BenchResult } from '../../src/cli/bench/run.js';
import { type Measured, ratio, renderTable } from '../../src/cli/bench/tables.js';
import {
  bestOfRounds,
  endpointsStartingAt,
  latencyRatioRows,
  parseEngines,
  parseVsArgs,
  placeSlowMember,
  selectedBy,
  WORKLOAD_IDS,
} from '../../src/cli/bench/vs-etcd.js';

function measured(opsPerSec: number): Measured {
  const result = { workload: 'put', opsPerSec, ops: opsPerSec, durationSec: 1 } as BenchResult;
  return { result, leaderCpuPercent: 10, clusterCpuPercent: 30, window: { fromUs: 0, toUs: 1 } };
}

describe('bench vs etcd report', () => {
  it('a slow-member round slows a follower and puts the first client on another follower, whoever leads', () => {
    for (const size of [3, 5]) {
      for (let leader = 0; leader < size; leader++) {
        const { slow, client } = placeSlowMember(leader, size, 'fast-follower');
        assert.notEqual(slow, leader, `size ${size} leader ${leader}: the slow member is a follower`);
        assert.notEqual(client, leader, `size ${size} leader ${leader}: the client is on a follower`);
        assert.notEqual(client, slow, `size ${size} leader ${leader}: the client is not on the slow member`);
        const onSlow = placeSlowMember(leader, size, 'slow');
        assert.deepEqual(onSlow, { slow, client: slow });
      }
    }
    assert.throws(() => placeSlowMember(0, 2, 'fast-follower'), /need 3 members/);
  });

  it('the endpoints start at the chosen member and keep every member once', () => {
    assert.deepEqual(endpointsStartingAt(['a', 'b', 'c'], 0), ['a', 'b', 'c']);
    assert.deepEqual(endpointsStartingAt(['a', 'b', 'c'], 2), ['c', 'a', 'b']);
  });

  it('markdown tables have a header, a separator and one line per row', () => {
    const text = renderTable(
      ['a', 'b'],
      [
        ['1', '2'],
        ['3', '4'],
      ],
      true,
    );
    assert.equal(text, '| a | b |\n| --- | --- |\n| 1 | 2 |\n| 3 | 4 |');
  });

  it('text tables pad every column to its widest cell', () => {
    const text = renderTable(['workload', 'x'], [['put', '12345']], false);
    assert.deepEqual(text.split('\n'), ['workload  x', '--------  -----', 'put       12345']);
  });

  it('the ratio is concord over etcd, and n/a when etcd measured nothing', () => {
    assert.equal(ratio(50, 200), '0.25x');
    assert.equal(ratio(5, 0), 'n/a');
  });

  it('each workload keeps its fastest round; the restart kept is the one whose slowest member was fastest', () => {
    const system = {
      label: 'concord',
      version: 'v',
      freshStartMs: 1,
      load: measured(1),
      rssBytes: [1],
      diskBytes: 1,
    };
    const run = bestOfRounds(system, [
      {
        restartServingMs: [100, 900],
        workloads: new Map([
          ['put', measured(10)],
          ['range', measured(70)],
        ]),
      },
      {
        restartServingMs: [500, 600],
        workloads: new Map([
          ['put', measured(30)],
          ['range', measured(20)],
        ]),
      },
    ]);
    assert.equal(run.workloads.get('put')?.result.opsPerSec, 30);
    assert.equal(run.workloads.get('range')?.result.opsPerSec, 70);
    assert.deepEqual(run.restartServingMs, [500, 600]);
  });
});

describe('bench:vs-etcd --engines', () => {
  it('names each engine and the member flags it starts with; refuses unknown engines and bad quorums', () => {
    assert.deepEqual(parseEngines('raft,multi-paxos,multi-paxos:2', 5), [
      { label: 'raft', flags: ['--consensus', 'raft'] },
      { label: 'multi-paxos', flags: ['--consensus', 'multi-paxos'] },
      { label: 'multi-paxos q2=2', flags: ['--consensus', 'multi-paxos', '--paxos-phase2-quorum', '2'] },
    ]);
    assert.throws(() => parseEngines('paxos', 3), /unknown engine 'paxos'/);
    assert.throws(() => parseEngines('raft:2', 3), /multi-paxos:K only/);
    assert.throws(() => parseEngines('multi-paxos:4', 3), /phase-2 quorum K in 1\.\.3/);
  });
});

describe('bench:vs-etcd --memory-keys', () => {
  it('loads that many keys (default 100k otherwise) and refuses counts out of range or mixed modes', () => {
    assert.equal(parseVsArgs(['--memory-keys', '1000000']).loadKeys, 1_000_000);
    assert.equal(parseVsArgs(['--memory-keys', '1000000']).memoryKeys, 1_000_000);
    assert.equal(parseVsArgs([]).memoryKeys, undefined);
    assert.equal(parseVsArgs([]).loadKeys, 100_000);
    assert.throws(() => parseVsArgs(['--memory-keys', '10']), /--memory-keys must be/);
    assert.throws(() => parseVsArgs(['--memory-keys', '3000000']), /--memory-keys must be/);
    assert.throws(() => parseVsArgs(['--memory-keys', '1000000', '--engines', 'raft']), /drop --security/);
  });
});

describe('bench:vs-etcd single-client rows and --only', () => {
  it('--only single-put selects the two single-client put rows and nothing else', () => {
    const chosen = WORKLOAD_IDS.filter((id) => selectedBy(['single-put'], id));
    assert.deepEqual(chosen, ['single-put-leader', 'single-put-follower']);
    assert.deepEqual(
      WORKLOAD_IDS.filter((id) => selectedBy(['put'], id)),
      ['put-64', 'put-256'],
    );
    assert.deepEqual(
      WORKLOAD_IDS.filter((id) => selectedBy(['watch', 'put-64'], id)),
      ['put-64', 'watch', 'watch-1000'],
    );
    assert.deepEqual(
      WORKLOAD_IDS.filter((id) => selectedBy(['watch-1000'], id)),
      ['watch-1000'],
    );
    assert.deepEqual(parseVsArgs(['--quick', '--only', 'single-put,put-64']).only, ['single-put', 'put-64']);
    assert.equal(parseVsArgs(['--quick']).only, undefined);
    assert.throws(() => parseVsArgs(['--only', 'single-get']), /unknown workload 'single-get'/);
    assert.throws(() => parseVsArgs(['--only', 'single-']), /unknown workload/);
  });

  it('the latency rows are Concord over etcd at p50 and at p99', () => {
    const result = (p50: number, p99: number) => ({ latencyMs: { p50, p99 } }) as BenchResult;
    const rows = latencyRatioRows(
      [{ id: 'single-put-leader', title: 'single client put through the leader' }],
      () => result(1, 4),
      () => result(2, 3),
    );
    assert.equal(rows.length, 1);
    assert.deepEqual(rows[0]!.slice(3), ['2.00x', '0.75x']);
  });
});
