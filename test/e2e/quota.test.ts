// The space quota: past --quota-backend-bytes a member raises the NOSPACE alarm, the cluster
// refuses writes that add data with etcd's error while reads and deletes still work, and after
// compaction, defragmentation and `alarm disarm` writes are accepted again (etcd's procedure).

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type ProcessCluster, startConcordCluster } from '../support/cluster.js';
import { etcdctl, etcdctlOk } from '../support/etcdctl.js';
import { pollUntil } from '../support/process-cluster.js';

const quotaBytes = 2 * 1024 * 1024;
const valueBytes = 64 * 1024;

describe('space quota and the NOSPACE alarm', { timeout: 120_000 }, () => {
  let cluster: ProcessCluster;
  before(async () => {
    cluster = await startConcordCluster({
      size: 1,
      extraFlags: ['--quota-backend-bytes', String(quotaBytes)],
    });
  });
  after(async () => {
    await cluster?.dispose();
  });

  it('raises NOSPACE past the quota, refuses puts, and recovers after compact, defrag and disarm', async () => {
    await cluster.withLogsOnFailure(async () => {
      const endpoints = [cluster.endpoint(0)];
      const value = 'x'.repeat(valueBytes);
      let refused = '';
      // Each put adds 64 KiB; the alarm must be raised within a bounded number of writes.
      for (let i = 0; i < 200 && refused === ''; i++) {
        const result = await etcdctl(['put', `big/${i % 8}`, value], { endpoints });
        if (result.code !== 0) refused = result.stderr;
      }
      assert.match(refused, /etcdserver: mvcc: database space exceeded/);

      const alarms = await etcdctlOk(['alarm', 'list'], { endpoints });
      assert.match(alarms, /alarm:NOSPACE/);
      // Reads still work while the alarm is raised.
      const read = await etcdctlOk(['get', 'big/0', '--print-value-only'], { endpoints });
      assert.equal(read.trim().length, valueBytes);

      // etcd's recovery procedure: compact history, defragment, disarm.
      const status = JSON.parse(
        await etcdctlOk(['endpoint', 'status', '-w', 'json'], { endpoints }),
      ) as Array<{
        Status: { header: { revision: number } };
      }>;
      const revision = status[0]!.Status.header.revision;
      await etcdctlOk(['del', 'big/', '--prefix'], { endpoints });
      await etcdctlOk(['compaction', String(revision + 1)], { endpoints });
      await etcdctlOk(['defrag'], { endpoints });
      await etcdctlOk(['alarm', 'disarm'], { endpoints });
      await pollUntil('writes accepted again', 10_000, async () => {
        const result = await etcdctl(['put', 'after', 'ok'], { endpoints });
        return result.code === 0 ? true : undefined;
      });
      assert.equal((await etcdctlOk(['alarm', 'list'], { endpoints })).trim(), '');
    });
  });
});
