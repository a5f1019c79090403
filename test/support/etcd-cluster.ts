// Real etcd 3.4 processes on loopback, started with the same flags as Concord, so a test can run
// one command against both and compare the answers.

import { existsSync } from 'node:fs';
import type { ClusterOptions, ProcessCluster, ServerBinary } from './process-cluster.js';
import { ProcessCluster as Cluster } from './process-cluster.js';

export const etcdPath = process.env.E2E_ETCD_BIN ?? '/usr/bin/etcd';

export function etcdAvailable(): boolean {
  return existsSync(etcdPath);
}

export function etcdBinary(): ServerBinary {
  return { label: 'etcd', command: etcdPath, argsBefore: [] };
}

/** Starts `size` etcd members with the same flags Concord gets. */
export function startEtcdCluster(options: ClusterOptions): Promise<ProcessCluster> {
  return Cluster.start(etcdBinary(), options);
}
