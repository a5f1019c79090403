// `npm run bench:vs-etcd`: the same workloads, with the same tool, against a 3-member etcd and a
// 3-member Concord started the same way (loopback, ephemeral ports, temp data dirs, default
// fsync, heartbeat 100 ms / election 1000 ms), one cluster at a time, then a table of ratios.
// The machine is shared and noisy: read the ratios, not the absolute numbers.
// With --engines (e.g. `--engines raft,multi-paxos,multi-paxos:2 --nodes 5`) it compares Concord
// clusters running different consensus engines instead, the first engine being the baseline;
// --slow-member-ms N delays every peer message of one follower by N ms in each round, and each
// round measures every engine without the slow member too (the same-run baseline). In that mode
// the members' roles are chosen per round, not left to which member won the election: the slow
// member is a follower, and the first endpoint (which the watch workload's lone writer uses) is
// another, fast follower (--slow-member-client slow: the slow member itself); the report names
// them per round.

import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { delimiter, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { SERVING_NODE_FLAGS } from '../serving-flags.js';
import { CONCORD_VERSION } from '../version.js';
import { BenchCluster, type ClusterSecurity, type MemberBinary } from './cluster.js';
import { monotonicNowUs, type ProfileWindow, readCpuProfile, topSelfTime } from './cpu-profile.js';
import type { BenchOptions } from './options.js';
import { formatMs } from './report.js';
import { type BenchResult, runWorkload } from './run.js';
import {
  clusterSecurity,
  enableBenchAuth,
  parseSecuritySettings,
  SECURITY_SETTINGS,
  type SecurityRun,
  type SecuritySetting,
  securityTables,
  writeSecurityMaterial,
} from './security.js';
import { cpuMsPerOp, errorsNote, type Measured, p50p99, ratio, renderTable } from './tables.js';

const timing = { heartbeatMs: 100, electionMs: 1000 };
const startTimeoutMs = 60_000;
/** Each Auth call of the setup; UserAdd hashes a password with bcrypt on a busy machine. */
const authSetupTimeoutMs = 30_000;
const restartTimeoutMs = 120_000;
const settleMs = 1000;
const profileTopCount = 15;

export interface VsOptions {
  quick: boolean;
  markdown: boolean;
  json: boolean;
  profileDir: string | undefined;
  workloadMs: number;
  loadKeys: number;
  rounds: number;
  /** Both systems with client and peer TLS (self-signed: --auto-tls, --peer-auto-tls). */
  tls: boolean;
  /** Members per cluster (3 against etcd; 3 or 5 with --engines). */
  nodes: number;
  /** --engines: Concord clusters to compare, the first being the baseline; undefined: etcd vs Concord. */
  engines: EngineSpec[] | undefined;
  /** --slow-member-ms: one follower delays every peer message by this much (0: none). */
  slowMemberMs: number;
  /** --slow-member-client: the member the first client connection (the lone writer) goes to. */
  slowMemberClient: SlowMemberClient;
  /** --security: etcd and Concord under each of these settings, put and range only; undefined: off. */
  security: SecuritySetting[] | undefined;
  /** --memory-keys: only load this many keys into etcd and Concord and compare RSS and disk. */
  memoryKeys: number | undefined;
  /** --only: run just these workloads (ids or '-'-prefixes of ids, see WORKLOAD_IDS); undefined: all. */
  only: string[] | undefined;
}

/** One Concord engine to benchmark: `raft`, `multi-paxos` or `multi-paxos:K` (phase-2 quorum K). */
interface EngineSpec {
  label: string;
  flags: string[];
}

export function parseEngines(text: string, nodes: number): EngineSpec[] {
  return text.split(',').map((part) => {
    const [name, quorum] = part.trim().split(':');
    if (name !== 'raft' && name !== 'multi-paxos')
      throw new Error(`--engines: unknown engine '${part}' (raft, multi-paxos or multi-paxos:K)`);
    if (quorum === undefined) return { label: name, flags: ['--consensus', name] };
    const k = Number(quorum);
    if (name !== 'multi-paxos' || !Number.isInteger(k) || k < 1 || k > nodes)
      throw new Error(`--engines: '${part}': a phase-2 quorum K in 1..${nodes} is for multi-paxos:K only`);
    return { label: `${name} q2=${k}`, flags: ['--consensus', name, '--paxos-phase2-quorum', String(k)] };
  });
}

interface WorkloadSpec {
  id: string;
  title: string;
  options: Partial<BenchOptions> & Pick<BenchOptions, 'workload'>;
  /** Every connection goes to this member, found when the workload starts; undefined: all members. */
  target?: 'leader' | 'follower';
}

export interface SystemRun {
  label: string;
  version: string;
  freshStartMs: number;
  load: Measured;
  rssBytes: number[];
  diskBytes: number;
  restartServingMs: number[];
  workloads: Map<string, Measured>;
}

const keySize = 16;
const valSize = 256;

/** The workloads --security runs: where a per-request cost of TLS or auth would show. */
const securityWorkloadIds = ['put-64', 'range-l', 'range-s'];

function workloadSpecs(options: VsOptions): WorkloadSpec[] {
  const all = allWorkloadSpecs(options.loadKeys);
  const chosen =
    options.security === undefined ? all : all.filter((spec) => securityWorkloadIds.includes(spec.id));
  return options.only === undefined ? chosen : chosen.filter((spec) => selectedBy(options.only!, spec.id));
}

/** --only: a workload is chosen by its id or by a prefix of it followed by '-' ('single-put', 'put'). */
export function selectedBy(only: string[], id: string): boolean {
  return only.some((want) => id === want || id.startsWith(`${want}-`));
}

/** The ids --only accepts (each also selects the ids it is a '-'-prefix of). */
export const WORKLOAD_IDS: readonly string[] = allWorkloadSpecs(0).map((spec) => spec.id);

function allWorkloadSpecs(loadKeys: number): WorkloadSpec[] {
  const kv = { keySize, valSize, keySpaceSize: loadKeys, skipPreload: true };
  return [
    { id: 'put-64', title: 'put, 64 clients', options: { workload: 'put', clients: 64, conns: 8, ...kv } },
    {
      id: 'put-256',
      title: 'put, 256 clients',
      options: { workload: 'put', clients: 256, conns: 16, ...kv },
    },
    {
      id: 'single-put-leader',
      title: 'single client put through the leader',
      options: { workload: 'put', clients: 1, conns: 1, ...kv },
      target: 'leader',
    },
    {
      id: 'single-put-follower',
      title: 'single client put through a follower',
      options: { workload: 'put', clients: 1, conns: 1, ...kv },
      target: 'follower',
    },
    {
      id: 'range-l',
      title: 'range linearizable, 64 clients',
      options: { workload: 'range', consistency: 'l', clients: 64, conns: 8, ...kv },
    },
    {
      id: 'range-s',
      title: 'range serializable, 64 clients',
      options: { workload: 'range', consistency: 's', clients: 64, conns: 8, ...kv },
    },
    {
      id: 'watch',
      title: 'watch fan-out: 100 watchers, 1 writer (events/s)',
      options: {
        workload: 'watch',
        clients: 1,
        watchers: 100,
        watchStreams: 100,
        conns: 8,
        keySize,
        valSize,
        keySpaceSize: 1000,
      },
    },
    {
      id: 'watch-1000',
      title: 'watch fan-out: 1000 watchers over 10 streams, 1 writer (events/s)',
      options: {
        workload: 'watch',
        clients: 1,
        watchers: 1000,
        watchStreams: 10,
        conns: 10,
        keySize,
        valSize,
        keySpaceSize: 1000,
      },
    },
    {
      id: 'lease',
      title: 'lease keep-alive: 1000 leases, 64 clients',
      options: { workload: 'lease-keepalive', clients: 64, leases: 1000, conns: 8 },
    },
  ];
}

function benchOptions(
  cluster: BenchCluster,
  durationMs: number,
  spec: WorkloadSpec['options'],
): BenchOptions {
  return {
    tls: cluster.clientTls(),
    auth: cluster.auth,
    endpoints: cluster.endpoints(),
    conns: 1,
    clients: 1,
    total: undefined,
    durationMs,
    keySize: 8,
    valSize: 8,
    keySpaceSize: 1000,
    sequentialKeys: false,
    consistency: 'l',
    readRatio: 0.5,
    watchers: 100,
    watchStreams: 100,
    leases: 100,
    targetLeader: false,
    skipPreload: false,
    requestTimeoutMs: 10_000,
    json: true,
    progress: false,
    ...spec,
  };
}

async function measure(cluster: BenchCluster, options: BenchOptions): Promise<Measured> {
  const leader = await cluster.leaderIndex();
  const indexes = cluster.members.map((_, i) => i);
  let startCpu: number[] = [];
  let endCpu: number[] = [];
  let startMs = 0;
  let endMs = 0;
  const window: ProfileWindow = { fromUs: 0, toUs: 0 };
  const result = await runWorkload(options, {
    started: () => {
      startCpu = indexes.map((i) => cluster.cpuSeconds(i));
      startMs = performance.now();
      window.fromUs = monotonicNowUs();
    },
    ended: () => {
      endCpu = indexes.map((i) => cluster.cpuSeconds(i));
      endMs = performance.now();
      window.toUs = monotonicNowUs();
    },
  });
  const wallSec = (endMs - startMs) / 1000;
  const used = indexes.map((i) => endCpu[i]! - startCpu[i]!);
  return {
    result,
    leaderCpuPercent: (used[leader]! / wallSec) * 100,
    clusterCpuPercent: (used.reduce((a, b) => a + b, 0) / wallSec) * 100,
    window,
  };
}

function note(text: string): void {
  process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${text}\n`);
}

function summary(measured: Measured): string {
  const r = measured.result;
  return `${r.opsPerSec.toFixed(0)} ops/s, p50 ${formatMs(r.latencyMs.p50)} ms, p99 ${formatMs(r.latencyMs.p99)} ms, errors ${r.errors}, client CPU ${r.clientCpuPercent.toFixed(0)}%, leader CPU ${measured.leaderCpuPercent.toFixed(0)}%`;
}

interface PreparedSystem {
  label: string;
  version: string;
  root: string;
  cluster: BenchCluster;
  freshStartMs: number;
  load: Measured;
  rssBytes: number[];
  diskBytes: number;
}

/** Starts a fresh cluster, loads the keys, samples RSS and disk, stops it (data kept). */
async function prepareSystem(
  binary: MemberBinary,
  version: string,
  options: VsOptions,
  security: ClusterSecurity = options.tls ? { tls: 'auto' } : {},
): Promise<PreparedSystem> {
  const root = await mkdtemp(join(tmpdir(), `bench-${binary.label.replace(/\W+/g, '-')}-`));
  tempRoots.add(root);
  const cluster = await BenchCluster.create(binary, root, options.nodes, timing, security);
  activeClusters.add(cluster);
  try {
    cluster.startAll();
    const fresh = await cluster.waitServing(startTimeoutMs);
    note(`${binary.label}: ${options.nodes} members serving after ${Math.max(...fresh).toFixed(0)} ms`);
    if (security.authTokenFlag !== undefined) {
      await enableBenchAuth(cluster, authSetupTimeoutMs);
      note(`${binary.label}: auth enabled, clients sign in as '${cluster.auth?.user}'`);
    }
    const load = await measure(
      cluster,
      benchOptions(cluster, 0, {
        workload: 'put',
        sequentialKeys: true,
        total: options.loadKeys,
        durationMs: undefined,
        keySpaceSize: options.loadKeys,
        keySize,
        valSize,
        clients: 64,
        conns: 8,
      }),
    );
    note(`${binary.label}: loaded ${options.loadKeys} keys: ${summary(load)}`);
    await new Promise((resolve) => setTimeout(resolve, settleMs));
    const rssBytes = cluster.members.map((_, i) => cluster.rssBytes(i));
    const diskBytes = await cluster.diskBytes();
    return {
      label: binary.label,
      version,
      root,
      cluster,
      freshStartMs: Math.max(...fresh),
      load,
      rssBytes,
      diskBytes,
    };
  } finally {
    await cluster.stopAll();
  }
}

export interface RoundResult {
  restartServingMs: number[];
  workloads: Map<string, Measured>;
  /** With --slow-member-ms: which member led, which was (or would be) slow, where the writer was. */
  placement?: string;
}

export type SlowMemberClient = 'fast-follower' | 'slow';

export interface SlowMemberPlacement {
  /** The follower that delays its peer messages. */
  slow: number;
  /** The member the first client connection goes to (a lone writer's, e.g. the watch workload's). */
  client: number;
}

/**
 * Roles for a slow-member round given the leader's index: the slow member is the last follower,
 * the client goes to the first other follower, or to the slow one itself.
 */
export function placeSlowMember(leader: number, size: number, client: SlowMemberClient): SlowMemberPlacement {
  const followers = Array.from({ length: size }, (_, i) => i).filter((i) => i !== leader);
  if (followers.length < 2) throw new Error(`a slow member and a fast follower need 3 members, got ${size}`);
  const slow = followers[followers.length - 1]!;
  return { slow, client: client === 'slow' ? slow : followers[0]! };
}

/** The endpoints reordered to start at `first` (the pool gives connection i endpoint i mod n). */
export function endpointsStartingAt(endpoints: string[], first: number): string[] {
  return [...endpoints.slice(first), ...endpoints.slice(0, first)];
}

/**
 * Restarts the prepared cluster on its data, times it to serving, runs every workload, stops it.
 * With slowMemberMs > 0 one follower delays its peer messages by that much meanwhile.
 */
async function runRound(
  system: PreparedSystem,
  options: VsOptions,
  round: number,
  slowMemberMs = options.slowMemberMs,
): Promise<RoundResult> {
  const { cluster } = system;
  const label = slowMemberMs > 0 ? `${system.label} (slow member)` : system.label;
  try {
    cluster.startAll();
    const restartServingMs = await cluster.waitServing(restartTimeoutMs);
    note(`${label} round ${round}: restarted, serving after ${Math.max(...restartServingMs).toFixed(0)} ms`);
    // In the slow-member mode the baseline runs with the same roles, only nothing is slowed.
    let endpoints: string[] | undefined;
    let placement: string | undefined;
    if (options.slowMemberMs > 0) {
      const leader = await cluster.leaderIndex();
      const roles = placeSlowMember(leader, cluster.members.length, options.slowMemberClient);
      const name = (i: number) => cluster.members[i]!.name;
      const writerRole = roles.client === roles.slow ? 'the slow follower' : 'a fast follower';
      placement = `leader ${name(leader)}, slow ${name(roles.slow)}${slowMemberMs > 0 ? '' : ' (not slowed)'}, writer on ${name(roles.client)} (${writerRole})`;
      note(`${label} round ${round}: ${placement}`);
      if (slowMemberMs > 0) await slowMember(cluster, roles.slow, slowMemberMs, label);
      endpoints = endpointsStartingAt(cluster.endpoints(), roles.client);
    }
    const workloads = new Map<string, Measured>();
    for (const spec of workloadSpecs(options)) {
      const specOptions =
        spec.target !== undefined
          ? { ...spec.options, endpoints: await targetEndpoints(cluster, spec.target) }
          : endpoints === undefined
            ? spec.options
            : { ...spec.options, endpoints };
      const measured = await measure(cluster, benchOptions(cluster, options.workloadMs, specOptions));
      workloads.set(spec.id, measured);
      note(`${label} round ${round}: ${spec.title}: ${summary(measured)}`);
    }
    return placement === undefined
      ? { restartServingMs, workloads }
      : { restartServingMs, workloads, placement };
  } finally {
    await cluster.stopAll();
  }
}

/** The one endpoint of the leader, or of the member after it (a follower), as it is now. */
async function targetEndpoints(cluster: BenchCluster, target: 'leader' | 'follower'): Promise<string[]> {
  const leader = await cluster.leaderIndex();
  const index = target === 'leader' ? leader : (leader + 1) % cluster.members.length;
  return [cluster.endpoints()[index]!];
}

/** Makes a follower slow: it delays every peer message it sends or receives (needs fault injection). */
async function slowMember(
  cluster: BenchCluster,
  index: number,
  delayMs: number,
  label: string,
): Promise<void> {
  const member = cluster.members[index]!;
  const response = await fetch(`http://127.0.0.1:${member.clientPort}/debug/faults`, {
    method: 'POST',
    body: JSON.stringify({ drop: [], delayMs }),
  });
  if (!response.ok) throw new Error(`${label}: /debug/faults on ${member.name} answered ${response.status}`);
  note(`${label}: ${member.name} (a follower) delays its peer messages by ${delayMs} ms`);
}

