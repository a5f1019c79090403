// Structured logs of real members: the new leader after a leader kill logs one zap-shaped line
// with its member id, term and index; an apply over --warning-apply-duration is logged with
// how long it took.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type ProcessCluster, startConcordCluster } from '../support/cluster.js';
import { etcdctlOk } from '../support/etcdctl.js';
import { memberStatus, pollUntil } from '../support/process-cluster.js';

type LogRecord = Record<string, unknown> & { level: string; ts: string; caller: string; msg: string };

function records(text: string): LogRecord[] {
  return text
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as LogRecord);
}

describe('structured logs', { timeout: 120_000 }, () => {
  let cluster: ProcessCluster;
  before(async () => {
    cluster = await startConcordCluster({
      size: 3,
      startTimeoutMs: 60_000,
      // Every apply is "slow" against a nanosecond.
      extraFlags: ['--warning-apply-duration', '1ns'],
    });
  });
  after(async () => {
    await cluster?.dispose();
  });

  it('logs a slow apply with its duration and the expected one', async () => {
    await cluster.withLogsOnFailure(async () => {
      const leader = await cluster.leaderIndex();
      await etcdctlOk(['put', 'logs/slow', 'v'], { endpoints: [cluster.endpoint(leader)] });
      const slow = await pollUntil('a slow-apply warning', 10_000, async () =>
        records(cluster.member(leader).log.text()).find((r) => r.msg === 'apply request took too long'),
      );
      assert.equal(slow.level, 'warn');
      assert.match(String(slow.took), /^\d+(\.\d+)?ms$/);
      assert.equal(slow['expected-duration'], '0.000001ms');
      assert.match(slow.caller, /^replica\/group-replica\.js:\d+$/);
    });
  });

  it('the new leader after a leader kill logs "became leader" with member id, term and index', async () => {
    await cluster.withLogsOnFailure(async () => {
      const oldLeader = await cluster.leaderIndex();
      const oldTerm = Number((await memberStatus(cluster.endpoint(oldLeader))).raftTerm);
      const oldLeaderId = BigInt(cluster.member(oldLeader).memberId).toString(16);
      await cluster.kill(oldLeader);
      const newLeader = await cluster.leaderIndex(30_000);
      assert.notEqual(newLeader, oldLeader);
      const memberId = BigInt(cluster.member(newLeader).memberId).toString(16);
      const line = await pollUntil('the new leader to log it', 10_000, async () =>
        records(cluster.member(newLeader).log.text()).find(
          (r) => r.msg === 'became leader' && Number(r.term) > oldTerm,
        ),
      );
      assert.deepEqual(Object.keys(line).slice(0, 4), ['level', 'ts', 'caller', 'msg']);
      assert.equal(line.level, 'info');
      assert.ok(Number.isFinite(Date.parse(line.ts)));
      assert.match(line.caller, /^replica\/group-replica\.js:\d+$/);
      assert.equal(line['local-member-id'], memberId);
      assert.equal(line.name, cluster.member(newLeader).name);
      assert.ok(Number(line.index) > 0, 'the commit index it took over at');
      // The cause: the killed leader (or, if the loaded machine saw another election meanwhile,
      // the leader before this one; never empty, never itself).
      assert.notEqual(line['previous-leader'], '');
      assert.notEqual(line['previous-leader'], memberId);
      if (Number(line.term) === oldTerm + 1) assert.equal(line['previous-leader'], oldLeaderId);
      const sameTerm = records(cluster.member(newLeader).log.text()).filter(
        (r) => r.msg === 'became leader' && r.term === line.term,
      );
      assert.equal(sameTerm.length, 1, 'logged once');
    });
  });
});
