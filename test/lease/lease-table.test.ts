import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LeaseTable } from '../../src/lease/lease-table.js';

test('a TTL below the minimum is raised to the minimum', () => {
  const table = new LeaseTable(2);
  assert.equal(table.grant(1n, 1, 0).ttlSeconds, 2);
  assert.equal(table.grant(2n, 10, 0).ttlSeconds, 10);
});

test('only the leader counts time: followers never expire leases', () => {
  const table = new LeaseTable(1);
  table.grant(1n, 5, 0);
  assert.deepEqual(table.expired(1_000_000, 10), []);
  table.promote(0, 0);
  assert.deepEqual(table.expired(4_999, 10), []);
  assert.deepEqual(table.expired(5_000, 10), [1n]);
});

test('a new leader gives every lease its full TTL plus the grace period', () => {
  const table = new LeaseTable(1);
  table.promote(0, 0);
  table.grant(7n, 10, 0);
  table.demote();
  // Leadership moves here at t=9s, one second before the old leader would have expired it.
  table.promote(9_000, 1_000);
  assert.deepEqual(table.expired(19_999, 10), []);
  assert.deepEqual(table.expired(20_000, 10), [7n]);
});

test('a keep-alive restarts the countdown', () => {
  const table = new LeaseTable(1);
  table.promote(0, 0);
  table.grant(3n, 10, 0);
  assert.equal(table.renew(3n, 8_000), 10);
  assert.deepEqual(table.expired(17_999, 10), []);
  assert.equal(table.remainingSeconds(3n, 12_500), 5);
  assert.equal(table.renew(99n, 0), undefined);
});

test('expired leases come out oldest first and bounded by the limit', () => {
  const table = new LeaseTable(1);
  table.promote(0, 0);
  table.grant(1n, 3, 0);
  table.grant(2n, 1, 0);
  table.grant(3n, 2, 0);
  assert.deepEqual(table.expired(10_000, 2), [2n, 3n]);
  table.revoke(2n);
  assert.deepEqual(table.expired(10_000, 5), [3n, 1n]);
});

test('renew on a follower is refused loudly', () => {
  const table = new LeaseTable(1);
  table.grant(1n, 5, 0);
  assert.throws(() => table.renew(1n, 0), /non-leader/);
});
