// One Jepsen-style run on real processes: start a cluster with fault injection, run a workload's
// clients while the nemesis works through its seeded schedule, heal, let the cluster settle,
// do the final reads, and judge the history. Everything it starts (processes, temp dirs, gRPC
// channels, timers) is released before run() returns, also when a step throws.

import { setTimeout as sleep } from 'node:timers/promises';
import { assertNever, seededRandom, type Verdict } from '../../src/sim/check/index.js';
import { type Consensus, type ProcessCluster, startConcordCluster } from '../support/cluster.js';
import { describeStep, Nemesis, type NemesisName, nemesisSchedule } from './nemesis.js';
import { EtcdRpc } from './rpc.js';
import { pause, type Workload, type WorkloadContext } from './workload.js';
import { BankWorkload } from './workload-bank.js';
import { CounterWorkload } from './workload-counter.js';
import { ListAppendWorkload } from './workload-list-append.js';
import { LockWorkload } from './workload-lock.js';
import { RegisterWorkload } from './workload-register.js';
import { SetWorkload } from './workload-set.js';
import { WatchWorkload } from './workload-watch.js';

export const WORKLOAD_NAMES = ['register', 'set', 'counter', 'watch', 'lock', 'list-append', 'bank'] as const;
export type WorkloadName = (typeof WORKLOAD_NAMES)[number];

export function isWorkloadName(name: string): name is WorkloadName {
  return (WORKLOAD_NAMES as readonly string[]).includes(name);
}

export interface RunOptions {
  workload: WorkloadName;
  nemesis: NemesisName;
  seed: number;
  /** How long the clients and the nemesis run. */
  timeMs: number;
  nodes: 3 | 5;
  /** Start members with --experimental-stale-reads (the deliberate bug). */
  staleReads?: boolean;
  /** list-append and bank clients commit without their mod_revision compares (a planted client bug). */
  skipCompare?: boolean;
  /** The members' --consensus (default raft). */
  consensus?: Consensus;
  /** The members' --paxos-phase2-quorum (multi-paxos only; default a majority). */
  paxosPhase2Quorum?: number;
  clients?: number;
  requestTimeoutMs?: number;
  opIntervalMs?: number;
  /** Wait after the heal before the final reads. */
  quietMs?: number;
  /** Progress lines (nemesis actions) go here; default: nowhere. */
  log?: (line: string) => void;
}

export interface RunResult {
  options: RunOptions;
  verdict: Verdict;
  ops: number;
  ok: number;
  fail: number;
  unknown: number;
  notes: string;
  nemesisLog: string[];
  /** Members that exited on their own (not killed by the nemesis): server crashes. */
  crashes: string[];
  schedule: string[];
  /** The one summary line. */
  summary: string;
  /** Recent member output, kept when the verdict is not valid. */
  memberLogs?: string;
}

const clientsDefault = 5;
const requestTimeoutMsDefault = 1000;
const opIntervalMsDefault = 20;
const quietMsDefault = 2000;
/** A client whose member refuses connections waits this long between tries. */
const refusedBackoffMs = 250;
const heartbeatIntervalMs = 50;
const electionTimeoutMs = 500;

function makeWorkload(
  name: WorkloadName,
  now: () => number,
  clients: number,
  skipCompare: boolean,
): Workload {
  switch (name) {
    case 'register':
      return new RegisterWorkload(now);
    case 'set':
      return new SetWorkload(now);
    case 'counter':
      return new CounterWorkload(now);
    case 'watch':
      return new WatchWorkload(now, Math.max(1, Math.floor(clients / 2)));
    case 'lock':
      return new LockWorkload(now);
    case 'list-append':
      return new ListAppendWorkload(now, skipCompare);
    case 'bank':
      return new BankWorkload(now, skipCompare);
    default:
      return assertNever(name);
  }
}

function verdictWord(valid: Verdict['valid']): string {
  if (valid === true) return 'valid';
  if (valid === false) return 'INVALID';
  return 'unknown';
}

/** The client URLs clients may use: members neither removed nor stopped by us for good. */
function liveEndpoints(cluster: ProcessCluster): string[] {
  return cluster.members.filter((m) => m.state !== 'removed').map((m) => m.clientUrl);
}

function makeContext(
  cluster: ProcessCluster,
  rpc: EtcdRpc,
  options: RunOptions,
  started: number,
): WorkloadContext {
  return {
    rpc,
    now: () => performance.now() - started,
    endpointFor: (process) => {
      const endpoints = liveEndpoints(cluster);
      const endpoint = endpoints[process % endpoints.length];
      if (endpoint === undefined) throw new Error('no live member');
      return endpoint;
    },
    anyEndpoint: () => {
      const running = cluster.endpoints();
      return running[Math.floor(Math.random() * running.length)] ?? cluster.endpoint(0);
    },
    requestTimeoutMs: options.requestTimeoutMs ?? requestTimeoutMsDefault,
    pace: async (process, stop) => {
      const endpoint = liveEndpoints(cluster)[process % Math.max(1, liveEndpoints(cluster).length)];
      const refused = endpoint !== undefined && rpc.refusedRecently(endpoint, refusedBackoffMs);
      await pause(refused ? refusedBackoffMs : (options.opIntervalMs ?? opIntervalMsDefault), stop);
    },
    random: (process) => seededRandom(options.seed * 7919 + process),
  };
}

