// Snapshot restore into a data dir: both formats (etcd's bbolt, our older LMDB copy), etcd's
// sha256 trailer rules, the membership fixed by etcdctl's flags, and refusals that leave nothing
// behind.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { createEtcdSnapshot } from '../../src/mvcc/etcd-snapshot.js';
import { Keyspace } from '../../src/mvcc/keyspace.js';
import type { WriteOp } from '../../src/mvcc/types.js';
import { EtcdDataDirError, readSelfId, refuseEtcdDataDir } from '../../src/node/member-dir.js';
import { restoreSnapshotToDataDir, snapshotFormat } from '../../src/node/restore.js';
import { memberIdFor } from '../../src/replica/ids.js';
import { MEMBERS_META_NAME, Members } from '../../src/replica/members.js';

const scratch = mkdtempSync(join(tmpdir(), 'restore-test-'));
after(() => rmSync(scratch, { recursive: true, force: true }));
let n = 0;
const fresh = (name: string) => join(scratch, `${name}-${n++}`);
const b = (s: string) => Buffer.from(s);
const put = (key: string, value: string): WriteOp => ({
  type: 'put',
  request: { key: b(key), value: b(value) },
});

/** A source keyspace with a little history: revision 4, compacted at 2, one lease. */
async function sourceKeyspace(): Promise<Keyspace> {
  const ks = Keyspace.open(fresh('source'), { noSync: true });
  ks.applyBatch([
    { index: 1, op: put('a', '1') },
    { index: 2, op: put('a', '2') },
    { index: 3, op: { type: 'leaseGrant', request: { id: 42n, ttlSeconds: 90 } } },
    { index: 4, op: { type: 'put', request: { key: b('leased'), value: b('x'), lease: 42n } } },
    { index: 5, op: { type: 'compact', request: { revision: 2 } } },
  ]);
  return ks;
}

function withTrailer(path: string, bytes: Buffer): string {
  writeFileSync(path, Buffer.concat([bytes, createHash('sha256').update(bytes).digest()]));
  return path;
}

async function etcdSnapshotFile(): Promise<{ path: string; bytes: Buffer }> {
  const ks = await sourceKeyspace();
  try {
    const snapshot = await createEtcdSnapshot(ks, {
      members: [],
      removedMemberIds: [],
      alarms: [],
      clusterVersion: '3.4.0',
    });
    const chunks: Buffer[] = [];
    for await (const chunk of snapshot.chunks()) chunks.push(Buffer.from(chunk));
    const bytes = Buffer.concat(chunks);
    return { path: withTrailer(fresh('etcd.db'), bytes), bytes };
  } finally {
    await ks.close();
  }
}

async function restoredState(dataDir: string) {
  const ks = Keyspace.open(join(dataDir, 'member', 'db'));
  try {
    return {
      applied: ks.appliedIndex(),
      revision: ks.currentRevision(),
      compact: ks.compactRevision(),
      values: ks
        .range({ key: b('\0'), rangeEnd: b('\0') })
        .kvs.map((kv) => `${kv.key}=${kv.value}@${kv.modRevision}`),
      leases: ks.leases().map((l) => `${l.id}:${l.ttlSeconds}`),
      members: ks.getMeta(MEMBERS_META_NAME),
    };
  } finally {
    await ks.close();
  }
}

test('an etcd-format snapshot restores keys, revisions, leases and the compaction point', async () => {
  const { path } = await etcdSnapshotFile();
  assert.equal(snapshotFormat(path), 'etcd');
  const dataDir = fresh('data');
  const result = await restoreSnapshotToDataDir({ snapshotPath: path, dataDir });
  assert.deepEqual(
    {
      format: result.format,
      revision: result.revision,
      compact: result.compactRevision,
      keys: result.keys,
      leases: result.leases,
    },
    { format: 'etcd', revision: 4, compact: 2, keys: 2, leases: 1 },
  );
  const state = await restoredState(dataDir);
  assert.deepEqual(state.values, ['a=2@3', 'leased=x@4']);
  assert.deepEqual(state.leases, ['42:90']);
  assert.equal(state.applied, 0, 'the new cluster log starts over');
  assert.equal(
    state.members,
    undefined,
    'without --initial-cluster the membership comes from the start flags',
  );
  assert.equal(readSelfId(join(dataDir, 'member')), undefined);
});

test('an older Concord snapshot (an LMDB copy with the trailer) still restores', async () => {
  const ks = await sourceKeyspace();
  const copy = fresh('lmdb');
  try {
    await ks.createSnapshot(copy);
  } finally {
    await ks.close();
  }
  const path = withTrailer(fresh('lmdb.db'), readFileSync(copy));
  assert.equal(snapshotFormat(path), 'concord');
  const dataDir = fresh('data');
  const result = await restoreSnapshotToDataDir({ snapshotPath: path, dataDir });
  assert.equal(result.format, 'concord');
  const state = await restoredState(dataDir);
  assert.deepEqual([state.revision, state.compact, state.applied], [4, 2, 0]);
  assert.deepEqual(state.values, ['a=2@3', 'leased=x@4']);
});

