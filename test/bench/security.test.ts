// The pure parts of `bench:vs-etcd --security`: which settings run, the member flags each one
// gives both systems, and the ratios of the report (the clusters: security-smoke.test.ts).

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { BenchResult } from '../../src/cli/bench/run.js';
import {
  clusterSecurity,
  parseSecuritySettings,
  SECURITY_SETTINGS,
  type SecurityMaterial,
  type SecurityRun,
  securityTables,
} from '../../src/cli/bench/security.js';
import type { Measured } from '../../src/cli/bench/tables.js';

const material: SecurityMaterial = {
  tls: { caFile: '/pki/ca.pem', certFile: '/pki/member.pem', keyFile: '/pki/member-key.pem' },
  jwtPublicKeyFile: '/pki/jwt.pub.pem',
  jwtPrivateKeyFile: '/pki/jwt-key.pem',
};

function setting(id: string) {
  const found = SECURITY_SETTINGS.find((s) => s.id === id);
  assert.ok(found, id);
  return found;
}

/** A workload measured at `opsPerSec` over one second with `clusterCpuPercent` of CPU. */
function measured(opsPerSec: number, clusterCpuPercent: number): Measured {
  const result = {
    workload: 'put',
    opsPerSec,
    ops: opsPerSec,
    durationSec: 1,
    errors: 0,
    latencyMs: { p50: 2, p99: 9 },
  } as BenchResult;
  return { result, leaderCpuPercent: 0, clusterCpuPercent, window: { fromUs: 0, toUs: 1 } };
}

describe('bench:vs-etcd --security', () => {
  it('runs every setting by default; --settings picks some, in order, and must keep the plaintext baseline', () => {
    assert.deepEqual(
      parseSecuritySettings(undefined).map((s) => s.id),
      ['plaintext', 'tls', 'auth-simple', 'auth-jwt', 'tls-auth'],
    );
    assert.deepEqual(
      parseSecuritySettings('tls-auth,plaintext').map((s) => s.id),
      ['tls-auth', 'plaintext'],
    );
    assert.throws(() => parseSecuritySettings('tls'), /must include plaintext/);
    assert.throws(() => parseSecuritySettings('plaintext,ssl'), /unknown setting 'ssl'/);
  });

  it('gives both systems etcd flags: mutual TLS from the files, the auth token type; plaintext none', () => {
    assert.deepEqual(clusterSecurity(setting('plaintext'), material), {});
    assert.deepEqual(clusterSecurity(setting('tls'), material), { tls: material.tls });
    assert.deepEqual(clusterSecurity(setting('auth-simple'), material), { authTokenFlag: 'simple' });
    assert.deepEqual(clusterSecurity(setting('auth-jwt'), material), {
      authTokenFlag: 'jwt,pub-key=/pki/jwt.pub.pem,priv-key=/pki/jwt-key.pem,sign-method=RS256',
    });
    assert.deepEqual(clusterSecurity(setting('tls-auth'), material), {
      tls: material.tls,
      authTokenFlag: 'simple',
    });
  });

  it('compares each setting with the same system in plaintext, and Concord with etcd in the same setting', () => {
    const run = (id: string, etcd: Measured, concord: Measured): SecurityRun => ({
      setting: setting(id),
      etcd: new Map([['put-64', etcd]]),
      concord: new Map([['put-64', concord]]),
    });
    const text = securityTables(
      [
        run('plaintext', measured(1000, 50), measured(800, 80)),
        run('tls-auth', measured(500, 50), measured(600, 90)),
      ],
      [{ id: 'put-64', title: 'put' }],
      true,
    );
    const rows = text.split('\n').filter((line) => line.startsWith('| put |'));
    assert.deepEqual(rows, [
      '| put | plaintext | 1000 | 2.00 / 9.00 ms | 1.00x | 800 | 2.00 / 9.00 ms | 1.00x | 0.80x |',
      '| put | TLS + auth (simple) | 500 | 2.00 / 9.00 ms | 0.50x | 600 | 2.00 / 9.00 ms | 0.75x | 1.20x |',
      // CPU ms/op: etcd 0.5 → 1.0, Concord 1.0 → 1.5
      '| put | plaintext | 0.500 | 1.00x | 1.000 | 1.00x | 2.00x |',
      '| put | TLS + auth (simple) | 1.000 | 2.00x | 1.500 | 1.50x | 1.50x |',
    ]);
  });
});
