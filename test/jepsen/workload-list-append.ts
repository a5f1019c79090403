// List-append workload: each transaction reads and appends to a few keys out of a small, slowly
// rotating set; a key's value is its list, "1,2,3". One recorded op is one transaction, done as
//   1. a Txn of Ranges of the keys it appends to (values and mod_revisions at one revision);
//   2. the commit Txn: compares mod_revision == what step 1 saw for every appended key, and a
//      success branch that mirrors the micro-ops in order: a read is a Range inside the Txn, an
//      append a Put of the list so far plus the new value.
// Atomic in etcd semantics: the commit Txn is applied at one revision; its compares hold only
// if no write touched an appended key since step 1, so each Put extends exactly the list that
// is current at the commit revision; its Ranges read at that revision (after the Txn's own
// earlier Puts, as etcd applies a Txn's operations in order). A failed compare is retried from
// step 1 a bounded number of times, then recorded as fail (nothing was written). Checked by
// checkListAppend for strict serializability.
//
// `skipCompare` is the planted bug: the commit Txn has no compares, so two racing appends to
// one key both succeed and one overwrites the other's list (a lost update the checker must find).

import {
  checkListAppend,
  HistoryRecorder,
  type ListAppendMop,
  type ListElement,
} from '../../src/sim/check/index.js';
import { classifyError, type WireCompare, type WireRequestOp } from './rpc.js';
import {
  finalReadAttemptsMax,
  retryIdempotent,
  type Workload,
  type WorkloadContext,
  type WorkloadResult,
} from './workload.js';

const keyPrefix = '/jepsen/list-append/';
const keysActive = 5;
/** A new key replaces the oldest active one every this many transactions (keeps lists short). */
const keyRotateTxns = 60;
const mopsMax = 4;
const compareRetriesMax = 5;
/** Keys per final-read Txn, below etcd's default --max-txn-ops (128). */
const finalReadKeysPerTxn = 64;

function keyName(index: number): string {
  return `${keyPrefix}k${index}`;
}

function parseList(raw: Buffer | undefined): number[] {
  if (raw === undefined || raw.length === 0) return [];
  return raw
    .toString('utf8')
    .split(',')
    .map((text) => {
      const value = Number(text);
      if (!Number.isSafeInteger(value)) throw new Error(`list holds a non-number "${text}"`);
      return value;
    });
}

type Attempt = { outcome: 'ok'; output: ListAppendMop[] } | { outcome: 'retry' | 'fail' | 'unknown' };

export class ListAppendWorkload implements Workload {
  readonly name = 'list-append';
  private readonly recorder: HistoryRecorder<readonly ListAppendMop[], readonly ListAppendMop[]>;
  private txnsStarted = 0;
  private nextValue = 1;
  private keysUsedMax = 0;
  private compareFailures = 0;
  /** Transactions recorded as fail because their first read (before any write) got no answer. */
  private readFailures = 0;

  constructor(
    now: () => number,
    private readonly skipCompare = false,
  ) {
    this.recorder = new HistoryRecorder(now);
  }

  async setup(): Promise<void> {}

  async runClient(ctx: WorkloadContext, process: number, stop: AbortSignal): Promise<void> {
    const random = ctx.random(process);
    while (!stop.aborted) {
      const keyBase = Math.floor(this.txnsStarted++ / keyRotateTxns);
      const mops: ListAppendMop[] = Array.from({ length: 1 + Math.floor(random() * mopsMax) }, () => {
        const index = keyBase + Math.floor(random() * keysActive);
        this.keysUsedMax = Math.max(this.keysUsedMax, index + 1);
        const key = keyName(index);
        return random() < 0.5 ? { f: 'r', key, value: null } : { f: 'append', key, value: this.nextValue++ };
      });
      await this.transact(ctx, process, mops);
      await ctx.pace(process, stop);
    }
  }

  private async transact(ctx: WorkloadContext, process: number, mops: ListAppendMop[]): Promise<void> {
    const op = this.recorder.invoke(process, 'txn', '', mops);
    for (let attempt = 0; attempt < compareRetriesMax; attempt++) {
      const result = await this.attempt(ctx, process, mops);
      if (result.outcome === 'retry') {
        this.compareFailures++;
        continue;
      }
      if (result.outcome === 'ok') op.ok(result.output);
      else if (result.outcome === 'fail') op.fail();
      else op.unknown();
      return;
    }
    op.fail();
  }

