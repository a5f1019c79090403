// How a member finds its cluster at start-up: from the peers of --initial-cluster when it joins
// an existing one, from the flags (or a restored data dir) when it founds one; and the snapshot
// a crash left recorded but not installed.

import { rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Keyspace } from '../mvcc/keyspace.js';
import { type ConsensusChoice, type ConsensusKind, checkJoin, choiceOf } from '../replica/consensus.js';
import { sleep } from '../replica/group-replica.js';
import { clusterIdFor, formatId, memberIdFor } from '../replica/ids.js';
import { Members } from '../replica/members.js';
import type { SnapshotStore } from '../storage/snapshot-store.js';
import type { TlsFileWatcher } from '../transport/tls-config.js';
import type { Logger } from '../util/logger.js';
import type { ServerConfig } from './config.js';
import { readSelfId } from './member-dir.js';
import { getPeerJson } from './member-tls.js';

const DISCOVERY_TIMEOUT_MS = 30_000;

/**
 * A member joining an existing cluster learns the membership (its own ID, the cluster ID, the
 * other members) from the peers listed in --initial-cluster, as etcd's GetClusterFromRemotePeers.
 */
export async function discoverCluster(
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
export function foundingMembers(
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

export async function installSnapshotFile(
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
