// Barriers. A Barrier blocks waiters while its key exists (hold/release by a coordinator). A
// DoubleBarrier lets `count` participants enter together and leave together, like ZooKeeper's
// double barrier: each participant's key is bound to its session, so a crashed participant
// does not block the others forever (its key goes when its lease expires).

import type { Client } from '../client.js';
import { compare, op } from '../ops.js';
import { guarded, type RecipeOptions, Session, type WaitOptions, waitDelete } from './common.js';

export class Barrier {
  constructor(
    private readonly client: Client,
    readonly key: string,
  ) {}

  /** Raises the barrier: waiters block until release(). */
  async hold(): Promise<void> {
    await this.client.txn().if(compare.missing(this.key)).then(op.put(this.key, '')).commit();
  }

  async release(): Promise<void> {
    await this.client.delete(this.key);
  }

  /** Returns once the barrier is not held. */
  async wait(options: WaitOptions = {}): Promise<void> {
    const result = await this.client.get(this.key, { keysOnly: true });
    if (result.kvs.length === 0) return;
    await waitDelete(this.client, this.key, result.header.revision + 1n, options);
  }
}

export class DoubleBarrier {
  private session: Session | undefined;
  private ownsSession = false;
  private myKey: string | undefined;
  private readonly waitersPrefix: string;
  private readonly readyKey: string;

  constructor(
    private readonly client: Client,
    readonly name: string,
    readonly count: number,
    private readonly options: RecipeOptions = {},
  ) {
    if (!Number.isInteger(count) || count < 1) throw new RangeError('a double barrier needs count >= 1');
    this.session = options.session;
    this.waitersPrefix = `${name}/waiters/`;
    this.readyKey = `${name}/ready`;
  }

  /** Blocks until `count` participants have entered. */
  async enter(options: WaitOptions = {}): Promise<void> {
    if (this.session === undefined) {
      this.session = await Session.create(this.client, { ttlSeconds: this.options.ttlSeconds });
      this.ownsSession = true;
    }
    const session = this.session;
    this.myKey = `${this.waitersPrefix}${session.leaseHex}`;
    await this.client.put(this.myKey, '', { lease: session.leaseId });
    const waiters = await this.client.get(this.waitersPrefix, { prefix: true, countOnly: true });
    if (waiters.count >= BigInt(this.count)) {
      await this.client.put(this.readyKey, '');
      return;
    }
    const ready = await this.client.get(this.readyKey, { keysOnly: true });
    if (ready.kvs.length > 0) return;
    const watcher = this.client.watch(this.readyKey, {
      fromRevision: ready.header.revision + 1n,
      noDelete: true,
    });
    try {
      await guarded(
        (async () => {
          for await (const _ of watcher) return;
        })(),
        session,
        options,
      );
    } finally {
      watcher.close();
    }
  }

  /** Blocks until every participant that entered has left. */
  async leave(options: WaitOptions = {}): Promise<void> {
    const key = this.myKey;
    if (key === undefined) throw new Error(`double barrier ${this.name}: leave() without enter()`);
    this.myKey = undefined;
    await this.client.delete(key);
    for (;;) {
      const waiters = await this.client.get(this.waitersPrefix, {
        prefix: true,
        keysOnly: true,
        sort: { target: 'create', order: 'ascend' },
        limit: 1,
      });
      const other = waiters.kvs[0];
      if (other === undefined) break;
      await waitDelete(this.client, other.key, waiters.header.revision + 1n, options);
    }
    await this.client.delete(this.readyKey);
    if (this.ownsSession && this.session !== undefined) {
      const session = this.session;
      this.session = undefined;
      this.ownsSession = false;
      await session.close();
    }
  }
}
