// concordctl smoke tests: every command once against a 1-node cluster, output checked against
// etcdctl's formats.

import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { etcdctlOk } from '../support/etcdctl.js';
import type { ProcessCluster } from '../support/process-cluster.js';
import { startCluster, waitUntil } from './support.js';

const script = fileURLToPath(new URL('../../src/cli/concordctl.js', import.meta.url));
const runTimeoutMs = 20_000;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

describe('concordctl against a 1-node cluster', { timeout: 360_000 }, () => {
  let cluster: ProcessCluster;
  let endpoint: string;
  let scratch: string;
  const running: ChildProcess[] = [];

  const start = (args: string[]): { child: ChildProcess; output: () => string } => {
    const child = spawn(process.execPath, [script, `--endpoints=${endpoint}`, ...args], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    running.push(child);
    let out = '';
    child.stdout?.on('data', (chunk: Buffer) => {
      out += chunk.toString();
    });
    return { child, output: () => out };
  };

  const run = (args: string[], stdin = ''): Promise<Run> => {
    const child = spawn(process.execPath, [script, `--endpoints=${endpoint}`, ...args], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
    });
    child.stderr?.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    child.stdin?.end(stdin);
    return new Promise((resolve) => {
      const timer = setTimeout(() => child.kill('SIGKILL'), runTimeoutMs);
      child.once('close', (code) => {
        clearTimeout(timer);
        resolve({ code, stdout, stderr });
      });
    });
  };

  const ok = async (args: string[], stdin = ''): Promise<string> => {
    const result = await run(args, stdin);
    assert.equal(result.code, 0, `concordctl ${args.join(' ')}: ${result.stderr}${result.stdout}`);
    return result.stdout;
  };

  const stopGracefully = async (child: ChildProcess): Promise<number | null> => {
    if (child.exitCode !== null) return child.exitCode;
    const closed = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
    child.kill('SIGINT');
    return closed;
  };

  before(async () => {
    cluster = await startCluster({ size: 1 });
    endpoint = cluster.endpoint(0);
    scratch = await mkdtemp(join(tmpdir(), 'concordctl-test-'));
  });

  after(async () => {
    for (const child of running)
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await cluster?.dispose();
    if (scratch !== undefined) await rm(scratch, { recursive: true, force: true });
  });

  test('put, get (simple, json, flags) and del print what etcdctl prints', async () => {
    assert.equal(await ok(['put', 'foo', 'bar']), 'OK\n');
    assert.equal(await ok(['put', 'foo2', 'baz']), 'OK\n');
    assert.equal(await ok(['get', 'foo']), 'foo\nbar\n');
    assert.equal(
      await ok(['get', 'foo', '--prefix', '--keys-only']),
      'foo\n\nfoo2\n\n',
      'etcdctl prints an empty value line',
    );
    assert.equal(await ok(['get', 'foo', '--prefix', '--print-value-only']), 'bar\nbaz\n');
    assert.equal(
      await ok(['get', 'foo', '--prefix', '--count-only', '-w', 'json']).then((t) => JSON.parse(t).count),
      2,
    );
    const json = JSON.parse(await ok(['get', 'foo', '-w', 'json']));
    assert.equal(Buffer.from(json.kvs[0].key, 'base64').toString(), 'foo');
    assert.equal(Buffer.from(json.kvs[0].value, 'base64').toString(), 'bar');
    assert.equal(typeof json.header.revision, 'number');
    assert.equal(await ok(['put', 'foo', 'new', '--prev-kv']), 'OK\nfoo\nbar\n');
    assert.equal(
      await ok(['get', 'foo', '--prefix', '--sort-by=VALUE', '--order=DESCEND', '--print-value-only']),
      'new\nbaz\n',
    );
    assert.equal(await ok(['put', 'stdin-key'], 'from stdin'), 'OK\n');
    assert.equal(await ok(['get', 'stdin-key', '--print-value-only']), 'from stdin\n');
    assert.equal(await ok(['del', 'foo', '--prefix']), '2\n');
    assert.equal(await ok(['get', 'foo']), '');
  });

  test('txn reads compares and both branches from stdin', async () => {
    await ok(['put', 'tx', '1']);
    const input = 'val("tx") = "1"\nmod("tx") > "0"\n\nput tx 2\nget tx\n\nput tx failed\n';
    assert.equal(await ok(['txn'], input), 'SUCCESS\n\nOK\n\ntx\n2\n');
    assert.equal(await ok(['txn'], input), 'FAILURE\n\nOK\n');
    assert.equal(await ok(['get', 'tx', '--print-value-only']), 'failed\n');
  });

  test('watch prints PUT/DELETE events until interrupted', async () => {
    const watcher = start(['watch', 'w/', '--prefix']);
    await waitUntil('watch to start', 10_000, async () => {
      await ok(['put', 'w/probe', 'p']);
      return watcher.output().includes('w/probe');
    });
    await ok(['put', 'w/a', '1']);
    await ok(['del', 'w/a']);
    await waitUntil('events', 10_000, () => watcher.output().includes('DELETE\nw/a\n'));
    assert.match(watcher.output(), /PUT\nw\/a\n1\nDELETE\nw\/a\n\n/);
    assert.equal(await stopGracefully(watcher.child), 0);
  });

  test('lease grant, timetolive, list, keep-alive --once and revoke', async () => {
    const granted = await ok(['lease', 'grant', '100']);
    const match = /^lease ([0-9a-f]+) granted with TTL\(100s\)\n$/.exec(granted);
    assert.ok(match, granted);
    const id = match[1] as string;
    await ok(['put', 'leased', 'v', `--lease=${id}`]);
    assert.match(
      await ok(['lease', 'timetolive', id, '--keys']),
      new RegExp(
        `^lease ${id} granted with TTL\\(100s\\), remaining\\(\\d+s\\), attached keys\\(\\[leased\\]\\)\\n$`,
      ),
    );
    assert.match(await ok(['lease', 'list']), new RegExp(`^found 1 leases\\n${id}\\n$`));
    assert.equal(await ok(['lease', 'keep-alive', '--once', id]), `lease ${id} keepalived with TTL(100)\n`);
    assert.equal(await ok(['lease', 'revoke', id]), `lease ${id} revoked\n`);
    assert.equal(await ok(['lease', 'timetolive', id]), `lease ${id} already expired\n`);
    assert.equal(await ok(['get', 'leased']), '');
  });

  test('lock and elect print the key (and proposal) and release on interrupt', async () => {
    const locker = start(['lock', 'ctl-lock']);
    await waitUntil('lock', 10_000, () => /^ctl-lock\/[0-9a-f]+\n$/.test(locker.output()));
    assert.equal(await stopGracefully(locker.child), 0);
    assert.equal(await ok(['get', 'ctl-lock/', '--prefix', '--keys-only']), '', 'unlocked on exit');
    const candidate = start(['elect', 'ctl-elect', 'me']);
    await waitUntil('elected', 10_000, () => /^ctl-elect\/[0-9a-f]+\nme\n$/.test(candidate.output()));
    assert.equal(await stopGracefully(candidate.child), 0);
    const withCommand = await ok(['lock', 'ctl-lock', '--', 'sh', '-c', 'echo "held $ETCD_LOCK_KEY"']);
    assert.match(withCommand, /^held ctl-lock\/[0-9a-f]+\n$/);
  });

  test('member list (simple, json, table), add/update/remove a learner, promote refused', async () => {
    const simple = await ok(['member', 'list']);
    assert.match(
      simple,
      /^[0-9a-f]+, started, m0, http:\/\/127\.0\.0\.1:\d+, http:\/\/127\.0\.0\.1:\d+, false\n$/,
    );
    const json = JSON.parse(await ok(['member', 'list', '-w', 'json']));
    assert.equal(json.members.length, 1);
    assert.equal(json.members[0].name, 'm0');
    const table = await ok(['member', 'list', '-w', 'table']);
    assert.match(
      table,
      /\|\s+ID\s+\|\s+STATUS\s+\|\s+NAME\s+\|\s+PEER ADDRS\s+\|\s+CLIENT ADDRS\s+\|\s+IS LEARNER\s+\|/,
    );
    const added = await ok(['member', 'add', 'm9', '--peer-urls=http://127.0.0.1:1', '--learner']);
    const addedId = /^Member ([0-9a-f]{16}) added as learner to cluster [0-9a-f]{16}\n/.exec(added)?.[1];
    assert.ok(addedId, added);
    assert.match(
      added,
      /ETCD_NAME="m9"\nETCD_INITIAL_CLUSTER="[^"]+"\nETCD_INITIAL_ADVERTISE_PEER_URLS="http:\/\/127\.0\.0\.1:1"\nETCD_INITIAL_CLUSTER_STATE="existing"\n$/,
    );
    const initialCluster = /ETCD_INITIAL_CLUSTER="([^"]+)"/.exec(added)?.[1]?.split(',').sort();
    assert.equal(initialCluster?.length, 2);
    assert.match(initialCluster?.[0] ?? '', /^m0=http:\/\/127\.0\.0\.1:\d+$/);
    assert.equal(initialCluster?.[1], 'm9=http://127.0.0.1:1');
    assert.match(await ok(['member', 'list']), /unstarted, , http:\/\/127\.0\.0\.1:1, , true/);
    assert.match(
      await ok(['member', 'update', addedId, '--peer-urls=http://127.0.0.1:2']),
      /^Member [0-9a-f]{16} updated in cluster [0-9a-f]{16}\n$/,
    );
    const promote = await run(['member', 'promote', addedId]);
    assert.equal(promote.code, 1);
    assert.match(
      promote.stderr,
      /^Error: etcdserver: can only promote a learner member which is in sync with leader\n$/,
    );
    assert.match(
      await ok(['member', 'remove', addedId]),
      /^Member [0-9a-f]{16} removed from cluster [0-9a-f]{16}\n$/,
    );
  });

  test('endpoint status, health and hashkv in all formats', async () => {
    const status = await ok(['endpoint', 'status']);
    assert.match(
      status,
      new RegExp(
        `^${endpoint}, [0-9a-f]+, [\\d.]+, \\d+(\\.\\d)? [kMG]?B, true, false, \\d+, \\d+, \\d+, \\n$`,
      ),
    );
    const statusJson = JSON.parse(await ok(['endpoint', 'status', '-w', 'json']));
    assert.equal(statusJson[0].Endpoint, endpoint);
    assert.equal(statusJson[0].Status.leader, statusJson[0].Status.header.member_id);
    assert.match(
      await ok(['endpoint', 'status', '-w', 'table']),
      /\|\s+ENDPOINT\s+\|\s+ID\s+\|\s+VERSION\s+\|\s+DB SIZE\s+\|\s+IS LEADER\s+\|/,
    );
    assert.match(
      await ok(['endpoint', 'health']),
      new RegExp(`^${endpoint} is healthy: successfully committed proposal: took = [\\d.]+ms\\n$`),
    );
    assert.equal(JSON.parse(await ok(['endpoint', 'health', '-w', 'json']))[0].health, true);
    assert.match(await ok(['endpoint', 'hashkv']), new RegExp(`^${endpoint}, \\d+\\n$`));
    const unreachable = await run([
      '--endpoints=127.0.0.1:1',
      '--dial-timeout=300ms',
      '--command-timeout=1s',
      'endpoint',
      'health',
    ]);
    assert.equal(unreachable.code, 1);
    assert.match(unreachable.stderr, /127\.0\.0\.1:1 is unhealthy: failed to commit proposal/);
  });

  test('snapshot save writes a verified file and snapshot status reads it as etcdctl does', async () => {
    await ok(['put', 'snap/k', 'v']);
    const path = join(scratch, 'snap.db');
    assert.equal(await ok(['snapshot', 'save', path]), `Snapshot saved at ${path}\n`);
    assert.ok((await stat(path)).size > 0);
    // Both servers stream etcd's format (a bbolt file), which etcdctl reads too.
    const status = await ok(['snapshot', 'status', path]);
    assert.match(status, /^[0-9a-f]+, \d+, \d+, \d+(\.\d)? [kMG]?B\n$/);
    for (const format of ['simple', 'json', 'table'])
      assert.equal(
        await ok(['snapshot', 'status', path, '-w', format]),
        await etcdctlOk(['snapshot', 'status', path, '-w', format], { endpoints: [] }),
      );
    const json = JSON.parse(await ok(['snapshot', 'status', path, '-w', 'json']));
    assert.ok(json.revision > 0 && json.totalKey > 0 && json.totalSize > 0, JSON.stringify(json));
  });

  test('compaction, defrag, alarm list/disarm, move-leader', async () => {
    const put = JSON.parse(await ok(['put', 'c', '1', '-w', 'json']));
    const revision = put.header.revision as number;
    assert.equal(await ok(['compaction', String(revision)]), `compacted revision ${revision}\n`);
    const again = await run(['compaction', String(revision)]);
    assert.equal(again.code, 1);
    assert.equal(again.stderr, 'Error: etcdserver: mvcc: required revision has been compacted\n');
    assert.equal(await ok(['defrag']), `Finished defragmenting etcd member[${endpoint}]\n`);
    assert.equal(await ok(['alarm', 'list']), '');
    assert.equal(await ok(['alarm', 'disarm']), '');
    // The member's ID from the simple output (JSON numbers would lose 64-bit precision).
    const selfHex = /^([0-9a-f]+), /.exec(
      await ok(['endpoint', 'status']).then((t) => t.split(', ').slice(1).join(', ')),
    )?.[1];
    assert.ok(selfHex !== undefined);
    assert.equal(
      await ok(['move-leader', selfHex]),
      `Leadership transferred from ${selfHex} to ${selfHex}\n`,
    );
  });

  test('counter incr prints the new value; check perf gives a verdict; bad usage exits 128', async () => {
    assert.equal(await ok(['counter', 'incr', 'ctr']), '1\n');
    assert.equal(await ok(['counter', 'incr', 'ctr', '--by', '41']), '42\n');
    const perf = await run(['check', 'perf', '--duration', '2s']);
    assert.match(
      perf.stdout,
      /^(PASS|FAIL): Throughput is \d+ writes\/s\n(PASS|FAIL): Slowest request took [\d.]+s\n(PASS|FAIL): Stddev is [\d.]+s\n(PASS|FAIL): 0 requests failed\n(PASS|FAIL)\n$/,
    );
    assert.equal(perf.code, perf.stdout.endsWith('\nPASS\n') ? 0 : 1);
    assert.equal(
      await ok(['get', '/concordctl-check-perf/', '--prefix', '--count-only', '-w', 'json']).then(
        (t) => JSON.parse(t).count ?? 0,
      ),
      0,
      'scratch keys removed',
    );
    const bad = await run(['get']);
    assert.equal(bad.code, 128);
    assert.match(bad.stderr, /^Error: get command needs one key argument/);
    const unknown = await run(['frobnicate']);
    assert.equal(unknown.code, 128);
  });
});