/** Noise on a shared machine only ever slows a run down, so each workload keeps its best round. */
export function bestOfRounds(
  system: Omit<PreparedSystem, 'cluster' | 'root'>,
  rounds: RoundResult[],
): SystemRun {
  const workloads = new Map<string, Measured>();
  for (const round of rounds) {
    for (const [id, measured] of round.workloads) {
      const kept = workloads.get(id);
      if (kept === undefined || measured.result.opsPerSec > kept.result.opsPerSec)
        workloads.set(id, measured);
    }
  }
  const restarts = rounds.map((round) => round.restartServingMs);
  const slowest = (values: number[]) => Math.max(...values);
  const restartServingMs = restarts.reduce((best, next) => (slowest(next) < slowest(best) ? next : best));
  return {
    label: system.label,
    version: system.version,
    freshStartMs: system.freshStartMs,
    load: system.load,
    rssBytes: system.rssBytes,
    diskBytes: system.diskBytes,
    restartServingMs,
    workloads,
  };
}

const tempRoots = new Set<string>();

/**
 * Stops every cluster and deletes the temp roots. The member logs of a cluster with a member that
 * exited unasked (or of every cluster, after a run that failed) are first copied to a directory
 * that stays, whose path is printed.
 */
async function cleanUp(failed = false): Promise<void> {
  await Promise.all([...activeClusters].map((cluster) => cluster.stopAll()));
  keepMemberLogs(failed);
  activeClusters.clear();
  await Promise.all([...tempRoots].map((root) => rm(root, { recursive: true, force: true })));
  tempRoots.clear();
}

