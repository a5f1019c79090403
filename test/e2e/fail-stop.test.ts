// Real `concord` processes whose storage fails: a member whose disk fills up, and a leader whose
// background snapshot cannot be written. The rule both defend: a member that cannot persist stops
// (it exits non-zero with the cause, so a supervisor sees it), the others elect a leader and keep
// serving, and once the disk is fixed the member rejoins and catches up (HashKV equal).

import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { concordBinary, type ProcessCluster, startConcordCluster } from '../support/cluster.js';
import { b64, fromB64 } from '../support/load.js';
import { freePort, gatewayPost, memberStatus, pollUntil } from '../support/process-cluster.js';

const heartbeatIntervalMs = 50;
const electionTimeoutMs = 500;
/** sysexits.h EX_IOERR: what `concord` exits with after a fatal storage error. */
const EXIT_STORAGE_FAILED = 74;

/** Waits for the member's process to exit by itself; returns its exit code. */
async function waitForExit(
  cluster: ProcessCluster,
  index: number,
  timeoutMs: number,
): Promise<number | null> {
  const member = cluster.member(index);
  await pollUntil(`${member.name} to exit by itself`, timeoutMs, async () =>
    member.child === undefined ? true : undefined,
  );
  return member.exitCode;
}

/** Asks the current leader to hand leadership to `target` and waits until it has it. */
async function moveLeaderTo(cluster: ProcessCluster, target: number): Promise<void> {
  const leader = await cluster.leaderIndex();
  if (leader === target) return;
  await gatewayPost(
    cluster.endpoint(leader),
    '/v3/maintenance/transfer-leadership',
    { targetID: cluster.member(target).memberId },
    10_000,
  );
  await pollUntil(`${cluster.member(target).name} to lead`, 10_000, async () =>
    (await cluster.leaderIndex()) === target ? true : undefined,
  );
}

/** Puts from `writers` concurrent clients to one member until it stops answering; returns what was acknowledged. */
async function writeUntilDown(
  cluster: ProcessCluster,
  index: number,
  options: { writers: number; valueBytes: number; prefix: string; timeoutMs: number },
): Promise<Map<string, string>> {
  const acked = new Map<string, string>();
  const deadline = Date.now() + options.timeoutMs;
  const endpoint = cluster.endpoint(index);
  let next = 0;
  const writer = async () => {
    while (cluster.member(index).child !== undefined && Date.now() < deadline) {
      const key = `${options.prefix}${String(next++).padStart(6, '0')}`;
      const value = `${key}:${'x'.repeat(options.valueBytes)}`;
      try {
        await gatewayPost(endpoint, '/v3/kv/put', { key: b64(key), value: b64(value) }, 5000);
        acked.set(key, value);
      } catch {
        // refused or unanswered: the member is failing; the loop ends once it exited
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    }
  };
  await Promise.all(Array.from({ length: options.writers }, writer));
  return acked;
}

/** Waits until every running member serves the same HashKV at the leader's current revision. */
async function waitHashKvEqual(cluster: ProcessCluster, timeoutMs: number): Promise<number> {
  const leader = await cluster.leaderIndex();
  const revision = Number((await memberStatus(cluster.endpoint(leader))).revision);
  return pollUntil(`equal HashKV at revision ${revision} on every member`, timeoutMs, async () => {
    const hashes = new Set<string>();
    for (const index of cluster.runningIndexes()) {
      const answer = await gatewayPost(cluster.endpoint(index), '/v3/maintenance/hashkv', { revision }, 5000);
      hashes.add(String(answer.hash));
    }
    return hashes.size === 1 ? revision : undefined;
  });
}

/** Every key/value under `prefix` on one member (serializable), read in pages of `pageKeys`. */
async function readAll(endpoint: string, prefix: string, pageKeys = 64): Promise<Map<string, string>> {
  const end = Buffer.from(prefix);
  end[end.length - 1] = end[end.length - 1]! + 1;
  const found = new Map<string, string>();
  let from = Buffer.from(prefix);
  for (;;) {
    const page = await gatewayPost(
      endpoint,
      '/v3/kv/range',
      {
        key: from.toString('base64'),
        range_end: end.toString('base64'),
        limit: pageKeys,
        serializable: true,
      },
      30_000,
    );
    const kvs = (page.kvs ?? []) as Array<{ key: string; value?: string }>;
    for (const kv of kvs) found.set(fromB64(kv.key), fromB64(kv.value));
    const last = kvs.at(-1);
    if (page.more !== true || last === undefined) return found;
    from = Buffer.concat([Buffer.from(last.key, 'base64'), Buffer.of(0)]);
  }
}

function assertAllPresent(acked: Map<string, string>, found: Map<string, string>, what: string): void {
  const missing = [...acked].filter(([key, value]) => found.get(key) !== value).map(([key]) => key);
  assert.equal(missing.length, 0, `${what}: acknowledged writes missing: ${missing.slice(0, 5).join(', ')}`);
}

describe('fail-stop: a leader whose disk fills up', { timeout: 240_000 }, () => {
  let mountDir: string | undefined;
  let mounted = false;
  let mountError = '';
  let cluster: ProcessCluster | undefined;
  const unmount = () => {
    if (!mounted || mountDir === undefined) return;
    try {
      execFileSync('umount', [mountDir], { stdio: 'pipe' });
    } catch {
      execFileSync('umount', ['-l', mountDir], { stdio: 'pipe' });
    }
    mounted = false;
  };
  // A runner that dies before after() must not leave the mount behind either.
  const onExit = () => unmount();
  before(() => {
    mountDir = mkdtempSync(join(tmpdir(), 'concord-diskfull-'));
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=40m', 'tmpfs', mountDir], { stdio: 'pipe' });
      mounted = true;
      process.on('exit', onExit);
    } catch (error) {
      mountError = String((error as { stderr?: Buffer }).stderr ?? error).trim();
    }
  });
  after(async () => {
    await cluster?.dispose();
    if (mountDir === undefined) return;
    unmount();
    process.off('exit', onExit);
    rmdirSync(mountDir);
  });

  it('exits non-zero naming the cause; the others elect a leader and serve; with space again it rejoins and catches up', async (t: TestContext) => {
    if (!mounted) {
      t.skip(`cannot mount a small tmpfs for the data dir (needs root): ${mountError}`);
      return;
    }
    const dataDir = join(mountDir!, 'm0');
    cluster = await startConcordCluster({
      size: 3,
      heartbeatIntervalMs,
      electionTimeoutMs,
      dataDirs: [dataDir],
    });
    const c = cluster;
    await c.withLogsOnFailure(async () => {
      await moveLeaderTo(c, 0);
      const acked = await writeUntilDown(c, 0, {
        writers: 4,
        valueBytes: 32 * 1024,
        prefix: 'fill/',
        timeoutMs: 90_000,
      });
      const code = await waitForExit(c, 0, 30_000);
      t.diagnostic(`${acked.size} puts acknowledged before the disk filled; exit code ${code}`);
      assert.equal(code, EXIT_STORAGE_FAILED, 'the member exits with EX_IOERR');
      const log = c.member(0).log.text();
      assert.match(log, /fatal storage error/);
      // LMDB reports a write to a full disk as EIO; the member adds what it sees of the file system.
      assert.match(log, /ENOSPC|no space left on device|the disk is full/i);

      const next = await c.leaderIndex(15_000);
      assert.notEqual(next, 0);
      await gatewayPost(
        c.endpoint(next),
        '/v3/kv/put',
        { key: b64('after/failover'), value: b64('1') },
        10_000,
      );

      execFileSync('mount', ['-o', 'remount,size=512m', mountDir!], { stdio: 'pipe' });
      await c.restart(0, { waitHealthy: false });
      await c.waitHealthy(60_000, [0]);
      const revision = await waitHashKvEqual(c, 60_000);
      t.diagnostic(`HashKV equal on all three members at revision ${revision}`);
      for (const index of c.runningIndexes()) {
        assertAllPresent(acked, await readAll(c.endpoint(index), 'fill/'), c.member(index).name);
      }
    });
  });
});

