// A counting semaphore: at most `permits` holders at once. Each acquirer writes a key bound to
// its session under `<name>/`; it holds a permit when fewer than `permits` keys are older than
// its own, and otherwise waits for a delete under the prefix. Every user of one semaphore must
// pass the same `permits`.

import { randomBytes } from 'node:crypto';
import type { Client } from '../client.js';
import {
  guarded,
  type RecipeOptions,
  Session,
  throwIfAborted,
  type WaitOptions,
  whenAborted,
} from './common.js';

export class Semaphore {
  private session: Session | undefined;
  private ownsSession = false;
  private held: string | undefined;

  constructor(
    private readonly client: Client,
    readonly name: string,
    readonly permits: number,
    private readonly options: RecipeOptions = {},
  ) {
    if (!Number.isInteger(permits) || permits < 1) throw new RangeError('a semaphore needs permits >= 1');
    this.session = options.session;
  }

  async acquire(options: WaitOptions = {}): Promise<void> {
    if (this.held !== undefined)
      throw new Error(`semaphore ${this.name}: this handle already holds a permit`);
    if (this.session === undefined) {
      this.session = await Session.create(this.client, { ttlSeconds: this.options.ttlSeconds });
      this.ownsSession = true;
    }
    const session = this.session;
    const key = `${this.name}/${session.leaseHex}-${randomBytes(4).toString('hex')}`;
    const put = await this.client.put(key, '', { lease: session.leaseId });
    const revision = put.header.revision;
    try {
      await guarded(this.waitForPermit(revision, options), session, options);
    } catch (error) {
      await this.client.delete(key).catch(() => undefined);
      throw error;
    }
    this.held = key;
  }

  private async waitForPermit(revision: bigint, options: WaitOptions): Promise<void> {
    // max_create_revision 0 would mean "no bound"; nothing is older than revision 1 anyway.
    if (revision <= 1n) return;
    for (;;) {
      // Fetch the keys, not a count: etcd's count ignores the create-revision filter (it counts the
      // whole range), while the keys are filtered before the limit applies.
      const older = await this.client.get(`${this.name}/`, {
        prefix: true,
        keysOnly: true,
        maxCreateRevision: revision - 1n,
        sort: { target: 'create', order: 'ascend' },
        limit: this.permits,
      });
      if (older.kvs.length < this.permits) return;
      const watcher = this.client.watch(`${this.name}/`, {
        prefix: true,
        fromRevision: older.header.revision + 1n,
        noPut: true,
      });
      const unlisten = whenAborted(options.signal, () => watcher.close());
      try {
        for await (const _ of watcher) break;
      } finally {
        unlisten();
        watcher.close();
      }
      throwIfAborted(options.signal);
    }
  }

  async release(): Promise<void> {
    const key = this.held;
    this.held = undefined;
    if (key !== undefined) await this.client.delete(key);
    if (this.ownsSession && this.session !== undefined) {
      const session = this.session;
      this.session = undefined;
      this.ownsSession = false;
      await session.close();
    }
  }
}
