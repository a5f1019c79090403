// The metadata group's leader converges group 0 on group 1's membership one step at a time:
// nextConfChange (voters and learners) and nextMetaCommand (nodes, shard 1's replicas). Applying
// the steps it proposes, in order, must reach a fixed point equal to the membership.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ConfState } from '../../src/raft/types.js';
import { type FollowedMember, nextConfChange, nextMetaCommand } from '../../src/replica/meta-replica.js';
import { MetaState } from '../../src/shard/meta-state.js';

const member = (id: number, isLearner = false): FollowedMember => ({
  id,
  peerUrls: [`http://127.0.0.1:${20000 + id}`],
  clientUrls: [`http://127.0.0.1:${21000 + id}`],
  isLearner,
});

function conf(voters: number[], learners: number[] = []): ConfState {
  return { voters, learners, votersOutgoing: [], learnersNext: [], autoLeave: false };
}

function applyConf(state: ConfState, change: NonNullable<ReturnType<typeof nextConfChange>>): ConfState {
  const voters = state.voters.filter((id) => id !== change.nodeId);
  const learners = state.learners.filter((id) => id !== change.nodeId);
  if (change.type === 'add-node') voters.push(change.nodeId);
  if (change.type === 'add-learner') learners.push(change.nodeId);
  return conf(voters, learners);
}

describe('metadata group reconcile', () => {
  it('conf changes: add voters, then learners, then removals; none once equal', () => {
    const members = [member(1), member(2), member(4), member(5, true)];
    let state = conf([1, 2, 3]);
    const steps: string[] = [];
    for (
      let change = nextConfChange(state, members);
      change !== undefined;
      change = nextConfChange(state, members)
    ) {
      steps.push(`${change.type} ${change.nodeId}`);
      state = applyConf(state, change);
      assert.ok(steps.length < 10, 'converges');
    }
    assert.deepEqual(steps, ['add-node 4', 'add-learner 5', 'remove-node 3']);
    // A learner promoted in group 1 is promoted in group 0.
    assert.deepEqual(nextConfChange(state, [member(1), member(2), member(4), member(5)]), {
      type: 'add-node',
      nodeId: 5,
    });
  });

  it('meta commands: register, replicate, promote, remove; a fixed point equal to the membership', () => {
    let state = MetaState.bootstrap({
      nodes: [1, 2, 3].map((id) => ({ ...member(id), host: undefined, zone: undefined })),
    });
    const members = [
      member(1),
      { ...member(2), clientUrls: ['http://127.0.0.1:9'] },
      member(4),
      member(5, true),
    ];
    const kinds: string[] = [];
    for (
      let command = nextMetaCommand(state, members);
      command !== undefined;
      command = nextMetaCommand(state, members)
    ) {
      const applied = state.apply(command);
      assert.ok(
        applied.outcome.ok,
        `${command.type} refused: ${applied.outcome.ok ? '' : applied.outcome.refusal.message}`,
      );
      state = applied.state;
      kinds.push(command.type === 'changeReplicas' ? `${command.step} ${command.nodeId}` : `${command.type}`);
      assert.ok(kinds.length < 20, 'converges');
    }
    assert.deepEqual(kinds, [
      'updateNode',
      'addNode',
      'addNode',
      'add-learner 4',
      'promote 4',
      'add-learner 5',
      'remove 3',
      'removeNode',
    ]);
    const shard = state.shardMap.shards[0]!;
    assert.deepEqual(
      shard.replicas.map((r) => [r.node, r.role]),
      [
        [1, 'voter'],
        [2, 'voter'],
        [4, 'voter'],
        [5, 'learner'],
      ],
    );
    assert.equal(state.node(3)?.state, 'removed');
    assert.deepEqual(state.node(2)?.clientUrls, ['http://127.0.0.1:9']);
  });
});
