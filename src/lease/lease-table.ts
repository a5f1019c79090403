// The lease clock: when each lease expires. Grants and revokes are replicated through Raft and
// persisted by the keyspace (src/mvcc); expiry timing is not replicated. As in etcd, only the
// leader counts time: a new leader restarts every lease's countdown with its full TTL plus
// a grace period, so leases are never cut short by a leader change (they may run long).
// Pure: the caller passes the current time (ms) in, so tests and the simulator control it.

export const LEASE_TTL_MAX_SECONDS = 9_000_000_000;

export interface LeaseState {
  id: bigint;
  /** Granted TTL in seconds (after raising to the minimum). */
  ttlSeconds: number;
  /** When the lease expires on this node's clock; Infinity while not leader. */
  expiresAtMs: number;
}

export class LeaseTable {
  private readonly leases = new Map<bigint, LeaseState>();
  private leader = false;

  constructor(readonly ttlMinSeconds: number) {}

  /** etcd raises a TTL below the minimum (1.5 election timeouts) to the minimum. */
  effectiveTtl(requestedSeconds: number): number {
    return Math.max(requestedSeconds, this.ttlMinSeconds);
  }

  isLeader(): boolean {
    return this.leader;
  }

  /** Applies a committed grant. */
  grant(id: bigint, ttlSeconds: number, nowMs: number): LeaseState {
    const ttl = this.effectiveTtl(ttlSeconds);
    const state: LeaseState = {
      id,
      ttlSeconds: ttl,
      expiresAtMs: this.leader ? nowMs + ttl * 1000 : Number.POSITIVE_INFINITY,
    };
    this.leases.set(id, state);
    return state;
  }

  /** Applies a committed revoke (or expiry). */
  revoke(id: bigint): boolean {
    return this.leases.delete(id);
  }

  get(id: bigint): LeaseState | undefined {
    return this.leases.get(id);
  }

  has(id: bigint): boolean {
    return this.leases.has(id);
  }

  all(): LeaseState[] {
    return [...this.leases.values()];
  }

  /** A keep-alive on the leader: the countdown restarts. Returns the TTL, or undefined if unknown. */
  renew(id: bigint, nowMs: number): number | undefined {
    const lease = this.leases.get(id);
    if (lease === undefined) return undefined;
    if (!this.leader)
      throw new Error('lease renew on a non-leader: keep-alives must be served by the leader');
    lease.expiresAtMs = nowMs + lease.ttlSeconds * 1000;
    return lease.ttlSeconds;
  }

  /** Seconds left, rounded down as etcd reports it; -1 when not counting (not leader). */
  remainingSeconds(id: bigint, nowMs: number): number | undefined {
    const lease = this.leases.get(id);
    if (lease === undefined) return undefined;
    if (!Number.isFinite(lease.expiresAtMs)) return lease.ttlSeconds;
    return Math.max(0, Math.floor((lease.expiresAtMs - nowMs) / 1000));
  }

  /**
   * This node became leader: every lease gets its full TTL plus `graceMs` (etcd's
   * Promote(extend) with extend = election timeout), so a lease can only outlive its TTL.
   */
  promote(nowMs: number, graceMs: number): void {
    this.leader = true;
    for (const lease of this.leases.values()) lease.expiresAtMs = nowMs + lease.ttlSeconds * 1000 + graceMs;
  }

  /** This node lost leadership: stop counting. */
  demote(): void {
    this.leader = false;
    for (const lease of this.leases.values()) lease.expiresAtMs = Number.POSITIVE_INFINITY;
  }

  /** Leases past their expiry, oldest first, at most `limit` (revokes are rate-bounded). */
  expired(nowMs: number, limit: number): bigint[] {
    if (!this.leader) return [];
    const due: LeaseState[] = [];
    for (const lease of this.leases.values()) if (lease.expiresAtMs <= nowMs) due.push(lease);
    due.sort((a, b) => a.expiresAtMs - b.expiresAtMs);
    return due.slice(0, limit).map((lease) => lease.id);
  }

  clear(): void {
    this.leases.clear();
  }
}
