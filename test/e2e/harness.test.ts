// The process-cluster harness itself: the guarantees other e2e tests lean on (a member keeps its
// data across stop/restart, dispose leaves no process and no temp dir behind).

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { dirname } from 'node:path';
import { describe, it } from 'node:test';
import { startConcordCluster } from '../support/cluster.js';
import { etcdctl, etcdctlOk } from '../support/etcdctl.js';
import { b64, readPrefix } from '../support/load.js';
import { freePort, gatewayPost, RingBuffer } from '../support/process-cluster.js';

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('e2e harness', { timeout: 60_000 }, () => {
  it('the ring buffer keeps only the newest bytes and says how many it dropped', () => {
    const ring = new RingBuffer(10);
    for (const chunk of ['aaaa', 'bbbb', 'cccc', 'dddd']) ring.push(Buffer.from(chunk));
    assert.equal(ring.text(), '[... 8 bytes dropped]\nccccdddd');
  });

  it('freePort hands out a bindable loopback port', async () => {
    const port = await freePort();
    assert.ok(port > 0 && port < 65536);
  });

  it('a 1-member cluster keeps its data across SIGTERM and restart; dispose kills the process and removes the data dir', async () => {
    const cluster = await startConcordCluster({ size: 1 });
    const member = cluster.member(0);
    const pid = member.child?.pid as number;
    const root = dirname(member.dataDir);
    try {
      assert.equal(await cluster.leaderIndex(), 0);
      await gatewayPost(cluster.endpoint(0), '/v3/kv/put', { key: b64('h/k'), value: b64('v') });
      await cluster.stop(0);
      assert.equal(member.exitCode, 0, 'SIGTERM is a clean shutdown');
      assert.equal(processAlive(pid), false);
      assert.deepEqual(cluster.endpoints(), []);
      await cluster.restart(0);
      assert.equal((await readPrefix(cluster.endpoint(0), 'h/')).kvs.get('h/k'), 'v');
      assert.equal(
        await etcdctlOk(['get', 'h/k', '--print-value-only'], { endpoints: cluster.endpoints() }),
        'v\n',
      );
      const missing = await etcdctl(['get', 'h/k'], { endpoints: ['http://127.0.0.1:1'], timeoutMs: 8000 });
      assert.notEqual(missing.code, 0, 'etcdctl reports an unreachable endpoint as a failure');
    } finally {
      const restartedPid = member.child?.pid;
      await cluster.dispose();
      if (restartedPid !== undefined) assert.equal(processAlive(restartedPid), false);
      assert.equal(existsSync(root), false, 'temp dir removed');
    }
  });
});
