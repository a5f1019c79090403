// Concord members run inside the test process (no child processes), so a test can hand each one
// StorageHooks that wrap its WAL, keyspace or snapshot store and fail on demand. Every member,
// port and temp dir is released by dispose(), also when a test failed half-way.

import { mkdtemp, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ServerConfig } from '../../src/node/config.js';
import { ConcordServer, type StorageHooks } from '../../src/server/server.js';
import { createLogger, type Logger } from '../../src/util/logger.js';
import { freePort } from '../support/process-cluster.js';

export interface InProcessOptions {
  size: number;
  snapshotCount?: number;
  snapshotCatchUpEntries?: number;
  quotaBackendBytes?: number;
  /** --encryption-key-file of every member. */
  encryptionKeyFile?: string;
  /** --consensus of every member (absent: raft). */
  consensus?: 'raft' | 'multi-paxos';
  /** Hooks per member index, used at every start of that member. */
  hooks?: Array<StorageHooks | undefined>;
}

export interface InProcessMember {
  name: string;
  dataDir: string;
  peerPort: number;
  config: ServerConfig;
  server: ConcordServer | undefined;
  /** Everything the member logged (JSON lines). */
  logs: string[];
}

const heartbeatIntervalMs = 50;
const electionTimeoutMs = 500;

export class InProcessCluster {
  readonly members: InProcessMember[] = [];

  private constructor(
    private readonly root: string,
    private readonly options: InProcessOptions,
  ) {}

  static async start(options: InProcessOptions): Promise<InProcessCluster> {
    const root = await mkdtemp(join(tmpdir(), 'concord-inproc-'));
    const cluster = new InProcessCluster(root, options);
    try {
      const initialCluster = new Map<string, string[]>();
      for (let i = 0; i < options.size; i++) {
        const peerPort = await freePort();
        const clientPort = await freePort();
        const name = `m${i}`;
        initialCluster.set(name, [`http://127.0.0.1:${peerPort}`]);
        cluster.members.push({
          name,
          dataDir: join(root, name),
          peerPort,
          config: memberConfig(name, join(root, name), peerPort, clientPort, initialCluster, options),
          server: undefined,
          logs: [],
        });
      }
      await Promise.all(cluster.members.map((_, i) => cluster.startMember(i)));
      await cluster.leader();
    } catch (error) {
      await cluster.dispose();
      throw error;
    }
    return cluster;
  }

  server(index: number): ConcordServer {
    const server = this.members[index]?.server;
    if (server === undefined) throw new Error(`member ${index} is not running`);
    return server;
  }

  async startMember(index: number): Promise<ConcordServer> {
    const member = this.members[index]!;
    if (member.server !== undefined) throw new Error(`${member.name} is running`);
    const log = memberLogger(member);
    member.server = await ConcordServer.start(member.config, log, this.options.hooks?.[index] ?? {});
    return member.server;
  }

  /**
   * Prepares a new member that joins the running cluster (--initial-cluster-state existing) and
   * returns its index and peer URL; `member add` it with that URL, then startMember(index).
   */
  async prepareJoiner(): Promise<{ index: number; peerUrl: string }> {
    const peerPort = await freePort();
    const clientPort = await freePort();
    const name = `m${this.members.length}`;
    const peerUrl = `http://127.0.0.1:${peerPort}`;
    const initialCluster = new Map(this.members.map((m) => [m.name, [`http://127.0.0.1:${m.peerPort}`]]));
    initialCluster.set(name, [peerUrl]);
    const config = memberConfig(
      name,
      join(this.root, name),
      peerPort,
      clientPort,
      initialCluster,
      this.options,
    );
    this.members.push({
      name,
      dataDir: join(this.root, name),
      peerPort,
      config: { ...config, initialClusterState: 'existing' },
      server: undefined,
      logs: [],
    });
    return { index: this.members.length - 1, peerUrl };
  }

  async stopMember(index: number): Promise<void> {
    const member = this.members[index]!;
    const server = member.server;
    member.server = undefined;
    await server?.stop();
  }

