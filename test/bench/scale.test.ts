import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { KeyFormat } from '../../src/cli/bench/kv-workloads.js';
import { formatScaleTable, parseScaleArgs, type ScaleRow, splitKeys } from '../../src/cli/bench/scale.js';

describe('bench:scale', () => {
  it('parses its flags and refuses bad ones', () => {
    const options = parseScaleArgs(['--nodes', '3,6,9', '--cpu', '0.5', '--seconds', '5']);
    assert.notEqual(options, 'help');
    if (options === 'help') return;
    assert.deepEqual(options.nodes, [3, 6, 9]);
    assert.equal(options.cpu, 0.5);
    assert.equal(options.seconds, 5);
    assert.equal(options.clients, 64);
    assert.throws(() => parseScaleArgs(['--nodes', '3,x']), /--nodes must be a positive integer, got 'x'/);
    assert.throws(() => parseScaleArgs(['--cpu=-1']), /--cpu must be 0..64 cores/);
    assert.equal(parseScaleArgs(['--help']), 'help');
  });

  it('splits the key space into equal parts at key boundaries', () => {
    const points = splitKeys(new KeyFormat(8, 'k/'), 1000, 4).map(String);
    assert.deepEqual(points, ['k/000250', 'k/000500', 'k/000750']);
    assert.deepEqual(splitKeys(new KeyFormat(8, 'k/'), 1000, 1), []);
  });

  it('reports throughput relative to the first size and CPU per operation in ms', () => {
    const row = (nodes: number, opsPerSec: number): ScaleRow => ({
      nodes,
      shards: nodes,
      opsPerSec,
      p50Ms: 10,
      p99Ms: 40,
      errors: 0,
      busiestCpuPerOp: 0.0012,
      totalCpuPerOp: 0.003,
      quota: true,
    });
    const table = formatScaleTable([row(3, 1000), row(6, 1800)], true).split('\n');
    assert.equal(table.length, 4);
    assert.match(table[2]!, /^\| 3 \| 3 \| 1000 \| 1\.00x \| 10\.0 \| 40\.0 \| 1\.20 \| 3\.00 \| 0 \|$/);
    assert.match(table[3]!, /\| 1800 \| 1\.80x \|/);
  });
});
