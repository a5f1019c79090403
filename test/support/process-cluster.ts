// A cluster of real server processes on loopback, driven by etcd's command-line flags. Concord
// and etcd 3.4 accept the same flags, so one harness runs either; cluster.ts and etcd-cluster.ts
// only pick the binary. Every process, port and temp dir it creates is released by dispose(),
// also when a test failed half-way.

import { type ChildProcess, spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/** How a member binary is started: the executable and the arguments before the flags. */
export interface ServerBinary {
  label: string;
  command: string;
  argsBefore: string[];
}

export interface ClusterOptions {
  size: number;
  heartbeatIntervalMs?: number;
  electionTimeoutMs?: number;
  snapshotCount?: number;
  /** Extra flags appended for every member, e.g. ['--quota-backend-bytes', '1048576']. */
  extraFlags?: string[];
  /** How long start() waits for every member to report healthy. */
  startTimeoutMs?: number;
  /** Data dirs to use (e.g. restored from a snapshot) instead of fresh ones, by member index. */
  dataDirs?: string[];
  /** Environment variables added to every member's (e.g. a fault-injection switch). */
  env?: Record<string, string>;
  /**
   * Runs once ports and data dirs are chosen, before any member starts: e.g. a snapshot restore
   * into each data dir for exactly these names and peer URLs. Called again if the start is
   * retried on fresh ports.
   */
  beforeStart?: (plan: StartPlan) => Promise<void>;
  /** URL schemes of the members' client and peer URLs (the TLS flags go in extraFlags). */
  clientScheme?: 'http' | 'https';
  peerScheme?: 'http' | 'https';
  /** What the harness's own requests (health, status, member add) present to https:// members. */
  clientTls?: HarnessTls;
}

/** PEM material for the harness's https:// requests. */
export interface HarnessTls {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
  /** Members with self-signed certificates (--auto-tls). */
  insecureSkipVerify?: boolean;
}

/**
 * One HTTP request with a JSON answer: node:http(s) rather than fetch, so that an https:// member
 * with its own CA and client-certificate authentication can be asked too.
 */
export function requestJson(
  url: string,
  options: { method?: string; body?: unknown; timeoutMs?: number; tls?: HarnessTls } = {},
): Promise<{ status: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    const payload = options.body === undefined ? undefined : JSON.stringify(options.body);
    const secure = url.startsWith('https://');
    const requestOptions = {
      method: options.method ?? (payload === undefined ? 'GET' : 'POST'),
      headers: payload === undefined ? {} : { 'content-type': 'application/json' },
      timeout: options.timeoutMs ?? requestTimeoutMs,
      agent: false as const,
      ...(secure
        ? {
            ca: options.tls?.ca,
            cert: options.tls?.cert,
            key: options.tls?.key,
            rejectUnauthorized: !(options.tls?.insecureSkipVerify ?? false),
          }
        : {}),
    };
    const onResponse = (response: import('node:http').IncomingMessage) => {
      let text = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => {
        text += chunk;
      });
      response.on('error', reject);
      response.on('end', () => {
        try {
          resolve({ status: response.statusCode ?? 0, body: text === '' ? undefined : JSON.parse(text) });
        } catch {
          resolve({ status: response.statusCode ?? 0, body: text });
        }
      });
    };
    const request = secure
      ? httpsRequest(url, requestOptions, onResponse)
      : httpRequest(url, requestOptions, onResponse);
    request.on('timeout', () => request.destroy(new HarnessError(`${url}: no answer in time`)));
    request.on('error', reject);
    request.end(payload);
  });
}

export interface StartPlan {
  members: { name: string; clientUrl: string; peerUrl: string; dataDir: string }[];
  initialCluster: string;
  token: string;
}

