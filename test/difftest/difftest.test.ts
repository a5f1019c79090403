// The differential tester in `npm test`: the regression cases and a few short random seeds run
// against real etcd 3.4 (skipped when /usr/bin/etcd is missing), plus the shrinker and the
// normaliser on their own. Long campaigns: `npm run difftest -- --seeds N --ops M`.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { etcdAvailable } from '../support/etcd-cluster.js';
import { regressionCases } from './cases.js';
import { generateAuthSequence, generateSequence } from './generate.js';
import { differences, sameNormalised } from './normalise.js';
import type { OpSpec } from './ops.js';
import { type Divergence, defaultRunOptions, runSequence, startClusterPair } from './runner.js';
import { shrink } from './shrink.js';
import type { EventRewrite } from './side.js';

const noEtcd = etcdAvailable() ? false : 'etcd 3.4 is not installed (set E2E_ETCD_BIN)';
/** Short seeds for `npm test`; campaigns use random ones (see cli.ts). */
const quickSeeds = [
  { variant: 'kv', seed: 1, ops: 120, auth: false },
  { variant: 'watch', seed: 2, ops: 120, auth: false },
  // The watch variant has the kv operations too: one seed covers denied reads, writes and watches.
  { variant: 'watch', seed: 4, ops: 120, auth: true },
] as const;

function report(ops: readonly OpSpec[], divergence: Divergence): string {
  return [
    `${divergence.what} after operation ${divergence.index}: ${JSON.stringify(ops[divergence.index])}`,
    ...differences(divergence.etcd, divergence.concord),
  ].join('\n');
}

describe('difftest against etcd 3.4', { skip: noEtcd }, () => {
  it('the regression cases answer as etcd does (1-member clusters)', async () => {
    const ops = regressionCases.flatMap((c) => c.ops);
    const pair = await startClusterPair(1);
    try {
      const { divergence } = await runSequence(pair, ops, defaultRunOptions);
      if (divergence !== undefined) {
        let start = 0;
        const owner = regressionCases.find((c) => (start += c.ops.length) > divergence.index);
        assert.fail(`case "${owner?.name}": ${report(ops, divergence)}`);
      }
    } finally {
      await pair.dispose();
    }
  });

  it('a watch event that differs, or is missing, is a divergence of that watcher', async () => {
    // A watcher sees three events (put, put, delete) and is then canceled.
    const ops: OpSpec[] = [
      { type: 'watchCreate', stream: 0, label: 1, key: 'w', prevKv: true },
      { type: 'put', key: 'w', value: 'v1' },
      { type: 'put', key: 'w', value: 'v2' },
      { type: 'delete', key: 'w' },
      { type: 'watchCancel', stream: 0, watcher: { label: 1 } },
    ];
    const isDelete = (event: unknown) => (event as { type: unknown }).type === 'DELETE';
    const pair = await startClusterPair(1);
    try {
      const run = (concordEventRewrite?: EventRewrite) =>
        runSequence(pair, ops, { ...defaultRunOptions, watchSettleMs: 1000, concordEventRewrite });
      assert.equal((await run()).divergence, undefined);
      // One more revision in the second put's event: caught by that event, at once.
      const bumped = await run((event) => {
        const e = event as { kv: { value?: unknown; mod_revision: string } };
        if (String(e.kv.value) !== 'v2') return event;
        return { ...e, kv: { ...e.kv, mod_revision: String(Number(e.kv.mod_revision) + 1) } };
      });
      assert.equal(bumped.divergence?.what, 'stream 0 watcher @1 item 2');
      // The last event (the delete) never arrives: caught before the cancel.
      const dropped = await run((event) => (isDelete(event) ? undefined : event));
      assert.equal(dropped.divergence?.what, 'stream 0 watcher @1 from item 3');
      assert.equal(dropped.divergence?.index, 4);
    } finally {
      await pair.dispose();
    }
  });

  for (const { variant, seed, ops: count, auth } of quickSeeds) {
    const mode = auth ? ' --auth' : '';
    it(`${variant}${mode} seed ${seed}: ${count} random operations through a follower of 3-member clusters`, async () => {
      const ops = (auth ? generateAuthSequence : generateSequence)(seed, count, variant);
      const pair = await startClusterPair(3);
      try {
        const { divergence } = await runSequence(pair, ops, { ...defaultRunOptions, auth });
        if (divergence !== undefined) {
          assert.fail(
            `${report(ops, divergence)}\nreproduce: npm run difftest -- --variant ${variant}${mode} --seed ${seed} --ops ${count}`,
          );
        }
      } finally {
        await pair.dispose();
      }
    });
  }
});

describe('difftest shrinker', () => {
  it('keeps only the operations the divergence needs, and the txn parts inside them', async () => {
    const ops: OpSpec[] = [
      { type: 'put', key: 'a' },
      { type: 'put', key: 'x' },
      { type: 'range', key: 'a' },
      {
        type: 'txn',
        compare: [{ target: 'VERSION', result: 'EQUAL', key: 'a', version: 1 }],
        success: [
          { type: 'range', key: 'b' },
          { type: 'delete', key: 'y' },
        ],
        failure: [{ type: 'put', key: 'c' }],
      },
      { type: 'status' },
      { type: 'delete', key: 'z' },
    ];
    // A made-up divergence: a put of x followed later by a txn that deletes y.
    const diverges = async (candidate: OpSpec[]): Promise<Divergence | undefined> => {
      const x = candidate.findIndex((op) => op.type === 'put' && op.key === 'x');
      const y = candidate.findIndex(
        (op, i) => i > x && op.type === 'txn' && op.success.some((o) => o.type === 'delete' && o.key === 'y'),
      );
      return x >= 0 && y >= 0 ? { index: y, what: 'answer', etcd: 1, concord: 2 } : undefined;
    };
    const first = (await diverges(ops))!;
    const shrunk = await shrink(ops, first, { runCandidate: diverges, attemptsMax: 200, timeMaxMs: 10_000 });
    assert.deepEqual(shrunk.ops, [
      { type: 'put', key: 'x' },
      { type: 'txn', compare: [], success: [{ type: 'delete', key: 'y' }], failure: [] },
    ]);
  });
});

describe('difftest normaliser', () => {
  it('compares remaining TTLs within their tolerance and everything else exactly', () => {
    const ttl = (approx: number) => ({ TTL: { approx, tolerance: 3 }, grantedTTL: '60' });
    assert.equal(sameNormalised(ttl(57), ttl(59)), true);
    assert.equal(sameNormalised(ttl(50), ttl(59)), false);
    assert.equal(sameNormalised({ revision: '5' }, { revision: '6' }), false);
    assert.equal(sameNormalised({ a: undefined, b: 1 }, { b: 1 }), true);
    assert.deepEqual(differences({ kvs: [{ value: 'a' }] }, { kvs: [{ value: 'b' }] }), [
      '$.kvs.0.value: etcd "a" | concord "b"',
    ]);
  });
});