const activeClusters = new Set<BenchCluster>();

function keepMemberLogs(failed: boolean): void {
  const clusters = [...activeClusters].filter((cluster) => failed || cluster.unexpectedExits.length > 0);
  if (clusters.length === 0) return;
  const dir = mkdtempSync(join(tmpdir(), 'bench-member-logs-'));
  for (const cluster of clusters) {
    cluster.keepLogs(dir);
    for (const exit of cluster.unexpectedExits)
      note(
        `${cluster.binary.label} ${exit.member} had exited unasked (code ${exit.code}, signal ${exit.signal})`,
      );
  }
  note(`member logs kept in ${dir}${failed ? ' (the run failed)' : ''}`);
}

// ---- output ---------------------------------------------------------------------------------

function comparisonTables(etcd: SystemRun, concord: SystemRun, options: VsOptions): string {
  const specs = [
    { id: 'load', title: `load ${options.loadKeys} keys × ${valSize} B, 64 clients` },
    ...workloadSpecs(options),
  ];
  const pick = (run: SystemRun, id: string): Measured => (id === 'load' ? run.load : run.workloads.get(id)!);
  const throughputRows = specs.map((spec) => {
    const e = pick(etcd, spec.id).result;
    const c = pick(concord, spec.id).result;
    return [
      spec.title,
      `${e.opsPerSec.toFixed(0)}${errorsNote(e)}`,
      `${c.opsPerSec.toFixed(0)}${errorsNote(c)}`,
      ratio(c.opsPerSec, e.opsPerSec),
      p50p99(e),
      p50p99(c),
    ];
  });
  const cpuRows = specs.map((spec) => {
    const e = pick(etcd, spec.id);
    const c = pick(concord, spec.id);
    const pct = (m: Measured) => `${m.leaderCpuPercent.toFixed(0)} / ${m.clusterCpuPercent.toFixed(0)} %`;
    return [
      spec.title,
      pct(e),
      pct(c),
      cpuMsPerOp(e).toFixed(3),
      cpuMsPerOp(c).toFixed(3),
      ratio(cpuMsPerOp(c), cpuMsPerOp(e)),
      `${e.result.clientCpuPercent.toFixed(0)} / ${c.result.clientCpuPercent.toFixed(0)} %`,
    ];
  });
  const latencyRows = latencyRatioRows(
    workloadSpecs(options).filter((spec) => spec.options.clients === 1 && spec.options.workload === 'put'),
    (id) => pick(etcd, id).result,
    (id) => pick(concord, id).result,
  );
  const resourceRows = [
    ...footprintRows(options.loadKeys, etcd, concord),
    [
      'restart with that data → first linearizable get (ms, slowest member)',
      Math.max(...etcd.restartServingMs).toFixed(0),
      Math.max(...concord.restartServingMs).toFixed(0),
      ratio(Math.max(...concord.restartServingMs), Math.max(...etcd.restartServingMs)),
    ],
    [
      'fresh cluster start → first linearizable get (ms)',
      etcd.freshStartMs.toFixed(0),
      concord.freshStartMs.toFixed(0),
      ratio(concord.freshStartMs, etcd.freshStartMs),
    ],
  ];
  return [
    renderTable(
      ['workload', 'etcd ops/s', 'concord ops/s', 'ratio', 'etcd p50/p99', 'concord p50/p99'],
      throughputRows,
      options.markdown,
    ),
    ...(latencyRows.length === 0
      ? []
      : [
          '',
          'Latency of a lone client, Concord / etcd (below 1.00x: Concord answers sooner):',
          '',
          renderTable(
            ['workload', 'etcd p50 / p99', 'concord p50 / p99', 'p50 ratio', 'p99 ratio'],
            latencyRows,
            options.markdown,
          ),
        ]),
    '',
    'Server CPU during each workload (leader / all 3 members, % of one core); CPU time of all members per operation',
    '(robust on a busy machine, where a single-threaded process only gets its share of the cores); the client CPU:',
    '',
    renderTable(
      [
        'workload',
        'etcd CPU',
        'concord CPU',
        'etcd CPU ms/op',
        'concord CPU ms/op',
        'ratio',
        'client CPU etcd / concord',
      ],
      cpuRows,
      options.markdown,
    ),
    '',
    renderTable(['resource', 'etcd', 'concord', 'ratio'], resourceRows, options.markdown),
  ].join('\n');
}

