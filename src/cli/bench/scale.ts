// `npm run bench:scale`: does a Concord cluster get more write throughput from more nodes?
//
// On one machine every member competes for the same cores, so adding processes proves nothing by
// itself. Each member therefore runs in its own cgroup (v1 `cpu` controller) with the same CPU
// quota (--cpu, in cores), as if each were a small machine of its own; the cluster is then run at
// each size in --nodes, split into --shards-per-node × nodes shards spread over the key space, and
// driven by one closed-loop put workload over all members (keys uniform over the key space). Per
// size the table shows throughput, latency, the busiest member's CPU-seconds per operation and the
// throughput relative to the first size. Without a writable cgroup the quotas are off and the
// report says so: the figures then measure the machine, not scale-out.

import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { BenchCluster } from './cluster.js';
import { ConnectionPool, unary } from './connections.js';
import { fillValue, KeyFormat, randomIndex } from './kv-workloads.js';
import { runClosedLoop } from './runner.js';
import { concordBinary } from './vs-etcd.js';

const cgroupRoot = '/sys/fs/cgroup/cpu';
const cfsPeriodUs = 100_000;
const keySize = 16;
const keyPrefix = 'scale/';
const requestTimeoutMs = 10_000;
const servingTimeoutMs = 120_000;

export interface ScaleOptions {
  nodes: number[];
  cpu: number;
  seconds: number;
  clients: number;
  keys: number;
  valueSize: number;
  shardsPerNode: number;
  markdown: boolean;
}

export interface ScaleRow {
  nodes: number;
  shards: number;
  opsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
  /** CPU-seconds per operation of the member that used the most CPU in the run. */
  busiestCpuPerOp: number;
  /** CPU-seconds per operation over all members. */
  totalCpuPerOp: number;
  quota: boolean;
}

const help = `Usage: npm run bench:scale -- [flags]
  --nodes 3,6            cluster sizes to run, in order (default 3,6)
  --cpu 0.25             CPU quota per member in cores (cgroup v1 cpu.cfs_quota_us); 0 = no quota
  --seconds 20           measured seconds per size
  --clients 64           concurrent closed-loop writers, spread over all members
  --keys 100000          key space the puts are spread over (uniform)
  --value-size 256       bytes per value
  --shards-per-node 1    shards at each size = this × nodes, split at even points of the key space
                         (needs 'concordctl shard split'; without it the cluster stays one shard)
  --markdown             the table as markdown
`;

export function parseScaleArgs(argv: string[]): ScaleOptions | 'help' {
  const { values } = parseArgs({
    args: argv,
    options: {
      nodes: { type: 'string', default: '3,6' },
      cpu: { type: 'string', default: '0.25' },
      seconds: { type: 'string', default: '20' },
      clients: { type: 'string', default: '64' },
      keys: { type: 'string', default: '100000' },
      'value-size': { type: 'string', default: '256' },
      'shards-per-node': { type: 'string', default: '1' },
      markdown: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  });
  if (values.help) return 'help';
  const nodes = values.nodes.split(',').map((text) => positiveInt('--nodes', text));
  const cpu = Number(values.cpu);
  if (!(cpu >= 0 && cpu <= 64)) throw new Error(`--cpu must be 0..64 cores, got '${values.cpu}'`);
  return {
    nodes,
    cpu,
    seconds: positiveInt('--seconds', values.seconds),
    clients: positiveInt('--clients', values.clients),
    keys: positiveInt('--keys', values.keys),
    valueSize: positiveInt('--value-size', values['value-size']),
    shardsPerNode: positiveInt('--shards-per-node', values['shards-per-node']),
    markdown: values.markdown,
  };
}

function positiveInt(flag: string, text: string): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1)
    throw new Error(`${flag} must be a positive integer, got '${text}'`);
  return value;
}

/** One cgroup per member under a group of this run; removed again by `remove`. */
class CpuQuotas {
  private readonly runDir: string;
  private readonly made: string[] = [];

