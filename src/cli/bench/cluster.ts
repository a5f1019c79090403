// Starts a 3-member cluster of either etcd or Concord on loopback with the same flags, ports
// chosen the same way and temp data dirs, for the side-by-side benchmark. Output of each member
// goes to a log file in its temp root (a pipe nobody reads would stall the member); a member that
// exits when not asked to is recorded, so the caller can keep the logs before the root goes.

import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, copyFileSync, existsSync, openSync, readFileSync } from 'node:fs';
import { lstat, readdir } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { authenticate, BenchConnection, type StatusResponse, unary } from './connections.js';
import type { BenchAuth, BenchTls } from './options.js';

export class BenchClusterError extends Error {
  readonly code = 'BENCH_CLUSTER';
}

export interface MemberBinary {
  label: string;
  command: string;
  /** Arguments before the etcd flags (the script path for node, profiler flags). */
  argsBefore: (memberName: string) => string[];
  /** Flags after the etcd flags, for every member (e.g. --consensus multi-paxos). */
  argsAfter?: string[];
}

/** PEM files every member uses as server, peer and client certificate, and as the one trusted CA. */
export interface ClusterTlsFiles {
  caFile: string;
  certFile: string;
  keyFile: string;
}

/** How the members secure themselves; the same flags for etcd and Concord. */
export interface ClusterSecurity {
  /**
   * Client and peer TLS: 'auto' with self-signed certificates (--auto-tls, --peer-auto-tls; the
   * clients skip verification), or these files with mutual TLS on both (--client-cert-auth,
   * --peer-client-cert-auth; the clients verify the members and present the certificate).
   */
  tls?: 'auto' | ClusterTlsFiles;
  /** --auth-token for every member; auth itself is turned on through the Auth API (enableAuth). */
  authTokenFlag?: string;
}

export interface BenchMember {
  name: string;
  clientPort: number;
  peerPort: number;
  dataDir: string;
  logPath: string;
  child: ChildProcess | undefined;
  spawnedAtMs: number;
  /** Set by stopAll: an exit then is expected. */
  stopping: boolean;
}

/** A member that exited while nobody was stopping it. */
export interface UnexpectedExit {
  member: string;
  code: number | null;
  signal: NodeJS.Signals | null;
  atMs: number;
}

/** The key waitServing reads (a user the benchmark signs in as needs read permission on it). */
export const PROBE_KEY = 'bench-probe';
const probeIntervalMs = 20;
const probeTimeoutMs = 1000;
const tlsProbeTimeoutMs = 5000;
const leaderWaitMs = 15_000;
const stopTimeoutMs = 20_000;
/** /proc/<pid>/stat times are in clock ticks; Linux reports USER_HZ = 100 on every mainstream arch. */
const clockTicksPerSec = 100;

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      if (address === null || typeof address === 'string') {
        server.close();
        reject(new BenchClusterError('listening socket has no port'));
        return;
      }
      server.close(() => resolve(address.port));
    });
  });
}

export class BenchCluster {
  private constructor(
    readonly binary: MemberBinary,
    readonly members: BenchMember[],
    private readonly timing: { heartbeatMs: number; electionMs: number },
    readonly security: ClusterSecurity,
  ) {}

  /** The user every client of this cluster signs in as, once auth is on (see security.ts). */
  auth: BenchAuth | undefined;

  /** Members that exited unasked, in order (each also noted on stderr when it happens). */
  readonly unexpectedExits: UnexpectedExit[] = [];

  /**
   * Copies every member's log (all its runs: the log is appended to across restarts) into `dir`
   * as `<label>-<member>.log`; returns the paths written.
   */
  keepLogs(dir: string): string[] {
    const kept: string[] = [];
    for (const member of this.members) {
      if (!existsSync(member.logPath)) continue;
      const target = join(dir, `${this.binary.label.replace(/\W+/g, '-')}-${member.name}.log`);
      copyFileSync(member.logPath, target);
      kept.push(target);
    }
    return kept;
  }

