// HashKV against etcd 3.4: the same requests go to a fresh one-member etcd and a fresh one-member
// Concord, and Maintenance.HashKV must answer the same hash and compact revision at every step:
// before any compaction, after a compaction at a put and at a delete, at the current and at older
// revisions, as `etcdctl endpoint hashkv` reports them. Tools that compare members' hashes (etcdctl endpoint hashkv, etcd's corruption
// check) then see a Concord member exactly as they would an etcd one.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startConcordCluster } from '../support/cluster.js';
import { etcdAvailable, startEtcdCluster } from '../support/etcd-cluster.js';
import { etcdctlOk } from '../support/etcdctl.js';
import { gatewayPost, type ProcessCluster } from '../support/process-cluster.js';

const b64 = (text: string) => Buffer.from(text).toString('base64');
const put = (key: string, value: string, lease?: string) => ({
  path: '/v3/kv/put',
  body:
    lease === undefined ? { key: b64(key), value: b64(value) } : { key: b64(key), value: b64(value), lease },
});
const del = (key: string, rangeEnd?: string) => ({
  path: '/v3/kv/deleterange',
  body: rangeEnd === undefined ? { key: b64(key) } : { key: b64(key), range_end: b64(rangeEnd) },
});
const compact = (revision: number) => ({ path: '/v3/kv/compaction', body: { revision, physical: true } });

/** Each step's requests, then HashKV at revision 0 and at every listed revision. */
const steps: { name: string; requests: { path: string; body: unknown }[]; revisions: number[] }[] = [
  { name: 'an empty store', requests: [], revisions: [] },
  {
    name: 'puts, an overwrite, a delete and a multi-op txn, never compacted',
    requests: [
      put('a', '1'),
      put('b', '2'),
      put('a', '3'),
      del('b'),
      {
        path: '/v3/kv/txn',
        body: {
          compare: [{ key: b64('a'), target: 'VERSION', result: 'EQUAL', version: 2 }],
          success: [
            { request_put: { key: b64('c'), value: b64('4') } },
            { request_delete_range: { key: b64('a') } },
            { request_put: { key: b64('f'), value: b64('5') } },
          ],
        },
      },
      { path: '/v3/lease/grant', body: { ID: 4660, TTL: 600 } },
      put('leased', 'x', '4660'),
    ],
    revisions: [2, 4, 6],
  },
  { name: 'a compaction at a delete', requests: [compact(5)], revisions: [6, 7] },
  {
    name: 'more history, a range delete, and a compaction at a put',
    requests: [put('d', '6'), put('a', '7'), del('a', 'd'), put('e', '8'), compact(9)],
    revisions: [10, 11],
  },
  { name: 'a compaction at the current revision', requests: [compact(11)], revisions: [] },
  {
    name: 'no key live any more (etcd then hashes every version its compaction kept)',
    requests: [put('g', '9'), compact(12), del('\u0000', '\u0000')],
    revisions: [13],
  },
  {
    name: 'a compaction at a delete, with no key live',
    requests: [put('h', '10'), del('h'), compact(15)],
    revisions: [],
  },
];

describe('HashKV is etcd 3.4 HashKV', { skip: !etcdAvailable() && 'etcd 3.4 is not installed' }, () => {
  let etcd: ProcessCluster | undefined;
  let concord: ProcessCluster | undefined;

  before(async () => {
    [etcd, concord] = await Promise.all([
      startEtcdCluster({ size: 1, startTimeoutMs: 120_000 }),
      startConcordCluster({ size: 1, startTimeoutMs: 120_000 }),
    ]);
  });

  after(async () => {
    await Promise.all([etcd?.dispose(), concord?.dispose()]);
  });

  /** What `etcdctl endpoint hashkv` reports at revision 0 and each of `revisions`. */
  async function hashes(cluster: ProcessCluster, revisions: number[]): Promise<unknown[]> {
    const out: unknown[] = [];
    for (const revision of [0, ...revisions]) {
      const text = await etcdctlOk(['endpoint', 'hashkv', `--rev=${revision}`, '-w', 'json'], {
        endpoints: [cluster.members[0]!.clientUrl],
      });
      const [{ HashKV: r }] = JSON.parse(text) as [{ HashKV: { hash: number; compact_revision?: number } }];
      out.push({ revision, hash: r.hash, compact_revision: r.compact_revision });
    }
    return out;
  }

  it('answers the same hash and compact revision as etcd after each step', async () => {
    for (const step of steps) {
      for (const cluster of [etcd!, concord!])
        for (const request of step.requests)
          await gatewayPost(cluster.members[0]!.clientUrl, request.path, request.body);
      const [theirs, ours] = await Promise.all([
        hashes(etcd!, step.revisions),
        hashes(concord!, step.revisions),
      ]);
      assert.deepEqual(ours, theirs, step.name);
    }
  });
});
