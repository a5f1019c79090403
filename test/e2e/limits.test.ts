// Client limits on a real member: --max-concurrent-streams advertised as etcd 3.4 advertises it,
// --max-watchers-per-stream and --max-client-connections refusing with a metric and a log line
// while etcdctl keeps working, and a bad limit stopping the member at start with a clear error.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { connect as connectHttp2 } from 'node:http2';
import { connect, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { etcdPackageDefinition } from '../../src/wire/etcd-proto.js';
import { concordBinary, type ProcessCluster, startConcordCluster } from '../support/cluster.js';
import { etcdAvailable, startEtcdCluster } from '../support/etcd-cluster.js';
import { etcdctlOk } from '../support/etcdctl.js';
import { pollUntil } from '../support/process-cluster.js';

const concurrentStreamsMax = 3;
const watchersPerStreamMax = 2;
const clientConnectionsMax = 6;

/** SETTINGS_MAX_CONCURRENT_STREAMS a server advertises on its client URL. */
async function advertisedStreamsMax(url: string): Promise<number | undefined> {
  const session = connectHttp2(url);
  session.on('error', () => {});
  try {
    const settings = await new Promise<{ maxConcurrentStreams?: number }>((resolve, reject) => {
      session.once('remoteSettings', resolve);
      setTimeout(() => reject(new Error(`no SETTINGS from ${url}`)), 5000).unref();
    });
    return settings.maxConcurrentStreams;
  } finally {
    session.close();
  }
}

async function metricValue(url: string, line: RegExp): Promise<number | undefined> {
  const text = await (await fetch(`${url}/metrics`)).text();
  for (const row of text.split('\n')) {
    if (line.test(row)) return Number(row.slice(row.lastIndexOf(' ') + 1));
  }
  return undefined;
}

describe('client limits on a member', { timeout: 120_000 }, () => {
  let concord: ProcessCluster;
  let etcd: ProcessCluster | undefined;

  before(async () => {
    const flags = ['--max-concurrent-streams', String(concurrentStreamsMax)];
    concord = await startConcordCluster({
      size: 1,
      extraFlags: [
        ...flags,
        '--max-watchers-per-stream',
        String(watchersPerStreamMax),
        '--max-client-connections',
        String(clientConnectionsMax),
      ],
    });
    if (etcdAvailable()) etcd = await startEtcdCluster({ size: 1, extraFlags: flags });
  });
  after(async () => {
    await concord?.dispose();
    await etcd?.dispose();
  });

  it('--max-concurrent-streams is advertised in SETTINGS as etcd 3.4 advertises it', async (t) => {
    assert.equal(await advertisedStreamsMax(concord.endpoint(0)), concurrentStreamsMax);
    if (etcd === undefined) return t.skip('no etcd binary');
    assert.equal(await advertisedStreamsMax(etcd.endpoint(0)), concurrentStreamsMax);
  });

  it('--max-watchers-per-stream refuses the extra create, counts it, logs it; etcdctl keeps working', async () => {
    await concord.withLogsOnFailure(async () => {
      const endpoint = concord.endpoint(0);
      const loaded = grpc.loadPackageDefinition(etcdPackageDefinition());
      const Watch = (loaded.etcdserverpb as grpc.GrpcObject).Watch as grpc.ServiceClientConstructor;
      const client = new Watch(new URL(endpoint).host, grpc.credentials.createInsecure());
      const responses: Array<{
        watch_id: string;
        created: boolean;
        canceled: boolean;
        cancel_reason: string;
      }> = [];
      const call = (client as unknown as { Watch: () => grpc.ClientDuplexStream<object, never> }).Watch();
      call.on('data', (response) => responses.push(response));
      call.on('error', () => {});
      try {
        for (const key of ['a', 'b', 'c']) call.write({ create_request: { key: Buffer.from(key) } });
        await pollUntil('three watch answers', 10_000, async () =>
          responses.length >= 3 ? true : undefined,
        );
        const refused = responses[2]!;
        assert.equal(refused.watch_id, '-1');
        assert.equal(refused.created, true);
        assert.equal(refused.canceled, true);
        assert.match(refused.cancel_reason, /more than 2 watchers on one stream/);
        await etcdctlOk(['put', 'k', 'v'], { endpoints: [endpoint] });
        assert.equal(
          (await etcdctlOk(['get', 'k', '--print-value-only'], { endpoints: [endpoint] })).trim(),
          'v',
        );
        assert.equal(
          await metricValue(endpoint, /^concord_client_limit_refusals_total\{limit="watchers-per-stream"\}/),
          1,
        );
        assert.match(concord.member(0).log.text(), /client limit refused.*--max-watchers-per-stream/);
      } finally {
        call.cancel();
        client.close();
      }
    });
  });

  it('--max-client-connections closes the extra connections at accept; the member serves once they go', async () => {
    await concord.withLogsOnFailure(async () => {
      const endpoint = concord.endpoint(0);
      const { hostname, port } = new URL(endpoint);
      const sockets: Socket[] = [];
      let refusedAt: number | undefined;
      try {
        // Idle connections until the member closes one it just accepted.
        for (let i = 0; i < clientConnectionsMax + 2 && refusedAt === undefined; i++) {
          const socket = connect(Number(port), hostname);
          socket.on('error', () => {});
          sockets.push(socket);
          const closedEarly = await new Promise<boolean>((resolve) => {
            socket.once('close', () => resolve(true));
            setTimeout(() => resolve(false), 300);
          });
          if (closedEarly) refusedAt = i;
        }
        assert.ok(refusedAt !== undefined && refusedAt <= clientConnectionsMax, `refused at ${refusedAt}`);
      } finally {
        for (const socket of sockets) socket.destroy();
      }
      await pollUntil('the member serves again', 10_000, async () => {
        const refusals = await metricValue(
          endpoint,
          /^concord_client_limit_refusals_total\{limit="connections"\}/,
        );
        return refusals !== undefined && refusals >= 1 ? true : undefined;
      });
      await etcdctlOk(['put', 'after', 'ok'], { endpoints: [endpoint] });
      assert.match(concord.member(0).log.text(), /client limit refused.*--max-client-connections/);
    });
  });
});

describe('a bad limit stops the member at start', () => {
  it('exits 2 with the flag, the value and why', () => {
    const binary = concordBinary();
    for (const [flag, value, message] of [
      ['--max-concurrent-streams', 'lots', /invalid value "lots" for flag -max-concurrent-streams/],
      ['--max-client-connections', '1.5', /invalid value "1.5" for flag -max-client-connections/],
      ['--max-watchers-per-stream', '0', /invalid value "0" for flag -max-watchers-per-stream/],
    ] as const) {
      const result = spawnSync(binary.command, [...binary.argsBefore, `${flag}=${value}`], {
        encoding: 'utf8',
        timeout: 30_000,
      });
      assert.equal(result.status, 2, `${flag}: ${result.stderr}`);
      assert.match(result.stderr, message);
    }
  });
});
