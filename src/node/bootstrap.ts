// How a member finds its cluster at start-up: from the peers of --initial-cluster when it joins
// an existing one, from the flags (or a restored data dir) when it founds one; and the snapshot
// a crash left recorded but not installed.

import { rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Keyspace } from '../mvcc/keyspace.js';
import type { MemoryStorage } from '../raft/memory-storage.js';
import { type ConfState, EMPTY_BYTES } from '../raft/types.js';
import {
  type ConsensusChoice,
  type ConsensusKind,
  checkJoin,
  choiceOf,
  claimConsensus,
} from '../replica/consensus.js';
import { loadMembers } from '../replica/group-replica.js';
import { clusterIdFor, formatId, memberIdFor } from '../replica/ids.js';
import { MEMBERS_META_NAME, Members } from '../replica/members.js';
import type { SnapshotStore } from '../storage/snapshot-store.js';
import type { Wal } from '../storage/wal.js';
import type { RecoveredGroup } from '../storage/wal-replay.js';
import type { TlsFileWatcher } from '../transport/tls-config.js';
import type { Logger } from '../util/logger.js';
import { sleep } from '../util/sleep.js';
import type { ServerConfig } from './config.js';
import { GROUP_ID } from './durable-log.js';
import { readSelfId, writeSelfId } from './member-dir.js';
import { getPeerJson } from './member-tls.js';

const DISCOVERY_TIMEOUT_MS = 30_000;

/**
 * A member joining an existing cluster learns the membership (its own ID, the cluster ID, the
 * other members) from the peers listed in --initial-cluster, as etcd's GetClusterFromRemotePeers.
 */
async function discoverCluster(
  config: ServerConfig,
  log: Logger,
  peerTls: TlsFileWatcher | undefined,
): Promise<Members> {
  const own = new Set(config.initialAdvertisePeerUrls);
  const peers = [...config.initialCluster.values()].flat().filter((url) => !own.has(url));
  const deadline = Date.now() + DISCOVERY_TIMEOUT_MS;
  let found: { members: Members; choice: ConsensusChoice } | undefined;
  while (found === undefined && Date.now() < deadline) {
    for (const url of peers) {
      try {
        const body = (await getPeerJson(`${url.replace(/\/$/, '')}/members`, peerTls, 2000)) as {
          clusterId: string;
          consensus?: ConsensusKind;
          phase2Quorum?: number;
          members: Array<{
            id: string;
            name: string;
            peerURLs: string[];
            clientURLs: string[];
            isLearner: boolean;
          }>;
        };
        const members = new Members(Number.parseInt(body.clusterId, 16));
        for (const m of body.members) {
          const id = Number.parseInt(m.id, 16);
          members.add({
            id,
            name: m.name,
            peerUrls: m.peerURLs,
            isLearner: m.isLearner,
            clusterId: members.clusterId,
            proposer: 0,
            requestId: 0,
          });
          members.publish(id, m.name, m.clientURLs);
        }
        found = {
          members,
          choice: choiceOf({ consensus: body.consensus, paxosPhase2Quorum: body.phase2Quorum }),
        };
        break;
      } catch (error) {
        log.debug('cluster discovery: peer did not answer', { url, error: (error as Error).message });
      }
    }
    if (found === undefined) await sleep(500);
  }
  if (found === undefined)
    throw new Error(
      `could not get the member list from any peer in --initial-cluster within ${DISCOVERY_TIMEOUT_MS} ms`,
    );
  checkJoin(found.choice, choiceOf(config));
  return found.members;
}

/**
 * The members a new cluster starts with. A data dir made by `concordctl snapshot restore
 * --initial-cluster ...` already holds them and this member's ID (etcd's restore writes them into
 * the new WAL), and the member founds that cluster whatever --initial-cluster it is started with;
 * otherwise they come from --initial-cluster.
 */
function foundingMembers(
  config: ServerConfig,
  memberDir: string,
  stored: Members | undefined,
  selfId: number,
): { members: Members; memberId: number; source: 'flags' | 'snapshot restore' } {
  const restoredId = readSelfId(memberDir);
  if (restoredId !== undefined && stored !== undefined) {
    if (!stored.has(restoredId))
      throw new Error(
        `data dir ${config.dataDir} was restored for member ${formatId(restoredId)}, which its membership does not list`,
      );
    return { members: stored, memberId: restoredId, source: 'snapshot restore' };
  }
  const initial = initialMembers(config);
  if (!initial.some((m) => m.id === selfId)) {
    throw new Error(
      `--initial-advertise-peer-urls ${config.initialAdvertisePeerUrls.join(',')} do not match the ` +
        `--initial-cluster entry for "${config.name}"`,
    );
  }
  const members = new Members(clusterIdFor(initial.map((m) => m.id)));
  for (const m of initial) {
    members.add({ ...m, isLearner: false, clusterId: members.clusterId, proposer: 0, requestId: 0 });
  }
  return { members, memberId: selfId, source: 'flags' };
}

