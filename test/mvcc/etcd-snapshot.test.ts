// The keyspace written as an etcd-format (bbolt) snapshot and read back: every revision, lease and
// the compaction point survive; the file is the keyspace at one point in time; damaged or
// unsupported etcd files are refused with a clear error.

import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { CompactedError, SnapshotAbortedError, SnapshotInvalidError } from '../../src/mvcc/errors.js';
import {
  createEtcdSnapshot,
  type EtcdClusterState,
  encodeKeyValue,
  etcdSnapshotStatus,
  importEtcdSnapshot,
  revisionBytes,
} from '../../src/mvcc/etcd-snapshot.js';
import type { Keyspace } from '../../src/mvcc/keyspace.js';
import type { WriteOp } from '../../src/mvcc/types.js';
import { type BboltBucketSource, BboltReader, planBboltFile } from '../../src/storage/bbolt/index.js';
import { applyOps, b, norm, openTemp, type TempKeyspace } from './helpers.js';

const cluster: EtcdClusterState = {
  members: [
    {
      id: 0xabcn,
      name: 'n1',
      peerUrls: ['http://127.0.0.1:2380'],
      clientUrls: ['http://127.0.0.1:2379'],
      isLearner: false,
    },
  ],
  removedMemberIds: [0xdefn],
  alarms: [],
  clusterVersion: '3.4.0',
};
const everything = { key: b('\u0000'), rangeEnd: b('\u0000') };
const put = (key: string, value: string, lease = 0n): WriteOp => ({
  type: 'put',
  request: { key: b(key), value: b(value), lease },
});
const del = (key: string, rangeEnd?: string): WriteOp => ({
  type: 'deleteRange',
  request: rangeEnd === undefined ? { key: b(key) } : { key: b(key), rangeEnd: b(rangeEnd) },
});

/** Puts, overwrites, deletes, multi-op txns, leases (one with a negative ID) and a compaction. */
function workload(ks: Keyspace): void {
  applyOps(ks, [
    { type: 'leaseGrant', request: { id: 0x1234n, ttlSeconds: 300 } },
    { type: 'leaseGrant', request: { id: -7n, ttlSeconds: 60 } },
    { type: 'leaseGrant', request: { id: 0x99n, ttlSeconds: 30 } },
  ]);
  for (let round = 0; round < 30; round++) {
    applyOps(ks, [
      put(`k/${round % 11}`, `v${round}`),
      put(`leased/${round % 3}`, `l${round}`, round % 2 === 0 ? 0x1234n : -7n),
      {
        type: 'txn',
        request: {
          compare: [],
          success: [
            { type: 'put', request: { key: b(`t/${round}`), value: b('x'.repeat(round * 40)) } },
            { type: 'put', request: { key: b(`t/${round}b`), value: b('y') } },
          ],
          failure: [],
        },
      },
    ]);
    if (round % 4 === 3) applyOps(ks, [del(`k/${round % 5}`)]);
    if (round === 12) applyOps(ks, [{ type: 'compact', request: { revision: ks.currentRevision() - 10 } }]);
    if (round === 20) applyOps(ks, [del('t/1', 't/2')]);
  }
  applyOps(ks, [put('gone-with-lease', 'x', 0x99n), { type: 'leaseRevoke', request: { id: 0x99n } }]);
}

async function writeSnapshot(ks: Keyspace, path: string, chunkBytesMax?: number): Promise<number> {
  const snapshot = await createEtcdSnapshot(
    ks,
    cluster,
    chunkBytesMax === undefined ? {} : { chunkBytesMax },
  );
  const chunks: Buffer[] = [];
  for await (const chunk of snapshot.chunks()) chunks.push(Buffer.from(chunk));
  const bytes = Buffer.concat(chunks);
  assert.equal(bytes.length, snapshot.totalBytes);
  writeFileSync(path, bytes);
  return snapshot.revision;
}

async function importFile(
  path: string,
): Promise<{ target: TempKeyspace; result: Awaited<ReturnType<typeof importEtcdSnapshot>> }> {
  const target = openTemp({ noSync: true, initialRevision: 1 });
  const reader = BboltReader.open(path);
  try {
    return { target, result: await importEtcdSnapshot(reader, target.ks) };
  } catch (error) {
    await target.cleanup();
    throw error;
  } finally {
    reader.close();
  }
}

