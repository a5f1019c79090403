import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { type GroupLog, SharedWal } from '../../src/node/group-log.js';
import { MemoryStorage } from '../../src/raft/memory-storage.js';
import { RaftNode } from '../../src/raft/node.js';
import { type Entry, EntryType, Role } from '../../src/raft/types.js';
import { RaftHost } from '../../src/replica/raft-host.js';
import { SimRng } from '../../src/sim/rng.js';
import { PeerTransport } from '../../src/transport/peer-transport.js';
import type { GroupId } from '../../src/transport/transport.js';
import { quietEvents } from '../replica/host-fixtures.js';

// Three nodes, each hosting the same five Raft groups over ONE PeerTransport (one connection per
// node pair for every group) and ONE shared WAL: the pieces a node hosting many groups is made of,
// driven by the production host loop.

const NODE_IDS = [1, 2, 3];
const GROUPS: GroupId[] = [0, 1, 2, 3, 4];
const TICK_MS = 10;

interface Replica {
  raft: RaftNode;
  host: RaftHost;
  applied: string[];
}

interface HostedNode {
  id: number;
  dir: string;
  wal: SharedWal;
  transport: PeerTransport;
  replicas: Map<GroupId, Replica>;
  /** persist() calls of all its groups, to compare with the WAL's fdatasyncs. */
  persists: number;
}

const decoder = new TextDecoder();

function bootstrappedStorage(): MemoryStorage {
  const storage = new MemoryStorage();
  const confState = {
    voters: NODE_IDS,
    learners: [],
    votersOutgoing: [],
    learnersNext: [],
    autoLeave: false,
  };
  storage.applySnapshot({ metadata: { index: 1, term: 1, confState }, data: new Uint8Array(0) });
  storage.setHardState({ term: 1, vote: 0, commit: 1 });
  return storage;
}

function hostReplica(node: HostedNode, group: GroupId): Replica {
  const storage = bootstrappedStorage();
  const raft = new RaftNode({
    id: node.id,
    electionTicks: 50,
    heartbeatTicks: 1,
    storage,
    rng: new SimRng(node.id, group),
    applied: 1,
    checkQuorum: true,
    preVote: true,
  });
  const applied: string[] = [];
  const stateMachine = {
    restoreSnapshot: async () => {},
    applyEntries: async (entries: Entry[]) => {
      for (const e of entries)
        if (e.type === EntryType.Normal && e.data.length > 0) applied.push(decoder.decode(e.data));
    },
  };
  const sender = {
    send: (messages: Parameters<PeerTransport['send']>[0]) => node.transport.send(messages, group),
    flush: () => node.transport.flush(),
  };
  const log = node.wal.groupLog(group);
  const countingLog = {
    persist: (update: Parameters<GroupLog['persist']>[0]) => {
      node.persists++;
      return log.persist(update);
    },
    persistCommit: (hardState: Parameters<GroupLog['persistCommit']>[0]) => log.persistCommit(hardState),
  };
  const host = new RaftHost(raft, storage, countingLog, sender, stateMachine, quietEvents, TICK_MS);
  node.transport.addGroup(group, {
    onMessage: (m) => {
      raft.step(m);
      host.schedule();
    },
    onSnapshotStatus: (peer, ok) => {
      raft.reportSnapshot(peer, ok);
      host.schedule();
    },
  });
  return { raft, host, applied };
}

async function startNode(id: number): Promise<HostedNode> {
  const dir = await mkdtemp(join(tmpdir(), `concord-multi-group-${id}-`));
  const wal = await SharedWal.open(dir);
  const replicas = new Map<GroupId, Replica>();
  const transport = new PeerTransport({
    nodeId: id,
    clusterId: 'multi-group',
    listenUrl: 'http://127.0.0.1:0',
    backoffMinMs: 10,
    backoffMaxMs: 100,
    // A peer is a node: every group with a replica there hears of it.
    onUnreachable: (peer) => {
      for (const replica of replicas.values()) replica.raft.reportUnreachable(peer);
    },
  });
  const node: HostedNode = { id, dir, wal, transport, replicas, persists: 0 };
  for (const group of GROUPS) replicas.set(group, hostReplica(node, group));
  await transport.listen();
  return node;
}

async function waitUntil(what: string, condition: () => boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

function leaderOf(nodes: HostedNode[], group: GroupId): Replica | undefined {
  for (const node of nodes) {
    const replica = node.replicas.get(group)!;
    if (replica.raft.status().softState.role === Role.Leader) return replica;
  }
  return undefined;
}

describe('one node hosting many groups', () => {
  it('elects, replicates and persists five groups over one connection per pair and one WAL per node', async (t) => {
    const nodes: HostedNode[] = [];
    try {
      for (const id of NODE_IDS) nodes.push(await startNode(id));
      for (const a of nodes) for (const b of nodes) if (a !== b) a.transport.addPeer(b.id, b.transport.url);
      for (const node of nodes) for (const replica of node.replicas.values()) replica.host.start();

      await waitUntil('a leader in every group', () => GROUPS.every((g) => leaderOf(nodes, g) !== undefined));
      const proposals = 20;
      for (let k = 0; k < proposals; k++) {
        for (const group of GROUPS) {
          const data = new TextEncoder().encode(`g${group}-${k}`);
          for (;;) {
            const leader = leaderOf(nodes, group);
            if (leader?.raft.propose(data).ok) {
              leader.host.schedule();
              break;
            }
            await new Promise((resolve) => setTimeout(resolve, 5));
          }
        }
        await new Promise((resolve) => setTimeout(resolve, 2));
      }
      const expected = (group: GroupId): string[] =>
        Array.from({ length: proposals }, (_, k) => `g${group}-${k}`);
      await waitUntil('every replica applied its group', () =>
        nodes.every((node) =>
          GROUPS.every((g) => node.replicas.get(g)!.applied.length >= expected(g).length),
        ),
      );
      for (const node of nodes) {
        for (const group of GROUPS) {
          assert.deepEqual(
            node.replicas.get(group)!.applied,
            expected(group),
            `node ${node.id} group ${group}`,
          );
        }
        const peers = node.transport.stats().peers;
        for (const other of NODE_IDS) {
          if (other === node.id) continue;
          assert.equal(
            peers[String(other)]!.connects,
            1,
            `one connection ${node.id}↔${other} for all groups`,
          );
        }
        assert.equal(node.transport.stats().messagesDroppedUnknownGroup, 0);
      }
      for (const node of nodes)
        t.diagnostic(`node ${node.id}: ${node.persists} persists, ${node.wal.stats().datasyncs} fdatasyncs`);

      for (const node of nodes) for (const replica of node.replicas.values()) replica.host.stop();
      for (const node of nodes) await node.transport.close();
      for (const node of nodes) await node.wal.close();
      for (const node of nodes) {
        const reopened = await SharedWal.open(node.dir);
        try {
          assert.deepEqual(reopened.groups(), GROUPS);
          for (const group of GROUPS) {
            const data = reopened
              .recovered(group)
              .entries.filter((e) => e.type === EntryType.Normal && e.data.length > 0)
              .map((e) => decoder.decode(e.data));
            assert.deepEqual(data, expected(group), `node ${node.id} group ${group} recovered its own log`);
          }
        } finally {
          await reopened.close();
        }
      }
    } finally {
      for (const node of nodes) {
        for (const replica of node.replicas.values()) replica.host.stop();
        await node.transport.close();
        await node.wal.close().catch(() => undefined);
        await rm(node.dir, { recursive: true, force: true });
      }
    }
  });
});