/** `snapshot restore` flags (etcdctl's, which concordctl shares) for the one member of `plan`. */
export function restoreFlags(plan: StartPlan): string[] {
  const m = plan.members[0]!;
  return [
    '--name',
    m.name,
    '--data-dir',
    m.dataDir,
    '--initial-cluster',
    plan.initialCluster,
    '--initial-cluster-token',
    plan.token,
    '--initial-advertise-peer-urls',
    m.peerUrl,
  ];
}

export interface MemberProcess {
  readonly name: string;
  readonly clientUrl: string;
  readonly peerUrl: string;
  readonly dataDir: string;
  /** Flags the member was last started with (restart reuses them). */
  flags: string[];
  child: ChildProcess | undefined;
  /** Member ID as a decimal string, learned from the Status call once the member is up. */
  memberId: string;
  state: 'running' | 'paused' | 'stopped' | 'removed';
  log: RingBuffer;
  exitCode: number | null;
  exitSignal: NodeJS.Signals | null;
}

export class HarnessError extends Error {
  readonly code = 'HARNESS_ERROR';
  constructor(message: string) {
    super(message);
    this.name = 'HarnessError';
  }
}

/** Keeps the last `bytesMax` bytes of a process's output; older output is dropped. */
export class RingBuffer {
  private chunks: Buffer[] = [];
  private bytes = 0;
  droppedBytes = 0;
  constructor(private readonly bytesMax: number) {}

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.bytes += chunk.length;
    while (this.bytes > this.bytesMax && this.chunks.length > 1) {
      const first = this.chunks.shift() as Buffer;
      this.bytes -= first.length;
      this.droppedBytes += first.length;
    }
  }

  text(): string {
    const body = Buffer.concat(this.chunks).toString('utf8');
    return this.droppedBytes > 0 ? `[... ${this.droppedBytes} bytes dropped]\n${body}` : body;
  }
}

const logBytesMax = 64 * 1024;

/**
 * Every member process any cluster in this test process started and that has not exited. A
 * test that never reaches dispose() (a failed before hook, a crash) must neither leave servers
 * running nor hang the runner: children and their pipes are unref'd, and on exit they are killed.
 */
const liveChildren = new Set<ChildProcess>();
const liveRootDirs = new Set<string>();
process.on('exit', () => {
  for (const child of liveChildren) child.kill('SIGKILL');
  for (const dir of liveRootDirs) rmSync(dir, { recursive: true, force: true });
});
/** A member could not bind its planned port (taken by another process meanwhile). */
class PortTakenError extends Error {}

const pollIntervalMs = 100;
const requestTimeoutMs = 2000;
const exitWaitMs = 10_000;

/**
 * Ports below Linux's ephemeral range (32768–60999) that outgoing connections never take, so a
 * port found free stays free until our member binds it. Random within the range, so concurrent
 * test files rarely pick the same one; each candidate is checked by binding it.
 */
const portRangeMin = 15_000;
const portRangeMax = 32_000;
const portAttemptsMax = 200;
const handedOutPorts = new Set<number>();

function canBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/** A free loopback port, not handed out before by this process. */
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < portAttemptsMax; attempt++) {
    const port = portRangeMin + Math.floor(Math.random() * (portRangeMax - portRangeMin));
    if (handedOutPorts.has(port)) continue;
    if (await canBind(port)) {
      handedOutPorts.add(port);
      return port;
    }
  }
  throw new HarnessError(
    `no free port in ${portRangeMin}..${portRangeMax} after ${portAttemptsMax} attempts`,
  );
}

