// Records a history as a test runs: invoke() when a client sends a request, then exactly one of
// ok/fail/unknown on its handle. The clock is injected (simulator ticks or a monotonic clock).

import { HistoryFormatError, type Operation, type ProcessId } from './history.js';
import { CheckerInvariantError } from './verdict.js';

export interface PendingOp<Output> {
  readonly id: number;
  /** The client saw a reply: the op took effect (or definitely observed something). */
  ok(output?: Output): void;
  /** The op certainly did not take effect. */
  fail(): void;
  /** Timeout or lost connection: the op may take effect at any later time, or never. */
  unknown(): void;
}

export class HistoryRecorder<Input = unknown, Output = unknown> {
  private readonly ops: Operation<Input, Output>[] = [];
  private pendingCount = 0;

  /** opsMax bounds the history's memory; recording past it throws. */
  constructor(
    private readonly now: () => number,
    private readonly opsMax = 1_000_000,
  ) {}

  invoke(process: ProcessId, kind: string, key: string, input: Input): PendingOp<Output> {
    if (this.ops.length >= this.opsMax) {
      throw new HistoryFormatError('HISTORY_BAD_OPERATION', `history is full (opsMax ${this.opsMax})`);
    }
    const op: Operation<Input, Output> = {
      id: this.ops.length + 1,
      process,
      kind,
      key,
      input,
      invokeTime: this.now(),
      status: 'unknown',
    };
    this.ops.push(op);
    this.pendingCount++;
    let settled = false;
    const settle = (status: Operation['status'], output?: Output): void => {
      if (settled) throw new CheckerInvariantError(`op ${op.id} settled twice`);
      settled = true;
      this.pendingCount--;
      op.status = status;
      if (status !== 'unknown') op.completeTime = this.now();
      if (status === 'ok' && output !== undefined) op.output = output;
    };
    return {
      id: op.id,
      ok: (output) => settle('ok', output),
      fail: () => settle('fail'),
      unknown: () => settle('unknown'),
    };
  }

  /** Ops not settled yet; history() reports them as unknown, which is what they are. */
  get pending(): number {
    return this.pendingCount;
  }

  /** A snapshot of the history so far. */
  history(): Operation<Input, Output>[] {
    return this.ops.map((op) => ({ ...op }));
  }
}
