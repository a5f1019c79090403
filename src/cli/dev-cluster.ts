// `npm start`: a local cluster on loopback (3 nodes, or `--nodes N`), data under ./data, for
// trying Concord out. Ports follow etcd's local-cluster habit (2379/22379/32379 for clients, +1
// for peers; further nodes 42379, 42479, …); when a port is taken the next free one is used and
// printed. Ctrl-C stops every node cleanly; running it again reuses ./data, so the data survives
// (with the same node count: a data dir holds one cluster). Other arguments are passed on to
// every member, e.g. `npm start -- --consensus multi-paxos` (a data dir keeps the engine it was
// created with).

import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, readdirSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SERVING_NODE_FLAGS } from './serving-flags.js';

const BASE_PORTS = [2379, 22379, 32379];
const EXTRA_NODES_BASE_PORT = 42379;
const NODES_DEFAULT = 3;
const NODES_MAX = 9;
const READY_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 10_000;

interface DevNode {
  name: string;
  clientUrl: string;
  peerUrl: string;
  dataDir: string;
}

function portIsFree(port: number): Promise<boolean> {
  return new Promise((done) => {
    const server = createServer();
    server.once('error', () => done(false));
    server.listen(port, '127.0.0.1', () => server.close(() => done(true)));
  });
}

async function freePortFrom(start: number, taken: Set<number>): Promise<number> {
  for (let port = start; port < start + 100; port++) {
    if (!taken.has(port) && (await portIsFree(port))) {
      taken.add(port);
      return port;
    }
  }
  throw new Error(`no free port in ${start}..${start + 99}`);
}

/** Takes `--nodes N` (or `--nodes=N`) out of the arguments; the rest go to every member. */
export function splitNodeCount(args: readonly string[]): { nodes: number; rest: string[] } {
  const rest: string[] = [];
  let given: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === '--nodes') given = args[++i] ?? '';
    else if (arg.startsWith('--nodes=')) given = arg.slice('--nodes='.length);
    else rest.push(arg);
  }
  if (given === undefined) return { nodes: NODES_DEFAULT, rest };
  const nodes = Number(given);
  if (!/^[0-9]+$/.test(given) || nodes < 1 || nodes > NODES_MAX) {
    throw new Error(`--nodes must be a whole number from 1 to ${NODES_MAX}, got ${JSON.stringify(given)}`);
  }
  return { nodes, rest };
}

/** The first client port tried for node i (0-based); its peer port is tried from one above. */
export function basePort(i: number): number {
  return BASE_PORTS[i] ?? EXTRA_NODES_BASE_PORT + (i - BASE_PORTS.length) * 100;
}

/** Refuses to start N nodes over a data dir that holds a cluster of another size. */
function checkDataRoot(dataRoot: string, count: number): void {
  let existing: string[];
  try {
    existing = readdirSync(dataRoot).filter(
      (name) => /^n[0-9]+$/.test(name) && readdirSync(join(dataRoot, name)).length > 0,
    );
  } catch {
    return;
  }
  if (existing.length === 0 || existing.length === count) return;
  throw new Error(
    `${dataRoot} holds a ${existing.length}-node cluster; start it with --nodes ${existing.length}, ` +
      'or use another data dir (CONCORD_DEV_DATA=dir) for a new cluster',
  );
}

async function planNodes(dataRoot: string, count: number): Promise<DevNode[]> {
  const taken = new Set<number>();
  const nodes: DevNode[] = [];
  for (let i = 0; i < count; i++) {
    const base = basePort(i);
    const clientPort = await freePortFrom(base, taken);
    const peerPort = await freePortFrom(base + 1, taken);
    const name = `n${i + 1}`;
    nodes.push({
      name,
      clientUrl: `http://127.0.0.1:${clientPort}`,
      peerUrl: `http://127.0.0.1:${peerPort}`,
      dataDir: join(dataRoot, name),
    });
  }
  return nodes;
}

