// Retry safety against a scripted fake KV server: reads are retried, writes only when the error
// guarantees they were not applied, every call ends by its deadline, errors arrive typed.

import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import {
  Client,
  CompactedError,
  DeadlineExceededError,
  fromGrpcError,
  LeaseNotFoundError,
  NoLeaderError,
  UnavailableError,
} from '../../src/client/index.js';
import { serviceDefinition } from '../../src/wire/etcd-proto.js';
import { freePort } from '../support/process-cluster.js';

type Step = { error: [grpc.status, string] } | { hang: true } | { ok: true };

class FakeKv {
  readonly script = new Map<string, Step[]>();
  readonly calls = new Map<string, number>();
  private readonly server = new grpc.Server();
  port = 0;

  async start(): Promise<void> {
    const handler =
      (method: string) =>
      (call: grpc.ServerUnaryCall<object, object>, callback: grpc.sendUnaryData<object>) => {
        this.calls.set(method, (this.calls.get(method) ?? 0) + 1);
        const step = this.script.get(method)?.shift() ?? { ok: true };
        if ('hang' in step) {
          call.on('cancelled', () => callback({ code: grpc.status.CANCELLED, details: 'cancelled' }));
          return;
        }
        if ('error' in step) {
          callback({ code: step.error[0], details: step.error[1] });
          return;
        }
        callback(null, { header: { revision: '7', member_id: '1', cluster_id: '1', raft_term: '1' } });
      };
    this.server.addService(serviceDefinition('etcdserverpb.KV'), {
      Range: handler('Range'),
      Put: handler('Put'),
      DeleteRange: handler('DeleteRange'),
      Txn: handler('Txn'),
      Compact: handler('Compact'),
    });
    this.port = await new Promise<number>((resolve, reject) =>
      this.server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, port) =>
        error ? reject(error) : resolve(port),
      ),
    );
  }

  reset(): void {
    this.script.clear();
    this.calls.clear();
  }

  stop(): void {
    this.server.forceShutdown();
  }
}

const timedOut: [grpc.status, string] = [grpc.status.UNAVAILABLE, 'etcdserver: request timed out'];
const noLeader: [grpc.status, string] = [grpc.status.UNAVAILABLE, 'etcdserver: no leader'];

describe('retry safety (fake server)', () => {
  const fake = new FakeKv();
  let client: Client;

  before(async () => {
    await fake.start();
    client = new Client({
      endpoints: [`127.0.0.1:${fake.port}`],
      requestTimeoutMs: 1500,
      retry: { attemptsMax: 5, backoffBaseMs: 5, backoffMaxMs: 20 },
      health: { failuresToEject: 100 },
    });
  });

  after(() => {
    client.close();
    fake.stop();
  });

  beforeEach(() => fake.reset());

  test('a write that timed out on the server is not retried: its outcome is unknown', async () => {
    fake.script.set('Put', [{ error: timedOut }]);
    const error = await client.put('k', 'v').catch((e: unknown) => e);
    assert.ok(error instanceof UnavailableError);
    assert.equal(error.outcome, 'unknown');
    assert.equal(error.etcdMessage, 'etcdserver: request timed out');
    assert.equal(fake.calls.get('Put'), 1);
  });

  test('a write refused with "no leader" (never proposed) is retried until it succeeds', async () => {
    fake.script.set('Put', [{ error: noLeader }, { error: noLeader }, { ok: true }]);
    const result = await client.put('k', 'v');
    assert.equal(result.header.revision, 7n);
    assert.equal(fake.calls.get('Put'), 3);
  });

  test('retries stop at attemptsMax and surface the typed error', async () => {
    fake.script.set(
      'Put',
      Array.from({ length: 10 }, () => ({ error: noLeader })),
    );
    await assert.rejects(client.put('k', 'v'), NoLeaderError);
    assert.equal(fake.calls.get('Put'), 5);
  });

  test('reads are retried after a timeout', async () => {
    fake.script.set('Range', [{ error: timedOut }, { error: timedOut }, { ok: true }]);
    await client.get('k');
    assert.equal(fake.calls.get('Range'), 3);
  });

  test('a read-only txn is retried, a txn with a put is not', async () => {
    fake.script.set('Txn', [{ error: timedOut }, { ok: true }]);
    await client.txn().then({ type: 'get', key: 'k' }).commit();
    assert.equal(fake.calls.get('Txn'), 2);
    fake.reset();
    fake.script.set('Txn', [{ error: timedOut }, { ok: true }]);
    await assert.rejects(client.txn().then({ type: 'put', key: 'k', value: 'v' }).commit(), UnavailableError);
    assert.equal(fake.calls.get('Txn'), 1);
  });

  test('a write the server never answers ends at the deadline with an unknown outcome, sent once', async () => {
    fake.script.set('Put', [{ hang: true }]);
    const started = Date.now();
    const error = await client.put('k', 'v').catch((e: unknown) => e);
    const tookMs = Date.now() - started;
    assert.ok(error instanceof DeadlineExceededError, String(error));
    assert.equal(error.outcome, 'unknown');
    assert.ok(tookMs >= 1400 && tookMs < 3000, `took ${tookMs} ms for a 1500 ms deadline`);
    assert.equal(fake.calls.get('Put'), 1);
  });

  test('a write fails over from an endpoint that refuses connections (never sent) to a live one', async () => {
    const deadPort = await freePort();
    const twoEndpoints = new Client({
      endpoints: [`127.0.0.1:${deadPort}`, `127.0.0.1:${fake.port}`],
      balancer: 'round-robin',
      requestTimeoutMs: 3000,
      dialTimeoutMs: 500,
      leaderRefreshMs: 0,
    });
    try {
      for (let i = 0; i < 4; i++) await twoEndpoints.put(`k${i}`, 'v');
      assert.equal(fake.calls.get('Put'), 4, 'each write applied exactly once');
    } finally {
      twoEndpoints.close();
    }
  });

  test('server errors arrive as typed errors with stable codes and etcd text', () => {
    const compacted = fromGrpcError(
      Object.assign(new Error('x'), {
        code: grpc.status.OUT_OF_RANGE,
        details: 'etcdserver: mvcc: required revision has been compacted',
      }),
    );
    assert.ok(compacted instanceof CompactedError);
    assert.equal(compacted.code, 'compacted');
    const lease = fromGrpcError(
      Object.assign(new Error('x'), {
        code: grpc.status.NOT_FOUND,
        details: 'etcdserver: requested lease not found',
      }),
    );
    assert.ok(lease instanceof LeaseNotFoundError);
    const refused = fromGrpcError(
      Object.assign(new Error('x'), {
        code: grpc.status.UNAVAILABLE,
        details: 'No connection established. Last error: connect ECONNREFUSED',
      }),
    );
    assert.equal(refused.outcome, 'not-applied');
    const dropped = fromGrpcError(
      Object.assign(new Error('x'), { code: grpc.status.UNAVAILABLE, details: 'Connection dropped' }),
    );
    assert.equal(dropped.outcome, 'unknown');
    const tooMany = fromGrpcError(
      Object.assign(new Error('x'), {
        code: grpc.status.RESOURCE_EXHAUSTED,
        details: 'etcdserver: too many requests',
      }),
    );
    assert.equal(tooMany.code, 'resource-exhausted');
    assert.equal(tooMany.outcome, 'not-applied');
  });
});
