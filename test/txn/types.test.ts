// txn/types.ts writes etcd's shapes out instead of importing mvcc/ (which the simulator may not
// import). This checks, at compile time, that they stay the same in both directions, so the
// services layer can hand mvcc requests to the coordinator and its responses back unchanged.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type * as mvcc from '../../src/mvcc/types.js';
import type * as txn from '../../src/txn/types.js';

type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;

const checks: {
  txnRequest: Same<mvcc.TxnRequest, txn.TxnRequest>;
  txnResponse: Same<mvcc.TxnResponse, txn.TxnResponse>;
  compare: Same<mvcc.Compare, txn.Compare>;
  requestOp: Same<mvcc.RequestOp, txn.RequestOp>;
  responseOp: Same<mvcc.ResponseOp, txn.ResponseOp>;
  range: Same<mvcc.RangeRequest, txn.RangeRequest>;
  rangeResponse: Same<mvcc.RangeResponse, txn.RangeResponse>;
  put: Same<mvcc.PutRequest, txn.PutRequest>;
  deleteRange: Same<mvcc.DeleteRangeRequest, txn.DeleteRangeRequest>;
  keyValue: Same<mvcc.KeyValue, txn.KeyValue>;
} = {
  txnRequest: true,
  txnResponse: true,
  compare: true,
  requestOp: true,
  responseOp: true,
  range: true,
  rangeResponse: true,
  put: true,
  deleteRange: true,
  keyValue: true,
};

test("txn's etcd shapes are mvcc's, in both directions (checked by the compiler)", () => {
  assert.ok(Object.values(checks).every((v) => v === true));
});