/** Every read a client can make of the history: each revision from the compaction point on. */
function views(ks: Keyspace): unknown {
  const out: unknown[] = [];
  for (let revision = ks.compactRevision(); revision <= ks.currentRevision(); revision++) {
    if (revision === 0) continue;
    out.push(norm(ks.range({ ...everything, revision })));
  }
  const leases = ks
    .leases()
    .map((lease) => ({ ...(norm(lease) as object), keys: norm(ks.leaseKeys(lease.id)) }));
  return { revision: ks.currentRevision(), compact: ks.compactRevision(), out, leases };
}

test('every revision from the compaction point on, every lease and its keys survive an etcd-format snapshot', async () => {
  const source = openTemp({ noSync: true, initialRevision: 1 });
  try {
    workload(source.ks);
    assert.ok(source.ks.compactRevision() > 1);
    const file = join(source.dir, 'snap.db');
    await writeSnapshot(source.ks, file);
    const { target, result } = await importFile(file);
    try {
      assert.deepEqual(views(target.ks), views(source.ks));
      assert.deepEqual(target.ks.hashKV(0), source.ks.hashKV(0), 'the same stored versions');
      assert.equal(result.consistentIndex, source.ks.appliedIndex());
      assert.equal(result.leases, 2);
      assert.deepEqual(result.notes, []);
      assert.throws(
        () => target.ks.range({ ...everything, revision: source.ks.compactRevision() - 1 }),
        CompactedError,
      );
      // The restored keyspace takes new writes from where the old one stopped.
      applyOps(target.ks, [put('after', '1')]);
      assert.equal(target.ks.currentRevision(), source.ks.currentRevision() + 1);
    } finally {
      await target.cleanup();
    }
  } finally {
    await source.cleanup();
  }
});

test("the file holds etcd's buckets and encodings, and snapshot status reads it like etcdctl", async () => {
  const source = openTemp({ noSync: true, initialRevision: 1 });
  try {
    applyOps(source.ks, [
      put('a', '1'),
      put('a', '2'),
      del('a'),
      { type: 'compact', request: { revision: 3 } },
    ]);
    const file = join(source.dir, 'snap.db');
    await writeSnapshot(source.ks, file);
    const reader = BboltReader.open(file);
    try {
      assert.deepEqual(reader.bucketNames().map(String), [
        'alarm',
        'auth',
        'authRoles',
        'authUsers',
        'cluster',
        'key',
        'lease',
        'members',
        'members_removed',
        'meta',
      ]);
      const bucket = (name: string) =>
        [...reader.entries([Buffer.from(name)])].map((e) => [e.key.toString('hex'), e.value.toString('hex')]);
      assert.deepEqual(bucket('key'), [
        // put a@3 (create 2, version 2) and its tombstone @4; a@2 is compacted away.
        ['00000000000000035f0000000000000000', '0a01611002180320022a0132'],
        ['00000000000000045f000000000000000074', '0a0161'],
      ]);
      const text = (name: string) =>
        [...reader.entries([Buffer.from(name)])].map((e) => [String(e.key), String(e.value)]);
      assert.deepEqual(text('members'), [
        [
          'abc',
          '{"id":2748,"peerURLs":["http://127.0.0.1:2380"],"name":"n1","clientURLs":["http://127.0.0.1:2379"]}',
        ],
      ]);
      assert.deepEqual(text('members_removed'), [['def', 'removed']]);
      assert.deepEqual(text('cluster'), [['clusterVersion', '3.4.0']]);
      assert.deepEqual(bucket('meta'), [
        ['636f6e73697374656e745f696e646578', '0000000000000004'],
        [Buffer.from('finishedCompactRev').toString('hex'), '00000000000000035f0000000000000000'],
        [Buffer.from('scheduledCompactRev').toString('hex'), '00000000000000035f0000000000000000'],
      ]);
      const status = etcdSnapshotStatus(reader);
      assert.equal(status.revision, 4);
      assert.equal(status.totalKey, 2 + 1 + 1 + 1 + 3 + 1, 'key, members, removed, cluster, meta, auth');
    } finally {
      reader.close();
    }
  } finally {
    await source.cleanup();
  }
});

