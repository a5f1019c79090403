// One node hosting many Raft groups the way a sharded node will: one PeerTransport (one
// connection per node pair), one shared WAL, one TickDriver, a RaftHost per group. Used by the
// hibernation test (several nodes in one process) and the idle-groups bench (one node per process).

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SharedWal } from '../../src/node/group-log.js';
import { TickDriver } from '../../src/node/tick-driver.js';
import { MemoryStorage } from '../../src/raft/memory-storage.js';
import { RaftNode } from '../../src/raft/node.js';
import { type Entry, EntryType, type NodeId, Role } from '../../src/raft/types.js';
import { RaftHost } from '../../src/replica/raft-host.js';
import { SimRng } from '../../src/sim/rng.js';
import { PeerTransport } from '../../src/transport/peer-transport.js';
import type { GroupId } from '../../src/transport/transport.js';
import { quietEvents } from '../replica/host-fixtures.js';

export interface GroupReplica {
  group: GroupId;
  raft: RaftNode;
  host: RaftHost;
  applied: string[];
}

export interface ManyGroupsNodeOptions {
  id: NodeId;
  voters: NodeId[];
  groups: GroupId[];
  quiesce: boolean;
  /** Default 127.0.0.1:0. */
  listenUrl?: string;
  tickMs?: number;
  electionTicks?: number;
  /** Transport keep-alive and silence timeout (defaults: the transport's, 1 s and 5 s). */
  pingIntervalMs?: number;
  idleTimeoutMs?: number;
}

const decoder = new TextDecoder();

export class ManyGroupsNode {
  readonly replicas = new Map<GroupId, GroupReplica>();
  readonly driver = new TickDriver();

  private constructor(
    readonly id: NodeId,
    readonly dir: string,
    readonly wal: SharedWal,
    readonly transport: PeerTransport,
  ) {}

  static async start(options: ManyGroupsNodeOptions): Promise<ManyGroupsNode> {
    const dir = await mkdtemp(join(tmpdir(), `concord-many-groups-${options.id}-`));
    const wal = await SharedWal.open(dir);
    let node: ManyGroupsNode | undefined;
    const transport = new PeerTransport({
      nodeId: options.id,
      clusterId: 'many-groups',
      listenUrl: options.listenUrl ?? 'http://127.0.0.1:0',
      backoffMinMs: 20,
      backoffMaxMs: 200,
      ...(options.pingIntervalMs !== undefined ? { pingIntervalMs: options.pingIntervalMs } : {}),
      ...(options.idleTimeoutMs !== undefined ? { idleTimeoutMs: options.idleTimeoutMs } : {}),
      // A peer is a node: every group hears of it; a hibernating follower whose leader was there wakes.
      onUnreachable: (peer) => {
        for (const r of node?.replicas.values() ?? []) {
          r.raft.reportUnreachable(peer);
          r.host.schedule();
        }
      },
    });
    node = new ManyGroupsNode(options.id, dir, wal, transport);
    for (const group of options.groups) node.host(group, options);
    await transport.listen();
    return node;
  }

  private host(group: GroupId, options: ManyGroupsNodeOptions): void {
    const storage = new MemoryStorage();
    const confState = {
      voters: options.voters,
      learners: [],
      votersOutgoing: [],
      learnersNext: [],
      autoLeave: false,
    };
    storage.applySnapshot({ metadata: { index: 1, term: 1, confState }, data: new Uint8Array(0) });
    storage.setHardState({ term: 1, vote: 0, commit: 1 });
    const raft = new RaftNode({
      id: this.id,
      electionTicks: options.electionTicks ?? 10,
      heartbeatTicks: 1,
      storage,
      rng: new SimRng(this.id, group),
      applied: 1,
      checkQuorum: true,
      preVote: true,
      quiesce: options.quiesce,
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
      send: (messages: Parameters<PeerTransport['send']>[0]) => this.transport.send(messages, group),
      flush: () => this.transport.flush(),
    };
    const host = new RaftHost(
      raft,
      storage,
      this.wal.groupLog(group),
      sender,
      stateMachine,
      quietEvents,
      options.tickMs ?? 100,
      {
        scheduler: this.driver,
      },
    );
    this.transport.addGroup(group, {
      onMessage: (m) => {
        raft.step(m);
        host.schedule();
      },
      onSnapshotStatus: (peer, ok) => {
        raft.reportSnapshot(peer, ok);
        host.schedule();
      },
    });
    this.replicas.set(group, { group, raft, host, applied });
  }

  startHosts(): void {
    for (const r of this.replicas.values()) r.host.start();
  }

  /** Groups this node leads, groups with a known leader, groups whose host hibernates. */
  counts(): { leading: number; withLeader: number; hibernating: number } {
    let leading = 0;
    let withLeader = 0;
    let hibernating = 0;
    for (const r of this.replicas.values()) {
      const soft = r.raft.status().softState;
      if (soft.role === Role.Leader) leading++;
      if (soft.leader !== 0) withLeader++;
      if (r.host.isHibernating) hibernating++;
    }
    return { leading, withLeader, hibernating };
  }

  async stop(): Promise<void> {
    for (const r of this.replicas.values()) r.host.stop();
    this.driver.close();
    await this.transport.close();
    await this.wal.close().catch(() => undefined);
    await rm(this.dir, { recursive: true, force: true });
  }
}
