// Work queues on the keyspace. Queue is FIFO by create revision (the order the puts were
// committed); PriorityQueue serves the lowest priority number first, FIFO within a priority.
// A dequeue is a txn that deletes the item only if it is unchanged, so every item is handed to
// exactly one consumer.

import { randomBytes } from 'node:crypto';
import type { Client } from '../client.js';
import { ConflictRetriesExhaustedError } from '../errors.js';
import { compare, op } from '../ops.js';
import type { Bytes, KeyValue } from '../types.js';
import { throwIfAborted, type WaitOptions, whenAborted } from './common.js';

const dequeueAttemptsMax = 1000;

function uniqueSuffix(): string {
  return `${Date.now().toString(36).padStart(9, '0')}-${randomBytes(6).toString('hex')}`;
}

/** Takes the first item of `prefix` in `order`, waiting for one to arrive when empty. */
async function take(
  client: Client,
  prefix: string,
  pickFirst: () => Promise<{ kv: KeyValue | undefined; revision: bigint }>,
  options: WaitOptions,
): Promise<Buffer> {
  for (let attempt = 1; attempt <= dequeueAttemptsMax; attempt++) {
    throwIfAborted(options.signal);
    const { kv, revision } = await pickFirst();
    if (kv === undefined) {
      await waitForPut(client, prefix, revision + 1n, options);
      continue;
    }
    const result = await client
      .txn()
      .if(compare.modRevision(kv.key, '=', kv.modRevision))
      .then(op.delete(kv.key))
      .commit();
    if (result.succeeded) return kv.value;
  }
  throw new ConflictRetriesExhaustedError(`dequeue from ${prefix}`, dequeueAttemptsMax);
}

async function waitForPut(
  client: Client,
  prefix: string,
  fromRevision: bigint,
  options: WaitOptions,
): Promise<void> {
  const watcher = client.watch(prefix, { prefix: true, fromRevision, noDelete: true });
  const unlisten = whenAborted(options.signal, () => watcher.close());
  try {
    for await (const _ of watcher) return;
    throwIfAborted(options.signal);
  } finally {
    unlisten();
    watcher.close();
  }
}

export class Queue {
  private readonly prefix: string;
  constructor(
    private readonly client: Client,
    readonly name: string,
  ) {
    this.prefix = `${name}/`;
  }

  async enqueue(value: Bytes): Promise<void> {
    const key = `${this.prefix}${uniqueSuffix()}`;
    // The key is fresh, so a put cannot overwrite another item.
    await this.client.put(key, value);
  }

  /** Removes and returns the oldest item; waits while the queue is empty. */
  dequeue(options: WaitOptions = {}): Promise<Buffer> {
    return take(
      this.client,
      this.prefix,
      async () => {
        const result = await this.client.get(this.prefix, {
          prefix: true,
          sort: { target: 'create', order: 'ascend' },
          limit: 1,
        });
        return { kv: result.kvs[0], revision: result.header.revision };
      },
      options,
    );
  }

  async length(): Promise<number> {
    const result = await this.client.get(this.prefix, { prefix: true, countOnly: true });
    return Number(result.count);
  }
}

const priorityDigits = 5;
const priorityMax = 10 ** priorityDigits - 1;

export class PriorityQueue {
  private readonly prefix: string;
  constructor(
    private readonly client: Client,
    readonly name: string,
  ) {
    this.prefix = `${name}/`;
  }

  /** `priority` 0 is served first; up to 99999. */
  async enqueue(value: Bytes, priority: number): Promise<void> {
    if (!Number.isInteger(priority) || priority < 0 || priority > priorityMax)
      throw new RangeError(`priority must be an integer in [0, ${priorityMax}]`);
    const key = `${this.prefix}${String(priority).padStart(priorityDigits, '0')}/${uniqueSuffix()}`;
    await this.client.put(key, value);
  }

  dequeue(options: WaitOptions = {}): Promise<Buffer> {
    return take(
      this.client,
      this.prefix,
      async () => {
        // Lowest priority by key order, then the oldest item of that priority by create revision.
        const first = await this.client.get(this.prefix, {
          prefix: true,
          sort: { target: 'key', order: 'ascend' },
          limit: 1,
          keysOnly: true,
        });
        const head = first.kvs[0];
        if (head === undefined) return { kv: undefined, revision: first.header.revision };
        const band = head.key.toString().slice(0, this.prefix.length + priorityDigits + 1);
        const oldest = await this.client.get(band, {
          prefix: true,
          sort: { target: 'create', order: 'ascend' },
          limit: 1,
        });
        return { kv: oldest.kvs[0], revision: oldest.header.revision };
      },
      options,
    );
  }
}
