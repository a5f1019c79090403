// The engine choice of a member: built behind one interface, recorded in the data dir, and a
// restart or a join with another engine refused with a message saying what to do.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { PaxosNode } from '../../src/paxos/node.js';
import { MemoryStorage } from '../../src/raft/memory-storage.js';
import { RaftNode } from '../../src/raft/node.js';
import {
  ConsensusMismatchError,
  checkJoin,
  choiceOf,
  claimConsensus,
  createConsensusEngine,
  readConsensusRecord,
} from '../../src/replica/consensus.js';

function withDir(body: (dir: string) => void): void {
  const dir = mkdtempSync(join(tmpdir(), 'concord-consensus-'));
  try {
    body(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('createConsensusEngine builds the engine named by --consensus', () => {
  const config = () => {
    const storage = new MemoryStorage();
    storage.bootstrap({ voters: [1], learners: [], votersOutgoing: [], learnersNext: [], autoLeave: false });
    return { id: 1, electionTicks: 10, heartbeatTicks: 1, storage, rng: { nextInt: () => 0 } };
  };
  assert.ok(createConsensusEngine({ consensus: 'raft' }, config()) instanceof RaftNode);
  assert.ok(createConsensusEngine({ consensus: 'multi-paxos' }, config()) instanceof PaxosNode);
  assert.ok(
    createConsensusEngine({ consensus: 'multi-paxos', phase2Quorum: 1 }, config()) instanceof PaxosNode,
  );
  assert.throws(
    () => createConsensusEngine({ consensus: 'multi-paxos', phase2Quorum: 2 }, config()),
    /larger than/,
  );
});

test('a fresh data dir records the engine; a restart with the same engine is accepted', () => {
  withDir((dir) => {
    claimConsensus(dir, dir, { consensus: 'multi-paxos', phase2Quorum: 2 }, true);
    assert.deepEqual(readConsensusRecord(dir), { consensus: 'multi-paxos', phase2Quorum: 2 });
    claimConsensus(dir, dir, { consensus: 'multi-paxos', phase2Quorum: 2 }, false);
  });
});

test('a restart with another engine or phase-2 quorum is refused, naming the flags to use', () => {
  withDir((dir) => {
    claimConsensus(dir, dir, { consensus: 'multi-paxos' }, true);
    assert.throws(
      () => claimConsensus(dir, dir, { consensus: 'raft' }, false),
      (e: unknown) =>
        e instanceof ConsensusMismatchError &&
        /running multi-paxos \(majority quorums\)/.test(e.message) &&
        /restart with --consensus multi-paxos/.test(e.message),
    );
    assert.throws(
      () => claimConsensus(dir, dir, { consensus: 'multi-paxos', phase2Quorum: 2 }, false),
      ConsensusMismatchError,
    );
  });
});

test('a data dir with a log and no record was made by Raft', () => {
  withDir((dir) => {
    claimConsensus(dir, dir, { consensus: 'raft' }, false);
    assert.throws(
      () => claimConsensus(dir, dir, { consensus: 'multi-paxos' }, false),
      (e: unknown) => e instanceof ConsensusMismatchError && /restart with --consensus raft/.test(e.message),
    );
  });
});

test('a record naming an unknown engine stops the start', () => {
  withDir((dir) => {
    writeFileSync(join(dir, 'consensus'), '{"consensus":"viewstamped"}\n');
    assert.throws(() => readConsensusRecord(dir), /names no known consensus engine/);
  });
});

test('a joining member must run the engine of the cluster it joins', () => {
  checkJoin({ consensus: 'raft' }, choiceOf({}));
  checkJoin(
    { consensus: 'multi-paxos', phase2Quorum: 2 },
    choiceOf({ consensus: 'multi-paxos', paxosPhase2Quorum: 2 }),
  );
  assert.throws(
    () => checkJoin({ consensus: 'multi-paxos' }, choiceOf({})),
    (e: unknown) =>
      e instanceof ConsensusMismatchError && /start it with --consensus multi-paxos/.test(e.message),
  );
  // A phase-2 quorum given with Raft is ignored by choiceOf (the flags refuse it before).
  assert.deepEqual(choiceOf({ consensus: 'raft', paxosPhase2Quorum: 2 }), { consensus: 'raft' });
});
