// The server side of etcd's v3lock and v3election services, built on the keyspace exactly as
// etcd's concurrency package builds them, so `etcdctl lock`/`elect` and our clients interoperate.
//
// Lock: each contender puts `<name>/<lease hex>` bound to its lease; the contender whose key
// has the lowest create revision holds the lock. A waiter watches only the key created just
// before its own (no herd effect). The key's create revision is the fencing token (Chubby's
// sequencer): it strictly increases from holder to holder.

import type {
  DeleteRangeRequest,
  DeleteRangeResponse,
  RangeRequest,
  RangeResponse,
  TxnRequest,
  TxnResponse,
} from '../mvcc/types.js';
import { EtcdError } from '../wire/etcd-errors.js';
import type {
  BackendWatcher,
  Event,
  KeyValue,
  LeaderKey,
  WatchCreate,
  WatchListener,
  WithHeader,
} from './backend.js';

export interface KvAccess {
  range(request: RangeRequest): Promise<WithHeader<RangeResponse>>;
  txn(request: TxnRequest): Promise<WithHeader<TxnResponse>>;
  deleteRange(request: DeleteRangeRequest): Promise<WithHeader<DeleteRangeResponse>>;
  watch(request: WatchCreate, listener: WatchListener): BackendWatcher;
}

const textEncoder = new TextEncoder();

export function prefixEnd(prefix: Uint8Array): Uint8Array {
  const end = Uint8Array.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i]! += 1;
      return end.subarray(0, i + 1);
    }
  }
  return new Uint8Array([0]); // all 0xff: to the end of the keyspace
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

function contenderKey(name: Uint8Array, lease: bigint): Uint8Array {
  return concat(concat(name, textEncoder.encode('/')), textEncoder.encode(lease.toString(16)));
}

function abortError(signal: AbortSignal): Error {
  return signal.reason instanceof Error ? signal.reason : new Error('context canceled');
}

export class Concurrency {
  constructor(private readonly kv: KvAccess) {}

  async lock(name: Uint8Array, lease: bigint, signal: AbortSignal): Promise<WithHeader<{ key: Uint8Array }>> {
    const prefix = concat(name, textEncoder.encode('/'));
    const key = contenderKey(name, lease);
    const { myRevision } = await this.createContender(key, prefix, lease, new Uint8Array(0));
    try {
      const header = await this.waitForPredecessors(prefix, myRevision, signal);
      return { header, key };
    } catch (error) {
      await this.kv.deleteRange({ key }).catch(() => undefined);
      throw error;
    }
  }

  async unlock(key: Uint8Array): Promise<WithHeader<object>> {
    const response = await this.kv.deleteRange({ key });
    return { header: response.header };
  }

  async campaign(
    name: Uint8Array,
    lease: bigint,
    value: Uint8Array,
    signal: AbortSignal,
  ): Promise<WithHeader<{ leader: LeaderKey }>> {
    const prefix = concat(name, textEncoder.encode('/'));
    const key = contenderKey(name, lease);
    const { myRevision, existing } = await this.createContender(key, prefix, lease, value);
    const leader: LeaderKey = { name, key, rev: myRevision, lease };
    if (existing !== undefined && !bytesEqual(existing.value, value)) await this.proclaim(leader, value);
    try {
      const header = await this.waitForPredecessors(prefix, myRevision, signal);
      return { header, leader };
    } catch (error) {
      await this.resign(leader).catch(() => undefined);
      throw error;
    }
  }

  async proclaim(leader: LeaderKey, value: Uint8Array): Promise<WithHeader<object>> {
    const response = await this.kv.txn({
      compare: [{ result: 'equal', target: 'create', key: leader.key, createRevision: leader.rev }],
      success: [{ type: 'put', request: { key: leader.key, value, lease: leader.lease } }],
      failure: [],
    });
    if (!response.succeeded) throw new EtcdError('electionNotLeader');
    return { header: response.header };
  }

  async resign(leader: LeaderKey): Promise<WithHeader<object>> {
    const response = await this.kv.txn({
      compare: [{ result: 'equal', target: 'create', key: leader.key, createRevision: leader.rev }],
      success: [{ type: 'deleteRange', request: { key: leader.key } }],
      failure: [],
    });
    return { header: response.header };
  }

  async leader(name: Uint8Array): Promise<WithHeader<{ kv: KeyValue }>> {
    const prefix = concat(name, textEncoder.encode('/'));
    const response = await this.kv.range(firstCreated(prefix));
    const kv = response.kvs[0];
    if (kv === undefined) throw new EtcdError('electionNoLeader');
    return { header: response.header, kv };
  }