/** Per workload: both systems' p50 / p99 and Concord's over etcd's (latency: lower is better). */
export function latencyRatioRows(
  specs: { id: string; title: string }[],
  etcd: (id: string) => BenchResult,
  concord: (id: string) => BenchResult,
): string[][] {
  return specs.map((spec) => {
    const e = etcd(spec.id);
    const c = concord(spec.id);
    return [
      spec.title,
      p50p99(e),
      p50p99(c),
      ratio(c.latencyMs.p50, e.latencyMs.p50),
      ratio(c.latencyMs.p99, e.latencyMs.p99),
    ];
  });
}

function machineHeader(etcdVersion: string, nodes: number): string {
  const cores = cpus();
  const memGiB = (totalmem() / 1024 ** 3).toFixed(1);
  return [
    `date: ${new Date().toISOString()}`,
    `machine: ${cores.length} cores (${cores[0]?.model.trim() ?? 'unknown'}), ${memGiB} GiB RAM, load average ${loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')} at the start`,
    `node: ${process.version}, ${etcdVersion}, concord ${CONCORD_VERSION}`,
    `clusters: ${nodes} members on loopback, heartbeat ${timing.heartbeatMs} ms, election ${timing.electionMs} ms, default fsync; keys ${keySize} B, values ${valSize} B`,
  ].join('\n');
}

// ---- entry ----------------------------------------------------------------------------------

function findEtcd(): string | undefined {
  const fromEnv = process.env.ETCD_BIN;
  if (fromEnv !== undefined && fromEnv !== '') return existsSync(fromEnv) ? fromEnv : undefined;
  if (existsSync('/usr/bin/etcd')) return '/usr/bin/etcd';
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    const candidate = join(dir, 'etcd');
    if (dir !== '' && existsSync(candidate)) return candidate;
  }
  return undefined;
}

/** The etcd binary, or undefined after saying where it was looked for and how to install it. */
function etcdOrExplain(): string | undefined {
  const etcdPath = findEtcd();
  if (etcdPath === undefined) {
    process.stderr.write('bench-vs-etcd: etcd not found (looked at $ETCD_BIN, /usr/bin/etcd and PATH).\n');
    process.stderr.write('Install it with `apt-get install etcd-server` (or set ETCD_BIN) and run again.\n');
  }
  return etcdPath;
}

