// Keeps `bench:vs-etcd --security` able to run: a 1-member Concord and a 1-member etcd started by
// the benchmark's own harness with its TLS and auth flags, auth set up by it, and the load tool
// signed in as the non-root bench user. Counts only (errors, operations), never speed.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { BenchCluster, type MemberBinary } from '../../src/cli/bench/cluster.js';
import type { BenchOptions } from '../../src/cli/bench/options.js';
import { runWorkload } from '../../src/cli/bench/run.js';
import {
  BENCH_USER,
  clusterSecurity,
  enableBenchAuth,
  SECURITY_SETTINGS,
  type SecurityMaterial,
  writeSecurityMaterial,
} from '../../src/cli/bench/security.js';
import { concordBinary } from '../../src/cli/bench/vs-etcd.js';
import { etcdAvailable, etcdPath } from '../support/etcd-cluster.js';
import { smokeOptions } from './smoke-options.js';

const timing = { heartbeatMs: 50, electionMs: 500 };
const startTimeoutMs = 30_000;

/** The smoke workloads, signed in and over TLS as the cluster's clients are; 100 operations. */
function options(cluster: BenchCluster, overrides: Partial<BenchOptions> & Pick<BenchOptions, 'workload'>) {
  const secured = { tls: cluster.clientTls(), auth: cluster.auth, total: 100, keySize: 16 };
  return smokeOptions(cluster.endpoints(), { ...secured, ...overrides });
}

const systems: Array<{ label: string; binary: () => MemberBinary; skip: boolean }> = [
  { label: 'concord', binary: () => concordBinary(() => []), skip: false },
  {
    label: 'etcd',
    binary: () => ({ label: 'etcd', command: etcdPath, argsBefore: () => [] }),
    skip: !etcdAvailable(),
  },
];

describe('bench:vs-etcd --security on one member', { timeout: 240_000 }, () => {
  let dir: string;
  let material: SecurityMaterial;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'bench-security-test-'));
    material = writeSecurityMaterial(dir);
  });

  after(() => rmSync(dir, { recursive: true, force: true }));

  for (const system of systems) {
    for (const settingId of ['tls-auth', 'auth-jwt']) {
      const setting = SECURITY_SETTINGS.find((s) => s.id === settingId)!;
      it(`${system.label}, ${setting.title}: the bench user puts and reads, a client without a token is refused, a restarted member serves the signed-in probe`, {
        skip: system.skip,
      }, async () => {
        const root = mkdtempSync(join(dir, `${system.label}-${setting.id}-`));
        const cluster = await BenchCluster.create(
          system.binary(),
          root,
          1,
          timing,
          clusterSecurity(setting, material),
        );
        try {
          cluster.startAll();
          await cluster.waitServing(startTimeoutMs);
          await enableBenchAuth(cluster, startTimeoutMs);
          assert.deepEqual(cluster.auth, BENCH_USER);

          const put = await runWorkload(options(cluster, { workload: 'put' }));
          assert.equal(put.errors, 0, put.errorSamples.join('; '));
          assert.equal(put.ops, 100);
          const anonymous = await runWorkload(
            options(cluster, { workload: 'put', auth: undefined, total: 2 }),
          );
          assert.equal(anonymous.ops, 0);
          // With a client certificate and no token the certificate's (empty) common name is the
          // user, who does not exist; without one no user is given at all.
          const refusal = setting.tls ? /permission denied/ : /user name is empty/;
          assert.match(anonymous.errorSamples.join('; '), refusal);
          if (setting.tls) {
            const plaintext = await runWorkload(
              options(cluster, {
                workload: 'put',
                tls: undefined,
                auth: undefined,
                total: 2,
                requestTimeoutMs: 1000,
              }),
            );
            assert.equal(plaintext.ops, 0, 'a plaintext client reaches a TLS member');
          }

          await cluster.stopAll();
          cluster.startAll();
          await cluster.waitServing(startTimeoutMs);
          for (const consistency of ['l', 's'] as const) {
            const range = await runWorkload(
              options(cluster, { workload: 'range', consistency, skipPreload: true }),
            );
            assert.equal(range.errors, 0, range.errorSamples.join('; '));
            assert.equal(range.ops, 100);
          }
        } finally {
          await cluster.stopAll();
        }
      });
    }
  }
});
