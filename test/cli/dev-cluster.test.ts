import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { basePort, splitNodeCount } from '../../src/cli/dev-cluster.js';

const devClusterJs = fileURLToPath(new URL('../../src/cli/dev-cluster.js', import.meta.url));

test('--nodes is taken out of the arguments; the rest go to every member', () => {
  assert.deepEqual(splitNodeCount([]), { nodes: 3, rest: [] });
  assert.deepEqual(splitNodeCount(['--nodes', '5', '--consensus', 'multi-paxos']), {
    nodes: 5,
    rest: ['--consensus', 'multi-paxos'],
  });
  assert.deepEqual(splitNodeCount(['--snapshot-count=10', '--nodes=1']), {
    nodes: 1,
    rest: ['--snapshot-count=10'],
  });
  for (const bad of ['0', '10', 'five', '', '2.5']) {
    assert.throws(() => splitNodeCount(['--nodes', bad]), /--nodes must be a whole number from 1 to 9/);
  }
});

test('the first three nodes use etcd’s local ports; the others get their own ranges', () => {
  assert.deepEqual([0, 1, 2, 3, 4, 8].map(basePort), [2379, 22379, 32379, 42379, 42479, 42879]);
});

interface Run {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

function startDevCluster(dataDir: string, args: string[]): Run {
  const child = spawn(process.execPath, [devClusterJs, ...args], {
    env: { ...process.env, CONCORD_DEV_DATA: dataDir },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let text = '';
  child.stdout!.on('data', (chunk: Buffer) => {
    text += chunk.toString();
  });
  child.stderr!.on('data', (chunk: Buffer) => {
    text += chunk.toString();
  });
  const exited = new Promise<number | null>((done) => child.once('exit', (code) => done(code)));
  return { child, output: () => text, exited };
}

async function waitForOutput(run: Run, pattern: RegExp, timeoutMs: number): Promise<RegExpMatchArray> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const match = run.output().match(pattern);
    if (match) return match;
    if (run.child.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`no ${pattern} in the dev cluster's output:\n${run.output()}`);
}

test('npm start -- --nodes 5 runs a 5-member cluster, stops it on SIGINT and keeps its data dir to that size', async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'concord-dev-'));
  const run = startDevCluster(dataDir, ['--nodes', '5']);
  try {
    await waitForOutput(run, /Concord 5-node cluster is up/, 90_000);
    const n1 = run.output().match(/n1: client (http:\/\/127\.0\.0\.1:\d+)/);
    assert.ok(n1, run.output());
    const response = await fetch(`${n1[1]}/v3/cluster/member/list`, { method: 'POST', body: '{}' });
    const body = (await response.json()) as { members: Array<{ name: string; clientURLs?: string[] }> };
    assert.deepEqual(body.members.map((m) => m.name).sort(), ['n1', 'n2', 'n3', 'n4', 'n5']);
    run.child.kill('SIGINT');
    assert.equal(await run.exited, 0);

    const wrongSize = startDevCluster(dataDir, ['--nodes', '3']);
    assert.equal(await wrongSize.exited, 2);
    assert.match(wrongSize.output(), /holds a 5-node cluster; start it with --nodes 5/);
  } finally {
    if (run.child.exitCode === null) {
      run.child.kill('SIGINT');
      await run.exited;
    }
    rmSync(dataDir, { recursive: true, force: true });
  }
});