/** POSTs a JSON body to the member's grpc-gateway path and returns the parsed response. */
export async function gatewayPost(
  clientUrl: string,
  path: string,
  body: unknown,
  timeoutMs = requestTimeoutMs,
  tls?: HarnessTls,
): Promise<Record<string, unknown>> {
  if (clientUrl.startsWith('https://')) {
    const answer = await requestJson(`${clientUrl}${path}`, { body, timeoutMs, tls });
    if (answer.status !== 200)
      throw new HarnessError(
        `POST ${clientUrl}${path}: HTTP ${answer.status} ${JSON.stringify(answer.body)}`,
      );
    return answer.body as Record<string, unknown>;
  }
  const response = await fetch(`${clientUrl}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(timeoutMs),
  });
  const text = await response.text();
  if (!response.ok) throw new HarnessError(`POST ${clientUrl}${path}: HTTP ${response.status} ${text}`);
  return JSON.parse(text) as Record<string, unknown>;
}

export interface MemberStatus {
  memberId: string;
  leaderId: string;
  raftTerm: string;
  raftIndex: string;
  revision: string;
  isLearner: boolean;
}

export async function memberStatus(
  clientUrl: string,
  timeoutMs = requestTimeoutMs,
  tls?: HarnessTls,
): Promise<MemberStatus> {
  const status = await gatewayPost(clientUrl, '/v3/maintenance/status', {}, timeoutMs, tls);
  const header = (status.header ?? {}) as Record<string, string>;
  return {
    memberId: String(header.member_id ?? '0'),
    leaderId: String(status.leader ?? '0'),
    raftTerm: String(status.raftTerm ?? status.raft_term ?? '0'),
    raftIndex: String(status.raftIndex ?? status.raft_index ?? '0'),
    revision: String(header.revision ?? '0'),
    isLearner: status.isLearner === true || status.is_learner === true,
  };
}

async function isHealthy(clientUrl: string, tls?: HarnessTls): Promise<boolean> {
  try {
    if (clientUrl.startsWith('https://')) {
      const answer = await requestJson(`${clientUrl}/health`, { tls });
      return answer.status === 200 && (answer.body as { health?: string }).health === 'true';
    }
    const response = await fetch(`${clientUrl}/health`, { signal: AbortSignal.timeout(requestTimeoutMs) });
    const body = (await response.json()) as { health?: string };
    return response.ok && body.health === 'true';
  } catch {
    return false;
  }
}

/** Polls `probe` until it returns a value other than undefined, or throws after `timeoutMs`. */
export async function pollUntil<T>(
  what: string,
  timeoutMs: number,
  probe: () => Promise<T | undefined>,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() > deadline) {
      const cause = lastError instanceof Error ? ` (last error: ${lastError.message})` : '';
      throw new HarnessError(`timed out after ${timeoutMs} ms waiting for ${what}${cause}`);
    }
    await sleep(pollIntervalMs);
  }
}

export class ProcessCluster {
  readonly members: MemberProcess[] = [];
  private readonly tempDirs: string[] = [];
  private disposed = false;

  private constructor(
    private readonly binary: ServerBinary,
    private readonly options: Required<ClusterOptions>,
    private readonly rootDir: string,
  ) {}

  /** Starts the cluster; a port taken between planning and binding gets a fresh set of ports. */
  static async start(binary: ServerBinary, options: ClusterOptions): Promise<ProcessCluster> {
    const attemptsMax = 3;
    for (let attempt = 1; ; attempt++) {
      try {
        return await ProcessCluster.startOnce(binary, options);
      } catch (error) {
        if (!(error instanceof PortTakenError) || attempt >= attemptsMax) throw error;
      }
    }
  }

  private static async startOnce(binary: ServerBinary, options: ClusterOptions): Promise<ProcessCluster> {
    if (options.size < 1 || options.size > 7)
      throw new HarnessError(`cluster size ${options.size} out of range`);
    const rootDir = await mkdtemp(join(tmpdir(), `${binary.label}-e2e-`));
    const cluster = new ProcessCluster(
      binary,
      {
        heartbeatIntervalMs: 50,
        electionTimeoutMs: 500,
        snapshotCount: 10_000,
        extraFlags: [],
        startTimeoutMs: 30_000,
        dataDirs: [],
        env: {},
        beforeStart: async () => {},
        clientScheme: 'http',
        peerScheme: 'http',
        clientTls: {},
        ...options,
      },
      rootDir,
    );
    cluster.tempDirs.push(rootDir);
    liveRootDirs.add(rootDir);
    try {
      const token = `e2e-${process.pid}-${Date.now()}`;
      const planned = [];
      for (let i = 0; i < options.size; i++)
        planned.push(await cluster.planMember(`m${i}`, options.dataDirs?.[i]));
      const initialCluster = planned.map((m) => `${m.name}=${m.peerUrl}`).join(',');
      await cluster.options.beforeStart({ members: planned, initialCluster, token });
      for (const member of planned) {
        member.flags = cluster.memberFlags(member, initialCluster, 'new', token);
        cluster.members.push(member);
        cluster.spawnMember(member);
      }
      await cluster.waitHealthy(cluster.options.startTimeoutMs);
    } catch (error) {
      const logs = cluster.dumpLogs();
      await cluster.dispose();
      if (/EADDRINUSE|address already in use/.test(logs)) throw new PortTakenError(String(error));
      process.stderr.write(logs);
      throw error;
    }
    return cluster;
  }

  get label(): string {
    return this.binary.label;
  }

  /** Client URLs of the members that are neither removed nor known to be down. */
  endpoints(): string[] {
    return this.members.filter((m) => m.state === 'running').map((m) => m.clientUrl);
  }

  endpoint(index: number): string {
    return this.member(index).clientUrl;
  }

  member(index: number): MemberProcess {
    const member = this.members[index];
    if (member === undefined) throw new HarnessError(`no member ${index}`);
    return member;
  }

  runningIndexes(): number[] {
    return this.members.flatMap((m, i) => (m.state === 'running' ? [i] : []));
  }

  /** Waits until /health is true on the given members (default: every running member). */
  async waitHealthy(timeoutMs = 20_000, indexes = this.runningIndexes()): Promise<void> {
    for (const index of indexes) {
      const member = this.member(index);
      await pollUntil(`${member.name} (${member.clientUrl}) to be healthy`, timeoutMs, async () => {
        if (member.child === undefined)
          throw new HarnessError(`${member.name} exited: ${this.exitText(member)}`);
        return (await isHealthy(member.clientUrl, this.options.clientTls)) ? true : undefined;
      });
      if (member.memberId === '' || member.memberId === '0') {
        // Healthy already, but on a loaded machine one status call may still miss its deadline.
        member.memberId = await pollUntil(`${member.name}'s member ID`, timeoutMs, async () => {
          const id = (await memberStatus(member.clientUrl, requestTimeoutMs, this.options.clientTls))
            .memberId;
          return id === '0' ? undefined : id;
        });
      }
    }
  }

  /** The index of the member every responding member agrees is the leader (polls until there is one). */
  async leaderIndex(timeoutMs = 10_000): Promise<number> {
    return pollUntil('a leader', timeoutMs, async () => {
      for (const index of this.runningIndexes()) {
        const status = await memberStatus(this.member(index).clientUrl, 1000, this.options.clientTls).catch(
          () => undefined,
        );
        if (status === undefined || status.leaderId === '0') continue;
        const leader = this.members.findIndex((m) => m.state === 'running' && m.memberId === status.leaderId);
        if (leader < 0) continue;
        // Only trust a leader that itself says it leads, so a stale follower view is not reported.
        const own = await memberStatus(this.member(leader).clientUrl, 1000, this.options.clientTls).catch(
          () => undefined,
        );
        if (own !== undefined && own.leaderId === own.memberId) return leader;
      }
      return undefined;
    });
  }

  async stop(index: number): Promise<void> {
    await this.signalAndWait(index, 'SIGTERM');
  }

  async kill(index: number): Promise<void> {
    await this.signalAndWait(index, 'SIGKILL');
  }

  /** Starts a stopped or killed member again, with its data dir and flags. */
  async restart(index: number, options: { waitHealthy?: boolean } = {}): Promise<void> {
    const member = this.member(index);
    if (member.child !== undefined) throw new HarnessError(`${member.name} is still running`);
    if (member.state === 'removed') throw new HarnessError(`${member.name} was removed`);
    this.spawnMember(member);
    if (options.waitHealthy ?? true) await this.waitHealthy(20_000, [index]);
  }

  pause(index: number): void {
    const member = this.member(index);
    if (member.child === undefined || member.state !== 'running')
      throw new HarnessError(`${member.name} is not running`);
    member.child.kill('SIGSTOP');
    member.state = 'paused';
  }

  resume(index: number): void {
    const member = this.member(index);
    if (member.child === undefined || member.state !== 'paused')
      throw new HarnessError(`${member.name} is not paused`);
    member.child.kill('SIGCONT');
    member.state = 'running';
  }

  /**
   * Adds a member through the Cluster API, then starts its process with
   * --initial-cluster-state existing. Returns the new member's index.
   */
  async addMember(
    options: { learner?: boolean; waitHealthy?: boolean; extraFlags?: string[] } = {},
  ): Promise<number> {
    const member = await this.planMember(`m${this.members.length}`);
    const via = this.endpoints()[0];
    if (via === undefined) throw new HarnessError('no running member to add through');
    // etcd refuses a member change until every peer has been connected for 5 s ("unhealthy
    // cluster"), so a freshly started cluster needs a few tries.
    const added = await pollUntil('member add to be accepted', 15_000, () =>
      gatewayPost(
        via,
        '/v3/cluster/member/add',
        { peerURLs: [member.peerUrl], isLearner: options.learner ?? false },
        requestTimeoutMs,
        this.options.clientTls,
      ),
    );
    const addedMember = added.member as { ID: string };
    member.memberId = String(addedMember.ID);
    const list = added.members as Array<{ ID: string; name?: string; peerURLs: string[] }>;
    const initialCluster = list
      .map((m) => `${String(m.ID) === member.memberId ? member.name : m.name}=${m.peerURLs[0]}`)
      .join(',');
    member.flags = this.memberFlags(
      member,
      initialCluster,
      'existing',
      'unused-for-existing',
      options.extraFlags,
    );
    this.members.push(member);
    const index = this.members.length - 1;
    this.spawnMember(member);
    if (options.waitHealthy ?? true) await this.waitHealthy(20_000, [index]);
    return index;
  }

  /** Removes a member through the Cluster API (sent to another member) and stops its process. */
  async removeMember(index: number): Promise<void> {
    const member = this.member(index);
    const via = this.members.find((m, i) => i !== index && m.state === 'running');
    if (via === undefined) throw new HarnessError('no other running member to remove through');
    await gatewayPost(
      via.clientUrl,
      '/v3/cluster/member/remove',
      { ID: member.memberId },
      10_000,
      this.options.clientTls,
    );
    // etcd stops a removed member by itself; give it the chance, then stop it ourselves.
    const exited = await this.waitExit(member, 3000);
    if (!exited) await this.signalAndWait(index, 'SIGTERM');
    member.state = 'removed';
  }

  /** For a member removed by other means (e.g. `etcdctl member remove`): stop it if still running. */
  async retireMember(index: number): Promise<void> {
    const member = this.member(index);
    if (!(await this.waitExit(member, 3000))) await this.signalAndWait(index, 'SIGTERM');
    member.state = 'removed';
  }

  async promoteMember(index: number): Promise<Record<string, unknown>> {
    const member = this.member(index);
    const via = this.members.find((m, i) => i !== index && m.state === 'running');
    if (via === undefined) throw new HarnessError('no other running member to promote through');
    return gatewayPost(
      via.clientUrl,
      '/v3/cluster/member/promote',
      { ID: member.memberId },
      5000,
      this.options.clientTls,
    );
  }

  /** Every member's recent output, for printing when a test failed. */
  dumpLogs(): string {
    return this.members
      .map(
        (m) => `----- ${this.binary.label} ${m.name} (${m.state}, ${m.clientUrl}) -----\n${m.log.text()}\n`,
      )
      .join('');
  }

  /** Runs `body`; when it throws, prints every member's recent output before rethrowing. */
  async withLogsOnFailure<T>(body: () => Promise<T>): Promise<T> {
    try {
      return await body();
    } catch (error) {
      process.stderr.write(this.dumpLogs());
      throw error;
    }
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    for (const member of this.members) {
      if (member.child !== undefined) {
        member.child.kill('SIGKILL');
        await this.waitExit(member, exitWaitMs);
      }
    }
    for (const dir of this.tempDirs) {
      await rm(dir, { recursive: true, force: true });
      liveRootDirs.delete(dir);
    }
  }

  private async planMember(name: string, dataDir?: string): Promise<MemberProcess> {
    const clientPort = await freePort();
    let peerPort = await freePort();
    while (peerPort === clientPort) peerPort = await freePort();
    return {
      name,
      clientUrl: `${this.options.clientScheme}://127.0.0.1:${clientPort}`,
      peerUrl: `${this.options.peerScheme}://127.0.0.1:${peerPort}`,
      dataDir: dataDir ?? join(this.rootDir, name),
      flags: [],
      child: undefined,
      memberId: '',
      state: 'stopped',
      log: new RingBuffer(logBytesMax),
      exitCode: null,
      exitSignal: null,
    };
  }

  private memberFlags(
    member: MemberProcess,
    initialCluster: string,
    state: string,
    token: string,
    extraFlags = this.options.extraFlags,
  ): string[] {
    const o = this.options;
    return [
      '--name',
      member.name,
      '--data-dir',
      member.dataDir,
      '--listen-client-urls',
      member.clientUrl,
      '--advertise-client-urls',
      member.clientUrl,
      '--listen-peer-urls',
      member.peerUrl,
      '--initial-advertise-peer-urls',
      member.peerUrl,
      '--initial-cluster',
      initialCluster,
      '--initial-cluster-state',
      state,
      '--initial-cluster-token',
      token,
      '--heartbeat-interval',
      String(o.heartbeatIntervalMs),
      '--election-timeout',
      String(o.electionTimeoutMs),
      '--snapshot-count',
      String(o.snapshotCount),
      ...extraFlags,
    ];
  }

  private spawnMember(member: MemberProcess): void {
    const child = spawn(this.binary.command, [...this.binary.argsBefore, ...member.flags], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...this.options.env },
    });
    liveChildren.add(child);
    child.unref();
    (child.stdout as Socket | null)?.unref();
    (child.stderr as Socket | null)?.unref();
    member.child = child;
    member.state = 'running';
    member.exitCode = null;
    member.exitSignal = null;
    const record = (chunk: Buffer) => member.log.push(chunk);
    child.stdout?.on('data', record);
    child.stderr?.on('data', record);
    child.on('exit', (code, signal) => {
      liveChildren.delete(child);
      member.exitCode = code;
      member.exitSignal = signal;
      member.log.push(Buffer.from(`[harness] ${member.name} exited code=${code} signal=${signal}\n`));
      if (member.child === child) {
        member.child = undefined;
        if (member.state !== 'removed') member.state = 'stopped';
      }
    });
  }

  private exitText(member: MemberProcess): string {
    return `code=${member.exitCode} signal=${member.exitSignal}`;
  }

  private async signalAndWait(index: number, signal: NodeJS.Signals): Promise<void> {
    const member = this.member(index);
    const child = member.child;
    if (child === undefined) throw new HarnessError(`${member.name} is not running`);
    if (member.state === 'paused') child.kill('SIGCONT');
    child.kill(signal);
    if (await this.waitExit(member, exitWaitMs)) return;
    child.kill('SIGKILL');
    if (!(await this.waitExit(member, exitWaitMs))) throw new HarnessError(`${member.name} did not exit`);
  }

  private async waitExit(member: MemberProcess, timeoutMs: number): Promise<boolean> {
    const child = member.child;
    if (child === undefined) return true;
    if (child.exitCode !== null || child.signalCode !== null) return true;
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      child.once('exit', () => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }
}
