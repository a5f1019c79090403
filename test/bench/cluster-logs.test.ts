// The bench harness's member bookkeeping: a member that exits unasked is recorded (a stop is not),
// and the member logs can be kept before the temp root is deleted. The "members" are node -e
// scripts that take the etcd flags as arguments and ignore them.

import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { BenchCluster, type MemberBinary } from '../../src/cli/bench/cluster.js';

const timing = { heartbeatMs: 50, electionMs: 500 };

function scriptBinary(label: string, script: string): MemberBinary {
  return { label, command: process.execPath, argsBefore: () => ['-e', script, '--'] };
}

async function waitFor(check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('bench cluster: member exits and logs', () => {
  it('records a member that exits unasked and keeps every member log', async () => {
    const root = mkdtempSync(join(tmpdir(), 'bench-logs-unit-'));
    const kept = mkdtempSync(join(tmpdir(), 'bench-logs-kept-'));
    try {
      const script = `const name = process.argv[process.argv.indexOf('--name') + 1];
console.log('member ' + name + ' started');
if (name === 'm1') { console.error('m1 gives up'); process.exit(3); }
setInterval(() => {}, 1000);`;
      const cluster = await BenchCluster.create(scriptBinary('fake member', script), root, 3, timing);
      cluster.startAll();
      await waitFor(() => cluster.unexpectedExits.length === 1);
      await cluster.stopAll();
      assert.equal(cluster.unexpectedExits.length, 1, 'the stopped members are not unexpected exits');
      assert.equal(cluster.unexpectedExits[0]!.member, 'm1');
      assert.equal(cluster.unexpectedExits[0]!.code, 3);
      const paths = cluster.keepLogs(kept);
      assert.deepEqual(
        paths.map((p) => p.slice(kept.length + 1)),
        ['fake-member-m0.log', 'fake-member-m1.log', 'fake-member-m2.log'],
      );
      assert.match(readFileSync(join(kept, 'fake-member-m1.log'), 'utf8'), /member m1 started\nm1 gives up/);
    } finally {
      rmSync(root, { recursive: true, force: true });
      rmSync(kept, { recursive: true, force: true });
    }
  });
});
