// Real `concord` processes on loopback. The compiled concord.js is found next to this file's own
// compiled location (<build>/test/support → <build>/src/cli), so the harness runs the server
// built into the same output dir: dist/ under `npm test`, .build/<name>/ for a helper.

import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { SERVING_NODE_FLAGS } from '../../src/cli/serving-flags.js';
import { type ClusterOptions, HarnessError, ProcessCluster, type ServerBinary } from './process-cluster.js';

export { type ClusterOptions, ProcessCluster } from './process-cluster.js';

export function concordBinary(): ServerBinary {
  const script = fileURLToPath(new URL('../../src/cli/concord.js', import.meta.url));
  if (!existsSync(script)) throw new HarnessError(`compiled concord not found at ${script}; build first`);
  return { label: 'concord', command: process.execPath, argsBefore: [...SERVING_NODE_FLAGS, script] };
}

export type Consensus = 'raft' | 'multi-paxos';
const CONSENSUS_KINDS: readonly Consensus[] = ['raft', 'multi-paxos'];

export interface ConcordClusterOptions extends ClusterOptions {
  /** --consensus of every member (default: the server's, raft). */
  consensus?: Consensus;
  /** --paxos-phase2-quorum of every member (multi-paxos only). */
  paxosPhase2Quorum?: number;
}

/**
 * Starts `size` concord members and waits until /health is true on all of them. Async, so a
 * missing build is a rejection like any other failed start (a caller starting an etcd cluster
 * beside it then disposes that one).
 */
export async function startConcordCluster(options: ConcordClusterOptions): Promise<ProcessCluster> {
  const { consensus, paxosPhase2Quorum, ...rest } = options;
  const engineFlags = [
    ...(consensus === undefined ? [] : ['--consensus', consensus]),
    ...(paxosPhase2Quorum === undefined ? [] : ['--paxos-phase2-quorum', String(paxosPhase2Quorum)]),
  ];
  return ProcessCluster.start(concordBinary(), {
    ...rest,
    extraFlags: [...(rest.extraFlags ?? []), ...engineFlags],
  });
}

/**
 * The consensus engines an end-to-end suite runs its clusters on: `CONCORD_E2E_CONSENSUS` set to
 * `raft`, `multi-paxos` or `all` chooses; unset, the suite's own default (what `npm test` runs).
 */
export function e2eEngines(defaults: readonly Consensus[]): Consensus[] {
  const chosen = process.env.CONCORD_E2E_CONSENSUS;
  if (chosen === undefined || chosen === '') return [...defaults];
  if (chosen === 'all') return [...CONSENSUS_KINDS];
  const kind = CONSENSUS_KINDS.find((k) => k === chosen);
  if (kind === undefined)
    throw new HarnessError(
      `CONCORD_E2E_CONSENSUS=${chosen}: use one of ${CONSENSUS_KINDS.join(', ')} or all`,
    );
  return [kind];
}
