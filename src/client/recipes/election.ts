// Leader election in etcd's layout (`<name>/<lease hex>`, value = the candidate's proclamation),
// so `etcdctl elect <name>` and etcd's v3election service see the same election. The leader is
// the candidate key with the lowest create revision; a candidate waits only on its predecessor.

import type { Client } from '../client.js';
import { ElectionNotLeaderError } from '../errors.js';
import { compare, op } from '../ops.js';
import type { Bytes, KeyValue } from '../types.js';
import {
  deleteIfCreatedAt,
  guarded,
  type RecipeOptions,
  RecipeSession,
  type WaitOptions,
  waitDeletes,
  whenAborted,
} from './common.js';

export interface LeaderInfo {
  key: Buffer;
  value: Buffer;
  /** Create revision of the leader key: grows with every new leader (usable as a fencing token). */
  revision: bigint;
}

function toLeader(kv: KeyValue): LeaderInfo {
  return { key: kv.key, value: kv.value, revision: kv.createRevision };
}

export class Election {
  private readonly prefix: string;
  private readonly sessions: RecipeSession;
  private leaderKey: string | undefined;
  private leaderRevision: bigint | undefined;

  constructor(
    private readonly client: Client,
    readonly name: string,
    options: RecipeOptions = {},
  ) {
    this.prefix = `${name}/`;
    this.sessions = new RecipeSession(client, options.session, options.ttlSeconds);
  }

  get isLeader(): boolean {
    return this.leaderKey !== undefined;
  }

  /** Our leader key's create revision while we lead. */
  get revision(): bigint {
    if (this.leaderRevision === undefined) throw new ElectionNotLeaderError();
    return this.leaderRevision;
  }

  get key(): string {
    if (this.leaderKey === undefined) throw new ElectionNotLeaderError();
    return this.leaderKey;
  }

  /** Blocks until elected with `value`; returns our leader key's create revision. */
  async campaign(value: Bytes, options: WaitOptions = {}): Promise<bigint> {
    const session = await this.sessions.acquire();
    session.assertAlive();
    const key = `${this.prefix}${session.leaseHex}`;
    const result = await this.client
      .txn()
      .if(compare.missing(key))
      .then(op.put(key, value, { lease: session.leaseId }))
      .else(op.get(key))
      .commit();
    let revision = result.header.revision;
    if (!result.succeeded) {
      const existing = result.responses[0];
      const kv = existing?.type === 'get' ? existing.kvs[0] : undefined;
      if (kv === undefined) throw new Error('election invariant: candidate key vanished inside a txn');
      revision = kv.createRevision;
      if (!kv.value.equals(Buffer.from(value))) await this.client.put(key, value, { lease: session.leaseId });
    }
    try {
      await guarded(waitDeletes(this.client, this.prefix, revision - 1n, options), session, options);
      const check = await this.client.get(key);
      if (check.kvs[0]?.createRevision !== revision)
        throw new ElectionNotLeaderError('election: session expired while campaigning');
    } catch (error) {
      await this.client.delete(key).catch(() => undefined);
      throw error;
    }
    this.leaderKey = key;
    this.leaderRevision = revision;
    return revision;
  }

  /** Changes the leader's value without an election; fails if we no longer lead. */
  async proclaim(value: Bytes): Promise<void> {
    const key = this.key;
    const session = this.sessions.current;
    if (session === undefined) throw new ElectionNotLeaderError();
    const result = await this.client
      .txn()
      .if(compare.createRevision(key, '=', this.revision))
      .then(op.put(key, value, { lease: session.leaseId }))
      .commit();
    if (!result.succeeded) {
      this.leaderKey = undefined;
      this.leaderRevision = undefined;
      throw new ElectionNotLeaderError();
    }
  }

  /** Gives up leadership (and the session we created). */
  async resign(): Promise<void> {
    const key = this.leaderKey;
    const revision = this.leaderRevision;
    this.leaderKey = undefined;
    this.leaderRevision = undefined;
    if (key !== undefined && revision !== undefined) {
      await deleteIfCreatedAt(this.client, key, revision);
    }
    await this.sessions.release();
  }

  /** The current leader, or undefined when there is none. */
  async leader(): Promise<LeaderInfo | undefined> {
    const result = await this.client.get(this.prefix, {
      prefix: true,
      sort: { target: 'create', order: 'ascend' },
      limit: 1,
    });
    const kv = result.kvs[0];
    return kv === undefined ? undefined : toLeader(kv);
  }

  /** Every change of leader or of its value, starting with the current leader. Stops on break/abort. */
  async *observe(options: WaitOptions = {}): AsyncGenerator<LeaderInfo> {
    let last: { key: string; modRevision: bigint } | undefined;
    while (options.signal?.aborted !== true) {
      const result = await this.client.get(this.prefix, {
        prefix: true,
        sort: { target: 'create', order: 'ascend' },
        limit: 1,
      });
      const kv = result.kvs[0];
      const from = result.header.revision + 1n;
      if (kv === undefined) {
        await this.waitFor(this.prefix, true, from, (e) => e.type === 'put', options);
        continue;
      }
      if (last === undefined || last.key !== kv.key.toString() || last.modRevision !== kv.modRevision) {
        last = { key: kv.key.toString(), modRevision: kv.modRevision };
        yield toLeader(kv);
      }
      // Follow the leader key: each put is a proclamation, a delete ends this leader's term.
      const watcher = this.client.watch(kv.key, { fromRevision: from });
      const unlisten = whenAborted(options.signal, () => watcher.close());
      try {
        for await (const event of watcher) {
          if (event.type === 'delete') break;
          last = { key: event.kv.key.toString(), modRevision: event.kv.modRevision };
          yield { key: event.kv.key, value: event.kv.value, revision: event.kv.createRevision };
        }
      } finally {
        unlisten();
        watcher.close();
      }
    }
  }

  private async waitFor(
    key: string,
    prefix: boolean,
    fromRevision: bigint,
    match: (event: { type: 'put' | 'delete' }) => boolean,
    options: WaitOptions,
  ): Promise<void> {
    const watcher = this.client.watch(key, { prefix, fromRevision });
    const unlisten = whenAborted(options.signal, () => watcher.close());
    try {
      for await (const event of watcher) if (match(event)) return;
    } finally {
      unlisten();
      watcher.close();
    }
  }
}
