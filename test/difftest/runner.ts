// Runs one operation sequence against an etcd cluster and a Concord cluster side by side and
// stops at the first divergence: an answer that differs, a keyspace that differs (checked every
// `keyspaceCheckEvery` operations and at the end), or a watcher whose events differ.

import { startConcordCluster } from '../support/cluster.js';
import { startEtcdCluster } from '../support/etcd-cluster.js';
import type { ProcessCluster } from '../support/process-cluster.js';
import { sameNormalised } from './normalise.js';
import type { OpSpec, WatchCreateSpec } from './ops.js';
import { type EventRewrite, type Outcome, Side } from './side.js';

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
  /** Runs the operations as a non-root user with auth enabled (see auth.ts). */
  auth?: boolean;
  /** Rewrites Concord's watch events before they are compared (tests of the comparison only). */
  concordEventRewrite?: EventRewrite;
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
  if (options.concordEventRewrite !== undefined) concord.eventRewrite = options.concordEventRewrite;
  if (options.auth === true) {
    const setup = await compareAuthSetup(etcd, concord);
    if (setup !== undefined) return { divergence: { index: -1, ...setup }, opsRun: 0 };
  }
  const settle = new WatchSettler(etcd, concord, options.watchSettleMs);
  try {
    for (let index = 0; index < ops.length; index++) {
      const op = ops[index]!;
      if (op.type === 'watchCancel' || (op.type === 'compact' && etcd.hasWatchers())) {
        const unsettled = await settle.settle();
        if (unsettled !== undefined) return { divergence: { index, ...unsettled }, opsRun: index };
      }
      if (op.type === 'watchCreate') settle.noteCreate(op, etcd);
      const [a, b] = await Promise.all([etcd.execute(op), concord.execute(op)]);
      options.trace?.(index, op, a, b);
      if (!sameNormalised(a, b))
        return { divergence: { index, what: 'answer', etcd: a, concord: b }, opsRun: index + 1 };
      const watch = settle.compare(false);
      if (watch !== undefined) return { divergence: { index, ...watch }, opsRun: index + 1 };
      if ((index + 1) % options.keyspaceCheckEvery === 0) {
        const checked = (await compareKeyspace(etcd, concord)) ?? (await settle.settle());
        if (checked !== undefined) return { divergence: { index, ...checked }, opsRun: index + 1 };
      }
      options.onProgress?.(index + 1);
    }
    const keyspace = await compareKeyspace(etcd, concord);
    if (keyspace !== undefined) return { divergence: { index: ops.length, ...keyspace }, opsRun: ops.length };
    const watch = await settle.settle();
    if (watch !== undefined) return { divergence: { index: ops.length, ...watch }, opsRun: ops.length };
    return { divergence: undefined, opsRun: ops.length };
  } finally {
    etcd.close();
    concord.close();
  }
}

type Difference = Omit<Divergence, 'index'>;

/** Enables auth on both sides; the first step whose answers differ, if any. */
async function compareAuthSetup(etcd: Side, concord: Side): Promise<Difference | undefined> {
  const [a, b] = await Promise.all([etcd.enableAuth(), concord.enableAuth()]);
  const step = a.findIndex((outcome, i) => !sameNormalised(outcome, b[i]));
  return step < 0 ? undefined : { what: `auth setup step ${step}`, etcd: a[step], concord: b[step] };
}

async function compareKeyspace(etcd: Side, concord: Side): Promise<Difference | undefined> {
  const [a, b]: Outcome[] = await Promise.all([etcd.keyspace(), concord.keyspace()]);
  return sameNormalised(a, b) ? undefined : { what: 'keyspace', etcd: a, concord: b };
}

/**
 * Watch logs only grow, so one that is a prefix of the other's may still catch up; anything else
 * is a divergence at once. With `final`, a log still behind is one too. `verified` holds, per
 * log, how many items were already found equal (they are not compared again).
 */
function compareWatchState(
  etcd: Side,
  concord: Side,
  final: boolean,
  verified: Map<string, number>,
): Difference | undefined {
  const a = etcd.watchState();
  const b = concord.watchState();
  for (const key of new Set([...a.keys(), ...b.keys()])) {
    const left = a.get(key) ?? [];
    const right = b.get(key) ?? [];
    const shorter = Math.min(left.length, right.length);
    for (let i = verified.get(key) ?? 0; i < shorter; i++) {
      if (!sameNormalised(left[i], right[i])) {
        return { what: `${key} item ${i}`, etcd: left.slice(i), concord: right.slice(i) };
      }
    }
    verified.set(key, shorter);
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
 * etcd replays history to a watcher created with a past start revision (and tells it about
 * compaction) from a loop that runs every 100 ms, so after such a create the runner waits, before
 * a cancel or a compaction whose effect depends on what a watcher has been sent, until both sides'
 * watch logs are equal and have not changed for this long.
 */
const watchQuietMs = 250;

/**
 * Compares both sides' watch logs and brings them to a point where they must be equal: a progress
 * barrier on every stream (every acknowledged write's events to synced watchers have arrived),
 * then polling until the logs are equal, and, while a history replay may still be under way,
 * equal and unchanged for watchQuietMs.
 */
class WatchSettler {
  private replayMayRun = false;
  /** Per log, how many items were found equal on both sides already. */
  private readonly verified = new Map<string, number>();

  constructor(
    private readonly etcd: Side,
    private readonly concord: Side,
    private readonly settleMs: number,
  ) {}

  /** A create with a start revision at or below the newest one makes the member replay history. */
  noteCreate(op: WatchCreateSpec, side: Side): void {
    if (op.startRevision === undefined) return;
    const start = Number(side.watchStartRevision(op.startRevision));
    if (start !== 0 && start <= side.newestRevision) this.replayMayRun = true;
  }

  compare(final: boolean): Difference | undefined {
    return compareWatchState(this.etcd, this.concord, final, this.verified);
  }

  /** Undefined once settled; else the difference (a log still behind at the deadline is one). */
  async settle(): Promise<Difference | undefined> {
    if (!this.etcd.hasWatchers()) return undefined;
    await Promise.all([this.etcd.watchBarrier(), this.concord.watchBarrier()]);
    const quietMs = this.replayMayRun ? watchQuietMs : 0;
    const deadline = Date.now() + this.settleMs;
    let equalSince: number | undefined;
    let lastSize = -1;
    for (;;) {
      const early = this.compare(false);
      if (early !== undefined) return early;
      const unequal = this.compare(true);
      const size = this.etcd.watchItemCount() + this.concord.watchItemCount();
      if (unequal !== undefined || size !== lastSize) equalSince = undefined;
      else equalSince ??= Date.now();
      lastSize = size;
      const quiet = quietMs === 0 || (equalSince !== undefined && Date.now() - equalSince >= quietMs);
      if (unequal === undefined && quiet) {
        this.replayMayRun = false;
        return undefined;
      }
      if (Date.now() > deadline) return unequal;
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }
}
