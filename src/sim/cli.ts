// `npm run sim -- --seeds N --from S [--nodes K] [--consensus raft|multi-paxos]
// [--paxos-phase2-quorum Q] [--verbose]`: runs a range of seeds through the
// simulator and prints one summary line `seeds=N failures=F`, then each failing seed with the exact
// command that replays it. Exits non-zero on any failure. Without --nodes, each seed picks 3 or 5.
// With `--shards M` it runs the sharded simulation instead (M shard groups plus the metadata group,
// Raft only); without --nodes each seed then picks 3, 5 or 7 nodes.

import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { QuorumConfigError } from '../paxos/errors.js';
import { quorumSizes } from '../paxos/quorum.js';
import { CONSENSUS_KINDS, type Consensus } from './consensus.js';
import { runShardedSimulation, ShardedSimFailure, type ShardedSimResult } from './sharded-simulation.js';
import { runSimulation, SimFailure, type SimResult } from './simulation.js';

export interface SeedRangeOptions {
  seeds: number;
  from: number;
  /** Fixed cluster size; otherwise derived from each seed (3 or 5). */
  nodes?: number;
  /** Default 'raft'. */
  consensus?: Consensus;
  /** Multi-Paxos: phase-2 quorum size (default: majority). */
  phase2Quorum?: number;
  faultPhaseUs?: number;
  /** Raft quiescence (RaftConfig.quiesce) on every node. */
  quiesce?: boolean;
  trace?: (line: string) => void;
}

export interface SeedRangeReport {
  seeds: number;
  failures: SimFailure[];
  results: SimResult[];
  elapsedMs: number;
}

/** Largest founding cluster the simulator accepts (members are capped at 7). */
const NODES_MAX = 7;

/** Cluster size a seed runs with when none is forced: mixes 3- and 5-node clusters. */
export function nodesForSeed(seed: number): number {
  return seed % 2 === 0 ? 3 : 5;
}

export async function runSeedRange(options: SeedRangeOptions): Promise<SeedRangeReport> {
  const started = performance.now();
  const failures: SimFailure[] = [];
  const results: SimResult[] = [];
  for (let seed = options.from; seed < options.from + options.seeds; seed++) {
    const nodes = options.nodes ?? nodesForSeed(seed);
    try {
      results.push(
        await runSimulation({
          seed,
          nodes,
          consensus: options.consensus,
          phase2Quorum: options.phase2Quorum,
          faultPhaseUs: options.faultPhaseUs,
          quiesce: options.quiesce,
          trace: options.trace,
        }),
      );
    } catch (err) {
      if (!(err instanceof SimFailure)) throw err;
      failures.push(err);
    }
  }
  return { seeds: options.seeds, failures, results, elapsedMs: performance.now() - started };
}

export interface ShardedSeedRangeOptions {
  seeds: number;
  from: number;
  shards: number;
  /** Fixed node count; otherwise derived from each seed (3, 5 or 7). */
  nodes?: number;
  faultPhaseUs?: number;
  /** Operator moves and the scheduler (ShardedSimOptions.moves). */
  moves?: boolean;
  /** Node add and remove under load (ShardedSimOptions.nodeChurn). */
  nodeChurn?: boolean;
  trace?: (line: string) => void;
}

export interface ShardedSeedRangeReport {
  seeds: number;
  failures: ShardedSimFailure[];
  results: ShardedSimResult[];
  elapsedMs: number;
}

/** Node count a sharded seed runs with when none is forced. */
export function shardedNodesForSeed(seed: number): number {
  return [3, 5, 7][seed % 3]!;
}

