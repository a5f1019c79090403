// A starting member serves clients only once its own name and client URLs are applied (etcd's
// ReadyNotify: its listeners answer nothing before the publish entry applies). Each member of a
// fresh cluster is asked for the member list from the moment it is spawned; the first answer it
// gives must already name it with its client URL.

import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { type ProcessCluster, startConcordCluster } from '../support/cluster.js';
import { requestJson } from '../support/process-cluster.js';

interface MemberJson {
  name?: string;
  clientURLs?: string[];
}

const PROBE_INTERVAL_MS = 5;
const PROBE_TIMEOUT_MS = 60_000;

/** The first member list `clientUrl` answers, asked every few ms until it answers or `stop()`. */
async function firstMemberList(clientUrl: string, stopped: () => boolean): Promise<MemberJson[] | undefined> {
  const deadline = Date.now() + PROBE_TIMEOUT_MS;
  while (!stopped() && Date.now() < deadline) {
    try {
      const answer = await requestJson(`${clientUrl}/v3/cluster/member/list`, { body: {}, timeoutMs: 2_000 });
      if (answer.status === 200) return (answer.body as { members?: MemberJson[] }).members ?? [];
    } catch {
      // not listening yet
    }
    await sleep(PROBE_INTERVAL_MS);
  }
  return undefined;
}

describe('a starting member serves only once published', { timeout: 120_000 }, () => {
  let cluster: ProcessCluster | undefined;
  let done = false;
  after(async () => {
    done = true;
    await cluster?.dispose();
  });

  it('answers its first member list with its own name and client URL', async () => {
    const probes: Promise<{ name: string; clientUrl: string; members: MemberJson[] | undefined }>[] = [];
    cluster = await startConcordCluster({
      size: 3,
      startTimeoutMs: 60_000,
      beforeStart: async (plan) => {
        for (const member of plan.members)
          probes.push(
            firstMemberList(member.clientUrl, () => done).then((members) => ({
              name: member.name,
              clientUrl: member.clientUrl,
              members,
            })),
          );
      },
    });
    for (const probe of await Promise.all(probes)) {
      assert.ok(probe.members !== undefined, `${probe.name} never answered a member list`);
      const own = probe.members.find((m) => m.name === probe.name);
      assert.deepEqual(
        own?.clientURLs,
        [probe.clientUrl],
        `${probe.name}'s first member list: ${JSON.stringify(probe.members)}`,
      );
    }
  });
});
