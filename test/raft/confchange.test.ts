import assert from 'node:assert/strict';
import { test } from 'node:test';
import { nextConfig, trackerConfigFromConfState } from '../../src/raft/confchange.js';
import type { ConfChange, ConfChangeSingle, ConfState } from '../../src/raft/index.js';
import { EMPTY_BYTES } from '../../src/raft/index.js';
import { ProgressTracker } from '../../src/raft/tracker.js';

function apply(
  cs: Partial<ConfState>,
  transition: ConfChange['transition'],
  changes: ConfChangeSingle[],
): ConfState {
  const current = trackerConfigFromConfState({
    voters: [],
    learners: [],
    votersOutgoing: [],
    learnersNext: [],
    autoLeave: false,
    ...cs,
  });
  const trk = new ProgressTracker(1, 0);
  trk.config = nextConfig(current, { transition, changes, context: EMPTY_BYTES });
  return trk.confState();
}

const add = (nodeId: number): ConfChangeSingle => ({ type: 'add-node', nodeId });
const learner = (nodeId: number): ConfChangeSingle => ({ type: 'add-learner', nodeId });
const remove = (nodeId: number): ConfChangeSingle => ({ type: 'remove-node', nodeId });

test('single-step changes: add, remove, demote to learner, promote learner', () => {
  assert.deepEqual(apply({ voters: [1] }, 'auto', [add(2)]).voters, [1, 2]);
  assert.deepEqual(apply({ voters: [1, 2] }, 'auto', [remove(2)]).voters, [1]);
  const demoted = apply({ voters: [1, 2] }, 'auto', [learner(2)]);
  assert.deepEqual([demoted.voters, demoted.learners], [[1], [2]]);
  const promoted = apply({ voters: [1], learners: [2] }, 'auto', [add(2)]);
  assert.deepEqual([promoted.voters, promoted.learners], [[1, 2], []]);
  assert.deepEqual(apply({ voters: [1], learners: [2] }, 'auto', [remove(2)]).learners, []);
});

test('entering joint: outgoing is the old voter set; an outgoing voter demoted waits in learnersNext', () => {
  const cs = apply({ voters: [1, 2, 3] }, 'joint-implicit', [add(4), learner(3)]);
  assert.deepEqual(cs.voters, [1, 2, 4]);
  assert.deepEqual(cs.votersOutgoing, [1, 2, 3]);
  assert.deepEqual(cs.learners, []);
  assert.deepEqual(cs.learnersNext, [3]);
  assert.equal(cs.autoLeave, true);
  const explicit = apply({ voters: [1, 2, 3] }, 'joint-explicit', [add(4)]);
  assert.equal(explicit.autoLeave, false);
});

test('leaving joint: learnersNext become learners, outgoing is dropped', () => {
  const cs = apply(
    { voters: [1, 2, 4], votersOutgoing: [1, 2, 3], learnersNext: [3], autoLeave: true },
    'auto',
    [],
  );
  assert.deepEqual(cs, {
    voters: [1, 2, 4],
    learners: [3],
    votersOutgoing: [],
    learnersNext: [],
    autoLeave: false,
  });
});

test('invalid transitions are refused with ConfChangeError', () => {
  const invalid: [Partial<ConfState>, ConfChange['transition'], ConfChangeSingle[]][] = [
    [{ voters: [1] }, 'auto', []], // leave without joint
    [{ voters: [1, 2], votersOutgoing: [1] }, 'auto', [add(3)]], // change while joint
    [{ voters: [1] }, 'auto', [remove(1)]], // no voters left
    [{ voters: [1] }, 'joint-implicit', [remove(1)]], // no incoming voters
    [{ voters: [1] }, 'auto', [add(0)]], // invalid id
  ];
  for (const [cs, transition, changes] of invalid) {
    assert.throws(
      () => apply(cs, transition, changes),
      { code: 'RAFT_CONF_CHANGE_INVALID' },
      JSON.stringify(changes),
    );
  }
});

test('a restored configuration is validated (a learner cannot also be a voter)', () => {
  assert.throws(
    () =>
      trackerConfigFromConfState({
        voters: [1, 2],
        learners: [2],
        votersOutgoing: [],
        learnersNext: [],
        autoLeave: false,
      }),
    { code: 'RAFT_CONF_CHANGE_INVALID' },
  );
});
