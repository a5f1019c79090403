// Bank workload: N accounts holding a fixed total. A transfer reads both balances (one Txn of two
// Ranges, at one revision), declines if the source cannot pay, then commits one Txn comparing
// both accounts' mod_revisions to what it read and putting both new balances; a failed compare
// is recorded as fail (nothing written). A snapshot is one Range over the accounts' prefix, so
// it is served at one revision. Checks:
//   - checkBank: every snapshot holds every account, sums to the total, nothing negative;
//   - checkListAppend on an encoding of the transfers: each balance is stored as
//     "balance:writer" (writer = the recorded op id of the transfer that wrote it, 0 for the
//     initial balance), and a committed transfer overwrote exactly the version it read (its
//     compares say so), which gives each account's version chain. A transfer is then the
//     transaction [r from chain] [r to chain] [append from id] [append to id], a snapshot reads
//     each account's chain up to the writer it saw, and the checker looks for lost updates,
//     read skew and real-time violations across accounts.
//
// `skipCompare` is the planted bug: transfers commit without compares, so racing transfers
// overwrite each other's balances (money appears or vanishes, and version chains fork).

import {
  type BankReadOp,
  checkBank,
  checkListAppend,
  combineVerdicts,
  HistoryRecorder,
  type ListAppendMop,
  type ListAppendOp,
  type OpStatus,
} from '../../src/sim/check/index.js';
import { classifyError, prefixEnd, type WireKeyValue, type WireRequestOp } from './rpc.js';
import {
  finalReadAttemptsMax,
  retryIdempotent,
  type Workload,
  type WorkloadContext,
  type WorkloadResult,
} from './workload.js';

const keyPrefix = '/jepsen/bank/';
const accountsCount = 5;
const initialBalance = 100;
const amountMax = 5;
/** The writer id of the initial balances (recorded op ids start at 1). */
const setupWriter = 0;
/** Longest version chain followed before deciding the chain is broken. */
const chainLengthMax = 1_000_000;

const accounts = Array.from({ length: accountsCount }, (_, i) => `${keyPrefix}a${i}`);

interface Balance {
  balance: number;
  writer: number;
  modRevision: string;
}

function parseBalance(kv: WireKeyValue | undefined): Balance | undefined {
  if (kv === undefined) return undefined;
  const [balanceText, writerText] = kv.value.toString('utf8').split(':');
  const balance = Number(balanceText);
  const writer = Number(writerText);
  if (!Number.isSafeInteger(balance) || !Number.isSafeInteger(writer)) {
    throw new Error(`account holds "${kv.value.toString('utf8')}"`);
  }
  return { balance, writer, modRevision: kv.mod_revision };
}

/** A read micro-op as asked for, before its answer. */
function unread(mop: ListAppendMop): ListAppendMop {
  return mop.f === 'r' ? { f: 'r', key: mop.key, value: null } : mop;
}

interface TransferInput {
  from: string;
  to: string;
  amount: number;
}

type BankOutput = Readonly<Record<string, number>>;

export class BankWorkload implements Workload {
  readonly name = 'bank';
  private readonly recorder: HistoryRecorder<TransferInput | undefined, BankOutput | undefined>;
  /** For transfers that got past their first read: the writer of each account's version they read. */
  private readonly readWriters = new Map<number, Map<string, number>>();
  private setupTimes = { invoke: 0, complete: 0 };
  private declined = 0;
  private compareFailures = 0;
  /** Transfers recorded as fail because their first read (before any write) got no answer. */
  private readFailures = 0;

  constructor(
    private readonly now: () => number,
    private readonly skipCompare = false,
  ) {
    this.recorder = new HistoryRecorder(now);
  }

  async setup(ctx: WorkloadContext): Promise<void> {
    this.setupTimes.invoke = this.now();
    for (const account of accounts) {
      await retryIdempotent(`initial balance of ${account}`, 20, () =>
        ctx.rpc.put(ctx.anyEndpoint(), account, `${initialBalance}:${setupWriter}`, ctx.requestTimeoutMs),
      );
    }
    this.setupTimes.complete = this.now();
  }

