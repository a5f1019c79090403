// An atomic counter: the key holds a decimal integer; increment is compare-and-swap on the key's
// mod revision, retried on conflict. Each attempt is one txn: if the key is unchanged put the new
// value, else return the current one (so a conflict costs no extra read).
//
// Delivery: a conflict or a "not applied" error is retried; an attempt whose outcome is unknown
// (timeout, connection lost after sending) is NOT retried, because it may have applied. incr()
// then throws an error with outcome 'unknown', and the counter may or may not include it: after
// A acknowledged and U failed-unknown increments the value is in [A, A + U] (at-least-once if
// the caller retries those, at-most-once if it doesn't).

import type { Client } from '../client.js';
import { ConflictRetriesExhaustedError } from '../errors.js';
import { type Compare, compare, type OperationResult, op, type TxnResult } from '../ops.js';
import type { KeyValue } from '../types.js';

const conflictAttemptsMax = 10_000;
const conflictBackoffMaxMs = 20;

function parseValue(kv: KeyValue | undefined): bigint {
  if (kv === undefined) return 0n;
  const text = kv.value.toString('utf8').trim();
  if (!/^-?\d+$/.test(text))
    throw new TypeError(`counter key ${kv.key.toString()} holds a non-integer: ${JSON.stringify(text)}`);
  return BigInt(text);
}

export class Counter {
  /** Compare-and-swap conflicts seen by this handle (each one cost a retry). */
  conflicts = 0;

  constructor(
    private readonly client: Client,
    readonly key: string,
  ) {}

  async get(): Promise<bigint> {
    const result = await this.client.get(this.key);
    return parseValue(result.kvs[0]);
  }

  /** Adds `delta` atomically and returns the new value. */
  async incr(delta: bigint | number = 1n): Promise<bigint> {
    const step = BigInt(delta);
    let current: KeyValue | undefined = (await this.client.get(this.key)).kvs[0];
    for (let attempt = 1; attempt <= conflictAttemptsMax; attempt++) {
      const next: bigint = parseValue(current) + step;
      const guard: Compare =
        current === undefined
          ? compare.missing(this.key)
          : compare.modRevision(this.key, '=', current.modRevision);
      const result: TxnResult = await this.client
        .txn()
        .if(guard)
        .then(op.put(this.key, next.toString()))
        .else(op.get(this.key))
        .commit();
      if (result.succeeded) return next;
      this.conflicts++;
      const latest: OperationResult | undefined = result.responses[0];
      current = latest?.type === 'get' ? latest.kvs[0] : undefined;
      if (attempt > 3)
        await new Promise((resolve) => setTimeout(resolve, Math.random() * conflictBackoffMaxMs));
    }
    throw new ConflictRetriesExhaustedError(`counter ${this.key}`, conflictAttemptsMax);
  }
}