test('versions a compaction has not yet removed physically are left out of the snapshot', async () => {
  const source = openTemp({ noSync: true, initialRevision: 1, compactionRecordsPerBatchMax: 1 });
  try {
    for (let i = 0; i < 50; i++) applyOps(source.ks, [put(`k${i % 5}`, `v${i}`)]);
    applyOps(source.ks, [del('k0'), { type: 'compact', request: { revision: 40 } }]);
    assert.ok(source.ks.compactionPending(), 'physical compaction is still going on');
    const file = join(source.dir, 'snap.db');
    await writeSnapshot(source.ks, file);
    const { target } = await importFile(file);
    try {
      while (source.ks.compactStep()) {}
      assert.deepEqual(views(target.ks), views(source.ks));
      assert.equal(target.ks.storageStats().revisions, source.ks.storageStats().revisions);
    } finally {
      await target.cleanup();
    }
  } finally {
    await source.cleanup();
  }
});

test('the snapshot is the keyspace when it was taken, whatever is written while it streams', async () => {
  const source = openTemp({ noSync: true, initialRevision: 1 });
  try {
    for (let i = 0; i < 3000; i++) applyOps(source.ks, [put(`k${i}`, 'x'.repeat(100))]);
    // The latest state only: views() of 3000 revisions of 3000 keys would not fit in memory.
    const latest = (ks: Keyspace) => ({ revision: ks.currentRevision(), kvs: norm(ks.range(everything)) });
    const before = latest(source.ks);
    const snapshot = await createEtcdSnapshot(source.ks, cluster, { chunkBytesMax: 4096 });
    const chunks: Buffer[] = [];
    let written = 0;
    for await (const chunk of snapshot.chunks()) {
      chunks.push(Buffer.from(chunk));
      if (written++ % 20 === 0) applyOps(source.ks, [put(`k${written}`, 'new'), del(`k${written + 1}`)]);
    }
    assert.ok(written > 20);
    const file = join(source.dir, 'snap.db');
    writeFileSync(file, Buffer.concat(chunks));
    const { target } = await importFile(file);
    try {
      assert.deepEqual(latest(target.ks), before);
    } finally {
      await target.cleanup();
    }
  } finally {
    await source.cleanup();
  }
});

test('closing the keyspace under a snapshot stream fails the stream instead of reading a closed database', async () => {
  const source = openTemp({ noSync: true, initialRevision: 1 });
  try {
    for (let i = 0; i < 5000; i++) applyOps(source.ks, [put(`k${i}`, 'x'.repeat(100))]);
    const snapshot = await createEtcdSnapshot(source.ks, cluster, { chunkBytesMax: 4096 });
    const chunks = snapshot.chunks();
    await chunks.next();
    await source.ks.close();
    await assert.rejects(async () => {
      for (;;) if ((await chunks.next()).done) break;
    }, SnapshotAbortedError);
  } finally {
    await source.cleanup();
  }
});

// ---- etcd files made by hand: what a real etcd could contain -------------------------------------

function fixedBucket(name: string, entries: [Buffer, Buffer][]): BboltBucketSource {
  return { name: Buffer.from(name), entries: () => entries.map(([key, value]) => ({ key, value })) };
}

function kv(
  main: number,
  key: string,
  value: string,
  create: number,
  version: number,
  lease = 0n,
): [Buffer, Buffer] {
  return [
    revisionBytes(main, 0, false),
    encodeKeyValue({
      main,
      sub: 0,
      tombstone: false,
      key: b(key),
      value: b(value),
      createRevision: create,
      version,
      lease,
    }),
  ];
}

async function etcdFile(dir: string, buckets: BboltBucketSource[]): Promise<string> {
  const plan = await planBboltFile(buckets);
  const chunks: Buffer[] = [];
  for await (const chunk of plan.chunks()) chunks.push(Buffer.from(chunk));
  const path = join(dir, `etcd-${Math.random().toString(16).slice(2)}.db`);
  writeFileSync(path, Buffer.concat(chunks));
  return path;
}

const mark = (revision: number) => revisionBytes(revision, 0, false);