  async runClient(ctx: WorkloadContext, process: number, stop: AbortSignal): Promise<void> {
    const random = ctx.random(process);
    while (!stop.aborted) {
      if (random() < 0.3) await this.snapshot(ctx, process, ctx.endpointFor(process));
      else {
        const from = Math.floor(random() * accountsCount);
        const to = (from + 1 + Math.floor(random() * (accountsCount - 1))) % accountsCount;
        const amount = 1 + Math.floor(random() * amountMax);
        await this.transfer(ctx, process, { from: accounts[from]!, to: accounts[to]!, amount });
      }
      await ctx.pace(process, stop);
    }
  }

  private async snapshot(ctx: WorkloadContext, process: number | string, endpoint: string): Promise<boolean> {
    const op = this.recorder.invoke(process, 'read', '', undefined);
    try {
      const response = await ctx.rpc.range(
        endpoint,
        { key: Buffer.from(keyPrefix), range_end: prefixEnd(keyPrefix) },
        ctx.requestTimeoutMs,
      );
      const balances: Record<string, number> = {};
      const writers = new Map<string, number>();
      for (const kv of response.kvs) {
        const parsed = parseBalance(kv)!;
        const account = kv.key.toString('utf8');
        balances[account] = parsed.balance;
        writers.set(account, parsed.writer);
      }
      this.readWriters.set(op.id, writers);
      op.ok(balances);
      return true;
    } catch {
      // A read has no effect either way.
      op.fail();
      return false;
    }
  }

  private async transfer(ctx: WorkloadContext, process: number, input: TransferInput): Promise<void> {
    const op = this.recorder.invoke(process, 'transfer', '', input);
    const endpoint = ctx.endpointFor(process);
    let read: [Balance, Balance];
    try {
      const ranges = [input.from, input.to].map(
        (key): WireRequestOp => ({ request_range: { key: Buffer.from(key) } }),
      );
      const response = await ctx.rpc.txn(endpoint, [], ranges, [], ctx.requestTimeoutMs);
      const [from, to] = [0, 1].map((i) => parseBalance(response.responses[i]?.response_range?.kvs[0]));
      if (from === undefined || to === undefined) throw new Error('an account is missing');
      read = [from, to];
    } catch {
      this.readFailures++;
      op.fail();
      return;
    }
    const [from, to] = read;
    this.readWriters.set(
      op.id,
      new Map([
        [input.from, from.writer],
        [input.to, to.writer],
      ]),
    );
    if (from.balance < input.amount) {
      this.declined++;
      op.fail();
      return;
    }
    const compare = this.skipCompare
      ? []
      : [
          {
            result: 'EQUAL' as const,
            target: 'MOD' as const,
            key: Buffer.from(input.from),
            mod_revision: from.modRevision,
          },
          {
            result: 'EQUAL' as const,
            target: 'MOD' as const,
            key: Buffer.from(input.to),
            mod_revision: to.modRevision,
          },
        ];
    const puts: WireRequestOp[] = [
      {
        request_put: {
          key: Buffer.from(input.from),
          value: Buffer.from(`${from.balance - input.amount}:${op.id}`),
        },
      },
      {
        request_put: {
          key: Buffer.from(input.to),
          value: Buffer.from(`${to.balance + input.amount}:${op.id}`),
        },
      },
    ];
    try {
      const response = await ctx.rpc.txn(endpoint, compare, puts, [], ctx.requestTimeoutMs);
      if (response.succeeded) op.ok();
      else {
        this.compareFailures++;
        op.fail();
      }
    } catch (error) {
      if (classifyError(error) === 'fail') op.fail();
      else op.unknown();
    }
  }

  async finish(ctx: WorkloadContext): Promise<void> {
    await retryIdempotent('final snapshot', finalReadAttemptsMax, async () => {
      if (!(await this.snapshot(ctx, 'final', ctx.anyEndpoint()))) throw new Error('final snapshot failed');
    });
  }

