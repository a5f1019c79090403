import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ProposeResult } from '../../src/raft/api.js';
import { ReadBatcher, ReadTimeoutError } from '../../src/replica/read-batcher.js';

/** A Raft stand-in: drops read requests while it knows no leader, records the rest. */
function fakeSource() {
  const source = {
    leaderKnown: false,
    issued: [] as Uint8Array[],
    readIndex(context: Uint8Array): ProposeResult {
      source.issued.push(context);
      return source.leaderKnown ? { ok: true } : { ok: false, reason: 'no-leader', leaderHint: 0 };
    },
    schedule() {},
  };
  return source;
}

const nextTurn = () => new Promise((resolve) => setImmediate(resolve));

test('reads arriving in one turn share one ReadIndex request', async () => {
  const source = fakeSource();
  source.leaderKnown = true;
  const batcher = new ReadBatcher(source, 1000, 5000);
  const reads = [batcher.requestReadIndex(), batcher.requestReadIndex(), batcher.requestReadIndex()];
  await nextTurn();
  assert.equal(source.issued.length, 1);
  batcher.onReadStates([{ index: 42, context: source.issued[0]! }]);
  assert.deepEqual(await Promise.all(reads), [42, 42, 42]);
});

test('a read issued before any leader is known is re-issued as soon as one is, not a retry period later', async () => {
  const source = fakeSource();
  let nowMs = 0;
  const batcher = new ReadBatcher(source, 1000, 5000, () => nowMs);
  const read = batcher.requestReadIndex();
  await nextTurn();
  assert.equal(source.issued.length, 1, 'issued once, dropped: no leader');
  nowMs = 10;
  batcher.onTick();
  assert.equal(source.issued.length, 1, 'a tick inside the retry period does not re-issue');
  source.leaderKnown = true;
  batcher.onLeaderChange();
  assert.equal(source.issued.length, 2, 're-issued when the leader became known');
  batcher.onReadStates([{ index: 7, context: source.issued[1]! }]);
  assert.equal(await read, 7);
  batcher.onLeaderChange();
  assert.equal(source.issued.length, 2, 'nothing left in flight to re-issue');
});

test('a batch whose read state never comes back is re-issued after the retry period and fails at its deadline', async () => {
  const source = fakeSource();
  source.leaderKnown = true;
  let nowMs = 0;
  const batcher = new ReadBatcher(source, 1000, 2500, () => nowMs);
  const read = batcher.requestReadIndex();
  await nextTurn();
  nowMs = 1000;
  batcher.onTick();
  assert.equal(source.issued.length, 2);
  nowMs = 2500;
  batcher.onTick();
  await assert.rejects(read, ReadTimeoutError);
  // A late read state for the failed batch is ignored.
  batcher.onReadStates([{ index: 3, context: source.issued[0]! }]);
});
