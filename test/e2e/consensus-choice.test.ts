// The consensus engine is chosen per cluster and kept by the data dir: a member of a Multi-Paxos
// cluster restarted without --consensus multi-paxos (so on Raft) refuses to start, says which
// flags its data dir needs, and starts again with them, its data intact.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type ProcessCluster, startConcordCluster } from '../support/cluster.js';
import { etcdctlOk } from '../support/etcdctl.js';
import { pollUntil } from '../support/process-cluster.js';

describe('consensus choice on real processes', { timeout: 90_000 }, () => {
  let cluster: ProcessCluster;

  before(async () => {
    cluster = await startConcordCluster({ size: 1, consensus: 'multi-paxos' });
  });
  after(async () => {
    await cluster?.dispose();
  });

  it('a restart with another engine exits 2 naming the flags; with the right ones the data is there', async () => {
    await cluster.withLogsOnFailure(async () => {
      const endpoints = cluster.endpoints();
      await etcdctlOk(['put', 'engine/k', 'paxos'], { endpoints });
      await cluster.stop(0);
      const member = cluster.member(0);
      const paxosFlags = member.flags;
      const at = paxosFlags.indexOf('--consensus');
      member.flags = [...paxosFlags.slice(0, at), ...paxosFlags.slice(at + 2)];
      await cluster.restart(0, { waitHealthy: false });
      await pollUntil('the member started as Raft to exit', 20_000, async () =>
        member.exitCode !== null ? true : undefined,
      );
      assert.equal(member.exitCode, 2);
      assert.match(
        member.log.text(),
        /belongs to a cluster running multi-paxos \(majority quorums\), but this member was started with raft.*restart with --consensus multi-paxos/,
      );
      member.flags = paxosFlags;
      await cluster.restart(0);
      assert.equal(await etcdctlOk(['get', 'engine/k', '--print-value-only'], { endpoints }), 'paxos\n');
    });
  });
});
