// A learner receives the log but does not serve its clients anything but serializable reads
// and Status, as etcd does ("etcdserver: rpc not supported for learner"); once promoted it
// serves everything.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type ProcessCluster, startConcordCluster } from '../support/cluster.js';
import { etcdctl, etcdctlOk } from '../support/etcdctl.js';
import { pollUntil } from '../support/process-cluster.js';

describe('learner members', { timeout: 120_000 }, () => {
  let cluster: ProcessCluster;
  before(async () => {
    cluster = await startConcordCluster({ size: 3 });
  });
  after(async () => {
    await cluster?.dispose();
  });

  it('a learner refuses writes and linearizable reads, serves serializable reads, and serves all once promoted', async () => {
    await cluster.withLogsOnFailure(async () => {
      const voters = cluster.endpoints();
      await etcdctlOk(['put', 'learner/k', 'v1'], { endpoints: voters });
      const learner = await cluster.addMember({ learner: true });
      const onLearner = { endpoints: [cluster.endpoint(learner)] };

      const put = await etcdctl(['put', 'learner/k', 'v2'], onLearner);
      assert.notEqual(put.code, 0);
      assert.match(put.stderr, /rpc not supported for learner/);
      const linearizable = await etcdctl(['get', 'learner/k'], onLearner);
      assert.match(linearizable.stderr, /rpc not supported for learner/);
      await pollUntil('the learner to have the key', 15_000, async () => {
        const got = await etcdctl(['get', 'learner/k', '--consistency=s', '--print-value-only'], onLearner);
        return got.stdout.trim() === 'v1' ? true : undefined;
      });

      await pollUntil('promotion to be accepted', 20_000, async () => {
        const result = await etcdctl(
          ['member', 'promote', BigInt(cluster.member(learner).memberId).toString(16)],
          {
            endpoints: voters,
          },
        );
        return result.code === 0 ? true : undefined;
      });
      await pollUntil('the promoted member to take writes', 15_000, async () => {
        const result = await etcdctl(['put', 'learner/k', 'v3'], onLearner);
        return result.code === 0 ? true : undefined;
      });
      assert.equal(
        (await etcdctlOk(['get', 'learner/k', '--print-value-only'], { endpoints: voters })).trim(),
        'v3',
      );
    });
  });
});