  private constructor(readonly cores: number) {
    this.runDir = join(cgroupRoot, `concord-bench-scale-${process.pid}`);
  }

  /** undefined when quotas are off (--cpu 0) or the cgroup tree cannot be written. */
  static open(cores: number): { quotas?: CpuQuotas; reason?: string } {
    if (cores === 0) return { reason: 'quota off (--cpu 0)' };
    const quotas = new CpuQuotas(cores);
    try {
      mkdirSync(quotas.runDir);
      quotas.made.push(quotas.runDir);
      return { quotas };
    } catch (error) {
      return { reason: `no writable cgroup v1 cpu controller at ${cgroupRoot}: ${(error as Error).message}` };
    }
  }

  /** Puts process `pid` (all its threads) into a group of its own limited to `cores`. */
  limit(name: string, pid: number): void {
    const dir = join(this.runDir, name);
    if (!existsSync(dir)) {
      mkdirSync(dir);
      this.made.push(dir);
    }
    writeFileSync(join(dir, 'cpu.cfs_period_us'), String(cfsPeriodUs));
    writeFileSync(join(dir, 'cpu.cfs_quota_us'), String(Math.round(this.cores * cfsPeriodUs)));
    writeFileSync(join(dir, 'cgroup.procs'), String(pid));
  }

  /** Removes the groups (their processes must have exited). */
  remove(): void {
    for (const dir of this.made.reverse()) {
      try {
        rmdirSync(dir);
      } catch (error) {
        process.stderr.write(`bench:scale: could not remove ${dir}: ${(error as Error).message}\n`);
      }
    }
    this.made.length = 0;
  }
}

/** The keys at which to split `keys` indexes into `shards` equal parts. */
export function splitKeys(format: KeyFormat, keys: number, shards: number): Buffer[] {
  const points: Buffer[] = [];
  for (let s = 1; s < shards; s++) points.push(format.key(Math.floor((keys * s) / shards)));
  return points;
}

/** Splits through concordctl; false (with the reason on stderr) when the cluster cannot split. */
function splitShards(endpoint: string, points: Buffer[]): boolean {
  const concordctl = fileURLToPath(new URL('../concordctl.js', import.meta.url));
  for (const point of points) {
    const result = spawnSync(
      process.execPath,
      [concordctl, '--endpoints', endpoint, 'shard', 'split', point.toString()],
      { encoding: 'utf8', timeout: 60_000 },
    );
    if (result.status !== 0) {
      process.stderr.write(
        `bench:scale: 'concordctl shard split ${point}' failed (${result.status}): ${(result.stderr || result.stdout).trim()}\n`,
      );
      return false;
    }
  }
  return true;
}

