// Every fatal storage error stops the member: Raft stops ticking and stepping, the peer transport
// closes (so the peers see the member gone and elect another leader), client calls are refused,
// the cause is logged once, and whenFailed() hands it to the embedder (the CLI exits non-zero).
// One test per path where storage can fail, each fault injected at a narrow seam (StorageHooks)
// or made real on disk.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Keyspace } from '../../src/mvcc/keyspace.js';
import type { ConcordServer, StorageHooks } from '../../src/server/server.js';
import { WalFailedError } from '../../src/storage/errors.js';
import type { SnapshotStore } from '../../src/storage/snapshot-store.js';
import { faulty, InProcessCluster, ioError, isListening, within } from './in-process-cluster.js';

const enc = (text: string) => new TextEncoder().encode(text);
const failStopTimeoutMs = 10_000;

function put(server: ConcordServer, key: string, value = 'v'): Promise<unknown> {
  return server.put({ key: enc(key), value: enc(value) });
}

/** Puts until one fails (the member stopped) or `count` went through. */
async function putUntilRefused(
  server: ConcordServer,
  prefix: string,
  count: number,
  value = 'v',
): Promise<void> {
  for (let i = 0; i < count; i++) {
    try {
      await put(server, `${prefix}${i}`, value);
    } catch {
      return;
    }
  }
}

/**
 * The member at `index` fail-stopped because `operation` failed with `cause`: its peer port is
 * closed, client calls are refused, its Raft term no longer moves, whenFailed() names the cause,
 * and the cause was logged exactly once.
 */
async function assertFailStopped(
  cluster: InProcessCluster,
  index: number,
  operation: string,
  cause: RegExp,
): Promise<void> {
  const member = cluster.members[index]!;
  const server = cluster.server(index);
  const deadline = Date.now() + failStopTimeoutMs;
  while (await isListening(member.peerPort)) {
    assert.ok(
      Date.now() < deadline,
      `${member.name}: peer port still open ${failStopTimeoutMs} ms after the fault`,
    );
    await sleep(20);
  }
  await assert.rejects(put(server, 'after-fail-stop'), /server stopped/);
  const error = (await within('whenFailed()', 1000, server.whenFailed())) as Error & { operation?: string };
  assert.equal(error.operation, operation, `operation of ${error.message}`);
  assert.match(error.message, cause);
  const termBefore = server.debugStatus().term;
  await sleep(1200); // more than two election timeouts: a ticking member would campaign
  assert.equal(server.debugStatus().term, termBefore, 'Raft kept ticking after the fail-stop');
  const fatalLines = cluster
    .logText(index)
    .split('\n')
    .filter((line) => line.includes('"level":"error"') && cause.test(line));
  assert.equal(fatalLines.length, 1, `the cause is logged once:\n${fatalLines.join('\n')}`);
}

