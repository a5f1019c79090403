// Patroni (Debian's `patroni`) running PostgreSQL 15 as user postgres, with an etcd v3 cluster
// (Concord or etcd) as its DCS through the JSON gateway. Each node gets its own REST and
// PostgreSQL ports and a data dir under one temp dir; dispose() stops every Patroni it started
// and every postmaster they started (found by the PID in postmaster.pid), and removes the dir.

import { type ChildProcess, spawn } from 'node:child_process';
import { chownSync, existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort, RingBuffer } from './process-cluster.js';

export const patroniPath = process.env.E2E_PATRONI_BIN ?? '/usr/bin/patroni';
export const postgresBinDir = process.env.E2E_PG_BIN_DIR ?? '/usr/lib/postgresql/15/bin';

const logBytesMax = 64 * 1024;
const stopWaitMs = 15_000;
const requestTimeoutMs = 2000;

interface Account {
  uid: number;
  gid: number;
  home: string;
}

function postgresAccount(): Account | undefined {
  const line = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((entry) => entry.startsWith('postgres:'));
  if (line === undefined) return undefined;
  const [, , uid, gid, , home] = line.split(':');
  return { uid: Number(uid), gid: Number(gid), home: home ?? '/' };
}

/** Why the Patroni test cannot run here, or undefined when it can. */
export function patroniUnavailable(): string | undefined {
  if (!existsSync(patroniPath)) return `patroni is not installed (${patroniPath}); apt-get install patroni`;
  if (!existsSync(join(postgresBinDir, 'postgres'))) {
    return `PostgreSQL 15 is not installed (${postgresBinDir}); apt-get install postgresql-15`;
  }
  const account = postgresAccount();
  if (account === undefined) return 'there is no postgres user';
  const uid = process.getuid?.();
  if (uid !== 0 && uid !== account.uid) return 'PostgreSQL must run as postgres: run as root or as postgres';
  return undefined;
}

export interface PatroniNode {
  readonly name: string;
  readonly restUrl: string;
  readonly pgPort: number;
  readonly dataDir: string;
  child: ChildProcess | undefined;
  log: RingBuffer;
}

/** Every process any PatroniCluster in this test process started: killed if the runner exits early. */
const livePids = new Set<number>();
const liveDirs = new Set<string>();
process.on('exit', () => {
  for (const pid of livePids) killQuietly(pid, 'SIGKILL');
  for (const dir of liveDirs) rmSync(dir, { recursive: true, force: true });
});

function killQuietly(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

/** Running (a zombie no one reaped yet counts as gone). */
function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** Children of `pid` per /proc (a postmaster's backends, walsenders, checkpointer, ...). */
function childPids(pid: number): number[] {
  const children: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // pid (comm) state ppid ...; comm may contain spaces and parentheses.
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) children.push(Number(entry));
    } catch {
      // the process ended while we looked
    }
  }
  return children;
}

export interface PatroniClusterOptions {
  scope: string;
  /** host:port of each DCS member's client URL. */
  dcsHosts: string[];
  names: string[];
}

export class PatroniCluster {
  readonly nodes: PatroniNode[] = [];

  private constructor(
    private readonly options: PatroniClusterOptions,
    private readonly rootDir: string,
    private readonly account: Account,
  ) {}

  static async create(options: PatroniClusterOptions): Promise<PatroniCluster> {
    const account = postgresAccount();
    if (account === undefined) throw new Error('there is no postgres user');
    const rootDir = await mkdtemp(join(tmpdir(), 'concord-patroni-'));
    liveDirs.add(rootDir);
    chownSync(rootDir, account.uid, account.gid);
    const cluster = new PatroniCluster(options, rootDir, account);
    for (const name of options.names) {
      const restPort = await freePort();
      const pgPort = await freePort();
      cluster.nodes.push({
        name,
        restUrl: `http://127.0.0.1:${restPort}`,
        pgPort,
        dataDir: join(rootDir, name),
        child: undefined,
        log: new RingBuffer(logBytesMax),
      });
    }
    return cluster;
  }

  node(name: string): PatroniNode {
    const node = this.nodes.find((n) => n.name === name);
    if (node === undefined) throw new Error(`no Patroni node ${name}`);
    return node;
  }

