// Migrations by snapshot between Concord and real etcd 3.4, both ways, as a user would run them:
//   Concord → etcd: `etcdctl snapshot save` against Concord, `etcdctl snapshot status` and
//     `etcdctl snapshot restore`, a real etcd started on the restored dir;
//   etcd → Concord: `etcdctl snapshot save` against etcd, `concordctl snapshot status` (same
//     output as etcdctl's) and `concordctl snapshot restore` for each member of a 3-member
//     Concord cluster.
// Each time the new cluster must serve what the old one did: every key's full KeyValue (create
// and mod revision, version, lease), the header revision, a read at an older revision, the
// compaction point (a read below it is compacted), the leases with their TTLs and keys, and the
// next write's revision.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { concordBinary, startConcordCluster } from '../support/cluster.js';
import { runConcordctl as concordctl } from '../support/concordctl.js';
import { etcdAvailable, startEtcdCluster } from '../support/etcd-cluster.js';
import { etcdctl, etcdctlOk } from '../support/etcdctl.js';
import {
  freePort,
  gatewayPost,
  type ProcessCluster,
  pollUntil,
  restoreFlags,
  type StartPlan,
} from '../support/process-cluster.js';

/** etcdctl's JSON with every long number as a string: lease IDs do not fit a double. */
function parseJson(text: string): Record<string, unknown> {
  return JSON.parse(text.replace(/([:[,])\s*(-?\d{16,})/g, '$1"$2"')) as Record<string, unknown>;
}

interface Loaded {
  /** A revision between the compaction point and the end. */
  olderRevision: number;
  compactRevision: number;
  finalRevision: number;
}

/**
 * Slow elections and a patient start: the machine running the tests may be loaded, and a write
 * refused for want of a leader would fail the load.
 */
const timing = { heartbeatIntervalMs: 100, electionTimeoutMs: 2000, startTimeoutMs: 120_000 };

/** etcdctl that tries again when a write was refused before it was proposed (no leader yet). */
async function etcdctlRetrying(args: string[], endpoints: string[], stdin?: string): Promise<string> {
  for (let attempt = 1; ; attempt++) {
    const result = await etcdctl(args, { endpoints, stdin });
    if (result.code === 0) return result.stdout;
    if (attempt >= 5 || !/etcdserver: (no leader|leader changed)/.test(result.stderr))
      throw new Error(
        `etcdctl ${args.join(' ')} failed (code ${result.code}):\n${result.stderr}${result.stdout}`,
      );
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

/** Keys put through the JSON gateway, enough that the key bucket needs branch pages (~1 MB). */
const BULK_KEYS = 3000;
const BULK_CONCURRENCY = 16;

async function bulkPut(endpoint: string, prefix: string): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < BULK_KEYS) {
      const i = next++;
      const key = Buffer.from(`${prefix}${String(i).padStart(5, '0')}`).toString('base64');
      const value = Buffer.from(`${i}:`.padEnd(300, 'v')).toString('base64');
      await pollUntil(`bulk put ${i}`, 20_000, () =>
        gatewayPost(endpoint, '/v3/kv/put', { key, value }, 5000),
      );
    }
  };
  await Promise.all(Array.from({ length: BULK_CONCURRENCY }, worker));
}

/**
 * The same history on either system: overwrites, deletes, a multi-op txn, leases, a compaction,
 * and a few thousand keys (some of them overwritten after the compaction point).
 */
async function load(endpoints: string[]): Promise<Loaded> {
  const run = (...args: string[]) => etcdctlRetrying(args, endpoints);
  await bulkPut(endpoints[0]!, 'bulk/');
  const revision = async () =>
    Number((parseJson(await run('get', 'k1', '-w', 'json')).header as { revision: unknown }).revision);
  await run('put', 'k1', 'v1');
  await run('put', 'k2', 'v2');
  await run('put', 'k1', 'v1b');
  await run('put', 'k3', 'v3');
  await run('del', 'k2');
  const lease1 = /lease ([0-9a-f]+) granted/.exec(await run('lease', 'grant', '600'))![1]!;
  const lease2 = /lease ([0-9a-f]+) granted/.exec(await run('lease', 'grant', '900'))![1]!;
  await run('put', '--lease', lease1, 'leased/a', 'x');
  await run('put', '--lease', lease1, 'leased/b', 'y');
  await run('put', '--lease', lease2, 'leased/c', 'z');
  await run('put', '--lease', lease1, 'leased/c', 'z2');
  await etcdctlRetrying(['txn'], endpoints, '\nput t/1 a\nput t/2 b\ndel k3\n\n\n');
  const compactRevision = await revision();
  await run('put', 'k1', 'v1c');
  await run('put', 'big', 'B'.repeat(20_000));
  const olderRevision = await revision();
  await run('compaction', String(compactRevision));
  await run('del', '--prefix', 't/');
  await run('put', 'k4', 'after the compaction');
  await etcdctlRetrying(['del', '--prefix', 'bulk/01'], endpoints);
  await run('put', 'big', 'C'.repeat(9_000));
  return { olderRevision, compactRevision, finalRevision: await revision() };
}

