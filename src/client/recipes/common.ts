// Building blocks shared by the recipes: a session (a lease kept alive), and waiting for keys to
// be deleted, which is how every fair recipe waits for its predecessor.

import type { Client } from '../client.js';
import { CancelledError, type ConcordError, LeaseLostError } from '../errors.js';
import type { LeaseKeepAlive } from '../lease.js';
import { compare, op } from '../ops.js';
import { type Bytes, type KeyValue, toBuffer } from '../types.js';

export const defaultSessionTtlSeconds = 10;

/** A lease kept alive for the life of a recipe; closing it revokes the lease (and its keys). */
export class Session {
  private constructor(
    readonly client: Client,
    readonly keepAlive: LeaseKeepAlive,
  ) {}

  static async create(
    client: Client,
    options: { ttlSeconds?: number; onLoss?: (error: LeaseLostError) => void } = {},
  ): Promise<Session> {
    const keepAlive = await client.lease(options.ttlSeconds ?? defaultSessionTtlSeconds, {
      onLoss: options.onLoss,
    });
    return new Session(client, keepAlive);
  }

  get leaseId(): bigint {
    return this.keepAlive.id;
  }

  /** The lease ID as etcd's concurrency package writes it in keys: lowercase hex, no padding. */
  get leaseHex(): string {
    return this.leaseId.toString(16);
  }

  /** Throws when the lease was lost: whatever the session held may now belong to someone else. */
  assertAlive(): void {
    const lost = this.keepAlive.lost;
    if (lost !== undefined) throw lost;
  }

  async close(): Promise<void> {
    await this.keepAlive.revoke();
  }
}

/**
 * The session a recipe runs under: the caller's own (never closed here), or one this recipe
 * creates on first use and closes when it releases what it holds.
 */
export class RecipeSession {
  private created: Session | undefined;

  constructor(
    private readonly client: Client,
    private readonly given: Session | undefined,
    private readonly ttlSeconds: number | undefined,
  ) {}

  /** The session in use, if any yet. */
  get current(): Session | undefined {
    return this.given ?? this.created;
  }

  async acquire(): Promise<Session> {
    const existing = this.current;
    if (existing !== undefined) return existing;
    this.created = await Session.create(this.client, { ttlSeconds: this.ttlSeconds });
    return this.created;
  }

  /** Closes (revokes) the session only if we created it. */
  async release(): Promise<void> {
    const created = this.created;
    this.created = undefined;
    await created?.close();
  }
}

export interface RecipeOptions {
  /** Reuse a session (several recipes on one lease); by default each recipe makes its own. */
  session?: Session;
  ttlSeconds?: number;
}

export interface WaitOptions {
  signal?: AbortSignal;
}

/**
 * Runs `stop` when `signal` aborts, at once if it already has: a signal aborted before the
 * listener exists (during an awaited request) never fires 'abort' again, and a wait that only
 * listened would hang until something else ended it. Returns the function that unregisters.
 */
export function whenAborted(signal: AbortSignal | undefined, stop: () => void): () => void {
  if (signal === undefined) return () => undefined;
  if (signal.aborted) {
    stop();
    return () => undefined;
  }
  signal.addEventListener('abort', stop, { once: true });
  return () => signal.removeEventListener('abort', stop);
}

export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted === true) throw new CancelledError('the wait was aborted');
}

/** Races `work` against the session's lease loss and an abort signal. */
export async function guarded<T>(
  work: Promise<T>,
  session: Session | undefined,
  options: WaitOptions,
): Promise<T> {
  const contenders: Promise<T>[] = [work];
  if (session !== undefined)
    contenders.push(session.keepAlive.whenLost().then((lost) => Promise.reject(lost)));
  let onAbort: (() => void) | undefined;
  if (options.signal !== undefined) {
    const signal = options.signal;
    contenders.push(
      new Promise<never>((_, reject) => {
        onAbort = () => reject(new CancelledError('the wait was aborted'));
        if (signal.aborted) onAbort();
        else signal.addEventListener('abort', onAbort, { once: true });
      }),
    );
  }
  try {
    return await Promise.race(contenders);
  } finally {
    if (onAbort !== undefined) options.signal?.removeEventListener('abort', onAbort);
  }
}

/** Resolves once `key` is deleted at or after `fromRevision`. */
export async function waitDelete(
  client: Client,
  key: Bytes,
  fromRevision: bigint,
  options: WaitOptions = {},
): Promise<void> {
  const watcher = client.watch(key, { fromRevision, noPut: true });
  const unlisten = whenAborted(options.signal, () => watcher.close());
  try {
    for await (const event of watcher) {
      if (event.type === 'delete') return;
    }
    throwIfAborted(options.signal);
    throw new CancelledError('watch closed before the key was deleted');
  } finally {
    unlisten();
    watcher.close();
  }
}

/**
 * Waits until no key under `prefix` has a create revision <= `maxCreateRevision` (and passes
 * `blocks`), waiting each time only on the newest such key: each waiter watches one predecessor,
 * so a release wakes one waiter, not the herd.
 */
export async function waitDeletes(
  client: Client,
  prefix: Bytes,
  maxCreateRevision: bigint,
  options: WaitOptions & { blocks?: (kv: KeyValue) => boolean } = {},
): Promise<void> {
  // max_create_revision 0 means "no bound": nothing can be older than revision 1, so return
  // rather than wait on every key (our own included).
  if (maxCreateRevision < 1n) return;
  for (;;) {
    throwIfAborted(options.signal);
    const result = await client.get(prefix, {
      prefix: true,
      maxCreateRevision,
      sort: { target: 'create', order: 'descend' },
      limit: options.blocks === undefined ? 1 : 0,
      keysOnly: true,
    });
    const blocker = options.blocks === undefined ? result.kvs[0] : result.kvs.find(options.blocks);
    if (blocker === undefined) return;
    await waitDelete(client, blocker.key, result.header.revision, options);
  }
}

export function keyString(key: Bytes): string {
  return toBuffer(key).toString('utf8');
}

export function isLeaseLost(error: unknown): error is LeaseLostError {
  return error instanceof LeaseLostError;
}

export type { ConcordError };

/**
 * Deletes a recipe's key only while it is still the key we created (same create revision): a
 * lease expiry followed by someone else's key under the same name is left alone.
 */
export async function deleteIfCreatedAt(client: Client, key: string, createRevision: bigint): Promise<void> {
  await client
    .txn()
    .if(compare.createRevision(key, '=', createRevision))
    .then(op.delete(key))
    .commit();
}
