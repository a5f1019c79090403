// Each invariant checker must catch a violation constructed by hand: a checker that cannot fail
// protects nothing. The "accepts" cases make sure legal histories (restarts, overwrites of
// uncommitted entries, snapshots) are not flagged.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InvariantViolation } from '../../src/sim/errors.js';
import { InvariantChecker, type ObservedEntry } from '../../src/sim/invariants.js';

function e(index: number, term: number, key: string): ObservedEntry {
  return { index, term, key };
}

/** A checker with nodes 1..count started empty (snapshot at 0). */
function checker(count = 3): InvariantChecker {
  const c = new InvariantChecker();
  for (let id = 1; id <= count; id++)
    c.startNode(id, 1, { snapshotIndex: 0, snapshotTerm: 0, commit: 0, entries: [] });
  return c;
}

function violates(code: string, fn: () => void): void {
  assert.throws(fn, (err: unknown) => err instanceof InvariantViolation && err.code === code);
}

describe('InvariantChecker: election safety', () => {
  it('flags two leaders in one term', () => {
    const c = checker();
    c.observeRole(1, 5, true, 0);
    violates('leader-per-term', () => c.observeRole(2, 5, true, 0));
  });

  it('accepts one leader per term, and the same leader observed again', () => {
    const c = checker();
    c.observeRole(1, 5, true, 0);
    c.observeRole(1, 5, true, 0);
    c.observeRole(1, 6, false, 0);
    c.observeRole(2, 6, true, 0);
  });
});

describe('InvariantChecker: log matching', () => {
  it('flags two different entries with the same index and term', () => {
    const c = checker();
    c.observeEntries(1, [e(1, 1, 'a')]);
    violates('log-matching', () => c.observeEntries(2, [e(1, 1, 'b')]));
  });

  it('flags the same index and term preceded by different histories', () => {
    const c = checker();
    c.observeEntries(1, [e(1, 1, 'a'), e(2, 2, 'x')]);
    violates('log-matching', () => c.observeEntries(2, [e(1, 2, 'y'), e(2, 2, 'x')]));
  });

  it('flags overwriting an entry the node already knows is committed', () => {
    const c = checker();
    c.observeEntries(1, [e(1, 1, 'a')]);
    c.observeCommit(1, 1);
    violates('log-matching', () => c.observeEntries(1, [e(1, 2, 'b')]));
  });

  it('accepts overwriting an uncommitted suffix with a newer term', () => {
    const c = checker();
    c.observeEntries(1, [e(1, 1, 'a'), e(2, 1, 'b')]);
    c.observeEntries(1, [e(2, 2, 'c'), e(3, 2, 'd')]);
    c.observeCommit(1, 3);
  });

  it('flags a gap in a node log', () => {
    const c = checker();
    violates('core-contract', () => c.observeEntries(1, [e(2, 1, 'a')]));
  });
});

describe('InvariantChecker: leader completeness', () => {
  it('flags a leader whose log is shorter than the committed prefix', () => {
    const c = checker();
    c.observeEntries(1, [e(1, 1, 'a'), e(2, 1, 'b')]);
    c.observeCommit(1, 2);
    c.observeEntries(2, [e(1, 1, 'a')]);
    violates('leader-completeness', () => c.observeRole(2, 2, true, 1));
  });

  it('flags a leader holding a different entry at a committed index', () => {
    const c = checker();
    c.observeEntries(1, [e(1, 1, 'a'), e(2, 1, 'b')]);
    c.observeCommit(1, 2);
    c.observeEntries(2, [e(1, 1, 'a'), e(2, 2, 'z')]);
    violates('leader-completeness', () => c.observeRole(2, 3, true, 2));
  });

  it('accepts a stale-term leader lacking entries committed later by a higher-term leader', () => {
    // Raft §5.4 speaks of terms, not wall-clock time: a leader of term 3 whose vote arrives late
    // need not hold what the leader of term 4 committed.
    const c = checker();
    c.observeEntries(1, [e(1, 2, 'a'), e(2, 4, 'noop')]);
    c.observeRole(1, 4, true, 2);
    c.observeCommit(1, 2, 4);
    c.observeRole(2, 3, true, 0);
  });

  it('flags a higher-term leader lacking an entry committed in a lower term, even if proposed earlier', () => {
    const c = checker();
    c.observeEntries(1, [e(1, 2, 'a'), e(2, 4, 'noop')]);
    c.observeRole(1, 4, true, 2);
    c.observeCommit(1, 2, 4);
    c.observeEntries(2, [e(1, 2, 'a')]);
    violates('leader-completeness', () => c.observeRole(2, 5, true, 1));
  });

  it('accepts a leader holding every committed entry', () => {
    const c = checker();
    c.observeEntries(1, [e(1, 1, 'a'), e(2, 1, 'b')]);
    c.observeCommit(1, 2);
    c.observeEntries(2, [e(1, 1, 'a'), e(2, 1, 'b'), e(3, 3, 'noop')]);
    c.observeRole(2, 3, true, 3);
  });
});

describe('InvariantChecker: state machine safety and committed entries', () => {
  it('flags two nodes committing different entries at one index', () => {
    const c = checker();
    c.observeEntries(1, [e(1, 1, 'a')]);
    c.observeCommit(1, 1);
    c.observeEntries(2, [e(1, 2, 'b')]);
    violates('committed-entry-changed', () => c.observeCommit(2, 1));
  });

  it('flags two state machines with different states at one index', () => {
    const c = checker();
    c.observeEntries(1, [e(1, 1, 'a')]);
    c.observeCommit(1, 1);
    c.observeApply(1, e(1, 1, 'a'), 111, false);
    violates('state-machine-safety', () => c.observeRestore(2, 1, 222));
  });

  it('flags applying an entry beyond the commit index', () => {
    const c = checker();
    c.observeEntries(1, [e(1, 1, 'a')]);
    violates('core-contract', () => c.observeApply(1, e(1, 1, 'a'), 1, false));
  });
});

