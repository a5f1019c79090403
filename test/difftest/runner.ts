// Runs one operation sequence against an etcd cluster and a Concord cluster side by side and
// stops at the first divergence: an answer that differs, a keyspace that differs (checked every
// `keyspaceCheckEvery` operations and at the end), or a watcher whose events differ.

import { startConcordCluster } from '../support/cluster.js';
import { startEtcdCluster } from '../support/etcd-cluster.js';
import type { ProcessCluster } from '../support/process-cluster.js';
import { sameNormalised } from './normalise.js';
import type { OpSpec } from './ops.js';
import { type Outcome, Side } from './side.js';

export interface Divergence {
  /** Index of the operation after which it was seen (ops.length for the final checks). */
  index: number;
  what: string;
  etcd: unknown;
  concord: unknown;
}

export interface RunOptions {
  keyspaceCheckEvery: number;
  /** How long watchers may take to deliver the same events before that is a divergence. */
  watchSettleMs: number;
  onProgress?: (done: number) => void;
  /** Called with every operation and both normalised answers (for --trace). */
  trace?: (index: number, op: OpSpec, etcd: Outcome, concord: Outcome) => void;
}

export const defaultRunOptions: RunOptions = { keyspaceCheckEvery: 50, watchSettleMs: 5000 };

/** Both clusters with the same flags (etcd's defaults apart from faster elections' stability). */
export interface ClusterPair {
  etcd: ProcessCluster;
  concord: ProcessCluster;
  dispose(): Promise<void>;
}

/** Cluster starts tried per pair: on a loaded machine a start can time out once. */
const startAttemptsMax = 3;

export async function startClusterPair(size: number): Promise<ClusterPair> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startClusterPairOnce(size);
    } catch (error) {
      if (attempt >= startAttemptsMax) throw error;
    }
  }
}

async function startClusterPairOnce(size: number): Promise<ClusterPair> {
  const options = { size, heartbeatIntervalMs: 100, electionTimeoutMs: 1000 };
  const [etcd, concord] = await Promise.allSettled([startEtcdCluster(options), startConcordCluster(options)]);
  if (etcd.status === 'rejected' || concord.status === 'rejected') {
    if (etcd.status === 'fulfilled') await etcd.value.dispose();
    if (concord.status === 'fulfilled') await concord.value.dispose();
    throw etcd.status === 'rejected' ? etcd.reason : (concord as PromiseRejectedResult).reason;
  }
  return {
    etcd: etcd.value,
    concord: concord.value,
    dispose: async () => {
      await Promise.all([etcd.value.dispose(), concord.value.dispose()]);
    },
  };
}

export interface RunResult {
  divergence: Divergence | undefined;
  opsRun: number;
}

/** Runs `ops` on a fresh pair of clusters (the caller starts and disposes them). */
export async function runSequence(
  pair: ClusterPair,
  ops: readonly OpSpec[],
  options: RunOptions = defaultRunOptions,
): Promise<RunResult> {
  const [etcd, concord] = await Promise.all([Side.attach(pair.etcd), Side.attach(pair.concord)]);
  try {
    for (let index = 0; index < ops.length; index++) {
      const op = ops[index]!;
      if (op.type === 'watchCancel' || (op.type === 'compact' && etcd.hasWatchers())) {
        const unsettled = await settleWatches(etcd, concord, options.watchSettleMs, watchQuietMs);
        if (unsettled !== undefined) return { divergence: { index, ...unsettled }, opsRun: index };
      }
      const [a, b] = await Promise.all([etcd.execute(op), concord.execute(op)]);
      options.trace?.(index, op, a, b);
      if (!sameNormalised(a, b))
        return { divergence: { index, what: 'answer', etcd: a, concord: b }, opsRun: index + 1 };
      const watch = compareWatchState(etcd, concord, false);
      if (watch !== undefined) return { divergence: { index, ...watch }, opsRun: index + 1 };
      if ((index + 1) % options.keyspaceCheckEvery === 0) {
        const checked =
          (await compareKeyspace(etcd, concord)) ??
          (await settleWatches(etcd, concord, options.watchSettleMs));
        if (checked !== undefined) return { divergence: { index, ...checked }, opsRun: index + 1 };
      }
      options.onProgress?.(index + 1);
    }
    const keyspace = await compareKeyspace(etcd, concord);
    if (keyspace !== undefined) return { divergence: { index: ops.length, ...keyspace }, opsRun: ops.length };
    const watch = await settleWatches(etcd, concord, options.watchSettleMs);
    if (watch !== undefined) return { divergence: { index: ops.length, ...watch }, opsRun: ops.length };
    return { divergence: undefined, opsRun: ops.length };
  } finally {
    etcd.close();
    concord.close();
  }
}

type Difference = Omit<Divergence, 'index'>;

async function compareKeyspace(etcd: Side, concord: Side): Promise<Difference | undefined> {
  const [a, b]: Outcome[] = await Promise.all([etcd.keyspace(), concord.keyspace()]);
  return sameNormalised(a, b) ? undefined : { what: 'keyspace', etcd: a, concord: b };
}

/**
 * Watch logs only grow, so one that is a prefix of the other's may still catch up; anything else
 * is a divergence at once. With `final`, a log still behind is one too.
 */
function compareWatchState(etcd: Side, concord: Side, final: boolean): Difference | undefined {
  const a = etcd.watchState();
  const b = concord.watchState();
  for (const key of new Set([...a.keys(), ...b.keys()])) {
    const left = a.get(key) ?? [];
    const right = b.get(key) ?? [];
    const shorter = Math.min(left.length, right.length);
    for (let i = 0; i < shorter; i++) {
      if (!sameNormalised(left[i], right[i])) {
        return { what: `${key} item ${i}`, etcd: left.slice(i), concord: right.slice(i) };
      }
    }
    if (final && left.length !== right.length) {
      return {
        what: `${key} from item ${shorter}`,
        etcd: left.slice(shorter),
        concord: right.slice(shorter),
      };
    }
  }
  return undefined;
}

/**
 * etcd replays history to a new watcher (and tells it about compaction) from a loop that runs
 * every 100 ms, so before a cancel or a compaction, whose effect depends on what a watcher has
 * been sent, the runner waits until both sides' watch logs are equal and have not changed for
 * this long.
 */
const watchQuietMs = 250;

/** Waits until every watch log is equal on both sides (for quietMs, if given); else the difference. */
async function settleWatches(
  etcd: Side,
  concord: Side,
  settleMs: number,
  quietMs = 0,
): Promise<Difference | undefined> {
  const deadline = Date.now() + settleMs;
  let equalSince: number | undefined;
  let lastSize = -1;
  for (;;) {
    const early = compareWatchState(etcd, concord, false);
    if (early !== undefined) return early;
    const final = compareWatchState(etcd, concord, true);
    const size = etcd.watchItemCount() + concord.watchItemCount();
    if (final !== undefined || size !== lastSize) equalSince = undefined;
    else equalSince ??= Date.now();
    lastSize = size;
    if (equalSince !== undefined && Date.now() - equalSince >= quietMs) return undefined;
    if (Date.now() > deadline) return final;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
