// Shared helpers for the client tests: a cluster of real server processes (concord by default,
// etcd 3.4 with CLIENT_TEST_SERVER=etcd, so the same tests check the client against both), and
// small polling utilities.

import { setTimeout as sleep } from 'node:timers/promises';
import { Client, type ClientOptions } from '../../src/client/index.js';
import { startConcordCluster } from '../support/cluster.js';
import { startEtcdCluster } from '../support/etcd-cluster.js';
import type { ClusterOptions, ProcessCluster } from '../support/process-cluster.js';

export const serverKind = process.env.CLIENT_TEST_SERVER === 'etcd' ? 'etcd' : 'concord';

/**
 * The tests share 2 cores with other suites; a 1 s election timeout (instead of the harness's
 * 500 ms) keeps a loaded machine from causing spurious elections that tests would read as faults.
 */
export function startCluster(options: ClusterOptions): Promise<ProcessCluster> {
  return serverKind === 'etcd' ? startEtcdCluster(options) : startConcordCluster(options);
}

export function clientFor(cluster: ProcessCluster, options: Partial<ClientOptions> = {}): Client {
  return new Client({
    endpoints: cluster.members.map((m) => m.clientUrl),
    requestTimeoutMs: 5000,
    dialTimeoutMs: 1000,
    ...options,
  });
}

export async function waitUntil(
  what: string,
  timeoutMs: number,
  check: () => boolean | Promise<boolean>,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(20);
  }
}

/** Writes keep failing over while members die; this retries a write whose outcome was "not applied". */
export async function withRetries<T>(attempts: number, body: () => Promise<T>): Promise<T> {
  let lastError: unknown;
  for (let i = 0; i < attempts; i++) {
    try {
      return await body();
    } catch (error) {
      lastError = error;
      await sleep(100);
    }
  }
  throw lastError;
}