describe('InvariantChecker: indexes never go back', () => {
  it('flags a commit index going back within an incarnation', () => {
    const c = checker();
    c.observeEntries(1, [e(1, 1, 'a'), e(2, 1, 'b')]);
    c.observeCommit(1, 2);
    violates('commit-regressed', () => c.observeCommit(1, 1));
  });

  it('flags an apply that skips or repeats an index', () => {
    const c = checker();
    c.observeEntries(1, [e(1, 1, 'a'), e(2, 1, 'b'), e(3, 1, 'c')]);
    c.observeCommit(1, 3);
    c.observeApply(1, e(1, 1, 'a'), 1, false);
    violates('apply-regressed', () => c.observeApply(1, e(1, 1, 'a'), 1, false));
    violates('apply-regressed', () => c.observeApply(1, e(3, 1, 'c'), 3, false));
  });

  it('flags restoring a snapshot older than what was applied', () => {
    const c = checker();
    c.observeEntries(1, [e(1, 1, 'a'), e(2, 1, 'b')]);
    c.observeCommit(1, 2);
    c.observeApply(1, e(1, 1, 'a'), 1, false);
    c.observeApply(1, e(2, 1, 'b'), 2, false);
    violates('apply-regressed', () => c.observeRestore(1, 1, 1));
  });

  it('accepts a restart that resumes from the durable commit and snapshot', () => {
    const c = checker();
    c.observeEntries(1, [e(1, 1, 'a'), e(2, 1, 'b')]);
    c.observeCommit(1, 2);
    c.observeApply(1, e(1, 1, 'a'), 1, false);
    c.observeApply(1, e(2, 1, 'b'), 2, false);
    // Crash: only entry 1 and commit 1 were durable. Restart re-applies from the beginning.
    c.startNode(1, 2, { snapshotIndex: 0, snapshotTerm: 0, commit: 1, entries: [e(1, 1, 'a')] });
    c.observeApply(1, e(1, 1, 'a'), 1, false);
    c.observeEntries(1, [e(2, 1, 'b')]);
    c.observeCommit(1, 2);
    c.observeApply(1, e(2, 1, 'b'), 2, false);
  });

  it('flags a restart that reuses an incarnation number', () => {
    const c = checker();
    violates('core-contract', () =>
      c.startNode(1, 1, { snapshotIndex: 0, snapshotTerm: 0, commit: 0, entries: [] }),
    );
  });
});

describe('InvariantChecker: durable hard state', () => {
  it('flags a node changing its vote within a term', () => {
    const c = checker();
    violates('vote-changed', () =>
      c.observeDurableHardState(1, { term: 3, vote: 2, commit: 0 }, { term: 3, vote: 3, commit: 0 }),
    );
  });

  it('flags a term or a durable commit going back', () => {
    const c = checker();
    violates('term-regressed', () =>
      c.observeDurableHardState(1, { term: 3, vote: 2, commit: 0 }, { term: 2, vote: 2, commit: 0 }),
    );
    violates('commit-regressed', () =>
      c.observeDurableHardState(1, { term: 3, vote: 2, commit: 5 }, { term: 3, vote: 2, commit: 4 }),
    );
  });

  it('accepts a first vote in a term, a new term with a new vote, and a commit moving on', () => {
    const c = checker();
    c.observeDurableHardState(1, { term: 3, vote: 0, commit: 0 }, { term: 3, vote: 2, commit: 0 });
    c.observeDurableHardState(1, { term: 3, vote: 2, commit: 0 }, { term: 4, vote: 1, commit: 2 });
    c.observeDurableHardState(1, { term: 4, vote: 1, commit: 2 }, { term: 4, vote: 1, commit: 3 });
  });
});

describe('InvariantChecker: proposals and acknowledgements', () => {
  it('flags applying an entry nobody proposed', () => {
    const c = checker();
    c.observeEntries(1, [e(1, 1, 'p1')]);
    c.observeCommit(1, 1);
    violates('unproposed-entry', () => c.observeApply(1, e(1, 1, 'p1'), 1, true));
  });

  it('accepts applying a proposed entry', () => {
    const c = checker();
    c.registerProposal('p1');
    c.observeEntries(1, [e(1, 1, 'p1')]);
    c.observeCommit(1, 1);
    c.observeApply(1, e(1, 1, 'p1'), 1, true);
    c.observeAck(1, 'p1', 1);
    assert.equal(c.ackedCount, 1);
  });

  it('flags an ack for a proposal not applied at the acked index', () => {
    const c = checker();
    violates('acked-proposal-lost', () => c.observeAck(1, 'p1', 1));
  });

  it('flags an acknowledged proposal missing from a caught-up state machine', () => {
    const c = checker();
    c.registerProposal('p7');
    c.observeEntries(1, [e(1, 1, 'p7')]);
    c.observeCommit(1, 1);
    c.observeApply(1, e(1, 1, 'p7'), 1, true);
    c.observeAck(7, 'p7', 1);
    c.checkNoAckLost([{ node: 1, applied: 1, has: (id) => id === 7 }]);
    violates('acked-proposal-lost', () => c.checkNoAckLost([{ node: 2, applied: 5, has: () => false }]));
    // A state machine that has not reached the index yet is not (yet) a loss.
    c.checkNoAckLost([{ node: 3, applied: 0, has: () => false }]);
  });
});
