// What every workload provides to the driver, and the outcome it reports.

import type { LatencyHistogram } from './histogram.js';
import type { LoopStats } from './runner.js';

export interface WorkloadOutcome {
  /** Operations the headline throughput counts (requests, or delivered events for watch). */
  ops: number;
  errors: number;
  errorSamples: string[];
  durationMs: number;
  latency: LatencyHistogram;
  /** Workload-specific counters (txn conflicts, puts behind watch events, …). */
  extra: Record<string, number>;
}

export interface Workload {
  /** Unmeasured setup: preloading keys, opening watch streams, granting leases. */
  prepare(): Promise<void>;
  /** One measured operation from loop `clientIndex`. */
  op(clientIndex: number): Promise<void>;
  /** After the loops end: may wait for stragglers (watch events) and builds the outcome. */
  finish(stats: LoopStats): Promise<WorkloadOutcome>;
  /** Releases streams and server-side state (leases); must not throw on a broken cluster. */
  close(): Promise<void>;
}

export function kvOutcome(stats: LoopStats, extra: Record<string, number>): WorkloadOutcome {
  return {
    ops: stats.ok,
    errors: stats.errors,
    errorSamples: stats.errorSamples,
    durationMs: stats.endMs - stats.startMs,
    latency: stats.latency,
    extra,
  };
}
