// etcdctl (etcd's own CLI, v3 API over gRPC) against the API server on a keyspace backend.
// Needs the etcdctl binary (Debian package etcd-client); without it the suite is skipped loudly.

import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type Harness, hostPort, startHarness } from './harness.js';

const etcdctlPath = ['/usr/bin/etcdctl', '/usr/local/bin/etcdctl'].find((p) => existsSync(p));
const commandTimeoutMs = 15_000;

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

describe('etcdctl against the API server', {
  skip: etcdctlPath === undefined ? 'etcdctl not installed (apt-get install etcd-client)' : false,
}, () => {
  let harness: Harness;
  let endpoint: string;
  let scratch: string;
  const children = new Set<ChildProcess>();

  const start = (args: string[]) => {
    const child = spawn(etcdctlPath!, ['--endpoints', endpoint, ...args], {
      env: { ...process.env, ETCDCTL_API: '3' },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    children.add(child);
    child.once('exit', () => children.delete(child));
    return child;
  };

  const run = (args: string[], stdin = ''): Promise<Result> =>
    new Promise((resolve, reject) => {
      const child = start(args);
      let stdout = '';
      let stderr = '';
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`etcdctl ${args.join(' ')} timed out; stderr: ${stderr}`));
      }, commandTimeoutMs);
      child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
      child.once('exit', (code) => {
        clearTimeout(timer);
        resolve({ code, stdout, stderr });
      });
      child.stdin!.end(stdin);
    });

  /** Runs a long-lived command until its stdout has `lines` lines, then stops it. */
  const firstLines = (args: string[], lines: number, whileRunning: () => Promise<void>): Promise<string[]> =>
    new Promise((resolve, reject) => {
      const child = start(args);
      let stdout = '';
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`etcdctl ${args.join(' ')} printed only: ${stdout}`));
      }, commandTimeoutMs);
      child.stdout!.on('data', (d: Buffer) => {
        stdout += d.toString();
        const got = stdout.split('\n').filter((l) => l !== '');
        if (got.length >= lines) {
          clearTimeout(timer);
          child.kill('SIGTERM');
          resolve(got.slice(0, lines));
        }
      });
      setTimeout(() => whileRunning().catch(reject), 300);
    });

  const ok = async (args: string[], stdin = '') => {
    const result = await run(args, stdin);
    assert.equal(result.code, 0, `etcdctl ${args.join(' ')} failed: ${result.stderr}`);
    return result.stdout;
  };

  before(async () => {
    harness = await startHarness({}, 'keyspace');
    endpoint = hostPort(harness.server);
    scratch = mkdtempSync(join(tmpdir(), 'concord-etcdctl-'));
  });

  after(async () => {
    for (const child of children) child.kill('SIGKILL');
    await harness.close();
    rmSync(scratch, { recursive: true, force: true });
  });

  it('put, get -w json and get --prefix', async () => {
    assert.equal((await ok(['put', 'ctl/a', 'one'])).trim(), 'OK');
    await ok(['put', 'ctl/b', 'two']);
    const json = JSON.parse(await ok(['get', 'ctl/a', '-w', 'json'])) as {
      kvs: Array<{ key: string; value: string; version: number }>;
    };
    assert.equal(Buffer.from(json.kvs[0]!.key, 'base64').toString(), 'ctl/a');
    assert.equal(Buffer.from(json.kvs[0]!.value, 'base64').toString(), 'one');
    assert.equal(json.kvs[0]!.version, 1);
    assert.equal(await ok(['get', 'ctl/', '--prefix']), 'ctl/a\none\nctl/b\ntwo\n');
    assert.equal((await ok(['del', 'ctl/', '--prefix'])).trim(), '2');
  });

  it('txn from stdin runs the branch the compare selects', async () => {
    await ok(['put', 'ctl/t', 'bar']);
    const out = await ok(
      ['txn', '-w', 'json'],
      'value("ctl/t") = "bar"\n\nput ctl/t baz\n\nput ctl/t nope\n\n',
    );
    assert.equal((JSON.parse(out) as { succeeded: boolean }).succeeded, true);
    assert.equal(await ok(['get', 'ctl/t', '--print-value-only']), 'baz\n');
  });

  it('lease grant, put --lease, timetolive --keys and revoke', async () => {
    const granted = await ok(['lease', 'grant', '60']);
    const id = /lease ([0-9a-f]+) granted with TTL\(60s\)/.exec(granted)?.[1];
    assert.ok(id, granted);
    await ok(['put', 'ctl/leased', 'v', '--lease', id]);
    assert.match(await ok(['lease', 'timetolive', id, '--keys']), /attached keys\(\[ctl\/leased\]\)/);
    assert.match(await ok(['lease', 'list']), new RegExp(id));
    assert.match(await ok(['lease', 'keep-alive', '--once', id]), /keepalived with TTL\(60\)/);
    await ok(['lease', 'revoke', id]);
    assert.equal(await ok(['get', 'ctl/leased']), '');
  });

  it('compaction, then a read below it fails with the compacted error', async () => {
    await ok(['put', 'ctl/c', '1']);
    const first = JSON.parse(await ok(['get', 'ctl/c', '-w', 'json'])) as { header: { revision: number } };
    await ok(['put', 'ctl/c', '2']);
    const revision = first.header.revision + 1;
    assert.match(await ok(['compaction', String(revision)]), new RegExp(`compacted revision ${revision}`));
    const old = await run(['get', 'ctl/c', `--rev=${first.header.revision}`]);
    assert.notEqual(old.code, 0);
    assert.match(old.stderr, /Error: etcdserver: mvcc: required revision has been compacted/);
  });

  it('refused requests print etcd messages: empty key, request too large', async () => {
    const empty = await run(['put', '', 'x']);
    assert.match(empty.stderr, /Error: etcdserver: key is not provided/);
    const big = await run(['put', 'ctl/big'], 'x'.repeat(1.5 * 1024 * 1024 + 10));
    assert.match(big.stderr, /Error: etcdserver: request is too large/);
  });

  it('member list, endpoint status and endpoint health', async () => {
    const members = JSON.parse(await ok(['member', 'list', '-w', 'json'])) as {
      members: Array<{ name: string }>;
    };
    assert.equal(members.members[0]!.name, 'n1');
    const status = JSON.parse(await ok(['endpoint', 'status', '-w', 'json'])) as Array<{
      Status: { version: string };
    }>;
    assert.equal(status[0]!.Status.version, '3.4.0');
    const health = await run(['endpoint', 'health']);
    assert.match(health.stdout + health.stderr, /is healthy/);
  });

  it('watch prints events as they happen', async () => {
    const lines = await firstLines(['watch', 'ctl/w'], 3, async () => {
      await ok(['put', 'ctl/w', 'seen']);
    });
    assert.deepEqual(lines, ['PUT', 'ctl/w', 'seen']);
  });

  it('watch --rev replays history, then follows', async () => {
    await ok(['put', 'ctl/h/1', 'a']);
    const rev = (JSON.parse(await ok(['get', 'ctl/h/1', '-w', 'json'])) as { header: { revision: number } })
      .header.revision;
    await ok(['put', 'ctl/h/2', 'b']);
    const lines = await firstLines(['watch', '--prefix', 'ctl/h/', `--rev=${rev}`], 8, async () => {
      await ok(['del', 'ctl/h/1']);
    });
    assert.deepEqual(lines, ['PUT', 'ctl/h/1', 'a', 'PUT', 'ctl/h/2', 'b', 'DELETE', 'ctl/h/1']);
  });

  it('member add reports the new member and refuses a duplicate peer URL', async () => {
    const added = await ok(['member', 'add', 'n2', '--peer-urls=http://127.0.0.1:2480']);
    assert.match(added, /Member\s+[0-9a-f]+ added to cluster [0-9a-f]+/);
    const again = await run(['member', 'add', 'n3', '--peer-urls=http://127.0.0.1:2480']);
    assert.match(again.stderr, /etcdserver: Peer URLs already exists/);
  });

  it('lock (client-side recipe: txn, watch, lease keep-alive) runs the command while held', async () => {
    assert.equal(await ok(['lock', 'ctl-lock', '--', 'echo', 'held']), 'held\n');
  });

  it('elect campaigns and prints the leader key and value', async () => {
    const lines = await firstLines(['elect', 'ctl-election', 'candidate-1'], 2, async () => {});
    assert.match(lines[0]!, /^ctl-election\/[0-9a-f]+$/);
    assert.equal(lines[1], 'candidate-1');
  });

  it('snapshot save receives the stream and verifies its sha256', async () => {
    const path = join(scratch, 'snap.db');
    const result = await run(['snapshot', 'save', path]);
    assert.equal(result.code, 0, result.stderr);
    // etcd keeps the trailing sha256 in the saved file: page-aligned data plus 32 bytes.
    assert.equal(statSync(path).size % 512, 32);
  });
});