export function parseVsArgs(argv: string[]): VsOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: 'boolean' },
      markdown: { type: 'boolean' },
      json: { type: 'boolean' },
      'profile-put': { type: 'string' },
      rounds: { type: 'string' },
      tls: { type: 'boolean' },
      engines: { type: 'string' },
      nodes: { type: 'string' },
      'slow-member-ms': { type: 'string' },
      'slow-member-client': { type: 'string' },
      security: { type: 'boolean' },
      settings: { type: 'string' },
      'memory-keys': { type: 'string' },
      only: { type: 'string' },
      help: { type: 'boolean' },
    },
    strict: true,
  });
  if (values.help === true) {
    process.stdout.write(
      'Usage: bench-vs-etcd [--quick] [--markdown] [--json] [--profile-put DIR]\n' +
        '  --quick            fewer keys and shorter runs (~2 min instead of ~10)\n' +
        '  --markdown         print the tables as Markdown\n' +
        '  --json             also print every measurement as one JSON line\n' +
        '  --rounds N         restart-and-run rounds per system, best kept (default 2, --quick 1)\n' +
        '  --tls              both systems with client and peer TLS (--auto-tls, --peer-auto-tls)\n' +
        '  --profile-put DIR  only Concord: put workload with the members under node --cpu-prof,\n' +
        "                     then the leader's top self-time functions; with --security\n" +
        '                     --settings plaintext,S: setting S, put and range serializable\n' +
        '  --engines LIST     compare Concord engines instead of etcd and Concord, the first the\n' +
        '                     baseline: raft, multi-paxos, multi-paxos:K (phase-2 quorum K)\n' +
        '  --nodes N          members per cluster with --engines: 3 or 5 (default 3)\n' +
        '  --slow-member-ms N one follower delays every peer message by N ms (default 0); each\n' +
        '                     round also measures every engine without it, as the baseline\n' +
        '  --slow-member-client fast-follower|slow  where the first client connection (the watch\n' +
        "                     workload's lone writer) goes with --slow-member-ms (default fast-follower)\n" +
        '  --security         TLS and auth overhead: put and range on etcd and Concord, each\n' +
        '                     plaintext, with mutual client and peer TLS, with auth (simple token,\n' +
        '                     JWT) as a non-root user, and with TLS and auth; ratios to plaintext\n' +
        `  --settings LIST    with --security: some of ${SECURITY_SETTINGS.map((s) => s.id).join(',')}\n` +
        '  --memory-keys N    only memory: load N keys (up to 2,000,000) into etcd and Concord, then\n' +
        '                     RSS per member and disk; time grows with N (1,000,000: ~10 min quiet, 30 busy)\n' +
        `  --only LIST        only these workloads (an id, or a prefix before '-': single-put, put):\n` +
        `                     ${WORKLOAD_IDS.join(',')}\n`,
    );
    process.exit(0);
  }
  const quick = values.quick === true;
  const nodes = values.nodes === undefined ? 3 : Number(values.nodes);
  if (nodes !== 3 && nodes !== 5) throw new Error(`--nodes must be 3 or 5, got '${values.nodes}'`);
  if (nodes !== 3 && values.engines === undefined) throw new Error('--nodes applies to --engines only');
  const security = values.security === true ? parseSecuritySettings(values.settings) : undefined;
  if (values.settings !== undefined && security === undefined) throw new Error('--settings needs --security');
  if (security !== undefined && (values.tls === true || values.engines !== undefined))
    throw new Error('--security compares its own TLS settings of etcd and Concord: drop --tls and --engines');
  const memoryKeys = values['memory-keys'] === undefined ? undefined : Number(values['memory-keys']);
  if (
    memoryKeys !== undefined &&
    (!Number.isInteger(memoryKeys) || memoryKeys < 1000 || memoryKeys > 2_000_000)
  )
    throw new Error(`--memory-keys must be 1000..2000000, got '${values['memory-keys']}'`);
  if (memoryKeys !== undefined && (security !== undefined || values.engines !== undefined))
    throw new Error('--memory-keys compares etcd and Concord: drop --security and --engines');
  const only = values.only?.split(',').map((id) => id.trim());
  if (only !== undefined) {
    const unknown = only.filter((want) => !WORKLOAD_IDS.some((id) => selectedBy([want], id)));
    if (unknown.length > 0 || only.length === 0)
      throw new Error(`--only: unknown workload '${unknown.join(',')}' (ids: ${WORKLOAD_IDS.join(',')})`);
  }
  const slowMemberMs = values['slow-member-ms'] === undefined ? 0 : Number(values['slow-member-ms']);
  if (!Number.isInteger(slowMemberMs) || slowMemberMs < 0 || slowMemberMs > 10_000)
    throw new Error(`--slow-member-ms must be 0..10000, got '${values['slow-member-ms']}'`);
  const slowMemberClient = values['slow-member-client'] ?? 'fast-follower';
  if (slowMemberClient !== 'fast-follower' && slowMemberClient !== 'slow')
    throw new Error(`--slow-member-client must be fast-follower or slow, got '${slowMemberClient}'`);
  if (values['slow-member-client'] !== undefined && slowMemberMs === 0)
    throw new Error('--slow-member-client needs --slow-member-ms');
  return {
    nodes,
    engines: values.engines === undefined ? undefined : parseEngines(values.engines, nodes),
    slowMemberMs,
    slowMemberClient,
    quick,
    markdown: values.markdown === true,
    json: values.json === true,
    profileDir: values['profile-put'],
    workloadMs: quick ? 3000 : 8000,
    loadKeys: memoryKeys ?? (security === undefined ? (quick ? 20_000 : 100_000) : quick ? 1000 : 5000),
    memoryKeys,
    only,
    security,
    rounds: roundsFlag(values.rounds, quick ? 1 : 2),
    tls: values.tls === true,
  };
}

function roundsFlag(text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  const rounds = Number(text);
  if (!Number.isInteger(rounds) || rounds < 1 || rounds > 10)
    throw new Error(`--rounds must be 1..10, got '${text}'`);
  return rounds;
}

export function concordBinary(nodeArgs: (name: string) => string[], argsAfter: string[] = []): MemberBinary {
  const script = fileURLToPath(new URL('../concord.js', import.meta.url));
  if (!existsSync(script))
    throw new Error(`compiled concord not found at ${script}; run npm run build first`);
  return {
    label: 'concord',
    command: process.execPath,
    argsBefore: (name) => [...SERVING_NODE_FLAGS, ...nodeArgs(name), script],
    argsAfter,
  };
}

