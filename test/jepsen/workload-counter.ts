// Counter workload: one key holds a number; an add reads it and swaps in value+amount with a Txn
// guarded by the key's mod_revision, retrying lost races a bounded number of times. A read must
// lie between the acknowledged adds and acknowledged+unknown ones (checkCounter).

import { type CounterOp, checkCounter, HistoryRecorder } from '../../src/sim/check/index.js';
import { classifyError, type RangeResponse } from './rpc.js';
import {
  finalReadAttemptsMax,
  retryIdempotent,
  type Workload,
  type WorkloadContext,
  type WorkloadResult,
} from './workload.js';

const counterKey = '/jepsen/counter';
/** Compare-and-swap rounds one add may take before it gives up (certainly unapplied then). */
const casAttemptsMax = 8;
const readEveryOps = 4;

type AddOutcome = 'ok' | 'fail' | 'unknown';

function counterValue(response: RangeResponse): { value: number; modRevision: string } {
  const kv = response.kvs[0];
  if (kv === undefined) throw new Error(`${counterKey} is missing`);
  const value = Number(kv.value.toString('utf8'));
  if (!Number.isSafeInteger(value)) throw new Error(`${counterKey} holds "${kv.value.toString('utf8')}"`);
  return { value, modRevision: kv.mod_revision };
}

export class CounterWorkload implements Workload {
  readonly name = 'counter';
  private readonly recorder: HistoryRecorder<number | undefined, number>;

  constructor(now: () => number) {
    this.recorder = new HistoryRecorder(now);
  }

  async setup(ctx: WorkloadContext): Promise<void> {
    await retryIdempotent('counter init', 20, () =>
      ctx.rpc.put(ctx.anyEndpoint(), counterKey, '0', ctx.requestTimeoutMs),
    );
  }

  async runClient(ctx: WorkloadContext, process: number, stop: AbortSignal): Promise<void> {
    const random = ctx.random(process);
    while (!stop.aborted) {
      if (random() < 1 / readEveryOps) await this.read(ctx, process, ctx.endpointFor(process));
      else await this.add(ctx, process, 1 + Math.floor(random() * 5));
      await ctx.pace(process, stop);
    }
  }

  private async read(ctx: WorkloadContext, process: number | string, endpoint: string): Promise<boolean> {
    const op = this.recorder.invoke(process, 'read', counterKey, undefined);
    try {
      const response = await ctx.rpc.range(endpoint, { key: Buffer.from(counterKey) }, ctx.requestTimeoutMs);
      op.ok(counterValue(response).value);
      return true;
    } catch {
      op.unknown();
      return false;
    }
  }

  private async add(ctx: WorkloadContext, process: number, amount: number): Promise<void> {
    const op = this.recorder.invoke(process, 'add', counterKey, amount);
    const outcome = await this.casLoop(ctx, process, amount);
    if (outcome === 'ok') op.ok();
    else if (outcome === 'fail') op.fail();
    else op.unknown();
  }

  /**
   * After an unknown Txn the loop must stop: retrying could add twice if the first one applied
   * (its compare guards only against the revision it read, not against itself).
   */
  private async casLoop(ctx: WorkloadContext, process: number, amount: number): Promise<AddOutcome> {
    const endpoint = ctx.endpointFor(process);
    for (let attempt = 0; attempt < casAttemptsMax; attempt++) {
      let current: { value: number; modRevision: string };
      try {
        current = counterValue(
          await ctx.rpc.range(endpoint, { key: Buffer.from(counterKey) }, ctx.requestTimeoutMs),
        );
      } catch {
        return 'fail'; // nothing was written yet
      }
      const key = Buffer.from(counterKey);
      try {
        const response = await ctx.rpc.txn(
          endpoint,
          [{ result: 'EQUAL', target: 'MOD', key, mod_revision: current.modRevision }],
          [{ request_put: { key, value: Buffer.from(String(current.value + amount)) } }],
          [],
          ctx.requestTimeoutMs,
        );
        if (response.succeeded) return 'ok';
      } catch (error) {
        return classifyError(error) === 'fail' ? 'fail' : 'unknown';
      }
    }
    return 'fail';
  }

  async finish(ctx: WorkloadContext): Promise<void> {
    await retryIdempotent('final counter read', finalReadAttemptsMax, async () => {
      if (!(await this.read(ctx, 'final', ctx.anyEndpoint()))) throw new Error('read failed');
    });
  }

  check(): WorkloadResult {
    const history: CounterOp[] = this.recorder.history();
    const verdict = checkCounter(history);
    const final = verdict.finalRead;
    return {
      verdict,
      operations: history,
      notes:
        `acked-sum=${verdict.acknowledgedSum} unknown-sum=${verdict.unknownSum} ` +
        `final=${final === null ? 'none' : `${final.value} in [${final.lower},${final.upper}]`}`,
    };
  }

  dispose(): void {}
}
