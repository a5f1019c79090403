// `npm run bench:vs-etcd -- --security`: what TLS and auth cost on put and range, for etcd and
// Concord started with the same flags. Each setting is a cluster of its own (plaintext, mutual
// client and peer TLS, auth with simple tokens, auth with RS256 JWTs, TLS and auth together);
// the clients sign in as a non-root user with readwrite permission on the benchmark's keys, as an
// application would, never as root (whose requests skip the permission checks).
// Certificates: one self-signed P-256 certificate (node:crypto, transport/self-signed.ts) that is
// every member's server, peer and client certificate and the one trusted CA, so both systems
// verify the same chain; JWT keys: an RSA 2048 pair from node:crypto.

import { generateKeyPairSync } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { selfSignedCertificate } from '../../transport/self-signed.js';
import type { BenchCluster, ClusterSecurity, ClusterTlsFiles } from './cluster.js';
import { PROBE_KEY } from './cluster.js';
import { BenchConnection, unary } from './connections.js';
import type { BenchAuth } from './options.js';
import { cpuMsPerOp, errorsNote, type Measured, p50p99, ratio, renderTable } from './tables.js';

export interface SecuritySetting {
  id: string;
  title: string;
  tls: boolean;
  authToken: 'simple' | 'jwt' | undefined;
}

/** Every setting; the first, plaintext, is each system's baseline. */
export const SECURITY_SETTINGS: readonly SecuritySetting[] = [
  { id: 'plaintext', title: 'plaintext', tls: false, authToken: undefined },
  { id: 'tls', title: 'client + peer TLS', tls: true, authToken: undefined },
  { id: 'auth-simple', title: 'auth, simple token', tls: false, authToken: 'simple' },
  { id: 'auth-jwt', title: 'auth, JWT RS256', tls: false, authToken: 'jwt' },
  { id: 'tls-auth', title: 'TLS + auth (simple)', tls: true, authToken: 'simple' },
];

/** `--settings a,b`: the named settings in the given order; plaintext (the baseline) must be one. */
export function parseSecuritySettings(text: string | undefined): SecuritySetting[] {
  if (text === undefined) return [...SECURITY_SETTINGS];
  const settings = text.split(',').map((part) => {
    const setting = SECURITY_SETTINGS.find((s) => s.id === part.trim());
    if (setting === undefined)
      throw new Error(
        `--settings: unknown setting '${part}' (${SECURITY_SETTINGS.map((s) => s.id).join(', ')})`,
      );
    return setting;
  });
  if (!settings.some((s) => s.id === 'plaintext'))
    throw new Error('--settings must include plaintext: the other settings are compared to it');
  return settings;
}

/** The files every secured cluster of a run uses. */
export interface SecurityMaterial {
  tls: ClusterTlsFiles;
  jwtPublicKeyFile: string;
  jwtPrivateKeyFile: string;
}

