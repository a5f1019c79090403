// A router over shards split at text boundaries, for the tests: shard i + 1 is
// [bounds[i], bounds[i + 1]), the first starting at '' and the last ending at +∞ ('').

import type { Router } from '../../src/txn/plan.js';
import { bytes, text } from './model-keyspace.js';

function later(a: string, b: string): string {
  return a > b ? a : b;
}

/** The earlier of two ends, '' being +∞. */
function earlierEnd(a: string, b: string): string {
  if (a === '') return b;
  if (b === '') return a;
  return a < b ? a : b;
}

export function textRouter(boundaries: readonly string[]): Router {
  const starts = ['', ...boundaries];
  return (key, rangeEnd) => {
    const start = text(key);
    const end =
      rangeEnd.length === 0 ? `${start}\0` : rangeEnd.length === 1 && rangeEnd[0] === 0 ? '' : text(rangeEnd);
    if (end !== '' && end <= start) return [];
    return starts.flatMap((s, i) => {
      const e = starts[i + 1] ?? '';
      if ((e !== '' && e <= start) || (end !== '' && s >= end)) return [];
      return [{ shardId: i + 1, start: bytes(later(s, start)), end: bytes(earlierEnd(e, end)) }];
    });
  };
}
