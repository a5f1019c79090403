// The history is only as honest as the outcome given to each failed call: 'fail' claims the
// request certainly had no effect, so only errors etcd returns before the raft log may say so.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { status } from '@grpc/grpc-js';
import { memberIdHex } from './nemesis.js';
import { classifyError, prefixEnd } from './rpc.js';
import { deadline } from './workload.js';

function grpcError(code: status, details: string): Error {
  return Object.assign(new Error(`${code} ${details}`), { code, details });
}

test('errors that can follow an applied request are unknown, never fail', () => {
  assert.equal(classifyError(grpcError(status.DEADLINE_EXCEEDED, 'Deadline exceeded')), 'unknown');
  assert.equal(classifyError(grpcError(status.UNAVAILABLE, 'etcdserver: request timed out')), 'unknown');
  assert.equal(classifyError(grpcError(status.UNAVAILABLE, 'etcdserver: leader changed')), 'unknown');
  assert.equal(classifyError(grpcError(status.INTERNAL, 'Received RST_STREAM')), 'unknown');
  assert.equal(classifyError(grpcError(status.CANCELLED, 'Call cancelled')), 'unknown');
  assert.equal(classifyError(new Error('socket hang up')), 'unknown');
});

test('refusals before the raft log and unsent calls are fail', () => {
  assert.equal(classifyError(grpcError(status.INVALID_ARGUMENT, 'etcdserver: key is not provided')), 'fail');
  assert.equal(
    classifyError(grpcError(status.OUT_OF_RANGE, 'etcdserver: mvcc: required revision has been compacted')),
    'fail',
  );
  assert.equal(
    classifyError(grpcError(status.RESOURCE_EXHAUSTED, 'etcdserver: mvcc: database space exceeded')),
    'fail',
  );
  assert.equal(
    classifyError(
      grpcError(status.UNAVAILABLE, 'No connection established. Last error: connect ECONNREFUSED'),
    ),
    'fail',
  );
});

test('prefixEnd covers exactly the keys starting with the prefix', () => {
  assert.equal(prefixEnd('/jepsen/set/').toString('utf8'), '/jepsen/set0');
  assert.deepEqual(prefixEnd('a'), Buffer.from('b'));
  assert.deepEqual(prefixEnd(''), Buffer.from([0]));
});

test('member ids are converted from decimal to the hex /debug/faults expects', () => {
  assert.equal(memberIdHex('255'), 'ff');
  assert.equal(memberIdHex('230039382042831'), (230039382042831).toString(16));
  assert.throws(() => memberIdHex('0'));
  assert.throws(() => memberIdHex('abc'));
});

test('deadline fires after its time, on its parent, or on abort, and dispose clears it', async () => {
  const fired = deadline(20);
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.equal(fired.signal.aborted, true);
  const parent = new AbortController();
  const child = deadline(60_000, parent.signal);
  parent.abort();
  assert.equal(child.signal.aborted, true);
  child.dispose();
  const manual = deadline(60_000);
  manual.abort();
  assert.equal(manual.signal.aborted, true);
  manual.dispose();
});