export async function runShardedSeedRange(options: ShardedSeedRangeOptions): Promise<ShardedSeedRangeReport> {
  const started = performance.now();
  const failures: ShardedSimFailure[] = [];
  const results: ShardedSimResult[] = [];
  for (let seed = options.from; seed < options.from + options.seeds; seed++) {
    try {
      results.push(
        await runShardedSimulation({
          seed,
          nodes: options.nodes ?? shardedNodesForSeed(seed),
          shards: options.shards,
          faultPhaseUs: options.faultPhaseUs,
          moves: options.moves,
          nodeChurn: options.nodeChurn,
          trace: options.trace,
        }),
      );
    } catch (err) {
      if (!(err instanceof ShardedSimFailure)) throw err;
      failures.push(err);
    }
  }
  return { seeds: options.seeds, failures, results, elapsedMs: performance.now() - started };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      seeds: { type: 'string', default: '100' },
      from: { type: 'string', default: '1' },
      nodes: { type: 'string' },
      consensus: { type: 'string', default: 'raft' },
      'paxos-phase2-quorum': { type: 'string' },
      'fault-ms': { type: 'string' },
      shards: { type: 'string' },
      moves: { type: 'boolean', default: false },
      'node-churn': { type: 'boolean', default: false },
      verbose: { type: 'boolean', default: false },
      stats: { type: 'boolean', default: false },
      quiesce: { type: 'boolean', default: false },
    },
    strict: true,
  });
  const seeds = parsePositiveInt('seeds', values.seeds);
  const from = parseNonNegativeInt('from', values.from);
  const nodes = values.nodes === undefined ? undefined : parsePositiveInt('nodes', values.nodes);
  if (nodes !== undefined && nodes > NODES_MAX) usage(`--nodes must be at most ${NODES_MAX}, got ${nodes}`);
  const faultMs =
    values['fault-ms'] === undefined ? undefined : parsePositiveInt('fault-ms', values['fault-ms']);
  const consensus = CONSENSUS_KINDS.find((k) => k === values.consensus);
  if (!consensus) usage(`--consensus must be one of ${CONSENSUS_KINDS.join(', ')}, got ${values.consensus}`);
  const quorumText = values['paxos-phase2-quorum'];
  const phase2Quorum =
    quorumText === undefined ? undefined : parsePositiveInt('paxos-phase2-quorum', quorumText);
  if (phase2Quorum !== undefined) {
    if (consensus !== 'multi-paxos') usage('--paxos-phase2-quorum needs --consensus multi-paxos');
    // Checked for every cluster size the run may use (3 and 5 without --nodes).
    for (const n of nodes === undefined ? [3, 5] : [nodes]) {
      try {
        quorumSizes(n, phase2Quorum);
      } catch (err) {
        if (err instanceof QuorumConfigError) usage(`--paxos-phase2-quorum: ${err.message}`);
        throw err;
      }
    }
  }
  if ((values.moves || values['node-churn']) && values.shards === undefined)
    usage('--moves and --node-churn need --shards');
  if (values.verbose && seeds !== 1) usage('--verbose traces one seed: use it with --seeds 1');
  const faultPhaseUs = faultMs === undefined ? undefined : faultMs * 1000;
  const trace = values.verbose ? (line: string) => console.log(line) : undefined;
  if (values.shards !== undefined) {
    const shards = parsePositiveInt('shards', values.shards);
    if (consensus !== 'raft' || phase2Quorum !== undefined) usage('--shards runs Raft groups only');
    if (nodes !== undefined && nodes < 3) usage('--shards needs --nodes 3 or more (3 replicas per group)');
    const moves = values.moves;
    const nodeChurn = values['node-churn'];
    const report = await runShardedSeedRange({
      seeds,
      from,
      shards,
      nodes,
      faultPhaseUs,
      moves,
      nodeChurn,
      trace,
    });
    console.log(`seeds=${report.seeds} failures=${report.failures.length}`);
    for (const failure of report.failures) console.log(failure.message);
    if (values.stats) printShardedStats(report);
    process.exitCode = report.failures.length > 0 ? 1 : 0;
    return;
  }
  const report = await runSeedRange({
    seeds,
    from,
    nodes,
    consensus,
    phase2Quorum,
    faultPhaseUs,
    quiesce: values.quiesce,
    trace,
  });
  console.log(`seeds=${report.seeds} failures=${report.failures.length}`);
  for (const failure of report.failures) console.log(failure.message);
  if (values.stats) printStats(report);
  process.exitCode = report.failures.length > 0 ? 1 : 0;
}

/** Elapsed time and seeds/s, and the liveness percentiles, of a range of runs. */
function rangeSummary(report: { seeds: number; elapsedMs: number; results: { livenessUs: number }[] }) {
  const liveness = report.results.map((x) => x.livenessUs).sort((a, b) => a - b);
  const pct = (p: number) =>
    liveness.length === 0 ? 0 : liveness[Math.min(liveness.length - 1, Math.floor(p * liveness.length))]!;
  return {
    speed: `elapsed=${report.elapsedMs.toFixed(0)}ms seeds/s=${((report.seeds * 1000) / report.elapsedMs).toFixed(1)}`,
    liveness: `liveness p50=${(pct(0.5) / 1000).toFixed(0)}ms p99=${(pct(0.99) / 1000).toFixed(0)}ms max=${((liveness[liveness.length - 1] ?? 0) / 1000).toFixed(0)}ms`,
  };
}