/**
 * --profile-put: the put workload on a Concord cluster whose members run under node --cpu-prof;
 * with --security --settings S (one setting) the cluster runs with S's flags (and auth enabled, the
 * clients signed in as the bench user), so the profile shows what that setting costs.
 */
async function profilePut(options: VsOptions, profileDir: string): Promise<number> {
  const binary = concordBinary((name) => ['--cpu-prof', '--cpu-prof-dir', join(profileDir, name)]);
  const root = await mkdtemp(join(tmpdir(), 'bench-profile-'));
  tempRoots.add(root);
  if (options.security !== undefined && options.security.length > 2)
    throw new Error('--profile-put with --security profiles one setting: --settings plaintext,<setting>');
  const setting = options.security?.find((s) => s.id !== 'plaintext') ?? options.security?.[0];
  const security: ClusterSecurity =
    setting !== undefined
      ? clusterSecurity(setting, writeSecurityMaterial(root))
      : options.tls
        ? { tls: 'auto' }
        : {};
  const cluster = await BenchCluster.create(binary, root, options.nodes, timing, security);
  activeClusters.add(cluster);
  // With --security also range serializable: the request path without consensus or disk.
  const specIds = setting === undefined ? ['put-64'] : ['put-64', 'range-s'];
  const specs = specIds.map((id) => allWorkloadSpecs(options.loadKeys).find((s) => s.id === id)!);
  let leader: number;
  const measured: Measured[] = [];
  try {
    cluster.startAll();
    await cluster.waitServing(startTimeoutMs);
    if (security.authTokenFlag !== undefined) await enableBenchAuth(cluster, authSetupTimeoutMs);
    leader = await cluster.leaderIndex();
    for (const spec of specs) {
      const one = await measure(cluster, benchOptions(cluster, options.workloadMs, spec.options));
      measured.push(one);
      note(
        `concord (profiled${setting === undefined ? '' : `, ${setting.id}`}): ${spec.title}: ${summary(one)}`,
      );
    }
    if ((await cluster.leaderIndex()) !== leader)
      throw new Error('leadership moved during the profiled run; run again');
  } finally {
    await cluster.stopAll();
    activeClusters.delete(cluster);
    await rm(root, { recursive: true, force: true });
  }
  const leaderName = cluster.members[leader]!.name;
  const dir = join(profileDir, leaderName);
  // Node names profiles CPU.<date>.<time>.<pid>…, so the last name is this run's (the dir may hold older ones).
  const file = (await readdir(dir))
    .filter((f) => f.endsWith('.cpuprofile'))
    .sort()
    .at(-1);
  if (file === undefined) throw new Error(`no .cpuprofile in ${dir}: did the leader exit cleanly?`);
  const profile = readCpuProfile(join(dir, file));
  process.stdout.write(`profile: ${join(dir, file)} (samples taken during the measured runs only)\n`);
  for (const [i, spec] of specs.entries()) {
    const rows = topSelfTime(profile, profileTopCount, measured[i]!.window);
    process.stdout.write(
      `\nConcord leader (${leaderName}) under ${spec.title}: ${summary(measured[i]!)}, CPU ms/op (all members) ${cpuMsPerOp(measured[i]!).toFixed(3)}\n\n`,
    );
    process.stdout.write(
      `${renderTable(
        ['self ms', '%', 'function', 'location'],
        rows.map((r) => [r.selfMs.toFixed(0), r.percent.toFixed(1), r.functionName, r.location]),
        options.markdown,
      )}\n`,
    );
  }
  return 0;
}

export async function main(argv: string[]): Promise<number> {
  const options = parseVsArgs(argv);
  const stopEverything = () => {
    void cleanUp().then(() => process.exit(130));
  };
  process.once('SIGINT', stopEverything);
  process.once('SIGTERM', stopEverything);
  if (options.profileDir !== undefined) return profilePut(options, options.profileDir);
  if (options.engines !== undefined) return compareEngines(options, options.engines);
  if (options.security !== undefined) return compareSecurity(options, options.security);
  if (options.memoryKeys !== undefined) return compareMemory(options);
  const etcdPath = etcdOrExplain();
  if (etcdPath === undefined) return 2;
  const etcdVersion = execFileSync(etcdPath, ['--version'], { encoding: 'utf8' }).split('\n')[0]!.trim();
  const header = machineHeader(etcdVersion, options.nodes);
  process.stderr.write(`${header}\n`);
  try {
    const systems = [
      await prepareSystem(
        { label: 'etcd', command: etcdPath, argsBefore: () => [], argsAfter: slowFlags(options) },
        etcdVersion,
        options,
      ),
      await prepareSystem(
        concordBinary(() => [], slowFlags(options)),
        CONCORD_VERSION,
        options,
      ),
    ];
    const rounds: RoundResult[][] = systems.map(() => []);
    // Rounds alternate etcd and Concord so slow phases of a noisy machine hit both.
    for (let round = 1; round <= options.rounds; round++) {
      for (const [i, system] of systems.entries()) rounds[i]!.push(await runRound(system, options, round));
    }
    return report(
      bestOfRounds(systems[0]!, rounds[0]!),
      bestOfRounds(systems[1]!, rounds[1]!),
      header,
      options,
    );
  } catch (error) {
    await cleanUp(true);
    throw error;
  } finally {
    await cleanUp();
  }
}

/**
 * --memory-keys: etcd and Concord each started fresh and loaded with options.loadKeys keys (64
 * clients), RSS per member sampled a second after the load; no workloads, no restart.
 */
const mb = (bytes: number) => (bytes / 1024 / 1024).toFixed(0);
const sum = (values: number[]) => values.reduce((a, b) => a + b, 0);

/** RSS per member and data dirs on disk after loading `keys` keys, etcd beside Concord. */
function footprintRows(
  keys: number,
  etcd: { rssBytes: number[]; diskBytes: number },
  concord: { rssBytes: number[]; diskBytes: number },
): string[][] {
  return [
    [
      `RSS per member after loading ${keys} keys (MiB)`,
      etcd.rssBytes.map(mb).join(' / '),
      concord.rssBytes.map(mb).join(' / '),
      ratio(sum(concord.rssBytes), sum(etcd.rssBytes)),
    ],
    [
      'data dirs on disk, 3 members (MiB, du)',
      mb(etcd.diskBytes),
      mb(concord.diskBytes),
      ratio(concord.diskBytes, etcd.diskBytes),
    ],
  ];
}

