// The write rate one Raft group of this cluster sustains, measured with `concord bench put`
// against the leader: the run is split into steps of rising concurrency (16, 64, 256 clients)
// and stops rising once a step gains less than 10 % over the best so far; the best step's rate
// is the answer. Keys go under a scratch prefix the caller deletes afterwards.

import type { TlsOptions } from '../../client/index.js';
import type { BenchOptions } from '../bench/options.js';
import { type BenchResult, runWorkload } from '../bench/run.js';
import type { MeasuredRate } from './report.js';

export const CAPACITY_SCRATCH_PREFIX = '/concordctl-check-capacity/';
const CLIENT_STEPS = [16, 64, 256] as const;
/** A step must beat the best rate so far by this factor for the ramp to go on. */
const RAMP_GAIN_MIN = 1.1;
const CONNS_MAX = 4;
const VALUE_BYTES = 256;
const KEY_SPACE_SIZE = 1000;
const REQUEST_TIMEOUT_MS = 10_000;

export interface CalibrationStep {
  clients: number;
  writesPerSec: number;
  p99Ms: number;
  errors: number;
  /** The benchmark process's own CPU, % of one core: near 100 the tool, not the cluster, is the bound. */
  clientCpuPercent: number;
}

export interface Calibration {
  rate: MeasuredRate;
  steps: CalibrationStep[];
}

export async function measureWriteRate(
  endpoints: readonly string[],
  tls: TlsOptions | undefined,
  durationMs: number,
  nowIso: () => string = () => new Date().toISOString(),
): Promise<Calibration> {
  const stepMs = durationMs / CLIENT_STEPS.length;
  const steps: CalibrationStep[] = [];
  let best: { step: CalibrationStep; result: BenchResult } | undefined;
  let saturated = false;
  for (const clients of CLIENT_STEPS) {
    const options: BenchOptions = {
      workload: 'put',
      endpoints: [...endpoints],
      conns: Math.min(clients, CONNS_MAX),
      clients,
      total: undefined,
      durationMs: stepMs,
      keySize: CAPACITY_SCRATCH_PREFIX.length + String(KEY_SPACE_SIZE - 1).length,
      valSize: VALUE_BYTES,
      keySpaceSize: KEY_SPACE_SIZE,
      sequentialKeys: false,
      consistency: 'l',
      readRatio: 0,
      watchers: 1,
      watchStreams: 1,
      leases: clients,
      targetLeader: true,
      skipPreload: true,
      requestTimeoutMs: REQUEST_TIMEOUT_MS,
      json: true,
      progress: false,
      tls,
      keyPrefix: CAPACITY_SCRATCH_PREFIX,
    };
    const result = await runWorkload(options);
    const step: CalibrationStep = {
      clients,
      writesPerSec: result.opsPerSec,
      p99Ms: result.latencyMs.p99,
      errors: result.errors,
      clientCpuPercent: result.clientCpuPercent,
    };
    steps.push(step);
    const previousBest = best?.step.writesPerSec ?? 0;
    if (step.writesPerSec > previousBest) best = { step, result };
    if (previousBest > 0 && step.writesPerSec < previousBest * RAMP_GAIN_MIN) {
      saturated = true;
      break;
    }
  }
  if (best === undefined || !(best.step.writesPerSec > 0))
    throw new Error(
      `the benchmark completed no write (${steps.map((s) => `${s.errors} errors`).join(', ')})`,
    );
  return {
    rate: {
      writesPerSec: best.step.writesPerSec,
      clients: best.step.clients,
      valueBytes: VALUE_BYTES,
      durationSec: best.result.durationSec,
      measuredAt: nowIso(),
      source: 'bench',
      stillRising: !saturated,
    },
    steps,
  };
}