async function runSize(
  options: ScaleOptions,
  nodes: number,
  quotas: CpuQuotas | undefined,
): Promise<ScaleRow> {
  const root = mkdtempSync(join(tmpdir(), `bench-scale-${nodes}-`));
  const cluster = await BenchCluster.create(
    concordBinary(() => []),
    root,
    nodes,
    {
      heartbeatMs: 100,
      electionMs: 1000,
    },
  );
  let pool: ConnectionPool | undefined;
  try {
    cluster.startAll();
    if (quotas !== undefined) {
      for (const member of cluster.members) quotas.limit(member.name, member.child?.pid ?? 0);
    }
    await cluster.waitServing(servingTimeoutMs);
    const format = new KeyFormat(keySize, keyPrefix);
    const wanted = options.shardsPerNode * nodes;
    const shards =
      wanted > 1 && splitShards(cluster.endpoints()[0]!, splitKeys(format, options.keys, wanted))
        ? wanted
        : 1;
    pool = new ConnectionPool(cluster.endpoints(), Math.max(nodes, Math.min(options.clients, nodes * 4)));
    const connections = pool;
    const value = fillValue(options.valueSize);
    const cpuBefore = cluster.members.map((_, i) => cluster.cpuSeconds(i));
    const stats = await runClosedLoop(
      {
        clients: options.clients,
        total: undefined,
        durationMs: options.seconds * 1000,
        progress: false,
        label: `${nodes} nodes`,
      },
      async (client) => {
        const connection = connections.forClient(client);
        const key = format.key(randomIndex(options.keys));
        await unary(connection.kv.Put, connection.kv, { key, value }, requestTimeoutMs);
      },
    );
    const cpuUsed = cluster.members.map((_, i) => cluster.cpuSeconds(i) - cpuBefore[i]!);
    const ops = Math.max(1, stats.ok);
    const seconds = (stats.endMs - stats.startMs) / 1000;
    const summary = stats.latency.summary();
    if (stats.errors > 0)
      process.stderr.write(
        `bench:scale: ${nodes} nodes: ${stats.errors} errors, e.g. ${stats.errorSamples[0]}\n`,
      );
    return {
      nodes,
      shards,
      opsPerSec: stats.ok / seconds,
      p50Ms: summary.p50Us / 1000,
      p99Ms: summary.p99Us / 1000,
      errors: stats.errors,
      busiestCpuPerOp: Math.max(...cpuUsed) / ops,
      totalCpuPerOp: cpuUsed.reduce((a, b) => a + b, 0) / ops,
      quota: quotas !== undefined,
    };
  } finally {
    pool?.close();
    await cluster.stopAll();
    rmSync(root, { recursive: true, force: true });
  }
}

export function formatScaleTable(rows: ScaleRow[], markdown: boolean): string {
  const base = rows[0]?.opsPerSec ?? 1;
  const header = [
    'nodes',
    'shards',
    'puts/s',
    'vs first',
    'p50 ms',
    'p99 ms',
    'busiest CPU-ms/op',
    'all CPU-ms/op',
    'errors',
  ];
  const body = rows.map((row) => [
    String(row.nodes),
    String(row.shards),
    row.opsPerSec.toFixed(0),
    `${(row.opsPerSec / base).toFixed(2)}x`,
    row.p50Ms.toFixed(1),
    row.p99Ms.toFixed(1),
    (row.busiestCpuPerOp * 1000).toFixed(2),
    (row.totalCpuPerOp * 1000).toFixed(2),
    String(row.errors),
  ]);
  if (markdown) {
    const line = (cells: string[]) => `| ${cells.join(' | ')} |`;
    return [line(header), line(header.map(() => '---')), ...body.map(line)].join('\n');
  }
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((cells) => cells[i]!.length)));
  const line = (cells: string[]) => cells.map((cell, i) => cell.padStart(widths[i]!)).join('  ');
  return [line(header), ...body.map(line)].join('\n');
}

export async function main(argv: string[]): Promise<number> {
  let options: ScaleOptions | 'help';
  try {
    options = parseScaleArgs(argv);
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n${help}`);
    return 2;
  }
  if (options === 'help') {
    process.stdout.write(help);
    return 0;
  }
  const { quotas, reason } = CpuQuotas.open(options.cpu);
  process.stdout.write(
    quotas === undefined
      ? `CPU quota: none (${reason}); the figures measure this machine, not scale-out\n`
      : `CPU quota: ${options.cpu} core per member (cgroup v1 cpu.cfs_quota_us)\n`,
  );
  const rows: ScaleRow[] = [];
  try {
    for (const nodes of options.nodes) {
      const row = await runSize(options, nodes, quotas);
      rows.push(row);
      process.stderr.write(
        `${new Date().toISOString().slice(11, 19)} ${nodes} nodes, ${row.shards} shards: ${row.opsPerSec.toFixed(0)} puts/s\n`,
      );
    }
  } finally {
    quotas?.remove();
  }
  process.stdout.write(`${formatScaleTable(rows, options.markdown)}\n`);
  return 0;
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (error: unknown) => {
      process.stderr.write(`bench:scale: ${(error as Error).stack ?? String(error)}\n`);
      process.exit(1);
    },
  );
}
