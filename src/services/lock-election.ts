// etcd's Lock and Election services (v3lock, v3election) on a member: the recipes of
// concurrency.ts run over the KV service, as the caller, so the caller's permissions apply.

import type { ConcordNode } from '../node/node.js';
import type { AuthInfo } from '../replica/auth-store.js';
import type { GroupReplica } from '../replica/group-replica.js';
import type { Disposable, HeaderInfo, KeyValue, LeaderKey, WithHeader } from './backend.js';
import { Concurrency } from './concurrency.js';
import type { KvService } from './kv.js';

export class LockElectionService {
  private readonly replica: GroupReplica;
  private readonly concurrency: Concurrency;

  constructor(
    private readonly node: ConcordNode,
    private readonly kv: KvService,
  ) {
    this.replica = node.replica;
    this.concurrency = new Concurrency(kv);
  }

  /** Lock and Election make their KV requests as the caller, so the caller's permissions apply. */
  private concurrencyFor(auth: AuthInfo | undefined): Concurrency {
    if (auth === undefined && !this.replica.authGate.store.enabled) return this.concurrency;
    return new Concurrency({
      range: (request) => this.kv.range(request, auth),
      txn: (request) => this.kv.txn(request, auth),
      deleteRange: (request) => this.kv.deleteRange(request, auth),
      watch: (request, listener) => this.kv.watch(request, listener),
    });
  }

  lock(
    name: Uint8Array,
    lease: bigint,
    signal: AbortSignal,
    auth?: AuthInfo,
  ): Promise<WithHeader<{ key: Uint8Array }>> {
    return this.concurrencyFor(auth).lock(name, lease, signal);
  }

  unlock(key: Uint8Array, auth?: AuthInfo): Promise<{ header: HeaderInfo }> {
    return this.concurrencyFor(auth).unlock(key);
  }

  campaign(
    name: Uint8Array,
    lease: bigint,
    value: Uint8Array,
    signal: AbortSignal,
    auth?: AuthInfo,
  ): Promise<WithHeader<{ leader: LeaderKey }>> {
    return this.concurrencyFor(auth).campaign(name, lease, value, signal);
  }

  proclaim(leader: LeaderKey, value: Uint8Array, auth?: AuthInfo): Promise<{ header: HeaderInfo }> {
    return this.concurrencyFor(auth).proclaim(leader, value);
  }

  leader(name: Uint8Array, auth?: AuthInfo): Promise<WithHeader<{ kv: KeyValue }>> {
    return this.concurrencyFor(auth).leader(name);
  }

  observe(name: Uint8Array, onLeader: (kv: KeyValue, header: HeaderInfo) => void): Disposable {
    const stop = this.concurrency.observe(
      name,
      (kv) => onLeader(kv, this.replica.header()),
      (error) => this.node.log.warn('election observe failed', { error: error.message }),
    );
    return { dispose: stop };
  }

  resign(leader: LeaderKey, auth?: AuthInfo): Promise<{ header: HeaderInfo }> {
    return this.concurrencyFor(auth).resign(leader);
  }
}