describe('fail-stop: a single member', { timeout: 180_000 }, () => {
  let cluster: InProcessCluster | undefined;
  after(async () => {
    await cluster?.dispose();
  });

  async function startOne(
    hooks: StorageHooks,
    extra: { snapshotCount?: number } = {},
  ): Promise<ConcordServer> {
    await cluster?.dispose();
    cluster = await InProcessCluster.start({ size: 1, hooks: [hooks], ...extra });
    const server = cluster.server(0);
    await put(server, 'before');
    return server;
  }

  it('a stored record whose AES-GCM tag fails on read stops the member (encryption)', async () => {
    await cluster?.dispose();
    const keyDir = mkdtempSync(join(tmpdir(), 'concord-keys-'));
    try {
      const keyFile = join(keyDir, 'keys');
      writeFileSync(keyFile, `k1:${randomBytes(32).toString('base64')}\n`);
      cluster = await InProcessCluster.start({ size: 1, encryptionKeyFile: keyFile });
      const server = cluster.server(0);
      await put(server, 'before');
      // Other key bytes under the same id; a rotation to "k1" makes the member read the file again.
      writeFileSync(keyFile, `k1:${randomBytes(32).toString('base64')}\n`);
      await server.rotateEncryptionKey('k1');
      await assert.rejects(server.range({ key: enc('before') }), /corrupt keyspace/);
      await assertFailStopped(
        cluster,
        0,
        'encryption',
        /authentication failed with encryption key \\?"k1\\?"/,
      );
    } finally {
      rmSync(keyDir, { recursive: true, force: true });
    }
  });

  it('a failed WAL fdatasync stops the member', async () => {
    let armed = false;
    const server = await startOne({
      walOptions: {
        io: {
          datasync: async (fh) => {
            if (armed) throw ioError('EIO', 'fdatasync');
            await fh.datasync();
          },
        },
      },
    });
    armed = true;
    await assert.rejects(put(server, 'k'));
    await assertFailStopped(cluster!, 0, 'wal-write', /EIO/);
  });

  it('a WAL refusal met first by another path (the metadata group releasing) is reported as the WAL write', async () => {
    const server = await startOne({});
    // The race seen in CI: the put's fdatasync failed, and the metadata group's release met the
    // WAL's refusal and reported before the write path did.
    const node = (server as unknown as { node: { failStop(operation: string, cause: unknown): void } }).node;
    node.failStop('wal-release', new WalFailedError(ioError('EIO', 'fdatasync')));
    await assertFailStopped(cluster!, 0, 'wal-write', /refuses further writes: EIO/);
  });

  it('a failed WAL segment rollover stops the member', async () => {
    let armed = false;
    const server = await startOne({
      walOptions: {
        segmentBytes: 64 * 1024,
        io: {
          syncDir: async () => {
            if (armed) throw ioError('ENOSPC', 'fsync', 'wal');
          },
        },
      },
    });
    armed = true;
    await putUntilRefused(server, 'big', 4, 'x'.repeat(40 * 1024));
    await assertFailStopped(cluster!, 0, 'wal-write', /ENOSPC/);
  });

  it('a failed LMDB apply transaction stops the member', async () => {
    let armed = false;
    const server = await startOne({
      wrapKeyspace: (keyspace) =>
        faulty(
          keyspace,
          { applyBatch: 'throws' },
          () => armed,
          () => ioError('EIO', 'pwrite', 'data.mdb'),
        ),
    });
    armed = true;
    await assert.rejects(put(server, 'k'));
    await assertFailStopped(cluster!, 0, 'apply', /EIO/);
  });

  it('a failed lease grant (lease persistence is an apply) stops the member', async () => {
    let armed = false;
    const server = await startOne({
      wrapKeyspace: (keyspace) =>
        faulty(
          keyspace,
          { applyBatch: 'throws' },
          () => armed,
          () => ioError('ENOSPC', 'pwrite', 'data.mdb'),
        ),
    });
    armed = true;
    await assert.rejects(server.leaseGrant(30, 0n));
    await assertFailStopped(cluster!, 0, 'apply', /ENOSPC/);
  });

  it('a failed background snapshot file write stops the member', async () => {
    let armed = false;
    const server = await startOne(
      {
        wrapSnapshots: (store) =>
          faulty(
            store,
            { write: 'rejects' },
            () => armed,
            () => ioError('ENOSPC', 'write', 'snap'),
          ),
      },
      { snapshotCount: 5 },
    );
    armed = true;
    await putUntilRefused(server, 'k', 20);
    await assertFailStopped(cluster!, 0, 'snapshot-create', /ENOSPC/);
  });

  it('a failed background keyspace copy stops the member', async () => {
    let armed = false;
    const server = await startOne(
      {
        wrapKeyspace: (keyspace) =>
          faulty(
            keyspace,
            { createSnapshot: 'rejects' },
            () => armed,
            () => ioError('EIO', 'copyfile'),
          ),
      },
      { snapshotCount: 5 },
    );
    armed = true;
    await putUntilRefused(server, 'k', 20);
    await assertFailStopped(cluster!, 0, 'snapshot-create', /EIO/);
  });

  it('a failed WAL segment release after a snapshot stops the member', async () => {
    let armed = false;
    const server = await startOne(
      {
        wrapWal: (wal) =>
          faulty(
            wal,
            { releaseTo: 'rejects' },
            () => armed,
            () => ioError('EIO', 'unlink', '0000000000000001.wal'),
          ),
      },
      { snapshotCount: 5 },
    );
    armed = true;
    await putUntilRefused(server, 'k', 20);
    await assertFailStopped(cluster!, 0, 'wal-release', /EIO/);
  });

  it('a failed prune of old snapshot files stops the member', async () => {
    let armed = false;
    const server = await startOne(
      {
        wrapSnapshots: (store) =>
          faulty(
            store,
            { prune: 'rejects' },
            () => armed,
            () => ioError('EIO', 'unlink', 'snap'),
          ),
      },
      { snapshotCount: 5 },
    );
    armed = true;
    await putUntilRefused(server, 'k', 20);
    await assertFailStopped(cluster!, 0, 'snapshot-prune', /EIO/);
  });

  it('a database file that cannot be looked at (the quota check) stops the member', async () => {
    const server = await startOne({});
    // LMDB keeps its descriptor; the file is gone from the directory, as on a lost mount.
    unlinkSync(join(cluster!.members[0]!.dataDir, 'member', 'db', 'data.mdb'));
    await putUntilRefused(server, 'k', 5);
    await assertFailStopped(cluster!, 0, 'quota-check', /ENOENT/);
  });

  it('a failed physical compaction step stops the member', async () => {
    let armed = false;
    const server = await startOne({
      wrapKeyspace: (keyspace) =>
        new Proxy(keyspace, {
          get(target, property) {
            if (armed && property === 'compactionPending') return () => true;
            if (armed && property === 'compactStep')
              return () => {
                throw ioError('EIO', 'pwrite', 'data.mdb');
              };
            const value: unknown = Reflect.get(target, property, target);
            return typeof value === 'function' ? value.bind(target) : value;
          },
        }) as Keyspace,
    });
    armed = true;
    assert.ok(server); // the idle compaction timer finds the step to do
    await assertFailStopped(cluster!, 0, 'compaction', /EIO/);
  });

  it('defragment: a copy that fails is the caller’s error; the member keeps serving', async () => {
    const server = await startOne({});
    const scratch = join(cluster!.members[0]!.dataDir, 'member', 'tmp');
    rmSync(scratch, { recursive: true, force: true });
    writeFileSync(scratch, 'not a directory');
    await assert.rejects(server.defragment(), /ENOTDIR/);
    await put(server, 'after-defrag');
    const failed = await Promise.race([server.whenFailed(), sleep(300).then(() => undefined)]);
    assert.equal(failed, undefined);
  });

  it('defragment: a swap that fails after the database was closed stops the member', async () => {
    const server = await startOne({});
    const dbFile = join(cluster!.members[0]!.dataDir, 'member', 'db', 'data.mdb');
    // The copy succeeds (LMDB copies through its open descriptor); renaming it over the live
    // file then fails, after the environment was closed.
    unlinkSync(dbFile);
    mkdirSync(dbFile);
    writeFileSync(join(dbFile, 'in-the-way'), '');
    await assert.rejects(server.defragment());
    await assertFailStopped(cluster!, 0, 'defragment', /ENOTEMPTY|EISDIR|EEXIST/);
  });
});

