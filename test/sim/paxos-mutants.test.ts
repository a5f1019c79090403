// The simulator's invariants catch a Multi-Paxos core that breaks a rule of the protocol: each
// mutant wraps the real core and corrupts what one rule depends on.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PaxosNode } from '../../src/paxos/node.js';
import type { ConsensusEngine, RaftConfig } from '../../src/raft/api.js';
import { type Message, MessageType } from '../../src/raft/types.js';
import { runSimulation, SimFailure } from '../../src/sim/simulation.js';

/** Delegates everything to a real core, letting a mutant rewrite incoming messages. */
function wrap(core: PaxosNode, rewrite: (m: Message) => Message): ConsensusEngine {
  return new Proxy(core, {
    get(target, prop, receiver) {
      if (prop === 'step') return (m: Message) => target.step(rewrite(m));
      const value = Reflect.get(target, prop, receiver);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

/** Finds the first failing seed in a range; returns its failure. */
async function firstFailure(
  createCore: (config: RaftConfig) => ConsensusEngine,
  seeds: number,
): Promise<SimFailure | undefined> {
  for (let seed = 1; seed <= seeds; seed++) {
    try {
      await runSimulation({ seed, nodes: 3, consensus: 'multi-paxos', createCore, faultPhaseUs: 1_500_000 });
    } catch (err) {
      if (err instanceof SimFailure) return err;
      throw err;
    }
  }
  return undefined;
}

describe('simulated Multi-Paxos: broken cores are caught', () => {
  it('a candidate that ignores the values reported in promises (no adoption in phase 1) loses chosen values', async () => {
    const mutant = (config: RaftConfig) =>
      wrap(new PaxosNode(config), (m) =>
        m.type === MessageType.VoteResponse && !m.reject
          ? { ...m, entries: [], logTerm: m.index, commit: 0 }
          : m,
      );
    const failure = await firstFailure(mutant, 30);
    assert.ok(failure, 'no seed caught the mutant');
    assert.match(
      failure.message,
      /committed-entry-changed|state-machine-safety|acked-proposal-lost|leader-completeness/,
    );
  });

  it('a leader that counts acceptances an acceptor never made (phase 2 without a quorum) is caught', async () => {
    const mutant = (config: RaftConfig) =>
      wrap(new PaxosNode(config), (m) =>
        m.type === MessageType.AppendResponse && !m.reject ? { ...m, index: m.index + 3 } : m,
      );
    const failure = await firstFailure(mutant, 30);
    assert.ok(failure, 'no seed caught the mutant');
    assert.match(
      failure.message,
      /committed-entry-changed|state-machine-safety|acked-proposal-lost|leader-completeness/,
    );
  });
});
