// The deterministic write workload of the crash test: the raft entry at index i always carries
// opForIndex(i), so the parent can recompute exactly what the child applied.
import type { WriteOp } from '../../src/mvcc/types.js';

const key = (n: number): Buffer => Buffer.from(`key/${n % 40}`);

export function opForIndex(index: number): WriteOp {
  if (index % 13 === 0)
    return { type: 'deleteRange', request: { key: key(index), rangeEnd: key(index + 3) } };
  if (index % 7 === 0) {
    return {
      type: 'txn',
      request: {
        compare: [{ target: 'version', key: key(index), result: 'greater', version: 1 }],
        success: [
          { type: 'put', request: { key: key(index), value: Buffer.from(`t${index}`) } },
          { type: 'put', request: { key: key(index + 1), value: Buffer.from(`t${index}`) } },
        ],
        failure: [{ type: 'deleteRange', request: { key: key(index) } }],
      },
    };
  }
  if (index % 97 === 0) return { type: 'compact', request: { revision: Math.max(1, Math.floor(index / 2)) } };
  return {
    type: 'put',
    request: { key: key(index), value: Buffer.from(`v${index}`.repeat(1 + (index % 5))) },
  };
}
