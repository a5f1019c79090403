// Which consensus engine a member runs (`--consensus raft|multi-paxos`), built behind the one
// interface the host drives (raft/api.ts ConsensusEngine), and the record of that choice in the
// member's data dir. The choice is per cluster: a Raft log read by Paxos (or the other way round),
// or members of one cluster running different engines or phase-2 quorums, would break the
// quorum intersections both rest on, so a data dir keeps the engine it was made with and a
// restart with another refuses to start.

import { closeSync, fsyncSync, openSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PaxosNode } from '../paxos/node.js';
import { quorumSizes } from '../paxos/quorum.js';
import type { ConsensusEngine, RaftConfig } from '../raft/api.js';
import { RaftNode } from '../raft/node.js';
import { syncDirSync } from '../storage/durable-fs.js';

export type ConsensusKind = 'raft' | 'multi-paxos';
export const CONSENSUS_KINDS: readonly ConsensusKind[] = ['raft', 'multi-paxos'];

/** The engine of a cluster and, for Multi-Paxos, its phase-2 quorum (undefined: majority). */
export interface ConsensusChoice {
  consensus: ConsensusKind;
  phase2Quorum?: number;
}

/** The file in member/ that records the engine; a data dir without one was made by Raft. */
const CONSENSUS_FILE = 'consensus';

/** A member started with an engine (or phase-2 quorum) other than its data dir's or its cluster's. */
export class ConsensusMismatchError extends Error {
  readonly code = 'consensus-mismatch';
  constructor(message: string) {
    super(message);
    this.name = 'ConsensusMismatchError';
  }
}

export function describeChoice(choice: ConsensusChoice): string {
  if (choice.consensus !== 'multi-paxos') return choice.consensus;
  return choice.phase2Quorum === undefined
    ? 'multi-paxos (majority quorums)'
    : `multi-paxos with --paxos-phase2-quorum ${choice.phase2Quorum}`;
}

function flagsFor(choice: ConsensusChoice): string {
  const phase2 = choice.phase2Quorum === undefined ? '' : ` --paxos-phase2-quorum ${choice.phase2Quorum}`;
  return `--consensus ${choice.consensus}${phase2}`;
}

function sameChoice(a: ConsensusChoice, b: ConsensusChoice): boolean {
  return a.consensus === b.consensus && a.phase2Quorum === b.phase2Quorum;
}

/** Builds the engine the host drives. Throws QuorumConfigError for a phase-2 quorum no voter set allows. */
export function createConsensusEngine(choice: ConsensusChoice, config: RaftConfig): ConsensusEngine {
  switch (choice.consensus) {
    case 'raft':
      return new RaftNode(config);
    case 'multi-paxos':
      return new PaxosNode({ ...config, phase2Quorum: choice.phase2Quorum });
    default:
      throw new Error(`unknown consensus engine ${String(choice.consensus)}`);
  }
}

/**
 * Checks a phase-2 quorum against a voter count (Flexible Paxos: |Q1| + |Q2| > N, with Q1 at
 * least a majority); throws QuorumConfigError with what is wrong.
 */
export function checkPhase2Quorum(voters: number, phase2Quorum: number | undefined): void {
  if (phase2Quorum !== undefined) quorumSizes(voters, phase2Quorum);
}

export function readConsensusRecord(memberDir: string): ConsensusChoice | undefined {
  let text: string;
  try {
    text = readFileSync(join(memberDir, CONSENSUS_FILE), 'utf8');
  } catch {
    return undefined;
  }
  const record = JSON.parse(text) as { consensus?: unknown; phase2Quorum?: unknown };
  const consensus = CONSENSUS_KINDS.find((k) => k === record.consensus);
  if (consensus === undefined)
    throw new Error(`${join(memberDir, CONSENSUS_FILE)} names no known consensus engine: ${text.trim()}`);
  return typeof record.phase2Quorum === 'number'
    ? { consensus, phase2Quorum: record.phase2Quorum }
    : { consensus };
}

export function writeConsensusRecord(memberDir: string, choice: ConsensusChoice): void {
  const path = join(memberDir, CONSENSUS_FILE);
  const record =
    choice.phase2Quorum === undefined
      ? { consensus: choice.consensus }
      : { consensus: choice.consensus, phase2Quorum: choice.phase2Quorum };
  writeFileSync(`${path}.tmp`, `${JSON.stringify(record)}\n`);
  const fd = openSync(`${path}.tmp`, 'r');
  fsyncSync(fd);
  closeSync(fd);
  renameSync(`${path}.tmp`, path);
  syncDirSync(memberDir);
}

/**
 * A fresh data dir takes the engine it is started with; one that already holds a log must be
 * started with the engine that wrote it (a data dir from before the record existed is Raft's).
 */
export function claimConsensus(
  memberDir: string,
  dataDir: string,
  choice: ConsensusChoice,
  fresh: boolean,
): void {
  if (fresh) {
    writeConsensusRecord(memberDir, choice);
    return;
  }
  const recorded = readConsensusRecord(memberDir) ?? { consensus: 'raft' };
  if (sameChoice(recorded, choice)) return;
  throw new ConsensusMismatchError(
    `data dir "${dataDir}" belongs to a cluster running ${describeChoice(recorded)}, but this member ` +
      `was started with ${describeChoice(choice)}. The engine is chosen per cluster when it is created ` +
      `and cannot change: restart with ${flagsFor(recorded)}. To move the data to a cluster running ` +
      `another engine, save a snapshot (etcdctl snapshot save) and restore it into new data dirs.`,
  );
}

/** A joining member must run the engine of the cluster it joins (as the cluster's /members reports). */
export function checkJoin(clusterChoice: ConsensusChoice, choice: ConsensusChoice): void {
  if (sameChoice(clusterChoice, choice)) return;
  throw new ConsensusMismatchError(
    `the cluster runs ${describeChoice(clusterChoice)}, but this member was started with ` +
      `${describeChoice(choice)}: start it with ${flagsFor(clusterChoice)}`,
  );
}

/** The choice in a server config (absent fields: Raft). */
export function choiceOf(config: { consensus?: ConsensusKind; paxosPhase2Quorum?: number }): ConsensusChoice {
  const consensus = config.consensus ?? 'raft';
  return consensus === 'multi-paxos' && config.paxosPhase2Quorum !== undefined
    ? { consensus, phase2Quorum: config.paxosPhase2Quorum }
    : { consensus };
}