describe('fail-stop: a member of three', { timeout: 120_000 }, () => {
  let cluster: InProcessCluster | undefined;
  after(async () => {
    await cluster?.dispose();
  });

  it('a leader whose background snapshot fails stops, and the others elect a new leader', async () => {
    const armed = new Set<number>();
    const hooks = [0, 1, 2].map(
      (i): StorageHooks => ({
        wrapSnapshots: (store) =>
          faulty(
            store,
            { write: 'rejects' },
            () => armed.has(i),
            () => ioError('ENOSPC', 'write', 'snap'),
          ),
      }),
    );
    cluster = await InProcessCluster.start({ size: 3, snapshotCount: 20, hooks });
    const leader = await cluster.leader();
    armed.add(leader);
    await putUntilRefused(cluster.server(leader), 'k', 60);
    await assertFailStopped(cluster, leader, 'snapshot-create', /ENOSPC/);
    const others = [0, 1, 2].filter((i) => i !== leader);
    const next = await cluster.leader(10_000, others);
    assert.notEqual(next, leader);
    await put(cluster.server(next), 'after-failover');
  });

  it('a follower whose snapshot install fails stops', async () => {
    await cluster?.dispose();
    let armed = false;
    const hooks: StorageHooks[] = [{}, {}, {}];
    cluster = await InProcessCluster.start({ size: 3, snapshotCount: 10, snapshotCatchUpEntries: 2, hooks });
    const leader = await cluster.leader();
    const follower = (leader + 1) % 3;
    await cluster.stopMember(follower);
    for (let i = 0; i < 40; i++) await put(cluster.server(leader), `k${i}`);
    hooks[follower] = {
      wrapKeyspace: (keyspace) =>
        faulty(
          keyspace,
          { restoreSnapshot: 'rejects' },
          () => armed,
          () => ioError('EIO', 'rename', 'data.mdb'),
        ),
    };
    armed = true;
    await cluster.startMember(follower);
    await assertFailStopped(cluster, follower, 'snapshot-install', /EIO/);
  });

  it('a follower that cannot write a snapshot it receives stops, leaving no partial file', async () => {
    await cluster?.dispose();
    let armed = false;
    let appends = 0;
    const hooks: StorageHooks[] = [{}, {}, {}];
    cluster = await InProcessCluster.start({ size: 3, snapshotCount: 10, snapshotCatchUpEntries: 2, hooks });
    const leader = await cluster.leader();
    const follower = (leader + 1) % 3;
    await cluster.stopMember(follower);
    // A few chunks per snapshot, so the write fails in the middle of the stream.
    for (let i = 0; i < 40; i++) await put(cluster.server(leader), `k${i}`, 'x'.repeat(100_000));
    hooks[follower] = {
      wrapSnapshots: (store) =>
        new Proxy(store, {
          get(target, property) {
            const value: unknown = Reflect.get(target, property, target);
            if (property !== 'writer' || typeof value !== 'function') {
              return typeof value === 'function' ? value.bind(target) : value;
            }
            return async (...args: unknown[]) => {
              const writer = (await value.apply(target, args)) as object;
              return faulty(
                writer,
                { append: 'rejects' } as never,
                () => armed && ++appends > 2,
                () => ioError('ENOSPC', 'write', 'received snapshot'),
              );
            };
          },
        }) as SnapshotStore,
    };
    armed = true;
    await cluster.startMember(follower);
    await assertFailStopped(cluster, follower, 'snapshot-receive', /ENOSPC/);
    const scratch = join(cluster.members[follower]!.dataDir, 'member', 'tmp');
    await sleep(200);
    assert.deepEqual(readdirSync(scratch), [], 'the partial snapshot file is removed');
  });
});