test('a compaction etcd had scheduled but not finished is completed on import', async () => {
  const scratch = openTemp();
  try {
    const path = await etcdFile(scratch.dir, [
      fixedBucket('key', [
        kv(2, 'a', '1', 2, 1),
        kv(3, 'a', '2', 2, 2),
        kv(4, 'a', '3', 2, 3),
        kv(5, 'b', '1', 5, 1),
      ]),
      fixedBucket('meta', [
        [Buffer.from('finishedCompactRev'), mark(2)],
        [Buffer.from('scheduledCompactRev'), mark(4)],
      ]),
    ]);
    const { target, result } = await importFile(path);
    try {
      assert.equal(result.compactRevision, 4);
      assert.equal(target.ks.compactionPending(), false);
      assert.equal(target.ks.storageStats().revisions, 2, 'a@2 and a@3 are gone, a@4 and b@5 stay');
      assert.throws(() => target.ks.range({ key: b('a'), revision: 3 }), CompactedError);
      assert.deepEqual(norm(target.ks.range({ key: b('a'), revision: 4 }).kvs.map((k) => k.value)), ['b:3']);
    } finally {
      await target.cleanup();
    }
  } finally {
    await scratch.cleanup();
  }
});

test('the current revision is the compaction point when compaction removed the newest revisions (etcd rule)', async () => {
  const scratch = openTemp();
  try {
    // etcd 3.4 drops a deleted key entirely at compaction, its tombstone included.
    const path = await etcdFile(scratch.dir, [
      fixedBucket('key', [kv(2, 'a', '1', 2, 1)]),
      fixedBucket('meta', [
        [Buffer.from('finishedCompactRev'), mark(4)],
        [Buffer.from('scheduledCompactRev'), mark(4)],
      ]),
    ]);
    const { target } = await importFile(path);
    try {
      assert.equal(target.ks.currentRevision(), 4);
      assert.equal(target.ks.compactRevision(), 4);
    } finally {
      await target.cleanup();
    }
  } finally {
    await scratch.cleanup();
  }
});

test('refused: not an etcd snapshot, a KeyValue that contradicts its revision', async () => {
  const scratch = openTemp();
  try {
    const notEtcd = await etcdFile(scratch.dir, [fixedBucket('something', [[b('a'), b('b')]])]);
    await assert.rejects(importFile(notEtcd), /not an etcd snapshot/);
    const wrongMod = kv(3, 'a', '1', 3, 1);
    const lying = await etcdFile(scratch.dir, [
      fixedBucket('key', [[revisionBytes(4, 0, false), wrongMod[1]]]),
      fixedBucket('meta', []),
    ]);
    await assert.rejects(importFile(lying), (error: unknown) => {
      assert.ok(error instanceof SnapshotInvalidError);
      assert.match(error.message, /KeyValue at revision 4\.0 has mod_revision 3/);
      return true;
    });
    const garbage = await etcdFile(scratch.dir, [
      fixedBucket('key', [[revisionBytes(2, 0, false), Buffer.from([0x0a, 0x50, 0x01])]]),
      fixedBucket('meta', []),
    ]);
    await assert.rejects(importFile(garbage), /KeyValue at revision 2\.0 does not decode/);
  } finally {
    await scratch.cleanup();
  }
});

test('the auth buckets are read: enabled flag, auth revision, users (hash, roles, no_password), roles', async () => {
  const scratch = openTemp();
  try {
    // authpb.User {name "root", password "h", roles ["root"]}; {name "np", options {no_password}};
    // authpb.Role {name "app", keyPermission [{READWRITE, "app/", "app0"}, {READ, "k"}]}.
    const root = Buffer.from([0x0a, 4, ...b('root'), 0x12, 1, ...b('h'), 0x1a, 4, ...b('root')]);
    const noPassword = Buffer.from([0x0a, 2, ...b('np'), 0x22, 2, 0x08, 1]);
    const app = Buffer.from([
      ...[0x0a, 3, ...b('app')],
      ...[0x12, 14, 0x08, 2, 0x12, 4, ...b('app/'), 0x1a, 4, ...b('app0')],
      ...[0x12, 3, 0x12, 1, ...b('k')],
    ]);
    const path = await etcdFile(scratch.dir, [
      fixedBucket('key', []),
      fixedBucket('meta', []),
      fixedBucket('auth', [
        [b('authEnabled'), Buffer.of(1)],
        [b('authRevision'), Buffer.from([0, 0, 0, 0, 0, 0, 0, 7])],
      ]),
      fixedBucket('authUsers', [
        [b('np'), noPassword],
        [b('root'), root],
      ]),
      fixedBucket('authRoles', [[b('app'), app]]),
    ]);
    const { target, result } = await importFile(path);
    try {
      assert.deepEqual(result.auth, {
        enabled: true,
        revision: 7,
        users: [
          { name: 'np', passwordHash: '', noPassword: true, roles: [] },
          { name: 'root', passwordHash: 'h', noPassword: false, roles: ['root'] },
        ],
        roles: [
          {
            name: 'app',
            permissions: [
              { permType: 'READWRITE', key: b('app/'), rangeEnd: b('app0') },
              { permType: 'READ', key: b('k'), rangeEnd: Buffer.alloc(0) },
            ],
          },
        ],
      });
    } finally {
      await target.cleanup();
    }
  } finally {
    await scratch.cleanup();
  }
});