function printShardedStats(report: ShardedSeedRangeReport): void {
  const r = report.results;
  const sum = (f: (x: ShardedSimResult) => number) => r.reduce((acc, x) => acc + f(x), 0);
  const summary = rangeSummary(report);
  console.error(
    [
      summary.speed,
      `events=${sum((x) => x.events)} writes=${sum((x) => x.writes)} acked=${sum((x) => x.acked)} refused=${sum((x) => x.refused)} rerouted=${sum((x) => x.rerouted)} crossShard=${sum((x) => x.crossShard)} splits=${sum((x) => x.splits)} revisionsReleased=${sum((x) => x.revisionsReleased)} oracleLeaderships=${sum((x) => x.oracleLeaderships)}`,
      `crashes=${sum((x) => x.crashes)} pauses=${sum((x) => x.pauses)} partitions=${sum((x) => x.partitions)} transfers=${sum((x) => x.leaderTransfers)} snapshots=${sum((x) => x.snapshotsSent)}`,
      `moves=${sum((x) => x.moves)} confChanges=${sum((x) => x.confChanges)} nodeAdds=${sum((x) => x.nodeAdds)} nodeRemoves=${sum((x) => x.nodeRemoves)} readds=${sum((x) => x.readds)} oracleCrashes=${sum((x) => x.oracleCrashes)} crashesDuringMoves=${sum((x) => x.crashesDuringMoves)} oracleCrashesDuringMoves=${sum((x) => x.oracleCrashesDuringMoves)} ${shareSummary(r.flatMap((x) => x.addedNodeShares))}`,
      `fsyncs=${sum((x) => x.fsyncs)} groupWrites=${sum((x) => x.groupWrites)}`,
      summary.liveness,
    ].join('\n'),
  );
}

/** How close each joined node came to its fair share (replicas over the average per up node). */
function shareSummary(shares: number[]): string {
  if (shares.length === 0) return '';
  const sorted = [...shares].sort((a, b) => a - b);
  const mean = shares.reduce((a, b) => a + b, 0) / shares.length;
  return `joinedNodeShare n=${shares.length} min=${sorted[0]!.toFixed(2)} mean=${mean.toFixed(2)} max=${sorted.at(-1)!.toFixed(2)}`;
}

function printStats(report: SeedRangeReport): void {
  const r = report.results;
  const sum = (f: (x: SimResult) => number) => r.reduce((acc, x) => acc + f(x), 0);
  const summary = rangeSummary(report);
  console.error(
    [
      summary.speed,
      `events=${sum((x) => x.events)} proposals=${sum((x) => x.proposals)} acked=${sum((x) => x.acked)}`,
      `crashes=${sum((x) => x.crashes)} pauses=${sum((x) => x.pauses)} partitions=${sum((x) => x.partitions)} confChanges=${sum((x) => x.confChangesApplied)}`,
      `transfers=${sum((x) => x.leaderTransfers)} reads=${sum((x) => x.readsServed)} snapshots=${sum((x) => x.snapshotsSent)} snapshotsFailed=${sum((x) => x.snapshotsFailed)} hibernatedTicks=${sum((x) => x.hibernatedTicks)}`,
      summary.liveness,
    ].join('\n'),
  );
}

function parsePositiveInt(name: string, text: string): number {
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < 1) usage(`--${name} must be a positive integer, got ${text}`);
  return value;
}

function parseNonNegativeInt(name: string, text: string): number {
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < 0)
    usage(`--${name} must be a non-negative integer, got ${text}`);
  return value;
}

function usage(problem: string): never {
  console.error(
    `${problem}\nusage: npm run sim -- --seeds N --from S [--nodes K] [--consensus raft|multi-paxos] [--paxos-phase2-quorum Q] [--fault-ms MS] [--shards M [--moves] [--node-churn]] [--quiesce] [--verbose] [--stats]`,
  );
  process.exit(2);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) await main();
