// A power-loss campaign: a 3-member cluster with every data dir on its own plfs mount, under put
// load, has its power cut at random points, many times. A whole-cluster cut powers off every
// mount at once; a single-member cut powers off one. The members killed with their file systems
// restart on what survived, and then every write the cluster ever acknowledged must be readable
// with its value, and every member must hold the same keyspace (HashKV at one revision).
//
// The seed fixes the cut kinds, targets, load durations and what each cut keeps; thread timing
// is not reproducible, so a seed reproduces a campaign's shape, not every byte of it.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startConcordCluster } from '../support/cluster.js';
import { startLoad } from '../support/load.js';
import { gatewayPost, memberStatus, type ProcessCluster, pollUntil } from '../support/process-cluster.js';
import { PlfsMount, type PowerOffReport } from './plfs-mount.js';

export interface CampaignOptions {
  cuts: number;
  seed: number;
  /** Every n-th cut powers off one member instead of all (0 = whole-cluster cuts only). */
  memberCutEvery?: number;
  writers?: number;
  /** Load runs a random time in [min, max] before each cut. */
  loadMsMin?: number;
  loadMsMax?: number;
  snapshotCount?: number;
  /** Added to every member's environment (the self-test's fault switch). */
  env?: Record<string, string>;
  /** Stop after the first cut that lost a write or left the cluster unusable. */
  stopOnFailure?: boolean;
  restartTimeoutMs?: number;
  log?: (line: string) => void;
}

export interface CutResult {
  cut: number;
  kind: 'cluster' | 'member';
  members: number[];
  /** Writes acknowledged during this cut's load. */
  acked: number;
  /** Acknowledged keys (of this or any earlier cut) missing or changed after the restart. */
  lost: string[];
  /** Members whose HashKV differed from the first member's at the same revision. */
  diverged: boolean;
  /** Why the cluster did not come back (a member exited or stayed unhealthy), if it did not. */
  failure?: string;
  powerOffs: PowerOffReport[];
}

export interface CampaignResult {
  seed: number;
  cuts: CutResult[];
  ackedTotal: number;
  lostTotal: number;
  failures: number;
}

/** mulberry32: a small seeded PRNG, so a seed picks the same cuts on every machine. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const KEY_PREFIX = 'pl/';
const SIZE = 3;
const ACK_WAIT_MS = 10_000;
const CONVERGE_TIMEOUT_MS = 30_000;
const HEALTH_STEP_MS = 1000;
const EXIT_GRACE_MS = 1000;

export async function runCampaign(options: CampaignOptions): Promise<CampaignResult> {
  const log = options.log ?? (() => {});
  const random = seededRandom(options.seed);
  const nextSeed = () => Math.floor(random() * 2 ** 31);
  const root = await mkdtemp(join(tmpdir(), 'concord-powerloss-'));
  const mounts = Array.from(
    { length: SIZE },
    (_, i) => new PlfsMount(join(root, `disk${i}`), join(root, `mnt${i}`)),
  );
  let cluster: ProcessCluster | undefined;
  const result: CampaignResult = { seed: options.seed, cuts: [], ackedTotal: 0, lostTotal: 0, failures: 0 };
  try {
    for (const mount of mounts) await mount.mount(nextSeed());
    cluster = await startConcordCluster({
      size: SIZE,
      dataDirs: mounts.map((m) => join(m.mountPoint, 'data')),
      snapshotCount: options.snapshotCount ?? 10_000,
      env: options.env ?? {},
      startTimeoutMs: 60_000,
    });
    const acked = new Map<string, string>();
    for (let cut = 0; cut < options.cuts; cut++) {
      const every = options.memberCutEvery ?? 0;
      const kind = every > 0 && cut % every === every - 1 ? 'member' : 'cluster';
      const targets = kind === 'cluster' ? [0, 1, 2] : [Math.floor(random() * SIZE)];
      const loadMs =
        (options.loadMsMin ?? 300) + random() * ((options.loadMsMax ?? 2000) - (options.loadMsMin ?? 300));
      const cutResult = await runCut(cluster, mounts, {
        cut,
        kind,
        targets,
        loadMs,
        writers: options.writers ?? 8,
        acked,
        nextSeed,
        restartTimeoutMs: options.restartTimeoutMs ?? 60_000,
      });
      result.cuts.push(cutResult);
      result.ackedTotal += cutResult.acked;
      result.lostTotal += cutResult.lost.length;
      const failed = cutResult.lost.length > 0 || cutResult.diverged || cutResult.failure !== undefined;
      if (failed) result.failures++;
      log(
        `cut ${cut} (${kind} ${targets.join(',')}) after ${Math.round(loadMs)} ms: acked ${cutResult.acked}, ` +
          `lost ${cutResult.lost.length}${cutResult.diverged ? ', members DIVERGED' : ''}` +
          `${cutResult.failure !== undefined ? `, did not come back: ${cutResult.failure}` : ''}; ` +
          `dropped pages ${cutResult.powerOffs.map((p) => `${p.droppedPages}/${p.droppedPages + p.keptPages}`).join(' ')}`,
      );
      if (cutResult.failure !== undefined || (failed && options.stopOnFailure)) break;
    }
    return result;
  } finally {
    await cluster?.dispose();
    for (const mount of mounts) await mount.unmount();
    await rm(root, { recursive: true, force: true });
  }
}

interface CutPlan {
  cut: number;
  kind: 'cluster' | 'member';
  targets: number[];
  loadMs: number;
  writers: number;
  acked: Map<string, string>;
  nextSeed: () => number;
  restartTimeoutMs: number;
}

async function runCut(cluster: ProcessCluster, mounts: PlfsMount[], plan: CutPlan): Promise<CutResult> {
  const load = startLoad({
    endpoints: () => cluster.endpoints(),
    writers: plan.writers,
    prefix: `${KEY_PREFIX}${String(plan.cut).padStart(4, '0')}/`,
    requestTimeoutMs: 2000,
  });
  const startedAt = Date.now();
  await sleep(plan.loadMs);
  // A cut with nothing acknowledged proves nothing: wait for the first ack if there was none yet.
  await load.firstAckAfter(startedAt, ACK_WAIT_MS).catch(() => undefined);
  // The cut: the file systems freeze first (nothing more becomes durable), then the processes die.
  const powerOffs = await Promise.all(plan.targets.map((i) => mounts[i]!.powerOff()));
  // A member may already have stopped by itself on the first EIO.
  await Promise.all(
    plan.targets.map((i) => (cluster.member(i).child !== undefined ? cluster.kill(i) : undefined)),
  );
  const { acked } = await load.stop();
  for (const [key, value] of acked) plan.acked.set(key, value);
  for (const i of plan.targets) await mounts[i]!.unmount();
  for (const i of plan.targets) await mounts[i]!.mount(plan.nextSeed());
  const base = { cut: plan.cut, kind: plan.kind, members: plan.targets, acked: acked.size, powerOffs };
  for (const i of plan.targets) await cluster.restart(i, { waitHealthy: false });
  const failure = await waitBack(cluster, plan.targets, plan.restartTimeoutMs);
  if (failure !== undefined) return { ...base, lost: [], diverged: false, failure };
  const lost = await findLost(cluster, plan.acked);
  for (const key of lost) plan.acked.delete(key); // counted once, at the cut that lost it
  const diverged = await membersDiverge(cluster);
  return { ...base, lost, diverged };
}

/** Waits for the restarted members to be healthy; says why not as soon as one exits. */
async function waitBack(
  cluster: ProcessCluster,
  targets: number[],
  timeoutMs: number,
): Promise<string | undefined> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const exited = targets.filter((i) => cluster.member(i).child === undefined);
    if (exited.length > 0) {
      await sleep(EXIT_GRACE_MS); // let the others finish their start, for the logs
      const names = exited.map((i) => cluster.member(i).name).join(', ');
      return `${names} exited at restart\n${cluster.dumpLogs()}`;
    }
    try {
      await cluster.waitHealthy(Math.min(HEALTH_STEP_MS, Math.max(1, deadline - Date.now())), targets);
      return undefined;
    } catch (error) {
      if (Date.now() > deadline) return `${(error as Error).message}\n${cluster.dumpLogs()}`;
    }
  }
}

