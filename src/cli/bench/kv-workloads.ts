// put, range, txn and mixed: one unary KV call per operation.

import type { WireTxnRequest } from '../../api/wire.js';
import { type BenchConnection, type ConnectionPool, unary } from './connections.js';
import type { BenchOptions } from './options.js';
import { forEachConcurrently, type LoopStats } from './runner.js';
import { kvOutcome, type Workload, type WorkloadOutcome } from './workload.js';

/** Keys are decimal indexes left-padded with '0' to --key-size bytes, after an optional prefix. */
export class KeyFormat {
  constructor(
    private readonly keySize: number,
    private readonly prefix: string,
  ) {}

  key(index: number): Buffer {
    const digits = String(index);
    const width = this.keySize - this.prefix.length;
    if (digits.length > width) throw new Error(`key index ${index} does not fit in ${this.keySize} bytes`);
    return Buffer.from(this.prefix + digits.padStart(width, '0'));
  }
}

export function randomIndex(count: number): number {
  return Math.floor(Math.random() * count);
}

export function fillValue(valSize: number): Buffer {
  return Buffer.alloc(valSize, 'v');
}

const preloadConcurrency = 64;

/** Writes every key of the key space once (range and mixed read keys that exist). */
export async function preloadKeys(
  pool: ConnectionPool,
  options: BenchOptions,
  keys: KeyFormat,
): Promise<void> {
  const value = fillValue(options.valSize);
  await forEachConcurrently(options.keySpaceSize, preloadConcurrency, async (index) => {
    const connection = pool.forClient(index);
    await unary(connection.kv.Put, connection.kv, { key: keys.key(index), value }, options.requestTimeoutMs);
  });
}

function put(connection: BenchConnection, key: Buffer, value: Buffer, timeoutMs: number): Promise<unknown> {
  return unary(connection.kv.Put, connection.kv, { key, value }, timeoutMs);
}

function get(
  connection: BenchConnection,
  key: Buffer,
  serializable: boolean,
  timeoutMs: number,
): Promise<unknown> {
  return unary(connection.kv.Range, connection.kv, { key, serializable }, timeoutMs);
}

export class PutWorkload implements Workload {
  private readonly keys: KeyFormat;
  private readonly value: Buffer;
  private nextSequential = 0;

  constructor(
    private readonly pool: ConnectionPool,
    private readonly options: BenchOptions,
  ) {
    this.keys = new KeyFormat(options.keySize, options.keyPrefix ?? '');
    this.value = fillValue(options.valSize);
  }

  async prepare(): Promise<void> {}

  async op(clientIndex: number): Promise<void> {
    const index = this.options.sequentialKeys
      ? this.nextSequential++ % this.options.keySpaceSize
      : randomIndex(this.options.keySpaceSize);
    await put(
      this.pool.forClient(clientIndex),
      this.keys.key(index),
      this.value,
      this.options.requestTimeoutMs,
    );
  }

  async finish(stats: LoopStats): Promise<WorkloadOutcome> {
    return kvOutcome(stats, {});
  }

  async close(): Promise<void> {}
}

export class RangeWorkload implements Workload {
  private readonly keys: KeyFormat;

  constructor(
    private readonly pool: ConnectionPool,
    private readonly options: BenchOptions,
  ) {
    this.keys = new KeyFormat(options.keySize, '');
  }

  async prepare(): Promise<void> {
    if (!this.options.skipPreload) await preloadKeys(this.pool, this.options, this.keys);
  }

  async op(clientIndex: number): Promise<void> {
    const key = this.keys.key(randomIndex(this.options.keySpaceSize));
    await get(
      this.pool.forClient(clientIndex),
      key,
      this.options.consistency === 's',
      this.options.requestTimeoutMs,
    );
  }

  async finish(stats: LoopStats): Promise<WorkloadOutcome> {
    return kvOutcome(stats, {});
  }

  async close(): Promise<void> {}
}

export class MixedWorkload implements Workload {
  private readonly keys: KeyFormat;
  private readonly value: Buffer;
  private reads = 0;
  private writes = 0;

  constructor(
    private readonly pool: ConnectionPool,
    private readonly options: BenchOptions,
  ) {
    this.keys = new KeyFormat(options.keySize, '');
    this.value = fillValue(options.valSize);
  }

  async prepare(): Promise<void> {
    if (!this.options.skipPreload) await preloadKeys(this.pool, this.options, this.keys);
  }

  async op(clientIndex: number): Promise<void> {
    const connection = this.pool.forClient(clientIndex);
    const key = this.keys.key(randomIndex(this.options.keySpaceSize));
    if (Math.random() < this.options.readRatio) {
      this.reads++;
      await get(connection, key, this.options.consistency === 's', this.options.requestTimeoutMs);
    } else {
      this.writes++;
      await put(connection, key, this.value, this.options.requestTimeoutMs);
    }
  }

  async finish(stats: LoopStats): Promise<WorkloadOutcome> {
    return kvOutcome(stats, { reads: this.reads, writes: this.writes });
  }

  async close(): Promise<void> {}
}

/**
 * Compare-and-swap: each op swaps a random key of the key space if its mod_revision is still the
 * one last seen; a lost race returns the current revision (failure branch reads the key), so the
 * next attempt on that key can win. Conflicts are counted, not treated as errors.
 */
export class TxnWorkload implements Workload {
  private readonly keys: KeyFormat;
  private readonly value: Buffer;
  /** Last mod_revision seen per key index; absent keys compare against 0, as etcd does. */
  private readonly knownRevision = new Map<number, string>();
  private swaps = 0;
  private conflicts = 0;

  constructor(
    private readonly pool: ConnectionPool,
    private readonly options: BenchOptions,
  ) {
    this.keys = new KeyFormat(options.keySize, '');
    this.value = fillValue(options.valSize);
  }

  async prepare(): Promise<void> {}

  async op(clientIndex: number): Promise<void> {
    const index = randomIndex(this.options.keySpaceSize);
    const key = this.keys.key(index);
    const request: Partial<WireTxnRequest> = {
      compare: [
        {
          result: 'EQUAL',
          target: 'MOD',
          key,
          mod_revision: this.knownRevision.get(index) ?? '0',
          range_end: Buffer.alloc(0),
        },
      ],
      success: [
        {
          request_put: {
            key,
            value: this.value,
            lease: '0',
            prev_kv: false,
            ignore_value: false,
            ignore_lease: false,
          },
        },
      ],
      failure: [{ request_range: rangeOf(key) }],
    };
    const connection = this.pool.forClient(clientIndex);
    const response = await unary(connection.kv.Txn, connection.kv, request, this.options.requestTimeoutMs);
    if (response.succeeded) {
      this.swaps++;
      this.knownRevision.set(index, String(response.header.revision));
      return;
    }
    this.conflicts++;
    const current = response.responses[0]?.response_range?.kvs[0];
    this.knownRevision.set(index, current === undefined ? '0' : String(current.mod_revision));
  }

  async finish(stats: LoopStats): Promise<WorkloadOutcome> {
    return kvOutcome(stats, { swaps: this.swaps, conflicts: this.conflicts });
  }

  async close(): Promise<void> {}
}

function rangeOf(key: Buffer) {
  return {
    key,
    range_end: Buffer.alloc(0),
    limit: '0',
    revision: '0',
    sort_order: 'NONE' as const,
    sort_target: 'KEY' as const,
    serializable: false,
    keys_only: false,
    count_only: false,
    min_mod_revision: '0',
    max_mod_revision: '0',
    min_create_revision: '0',
    max_create_revision: '0',
  };
}