function startNode(
  node: DevNode,
  initialCluster: string,
  concordJs: string,
  extraFlags: string[],
): ChildProcess {
  mkdirSync(node.dataDir, { recursive: true });
  const args = [
    ...SERVING_NODE_FLAGS,
    concordJs,
    '--name',
    node.name,
    '--data-dir',
    node.dataDir,
    '--listen-client-urls',
    node.clientUrl,
    '--advertise-client-urls',
    node.clientUrl,
    '--listen-peer-urls',
    node.peerUrl,
    '--initial-advertise-peer-urls',
    node.peerUrl,
    '--initial-cluster',
    initialCluster,
    '--initial-cluster-token',
    'concord-dev-cluster',
    '--initial-cluster-state',
    'new',
    ...extraFlags,
  ];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const prefix = `[${node.name}] `;
  const relay = (stream: NodeJS.ReadableStream, out: NodeJS.WriteStream) => {
    let pending = '';
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      pending += chunk;
      const lines = pending.split('\n');
      pending = lines.pop() ?? '';
      for (const line of lines) out.write(`${prefix}${line}\n`);
    });
  };
  relay(child.stdout!, process.stdout);
  relay(child.stderr!, process.stderr);
  return child;
}

async function waitHealthy(nodes: DevNode[]): Promise<boolean> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    const healthy = await Promise.all(
      nodes.map(async (node) => {
        try {
          const response = await fetch(`${node.clientUrl}/health`, { signal: AbortSignal.timeout(1000) });
          const body = (await response.json()) as { health?: string };
          return body.health === 'true';
        } catch {
          return false;
        }
      }),
    );
    if (healthy.every(Boolean)) return true;
    await new Promise((r) => setTimeout(r, 200));
  }
  return false;
}

async function main(): Promise<void> {
  const here = dirname(fileURLToPath(import.meta.url));
  const concordJs = join(here, 'concord.js');
  const dataRoot = resolve(process.env.CONCORD_DEV_DATA ?? 'data');
  const { nodes: count, rest: extraFlags } = splitNodeCount(process.argv.slice(2));
  checkDataRoot(dataRoot, count);
  const nodes = await planNodes(dataRoot, count);
  const initialCluster = nodes.map((n) => `${n.name}=${n.peerUrl}`).join(',');
  const children = nodes.map((node) => startNode(node, initialCluster, concordJs, extraFlags));
  let stopping = false;

  const stopAll = async (code: number) => {
    if (stopping) return;
    stopping = true;
    console.log('stopping the cluster…');
    const exits = children.map(
      (child) =>
        new Promise<void>((done) => {
          if (child.exitCode !== null || child.signalCode !== null) return done();
          child.once('exit', () => done());
          child.kill('SIGTERM');
          setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS).unref();
        }),
    );
    await Promise.all(exits);
    process.exit(code);
  };
  process.on('SIGINT', () => void stopAll(0));
  process.on('SIGTERM', () => void stopAll(0));
  for (const [i, child] of children.entries()) {
    child.on('exit', (code, signal) => {
      if (stopping) return;
      console.error(`${nodes[i]!.name} exited (code ${code}, signal ${signal}); stopping the others`);
      void stopAll(1);
    });
  }

  if (!(await waitHealthy(nodes))) {
    console.error(`the cluster did not become healthy within ${READY_TIMEOUT_MS / 1000}s`);
    await stopAll(1);
    return;
  }
  const endpoints = nodes.map((n) => n.clientUrl.replace('http://', '')).join(',');
  console.log('');
  const given = extraFlags.length > 0 ? ` (${extraFlags.join(' ')})` : '';
  console.log(`Concord ${count}-node cluster${given} is up. Data under ${dataRoot}`);
  for (const node of nodes) console.log(`  ${node.name}: client ${node.clientUrl}  peer ${node.peerUrl}`);
  console.log(`  try: ETCDCTL_API=3 etcdctl --endpoints=${endpoints} put hello world`);
  console.log(`Ctrl-C stops ${count === 1 ? 'it' : `all ${count}`}.`);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  try {
    await main();
  } catch (error) {
    console.error(`npm start: ${(error as Error).message}`);
    process.exit(2);
  }
}
