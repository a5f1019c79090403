// Unary handlers that can block (Lock, Campaign) get a signal that fires when the client gives
// up; the others share one that never fires (no per-call AbortController on the hot path).

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { type ApiServer, startApiServer } from '../../src/api/api-server.js';
import { hostPort, type RawClient, rawCall, rawClient } from './harness.js';
import { MemoryBackend } from './memory-backend.js';

const signalWaitMs = 5000;
const callDeadlineMs = 300;

class SignalSpyBackend extends MemoryBackend {
  readonly lockSignals: AbortSignal[] = [];
  override async lock(name: Uint8Array, lease: bigint, signal: AbortSignal) {
    this.lockSignals.push(signal);
    return super.lock(name, lease, signal);
  }
}

async function waitUntil(condition: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + signalWaitMs;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe('unary call cancellation', () => {
  let backend: SignalSpyBackend;
  let server: ApiServer;
  let lease: RawClient;
  let lock: RawClient;

  before(async () => {
    backend = new SignalSpyBackend();
    server = await startApiServer({ backend, port: 0 });
    lease = rawClient(hostPort(server), 'etcdserverpb.Lease');
    lock = rawClient(hostPort(server), 'v3lockpb.Lock');
  });

  after(async () => {
    lease.close();
    lock.close();
    await server.close(100);
  });

  it('a waiting Lock sees its signal aborted when the client deadline passes', async () => {
    for (const ID of ['1', '2']) await rawCall(lease, 'LeaseGrant', { TTL: '30', ID });
    const held = await rawCall(lock, 'Lock', { name: Buffer.from('L'), lease: '1' });
    type WithOptions = (
      request: object,
      options: grpc.CallOptions,
      callback: (error: grpc.ServiceError | null) => void,
    ) => void;
    const lockWithOptions = (lock.Lock as unknown as WithOptions).bind(lock);
    const waiting = new Promise<void>((resolve, reject) => {
      const deadline = new Date(Date.now() + callDeadlineMs);
      lockWithOptions({ name: Buffer.from('L'), lease: '2' }, { deadline }, (error) =>
        error ? reject(error) : resolve(),
      );
    });
    await assert.rejects(waiting, { code: grpc.status.DEADLINE_EXCEEDED });
    assert.equal(backend.lockSignals.length, 2);
    await waitUntil(() => backend.lockSignals[1]?.aborted === true, 'the waiting lock to be aborted');
    await rawCall(lock, 'Unlock', { key: held.key });
  });
});