  /**
   * Follows the leadership of `name`: calls onLeader with the current leader and every later
   * change (new leader or new proclaimed value), in order, until disposed.
   */
  observe(name: Uint8Array, onLeader: (kv: KeyValue) => void, onError: (error: Error) => void): () => void {
    const prefix = concat(name, textEncoder.encode('/'));
    let watcher: BackendWatcher | undefined;
    let disposed = false;
    let current: KeyValue | undefined;

    const follow = async (): Promise<void> => {
      if (disposed) return;
      const response = await this.kv.range(firstCreated(prefix));
      if (disposed) return;
      const kv = response.kvs[0];
      if (kv === undefined) {
        // Nobody leads: wait for the first put under the prefix, then look again.
        watcher = this.kv.watch(
          {
            key: prefix,
            rangeEnd: prefixEnd(prefix),
            startRevision: response.header.revision + 1,
            prevKv: false,
          },
          listener((events) => events.some((e) => e.type === 'put'), follow),
        );
        return;
      }
      if (
        current === undefined ||
        !bytesEqual(current.key, kv.key) ||
        current.modRevision !== kv.modRevision
      ) {
        current = kv;
        onLeader(kv);
      }
      watcher = this.kv.watch(
        { key: kv.key, rangeEnd: new Uint8Array(0), startRevision: kv.modRevision + 1, prevKv: false },
        {
          onEvents: (events) => {
            for (const event of events) {
              if (event.type === 'put') {
                current = event.kv;
                onLeader(event.kv);
              } else {
                restart();
                return;
              }
            }
          },
          onCompacted: () => restart(),
        },
      );
    };
    const listener = (trigger: (events: Event[]) => boolean, next: () => Promise<void>): WatchListener => ({
      onEvents: (events) => {
        if (trigger(events)) {
          watcher?.cancel();
          watcher = undefined;
          next().catch(onError);
        }
      },
      onCompacted: () => restart(),
    });
    const restart = () => {
      watcher?.cancel();
      watcher = undefined;
      follow().catch(onError);
    };
    follow().catch(onError);
    return () => {
      disposed = true;
      watcher?.cancel();
    };
  }

  /** Creates the contender key if absent (or finds ours from an earlier attempt with this lease). */
  private async createContender(
    key: Uint8Array,
    prefix: Uint8Array,
    lease: bigint,
    value: Uint8Array,
  ): Promise<{ myRevision: number; existing?: KeyValue }> {
    const response = await this.kv.txn({
      compare: [{ result: 'equal', target: 'create', key, createRevision: 0 }],
      success: [
        { type: 'put', request: { key, value, lease } },
        { type: 'range', request: firstCreated(prefix) },
      ],
      failure: [
        { type: 'range', request: { key } },
        { type: 'range', request: firstCreated(prefix) },
      ],
    });
    if (response.succeeded) return { myRevision: response.revision };
    const first = response.responses[0];
    const existing = first?.type === 'range' ? first.response.kvs[0] : undefined;
    if (existing === undefined)
      throw new Error(`contender key vanished during txn at revision ${response.revision}`);
    return { myRevision: existing.createRevision, existing };
  }

  /**
   * Waits until no key under `prefix` was created before `myRevision` (etcd's waitDeletes):
   * each round watches only the newest older contender for its deletion.
   */
  private async waitForPredecessors(prefix: Uint8Array, myRevision: number, signal: AbortSignal) {
    for (;;) {
      if (signal.aborted) throw abortError(signal);
      const response = await this.kv.range({
        key: prefix,
        rangeEnd: prefixEnd(prefix),
        maxCreateRevision: myRevision - 1,
        sortTarget: 'create',
        sortOrder: 'descend',
        limit: 1,
      });
      const predecessor = response.kvs[0];
      if (predecessor === undefined) return response.header;
      await this.waitForDelete(predecessor.key, response.header.revision + 1, signal);
    }
  }

  private waitForDelete(key: Uint8Array, fromRevision: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      let watcher: BackendWatcher | undefined;
      let done = false;
      const finish = (error?: Error) => {
        if (done) return;
        done = true;
        signal.removeEventListener('abort', onAbort);
        watcher?.cancel();
        if (error) reject(error);
        else resolve();
      };
      const onAbort = () => finish(abortError(signal));
      // Aborted already (the call was cancelled while an earlier step ran): 'abort' won't fire again.
      if (signal.aborted) return onAbort();
      signal.addEventListener('abort', onAbort);
      watcher = this.kv.watch(
        { key, rangeEnd: new Uint8Array(0), startRevision: fromRevision, prevKv: false },
        {
          onEvents: (events) => {
            if (events.some((event) => event.type === 'delete')) finish();
          },
          // History gone: look again from the current state rather than guess.
          onCompacted: () => finish(),
        },
      );
      // History replay may have finished us before watch() returned.
      if (done) watcher.cancel();
    });
  }
}

function firstCreated(prefix: Uint8Array): RangeRequest {
  return { key: prefix, rangeEnd: prefixEnd(prefix), sortTarget: 'create', sortOrder: 'ascend', limit: 1 };
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
