// Shared helpers of the metadata state machine tests.
import assert from 'node:assert/strict';
import type { MetaCommand, NodeAttributes } from '../../src/shard/meta-commands.js';
import { encodeMetaSnapshot } from '../../src/shard/meta-snapshot.js';
import type { MetaResult, MetaState } from '../../src/shard/meta-state.js';
import type { MoveStep } from '../../src/shard/rebalance.js';
import type { ShardId } from '../../src/shard/types.js';

export function nodeAttributes(id: number, labels: { host?: string; zone?: string } = {}): NodeAttributes {
  return {
    id,
    peerUrls: [`http://10.0.0.${id}:2380`],
    clientUrls: [`http://10.0.0.${id}:2379`],
    host: labels.host,
    zone: labels.zone,
  };
}

/** Applies a command that must be accepted; returns the next state and the result. */
export function accept(state: MetaState, command: MetaCommand): { state: MetaState; result: MetaResult } {
  const applied = state.apply(command);
  if (!applied.outcome.ok) {
    assert.fail(
      `${command.type} was refused: ${applied.outcome.refusal.code}: ${applied.outcome.refusal.message}`,
    );
  }
  assert.equal(applied.state.version, state.version + 1, 'an accepted command bumps the version');
  return { state: applied.state, result: applied.outcome.result };
}

/** Applies many commands that must all be accepted. */
export function acceptAll(state: MetaState, commands: readonly MetaCommand[]): MetaState {
  for (const command of commands) state = accept(state, command).state;
  return state;
}

/** Applies a command that must be refused with `code` and leave the state exactly as it was. */
export function refuse(state: MetaState, command: MetaCommand, code: string): void {
  const before = encodeMetaSnapshot(state);
  const applied = state.apply(command);
  assert.equal(applied.outcome.ok, false, `${command.type} was accepted`);
  if (!applied.outcome.ok) assert.equal(applied.outcome.refusal.code, code, applied.outcome.refusal.message);
  assert.equal(applied.state, state, 'a refusal returns the same state');
  assert.deepEqual(encodeMetaSnapshot(applied.state), before, 'a refusal changes nothing');
}

/**
 * The metadata commands a scheduler proposes for one step of a planned move (the snapshot step
 * proposes nothing; a leader transfer records the new leader once it has happened, and is skipped
 * when `from` does not lead, as the executor does). Computed against the state the step runs on.
 */
export function commandsForStep(state: MetaState, shardId: ShardId, step: MoveStep): MetaCommand[] {
  const shard = state.shardMap.require(shardId);
  const change = (kind: 'add-learner' | 'promote' | 'remove', nodeId: number): MetaCommand => ({
    type: 'changeReplicas',
    shardId,
    expectedConfEpoch: shard.confEpoch,
    step: kind,
    nodeId,
  });
  switch (step.kind) {
    case 'add-learner':
    case 'promote':
    case 'remove':
      return [change(step.kind, step.node)];
    case 'snapshot':
      return [];
    case 'transfer-leader':
      return shard.leaderHint === undefined || shard.leaderHint === step.from
        ? [{ type: 'setLeaderHint', shardId, leader: step.to }]
        : [];
  }
}

/** Runs the whole plan of `state` through commands; every one must be accepted. */
export function runPlan(state: MetaState): MetaState {
  for (const move of state.plan().moves) {
    for (const step of move.steps) state = acceptAll(state, commandsForStep(state, move.shard, step));
  }
  return state;
}