/** Acknowledged keys the cluster no longer has (or has with another value), by a linearizable read. */
async function findLost(cluster: ProcessCluster, acked: Map<string, string>): Promise<string[]> {
  const kvs = await pollUntil('a linearizable read of every key', CONVERGE_TIMEOUT_MS, async () => {
    const leader = await cluster.leaderIndex(CONVERGE_TIMEOUT_MS);
    return (await readAll(cluster.endpoint(leader))).kvs;
  });
  const lost: string[] = [];
  for (const [key, value] of acked) if (kvs.get(key) !== value) lost.push(key);
  return lost;
}

async function readAll(endpoint: string): Promise<{ revision: number; kvs: Map<string, string> }> {
  const response = await gatewayPost(
    endpoint,
    '/v3/kv/range',
    { key: b64(KEY_PREFIX), range_end: b64('pl0') },
    10_000,
  );
  const kvs = new Map<string, string>();
  for (const kv of (response.kvs ?? []) as Array<{ key: string; value?: string }>)
    kvs.set(
      Buffer.from(kv.key, 'base64').toString('utf8'),
      Buffer.from(kv.value ?? '', 'base64').toString('utf8'),
    );
  return { revision: Number((response.header as { revision?: string }).revision ?? '0'), kvs };
}

function b64(text: string): string {
  return Buffer.from(text, 'utf8').toString('base64');
}

/** True when two members hold different keyspaces at the same revision. */
async function membersDiverge(cluster: ProcessCluster): Promise<boolean> {
  const leader = await cluster.leaderIndex(CONVERGE_TIMEOUT_MS);
  const revision = Number((await memberStatus(cluster.endpoint(leader))).revision);
  const hashes = new Set<string>();
  for (const index of cluster.runningIndexes()) {
    const endpoint = cluster.endpoint(index);
    await pollUntil(`member ${index} to reach revision ${revision}`, CONVERGE_TIMEOUT_MS, async () =>
      Number((await memberStatus(endpoint)).revision) >= revision ? true : undefined,
    );
    const response = await gatewayPost(endpoint, '/v3/maintenance/hashkv', { revision }, 10_000);
    hashes.add(String(response.hash));
  }
  return hashes.size > 1;
}