  /** Index of the member that leads, once every running member agrees on one. */
  async leader(timeoutMs = 10_000, among = this.runningIndexes()): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const leaders = new Set(among.map((i) => this.server(i).leaderId));
      const [leaderId] = [...leaders];
      if (leaders.size === 1 && leaderId !== undefined && leaderId !== 0) {
        const index = among.find((i) => this.server(i).memberId === leaderId);
        if (index !== undefined && this.server(index).isLeader) return index;
      }
      if (Date.now() > deadline) throw new Error(`no agreed leader among ${among.join(',')}`);
      await sleep(20);
    }
  }

  runningIndexes(): number[] {
    return this.members.flatMap((m, i) => (m.server !== undefined ? [i] : []));
  }

  logText(index: number): string {
    return this.members[index]!.logs.join('');
  }

  async dispose(): Promise<void> {
    for (let i = 0; i < this.members.length; i++) await this.stopMember(i).catch(() => undefined);
    await rm(this.root, { recursive: true, force: true });
  }
}

function memberConfig(
  name: string,
  dataDir: string,
  peerPort: number,
  clientPort: number,
  initialCluster: Map<string, string[]>,
  options: InProcessOptions,
): ServerConfig {
  return {
    name,
    dataDir,
    listenClientUrls: [`http://127.0.0.1:${clientPort}`],
    advertiseClientUrls: [`http://127.0.0.1:${clientPort}`],
    listenPeerUrls: [`http://127.0.0.1:${peerPort}`],
    initialAdvertisePeerUrls: [`http://127.0.0.1:${peerPort}`],
    initialCluster,
    initialClusterState: 'new',
    initialClusterToken: `inproc-${process.pid}`,
    heartbeatIntervalMs,
    electionTimeoutMs,
    snapshotCount: options.snapshotCount ?? 10_000,
    snapshotCatchUpEntries: options.snapshotCatchUpEntries ?? 5000,
    quotaBackendBytes: options.quotaBackendBytes ?? 2 * 1024 ** 3,
    maxRequestBytes: 1.5 * 1024 * 1024,
    maxTxnOps: 128,
    autoCompactionMode: 'periodic',
    autoCompactionRetention: 0,
    logLevel: 'info',
    experimentalFaultInjection: false,
    experimentalStaleReads: false,
    ...(options.encryptionKeyFile === undefined ? {} : { encryptionKeyFile: options.encryptionKeyFile }),
    ...(options.consensus === undefined ? {} : { consensus: options.consensus }),
  };
}

function memberLogger(member: InProcessMember): Logger {
  return createLogger('info', { member: member.name }, (line) => {
    member.logs.push(line);
  });
}

/** Whether something accepts TCP connections on the loopback port. */
export function isListening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** Resolves with the value, or rejects after timeoutMs saying what was awaited. */
export async function within<T>(what: string, timeoutMs: number, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)),
      timeoutMs,
    );
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** An error shaped like the one Node's fs raises for a failed system call. */
export function ioError(code: 'EIO' | 'ENOSPC', syscall: string, path?: string): NodeJS.ErrnoException {
  const text = code === 'EIO' ? 'i/o error' : 'no space left on device';
  const error: NodeJS.ErrnoException = new Error(`${code}: ${text}, ${syscall}${path ? ` '${path}'` : ''}`);
  error.code = code;
  error.syscall = syscall;
  if (path !== undefined) error.path = path;
  return error;
}

/**
 * Wraps `target` so that, while `armed()` is true, a method named in `failing` does not run but
 * throws ('throws', for synchronous methods) or rejects ('rejects', for async ones) with the error
 * `makeError(method)` returns. Everything else goes to the real object.
 */
export function faulty<T extends object>(
  target: T,
  failing: Partial<Record<keyof T, 'throws' | 'rejects'>>,
  armed: () => boolean,
  makeError: (method: string) => Error,
): T {
  return new Proxy(target, {
    get(object, property) {
      const value: unknown = Reflect.get(object, property, object);
      const how = failing[property as keyof T];
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        if (how !== undefined && armed()) {
          const error = makeError(String(property));
          if (how === 'rejects') return Promise.reject(error);
          throw error;
        }
        return value.apply(object, args);
      };
    },
  });
}
