import assert from 'node:assert/strict';
import { test } from 'node:test';
import { clusterIdFor, memberIdFor } from '../../src/replica/ids.js';

test('member IDs use 48 bits and are exact JS numbers', () => {
  const ids = Array.from({ length: 200 }, (_, i) => memberIdFor([`http://127.0.0.1:${2000 + i}`], 'tok'));
  assert.ok(
    ids.some((id) => id > 2 ** 32),
    'some IDs must exceed 32 bits',
  );
  for (const id of ids) assert.ok(Number.isSafeInteger(id) && id > 0 && id < 2 ** 48);
  assert.equal(new Set(ids).size, ids.length);
});

test('every founding member computes the same IDs from the same flags', () => {
  const urls = ['http://a:2380', 'http://b:2380'];
  assert.equal(memberIdFor(urls, 't'), memberIdFor([...urls].reverse(), 't'));
  assert.notEqual(memberIdFor(urls, 't'), memberIdFor(urls, 'other-cluster'));
  assert.equal(clusterIdFor([3, 1, 2]), clusterIdFor([1, 2, 3]));
});
