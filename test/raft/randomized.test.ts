// Randomized runs of the in-test network under partitions, crashes and message loss, checking the
// safety properties of Raft after every step: election safety (one leader per term) and state
// machine safety (applied sequences are prefixes of one another). Seeds make failures replayable.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type NodeId, type ReadOnlyOption, Role } from '../../src/raft/index.js';
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

/**
 * ReadIndex safety: a read released at index i must see every write committed anywhere before the
 * read was issued, so i ≥ the highest commit index any node knew at issue time.
 */
function checkReads(net: Network, issuedAt: Map<string, number>, seed: number): number {
  let released = 0;
  for (const p of net.peers.values()) {
    for (const rs of p.readStates) {
      const floor = issuedAt.get(dec(rs.context));
      assert.ok(floor !== undefined, `seed ${seed}: unknown read context`);
      assert.ok(
        rs.index >= floor,
        `seed ${seed}: read at ${rs.index} misses writes committed up to ${floor}`,
      );
      released++;
    }
    p.readStates = [];
  }
  return released;
}

function runSeed(seed: number, preVote: boolean, readOnlyOption: ReadOnlyOption = 'safe'): number {
  const rng = new SeededRng(seed);
  const ids = [1, 2, 3, 4, 5];
  const net = new Network(ids, { preVote, checkQuorum: preVote, readOnlyOption });
  const leadersByTerm = new Map<number, NodeId>();
  let proposals = 0;
  const issuedAt = new Map<string, number>();
  let reads = 0;
  let released = 0;
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
    } else if (r < 60) {
      const alive = ids.filter((id) => net.peer(id).alive);
      const id = alive[rng.nextInt(alive.length)];
      if (id !== undefined) {
        const ctx = `read${reads++}`;
        issuedAt.set(ctx, Math.max(...ids.map((i) => net.node(i).committedIndex)));
        net.node(id).readIndex(enc(ctx));
      }
    }
    for (const p of net.peers.values()) if (p.alive) p.node.tick();
    net.stabilize();
    checkSafety(net, leadersByTerm, seed);
    released += checkReads(net, issuedAt, seed);
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
  return released;
}

test('randomized partitions, crashes and loss: one leader per term, applied logs never diverge', () => {
  let released = 0;
  for (let seed = 1; seed <= SEEDS; seed++) released += runSeed(seed, false);
  assert.ok(released > SEEDS * 10, `only ${released} reads released`);
});

test('randomized with pre-vote and check-quorum: same safety and convergence', () => {
  let released = 0;
  for (let seed = 1; seed <= SEEDS; seed++) released += runSeed(seed, true);
  assert.ok(released > SEEDS * 10, `only ${released} reads released`);
});

test('randomized with lease-based reads (check-quorum on): reads stay linearizable', () => {
  let released = 0;
  for (let seed = 1; seed <= SEEDS / 2; seed++) released += runSeed(seed, true, 'lease-based');
  assert.ok(released > 0);
});
