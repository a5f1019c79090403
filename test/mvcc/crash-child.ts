// Child process of the crash test: applies batches of the deterministic workload forever (bounded)
// and prints "applied <index>" after each commit. The parent SIGKILLs it at random moments
// (test/powerloss/keyspace-powerloss.test.ts also cuts the power of its file system first).
import { Keyspace } from '../../src/mvcc/keyspace.js';
import { opForIndex } from './crash-ops.js';

const ENTRIES_MAX = 200_000;
const dir = process.argv[2];
const seed = Number(process.argv[3] ?? 1);
if (!dir) throw new Error('usage: crash-child <dir> <seed> [nosync]');
const ks = Keyspace.open(dir, { initialRevision: 0, noSync: process.argv[4] === 'nosync' });
let rng = seed >>> 0 || 1;
const nextBatchSize = (): number => {
  rng ^= rng << 13;
  rng ^= rng >>> 17;
  rng ^= rng << 5;
  return 1 + ((rng >>> 0) % 25);
};

function step(): void {
  const first = ks.appliedIndex() + 1;
  if (first > ENTRIES_MAX) return;
  const size = nextBatchSize();
  // Re-send a few already-applied entries now and then: replay must be ignored.
  const from = first > 3 && size % 5 === 0 ? first - 3 : first;
  const batch = [];
  for (let i = from; i < first + size; i++) batch.push({ index: i, op: opForIndex(i) });
  ks.applyBatch(batch);
  process.stdout.write(`applied ${ks.appliedIndex()}\n`);
  setImmediate(step);
}
step();
