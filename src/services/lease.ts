// etcd's Lease service on a member: grant and revoke through the log, keep-alive and time-to-live
// on the leader (a follower forwards them), and the leader's expiry check that revokes expired
// leases.

import { randomBytes } from 'node:crypto';
import { LeaseNotFoundError, LeaseTtlTooLargeError } from '../mvcc/errors.js';
import { LEASE_TTL_SECONDS_MAX } from '../mvcc/keyspace.js';
import type { ConcordNode } from '../node/node.js';
import { EMPTY_BYTES } from '../raft/types.js';
import type { AuthInfo } from '../replica/auth-store.js';
import type { GroupReplica } from '../replica/group-replica.js';
import type { HeaderInfo, LeaseGrantResult, LeaseTimeToLiveResult, WithHeader } from './backend.js';

const LEASE_REVOKES_PER_CHECK_MAX = 64;
/** How often the leader looks for expired leases. */
export const LEASE_CHECK_INTERVAL_MS = 500;

export class LeaseService {
  private readonly replica: GroupReplica;

  constructor(private readonly node: ConcordNode) {
    this.replica = node.replica;
  }

  async leaseGrant(ttlSeconds: number, id: bigint): Promise<WithHeader<LeaseGrantResult>> {
    this.replica.refuseOnLearner();
    this.replica.refuseIfNoSpace();
    // As etcd, a TTL over the maximum is refused where the grant applies, after a raised CORRUPT
    // alarm; only TTLs the log cannot carry (beyond 2^53) are refused here.
    if (!Number.isSafeInteger(ttlSeconds) && ttlSeconds > LEASE_TTL_SECONDS_MAX) {
      throw new LeaseTtlTooLargeError(ttlSeconds);
    }
    const leaseId = id === 0n ? randomLeaseId() : id;
    const ttl = this.replica.leases.effectiveTtl(ttlSeconds);
    const response = await this.replica.write({
      type: 'leaseGrant',
      request: { id: leaseId, ttlSeconds: ttl },
    });
    return {
      id: response.id,
      ttlSeconds: response.ttlSeconds,
      header: this.replica.header(response.revision),
    };
  }

  async leaseRevoke(id: bigint, auth?: AuthInfo): Promise<{ header: HeaderInfo }> {
    this.replica.refuseOnLearner();
    checkLeaseKeysWritable(this.replica, id, auth);
    const response = await this.replica.write({ type: 'leaseRevoke', request: { id } });
    return { header: this.replica.header(response.revision) };
  }

  async leaseKeepAlive(id: bigint): Promise<WithHeader<{ id: bigint; ttlSeconds: number }>> {
    this.replica.refuseOnLearner();
    this.replica.assertServing();
    if (this.replica.isLeader) {
      const ttl = this.replica.leases.renew(id, Date.now()) ?? 0;
      return { id, ttlSeconds: ttl, header: this.replica.header() };
    }
    const ttl = await this.node.forwardToLeader((url) => this.node.leaderClient.keepAlive(url, id));
    return { id, ttlSeconds: ttl, header: this.replica.header() };
  }

  async leaseTimeToLive(id: bigint, keys: boolean): Promise<WithHeader<LeaseTimeToLiveResult>> {
    this.replica.refuseOnLearner();
    this.replica.assertServing();
    if (!this.replica.isLeader) {
      const answer = await this.node.forwardToLeader((url) =>
        this.node.leaderClient.timeToLive(url, id, keys),
      );
      return { id, ...answer, header: this.replica.header() };
    }
    const record = this.replica.keyspace.lease(id);
    const remaining = this.replica.leases.remainingSeconds(id, Date.now());
    if (record === undefined || remaining === undefined) {
      return { id, ttlSeconds: -1, grantedTtlSeconds: 0, keys: [], header: this.replica.header() };
    }
    return {
      id,
      ttlSeconds: remaining,
      grantedTtlSeconds: record.ttlSeconds,
      keys: keys ? this.replica.keyspace.leaseKeys(id) : [],
      header: this.replica.header(),
    };
  }

  async leaseLeases(): Promise<WithHeader<{ ids: bigint[] }>> {
    this.replica.refuseOnLearner();
    this.replica.assertServing();
    // etcd lists leases by time left, soonest expiry first (lessor.Leases sorts by Remaining).
    const expiresAtMs = (id: bigint) => this.replica.leases.get(id)?.expiresAtMs ?? Number.POSITIVE_INFINITY;
    const ids = this.replica.keyspace.leases().map((lease) => lease.id);
    const order = new Map(ids.map((id) => [id, expiresAtMs(id)]));
    ids.sort((a, b) => (order.get(a) as number) - (order.get(b) as number) || (a < b ? -1 : a > b ? 1 : 0));
    return { ids, header: this.replica.header() };
  }

  /** The leader revokes expired leases through Raft, a bounded number per check. */
  checkLeases(): void {
    if (!this.replica.isLeader || this.node.isStopped) return;
    for (const id of this.replica.leases.expired(Date.now(), LEASE_REVOKES_PER_CHECK_MAX)) {
      if (this.replica.revokesInFlight.has(id)) continue;
      this.replica.revokesInFlight.add(id);
      this.replica
        .write({ type: 'leaseRevoke', request: { id } })
        .catch((error: Error) => {
          if (!(error instanceof LeaseNotFoundError))
            this.node.log.warn('lease revoke failed', { lease: id, error: error.message });
        })
        .finally(() => this.replica.revokesInFlight.delete(id));
    }
  }
}

/**
 * etcd's checkLeasePuts: revoking a lease, or attaching one to a new key, needs write permission
 * on every key the lease holds (revoking deletes them). Checked on the receiving member before
 * proposing (etcd checks where it applies, so a key attached meanwhile is not seen here).
 */
export function checkLeaseKeysWritable(replica: GroupReplica, id: bigint, auth: AuthInfo | undefined): void {
  const store = replica.authGate.store;
  if (!store.enabled) return;
  for (const key of replica.keyspace.leaseKeys(id)) store.checkRange(auth, key, EMPTY_BYTES, 'WRITE');
}

function randomLeaseId(): bigint {
  // Positive int64, as etcd's IDs are.
  const id = randomBytes(8).readBigInt64BE(0) & 0x7fff_ffff_ffff_ffffn;
  return id === 0n ? 1n : id;
}
