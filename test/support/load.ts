// Concurrent put load through the JSON gateway, recording every acknowledged write so a test can
// check afterwards that none was lost. A put whose answer never arrived (timeout, dropped
// connection) is not recorded: it may or may not have been applied, and both are correct.

import { setTimeout as sleep } from 'node:timers/promises';
import { gatewayPost } from './process-cluster.js';

export interface LoadOptions {
  /** Called before each request, so the writers follow members that come and go. */
  endpoints: () => string[];
  writers: number;
  prefix: string;
  requestTimeoutMs?: number;
}

export interface LoadResult {
  /** key → value of every put the cluster acknowledged. */
  acked: Map<string, string>;
  failures: number;
}

export interface RunningLoad {
  ackedCount(): number;
  /** Resolves with the ack time of the first put *sent* at or after `sinceMs` (Date.now() clock). */
  firstAckAfter(sinceMs: number, timeoutMs: number): Promise<number>;
  stop(): Promise<LoadResult>;
}

const retryDelayMs = 20;

export function b64(text: string): string {
  return Buffer.from(text, 'utf8').toString('base64');
}

export function fromB64(text: string | undefined): string {
  return Buffer.from(text ?? '', 'base64').toString('utf8');
}

export function startLoad(options: LoadOptions): RunningLoad {
  const acked = new Map<string, string>();
  const acks: Array<{ sentAt: number; ackedAt: number }> = [];
  let failures = 0;
  let stopping = false;
  const writer = async (id: number) => {
    for (let seq = 0, attempt = 0; !stopping; attempt++) {
      const endpoints = options.endpoints();
      const endpoint = endpoints[(id + attempt) % Math.max(1, endpoints.length)];
      if (endpoint === undefined) {
        await sleep(retryDelayMs);
        continue;
      }
      const key = `${options.prefix}w${id}/${String(seq).padStart(6, '0')}`;
      const value = `v${id}-${seq}`;
      const sentAt = Date.now();
      try {
        await gatewayPost(
          endpoint,
          '/v3/kv/put',
          { key: b64(key), value: b64(value) },
          options.requestTimeoutMs ?? 3000,
        );
        acked.set(key, value);
        acks.push({ sentAt, ackedAt: Date.now() });
        seq++;
      } catch {
        failures++;
        // A new key per attempt keeps "unknown outcome" puts apart from acknowledged ones.
        seq++;
        await sleep(retryDelayMs);
      }
    }
  };
  const running = Array.from({ length: options.writers }, (_, id) => writer(id));
  return {
    ackedCount: () => acked.size,
    async firstAckAfter(sinceMs, timeoutMs) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const hit = acks.find((a) => a.sentAt >= sinceMs);
        if (hit !== undefined) return hit.ackedAt;
        if (Date.now() > deadline) throw new Error(`no write acknowledged within ${timeoutMs} ms`);
        await sleep(10);
      }
    },
    async stop() {
      stopping = true;
      await Promise.all(running);
      return { acked, failures };
    },
  };
}

/** Every key/value under `prefix`, read from `endpoint` (linearizable unless `serializable`). */
export async function readPrefix(
  endpoint: string,
  prefix: string,
  serializable = false,
): Promise<{ revision: number; kvs: Map<string, string> }> {
  const end = Buffer.from(prefix, 'utf8');
  if (end.length === 0 || end[end.length - 1] === 0xff)
    throw new Error(`prefix ${prefix} has no simple range end`);
  end[end.length - 1] = (end[end.length - 1] as number) + 1;
  const range = await gatewayPost(
    endpoint,
    '/v3/kv/range',
    { key: b64(prefix), range_end: end.toString('base64'), serializable },
    5000,
  );
  const kvs = new Map<string, string>();
  for (const kv of (range.kvs ?? []) as Array<{ key: string; value?: string }>) {
    kvs.set(fromB64(kv.key), fromB64(kv.value));
  }
  return { revision: Number((range.header as { revision?: string }).revision ?? '0'), kvs };
}