  private config(node: PatroniNode): object {
    const restAddress = node.restUrl.slice('http://'.length);
    const pgAddress = `127.0.0.1:${node.pgPort}`;
    return {
      scope: this.options.scope,
      namespace: '/service/',
      name: node.name,
      log: { level: 'INFO' },
      restapi: { listen: restAddress, connect_address: restAddress },
      etcd3: { hosts: this.options.dcsHosts },
      bootstrap: {
        // Small timings keep a failover within seconds: the leader key lives ttl seconds.
        dcs: { ttl: 10, loop_wait: 2, retry_timeout: 4, maximum_lag_on_failover: 1048576 },
        initdb: [{ encoding: 'UTF8' }],
        pg_hba: [
          'local all all trust',
          'host all all 127.0.0.1/32 trust',
          'host replication all 127.0.0.1/32 trust',
        ],
      },
      postgresql: {
        listen: pgAddress,
        connect_address: pgAddress,
        data_dir: node.dataDir,
        bin_dir: postgresBinDir,
        pgpass: join(this.rootDir, `${node.name}.pgpass`),
        authentication: { replication: { username: 'postgres' }, superuser: { username: 'postgres' } },
        parameters: { unix_socket_directories: this.rootDir, shared_buffers: '16MB' },
      },
    };
  }

  /** Starts Patroni for one node (as postgres); its config is JSON, which YAML reads as is. */
  async start(name: string): Promise<void> {
    const node = this.node(name);
    const configPath = join(this.rootDir, `${name}.yml`);
    await writeFile(configPath, JSON.stringify(this.config(node), null, 2));
    chownSync(configPath, this.account.uid, this.account.gid);
    const child = spawn(patroniPath, [configPath], {
      cwd: this.rootDir,
      uid: this.account.uid,
      gid: this.account.gid,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: this.account.home, LANG: 'C.UTF-8' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    node.child = child;
    if (child.pid !== undefined) livePids.add(child.pid);
    child.unref();
    const record = (chunk: Buffer) => node.log.push(chunk);
    child.stdout?.on('data', record);
    child.stderr?.on('data', record);
    child.on('exit', (code, signal) => {
      if (child.pid !== undefined) livePids.delete(child.pid);
      node.log.push(Buffer.from(`[harness] patroni ${name} exited code=${code} signal=${signal}\n`));
      if (node.child === child) node.child = undefined;
    });
  }

  /** The running postmaster's PID from postmaster.pid, if it is still that postmaster. */
  postmasterPid(name: string): number | undefined {
    const pidFile = join(this.node(name).dataDir, 'postmaster.pid');
    if (!existsSync(pidFile)) return undefined;
    const pid = Number(readFileSync(pidFile, 'utf8').split('\n')[0]);
    if (!Number.isInteger(pid) || pid <= 0 || !isAlive(pid)) return undefined;
    try {
      if (!readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('postgres')) return undefined;
    } catch {
      return undefined;
    }
    return pid;
  }

  /** kill -9 of the node's Patroni and of its postmaster with every child of it. */
  killHard(name: string): void {
    const node = this.node(name);
    const postmaster = this.postmasterPid(name);
    if (node.child?.pid !== undefined) killQuietly(node.child.pid, 'SIGKILL');
    if (postmaster !== undefined) {
      const children = childPids(postmaster);
      killQuietly(postmaster, 'SIGKILL');
      for (const pid of children) killQuietly(pid, 'SIGKILL');
    }
  }

  /** GET on a node's REST API: status and parsed JSON body (undefined when unreachable). */
  async rest(
    name: string,
    path: string,
  ): Promise<{ status: number; body: Record<string, unknown> } | undefined> {
    try {
      const response = await fetch(`${this.node(name).restUrl}${path}`, {
        signal: AbortSignal.timeout(requestTimeoutMs),
      });
      const text = await response.text();
      let body: Record<string, unknown> = {};
      try {
        body = JSON.parse(text) as Record<string, unknown>;
      } catch {
        // some answers are empty
      }
      return { status: response.status, body };
    } catch {
      return undefined;
    }
  }

  dumpLogs(): string {
    return this.nodes.map((n) => `----- patroni ${n.name} -----\n${n.log.text()}\n`).join('');
  }

  /** Stops every node (Patroni stops its PostgreSQL), kills what is left, removes the dir. */
  async dispose(): Promise<void> {
    for (const node of this.nodes) if (node.child?.pid !== undefined) killQuietly(node.child.pid, 'SIGTERM');
    const deadline = Date.now() + stopWaitMs;
    while (Date.now() < deadline && this.nodes.some((n) => n.child !== undefined)) await sleep(100);
    for (const node of this.nodes) this.killHard(node.name);
    while (Date.now() < deadline && this.nodes.some((n) => this.postmasterPid(n.name) !== undefined)) {
      await sleep(100);
    }
    rmSync(this.rootDir, { recursive: true, force: true });
    liveDirs.delete(this.rootDir);
  }
}
