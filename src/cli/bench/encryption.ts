// `npm run bench:encryption`: put throughput of a 3-member Concord cluster with and without
// encryption at rest (--encryption-key-file), started the same way (loopback, temp data dirs,
// default fsync, heartbeat 100 ms / election 1000 ms), one cluster at a time, rounds alternating,
// with the put workload of `concord bench` (64 clients over 8 connections, random keys over
// 10,000, 256-byte values). The machine is shared and noisy: read the ratio, not the numbers.

import { randomBytes } from 'node:crypto';
import { existsSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { SERVING_NODE_FLAGS } from '../serving-flags.js';
import { BenchCluster } from './cluster.js';
import { formatMs } from './report.js';
import { type BenchResult, runWorkload } from './run.js';

const timing = { heartbeatMs: 100, electionMs: 1000 };
const startTimeoutMs = 60_000;
const clients = 64;
const conns = 8;
const valSize = 256;
const keySpaceSize = 10_000;

interface Measured {
  result: BenchResult;
  /** CPU time of all three members over the measured loop, per put (ms): steadier than puts/s here. */
  cpuMsPerPut: number;
}

async function measure(label: string, flags: string[], durationMs: number): Promise<Measured> {
  const root = await mkdtemp(join(tmpdir(), `bench-encryption-${label}-`));
  const script = fileURLToPath(new URL('../concord.js', import.meta.url));
  if (!existsSync(script))
    throw new Error(`compiled concord not found at ${script}; run npm run build first`);
  const keyFile = join(root, 'keys');
  writeFileSync(keyFile, `k1:${randomBytes(32).toString('base64')}\n`, { mode: 0o600 });
  const argsAfter = flags.map((flag) => (flag === '$KEYFILE' ? keyFile : flag));
  const binary = {
    label,
    command: process.execPath,
    argsBefore: () => [...SERVING_NODE_FLAGS, script],
    argsAfter,
  };
  const cluster = await BenchCluster.create(binary, root, 3, timing);
  try {
    cluster.startAll();
    await cluster.waitServing(startTimeoutMs);
    const cpu = (): number => cluster.members.reduce((sum, _, i) => sum + cluster.cpuSeconds(i), 0);
    let cpuStart = 0;
    let cpuEnd = 0;
    const result = await runWorkload(
      {
        workload: 'put',
        endpoints: cluster.endpoints(),
        conns,
        clients,
        total: undefined,
        durationMs,
        keySize: 8,
        valSize,
        keySpaceSize,
        sequentialKeys: false,
        consistency: 'l',
        readRatio: 0.5,
        watchers: 0,
        watchStreams: 0,
        leases: 0,
        targetLeader: false,
        skipPreload: false,
        requestTimeoutMs: 10_000,
        json: true,
        progress: false,
      },
      { started: () => (cpuStart = cpu()), ended: () => (cpuEnd = cpu()) },
    );
    return { result, cpuMsPerPut: ((cpuEnd - cpuStart) * 1000) / Math.max(1, result.ops) };
  } finally {
    await cluster.stopAll();
    await rm(root, { recursive: true, force: true });
  }
}

export async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { seconds: { type: 'string' }, rounds: { type: 'string' } },
    strict: true,
  });
  const seconds = Number(values.seconds ?? '10');
  const rounds = Number(values.rounds ?? '1');
  if (!(seconds > 0 && seconds <= 300) || !Number.isInteger(rounds) || rounds < 1 || rounds > 10)
    throw new Error('--seconds must be in (0, 300] and --rounds in 1..10');
  const systems = [
    { label: 'plaintext', flags: [] },
    { label: 'encrypted', flags: ['--encryption-key-file', '$KEYFILE'] },
  ];
  const best = new Map<string, Measured>();
  for (let round = 1; round <= rounds; round++) {
    for (const system of systems) {
      const measured = await measure(system.label, system.flags, seconds * 1000);
      const { result } = measured;
      process.stderr.write(
        `round ${round} ${system.label}: ${result.opsPerSec.toFixed(0)} puts/s, p50 ${formatMs(result.latencyMs.p50)} ms, p99 ${formatMs(result.latencyMs.p99)} ms, ${measured.cpuMsPerPut.toFixed(3)} CPU ms/put, ${result.errors} errors\n`,
      );
      const previous = best.get(system.label);
      if (previous === undefined || result.opsPerSec > previous.result.opsPerSec)
        best.set(system.label, measured);
    }
  }
  const plain = best.get('plaintext')!;
  const sealed = best.get('encrypted')!;
  const row = (label: string, { result: r, cpuMsPerPut }: Measured) =>
    `| ${label} | ${r.opsPerSec.toFixed(0)} | ${formatMs(r.latencyMs.p50)} | ${formatMs(r.latencyMs.p99)} | ${cpuMsPerPut.toFixed(3)} | ${r.errors} |`;
  process.stdout.write(
    [
      `put, 3 members, ${clients} clients / ${conns} conns, ${valSize}-byte values, ${seconds} s per run, best of ${rounds} round(s); load average at the end: ${loadavg()
        .map((l) => l.toFixed(1))
        .join(' ')}`,
      '',
      '| cluster | puts/s | p50 ms | p99 ms | CPU ms per put (3 members) | errors |',
      '| --- | --- | --- | --- | --- | --- |',
      row('plaintext', plain),
      row('--encryption-key-file', sealed),
      '',
      `encrypted / plaintext: throughput ${(sealed.result.opsPerSec / plain.result.opsPerSec).toFixed(2)}x, CPU per put ${(sealed.cpuMsPerPut / plain.cpuMsPerPut).toFixed(2)}x`,
      '',
    ].join('\n'),
  );
  return plain.result.errors + sealed.result.errors > 0 ? 1 : 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: Error) => {
    process.stderr.write(`bench-encryption: ${error.message}\n`);
    process.exit(2);
  },
);
