// Measures the gRPC server's cost per call: the API server over a MemoryBackend runs in a child
// process, so its CPU time (process.cpuUsage, asked for over IPC around each phase) is the
// server's alone; the grpc-js client load runs here. Reported per phase: sequential unary latency,
// concurrent calls/s, server CPU µs per call, and server CPU µs per delivered watch event. Both
// the one-port multiplexer (startApiServer) and the gRPC server on a port of its own are measured.
// Run: npx tsc -p tsconfig.json --outDir .build/api && node .build/api/test/api/bench-mux.js

import { type ChildProcess, fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type * as grpc from '@grpc/grpc-js';
import { startApiServer } from '../../src/api/api-server.js';
import { createGrpcServer } from '../../src/api/grpc-server.js';
import { rawCall, rawClient } from './harness.js';
import { MemoryBackend } from './memory-backend.js';

const sequentialCalls = 3000;
const concurrentCalls = 20000;
const concurrency = 64;
const watchStreams = 50;
const watchPuts = 200;
const rounds = 3;

type Reply = { type: 'ports'; mux: number; direct: number } | { type: 'cpu'; micros: number };

async function serve(): Promise<void> {
  const backend = new MemoryBackend();
  await backend.put({ key: Buffer.from('k'), value: Buffer.from('v') });
  const muxed = await startApiServer({ backend, port: 0 });
  const direct = createGrpcServer(backend);
  const directPort = await direct.listen(0, '127.0.0.1');
  process.send?.({ type: 'ports', mux: muxed.port, direct: directPort } satisfies Reply);
  process.on('message', async (message: string) => {
    if (message === 'cpu') {
      const { user, system } = process.cpuUsage();
      process.send?.({ type: 'cpu', micros: user + system } satisfies Reply);
    } else if (message === 'stop') {
      await muxed.close(100);
      await direct.close(100);
      process.exit(0);
    }
  });
}

function ask(child: ChildProcess, message: string): Promise<Reply> {
  return new Promise((resolve) => {
    child.once('message', (reply: Reply) => resolve(reply));
    child.send(message);
  });
}

async function serverCpuMicros(child: ChildProcess): Promise<number> {
  const reply = await ask(child, 'cpu');
  if (reply.type !== 'cpu') throw new Error('unexpected reply');
  return reply.micros;
}

interface UnaryPhase {
  sequentialUs: number;
  sequentialServerCpuUs: number;
  concurrentPerSec: number;
  concurrentServerCpuUs: number;
}

function rounded(values: object): Record<string, number> {
  return Object.fromEntries(
    Object.entries(values as Record<string, number>).map(([k, v]) => [k, Number(v.toFixed(1))]),
  );
}

async function unaryPhases(child: ChildProcess, address: string): Promise<UnaryPhase> {
  const kv = rawClient(address, 'etcdserverpb.KV');
  const range = () => rawCall(kv, 'Range', { key: Buffer.from('k') });
  for (let i = 0; i < 200; i++) await range();
  let cpu = await serverCpuMicros(child);
  const start = performance.now();
  for (let i = 0; i < sequentialCalls; i++) await range();
  const sequentialUs = ((performance.now() - start) * 1000) / sequentialCalls;
  const sequentialServerCpuUs = ((await serverCpuMicros(child)) - cpu) / sequentialCalls;
  let issued = 0;
  const worker = async () => {
    while (issued++ < concurrentCalls) await range();
  };
  cpu = await serverCpuMicros(child);
  const concurrentStart = performance.now();
  await Promise.all(Array.from({ length: concurrency }, worker));
  const concurrentPerSec = concurrentCalls / ((performance.now() - concurrentStart) / 1000);
  const concurrentServerCpuUs = ((await serverCpuMicros(child)) - cpu) / concurrentCalls;
  kv.close();
  return { sequentialUs, sequentialServerCpuUs, concurrentPerSec, concurrentServerCpuUs };
}

/** watchStreams streams with one watcher each on w/; watchPuts puts; CPU per delivered event. */
async function watchPhase(child: ChildProcess, address: string, round: number): Promise<number> {
  const watch = rawClient(address, 'etcdserverpb.Watch');
  const kv = rawClient(address, 'etcdserverpb.KV');
  const prefix = `w${round}/`;
  const open = (watch as unknown as { Watch: () => grpc.ClientDuplexStream<object, { events: unknown[] }> })
    .Watch;
  let delivered = 0;
  const calls = await Promise.all(
    Array.from({ length: watchStreams }, async () => {
      const call = open.call(watch);
      call.on('error', () => {});
      const created = new Promise<void>((resolve) => call.once('data', () => resolve()));
      call.on('data', (response) => {
        delivered += response.events.length;
      });
      call.write({ create_request: { key: Buffer.from(prefix), range_end: Buffer.from(`w${round}0`) } });
      await created;
      return call;
    }),
  );
  const expected = watchStreams * watchPuts;
  const cpu = await serverCpuMicros(child);
  for (let i = 0; i < watchPuts; i++) {
    await rawCall(kv, 'Put', { key: Buffer.from(`${prefix}${i}`), value: Buffer.from('v'.repeat(64)) });
  }
  while (delivered < expected) await new Promise((resolve) => setTimeout(resolve, 5));
  // The puts' own cost is in the window too: subtract the measured unary cost outside.
  const micros = (await serverCpuMicros(child)) - cpu;
  for (const call of calls) call.cancel();
  watch.close();
  kv.close();
  return micros;
}

async function main(): Promise<void> {
  const child = fork(fileURLToPath(import.meta.url), ['serve'], { stdio: 'inherit' });
  const ports = await new Promise<Reply>((resolve) => child.once('message', resolve));
  if (ports.type !== 'ports') throw new Error('unexpected reply');
  const servers = [
    ['mux', ports.mux],
    ['direct', ports.direct],
  ] as const;
  const unaryCostUs = new Map<string, number>();
  for (let round = 0; round < rounds; round++) {
    for (const [name, port] of servers) {
      const unary = await unaryPhases(child, `127.0.0.1:${port}`);
      unaryCostUs.set(name, unary.sequentialServerCpuUs);
      console.log(JSON.stringify({ round, server: name, ...rounded(unary) }));
    }
  }
  // Watch rounds last: the streams they open and cancel leave the server costlier per call
  // afterwards (with grpc-js's server as with ours), which would skew the unary rounds.
  for (let round = 0; round < rounds; round++) {
    for (const [name, port] of servers) {
      const micros = await watchPhase(child, `127.0.0.1:${port}`, round * 2 + (name === 'mux' ? 0 : 1));
      const putsUs = watchPuts * (unaryCostUs.get(name) ?? 0);
      const watchEventServerCpuUs = (micros - putsUs) / (watchStreams * watchPuts);
      console.log(JSON.stringify({ round, server: name, ...rounded({ watchEventServerCpuUs }) }));
    }
  }
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.send('stop');
  await exited;
}

if (process.argv[2] === 'serve') await serve();
else await main();
