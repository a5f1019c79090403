// Runs one workload end to end: connect (optionally to the leader only), prepare, drive the
// closed loop, collect the outcome, release everything.

import { performance } from 'node:perf_hooks';
import {
  authenticate,
  BenchConnection,
  ConnectionPool,
  findLeaderTarget,
  grpcTarget,
} from './connections.js';
import { MixedWorkload, PutWorkload, RangeWorkload, TxnWorkload } from './kv-workloads.js';
import { type BenchAuth, type BenchOptions, type BenchTls, validateOptions } from './options.js';
import { runClosedLoop } from './runner.js';
import { LeaseKeepAliveWorkload, WatchWorkload } from './stream-workloads.js';
import type { Workload } from './workload.js';

export interface BenchResult {
  workload: string;
  endpoints: string[];
  conns: number;
  clients: number;
  consistency?: 'l' | 's';
  ops: number;
  errors: number;
  errorSamples: string[];
  durationSec: number;
  opsPerSec: number;
  latencyMs: { min: number; mean: number; p50: number; p90: number; p99: number; p999: number; max: number };
  /** The tool's own CPU time over the measured run, as % of one core (100 = one core busy). */
  clientCpuPercent: number;
  extra: Record<string, number>;
  /** Counts per power-of-two latency range, for the printed histogram. */
  histogram: Array<{ fromMs: number; toMs: number; count: number }>;
}

function createWorkload(pool: ConnectionPool, options: BenchOptions): Workload {
  switch (options.workload) {
    case 'put':
      return new PutWorkload(pool, options);
    case 'range':
      return new RangeWorkload(pool, options);
    case 'txn':
      return new TxnWorkload(pool, options);
    case 'mixed':
      return new MixedWorkload(pool, options);
    case 'watch':
      return new WatchWorkload(pool, options);
    case 'lease-keepalive':
      return new LeaseKeepAliveWorkload(pool, options);
    default:
      return assertNever(options.workload);
  }
}

function assertNever(value: never): never {
  throw new Error(`unexpected workload ${String(value)}`);
}

/** One token for the whole run (etcd members share simple tokens through the log; JWTs need no state). */
async function signIn(
  target: string,
  tls: BenchTls | undefined,
  auth: BenchAuth,
  timeoutMs: number,
): Promise<string> {
  const connection = new BenchConnection(target, undefined, tls);
  try {
    return await authenticate(connection, auth, timeoutMs);
  } finally {
    connection.close();
  }
}

/** Called right around the measured loop (not the preload), e.g. to sample server CPU. */
export interface MeasureHooks {
  started?: () => void;
  ended?: () => void;
}

export async function runWorkload(options: BenchOptions, hooks: MeasureHooks = {}): Promise<BenchResult> {
  validateOptions(options);
  const allTargets = options.endpoints.map(grpcTarget);
  // https:// endpoints without TLS flags: TLS verified against the system roots.
  const tls = options.tls ?? (options.endpoints.some((e) => e.startsWith('https://')) ? {} : undefined);
  const targets = options.targetLeader ? [await findLeaderTarget(allTargets, tls)] : allTargets;
  const token =
    options.auth === undefined
      ? undefined
      : await signIn(targets[0]!, tls, options.auth, options.requestTimeoutMs);
  const pool = new ConnectionPool(targets, options.conns, tls, token);
  const workload = createWorkload(pool, options);
  try {
    await workload.prepare();
    hooks.started?.();
    const stats = await runClosedLoop(
      {
        clients: options.clients,
        total: options.total,
        durationMs: options.durationMs,
        progress: options.progress,
        label: options.workload,
      },
      (clientIndex) => workload.op(clientIndex),
    );
    const cpuEndMs = performance.now();
    const outcome = await workload.finish(stats);
    hooks.ended?.();
    const summary = outcome.latency.summary();
    const durationSec = outcome.durationMs / 1000;
    const us = (value: number) => value / 1000;
    return {
      workload: options.workload,
      endpoints: targets,
      conns: options.conns,
      clients: options.clients,
      ...(options.workload === 'range' || options.workload === 'mixed'
        ? { consistency: options.consistency }
        : {}),
      ops: outcome.ops,
      errors: outcome.errors,
      errorSamples: outcome.errorSamples,
      durationSec,
      opsPerSec: durationSec > 0 ? outcome.ops / durationSec : 0,
      latencyMs: {
        min: us(summary.minUs),
        mean: us(summary.meanUs),
        p50: us(summary.p50Us),
        p90: us(summary.p90Us),
        p99: us(summary.p99Us),
        p999: us(summary.p999Us),
        max: us(summary.maxUs),
      },
      clientCpuPercent: ((stats.cpuUserUs + stats.cpuSystemUs) / 1000 / (cpuEndMs - stats.startMs)) * 100,
      extra: outcome.extra,
      histogram: outcome.latency
        .powerOfTwoRanges()
        .map((range) => ({ fromMs: range.fromUs / 1000, toMs: range.toUs / 1000, count: range.count })),
    };
  } finally {
    await workload.close().catch(() => undefined);
    pool.close();
  }
}