export function writeSecurityMaterial(dir: string): SecurityMaterial {
  const { cert, key } = selfSignedCertificate(['127.0.0.1', 'localhost']);
  const certFile = join(dir, 'member.pem');
  const keyFile = join(dir, 'member-key.pem');
  writeFileSync(certFile, cert);
  writeFileSync(keyFile, key, { mode: 0o600 });
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwtPublicKeyFile = join(dir, 'jwt.pub.pem');
  const jwtPrivateKeyFile = join(dir, 'jwt-key.pem');
  writeFileSync(jwtPublicKeyFile, rsa.publicKey.export({ type: 'spki', format: 'pem' }));
  writeFileSync(jwtPrivateKeyFile, rsa.privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  return { tls: { caFile: certFile, certFile, keyFile }, jwtPublicKeyFile, jwtPrivateKeyFile };
}

/** The member flags of a setting (etcd's, so both systems get the same ones). */
export function clusterSecurity(setting: SecuritySetting, material: SecurityMaterial): ClusterSecurity {
  const tls = setting.tls ? { tls: material.tls } : {};
  switch (setting.authToken) {
    case undefined:
      return tls;
    case 'simple':
      return { ...tls, authTokenFlag: 'simple' };
    case 'jwt':
      return {
        ...tls,
        authTokenFlag: `jwt,pub-key=${material.jwtPublicKeyFile},priv-key=${material.jwtPrivateKeyFile},sign-method=RS256`,
      };
    default:
      return assertNever(setting.authToken);
  }
}

function assertNever(value: never): never {
  throw new Error(`unexpected auth token type ${String(value)}`);
}

/** The user the workloads run as: readwrite on the keys they use, nothing else. */
export const BENCH_USER: BenchAuth = { user: 'bench', password: 'bench-password' };
const rootPassword = 'root-password';
const benchRole = 'bench';
/** The workloads' keys are decimal digits (KeyFormat without a prefix): every key in ['0', ':'). */
const benchKeysFrom = '0';
const benchKeysEnd = ':';

/**
 * What `etcdctl user add root`, `role add root`, `user grant-role root root`, `user add bench`,
 * `role add bench`, `role grant-permission bench readwrite 0 :` (and the probe key), `user
 * grant-role bench bench` and `auth enable` do, through the Auth API; from then on the cluster's
 * clients sign in as BENCH_USER.
 */
export async function enableBenchAuth(cluster: BenchCluster, timeoutMs: number): Promise<void> {
  const connection = new BenchConnection(cluster.endpoints()[0]!, undefined, cluster.clientTls());
  const auth = connection.auth;
  const readwrite = (key: string, rangeEnd: string) => ({
    name: benchRole,
    perm: { permType: 'READWRITE' as const, key: Buffer.from(key), range_end: Buffer.from(rangeEnd) },
  });
  try {
    await unary(auth.UserAdd, auth, { name: 'root', password: rootPassword }, timeoutMs);
    await unary(auth.RoleAdd, auth, { name: 'root' }, timeoutMs);
    await unary(auth.UserGrantRole, auth, { user: 'root', role: 'root' }, timeoutMs);
    await unary(auth.UserAdd, auth, { name: BENCH_USER.user, password: BENCH_USER.password }, timeoutMs);
    await unary(auth.RoleAdd, auth, { name: benchRole }, timeoutMs);
    await unary(auth.RoleGrantPermission, auth, readwrite(benchKeysFrom, benchKeysEnd), timeoutMs);
    await unary(auth.RoleGrantPermission, auth, readwrite(PROBE_KEY, ''), timeoutMs);
    await unary(auth.UserGrantRole, auth, { user: BENCH_USER.user, role: benchRole }, timeoutMs);
    await unary(auth.AuthEnable, auth, {}, timeoutMs);
  } finally {
    connection.close();
  }
  cluster.auth = BENCH_USER;
}

/** One setting's best measurements per workload, for each system. */
export interface SecurityRun {
  setting: SecuritySetting;
  etcd: Map<string, Measured>;
  concord: Map<string, Measured>;
}

/**
 * Per workload and setting: each system's ops/s and p50/p99, its ratio to its own plaintext run,
 * and Concord/etcd; then the same for CPU time per operation (steadier on a shared machine).
 */
export function securityTables(
  runs: SecurityRun[],
  workloads: Array<{ id: string; title: string }>,
  markdown: boolean,
): string {
  const baseline = runs.find((run) => run.setting.id === 'plaintext');
  if (baseline === undefined) throw new Error('no plaintext run to compare with');
  const throughput: string[][] = [];
  const cpu: string[][] = [];
  for (const workload of workloads) {
    const base = { etcd: baseline.etcd.get(workload.id)!, concord: baseline.concord.get(workload.id)! };
    for (const run of runs) {
      const e = run.etcd.get(workload.id)!;
      const c = run.concord.get(workload.id)!;
      throughput.push([
        workload.title,
        run.setting.title,
        `${e.result.opsPerSec.toFixed(0)}${errorsNote(e.result)}`,
        p50p99(e.result),
        ratio(e.result.opsPerSec, base.etcd.result.opsPerSec),
        `${c.result.opsPerSec.toFixed(0)}${errorsNote(c.result)}`,
        p50p99(c.result),
        ratio(c.result.opsPerSec, base.concord.result.opsPerSec),
        ratio(c.result.opsPerSec, e.result.opsPerSec),
      ]);
      cpu.push([
        workload.title,
        run.setting.title,
        cpuMsPerOp(e).toFixed(3),
        ratio(cpuMsPerOp(e), cpuMsPerOp(base.etcd)),
        cpuMsPerOp(c).toFixed(3),
        ratio(cpuMsPerOp(c), cpuMsPerOp(base.concord)),
        ratio(cpuMsPerOp(c), cpuMsPerOp(e)),
      ]);
    }
  }
  return [
    renderTable(
      [
        'workload',
        'setting',
        'etcd ops/s',
        'etcd p50 / p99',
        'etcd vs plaintext',
        'concord ops/s',
        'concord p50 / p99',
        'concord vs plaintext',
        'concord / etcd',
      ],
      throughput,
      markdown,
    ),
    '',
    'CPU time of all members per operation (ms), against each system’s own plaintext run:',
    '',
    renderTable(
      [
        'workload',
        'setting',
        'etcd CPU ms/op',
        'etcd vs plaintext',
        'concord CPU ms/op',
        'concord vs plaintext',
        'concord / etcd',
      ],
      cpu,
      markdown,
    ),
  ].join('\n');
}
