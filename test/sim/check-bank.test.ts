// Bank snapshots: every one must hold every account, sum to the total and show no negative balance.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type BankReadOp, checkBank } from '../../src/sim/check/index.js';

const accounts = ['a', 'b', 'c'];

function read(id: number, balances: Record<string, number>): BankReadOp {
  return {
    id,
    process: 1,
    kind: 'read',
    key: '',
    input: undefined,
    output: balances,
    invokeTime: id,
    completeTime: id + 1,
    status: 'ok',
  };
}

describe('checkBank', () => {
  test('snapshots that sum to the total pass', () => {
    const verdict = checkBank([read(1, { a: 10, b: 10, c: 10 }), read(2, { a: 0, b: 25, c: 5 })], {
      accounts,
      total: 30,
    });
    assert.equal(verdict.valid, true, verdict.explanation);
    assert.equal(verdict.readsChecked, 2);
  });

  test('a snapshot with money created or destroyed is caught', () => {
    const verdict = checkBank([read(1, { a: 10, b: 10, c: 10 }), read(2, { a: 11, b: 10, c: 10 })], {
      accounts,
      total: 30,
    });
    assert.equal(verdict.valid, false);
    assert.deepEqual(
      verdict.anomalies.map((a) => [a.code, a.opIds]),
      [['BANK_WRONG_TOTAL', [2]]],
    );
  });

  test('a negative balance is caught unless allowed', () => {
    const history = [read(1, { a: -5, b: 20, c: 15 })];
    assert.deepEqual(
      checkBank(history, { accounts, total: 30 }).anomalies.map((a) => a.code),
      ['BANK_NEGATIVE_BALANCE'],
    );
    assert.equal(checkBank(history, { accounts, total: 30, negativeAllowed: true }).valid, true);
  });

  test('a snapshot missing an account is caught', () => {
    const verdict = checkBank([read(1, { a: 15, b: 15 })], { accounts, total: 30 });
    assert.deepEqual(
      verdict.anomalies.map((a) => a.code),
      ['BANK_WRONG_ACCOUNTS'],
    );
  });

  test('no snapshot at all is undecided', () => {
    assert.equal(checkBank([], { accounts, total: 30 }).valid, 'unknown');
  });
});