async function kvs(endpoints: string[], revision?: number): Promise<unknown> {
  const args = ['get', '', '--from-key', '-w', 'json'];
  if (revision !== undefined) args.push(`--rev=${revision}`);
  const got = parseJson(await etcdctlOk(args, { endpoints }));
  return { revision: (got.header as { revision: unknown }).revision, kvs: got.kvs };
}

async function leases(endpoints: string[]): Promise<unknown> {
  const ids = (await etcdctlOk(['lease', 'list'], { endpoints }))
    .split('\n')
    .slice(1)
    .filter((l) => l !== '')
    .sort();
  const out = [];
  for (const id of ids) {
    const ttl = parseJson(
      await etcdctlOk(['lease', 'timetolive', id, '--keys', '-w', 'json'], { endpoints }),
    );
    // A new leader extends every lease by its election timeout (etcd's Promote(extend)), so for
    // that long after an election the time left can pass the granted TTL.
    const grantedTtl = Number(ttl['granted-ttl']);
    assert.ok(
      Number(ttl.ttl) > 0 && Number(ttl.ttl) <= grantedTtl + timing.electionTimeoutMs / 1000,
      `lease ${id} is alive: ${JSON.stringify(ttl)}`,
    );
    out.push({
      id,
      grantedTtl: ttl['granted-ttl'],
      keys: ((ttl.keys ?? []) as string[]).map((k) => Buffer.from(k, 'base64').toString()).sort(),
    });
  }
  return out;
}

/** Everything a client can read back from `a` equals what it reads from `b`. */
async function assertSameData(a: string[], b: string[], loaded: Loaded): Promise<void> {
  const now = await kvs(a);
  assert.deepEqual(await kvs(b), now, 'every key with its revisions, version and lease; the header revision');
  assert.equal(Number((now as { revision: unknown }).revision), loaded.finalRevision);
  assert.deepEqual(
    await kvs(b, loaded.olderRevision),
    await kvs(a, loaded.olderRevision),
    'a read at an older revision',
  );
  assert.deepEqual(
    await kvs(b, loaded.compactRevision),
    await kvs(a, loaded.compactRevision),
    'a read at the compaction point',
  );
  for (const endpoints of [a, b]) {
    const below = await etcdctl(['get', 'k1', `--rev=${loaded.compactRevision - 1}`], { endpoints });
    assert.notEqual(below.code, 0);
    assert.match(below.stderr, /required revision has been compacted/);
  }
  const leasesA = await leases(a);
  assert.equal((leasesA as unknown[]).length, 2);
  assert.deepEqual(await leases(b), leasesA, 'leases, their granted TTLs and keys');
}

async function snapshotStatus(tool: 'etcdctl' | 'concordctl', file: string, format: string): Promise<string> {
  if (tool === 'etcdctl') return etcdctlOk(['snapshot', 'status', file, '-w', format], { endpoints: [] });
  const result = await concordctl(['snapshot', 'status', file, '-w', format]);
  assert.equal(result.code, 0, result.stderr);
  return result.stdout;
}

