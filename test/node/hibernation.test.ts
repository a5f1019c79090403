import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { NodeId } from '../../src/raft/types.js';
import type { GroupId } from '../../src/transport/transport.js';
import { type GroupReplica, ManyGroupsNode } from './many-groups-fixture.js';

// Three nodes in one process, each hosting the same groups with quiescence on, over real peer
// transports: idle groups hibernate (no ticks, no messages), wake on a proposal, and a node that
// goes away wakes the groups it led on the others, which elect new leaders.

const NODE_IDS: NodeId[] = [1, 2, 3];
const GROUPS: GroupId[] = Array.from({ length: 12 }, (_, g) => g + 1);

async function waitUntil(what: string, condition: () => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

function leaderOf(
  nodes: ManyGroupsNode[],
  group: GroupId,
): { node: ManyGroupsNode; replica: GroupReplica } | undefined {
  for (const node of nodes) {
    const replica = node.replicas.get(group)!;
    if (replica.raft.status().softState.role === 'leader') return { node, replica };
  }
  return undefined;
}

const sent = (node: ManyGroupsNode): number =>
  Object.values(node.transport.stats().peers).reduce((s, p) => s + p.messagesSent, 0);

describe('hibernating groups on a node', () => {
  it('idle groups stop ticking and sending, wake on a proposal, and re-elect when a leader node leaves', async () => {
    const nodes: ManyGroupsNode[] = [];
    try {
      for (const id of NODE_IDS)
        nodes.push(
          await ManyGroupsNode.start({
            id,
            voters: NODE_IDS,
            groups: GROUPS,
            quiesce: true,
            tickMs: 10,
            pingIntervalMs: 100,
            idleTimeoutMs: 500,
          }),
        );
      for (const a of nodes) for (const b of nodes) if (a !== b) a.transport.addPeer(b.id, b.transport.url);
      for (const node of nodes) node.startHosts();

      await waitUntil('every replica hibernating', () =>
        nodes.every(
          (n) => n.counts().hibernating === GROUPS.length && n.counts().withLeader === GROUPS.length,
        ),
      );
      for (const node of nodes)
        assert.equal(node.driver.stats().registered, 0, `node ${node.id}: no group ticked`);
      const before = nodes.map(sent);
      const ticksBefore = nodes.map((n) => n.driver.stats().ticks);
      await new Promise((resolve) => setTimeout(resolve, 300));
      assert.deepEqual(nodes.map(sent), before, 'no Raft message while hibernating');
      assert.deepEqual(
        nodes.map((n) => n.driver.stats().ticks),
        ticksBefore,
        'no tick while hibernating',
      );

      // A proposal wakes its group; it commits everywhere and the group hibernates again.
      const group = GROUPS[0]!;
      const first = leaderOf(nodes, group)!;
      assert.ok(first.replica.raft.propose(new TextEncoder().encode('p1')).ok);
      first.replica.host.schedule();
      await waitUntil('p1 applied everywhere', () =>
        nodes.every((n) => n.replicas.get(group)!.applied.includes('p1')),
      );
      await waitUntil('hibernating again', () =>
        nodes.every((n) => n.replicas.get(group)!.host.isHibernating),
      );

      // The node leading `group` leaves; its connections close, the others hear it is unreachable,
      // and every group it led elects a leader among the two left.
      const gone = first.node;
      const led = GROUPS.filter((g) => leaderOf([gone], g) !== undefined);
      assert.ok(led.includes(group));
      await gone.stop();
      nodes.splice(nodes.indexOf(gone), 1);
      await waitUntil('a new leader for every group the gone node led', () =>
        led.every((g) => leaderOf(nodes, g) !== undefined),
      );
      const next = leaderOf(nodes, group)!;
      assert.ok(next.replica.raft.propose(new TextEncoder().encode('p2')).ok);
      next.replica.host.schedule();
      await waitUntil('p2 applied on both', () =>
        nodes.every((n) => n.replicas.get(group)!.applied.includes('p2')),
      );
    } finally {
      for (const node of nodes) await node.stop();
    }
  });
});
