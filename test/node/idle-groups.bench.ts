// Benchmark (not a test): CPU of a node hosting many idle Raft groups. Starts 3 node processes on
// 127.0.0.1 (ports 22001-22003), each hosting the same G groups (3 replicas each) over one peer
// connection per node pair, one shared WAL and one TickDriver; waits until every group has a
// leader (and, with quiescence, until every replica hibernates), then measures each process's
// CPU-seconds per wall-second (process.cpuUsage()) over S seconds. Runs with quiescence off (every
// group ticks and its leader heartbeats every 100 ms) and on (RaftConfig.quiesce).
//
// Run: npm run build && node dist/test/node/idle-groups.bench.js [groups=1000] [seconds=20] [modes=off,on]
// Issue 15's bar: a node hosting 1,000 idle shard replicas uses <= 5 % of a core (0.05 CPU-s/s).

import { type ChildProcess, fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { NodeId } from '../../src/raft/types.js';
import { ManyGroupsNode } from './many-groups-fixture.js';

const NODE_IDS: NodeId[] = [1, 2, 3];
const PORT_BASE = 22000;

type ToChild = { kind: 'peers' } | { kind: 'measure-start' } | { kind: 'measure-end' } | { kind: 'stop' };
type FromChild =
  | { kind: 'listening' }
  | { kind: 'counts'; leading: number; withLeader: number; hibernating: number }
  | { kind: 'measured'; cpuS: number; wallS: number; messagesSent: number; ticks: number };

async function child(id: NodeId, groups: number, quiesce: boolean): Promise<void> {
  const send = (m: FromChild): void => {
    process.send?.(m);
  };
  const node = await ManyGroupsNode.start({
    id,
    voters: NODE_IDS,
    groups: Array.from({ length: groups }, (_, g) => g + 1),
    quiesce,
    listenUrl: `http://127.0.0.1:${PORT_BASE + id}`,
  });
  const messagesSent = (): number =>
    Object.values(node.transport.stats().peers).reduce((s, p) => s + p.messagesSent, 0);
  let start: { cpu: NodeJS.CpuUsage; wall: number; sent: number; ticks: number } | undefined;
  const reporter = setInterval(() => send({ kind: 'counts', ...node.counts() }), 500);
  process.on('message', (m: ToChild) => {
    switch (m.kind) {
      case 'peers':
        for (const other of NODE_IDS)
          if (other !== id) node.transport.addPeer(other, `http://127.0.0.1:${PORT_BASE + other}`);
        node.startHosts();
        return;
      case 'measure-start':
        // The reporter walks every group: not part of what is measured.
        clearInterval(reporter);
        start = {
          cpu: process.cpuUsage(),
          wall: performance.now(),
          sent: messagesSent(),
          ticks: node.driver.stats().ticks,
        };
        return;
      case 'measure-end': {
        const s = start!;
        const cpu = process.cpuUsage(s.cpu);
        send({ kind: 'counts', ...node.counts() });
        send({
          kind: 'measured',
          cpuS: (cpu.user + cpu.system) / 1e6,
          wallS: (performance.now() - s.wall) / 1000,
          messagesSent: messagesSent() - s.sent,
          ticks: node.driver.stats().ticks - s.ticks,
        });
        return;
      }
      case 'stop':
        clearInterval(reporter);
        void node.stop().then(() => process.exit(0));
        return;
    }
  });
  send({ kind: 'listening' });
}

interface Proc {
  id: NodeId;
  proc: ChildProcess;
  counts: { leading: number; withLeader: number; hibernating: number };
  next: (m: FromChild) => void;
}

function waitFor<T>(what: string, timeoutMs: number, poll: () => T | undefined): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const check = (): void => {
      const v = poll();
      if (v !== undefined) return resolve(v);
      if (Date.now() > deadline) return reject(new Error(`timed out waiting for ${what}`));
      setTimeout(check, 100);
    };
    check();
  });
}

async function runMode(groups: number, seconds: number, quiesce: boolean): Promise<void> {
  const self = fileURLToPath(import.meta.url);
  const procs: Proc[] = NODE_IDS.map((id) => {
    const proc = fork(self, ['child', String(id), String(groups), quiesce ? 'on' : 'off']);
    const p: Proc = { id, proc, counts: { leading: 0, withLeader: 0, hibernating: 0 }, next: () => {} };
    proc.on('message', (m: FromChild) => {
      if (m.kind === 'counts') p.counts = m;
      p.next(m);
    });
    return p;
  });
  try {
    const listening = new Set<NodeId>();
    for (const p of procs)
      p.next = (m) => {
        if (m.kind === 'listening') listening.add(p.id);
      };
    await waitFor('listening', 30_000, () => (listening.size === procs.length ? true : undefined));
    for (const p of procs) p.proc.send({ kind: 'peers' } satisfies ToChild);
    const t0 = Date.now();
    await waitFor('a leader in every group', 120_000, () => {
      const leaders = procs.reduce((s, p) => s + p.counts.leading, 0);
      return leaders === groups && procs.every((p) => p.counts.withLeader === groups) ? true : undefined;
    });
    if (quiesce)
      await waitFor('every replica hibernating', 60_000, () =>
        procs.every((p) => p.counts.hibernating === groups) ? true : undefined,
      );
    const settledS = (Date.now() - t0) / 1000;
    await new Promise((r) => setTimeout(r, 2000));
    const results = new Map<NodeId, Extract<FromChild, { kind: 'measured' }>>();
    for (const p of procs)
      p.next = (m) => {
        if (m.kind === 'measured') results.set(p.id, m);
      };
    for (const p of procs) p.proc.send({ kind: 'measure-start' } satisfies ToChild);
    await new Promise((r) => setTimeout(r, seconds * 1000));
    for (const p of procs) p.proc.send({ kind: 'measure-end' } satisfies ToChild);
    await waitFor('measurements', 30_000, () => (results.size === procs.length ? true : undefined));
    console.log(
      `quiescence ${quiesce ? 'on ' : 'off'}: ${groups} groups x 3 replicas, settled in ${settledS.toFixed(1)} s, measured ${seconds} s`,
    );
    for (const p of procs) {
      const r = results.get(p.id)!;
      console.log(
        `  node ${p.id}: ${(r.cpuS / r.wallS).toFixed(4)} CPU-s/s  (leads ${p.counts.leading}, hibernating ${p.counts.hibernating}/${groups}, ` +
          `${Math.round(r.messagesSent / r.wallS)} msgs/s sent, ${Math.round(r.ticks / r.wallS)} group ticks/s)`,
      );
    }
    const worst = Math.max(...[...results.values()].map((r) => r.cpuS / r.wallS));
    console.log(`  busiest node: ${(worst * 100).toFixed(2)} % of a core`);
  } finally {
    for (const p of procs) p.proc.send({ kind: 'stop' } satisfies ToChild);
    await Promise.all(
      procs.map(
        (p) =>
          new Promise<void>((resolve) => {
            const kill = setTimeout(() => p.proc.kill('SIGKILL'), 10_000);
            p.proc.on('exit', () => {
              clearTimeout(kill);
              resolve();
            });
          }),
      ),
    );
  }
}

async function main(): Promise<void> {
  if (process.argv[2] === 'child') {
    await child(Number(process.argv[3]), Number(process.argv[4]), process.argv[5] === 'on');
    return;
  }
  const groups = Number(process.argv[2] ?? 1000);
  const seconds = Number(process.argv[3] ?? 20);
  const modes = (process.argv[4] ?? 'off,on').split(',');
  for (const mode of modes) await runMode(groups, seconds, mode === 'on');
}

await main();