  static async create(
    binary: MemberBinary,
    rootDir: string,
    size: number,
    timing: { heartbeatMs: number; electionMs: number },
    security: ClusterSecurity = {},
  ): Promise<BenchCluster> {
    const members: BenchMember[] = [];
    for (let i = 0; i < size; i++) {
      const name = `m${i}`;
      members.push({
        name,
        clientPort: await freePort(),
        peerPort: await freePort(),
        dataDir: join(rootDir, name),
        logPath: join(rootDir, `${name}.log`),
        child: undefined,
        spawnedAtMs: 0,
        stopping: false,
      });
    }
    return new BenchCluster(binary, members, timing, security);
  }

  endpoints(): string[] {
    return this.members.map((m) => `127.0.0.1:${m.clientPort}`);
  }

  /** What a client of this cluster connects with (undefined: plaintext). */
  clientTls(): BenchTls | undefined {
    const tls = this.security.tls;
    if (tls === undefined) return undefined;
    if (tls === 'auto') return { insecureSkipVerify: true };
    return { ca: readFileSync(tls.caFile), cert: readFileSync(tls.certFile), key: readFileSync(tls.keyFile) };
  }

  private securityFlags(): string[] {
    const { tls, authTokenFlag } = this.security;
    const auth = authTokenFlag === undefined ? [] : ['--auth-token', authTokenFlag];
    if (tls === undefined) return auth;
    if (tls === 'auto') return ['--auto-tls', '--peer-auto-tls', ...auth];
    return [
      ...['--cert-file', tls.certFile, '--key-file', tls.keyFile, '--trusted-ca-file', tls.caFile],
      '--client-cert-auth',
      ...['--peer-cert-file', tls.certFile, '--peer-key-file', tls.keyFile],
      ...['--peer-trusted-ca-file', tls.caFile, '--peer-client-cert-auth'],
      ...auth,
    ];
  }

  private flags(member: BenchMember): string[] {
    const scheme = this.security.tls === undefined ? 'http' : 'https';
    const peerUrl = (m: BenchMember) => `${scheme}://127.0.0.1:${m.peerPort}`;
    const clientUrl = `${scheme}://127.0.0.1:${member.clientPort}`;
    return [
      ...this.securityFlags(),
      '--name',
      member.name,
      '--data-dir',
      member.dataDir,
      '--listen-client-urls',
      clientUrl,
      '--advertise-client-urls',
      clientUrl,
      '--listen-peer-urls',
      peerUrl(member),
      '--initial-advertise-peer-urls',
      peerUrl(member),
      '--initial-cluster',
      this.members.map((m) => `${m.name}=${peerUrl(m)}`).join(','),
      '--initial-cluster-token',
      'bench-cluster',
      '--initial-cluster-state',
      'new',
      '--heartbeat-interval',
      String(this.timing.heartbeatMs),
      '--election-timeout',
      String(this.timing.electionMs),
    ];
  }

  /** Spawns every member (again, after stop(): the data dirs are reused). */
  startAll(): void {
    for (const member of this.members) {
      if (member.child !== undefined) throw new BenchClusterError(`${member.name} is already running`);
      const log = openSync(member.logPath, 'a');
      const child = spawn(
        this.binary.command,
        [...this.binary.argsBefore(member.name), ...this.flags(member), ...(this.binary.argsAfter ?? [])],
        {
          stdio: ['ignore', log, log],
        },
      );
      closeSync(log);
      member.child = child;
      member.spawnedAtMs = performance.now();
      member.stopping = false;
      child.once('exit', (code, signal) => {
        if (member.child === child) member.child = undefined;
        if (member.stopping) return;
        this.unexpectedExits.push({ member: member.name, code, signal, atMs: performance.now() });
        process.stderr.write(
          `${this.binary.label} ${member.name} (pid ${child.pid}) exited unasked: code ${code}, signal ${signal}; log ${member.logPath}\n`,
        );
      });
    }
  }

  /**
   * Waits until every member answers a linearizable get; returns, per member, the ms from its
   * spawn to that first answer (the "time to serving" after a restart).
   */
  async waitServing(timeoutMs: number): Promise<number[]> {
    return Promise.all(this.members.map((member) => this.waitMemberServing(member, timeoutMs)));
  }