test("etcd's trailer rules: missing needs --skip-hash-check, a mismatch is refused, nothing is left behind", async () => {
  const { path, bytes } = await etcdSnapshotFile();
  const bare = fresh('bare.db');
  writeFileSync(bare, bytes);
  const dataDir = fresh('data');
  await assert.rejects(
    restoreSnapshotToDataDir({ snapshotPath: bare, dataDir }),
    /snapshot missing hash but --skip-hash-check=false/,
  );
  assert.equal(existsSync(join(dataDir, 'member')), false);
  const restored = await restoreSnapshotToDataDir({ snapshotPath: bare, dataDir, skipHashCheck: true });
  assert.equal(restored.revision, 4);

  const tampered = readFileSync(path);
  tampered[5000] = (tampered[5000]! + 1) & 0xff;
  const bad = fresh('bad.db');
  writeFileSync(bad, tampered);
  const other = fresh('data');
  await assert.rejects(restoreSnapshotToDataDir({ snapshotPath: bad, dataDir: other }), /sha256 mismatch/);
  assert.equal(existsSync(join(other, 'member')), false);

  // A damaged page found while importing (the hash check skipped): a clear error, no data dir.
  const damaged = Buffer.from(bytes);
  damaged.writeUInt16LE(0x10, 3 * 4096 + 8);
  const pageBad = fresh('page.db');
  writeFileSync(pageBad, damaged);
  await assert.rejects(
    restoreSnapshotToDataDir({ snapshotPath: pageBad, dataDir: other, skipHashCheck: true }),
    /expected a branch or leaf page/,
  );
  assert.equal(existsSync(join(other, 'member')), false);

  await assert.rejects(restoreSnapshotToDataDir({ snapshotPath: path, dataDir }), /exists and is not empty/);
});

test("etcdctl's cluster flags fix the membership and the member's ID, with the IDs concord derives", async () => {
  const { path } = await etcdSnapshotFile();
  const initialCluster = new Map([
    ['n1', ['http://10.0.0.1:2380']],
    ['n2', ['http://10.0.0.2:2380']],
    ['n3', ['http://10.0.0.3:2380']],
  ]);
  const cluster = {
    name: 'n2',
    initialCluster,
    initialClusterToken: 'tok',
    initialAdvertisePeerUrls: ['http://10.0.0.2:2380'],
  };
  const dataDir = fresh('data');
  const result = await restoreSnapshotToDataDir({ snapshotPath: path, dataDir, cluster });
  const n2 = memberIdFor(['http://10.0.0.2:2380'], 'tok');
  assert.equal(result.memberId, n2);
  assert.equal(readSelfId(join(dataDir, 'member')), n2);
  const members = Members.decode((await restoredState(dataDir)).members!);
  assert.deepEqual(
    members
      .list()
      .map((m) => `${m.name}=${m.peerUrls.join(',')}`)
      .sort(),
    ['n1=http://10.0.0.1:2380', 'n2=http://10.0.0.2:2380', 'n3=http://10.0.0.3:2380'],
  );

  await assert.rejects(
    restoreSnapshotToDataDir({
      snapshotPath: path,
      dataDir: fresh('data'),
      cluster: { ...cluster, name: 'n9' },
    }),
    /couldn't find local name "n9" in the initial cluster configuration/,
  );
  await assert.rejects(
    restoreSnapshotToDataDir({
      snapshotPath: path,
      dataDir: fresh('data'),
      cluster: { ...cluster, initialAdvertisePeerUrls: ['http://10.0.0.9:2380'] },
    }),
    /--initial-cluster has n2=http:\/\/10\.0\.0\.2:2380 but missing from --initial-advertise-peer-urls/,
  );
});

test("concord refuses an etcd member's data dir (member/snap/db is a file) and accepts its own", () => {
  const etcdDir = fresh('etcd-dir');
  mkdirSync(join(etcdDir, 'member', 'snap'), { recursive: true });
  writeFileSync(join(etcdDir, 'member', 'snap', 'db'), Buffer.alloc(8192));
  assert.throws(
    () => refuseEtcdDataDir(etcdDir),
    (error: unknown) => {
      assert.ok(error instanceof EtcdDataDirError);
      assert.match(error.message, /holds an etcd member.*concordctl snapshot restore/s);
      return true;
    },
  );
  const ours = fresh('concord-dir');
  mkdirSync(join(ours, 'member', 'snap'), { recursive: true });
  mkdirSync(join(ours, 'member', 'db'), { recursive: true });
  refuseEtcdDataDir(ours);
  refuseEtcdDataDir(fresh('does-not-exist'));
});

test('a file in neither format is refused with both named', async () => {
  const path = fresh('junk.db');
  writeFileSync(path, Buffer.alloc(4096 * 3 + 32, 0x5a));
  const dataDir = fresh('data');
  await assert.rejects(
    restoreSnapshotToDataDir({ snapshotPath: path, dataDir, skipHashCheck: true }),
    /is neither an etcd snapshot \(bbolt\) nor a readable Concord one \(LMDB\)/,
  );
  assert.equal(existsSync(join(dataDir, 'member')), false);
});
