// A distributed mutex with fencing tokens, in etcd's concurrency layout: each contender writes
// `<name>/<lease hex>` bound to its session's lease; the holder is the key with the lowest create
// revision; a waiter watches only the key just before its own. `etcdctl lock <name>` uses the
// same layout, so both interoperate. The fencing token is the holder key's create revision: it
// grows with every new holder, so a resource can refuse a stale holder (see guardedPut).

import type { Client } from '../client.js';
import { compare, op } from '../ops.js';
import {
  deleteIfCreatedAt,
  guarded,
  type RecipeOptions,
  RecipeSession,
  type Session,
  type WaitOptions,
  waitDeletes,
} from './common.js';

export class LockNotHeldError extends Error {
  readonly code = 'lock-not-held';
  constructor(name: string) {
    super(`mutex ${name}: the lock is not held (its key is gone: session expired or key deleted)`);
    this.name = 'LockNotHeldError';
  }
}

export class Mutex {
  private readonly prefix: string;
  private readonly sessions: RecipeSession;
  private heldKey: string | undefined;
  private heldToken: bigint | undefined;

  constructor(
    private readonly client: Client,
    readonly name: string,
    options: RecipeOptions = {},
  ) {
    this.prefix = `${name}/`;
    this.sessions = new RecipeSession(client, options.session, options.ttlSeconds);
  }

  /** The holder key (valid while locked). */
  get key(): string {
    if (this.heldKey === undefined) throw new LockNotHeldError(this.name);
    return this.heldKey;
  }

  /** The fencing token: the holder key's create revision (valid while locked). */
  get token(): bigint {
    if (this.heldToken === undefined) throw new LockNotHeldError(this.name);
    return this.heldToken;
  }

  get isLocked(): boolean {
    return this.heldKey !== undefined;
  }

  /** Writes our key if absent; returns its create revision and the current holder's. */
  private async enqueue(
    session: Session,
  ): Promise<{ key: string; revision: bigint; holderRevision: bigint }> {
    const key = `${this.prefix}${session.leaseHex}`;
    const result = await this.client
      .txn()
      .if(compare.missing(key))
      .then(
        op.put(key, '', { lease: session.leaseId }),
        op.get(this.prefix, { prefix: true, sort: { target: 'create', order: 'ascend' }, limit: 1 }),
      )
      .else(
        op.get(key),
        op.get(this.prefix, { prefix: true, sort: { target: 'create', order: 'ascend' }, limit: 1 }),
      )
      .commit();
    const own = result.responses[0];
    const holder = result.responses[1];
    if (holder?.type !== 'get') throw new Error('mutex invariant: txn returned no holder range');
    const revision = result.succeeded
      ? result.header.revision
      : own?.type === 'get'
        ? own.kvs[0]?.createRevision
        : undefined;
    if (revision === undefined) throw new Error('mutex invariant: own key has no revision');
    return { key, revision, holderRevision: holder.kvs[0]?.createRevision ?? revision };
  }

  /** Blocks until the lock is held; returns the fencing token. */
  async lock(options: WaitOptions = {}): Promise<bigint> {
    const session = await this.sessions.acquire();
    session.assertAlive();
    const { key, revision, holderRevision } = await this.enqueue(session);
    try {
      if (holderRevision !== revision) {
        await guarded(waitDeletes(this.client, this.prefix, revision - 1n, options), session, options);
      }
      // The session may have expired while we waited: then our key is gone and so is the lock.
      const check = await this.client.get(key);
      if (check.kvs[0]?.createRevision !== revision) throw new LockNotHeldError(this.name);
    } catch (error) {
      await this.client.delete(key).catch(() => undefined);
      throw error;
    }
    this.heldKey = key;
    this.heldToken = revision;
    return revision;
  }

  /** Takes the lock only if it is free right now. */
  async tryLock(): Promise<boolean> {
    const session = await this.sessions.acquire();
    const { key, revision, holderRevision } = await this.enqueue(session);
    if (holderRevision !== revision) {
      await this.client.delete(key);
      return false;
    }
    this.heldKey = key;
    this.heldToken = revision;
    return true;
  }

  /** Releases the lock (deletes the key only if it is still ours) and the session we created. */
  async unlock(): Promise<void> {
    const key = this.heldKey;
    const token = this.heldToken;
    this.heldKey = undefined;
    this.heldToken = undefined;
    if (key !== undefined && token !== undefined) {
      await deleteIfCreatedAt(this.client, key, token);
    }
    await this.sessions.release();
  }
}
