import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { collectGarbage } from '../../src/util/collect-garbage.js';

test('collectGarbage collects an unreachable object that no allocation pressure would have collected', async () => {
  const make = () => new WeakRef({ payload: Buffer.alloc(1024) });
  const ref = make();
  // A WeakRef keeps its target alive until the current job ends.
  await nextTurn();
  assert.notEqual(ref.deref(), undefined, 'nothing collected it on its own');
  await nextTurn();
  collectGarbage();
  assert.equal(ref.deref(), undefined);
  // Callable again (the gc function is made once).
  collectGarbage();
});