export async function runJepsen(options: RunOptions): Promise<RunResult> {
  const log = options.log ?? (() => undefined);
  const clients = options.clients ?? clientsDefault;
  const schedule = nemesisSchedule(options.nemesis, options.seed, options.timeMs);
  log(`schedule: ${schedule.map(describeStep).join(' ') || '(no faults)'}`);
  const cluster = await startConcordCluster({
    size: options.nodes,
    heartbeatIntervalMs,
    electionTimeoutMs,
    consensus: options.consensus,
    paxosPhase2Quorum: options.paxosPhase2Quorum,
    extraFlags: [
      '--experimental-fault-injection',
      ...(options.staleReads ? ['--experimental-stale-reads'] : []),
    ],
  });
  const rpc = new EtcdRpc();
  const started = performance.now();
  const nemesis = new Nemesis(cluster, started);
  const ctx = makeContext(cluster, rpc, options, started);
  const workload = makeWorkload(options.workload, ctx.now, clients, options.skipCompare ?? false);
  try {
    await cluster.leaderIndex(10_000);
    await workload.setup(ctx);
    const stop = new AbortController();
    // A client or nemesis that throws stops the run at once (it is a harness bug, not history).
    let crashed: unknown;
    const crash = (error: unknown): void => {
      crashed ??= error;
      stop.abort();
    };
    const running = Array.from({ length: clients }, (_, process) =>
      workload.runClient(ctx, process, stop.signal).catch(crash),
    );
    const faults = nemesis.run(schedule, stop.signal).catch(crash);
    await sleep(options.timeMs, undefined, { signal: stop.signal }).catch(() => undefined);
    stop.abort();
    await Promise.all([...running, faults]);
    if (crashed !== undefined) throw crashed;
    await nemesis.healAll();
    await cluster.waitHealthy(30_000);
    await sleep(options.quietMs ?? quietMsDefault);
    await workload.finish(ctx);
    const outcome = workload.check(ctx);
    return summarize(options, outcome, nemesis, schedule.map(describeStep), cluster);
  } catch (error) {
    log(`run failed: ${(error as Error).message}\nnemesis: ${nemesis.log.join('; ')}`);
    log(cluster.dumpLogs());
    throw error;
  } finally {
    workload.dispose();
    rpc.close();
    await cluster.dispose();
  }
}

function summarize(
  options: RunOptions,
  outcome: ReturnType<Workload['check']>,
  nemesis: Nemesis,
  schedule: string[],
  cluster: ProcessCluster,
): RunResult {
  const { crashes } = nemesis;
  const count = (status: string): number => outcome.operations.filter((op) => op.status === status).length;
  const ops = outcome.operations.length;
  const [ok, fail, unknown] = [count('ok'), count('fail'), count('unknown')];
  const { verdict } = outcome;
  const summary =
    `workload=${options.workload} nemesis=${options.nemesis} seed=${options.seed} ops=${ops} ok=${ok} ` +
    `fail=${fail} unknown=${unknown} anomalies=${verdict.anomalies.length} verdict=${verdictWord(verdict.valid)} ` +
    `nodes=${options.nodes} consensus=${options.consensus ?? 'raft'}` +
    `${options.paxosPhase2Quorum === undefined ? '' : ` phase2-quorum=${options.paxosPhase2Quorum}`}` +
    `${options.staleReads ? ' stale-reads' : ''} ${outcome.notes}`;
  return {
    options,
    verdict,
    ops,
    ok,
    fail,
    unknown,
    notes: outcome.notes,
    nemesisLog: nemesis.log,
    crashes,
    schedule,
    summary,
    ...(verdict.valid === true && crashes.length === 0 ? {} : { memberLogs: cluster.dumpLogs() }),
  };
}

/** A run passes when the history is valid and no member crashed on its own. */
export function runPassed(result: RunResult): boolean {
  return result.verdict.valid === true && result.crashes.length === 0;
}

/** The explanation printed under the summary line when a run did not pass. */
export function failureReport(result: RunResult): string {
  const anomalies = result.verdict.anomalies
    .slice(0, 10)
    .map((a) => `  [${a.code}] ${a.message}`)
    .join('\n');
  const crashes = result.crashes.map((c) => `  [CRASH] ${c}`).join('\n');
  return [
    result.verdict.explanation,
    anomalies,
    ...(crashes === '' ? [] : [crashes]),
    `nemesis schedule: ${result.schedule.join(' ')}`,
    `nemesis log:\n  ${result.nemesisLog.join('\n  ')}`,
  ].join('\n');
}
