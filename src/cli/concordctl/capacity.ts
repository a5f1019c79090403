// `check capacity`: what this cluster sustains and how much of each resource is left.
// 1. Every member's /metrics is read twice, --interval apart: the current load and growth.
// 2. A short calibrated put benchmark (--duration, bounded) measures the write rate one Raft group
//    sustains, unless --no-bench or --recorded FILE says to use an earlier run's.
// 3. capacity/report.ts does the arithmetic: headroom per resource, time to fill the quota, and
//    the shards --target-writes-per-s / --target-keys / --target-bytes need, line by line.
// The benchmark writes under a scratch prefix and deletes it; --save and --publish keep its result.

import { readFile, writeFile } from 'node:fs/promises';
import { CAPACITY_SCRATCH_PREFIX, type Calibration, measureWriteRate } from '../capacity/measure.js';
import { CAPACITY_RECORD_KEY, decodeRecord, encodeRecord } from '../capacity/recorded.js';
import {
  bytes,
  type CapacityReport,
  type CapacityTargets,
  capacityReport,
  duration,
  fmt,
  type MemberSample,
  pct,
  type ResourceHeadroom,
} from '../capacity/report.js';
import { scrapeSample } from '../capacity/scrape.js';
import { flagBool, flagString, parseDurationMs, UsageError } from './args.js';
import { type Command, type CommandContext, CommandError } from './context.js';
import { renderTable } from './output.js';

const BENCH_DURATION_MS_DEFAULT = 5000;
const BENCH_DURATION_MS_MAX = 60_000;
const INTERVAL_MS_DEFAULT = 5000;
const INTERVAL_MS_MAX = 300_000;
const SCRAPE_TIMEOUT_MS = 5000;

interface MemberTarget {
  name: string;
  clientUrl: string;
}

export const checkCapacity: Command = async (ctx) => {
  const options = capacityOptions(ctx);
  const members = await memberTargets(ctx);
  const before = await sampleAll(ctx, members);
  await sleep(options.intervalMs, ctx.signal);
  const after = await sampleAll(ctx, members);
  const calibration = await measured(ctx, options, members);
  if (calibration !== null && options.save !== undefined)
    await writeFile(options.save, encodeRecord(ctx.endpoints, calibration.rate, calibration.steps));
  if (calibration !== null && options.publish)
    await ctx.client.put(
      CAPACITY_RECORD_KEY,
      encodeRecord(ctx.endpoints, calibration.rate, calibration.steps),
    );
  const report = capacityReport(before, after, calibration?.rate ?? null, options.targets);
  if (ctx.writeOut === 'json')
    ctx.io.out(JSON.stringify({ ...report, calibration: calibration?.steps ?? [] }));
  else printReport(ctx, report, calibration);
  return 0;
};

interface CapacityOptions {
  intervalMs: number;
  benchDurationMs: number;
  bench: boolean;
  recorded: string | undefined;
  save: string | undefined;
  publish: boolean;
  targets: CapacityTargets;
}

function capacityOptions(ctx: CommandContext): CapacityOptions {
  const benchDurationMs = parseDurationMs(
    flagString(ctx.args, 'duration') ?? `${BENCH_DURATION_MS_DEFAULT}ms`,
  );
  if (!(benchDurationMs > 0 && benchDurationMs <= BENCH_DURATION_MS_MAX))
    throw new UsageError(`--duration must be in (0, ${BENCH_DURATION_MS_MAX / 1000}s]`);
  const intervalMs = parseDurationMs(flagString(ctx.args, 'interval') ?? `${INTERVAL_MS_DEFAULT}ms`);
  if (!(intervalMs > 0 && intervalMs <= INTERVAL_MS_MAX))
    throw new UsageError(`--interval must be in (0, ${INTERVAL_MS_MAX / 1000}s]`);
  const recorded = flagString(ctx.args, 'recorded');
  const bench = !flagBool(ctx.args, 'no-bench') && recorded === undefined;
  const save = flagString(ctx.args, 'save');
  const publish = flagBool(ctx.args, 'publish');
  if (!bench && (save !== undefined || publish))
    throw new UsageError(
      '--save and --publish keep a benchmark run; they do not go with --no-bench or --recorded',
    );
  return {
    intervalMs,
    benchDurationMs,
    bench,
    recorded,
    save,
    publish,
    targets: {
      writesPerSec: target(ctx, 'target-writes-per-s'),
      keys: target(ctx, 'target-keys'),
      bytes: target(ctx, 'target-bytes'),
    },
  };
}

function target(ctx: CommandContext, name: string): number | undefined {
  const text = flagString(ctx.args, name);
  if (text === undefined) return undefined;
  const value = Number(text);
  if (!(Number.isFinite(value) && value > 0))
    throw new UsageError(`--${name} needs a positive number, got ${JSON.stringify(text)}`);
  return value;
}

