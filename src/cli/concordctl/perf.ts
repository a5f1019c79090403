// `check perf`: a short, bounded write load with a pass/fail verdict, like etcdctl check perf.
// Each load preset fixes the clients, the target rate and the thresholds; the run writes random
// values under a scratch prefix for --duration, then deletes the prefix.

import { randomBytes } from 'node:crypto';
import type { Client } from '../../client/index.js';
import { flagString, parseDurationMs, UsageError } from './args.js';
import { type Command, CommandError } from './context.js';
import { toJson } from './output.js';

interface LoadPreset {
  clients: number;
  writesPerSecond: number;
  valueBytes: number;
}

const presets: Record<string, LoadPreset> = {
  s: { clients: 50, writesPerSecond: 150, valueBytes: 256 },
  m: { clients: 200, writesPerSecond: 1000, valueBytes: 256 },
  l: { clients: 500, writesPerSecond: 8000, valueBytes: 256 },
  xl: { clients: 1000, writesPerSecond: 15000, valueBytes: 256 },
};

/** etcd's check perf thresholds: 90% of the target rate, slowest under 500 ms, stddev under 100 ms. */
const throughputShareMin = 0.9;
const slowestMsMax = 500;
const stddevMsMax = 100;
const scratchPrefix = '/concordctl-check-perf/';
const durationMsMax = 600_000;

export interface PerfResult {
  writes: number;
  errors: number;
  throughput: number;
  slowestMs: number;
  stddevMs: number;
  p99Ms: number;
  pass: boolean;
  verdicts: string[];
}

export async function runPerf(
  client: Client,
  preset: LoadPreset,
  durationMs: number,
  signal: AbortSignal,
): Promise<PerfResult> {
  const latenciesMs: number[] = [];
  let errors = 0;
  const started = Date.now();
  const stopAt = started + durationMs;
  const intervalMs = 1000 / preset.writesPerSecond;
  let nextSlot = started;
  const value = randomBytes(preset.valueBytes);
  // Rate limit by handing out send slots; each client takes the next slot when free.
  const takeSlot = async (): Promise<boolean> => {
    const slot = nextSlot;
    nextSlot += intervalMs;
    if (slot >= stopAt || signal.aborted) return false;
    const waitMs = slot - Date.now();
    if (waitMs > 0) await new Promise((resolve) => setTimeout(resolve, waitMs));
    return true;
  };
  const worker = async (id: number) => {
    for (let n = 0; await takeSlot(); n++) {
      const begin = process.hrtime.bigint();
      try {
        await client.put(`${scratchPrefix}${id}-${n % 1000}`, value);
        latenciesMs.push(Number(process.hrtime.bigint() - begin) / 1e6);
      } catch {
        errors++;
      }
    }
  };
  await Promise.all(Array.from({ length: preset.clients }, (_, i) => worker(i)));
  const elapsedS = (Date.now() - started) / 1000;
  await client.delete(scratchPrefix, { prefix: true }).catch(() => undefined);
  return verdict(latenciesMs, errors, elapsedS, preset);
}

function verdict(latenciesMs: number[], errors: number, elapsedS: number, preset: LoadPreset): PerfResult {
  const writes = latenciesMs.length;
  const throughput = writes / Math.max(elapsedS, 0.001);
  const sorted = [...latenciesMs].sort((a, b) => a - b);
  const slowestMs = sorted[sorted.length - 1] ?? 0;
  const p99Ms = sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * 0.99))] ?? 0;
  const mean = writes === 0 ? 0 : latenciesMs.reduce((a, b) => a + b, 0) / writes;
  const stddevMs =
    writes === 0 ? 0 : Math.sqrt(latenciesMs.reduce((a, b) => a + (b - mean) ** 2, 0) / writes);
  const checks: [boolean, string][] = [
    [
      throughput >= preset.writesPerSecond * throughputShareMin,
      `Throughput is ${throughput.toFixed(0)} writes/s`,
    ],
    [slowestMs < slowestMsMax, `Slowest request took ${(slowestMs / 1000).toFixed(6)}s`],
    [stddevMs < stddevMsMax, `Stddev is ${(stddevMs / 1000).toFixed(6)}s`],
    [errors === 0, `${errors} requests failed`],
  ];
  const verdicts = checks.map(([ok, text]) => `${ok ? 'PASS' : 'FAIL'}: ${text}`);
  return {
    writes,
    errors,
    throughput,
    slowestMs,
    stddevMs,
    p99Ms,
    pass: checks.every(([ok]) => ok),
    verdicts,
  };
}

export const checkPerf: Command = async (ctx) => {
  const load = flagString(ctx.args, 'load') ?? 's';
  const preset = presets[load];
  if (preset === undefined) throw new UsageError(`unknown load option ${load} (s, m, l, xl)`);
  const durationMs = parseDurationMs(flagString(ctx.args, 'duration') ?? '10s');
  if (durationMs <= 0 || durationMs > durationMsMax) throw new UsageError('--duration must be in (0, 10m]');
  const existing = await ctx.client.get(scratchPrefix, { prefix: true, countOnly: true });
  if (existing.count > 0n) throw new CommandError(`prefix ${scratchPrefix} is not empty; delete it first`);
  const result = await runPerf(ctx.client, preset, durationMs, ctx.signal);
  if (ctx.writeOut === 'json') {
    ctx.io.out(
      toJson({
        writes: BigInt(result.writes),
        errors: BigInt(result.errors),
        throughput: result.throughput.toFixed(1),
        slowest_s: (result.slowestMs / 1000).toFixed(6),
        p99_s: (result.p99Ms / 1000).toFixed(6),
        stddev_s: (result.stddevMs / 1000).toFixed(6),
        verdict: result.pass ? 'PASS' : 'FAIL',
      }),
    );
  } else {
    for (const line of result.verdicts) ctx.io.out(line);
    ctx.io.out(result.pass ? 'PASS' : 'FAIL');
  }
  return result.pass ? 0 : 1;
};
