// Measures what the one-port multiplexer costs: the same gRPC server over the same backend,
// reached (a) through startApiServer's sniffing front socket and (b) bound directly to its own
// port (the node:http2 server of h2-grpc.ts).
// Run: npx tsc -p tsconfig.json --outDir .build/api && node .build/api/test/api/bench-mux.js

import { startApiServer } from '../../src/api/api-server.js';
import { createGrpcServer } from '../../src/api/grpc-server.js';
import { rawCall, rawClient } from './harness.js';
import { MemoryBackend } from './memory-backend.js';

const sequentialCalls = 3000;
const concurrentCalls = 20000;
const concurrency = 64;

async function measure(
  address: string,
): Promise<{ sequentialUs: number; concurrentPerSec: number; connectMs: number }> {
  const connectStart = performance.now();
  const kv = rawClient(address, 'etcdserverpb.KV');
  await rawCall(kv, 'Range', { key: Buffer.from('k') });
  const connectMs = performance.now() - connectStart;
  const start = performance.now();
  for (let i = 0; i < sequentialCalls; i++) await rawCall(kv, 'Range', { key: Buffer.from('k') });
  const sequentialUs = ((performance.now() - start) * 1000) / sequentialCalls;
  let issued = 0;
  const worker = async () => {
    while (issued++ < concurrentCalls) await rawCall(kv, 'Range', { key: Buffer.from('k') });
  };
  const concurrentStart = performance.now();
  await Promise.all(Array.from({ length: concurrency }, worker));
  const concurrentPerSec = concurrentCalls / ((performance.now() - concurrentStart) / 1000);
  kv.close();
  return { sequentialUs, concurrentPerSec, connectMs };
}

async function main(): Promise<void> {
  const backend = new MemoryBackend();
  await backend.put({ key: Buffer.from('k'), value: Buffer.from('v') });
  const muxed = await startApiServer({ backend, port: 0 });
  const direct = createGrpcServer(backend);
  const port = await direct.listen(0, '127.0.0.1');
  for (let round = 0; round < 4; round++) {
    const viaMux = await measure(`${muxed.host}:${muxed.port}`);
    const viaDirect = await measure(`127.0.0.1:${port}`);
    console.log(
      JSON.stringify({
        round,
        mux: viaMux,
        direct: viaDirect,
        sequentialOverheadPct: ((viaMux.sequentialUs / viaDirect.sequentialUs - 1) * 100).toFixed(1),
      }),
    );
  }
  await muxed.close(100);
  await direct.close(100);
}

await main();
