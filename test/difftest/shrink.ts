// Shrinks a diverging sequence: every candidate runs on a fresh pair of clusters (revisions start
// over, so a candidate is judged on its own), and is kept when it still diverges the same way
// (same kind of divergence on the same kind of operation). First whole chunks of operations go
// (delta debugging), then single operations, then parts of the txns that are left.

import type { OpSpec, TxnOpSpec, TxnSpec } from './ops.js';
import {
  type ClusterPair,
  type Divergence,
  type RunOptions,
  runSequence,
  startClusterPair,
} from './runner.js';

export interface ShrinkOptions {
  /** Runs one candidate (on fresh clusters: see runOnFreshPair) and returns its divergence. */
  runCandidate: (ops: OpSpec[]) => Promise<Divergence | undefined>;
  /** Candidates tried at most. */
  attemptsMax: number;
  /** Time spent at most, in ms. */
  timeMaxMs: number;
  log?: (line: string) => void;
}

export interface ShrinkResult {
  ops: OpSpec[];
  divergence: Divergence;
  attempts: number;
}

/** What makes two divergences "the same" for the shrinker. */
export function divergenceSignature(ops: readonly OpSpec[], divergence: Divergence): string {
  const kind = divergence.what.startsWith('stream')
    ? divergence.what.replace(/@\d+|item \d+|from item \d+/g, '')
    : divergence.what;
  return `${kind} after ${ops[divergence.index]?.type ?? 'end'}`;
}

export async function runOnFreshPair(
  ops: readonly OpSpec[],
  size: number,
  run: RunOptions,
): Promise<Divergence | undefined> {
  const pair: ClusterPair = await startClusterPair(size);
  try {
    return (await runSequence(pair, ops, run)).divergence;
  } finally {
    await pair.dispose();
  }
}

export async function shrink(
  ops: readonly OpSpec[],
  first: Divergence,
  options: ShrinkOptions,
): Promise<ShrinkResult> {
  const signature = divergenceSignature(ops, first);
  const deadline = Date.now() + options.timeMaxMs;
  let attempts = 0;
  let best = { ops: ops.slice(0, first.index + 1), divergence: first };

  const stillDiverges = async (candidate: OpSpec[]): Promise<boolean> => {
    if (attempts >= options.attemptsMax || Date.now() > deadline || candidate.length === 0) return false;
    attempts++;
    const divergence = await options.runCandidate(candidate).catch(() => undefined);
    if (divergence === undefined || divergenceSignature(candidate, divergence) !== signature) return false;
    best = { ops: candidate.slice(0, divergence.index + 1), divergence };
    options.log?.(`  shrunk to ${best.ops.length} operations (attempt ${attempts})`);
    return true;
  };

  // Delta debugging over whole operations: remove chunks, halving the chunk size when none goes.
  let chunks = 2;
  while (best.ops.length > 1 && attempts < options.attemptsMax && Date.now() <= deadline) {
    const size = Math.ceil(best.ops.length / chunks);
    let removed = false;
    for (let start = 0; start < best.ops.length; start += size) {
      const candidate = [...best.ops.slice(0, start), ...best.ops.slice(start + size)];
      if (await stillDiverges(candidate)) {
        removed = true;
        chunks = Math.max(2, chunks - 1);
        break;
      }
    }
    if (!removed) {
      if (size === 1) break;
      chunks = Math.min(best.ops.length, chunks * 2);
    }
  }
  // Then the insides of txns: drop compares and ops, one at a time, deepest structure first.
  for (let index = 0; index < best.ops.length; index++) {
    for (;;) {
      const op = best.ops[index];
      if (op?.type !== 'txn') break;
      let simpler = false;
      for (const smaller of txnSimplifications(op)) {
        const candidate = [...best.ops];
        candidate[index] = { ...smaller, ...(op.at === undefined ? {} : { at: op.at }) };
        if (await stillDiverges(candidate)) {
          simpler = true;
          break;
        }
      }
      if (!simpler) break;
    }
  }
  return { ...best, attempts };
}

/** Each txn with one compare or one op (at any depth) removed, or a nested txn replaced by its branch. */
function txnSimplifications(txn: TxnSpec): TxnSpec[] {
  const out: TxnSpec[] = [];
  for (let i = 0; i < txn.compare.length; i++)
    out.push({ ...txn, compare: txn.compare.filter((_, j) => j !== i) });
  for (const branch of ['success', 'failure'] as const) {
    const ops = txn[branch];
    for (let i = 0; i < ops.length; i++) {
      out.push({ ...txn, [branch]: ops.filter((_, j) => j !== i) });
      const op = ops[i]!;
      if (op.type === 'txn') {
        for (const inner of txnSimplifications(op)) {
          out.push({ ...txn, [branch]: ops.map((o, j): TxnOpSpec => (j === i ? inner : o)) });
        }
      }
    }
  }
  return out;
}