  private async waitMemberServing(member: BenchMember, timeoutMs: number): Promise<number> {
    const target = `127.0.0.1:${member.clientPort}`;
    const connection = new BenchConnection(target, probeIntervalMs, this.clientTls());
    // With auth on, the probe signs in (once) and reads over a second connection with the token.
    let reader: BenchConnection | undefined = this.auth === undefined ? connection : undefined;
    const deadline = member.spawnedAtMs + timeoutMs;
    let lastError = '';
    try {
      while (performance.now() < deadline) {
        if (member.child === undefined)
          throw new BenchClusterError(`${this.binary.label} ${member.name} exited; see ${member.logPath}`);
        try {
          if (reader === undefined) {
            const token = await authenticate(connection, this.auth!, tlsProbeTimeoutMs);
            reader = new BenchConnection(target, probeIntervalMs, this.clientTls(), token);
          }
          await unary(
            reader.kv.Range,
            reader.kv,
            { key: Buffer.from(PROBE_KEY), serializable: false },
            probeTimeoutMs,
          );
          return performance.now() - member.spawnedAtMs;
        } catch (error) {
          lastError = (error as Error).message;
        }
        await new Promise((resolve) => setTimeout(resolve, probeIntervalMs));
      }
    } finally {
      connection.close();
      reader?.close();
    }
    throw new BenchClusterError(
      `${this.binary.label} ${member.name} not serving after ${timeoutMs} ms (${lastError}); see ${member.logPath}`,
    );
  }

  /** Index of the member that reports itself leader. */
  /** The leader's index; asks every member in turn for up to leaderWaitMs (a busy machine drops probes). */
  async leaderIndex(): Promise<number> {
    const deadline = performance.now() + leaderWaitMs;
    for (;;) {
      const index = await this.leaderIndexOnce();
      if (index !== undefined) return index;
      if (performance.now() > deadline)
        throw new BenchClusterError(`no ${this.binary.label} member reports itself as leader`);
      await new Promise((resolve) => setTimeout(resolve, probeIntervalMs));
    }
  }

  private async leaderIndexOnce(): Promise<number | undefined> {
    for (const [index, member] of this.members.entries()) {
      const connection = new BenchConnection(`127.0.0.1:${member.clientPort}`, undefined, this.clientTls());
      try {
        const status: StatusResponse = await unary(
          connection.maintenance.Status,
          connection.maintenance,
          {},
          // A fresh TLS channel's first call includes its handshake: seconds on a loaded machine.
          this.security.tls === undefined ? probeTimeoutMs : tlsProbeTimeoutMs,
        );
        if (status.leader !== '0' && status.leader === status.header.member_id) return index;
      } catch {
        // a member that cannot answer is not the leader we are looking for
      } finally {
        connection.close();
      }
    }
    return undefined;
  }

  rssBytes(index: number): number {
    const pid = this.runningPid(index);
    const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    if (match === null) throw new BenchClusterError(`no VmRSS in /proc/${pid}/status`);
    return Number(match[1]) * 1024;
  }

  /** User + system CPU seconds the member has used so far. */
  cpuSeconds(index: number): number {
    const pid = this.runningPid(index);
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the ")" that closes the command name; utime and stime are fields 14 and 15.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / clockTicksPerSec;
  }

  private runningPid(index: number): number {
    const pid = this.members[index]?.child?.pid;
    if (pid === undefined) throw new BenchClusterError(`member ${index} is not running`);
    return pid;
  }

  /** Bytes allocated on disk under every member's data dir (what `du` reports). */
  async diskBytes(): Promise<number> {
    let total = 0;
    for (const member of this.members) total += await allocatedBytes(member.dataDir);
    return total;
  }

  /** SIGTERM to every member, SIGKILL after stopTimeoutMs; resolves when all exited. */
  async stopAll(): Promise<void> {
    await Promise.all(
      this.members.map(
        (member) =>
          new Promise<void>((resolve) => {
            const child = member.child;
            member.stopping = true;
            if (child === undefined || child.exitCode !== null || child.signalCode !== null) {
              member.child = undefined;
              resolve();
              return;
            }
            const force = setTimeout(() => child.kill('SIGKILL'), stopTimeoutMs);
            child.once('exit', () => {
              clearTimeout(force);
              member.child = undefined;
              resolve();
            });
            child.kill('SIGTERM');
          }),
      ),
    );
  }
}

async function allocatedBytes(path: string): Promise<number> {
  const info = await lstat(path);
  if (!info.isDirectory()) return info.blocks * 512;
  let total = info.blocks * 512;
  for (const entry of await readdir(path)) total += await allocatedBytes(join(path, entry));
  return total;
}
