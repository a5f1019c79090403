// Planted faults the harness must catch: each mutant runs over seeds until a run fails one of the
// harness's checks (or a shard's invariant stops it). A mutant that survives every seed means the
// checks are too weak to defend the rule it breaks.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DEFAULT_OPTIONS, type Mutant, TxnHarness } from './harness.js';

const SEEDS_MAX = 200;

async function seedsToCatch(mutant: Mutant): Promise<{ seed: number; message: string } | undefined> {
  for (let seed = 1; seed <= SEEDS_MAX; seed++) {
    try {
      await new TxnHarness({ ...DEFAULT_OPTIONS, seed, mutant, timeLimitMs: 20_000 }).run();
    } catch (error) {
      return { seed, message: (error as Error).message.split('\n')[0]! };
    }
  }
  return undefined;
}

const MUTANTS: readonly [Mutant, string][] = [
  ['commit-without-record', 'the coordinator applies without writing COMMITTED to the record'],
  ['resolver-rolls-back', 'a resolver aborts a txn whose record is COMMITTED'],
  ['ttl-ignored', 'a record never expires, so a dead coordinator’s locks stay'],
  ['lock-ttl-ignored', 'a lock never counts as expired, so nobody resolves it'],
  ['fast-path-ignores-locks', 'a single-shard txn writes through a lock'],
  ['prepare-ignores-locks', 'two txns lock the same keys'],
  ['writes-ignore-read-locks', 'a write lands on a key another txn compared or read before its commit'],
];

for (const [mutant, what] of MUTANTS) {
  test(`mutant caught: ${mutant} (${what})`, async () => {
    const caught = await seedsToCatch(mutant);
    console.log(`${mutant}: ${caught ? `caught at seed ${caught.seed}: ${caught.message}` : 'NOT caught'}`);
    assert.ok(caught, `${mutant} survived ${SEEDS_MAX} seeds`);
  });
}

test('the unmutated protocol passes the same seeds the mutants are caught on', async () => {
  for (let seed = 1; seed <= 10; seed++) {
    await new TxnHarness({ ...DEFAULT_OPTIONS, seed, timeLimitMs: 20_000 }).run();
  }
});