function initialMembers(config: ServerConfig): Array<{ id: number; name: string; peerUrls: string[] }> {
  return [...config.initialCluster.entries()].map(([name, peerUrls]) => ({
    id: memberIdFor(peerUrls, config.initialClusterToken),
    name,
    peerUrls,
  }));
}

async function installSnapshotFile(
  keyspace: Keyspace,
  snapshots: SnapshotStore,
  path: string,
  scratchDir: string,
) {
  const staged = join(scratchDir, 'recover.mdb');
  await snapshots.installTo(path, staged);
  await keyspace.restoreSnapshot(staged);
  rmSync(staged, { force: true });
}

/** What a member recovers its group and membership from at start-up. */
export interface MembershipRecovery {
  config: ServerConfig;
  log: Logger;
  dirs: { memberDir: string; snapDir: string; scratchDir: string };
  keyspace: Keyspace;
  wal: Wal;
  snapshots: SnapshotStore;
  /** The in-memory log, filled here from the WAL (or bootstrapped for a new cluster). */
  storage: MemoryStorage;
  /** The group's records found in the WAL; undefined or empty: a fresh data dir. */
  group: RecoveredGroup | undefined;
  peerTls: TlsFileWatcher | undefined;
}

/**
 * The membership and this member's ID. A fresh data dir founds a new cluster (from the flags or a
 * restored data dir) or joins an existing one that already added this member; a used one reloads
 * its log and the membership its keyspace holds.
 */
export async function recoverMembership(
  recovery: MembershipRecovery,
): Promise<{ members: Members; memberId: number }> {
  const { config, log, keyspace, wal, snapshots, storage, group, peerTls } = recovery;
  const { memberDir, snapDir, scratchDir } = recovery.dirs;
  const selfId = memberIdFor(config.initialAdvertisePeerUrls, config.initialClusterToken);
  let members = loadMembers(keyspace);
  let memberId: number;

  if (
    group === undefined ||
    (group.hardState === null && group.snapshot === null && group.entries.length === 0)
  ) {
    // A fresh data dir: found a new cluster, or join an existing one that already added us.
    let membership: 'flags' | 'snapshot restore' | 'existing cluster' = 'existing cluster';
    claimConsensus(memberDir, config.dataDir, choiceOf(config), true);
    if (config.initialClusterState === 'new') {
      const founding = foundingMembers(config, memberDir, members, selfId);
      members = founding.members;
      memberId = founding.memberId;
      membership = founding.source;
      const confState: ConfState = {
        voters: members.list().map((m) => m.id),
        learners: [],
        votersOutgoing: [],
        learnersNext: [],
        autoLeave: false,
      };
      storage.bootstrap(confState);
      wal.saveSnapshotMarker(GROUP_ID, storage.snapshot().metadata);
      wal.saveHardState(GROUP_ID, storage.initialState().hardState);
      await wal.sync();
    } else {
      members = await discoverCluster(config, log, peerTls);
      const self = members
        .list()
        .find((m) => m.peerUrls.some((url) => config.initialAdvertisePeerUrls.includes(url)));
      if (self === undefined)
        throw new Error('the cluster does not list this member; run `member add` first');
      memberId = self.id;
    }
    keyspace.putMeta(MEMBERS_META_NAME, members.encode());
    writeSelfId(memberDir, memberId);
    log.info('initialized a new data dir', {
      memberId: formatId(memberId),
      state: config.initialClusterState,
      membership,
    });
  } else {
    claimConsensus(memberDir, config.dataDir, choiceOf(config), false);
    if (members === undefined)
      throw new Error(`data dir ${config.dataDir} has a WAL but no cluster membership`);
    memberId = readSelfId(memberDir) ?? selfId;
    if (!members.has(memberId) && members.isRemoved(memberId)) {
      throw new Error(
        `this member (${formatId(memberId)}) was removed from the cluster; start it with a new data dir`,
      );
    }
    if (group.snapshot !== null) {
      storage.applySnapshot({ metadata: group.snapshot, data: EMPTY_BYTES });
      if (keyspace.appliedIndex() < group.snapshot.index && group.snapshot.index > 1) {
        // Crashed between recording a received snapshot and installing it: install it now.
        const file = (await snapshots.list()).find((f) => f.index === group.snapshot!.index);
        if (file === undefined)
          throw new Error(`snapshot file for index ${group.snapshot.index} is missing in ${snapDir}`);
        await installSnapshotFile(keyspace, snapshots, file.path, scratchDir);
        members = loadMembers(keyspace) ?? members;
      }
    }
    storage.append(group.entries);
    if (group.hardState !== null) storage.setHardState(group.hardState);
  }
  if (members === undefined) throw new Error('no cluster membership');
  return { members, memberId };
}