async function compareMemory(options: VsOptions): Promise<number> {
  const etcdPath = etcdOrExplain();
  if (etcdPath === undefined) return 2;
  const etcdVersion = execFileSync(etcdPath, ['--version'], { encoding: 'utf8' }).split('\n')[0]!.trim();
  const header = machineHeader(etcdVersion, options.nodes);
  process.stderr.write(`${header}\n`);
  try {
    const etcd = await prepareSystem(
      { label: 'etcd', command: etcdPath, argsBefore: () => [] },
      etcdVersion,
      options,
    );
    const concord = await prepareSystem(
      concordBinary(() => []),
      CONCORD_VERSION,
      options,
    );
    const rows = [
      [
        `load ${options.loadKeys} keys × ${valSize} B, 64 clients (ops/s)`,
        etcd.load.result.opsPerSec.toFixed(0),
        concord.load.result.opsPerSec.toFixed(0),
        ratio(concord.load.result.opsPerSec, etcd.load.result.opsPerSec),
      ],
      ...footprintRows(options.loadKeys, etcd, concord),
    ];
    process.stdout.write(
      `${header}\n--memory-keys ${options.loadKeys}; load average at the end: ${loadavg()
        .map((l) => l.toFixed(1))
        .join(' ')}\n\n${renderTable(['resource', 'etcd', 'concord', 'ratio'], rows, options.markdown)}\n`,
    );
    const failed = etcd.load.result.errors > 0 || concord.load.result.errors > 0;
    if (failed) process.stderr.write('the load had errors\n');
    return failed ? 1 : 0;
  } finally {
    await cleanUp();
  }
}

/** --security: an etcd and a Concord cluster per setting, loaded alike, rounds alternating over all. */
async function compareSecurity(options: VsOptions, settings: SecuritySetting[]): Promise<number> {
  const etcdPath = etcdOrExplain();
  if (etcdPath === undefined) return 2;
  const etcdVersion = execFileSync(etcdPath, ['--version'], { encoding: 'utf8' }).split('\n')[0]!.trim();
  const header = machineHeader(etcdVersion, options.nodes);
  process.stderr.write(`${header}\n`);
  const materialDir = await mkdtemp(join(tmpdir(), 'bench-security-'));
  tempRoots.add(materialDir);
  try {
    const material = writeSecurityMaterial(materialDir);
    const systems: Array<{ setting: SecuritySetting; etcd: PreparedSystem; concord: PreparedSystem }> = [];
    for (const setting of settings) {
      const security = clusterSecurity(setting, material);
      const etcdBinary = { label: `etcd ${setting.id}`, command: etcdPath, argsBefore: () => [] };
      const concord = { ...concordBinary(() => []), label: `concord ${setting.id}` };
      systems.push({
        setting,
        etcd: await prepareSystem(etcdBinary, etcdVersion, options, security),
        concord: await prepareSystem(concord, CONCORD_VERSION, options, security),
      });
    }
    const rounds = new Map<PreparedSystem, RoundResult[]>();
    for (let round = 1; round <= options.rounds; round++) {
      for (const { etcd, concord } of systems) {
        for (const system of [etcd, concord])
          rounds.set(system, [...(rounds.get(system) ?? []), await runRound(system, options, round)]);
      }
    }
    const best = (system: PreparedSystem) => bestOfRounds(system, rounds.get(system)!).workloads;
    const runs: SecurityRun[] = systems.map(({ setting, etcd, concord }) => ({
      setting,
      etcd: best(etcd),
      concord: best(concord),
    }));
    const loads = systems.flatMap(({ etcd, concord }) => [etcd.load, concord.load]);
    const mode = options.quick ? 'mode: --quick, ' : '';
    process.stdout.write(
      `${header}\n${mode}--security: ${options.loadKeys} keys loaded per cluster, ${options.workloadMs / 1000} s per workload, best of ${options.rounds} round(s); load average at the end: ${loadavg()
        .map((l) => l.toFixed(1))
        .join(' ')}\n\n${securityTables(runs, workloadSpecs(options), options.markdown)}\n`,
    );
    if (options.json) {
      const plain = (run: SecurityRun) => ({
        setting: run.setting.id,
        etcd: Object.fromEntries(run.etcd),
        concord: Object.fromEntries(run.concord),
      });
      process.stdout.write(`${JSON.stringify(runs.map(plain))}\n`);
    }
    const measured = [...loads, ...runs.flatMap((run) => [...run.etcd.values(), ...run.concord.values()])];
    const failed = measured.some((m) => m.result.errors > 0);
    if (failed) process.stderr.write('some workloads had errors; see the (N errors) marks in the table\n');
    return failed ? 1 : 0;
  } catch (error) {
    await cleanUp(true);
    throw error;
  } finally {
    await cleanUp();
  }
}

/** --slow-member-ms needs the members' fault injection (Concord's; etcd has none: refused). */
function slowFlags(options: VsOptions): string[] {
  if (options.slowMemberMs === 0) return [];
  if (options.engines === undefined) throw new Error('--slow-member-ms applies to --engines only');
  return ['--experimental-fault-injection'];
}