/** Every member with a client URL (learners too: they hold the data and use the resources). */
async function memberTargets(ctx: CommandContext): Promise<MemberTarget[]> {
  const { members } = await ctx.client.memberList();
  const targets = members
    .filter((m) => m.clientUrls[0] !== undefined)
    .map((m) => ({ name: m.name || m.clientUrls[0]!, clientUrl: m.clientUrls[0]! }));
  if (targets.length === 0) throw new CommandError('no member has published a client URL yet');
  return targets;
}

async function sampleAll(ctx: CommandContext, members: readonly MemberTarget[]): Promise<MemberSample[]> {
  const results = await Promise.allSettled(
    members.map((m) => scrapeSample(m.name, m.clientUrl, ctx.tls, SCRAPE_TIMEOUT_MS)),
  );
  const samples: MemberSample[] = [];
  results.forEach((result, i) => {
    if (result.status === 'fulfilled') samples.push(result.value);
    else
      ctx.io.err(
        `Failed to read the metrics of ${members[i]!.clientUrl} (${(result.reason as Error).message})`,
      );
  });
  if (samples.length === 0) throw new CommandError('no member answered on /metrics');
  return samples;
}

async function measured(
  ctx: CommandContext,
  options: CapacityOptions,
  members: readonly MemberTarget[],
): Promise<Calibration | null> {
  if (options.recorded !== undefined) {
    const record = decodeRecord(await readFile(options.recorded, 'utf8'), options.recorded);
    return { rate: record.rate, steps: record.steps };
  }
  if (!options.bench) return null;
  const existing = await ctx.client.get(CAPACITY_SCRATCH_PREFIX, { prefix: true, countOnly: true });
  if (existing.count > 0n)
    throw new CommandError(`prefix ${CAPACITY_SCRATCH_PREFIX} is not empty; delete it first`);
  try {
    return await measureWriteRate(
      members.map((m) => m.clientUrl),
      ctx.tls,
      options.benchDurationMs,
    );
  } finally {
    await ctx.client.delete(CAPACITY_SCRATCH_PREFIX, { prefix: true }).catch(() => undefined);
  }
}

/** Waits ms; rejects at once when the command is interrupted (SIGINT/SIGTERM). */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.reject(new CommandError('interrupted'));
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(new CommandError('interrupted'));
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

// ---- the human-readable report ---------------------------------------------------------------

function amount(row: ResourceHeadroom, value: number | null): string {
  if (value === null) return '-';
  switch (row.unit) {
    case 'bytes':
      return bytes(value);
    case 'cores':
      return `${fmt(value)} ${value === 1 ? 'core' : 'cores'}`;
    case 'fsyncs/s':
    case 'writes/s':
      return `${fmt(value)}/s`;
    case 'keys':
    case 'watchers':
      return fmt(value);
  }
}

function growth(row: ResourceHeadroom): string {
  if (row.growthPerSec === null) return '-';
  return `${row.unit === 'bytes' ? bytes(row.growthPerSec) : fmt(row.growthPerSec)}/s`;
}

function printReport(ctx: CommandContext, report: CapacityReport, calibration: Calibration | null): void {
  const m = report.measured;
  ctx.io.out(
    `Load measured over ${fmt(report.intervalSec)} s on ${report.members} ${report.members === 1 ? 'member' : 'members'}.`,
  );
  if (m !== null)
    ctx.io.out(
      `One Raft group sustains ${fmt(m.writesPerSec)} writes/s (${m.source === 'bench' ? 'measured now' : `recorded ${m.measuredAt}`}: put, ${m.valueBytes} B values, ${m.clients} clients${calibration !== null && calibration.steps.length > 0 ? `; steps ${calibration.steps.map((s) => `${s.clients} clients ${fmt(s.writesPerSec)}/s (tool CPU ${s.clientCpuPercent.toFixed(0)}%)`).join(', ')}` : ''}).`,
    );
  ctx.io.out('');
  const rows = report.resources.map((r) => [
    r.resource,
    r.member,
    amount(r, r.used),
    amount(r, r.limit),
    pct(r.usedShare),
    amount(r, r.headroom),
    growth(r),
    r.timeToFullSec === null ? '-' : duration(r.timeToFullSec),
  ]);
  const headers = ['RESOURCE', 'MEMBER', 'USED', 'LIMIT', 'USED %', 'HEADROOM', 'GROWTH', 'FULL IN'];
  if (ctx.writeOut === 'table') ctx.io.out(renderTable(headers, rows));
  else for (const row of rows) ctx.io.out(row.join(', '));
  ctx.io.out('');
  ctx.io.out('Arithmetic:');
  for (const line of report.arithmetic) ctx.io.out(`  ${line}`);
  if (report.plan !== null)
    ctx.io.out(
      `\nTarget needs ${report.plan.shardsNeeded} ${report.plan.shardsNeeded === 1 ? 'shard' : 'shards'} (${report.plan.memberProcesses} member processes at ${report.plan.replicasPerShard} replicas each).`,
    );
  for (const note of report.notes) ctx.io.out(`Note: ${note}`);
}
