// Set workload: every add puts a fresh key under a prefix (the element is the key's suffix); a
// read lists the prefix. Acknowledged adds must survive every fault, no element may appear
// that was never added, and once seen an element never disappears.

import { checkSet, HistoryRecorder, type SetElement } from '../../src/sim/check/index.js';
import { classifyError, prefixEnd } from './rpc.js';
import {
  finalReadAttemptsMax,
  retryIdempotent,
  type Workload,
  type WorkloadContext,
  type WorkloadResult,
} from './workload.js';

const prefix = '/jepsen/set/';
/** One op in this many is a full read; the rest are adds. */
const readEveryOps = 10;

export class SetWorkload implements Workload {
  readonly name = 'set';
  private readonly recorder: HistoryRecorder<SetElement | undefined, readonly SetElement[]>;

  constructor(now: () => number) {
    this.recorder = new HistoryRecorder(now);
  }

  async setup(): Promise<void> {}

  async runClient(ctx: WorkloadContext, process: number, stop: AbortSignal): Promise<void> {
    const random = ctx.random(process);
    let sequence = 0;
    while (!stop.aborted) {
      if (random() < 1 / readEveryOps) await this.read(ctx, process, ctx.endpointFor(process), 'unknown');
      else await this.add(ctx, process, `p${process}-${sequence++}`);
      await ctx.pace(process, stop);
    }
  }

  private async add(ctx: WorkloadContext, process: number, element: string): Promise<void> {
    const op = this.recorder.invoke(process, 'add', prefix, element);
    try {
      await ctx.rpc.put(ctx.endpointFor(process), `${prefix}${element}`, element, ctx.requestTimeoutMs);
      op.ok();
    } catch (error) {
      if (classifyError(error) === 'fail') op.fail();
      else op.unknown();
    }
  }

  /** Returns whether the read succeeded; a failed read is recorded as unknown (it had no effect). */
  private async read(
    ctx: WorkloadContext,
    process: number | string,
    endpoint: string,
    onError: 'unknown',
  ): Promise<boolean> {
    const op = this.recorder.invoke(process, 'read', prefix, undefined);
    try {
      const response = await ctx.rpc.range(
        endpoint,
        { key: Buffer.from(prefix), range_end: prefixEnd(prefix), keys_only: true },
        ctx.requestTimeoutMs * 2,
      );
      op.ok(response.kvs.map((kv) => kv.key.toString('utf8').slice(prefix.length)));
      return true;
    } catch {
      if (onError === 'unknown') op.unknown();
      return false;
    }
  }

  async finish(ctx: WorkloadContext): Promise<void> {
    await retryIdempotent('final set read', finalReadAttemptsMax, async () => {
      if (!(await this.read(ctx, 'final', ctx.anyEndpoint(), 'unknown'))) throw new Error('read failed');
    });
  }

  check(): WorkloadResult {
    const history = this.recorder.history();
    const verdict = checkSet(history);
    return {
      verdict,
      operations: history,
      notes:
        `acked-adds=${verdict.acknowledgedAdds} lost=${verdict.lost.length} ` +
        `unknown-present=${verdict.unknownPresent.length} unknown-absent=${verdict.unknownAbsent.length}`,
    };
  }

  dispose(): void {}
}