test('alarms are reported as not restored; keys of a lease the file lacks are kept unattached', async () => {
  const scratch = openTemp();
  try {
    const path = await etcdFile(scratch.dir, [
      fixedBucket('key', [kv(2, 'a', '1', 2, 1, 0x77n)]),
      fixedBucket('meta', []),
      fixedBucket('alarm', [[b('\u0008\u0001\u0010\u0001'), Buffer.alloc(0)]]),
    ]);
    const { target, result } = await importFile(path);
    try {
      assert.deepEqual(result.notes, ['1 alarms not restored']);
      assert.equal(result.keysWithMissingLease, 1);
      assert.equal(target.ks.range({ key: b('a') }).kvs[0]?.lease, 0x77n);
    } finally {
      await target.cleanup();
    }
  } finally {
    await scratch.cleanup();
  }
});

test('a snapshot is imported only into an empty keyspace', async () => {
  const source = openTemp({ noSync: true, initialRevision: 1 });
  const target = openTemp({ noSync: true, initialRevision: 1 });
  try {
    applyOps(source.ks, [put('a', '1')]);
    const file = join(source.dir, 'snap.db');
    await writeSnapshot(source.ks, file);
    applyOps(target.ks, [put('mine', '1')]);
    const reader = BboltReader.open(file);
    try {
      await assert.rejects(importEtcdSnapshot(reader, target.ks), /is not empty; import into a fresh one/);
    } finally {
      reader.close();
    }
    assert.deepEqual(norm(target.ks.range(everything).kvs.map((kv) => kv.key)), ['b:mine']);
  } finally {
    await source.cleanup();
    await target.cleanup();
  }
});

test('users, roles, the enabled flag and the auth revision survive an etcd-format snapshot', async () => {
  const source = openTemp({ noSync: true, initialRevision: 1 });
  try {
    const auth = {
      enabled: true,
      revision: 12,
      users: [
        {
          name: 'alice',
          passwordHash: '$2b$10$abcdefghijklmnopqrstuv',
          noPassword: false,
          roles: ['app', 'ops'],
        },
        { name: 'np', passwordHash: '', noPassword: true, roles: [] },
        { name: 'root', passwordHash: '$2a$10$zyxwvutsrqponmlkjihgfe', noPassword: false, roles: ['root'] },
      ],
      roles: [
        {
          name: 'app',
          permissions: [
            { permType: 'READ' as const, key: b('a'), rangeEnd: b('\0') },
            { permType: 'READWRITE' as const, key: b('app/'), rangeEnd: b('app0') },
          ],
        },
        {
          name: 'ops',
          permissions: [{ permType: 'WRITE' as const, key: b('x'), rangeEnd: Buffer.alloc(0) }],
        },
        { name: 'root', permissions: [] },
      ],
    };
    const snapshot = await createEtcdSnapshot(source.ks, { ...cluster, auth });
    const chunks: Buffer[] = [];
    for await (const chunk of snapshot.chunks()) chunks.push(Buffer.from(chunk));
    const file = join(source.dir, 'auth.db');
    writeFileSync(file, Buffer.concat(chunks));
    const { target, result } = await importFile(file);
    try {
      assert.deepEqual(result.auth, auth);
    } finally {
      await target.cleanup();
    }
  } finally {
    await source.cleanup();
  }
});