/** --engines: Concord clusters of each engine, started, loaded and measured alike, rounds alternating. */
async function compareEngines(options: VsOptions, engines: EngineSpec[]): Promise<number> {
  const header = machineHeader(`engines: ${engines.map((e) => e.label).join(', ')}`, options.nodes);
  process.stderr.write(`${header}\n`);
  try {
    const systems: PreparedSystem[] = [];
    for (const engine of engines) {
      const binary = {
        ...concordBinary(() => [], [...engine.flags, ...slowFlags(options)]),
        label: engine.label,
      };
      systems.push(await prepareSystem(binary, CONCORD_VERSION, options));
    }
    const slowMs = options.slowMemberMs;
    // With a slow member, each round also measures every engine without it (slowMs 0) first.
    const variants = slowMs > 0 ? [0, slowMs] : [0];
    const rounds: RoundResult[][][] = variants.map(() => systems.map(() => []));
    for (let round = 1; round <= options.rounds; round++) {
      for (const [i, system] of systems.entries()) {
        for (const [v, ms] of variants.entries())
          rounds[v]![i]!.push(await runRound(system, options, round, ms));
      }
    }
    const runsOf = (v: number) => systems.map((system, i) => bestOfRounds(system, rounds[v]![i]!));
    const baseline = runsOf(0);
    const slow = slowMs > 0 ? runsOf(1).map((run) => ({ ...run, label: `${run.label} (slow member)` })) : [];
    const mode = options.quick ? 'mode: --quick, ' : '';
    const tables =
      slowMs > 0
        ? `${slowMemberTables(baseline, slow, slowMs, options)}\n\n${placementLines(systems, variants, rounds)}`
        : engineTables(baseline, options);
    process.stdout.write(
      `${header}\n${mode}best of ${options.rounds} round(s) per workload; load average at the end: ${loadavg()
        .map((l) => l.toFixed(1))
        .join(' ')}\n\n${tables}\n`,
    );
    const runs = [...baseline, ...slow];
    if (options.json) {
      const plain = (run: SystemRun) => ({ ...run, workloads: Object.fromEntries(run.workloads) });
      process.stdout.write(`${JSON.stringify(runs.map(plain))}\n`);
    }
    const failed = runs.some((run) => [run.load, ...run.workloads.values()].some((m) => m.result.errors > 0));
    if (failed) process.stderr.write('some workloads had errors; see the (N errors) marks in the table\n');
    return failed ? 1 : 0;
  } catch (error) {
    await cleanUp(true);
    throw error;
  } finally {
    await cleanUp();
  }
}

/** Which member led, was slow and took the lone writer, per engine, variant and round. */
function placementLines(systems: PreparedSystem[], variants: number[], rounds: RoundResult[][][]): string {
  const lines = ['Members per round (the watch fan-out writer uses the first endpoint):'];
  for (const [i, system] of systems.entries())
    for (const [v, ms] of variants.entries())
      for (const [r, result] of rounds[v]![i]!.entries())
        lines.push(
          `- ${system.label}${ms > 0 ? ' (slow member)' : ''} round ${r + 1}: ${result.placement ?? '?'}`,
        );
  return lines.join('\n');
}

/**
 * The engines without and with the slow member (measured in the same rounds), then each engine's
 * throughput with the slow member as a share of its own without it.
 */
function slowMemberTables(
  baseline: SystemRun[],
  slow: SystemRun[],
  slowMs: number,
  options: VsOptions,
): string {
  const rows = workloadSpecs(options).map((spec) => [
    spec.title,
    ...baseline.map((run, i) =>
      ratio(slow[i]!.workloads.get(spec.id)!.result.opsPerSec, run.workloads.get(spec.id)!.result.opsPerSec),
    ),
  ]);
  return [
    'Without a slow member (same run, baseline):',
    '',
    engineTables(baseline, options),
    '',
    `With one follower delaying its peer messages by ${slowMs} ms:`,
    '',
    engineTables(slow, options),
    '',
    'Throughput with the slow member / without it, per engine:',
    '',
    renderTable(['workload', ...baseline.map((run) => run.label)], rows, options.markdown),
  ].join('\n');
}

/** One column per engine (ops/s, p50 / p99), ratios to the first; then CPU per operation. */
function engineTables(runs: SystemRun[], options: VsOptions): string {
  const specs = [
    { id: 'load', title: `load ${options.loadKeys} keys × ${valSize} B, 64 clients` },
    ...workloadSpecs(options),
  ];
  const pick = (run: SystemRun, id: string): Measured => (id === 'load' ? run.load : run.workloads.get(id)!);
  const [base, ...others] = runs;
  if (base === undefined) return '';
  const throughput = specs.map((spec) => [
    spec.title,
    ...runs.map((run) => {
      const r = pick(run, spec.id).result;
      return `${r.opsPerSec.toFixed(0)}${errorsNote(r)} (${p50p99(r)})`;
    }),
    ...others.map((run) => ratio(pick(run, spec.id).result.opsPerSec, pick(base, spec.id).result.opsPerSec)),
  ]);
  const cpu = specs.map((spec) => [
    spec.title,
    ...runs.map((run) => cpuMsPerOp(pick(run, spec.id)).toFixed(3)),
  ]);
  const starts = [
    ['fresh cluster start → first linearizable get (ms)', ...runs.map((run) => run.freshStartMs.toFixed(0))],
    [
      'restart with that data → first linearizable get (ms, slowest member)',
      ...runs.map((run) => Math.max(...run.restartServingMs).toFixed(0)),
    ],
  ];
  return [
    renderTable(
      [
        'workload',
        ...runs.map((run) => `${run.label} ops/s (p50 / p99)`),
        ...others.map((run) => `${run.label} / ${base.label}`),
      ],
      throughput,
      options.markdown,
    ),
    '',
    `CPU time of all ${options.nodes} members per operation (ms):`,
    '',
    renderTable(['workload', ...runs.map((run) => run.label)], cpu, options.markdown),
    '',
    renderTable(['start', ...runs.map((run) => run.label)], starts, options.markdown),
  ].join('\n');
}

function report(etcd: SystemRun, concord: SystemRun, header: string, options: VsOptions): number {
  const mode = `${options.quick ? 'mode: --quick, ' : ''}${options.tls ? 'client and peer TLS (--auto-tls, --peer-auto-tls), ' : ''}`;
  process.stdout.write(
    `${header}\n${mode}best of ${options.rounds} round(s) per workload; load average at the end: ${loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')}\n\n${comparisonTables(etcd, concord, options)}\n`,
  );
  if (options.json) {
    const plain = (run: SystemRun) => ({ ...run, workloads: Object.fromEntries(run.workloads) });
    process.stdout.write(`${JSON.stringify({ etcd: plain(etcd), concord: plain(concord) })}\n`);
  }
  const failed = [etcd, concord].some((run) =>
    [run.load, ...run.workloads.values()].some((m) => m.result.errors > 0),
  );
  if (failed) process.stderr.write('some workloads had errors; see the (N errors) marks in the table\n');
  return failed ? 1 : 0;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (error: Error) => {
      process.stderr.write(`bench-vs-etcd: ${error.stack ?? error.message}\n`);
      void cleanUp().then(() => process.exit(1));
    },
  );
}