  private async attempt(
    ctx: WorkloadContext,
    process: number,
    mops: readonly ListAppendMop[],
  ): Promise<Attempt> {
    const endpoint = ctx.endpointFor(process);
    const appended = [...new Set(mops.filter((m) => m.f === 'append').map((m) => m.key))];
    const current = new Map<string, { list: number[]; modRevision: string }>();
    if (appended.length > 0) {
      try {
        const reads = appended.map((key): WireRequestOp => ({ request_range: { key: Buffer.from(key) } }));
        const response = await ctx.rpc.txn(endpoint, [], reads, [], ctx.requestTimeoutMs);
        appended.forEach((key, i) => {
          const kv = response.responses[i]?.response_range?.kvs[0];
          current.set(key, { list: parseList(kv?.value), modRevision: kv?.mod_revision ?? '0' });
        });
      } catch {
        // Only reads so far: whatever happened to them, nothing was written.
        this.readFailures++;
        return { outcome: 'fail' };
      }
    }
    const compare: WireCompare[] = this.skipCompare
      ? []
      : appended.map((key) => ({
          result: 'EQUAL',
          target: 'MOD',
          key: Buffer.from(key),
          mod_revision: current.get(key)!.modRevision,
        }));
    const lists = new Map([...current].map(([key, { list }]) => [key, [...list]]));
    const success = mops.map((mop): WireRequestOp => {
      if (mop.f === 'r') return { request_range: { key: Buffer.from(mop.key) } };
      const list = lists.get(mop.key)!;
      list.push(mop.value as number);
      return { request_put: { key: Buffer.from(mop.key), value: Buffer.from(list.join(',')) } };
    });
    try {
      const response = await ctx.rpc.txn(endpoint, compare, success, [], ctx.requestTimeoutMs);
      if (!response.succeeded) return { outcome: 'retry' };
      const output = mops.map((mop, i): ListAppendMop => {
        if (mop.f === 'append') return mop;
        const kv = response.responses[i]?.response_range?.kvs[0];
        return { f: 'r', key: mop.key, value: parseList(kv?.value) };
      });
      return { outcome: 'ok', output };
    } catch (error) {
      return { outcome: classifyError(error) };
    }
  }

  async finish(ctx: WorkloadContext): Promise<void> {
    // Final reads of every key ever used, as read-only transactions: they catch lost appends.
    for (let start = 0; start < this.keysUsedMax; start += finalReadKeysPerTxn) {
      const keys = Array.from({ length: Math.min(finalReadKeysPerTxn, this.keysUsedMax - start) }, (_, i) =>
        keyName(start + i),
      );
      const mops: ListAppendMop[] = keys.map((key) => ({ f: 'r', key, value: null }));
      await retryIdempotent(`final read of keys ${start}..`, finalReadAttemptsMax, async () => {
        const op = this.recorder.invoke('final', 'txn', '', mops);
        try {
          const response = await ctx.rpc.txn(
            ctx.anyEndpoint(),
            [],
            keys.map((key): WireRequestOp => ({ request_range: { key: Buffer.from(key) } })),
            [],
            ctx.requestTimeoutMs,
          );
          op.ok(
            keys.map((key, i): ListAppendMop => {
              const value: ListElement[] = parseList(response.responses[i]?.response_range?.kvs[0]?.value);
              return { f: 'r', key, value };
            }),
          );
        } catch (error) {
          op.unknown();
          throw error;
        }
      });
    }
  }

  check(): WorkloadResult {
    const history = this.recorder.history();
    const started = performance.now();
    const verdict = checkListAppend(history);
    const checkMs = Math.round(performance.now() - started);
    return {
      verdict,
      operations: history,
      notes:
        `txns-checked=${verdict.txnsChecked} edges=${verdict.edges} cycles=${verdict.cycles.length} ` +
        `keys=${this.keysUsedMax} compare-retries=${this.compareFailures} read-failures=${this.readFailures} check-ms=${checkMs}` +
        `${this.skipCompare ? ' PLANTED-BUG=skip-compare' : ''}`,
    };
  }

  dispose(): void {}
}
