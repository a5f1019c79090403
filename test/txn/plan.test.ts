// Cutting a txn along shard boundaries and merging the pieces back: etcd's answers must not
// depend on where the shard boundaries are.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildTxnResponse, chooseBranch, compareResults, planTxn, type Router } from '../../src/txn/plan.js';
import type { LeafResponse, TxnRequest } from '../../src/txn/types.js';
import { bytes, ModelKeyspace, referenceTxn, text } from './model-keyspace.js';
import { textRouter } from './router.js';

/** Shards split at 'e' and 'i'. */
const route: Router = textRouter(['e', 'i']);

test('the primary is the shard of the first key; each shard gets only its pieces', () => {
  const req: TxnRequest = {
    compare: [{ target: 'version', result: 'greater', key: bytes('j'), version: 0 }],
    success: [
      { type: 'put', request: { key: bytes('f') } },
      { type: 'deleteRange', request: { key: bytes('b'), rangeEnd: bytes('z') } },
    ],
    failure: [{ type: 'range', request: { key: bytes('a') } }],
  };
  const plan = planTxn(req, route);
  assert.deepEqual(plan.shards, [1, 2, 3]);
  assert.deepEqual(
    plan.parts.get(2)!.ops.map((o) => [o.id, o.op.type, text(o.op.request.key)]),
    [
      [0, 'put', 'f'],
      [1, 'deleteRange', 'e'],
    ],
  );
  assert.deepEqual(plan.opShards.get(1), [1, 2, 3]);
  assert.deepEqual(plan.compareShards.get(0), [3]);
});

test('a compare over a range split across shards: all keys must hold, zero values when no shard has one', () => {
  const req: TxnRequest = {
    compare: [{ target: 'version', result: 'equal', key: bytes('a'), rangeEnd: bytes('z'), version: 0 }],
    success: [],
    failure: [],
  };
  const plan = planTxn(req, route);
  assert.deepEqual(
    compareResults(plan, [
      { id: 0, keys: 0, holds: true },
      { id: 0, keys: 0, holds: true },
    ]),
    [true],
  );
  assert.deepEqual(
    compareResults(plan, [
      { id: 0, keys: 0, holds: true },
      { id: 0, keys: 2, holds: false },
    ]),
    [false],
  );
  const value: TxnRequest = {
    compare: [{ target: 'value', result: 'equal', key: bytes('a'), rangeEnd: bytes('z'), value: bytes('') }],
    success: [],
    failure: [],
  };
  assert.deepEqual(compareResults(planTxn(value, route), []), [false]);
});

test('nested txns: the branch is chosen from every compare, executed ops in request order', () => {
  const req: TxnRequest = {
    compare: [{ target: 'version', result: 'equal', key: bytes('a'), version: 0 }],
    success: [
      { type: 'put', request: { key: bytes('a') } },
      {
        type: 'txn',
        request: {
          compare: [{ target: 'version', result: 'equal', key: bytes('j'), version: 1 }],
          success: [{ type: 'put', request: { key: bytes('j') } }],
          failure: [{ type: 'range', request: { key: bytes('j') } }],
        },
      },
      { type: 'put', request: { key: bytes('f') } },
    ],
    failure: [],
  };
  const plan = planTxn(req, route);
  assert.deepEqual(chooseBranch(plan, [true, false]), { succeeded: true, executed: [0, 2, 3] });
  assert.deepEqual(chooseBranch(plan, [true, true]), { succeeded: true, executed: [0, 1, 3] });
  assert.deepEqual(chooseBranch(plan, [false, true]), { succeeded: false, executed: [] });
});

test('a Range over three shards merges to what one keyspace answers: sort, limit, count, more, keys-only', () => {
  const shards = [new ModelKeyspace(), new ModelKeyspace(), new ModelKeyspace()];
  const whole = new ModelKeyspace();
  let revision = 0;
  for (const k of ['a', 'c', 'f', 'g', 'j', 'k']) {
    revision++;
    const shardIndex = k < 'e' ? 0 : k < 'i' ? 1 : 2;
    const op = { type: 'put', request: { key: bytes(k), value: bytes(`${10 - revision}`) } } as const;
    shards[shardIndex]!.applyOp(op, revision);
    whole.applyOp(op, revision);
  }
  for (const range of [
    { sortOrder: 'descend', sortTarget: 'mod', limit: 4 },
    { sortOrder: 'ascend', sortTarget: 'value', limit: 2, keysOnly: true },
    { limit: 3 },
    { countOnly: true },
    { sortOrder: 'descend', sortTarget: 'key' },
  ] as const) {
    const req: TxnRequest = {
      compare: [],
      success: [{ type: 'range', request: { key: bytes('b'), rangeEnd: Uint8Array.of(0), ...range } }],
      failure: [],
    };
    const plan = planTxn(req, route);
    const pieces: LeafResponse[] = plan.opShards.get(0)!.map((shard) => {
      const op = plan.parts.get(shard)!.ops[0]!.op;
      return shards[shard - 1]!.applyOps([op], 99)[0]!;
    });
    const merged = buildTxnResponse(plan, [], new Map([[0, pieces]]), 99);
    assert.deepStrictEqual(merged, referenceTxn(whole, req, 99), JSON.stringify(range));
  }
});
