// Random strictly serializable list-append histories, for the checker's property tests and its
// benchmark: overlapping transactions, each applied atomically at a commit point inside its
// interval, in commit-point order. Some outcomes are lost (unknown: applied or not, by a coin)
// or refused (fail: not applied). Keys rotate so lists stay short, as in Elle's workloads.

import type { OpStatus } from './history.js';
import type { ListAppendMop, ListAppendOp, ListElement } from './list-append.js';

export interface ListAppendPlanOptions {
  txns: number;
  /** Clients; each runs its transactions one after another. */
  processes?: number;
  /** Keys in use at any time. */
  keysActive?: number;
  /** A new key replaces the oldest one every this many transactions. */
  keyRotateTxns?: number;
  mopsMax?: number;
  unknownRate?: number;
  failRate?: number;
}

interface Planned {
  op: ListAppendOp;
  mops: ListAppendMop[];
  commitTime: number;
  applied: boolean;
}

export function randomListAppendHistory(
  random: () => number,
  options: ListAppendPlanOptions,
): ListAppendOp[] {
  const processes = options.processes ?? 5;
  const keysActive = options.keysActive ?? 4;
  const keyRotateTxns = options.keyRotateTxns ?? 40;
  const mopsMax = options.mopsMax ?? 4;
  const unknownRate = options.unknownRate ?? 0;
  const failRate = options.failRate ?? 0;
  const below = (n: number): number => Math.floor(random() * n);
  const freeAt = new Array<number>(processes).fill(0);
  const planned: Planned[] = [];
  let nextValue = 1;
  for (let i = 0; i < options.txns; i++) {
    const process = i % processes;
    const invokeTime = Math.max(freeAt[process]!, i * 3) + below(4);
    const commitTime = invokeTime + 1 + below(20);
    const completeTime = commitTime + 1 + below(20);
    const dice = random();
    const status: OpStatus = dice < unknownRate ? 'unknown' : dice < unknownRate + failRate ? 'fail' : 'ok';
    freeAt[process] = status === 'unknown' ? commitTime : completeTime;
    const keyBase = Math.floor(i / keyRotateTxns);
    const mops: ListAppendMop[] = Array.from({ length: 1 + below(mopsMax) }, () => {
      const key = `k${keyBase + below(keysActive)}`;
      return random() < 0.5 ? { f: 'r', key, value: null } : { f: 'append', key, value: nextValue++ };
    });
    const op: ListAppendOp = {
      id: i + 1,
      process,
      kind: 'txn',
      key: '',
      input: mops,
      invokeTime,
      ...(status === 'unknown' ? {} : { completeTime }),
      status,
    };
    const applied = status === 'ok' || (status === 'unknown' && random() < 0.5);
    planned.push({ op, mops, commitTime, applied });
  }
  applyInCommitOrder(planned);
  return planned.map((p) => p.op);
}

function applyInCommitOrder(planned: Planned[]): void {
  const lists = new Map<string, ListElement[]>();
  const byCommit = [...planned].sort((a, b) => a.commitTime - b.commitTime);
  for (const { op, mops, applied } of byCommit) {
    if (!applied) continue;
    const output = mops.map((mop): ListAppendMop => {
      const list = lists.get(mop.key) ?? [];
      lists.set(mop.key, list);
      if (mop.f === 'append') {
        list.push(mop.value);
        return mop;
      }
      return { f: 'r', key: mop.key, value: [...list] };
    });
    if (op.status === 'ok') op.output = output;
  }
}
