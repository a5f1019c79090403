// The small workloads the bench smoke tests run: a few hundred operations over a few keys.

import type { BenchOptions } from '../../src/cli/bench/options.js';

export function smokeOptions(
  endpoints: string[],
  overrides: Partial<BenchOptions> & Pick<BenchOptions, 'workload'>,
): BenchOptions {
  return {
    endpoints,
    conns: 2,
    clients: 4,
    total: 200,
    durationMs: undefined,
    keySize: 8,
    valSize: 16,
    keySpaceSize: 50,
    sequentialKeys: false,
    consistency: 'l',
    readRatio: 0.5,
    watchers: 5,
    watchStreams: 5,
    leases: 8,
    targetLeader: false,
    skipPreload: false,
    requestTimeoutMs: 5000,
    json: true,
    progress: false,
    ...overrides,
  };
}
