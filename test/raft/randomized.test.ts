// Randomized runs of the in-test network under partitions, crashes and message loss, checking the
// safety properties of Raft after every step: election safety (one leader per term) and state
// machine safety (applied sequences are prefixes of one another). Seeds make failures replayable.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type NodeId, Role } from '../../src/raft/index.js';
import { dec, enc, Network, SeededRng } from './helpers.js';

const SEEDS = 100;
const STEPS = 300;

function checkSafety(net: Network, leadersByTerm: Map<number, NodeId>, seed: number): void {
  for (const p of net.peers.values()) {
    if (!p.alive) continue;
    const st = p.node.status();
    if (st.softState.role === Role.Leader) {
      const prev = leadersByTerm.get(st.hardState.term);
      assert.ok(
        prev === undefined || prev === p.id,
        `seed ${seed}: two leaders in term ${st.hardState.term}`,
      );
      leadersByTerm.set(st.hardState.term, p.id);
    }
  }
  const logs = [...net.peers.keys()].map((id) => net.appliedData(id));
  const longest = logs.reduce((a, b) => (a.length >= b.length ? a : b));
  for (const log of logs) {
    for (let i = 0; i < log.length; i++)
      assert.equal(log[i], longest[i], `seed ${seed}: applied logs diverge at ${i}`);
  }
}

function runSeed(seed: number, preVote: boolean): void {
  const rng = new SeededRng(seed);
  const ids = [1, 2, 3, 4, 5];
  const net = new Network(ids, { preVote, checkQuorum: preVote });
  const leadersByTerm = new Map<number, NodeId>();
  let proposals = 0;
  for (let step = 0; step < STEPS; step++) {
    const r = rng.nextInt(100);
    if (r < 5) {
      net.heal();
      const cut = ids.filter(() => rng.nextInt(2) === 0);
      net.partition(
        cut,
        ids.filter((id) => !cut.includes(id)),
      );
    } else if (r < 10) {
      net.heal();
    } else if (r < 13) {
      const id = ids[rng.nextInt(ids.length)]!;
      if (net.peer(id).alive) net.crash(id);
      else net.restart(id);
    } else if (r < 40) {
      const alive = ids.filter((id) => net.peer(id).alive);
      const id = alive[rng.nextInt(alive.length)];
      if (id !== undefined) net.node(id).propose(enc(`s${seed}-${proposals++}`));
    } else if (r < 45) {
      // Random message loss: drop a burst of queued messages.
      const q = net.takeQueue();
      for (const m of q) if (rng.nextInt(3) !== 0) net.send(m);
    }
    for (const p of net.peers.values()) if (p.alive) p.node.tick();
    net.stabilize();
    checkSafety(net, leadersByTerm, seed);
  }
  // Heal everything: the cluster must converge and apply the same sequence everywhere.
  net.heal();
  for (const id of ids) if (!net.peer(id).alive) net.restart(id);
  // A proposal may land on a stale leader that has not heard of a newer term, and without pre-vote a
  // lagging node can keep disrupting elections for a while: retry until everyone applied it.
  const converged = () => {
    const logs = ids.map((id) => net.appliedData(id));
    return logs[0]!.includes('final') && logs.every((l) => l.length === logs[0]!.length);
  };
  for (let attempt = 0; attempt < 100 && !converged(); attempt++) {
    const leaders = net.leaders().sort((a, b) => net.term(b) - net.term(a));
    if (leaders.length > 0 && !net.appliedData(leaders[0]!).includes('final')) {
      net.node(leaders[0]!).propose(enc('final'));
    }
    net.tickAll(10);
  }
  checkSafety(net, leadersByTerm, seed);
  const first = net.appliedData(ids[0]!);
  assert.ok(first.includes('final'), `seed ${seed}: final proposal applied`);
  for (const id of ids) assert.deepEqual(net.appliedData(id), first, `seed ${seed}: node ${id} converged`);
  assert.ok(first.every((s) => dec(enc(s)) === s));
}

test('randomized partitions, crashes and loss: one leader per term, applied logs never diverge', () => {
  for (let seed = 1; seed <= SEEDS; seed++) runSeed(seed, false);
});

test('randomized with pre-vote and check-quorum: same safety and convergence', () => {
  for (let seed = 1; seed <= SEEDS; seed++) runSeed(seed, true);
});
