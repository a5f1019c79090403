// Disaster recovery as with etcd: `snapshot save` from a live member, `snapshot restore` into
// fresh data dirs, a new cluster started from them serves the saved data (keys, revisions,
// history up to the snapshot) and accepts new writes.

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type ProcessCluster, startConcordCluster } from '../support/cluster.js';
import { runConcordctl } from '../support/concordctl.js';
import { etcdctlOk } from '../support/etcdctl.js';

async function run(args: string[]): Promise<{ code: number | null; out: string }> {
  const result = await runConcordctl(args);
  return { code: result.code, out: result.stdout + result.stderr };
}

describe('snapshot save and restore', { timeout: 120_000 }, () => {
  let source: ProcessCluster;
  let scratch: string;
  before(async () => {
    scratch = await mkdtemp(join(tmpdir(), 'concord-restore-'));
    source = await startConcordCluster({ size: 1 });
  });
  after(async () => {
    await source?.dispose();
    await rm(scratch, { recursive: true, force: true });
  });

  it('a cluster restored from a saved snapshot serves the saved data and takes new writes', async () => {
    const endpoints = [source.endpoint(0)];
    for (let i = 0; i < 20; i++) await etcdctlOk(['put', `saved/${i}`, `v${i}`], { endpoints });
    const savedRevision = JSON.parse(await etcdctlOk(['get', 'saved/0', '-w', 'json'], { endpoints })).header
      .revision;
    const file = join(scratch, 'backup.db');
    // etcdctl's own `snapshot save` writes the file (sha256 trailer included).
    await etcdctlOk(['snapshot', 'save', file], { endpoints });
    await etcdctlOk(['put', 'saved/after-snapshot', 'not in the backup'], { endpoints });

    const dataDir = join(scratch, 'restored');
    const restored = await run(['snapshot', 'restore', file, '--data-dir', dataDir]);
    assert.equal(restored.code, 0, restored.out);
    const again = await run(['snapshot', 'restore', file, '--data-dir', dataDir]);
    assert.notEqual(again.code, 0, 'restoring over an existing data dir is refused');

    const target = await startConcordCluster({ size: 1, dataDirs: [dataDir] });
    try {
      const targetEndpoints = [target.endpoint(0)];
      const got = JSON.parse(
        await etcdctlOk(['get', 'saved/', '--prefix', '-w', 'json'], { endpoints: targetEndpoints }),
      );
      assert.equal(got.count, 20);
      assert.equal(got.header.revision, savedRevision, 'the revision continues from the snapshot');
      await etcdctlOk(['put', 'new/key', 'x'], { endpoints: targetEndpoints });
      const after = JSON.parse(
        await etcdctlOk(['get', 'new/key', '-w', 'json'], { endpoints: targetEndpoints }),
      );
      assert.equal(after.kvs[0].mod_revision, savedRevision + 1);
    } finally {
      await target.dispose();
    }
  });
});