  /** The transfers and snapshots as list-append transactions over each account's version chain. */
  private listAppendHistory(history: readonly BankReadOp[]): ListAppendOp[] {
    const previous = new Map<string, Map<number, number>>(accounts.map((a) => [a, new Map()]));
    for (const op of history) {
      const input = op.input as TransferInput | undefined;
      const writers = this.readWriters.get(op.id);
      if (op.kind !== 'transfer' || input === undefined || writers === undefined) continue;
      for (const account of [input.from, input.to]) previous.get(account)!.set(op.id, writers.get(account)!);
    }
    const chains = new Map<string, number[]>();
    const chainOf = (account: string, writer: number): number[] => {
      const cacheKey = `${account}/${writer}`;
      const cached = chains.get(cacheKey);
      if (cached !== undefined) return cached;
      // Walk back to the initial version (or to a writer no transfer explains), then build forward.
      const back: number[] = [];
      let at: number | undefined = writer;
      while (at !== undefined && back.length < chainLengthMax) {
        const known = chains.get(`${account}/${at}`);
        if (known !== undefined) {
          back.push(...[...known].reverse());
          break;
        }
        back.push(at);
        at = at === setupWriter ? undefined : previous.get(account)!.get(at);
      }
      const chain = back.reverse();
      chains.set(cacheKey, chain);
      return chain;
    };
    const setup: ListAppendOp = {
      id: setupWriter,
      process: 'setup',
      kind: 'txn',
      key: '',
      input: accounts.map((a): ListAppendMop => ({ f: 'append', key: a, value: setupWriter })),
      output: accounts.map((a): ListAppendMop => ({ f: 'append', key: a, value: setupWriter })),
      invokeTime: this.setupTimes.invoke,
      completeTime: this.setupTimes.complete,
      status: 'ok',
    };
    const txns: ListAppendOp[] = [setup];
    for (const op of history) {
      const writers = this.readWriters.get(op.id);
      const base = { id: op.id, process: op.process, kind: 'txn', key: '', invokeTime: op.invokeTime };
      const timing = op.completeTime === undefined ? {} : { completeTime: op.completeTime };
      if (op.kind === 'read' && op.status === 'ok' && writers !== undefined) {
        const mops = accounts.map(
          (a): ListAppendMop => ({ f: 'r', key: a, value: chainOf(a, writers.get(a) ?? -1) }),
        );
        txns.push({ ...base, ...timing, status: 'ok', input: mops.map(unread), output: mops });
        continue;
      }
      const input = op.input as TransferInput | undefined;
      if (op.kind !== 'transfer' || input === undefined) continue;
      const appends: ListAppendMop[] = [
        { f: 'append', key: input.from, value: op.id },
        { f: 'append', key: input.to, value: op.id },
      ];
      const reads: ListAppendMop[] =
        writers === undefined
          ? []
          : [input.from, input.to].map(
              (a): ListAppendMop => ({ f: 'r', key: a, value: chainOf(a, writers.get(a)!) }),
            );
      const status: OpStatus = op.status;
      const inputMops = [...reads.map(unread), ...appends];
      txns.push({
        ...base,
        ...timing,
        status,
        input: inputMops,
        ...(status === 'ok' ? { output: [...reads, ...appends] } : {}),
      });
    }
    return txns;
  }

  check(): WorkloadResult {
    const history = this.recorder.history() as BankReadOp[];
    const total = accountsCount * initialBalance;
    const bank = checkBank(history, { accounts, total });
    const started = performance.now();
    const serializability = checkListAppend(this.listAppendHistory(history));
    const checkMs = Math.round(performance.now() - started);
    const transfersOk = history.filter((op) => op.kind === 'transfer' && op.status === 'ok').length;
    return {
      verdict: combineVerdicts([bank, serializability]),
      operations: history,
      notes:
        `accounts=${accountsCount} total=${total} snapshots=${bank.readsChecked} transfers-ok=${transfersOk} ` +
        `declined=${this.declined} compare-failures=${this.compareFailures} read-failures=${this.readFailures} txns-checked=${serializability.txnsChecked} ` +
        `cycles=${serializability.cycles.length} check-ms=${checkMs}${this.skipCompare ? ' PLANTED-BUG=skip-compare' : ''}`,
    };
  }

  dispose(): void {}
}