describe('fail-stop: a leader whose background snapshot fails', { timeout: 180_000 }, () => {
  let cluster: ProcessCluster | undefined;
  after(async () => {
    await cluster?.dispose();
  });

  it('exits non-zero naming the snapshot; another leader is elected; repaired, it catches up', async (t: TestContext) => {
    const snapshotCount = 50;
    cluster = await startConcordCluster({ size: 3, heartbeatIntervalMs, electionTimeoutMs, snapshotCount });
    const c = cluster;
    await c.withLogsOnFailure(async () => {
      const leader = await c.leaderIndex();
      // A file where the snapshot directory should be: the next snapshot file cannot be created.
      const snapDir = join(c.member(leader).dataDir, 'member', 'snap');
      rmSync(snapDir, { recursive: true, force: true });
      writeFileSync(snapDir, 'in the way');
      const acked = await writeUntilDown(c, leader, {
        writers: 2,
        valueBytes: 100,
        prefix: 'snap/',
        timeoutMs: 60_000,
      });
      const code = await waitForExit(c, leader, 30_000);
      t.diagnostic(`${acked.size} puts acknowledged; the leader exited with code ${code}`);
      assert.equal(code, EXIT_STORAGE_FAILED);
      const log = c.member(leader).log.text();
      assert.match(log, /fatal storage error/);
      assert.match(log, /snapshot/);
      assert.match(log, /ENOTDIR/);

      const next = await c.leaderIndex(15_000);
      assert.notEqual(next, leader);
      await gatewayPost(
        c.endpoint(next),
        '/v3/kv/put',
        { key: b64('after/failover'), value: b64('1') },
        10_000,
      );

      rmSync(snapDir, { force: true });
      mkdirSync(snapDir);
      await c.restart(leader, { waitHealthy: false });
      await c.waitHealthy(60_000, [leader]);
      await waitHashKvEqual(c, 60_000);
      for (const index of c.runningIndexes()) {
        assertAllPresent(acked, await readAll(c.endpoint(index), 'snap/'), c.member(index).name);
      }
    });
  });
});

describe('fail-stop: a storage error while starting', { timeout: 60_000 }, () => {
  it('a member that cannot write its id file exits non-zero naming the file', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'concord-start-'));
    try {
      // A directory where the id file's temp copy goes: writing it fails.
      mkdirSync(join(dataDir, 'member', 'id.tmp'), { recursive: true });
      const peer = `http://127.0.0.1:${await freePort()}`;
      const client = `http://127.0.0.1:${await freePort()}`;
      const binary = concordBinary();
      const child = spawn(
        binary.command,
        [
          ...binary.argsBefore,
          ...['--name', 'solo', '--data-dir', dataDir, '--listen-client-urls', client],
          ...['--advertise-client-urls', client, '--listen-peer-urls', peer],
          ...['--initial-advertise-peer-urls', peer, '--initial-cluster', `solo=${peer}`],
        ],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      let output = '';
      child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
      child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
      const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
      const [code] = (await once(child, 'exit')) as [number | null];
      clearTimeout(timer);
      assert.notEqual(code, 0, output);
      assert.notEqual(code, null, 'it exits by itself');
      assert.match(output, /EISDIR.*id\.tmp/);
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
