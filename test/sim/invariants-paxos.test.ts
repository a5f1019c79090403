// The invariant checker's Multi-Paxos reading (terms are ballots; chosen values are compared,
// not the ballots they were accepted in): each check must catch a hand-made violation and let
// the legal Paxos histories that Raft's reading would flag pass.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InvariantViolation } from '../../src/sim/errors.js';
import { InvariantChecker, type ObservedEntry } from '../../src/sim/invariants.js';

function e(index: number, ballot: number, key: string): ObservedEntry {
  return { index, term: ballot, key };
}

function checker(consensus: 'raft' | 'multi-paxos', count = 3): InvariantChecker {
  const c = new InvariantChecker({ consensus });
  for (let id = 1; id <= count; id++)
    c.startNode(id, 1, { snapshotIndex: 0, snapshotTerm: 0, commit: 0, entries: [] });
  return c;
}

function violates(code: string, fn: () => void): void {
  assert.throws(fn, (err: unknown) => err instanceof InvariantViolation && err.code === code);
}

describe('InvariantChecker, Multi-Paxos reading', () => {
  it('accepts a chosen value re-accepted under a higher ballot (Raft reading flags it)', () => {
    for (const consensus of ['raft', 'multi-paxos'] as const) {
      const c = checker(consensus);
      c.observeEntries(1, [e(1, 2, 'a')]);
      c.observeCommit(1, 1, 2);
      c.observeEntries(2, [e(1, 3, 'a')]);
      const commit = () => c.observeCommit(2, 1, 3);
      if (consensus === 'raft') violates('committed-entry-changed', commit);
      else commit();
    }
  });

  it('flags two values chosen for one slot', () => {
    const c = checker('multi-paxos');
    c.observeEntries(1, [e(1, 2, 'a')]);
    c.observeCommit(1, 1, 2);
    c.observeEntries(2, [e(1, 3, 'b')]);
    violates('committed-entry-changed', () => c.observeCommit(2, 1, 3));
  });

  it('flags an acceptor whose ballot for a slot goes down, or that drops an accepted slot', () => {
    const c = checker('multi-paxos');
    c.observeEntries(1, [e(1, 3, 'a'), e(2, 3, 'b')]);
    violates('ballot-regressed', () => c.observeEntries(1, [e(1, 2, 'c'), e(2, 3, 'b')]));
    const d = checker('multi-paxos');
    d.observeEntries(1, [e(1, 3, 'a'), e(2, 3, 'b')]);
    violates('ballot-regressed', () => d.observeEntries(1, [e(1, 4, 'c')]));
  });

  it('keeps one value per (slot, ballot) but not the preceding-ballot rule', () => {
    const c = checker('multi-paxos');
    c.observeEntries(1, [e(1, 1, 'x'), e(2, 3, 'a')]);
    c.observeEntries(2, [e(1, 2, 'y'), e(2, 3, 'a')]);
    violates('log-matching', () => c.observeEntries(3, [e(1, 1, 'x'), e(2, 3, 'z')]));
  });

  it('flags a leader that lacks a value chosen below its ballot, once its takeover is seen', () => {
    const c = checker('multi-paxos');
    c.observeEntries(1, [e(1, 2, 'a')]);
    c.observeCommit(1, 1, 2);
    c.observeEntries(2, [e(1, 4, 'b')]);
    violates('leader-completeness', () => c.observeRole(2, 4, true, 1));
  });
});
