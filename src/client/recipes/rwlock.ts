// A fair readers-writer lock: contenders write `<name>/read/<lease hex>` or
// `<name>/write/<lease hex>` keys bound to their session; a reader waits for every earlier
// writer, a writer waits for every earlier key. Order is the create revision, so no side starves.

import type { Client } from '../client.js';
import { compare, op } from '../ops.js';
import type { KeyValue } from '../types.js';
import {
  deleteIfCreatedAt,
  guarded,
  type RecipeOptions,
  RecipeSession,
  type WaitOptions,
  waitDeletes,
} from './common.js';
import { LockNotHeldError } from './mutex.js';

type Mode = 'read' | 'write';

export class ReadWriteLock {
  private readonly sessions: RecipeSession;
  private held: { key: string; revision: bigint } | undefined;

  constructor(
    private readonly client: Client,
    readonly name: string,
    options: RecipeOptions = {},
  ) {
    this.sessions = new RecipeSession(client, options.session, options.ttlSeconds);
  }

  get token(): bigint {
    if (this.held === undefined) throw new LockNotHeldError(this.name);
    return this.held.revision;
  }

  readLock(options: WaitOptions = {}): Promise<bigint> {
    return this.acquire('read', options);
  }

  writeLock(options: WaitOptions = {}): Promise<bigint> {
    return this.acquire('write', options);
  }

  private async acquire(mode: Mode, options: WaitOptions): Promise<bigint> {
    if (this.held !== undefined) throw new Error(`rwlock ${this.name}: already held by this handle`);
    const session = await this.sessions.acquire();
    const key = `${this.name}/${mode}/${session.leaseHex}`;
    const result = await this.client
      .txn()
      .if(compare.missing(key))
      .then(op.put(key, '', { lease: session.leaseId }))
      .else(op.get(key))
      .commit();
    const existing = result.responses[0];
    const revision = result.succeeded
      ? result.header.revision
      : existing?.type === 'get'
        ? existing.kvs[0]?.createRevision
        : undefined;
    if (revision === undefined) throw new Error('rwlock invariant: own key has no revision');
    const writerPrefix = Buffer.from(`${this.name}/write/`);
    const blocks =
      mode === 'write'
        ? undefined
        : (kv: KeyValue) => kv.key.subarray(0, writerPrefix.length).equals(writerPrefix);
    try {
      await guarded(
        waitDeletes(this.client, `${this.name}/`, revision - 1n, { ...options, blocks }),
        session,
        options,
      );
      const check = await this.client.get(key);
      if (check.kvs[0]?.createRevision !== revision) throw new LockNotHeldError(this.name);
    } catch (error) {
      await this.client.delete(key).catch(() => undefined);
      throw error;
    }
    this.held = { key, revision };
    return revision;
  }

  async unlock(): Promise<void> {
    const held = this.held;
    this.held = undefined;
    if (held !== undefined) {
      await deleteIfCreatedAt(this.client, held.key, held.revision);
    }
    await this.sessions.release();
  }
}
