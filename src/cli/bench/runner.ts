// The closed-loop driver: `clients` loops each keep one request outstanding until --total
// operations were issued or --duration has passed. The tool's own CPU use over the run is
// reported next to the throughput, so a saturated client (one Node thread) is visible instead of
// being mistaken for a slow server.

import { performance } from 'node:perf_hooks';
import { LatencyHistogram } from './histogram.js';

/** A run stops issuing requests after this many failures; a dead cluster should not spin. */
export const errorsMax = 1000;
const errorSamplesMax = 5;
const progressIntervalMs = 200;
const progressBarWidth = 30;

export interface RunLimits {
  clients: number;
  total: number | undefined;
  durationMs: number | undefined;
  progress: boolean;
  label: string;
}

export interface LoopStats {
  ok: number;
  errors: number;
  errorSamples: string[];
  latency: LatencyHistogram;
  startMs: number;
  endMs: number;
  cpuUserUs: number;
  cpuSystemUs: number;
}

/** Runs `op` from `clients` concurrent loops; `op(clientIndex)` resolves when one request is done. */
export async function runClosedLoop(
  limits: RunLimits,
  op: (clientIndex: number) => Promise<void>,
): Promise<LoopStats> {
  const latency = new LatencyHistogram();
  const errorSamples: string[] = [];
  let issued = 0;
  let ok = 0;
  let errors = 0;
  const startMs = performance.now();
  const endAtMs = limits.durationMs === undefined ? Number.POSITIVE_INFINITY : startMs + limits.durationMs;
  const cpuStart = process.cpuUsage();
  const shouldIssue = (): boolean => {
    if (errors >= errorsMax) return false;
    if (limits.total !== undefined) return issued < limits.total;
    return performance.now() < endAtMs;
  };
  const progress = limits.progress
    ? startProgress(limits, () => ({ done: ok + errors, elapsedMs: performance.now() - startMs }))
    : undefined;
  const loop = async (clientIndex: number): Promise<void> => {
    while (shouldIssue()) {
      issued++;
      const sentMs = performance.now();
      try {
        await op(clientIndex);
        latency.record((performance.now() - sentMs) * 1000);
        ok++;
      } catch (error) {
        errors++;
        const message = (error as Error).message ?? String(error);
        if (errorSamples.length < errorSamplesMax && !errorSamples.includes(message))
          errorSamples.push(message);
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: limits.clients }, (_, i) => loop(i)));
  } finally {
    progress?.stop();
  }
  const cpu = process.cpuUsage(cpuStart);
  return {
    ok,
    errors,
    errorSamples,
    latency,
    startMs,
    endMs: performance.now(),
    cpuUserUs: cpu.user,
    cpuSystemUs: cpu.system,
  };
}

interface ProgressHandle {
  stop(): void;
}

function startProgress(limits: RunLimits, read: () => { done: number; elapsedMs: number }): ProgressHandle {
  const draw = () => {
    const { done, elapsedMs } = read();
    const fraction =
      limits.total !== undefined ? done / limits.total : Math.min(1, elapsedMs / (limits.durationMs ?? 1));
    const filled = Math.round(Math.min(1, fraction) * progressBarWidth);
    const bar = `${'#'.repeat(filled)}${'.'.repeat(progressBarWidth - filled)}`;
    const rate = elapsedMs > 0 ? (done / elapsedMs) * 1000 : 0;
    process.stderr.write(
      `\r${limits.label} [${bar}] ${(fraction * 100).toFixed(0).padStart(3)}% ${done} ops ${rate.toFixed(0)}/s `,
    );
  };
  const timer = setInterval(draw, progressIntervalMs);
  return {
    stop() {
      clearInterval(timer);
      draw();
      process.stderr.write('\n');
    },
  };
}

/** Runs `task` over `count` indexes with at most `concurrency` in flight (for preloading). */
export async function forEachConcurrently(
  count: number,
  concurrency: number,
  task: (index: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const index = next++;
      await task(index);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
}
