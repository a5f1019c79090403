// What a workload is to the runner: set up its keys, run one client loop per process while the
// nemesis works, do its final reads once the cluster is healed, and judge its history.

import { setTimeout as sleep } from 'node:timers/promises';
import type { Operation, Verdict } from '../../src/sim/check/index.js';
import type { EtcdRpc } from './rpc.js';

export interface WorkloadContext {
  rpc: EtcdRpc;
  /** Milliseconds since the run began (monotonic); every history time uses it. */
  now(): number;
  /** The client URL process `process` talks to right now (members come and go). */
  endpointFor(process: number): string;
  /** A member believed healthy, for setup and final reads. */
  anyEndpoint(): string;
  /** Per-call deadline; an expired one records the op as unknown. */
  requestTimeoutMs: number;
  /**
   * Waits before process's next op: a short pause bounding the history's size, longer while
   * its member refuses connections (so a dead member's clients do not spin).
   */
  pace(process: number, stop: AbortSignal): Promise<void>;
  /** Seeded PRNG for one client process, so op choices replay with the seed. */
  random(process: number): () => number;
}

export interface WorkloadResult {
  verdict: Verdict;
  /** Every recorded operation, for the ok/fail/unknown counts. */
  operations: readonly Pick<Operation<unknown, unknown>, 'status'>[];
  /** Extra facts for the summary line (e.g. final counter value). */
  notes: string;
}

export interface Workload {
  readonly name: string;
  setup(ctx: WorkloadContext): Promise<void>;
  /** Runs until `stop` aborts; must not throw for request errors (they are history). */
  runClient(ctx: WorkloadContext, process: number, stop: AbortSignal): Promise<void>;
  /** After heal and quiet period: final reads (retried, they are idempotent). */
  finish(ctx: WorkloadContext): Promise<void>;
  check(ctx: WorkloadContext): WorkloadResult;
  /** Releases streams and timers; called even when a step above threw. */
  dispose(): void;
}

export class WorkloadError extends Error {
  readonly code = 'JEPSEN_WORKLOAD_ERROR';
  constructor(message: string) {
    super(message);
    this.name = 'WorkloadError';
  }
}

/** Retries an idempotent step (setup writes of fixed values, final reads) until it succeeds. */
export async function retryIdempotent<T>(
  what: string,
  attemptsMax: number,
  step: () => Promise<T>,
): Promise<T> {
  let lastError: unknown;
  for (let attempt = 0; attempt < attemptsMax; attempt++) {
    try {
      return await step();
    } catch (error) {
      lastError = error;
      await sleep(200);
    }
  }
  const cause = lastError instanceof Error ? lastError.message : String(lastError);
  throw new WorkloadError(`${what} failed ${attemptsMax} times; last error: ${cause}`);
}

/** Sleeps between ops, returning early when the run stops. */
export async function pause(ms: number, stop: AbortSignal): Promise<void> {
  if (stop.aborted) return;
  await sleep(ms, undefined, { signal: stop }).catch(() => undefined);
}

export const finalReadAttemptsMax = 50;

export interface Deadline {
  readonly signal: AbortSignal;
  abort(): void;
  dispose(): void;
}

/**
 * A signal that aborts after `ms`, when `parent` aborts, or on abort(). Holds its timer
 * strongly: an AbortSignal.timeout() only reachable through AbortSignal.any() can be garbage
 * collected and then never fires.
 */
export function deadline(ms: number, parent?: AbortSignal): Deadline {
  const controller = new AbortController();
  const abort = (): void => controller.abort();
  const timer = setTimeout(abort, ms);
  parent?.addEventListener('abort', abort, { once: true });
  if (parent?.aborted) abort();
  return {
    signal: controller.signal,
    abort,
    dispose: () => {
      clearTimeout(timer);
      parent?.removeEventListener('abort', abort);
    },
  };
}
