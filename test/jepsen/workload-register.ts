// Register workload: reads, writes and compare-and-sets on a few keys, each checked for
// linearizability on its own. Written values are unique, which keeps the search small and lets
// a stale read be pinned to the write it saw. CAS is a Txn comparing the value.

import {
  checkLinearizability,
  checkRevisions,
  combineVerdicts,
  HistoryRecorder,
  type RegisterInput,
  type RegisterOutput,
  type RegisterValue,
  type RevisionFacts,
  registerModel,
} from '../../src/sim/check/index.js';
import { classifyError, revisionOf } from './rpc.js';
import {
  finalReadAttemptsMax,
  retryIdempotent,
  type Workload,
  type WorkloadContext,
  type WorkloadResult,
} from './workload.js';

const keyPrefix = '/jepsen/register/';
const keysCount = 3;
const linearizabilityTimeBudgetMs = 30_000;

function keyName(index: number): string {
  return `${keyPrefix}k${index}`;
}

function parseValue(raw: Buffer | undefined): RegisterValue {
  if (raw === undefined) return null;
  const value = Number(raw.toString('utf8'));
  if (!Number.isSafeInteger(value)) throw new Error(`register holds a non-number "${raw.toString('utf8')}"`);
  return value;
}

export class RegisterWorkload implements Workload {
  readonly name = 'register';
  private readonly recorder: HistoryRecorder<RegisterInput, RegisterOutput>;
  /** Each client's last observed value per key: its CAS guesses, so some of them succeed. */
  private readonly lastSeen = new Map<string, RegisterValue>();
  private nextValue = 1;
  /** Header revision of each ok op, for the keyspace-wide revision order check. */
  private readonly revisions = new Map<number, RevisionFacts>();

  constructor(now: () => number) {
    this.recorder = new HistoryRecorder(now);
  }

  async setup(ctx: WorkloadContext): Promise<void> {
    // Start every key at 0 (recorded, so the model knows it) so CAS never compares a missing key.
    for (let i = 0; i < keysCount; i++) {
      const key = keyName(i);
      const op = this.recorder.invoke('setup', 'write', key, 0);
      await retryIdempotent(`initial write of ${key}`, 20, () =>
        ctx.rpc.put(ctx.anyEndpoint(), key, '0', ctx.requestTimeoutMs),
      );
      op.ok();
    }
  }

  async runClient(ctx: WorkloadContext, process: number, stop: AbortSignal): Promise<void> {
    const random = ctx.random(process);
    while (!stop.aborted) {
      const key = keyName(Math.floor(random() * keysCount));
      const dice = random();
      if (dice < 0.5) await this.read(ctx, process, key);
      else if (dice < 0.75) await this.write(ctx, process, key);
      else await this.cas(ctx, process, key, random);
      await ctx.pace(process, stop);
    }
  }

  private async read(ctx: WorkloadContext, process: number, key: string): Promise<void> {
    const op = this.recorder.invoke(process, 'read', key, undefined);
    try {
      const response = await ctx.rpc.range(
        ctx.endpointFor(process),
        { key: Buffer.from(key) },
        ctx.requestTimeoutMs,
      );
      const value = parseValue(response.kvs[0]?.value);
      this.lastSeen.set(`${process}/${key}`, value);
      this.revisions.set(op.id, { revision: revisionOf(response.header), mutation: false });
      op.ok(value);
    } catch (error) {
      // A read has no effect either way; only its answer matters.
      if (classifyError(error) === 'fail') op.fail();
      else op.unknown();
    }
  }

  private async write(ctx: WorkloadContext, process: number, key: string): Promise<void> {
    const value = this.nextValue++;
    const op = this.recorder.invoke(process, 'write', key, value);
    try {
      const response = await ctx.rpc.put(ctx.endpointFor(process), key, String(value), ctx.requestTimeoutMs);
      this.revisions.set(op.id, { revision: revisionOf(response.header), mutation: true });
      op.ok();
    } catch (error) {
      if (classifyError(error) === 'fail') op.fail();
      else op.unknown();
    }
  }

  private async cas(ctx: WorkloadContext, process: number, key: string, random: () => number): Promise<void> {
    const seen = this.lastSeen.get(`${process}/${key}`) ?? 0;
    // Mostly the value this client last saw, sometimes a recent other one, so both branches occur.
    const expected = random() < 0.8 ? seen : Math.max(0, this.nextValue - 1 - Math.floor(random() * 5));
    const value = this.nextValue++;
    const op = this.recorder.invoke(process, 'cas', key, { expected, value });
    try {
      const response = await ctx.rpc.txn(
        ctx.endpointFor(process),
        [{ result: 'EQUAL', target: 'VALUE', key: Buffer.from(key), value: Buffer.from(String(expected)) }],
        [{ request_put: { key: Buffer.from(key), value: Buffer.from(String(value)) } }],
        [],
        ctx.requestTimeoutMs,
      );
      this.revisions.set(op.id, { revision: revisionOf(response.header), mutation: response.succeeded });
      op.ok(response.succeeded);
    } catch (error) {
      if (classifyError(error) === 'fail') op.fail();
      else op.unknown();
    }
  }

  async finish(ctx: WorkloadContext): Promise<void> {
    for (let i = 0; i < keysCount; i++) {
      const key = keyName(i);
      // Each attempt is its own recorded read; failed attempts are unknown reads, which say nothing.
      await retryIdempotent(`final read of ${key}`, finalReadAttemptsMax, async () => {
        const op = this.recorder.invoke('final', 'read', key, undefined);
        try {
          const response = await ctx.rpc.range(
            ctx.anyEndpoint(),
            { key: Buffer.from(key) },
            ctx.requestTimeoutMs,
          );
          this.revisions.set(op.id, { revision: revisionOf(response.header), mutation: false });
          op.ok(parseValue(response.kvs[0]?.value));
        } catch (error) {
          op.unknown();
          throw error;
        }
      });
    }
  }

  check(): WorkloadResult {
    const history = this.recorder.history();
    const linearizability = checkLinearizability(history, registerModel, {
      timeBudgetMs: linearizabilityTimeBudgetMs,
    });
    const revisions = checkRevisions(history, (op) => this.revisions.get(op.id));
    return {
      verdict: combineVerdicts([linearizability, revisions]),
      operations: history,
      notes: `keys=${keysCount} search-steps=${linearizability.steps} search-ms=${Math.round(linearizability.elapsedMs)} revisions-checked=${this.revisions.size}`,
    };
  }

  dispose(): void {}
}