describe('snapshot migrations between Concord and etcd 3.4', {
  skip: !etcdAvailable(),
  timeout: 600_000,
}, () => {
  let scratch: string;
  const clusters: ProcessCluster[] = [];
  before(async () => {
    scratch = await mkdtemp(join(tmpdir(), 'etcd-snapshot-e2e-'));
  });
  after(async () => {
    for (const cluster of clusters) await cluster.dispose();
    await rm(scratch, { recursive: true, force: true });
  });

  it('Concord → etcd: etcdctl saves, checks and restores a Concord snapshot; etcd serves the same data', async () => {
    const concord = await startConcordCluster({ size: 3, ...timing });
    clusters.push(concord);
    await concord.withLogsOnFailure(async () => {
      const endpoints = concord.endpoints();
      const loaded = await load(endpoints);
      const file = join(scratch, 'from-concord.db');
      await etcdctlOk(['snapshot', 'save', file], { endpoints: [concord.endpoint(1)] });

      const status = parseJson(await snapshotStatus('etcdctl', file, 'json'));
      assert.equal(Number(status.revision), loaded.finalRevision);
      assert.ok(Number(status.totalKey) > 10);
      for (const format of ['json', 'table', 'simple'])
        assert.equal(
          await snapshotStatus('concordctl', file, format),
          await snapshotStatus('etcdctl', file, format),
        );

      const etcd = await startEtcdCluster({
        size: 1,
        ...timing,
        beforeStart: async (plan: StartPlan) => {
          await etcdctlOk(['snapshot', 'restore', file, ...restoreFlags(plan)], { endpoints: [] });
        },
      });
      clusters.push(etcd);
      await etcd.withLogsOnFailure(async () => {
        await assertSameData(endpoints, etcd.endpoints(), loaded);
        const put = parseJson(
          await etcdctlOk(['put', 'new', '1', '-w', 'json'], { endpoints: etcd.endpoints() }),
        );
        assert.equal(Number((put.header as { revision: unknown }).revision), loaded.finalRevision + 1);
      });
    });
  });

  it('etcd → Concord: concordctl checks and restores an etcd snapshot into 3 members that serve the same data', async () => {
    const etcd = await startEtcdCluster({ size: 1, ...timing });
    clusters.push(etcd);
    const loaded = await load(etcd.endpoints());
    const file = join(scratch, 'from-etcd.db');
    await etcdctlOk(['snapshot', 'save', file], { endpoints: etcd.endpoints() });
    for (const format of ['json', 'table', 'simple'])
      assert.equal(
        await snapshotStatus('concordctl', file, format),
        await snapshotStatus('etcdctl', file, format),
      );

    // Restored with a token of its own: the members must take their IDs from the restore, not
    // from the --initial-cluster-token the harness starts them with.
    const restoredIds = new Map<string, string>();
    const concord = await startConcordCluster({
      size: 3,
      ...timing,
      beforeStart: async (plan: StartPlan) => {
        for (const m of plan.members) {
          const restored = await concordctl([
            'snapshot',
            'restore',
            file,
            '--name',
            m.name,
            '--data-dir',
            m.dataDir,
            '--initial-cluster',
            plan.initialCluster,
            '--initial-cluster-token',
            'restored-token',
            '--initial-advertise-peer-urls',
            m.peerUrl,
          ]);
          assert.equal(restored.code, 0, restored.stderr + restored.stdout);
          restoredIds.set(m.name, /\(member ([0-9a-f]+);/.exec(restored.stdout)![1]!);
        }
      },
    });
    clusters.push(concord);
    await concord.withLogsOnFailure(async () => {
      const members = (await etcdctlOk(['member', 'list'], { endpoints: concord.endpoints() }))
        .trim()
        .split('\n');
      assert.deepEqual(
        members
          .map((line) => line.split(', '))
          .map(([id, , name]) => `${name}=${id}`)
          .sort(),
        [...restoredIds].map(([name, id]) => `${name}=${id}`).sort(),
        'the membership the restore fixed',
      );
      await assertSameData(etcd.endpoints(), concord.endpoints(), loaded);
      for (let i = 0; i < 3; i++) {
        const serial = parseJson(
          await etcdctlOk(['get', 'k1', '--consistency=s', '-w', 'json'], {
            endpoints: [concord.endpoint(i)],
          }),
        );
        assert.equal(
          Number((serial.header as { revision: unknown }).revision),
          loaded.finalRevision,
          `member ${i} has it all`,
        );
      }
      const put = parseJson(
        await etcdctlOk(['put', 'new', '1', '-w', 'json'], { endpoints: concord.endpoints() }),
      );
      assert.equal(Number((put.header as { revision: unknown }).revision), loaded.finalRevision + 1);
    });

    // A damaged snapshot is refused by both tools and leaves no data dir behind.
    const damaged = join(scratch, 'damaged.db');
    const bytes = readFileSync(file);
    bytes[bytes.length - 100] = (bytes[bytes.length - 100]! + 1) & 0xff;
    writeFileSync(damaged, bytes);
    const theirs = await etcdctl(
      ['snapshot', 'restore', damaged, '--data-dir', join(scratch, 'etcd-damaged')],
      { endpoints: [] },
    );
    assert.notEqual(theirs.code, 0);
    const ours = await concordctl([
      'snapshot',
      'restore',
      damaged,
      '--data-dir',
      join(scratch, 'concord-damaged'),
    ]);
    assert.notEqual(ours.code, 0);
    assert.match(ours.stderr, /sha256 mismatch/);

    // `concord` pointed at a dir that `etcdctl snapshot restore` made refuses it and says what to do.
    const etcdDir = join(scratch, 'etcd-restored');
    await etcdctlOk(['snapshot', 'restore', file, '--data-dir', etcdDir], { endpoints: [] });
    const binary = concordBinary();
    const port = await freePort();
    const peerPort = await freePort();
    const refused = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const child = spawn(
        binary.command,
        [
          ...binary.argsBefore,
          '--data-dir',
          etcdDir,
          '--listen-client-urls',
          `http://127.0.0.1:${port}`,
          '--listen-peer-urls',
          `http://127.0.0.1:${peerPort}`,
        ],
        { stdio: ['ignore', 'ignore', 'pipe'] },
      );
      let stderr = '';
      child.stderr.on('data', (d) => (stderr += d));
      const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
      child.on('exit', (code) => {
        clearTimeout(timer);
        resolve({ code, stderr });
      });
    });
    assert.equal(refused.code, 1, refused.stderr);
    assert.match(refused.stderr, /holds an etcd member/);
    assert.match(refused.stderr, /concordctl snapshot restore/);
  });
});
