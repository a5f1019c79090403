import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MemoryStorage, RaftNode, Role } from '../../src/raft/index.js';
import { enc, Network, SeededRng } from './helpers.js';

test('restart from MemoryStorage: term, vote, log and commit survive; nothing is applied twice', () => {
  const net = new Network([1, 2, 3]);
  net.campaign(1);
  for (let i = 0; i < 5; i++) net.node(1).propose(enc(`a${i}`));
  net.stabilize();
  const terms = [1, 2, 3].map((id) => net.term(id));
  for (const id of [1, 2, 3]) net.crash(id);
  for (const id of [1, 2, 3]) net.restart(id);
  for (const id of [1, 2, 3]) {
    const st = net.node(id).status();
    assert.equal(st.hardState.term, terms[id - 1]);
    assert.equal(st.softState.role, Role.Follower);
    assert.equal(st.lastIndex, net.peer(id).storage.lastIndex());
  }
  const leader = net.electLeader();
  net.node(leader).propose(enc('b'));
  net.stabilize();
  for (const id of [1, 2, 3]) {
    assert.deepEqual(net.appliedData(id), ['a0', 'a1', 'a2', 'a3', 'a4', 'b']);
  }
});

test('restart with applied=0 re-delivers committed entries for the application to replay', () => {
  const net = new Network([1, 2, 3]);
  net.campaign(1);
  net.node(1).propose(enc('x'));
  net.stabilize();
  const storage = net.peer(2).storage;
  const node = new RaftNode({ id: 2, electionTicks: 10, heartbeatTicks: 1, storage, rng: new SeededRng(1) });
  const rd = node.ready();
  assert.ok(rd.committedEntries.some((e) => new TextDecoder().decode(e.data) === 'x'));
});

test('restart: a stored commit index beyond the log is refused loudly', () => {
  const storage = new MemoryStorage();
  storage.bootstrap({ voters: [1], learners: [], votersOutgoing: [], learnersNext: [], autoLeave: false });
  storage.setHardState({ term: 1, vote: 0, commit: 5 });
  assert.throws(
    () => new RaftNode({ id: 1, electionTicks: 10, heartbeatTicks: 1, storage, rng: new SeededRng(1) }),
    { code: 'RAFT_INVARIANT' },
  );
});

test('restart: applied beyond the commit index is refused loudly', () => {
  const storage = new MemoryStorage();
  storage.bootstrap({ voters: [1], learners: [], votersOutgoing: [], learnersNext: [], autoLeave: false });
  assert.throws(
    () =>
      new RaftNode({
        id: 1,
        electionTicks: 10,
        heartbeatTicks: 1,
        storage,
        rng: new SeededRng(1),
        applied: 3,
      }),
    /applied 3 is beyond committed 1/,
  );
});
