// A follower catching up by a snapshot much larger than the memory the test allows it: the
// snapshot must stream to a file as it arrives, never be held whole in memory. The budget is on
// the follower's anonymous resident memory (RssAnon: heap, buffers; not the LMDB and file pages
// the kernel can drop), sampled from /proc while it receives and installs the snapshot.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Etcd3 } from 'etcd3';
import { type ProcessCluster, startConcordCluster } from '../support/cluster.js';
import { gatewayPost, memberStatus, pollUntil } from '../support/process-cluster.js';

const MiB = 1024 * 1024;
/**
 * The follower's anonymous memory may not exceed this from its restart until it caught up. What
 * a member streaming the snapshot to a file uses: 25-40 MiB live after start (80 while the modules
 * load), plus chunk buffers already dead that V8 collects only once about 64 MiB of them piled
 * up, and that the allocator may keep after they were freed. The snapshot is larger than the
 * budget, so a member holding it whole cannot stay within it.
 */
const memoryBudgetBytes = 160 * MiB;
/** Large values: the fewer the puts, the sooner the data is written (one fsync per batch). */
const valueBytes = 1024 * 1024;
/** One snapshot, at about 180 × 1 MiB; the few keys after it reach the follower as log. */
const snapshotCount = 180;
const keys = 186;
const catchUpEntries = 10;
const putAttemptsMax = 3;

function rssAnonBytes(pid: number): number | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const match = /^RssAnon:\s+(\d+) kB/m.exec(status);
    return match === null ? undefined : Number(match[1]) * 1024;
  } catch {
    return undefined;
  }
}

describe('catch-up by a snapshot larger than the memory budget', { timeout: 480_000 }, () => {
  let cluster: ProcessCluster;
  before(async () => {
    cluster = await startConcordCluster({
      size: 3,
      snapshotCount,
      extraFlags: [
        '--experimental-snapshot-catchup-entries',
        String(catchUpEntries),
        '--max-request-bytes',
        String(2 * valueBytes),
      ],
    });
  });
  after(async () => {
    await cluster?.dispose();
  });

  it(`a follower installs a ${(keys * valueBytes) / MiB} MiB snapshot within ${memoryBudgetBytes / MiB} MiB of anonymous memory`, async (t: TestContext) => {
    await cluster.withLogsOnFailure(async () => {
      const leader = await cluster.leaderIndex();
      const follower = (leader + 1) % 3;
      await cluster.stop(follower);
      const value = Buffer.alloc(valueBytes, 'v');
      let next = 0;
      // gRPC, not the JSON gateway: a megabyte of base64 per put costs both sides CPU.
      const client = new Etcd3({ hosts: [cluster.endpoint(leader)] });
      const writer = async () => {
        for (let i = next++; i < keys; i = next++) {
          const key = `big/${String(i).padStart(5, '0')}`;
          // A put that timed out under load may or may not have committed; putting the same
          // value again is harmless.
          for (let attempt = 1; ; attempt++) {
            try {
              await client.put(key).value(value);
              break;
            } catch (error) {
              if (attempt >= putAttemptsMax) throw error;
            }
          }
        }
      };
      const startedAt = Date.now();
      try {
        await Promise.all(Array.from({ length: 2 }, writer));
      } finally {
        client.close();
      }
      t.diagnostic(`${keys} puts of ${valueBytes / 1024} KiB took ${Date.now() - startedAt} ms`);
      await pollUntil('the leader to take a snapshot', 60_000, async () =>
        /took a snapshot/.test(cluster.member(leader).log.text()) ? true : undefined,
      );

      await cluster.restart(follower, { waitHealthy: false });
      const pid = cluster.member(follower).child?.pid;
      assert.ok(pid !== undefined);
      let peakBytes = 0;
      let sampling = true;
      const sampler = (async () => {
        while (sampling) {
          peakBytes = Math.max(peakBytes, rssAnonBytes(pid) ?? 0);
          await sleep(10);
        }
      })();
      try {
        const target = Number((await memberStatus(cluster.endpoint(leader))).revision);
        await pollUntil(
          `${cluster.member(follower).name} to catch up to revision ${target}`,
          120_000,
          async () => {
            if (cluster.member(follower).child === undefined) throw new Error('the follower exited');
            const status = await memberStatus(cluster.endpoint(follower), 2000);
            return Number(status.revision) >= target ? true : undefined;
          },
        );
      } finally {
        sampling = false;
        await sampler;
      }
      const log = cluster.member(follower).log.text();
      assert.match(log, /installed a snapshot from the leader/);
      const took = /"msg":"took a snapshot".*?"bytes":(\d+)/.exec(cluster.member(leader).log.text());
      const snapshotBytes = Number(took?.[1] ?? 0);
      t.diagnostic(
        `snapshot ${(snapshotBytes / MiB).toFixed(0)} MiB; follower's peak RssAnon ${(peakBytes / MiB).toFixed(0)} MiB`,
      );
      assert.ok(
        snapshotBytes > memoryBudgetBytes,
        `the snapshot (${snapshotBytes} bytes) exceeds the budget`,
      );
      assert.ok(
        peakBytes <= memoryBudgetBytes,
        `peak anonymous memory ${(peakBytes / MiB).toFixed(0)} MiB exceeds the ${memoryBudgetBytes / MiB} MiB budget`,
      );
      const hashes = new Set<string>();
      const revision = Number((await memberStatus(cluster.endpoint(leader))).revision);
      for (const index of cluster.runningIndexes()) {
        const answer = await gatewayPost(
          cluster.endpoint(index),
          '/v3/maintenance/hashkv',
          { revision },
          10_000,
        );
        hashes.add(String(answer.hash));
      }
      assert.equal(hashes.size, 1, 'HashKV equal on every member');
    });
  });
});
