// Endpoint selection: a pool of endpoints with health state, and the balancing policies that
// pick among the healthy ones. Pure and clock-injected so distributions and ejection can be
// unit-tested without a network.

import { assertNever } from './assert.js';
import { type Clock, type Random, systemClock, systemRandom } from './clock.js';
import { HashRing } from './hash-ring.js';

export type BalancerPolicyName =
  | 'round-robin'
  | 'random'
  | 'weighted-round-robin'
  | 'least-outstanding'
  | 'power-of-two'
  | 'key-affinity';

export const balancerPolicyNames: readonly BalancerPolicyName[] = [
  'round-robin',
  'random',
  'weighted-round-robin',
  'least-outstanding',
  'power-of-two',
  'key-affinity',
];

export interface BalancerOptions {
  policy: BalancerPolicyName;
  /** Weights by endpoint for weighted-round-robin (default 1 each). */
  weights?: Readonly<Record<string, number>>;
  /** Ring points per endpoint for key-affinity. */
  virtualNodesPerEndpoint?: number;
}

export interface HealthOptions {
  /** Consecutive failures that eject an endpoint. */
  failuresToEject: number;
  /** First ejection lasts this long; each further one doubles, up to ejectionMaxMs. */
  ejectionBaseMs: number;
  ejectionMaxMs: number;
}

export const defaultHealthOptions: HealthOptions = {
  failuresToEject: 3,
  ejectionBaseMs: 1000,
  ejectionMaxMs: 30_000,
};

export class EndpointState {
  outstanding = 0;
  consecutiveFailures = 0;
  ejected = false;
  /** When an ejected endpoint is next probed. */
  probeAtMs = 0;
  ejections = 0;
  /** Member ID (decimal) once learned from a Status call. */
  memberId: string | undefined;
  constructor(
    readonly address: string,
    readonly weight: number,
  ) {
    if (!(weight > 0) || !Number.isFinite(weight)) throw new RangeError(`weight of ${address} must be > 0`);
  }
}

export interface BalancerPolicy {
  readonly name: BalancerPolicyName;
  /** Picks one of `candidates` (never empty). `key` is the request's key when it has one. */
  pick(candidates: readonly EndpointState[], key: Uint8Array | undefined): EndpointState;
}

function nonEmpty(candidates: readonly EndpointState[]): void {
  if (candidates.length === 0) throw new Error('balancer invariant: pick from no candidates');
}

class RoundRobin implements BalancerPolicy {
  readonly name = 'round-robin';
  private next = 0;
  pick(candidates: readonly EndpointState[]): EndpointState {
    nonEmpty(candidates);
    const chosen = candidates[this.next % candidates.length] as EndpointState;
    this.next = (this.next + 1) % 1_000_000_007;
    return chosen;
  }
}

class RandomPick implements BalancerPolicy {
  readonly name = 'random';
  constructor(private readonly random: Random) {}
  pick(candidates: readonly EndpointState[]): EndpointState {
    nonEmpty(candidates);
    return candidates[Math.floor(this.random() * candidates.length)] as EndpointState;
  }
}

/**
 * nginx's smooth weighted round-robin: every pick adds each candidate's weight to its current
 * weight, takes the largest, and subtracts the total from the winner. Picks interleave (5,1,1
 * gives a a b a c a a, not a a a a a b c).
 */
class SmoothWeightedRoundRobin implements BalancerPolicy {
  readonly name = 'weighted-round-robin';
  private readonly current = new Map<string, number>();
  pick(candidates: readonly EndpointState[]): EndpointState {
    nonEmpty(candidates);
    let total = 0;
    let best: EndpointState | undefined;
    let bestWeight = Number.NEGATIVE_INFINITY;
    for (const candidate of candidates) {
      const weight = (this.current.get(candidate.address) ?? 0) + candidate.weight;
      this.current.set(candidate.address, weight);
      total += candidate.weight;
      if (weight > bestWeight) {
        best = candidate;
        bestWeight = weight;
      }
    }
    const chosen = best as EndpointState;
    this.current.set(chosen.address, bestWeight - total);
    return chosen;
  }
}

/** Fewest requests in flight; ties rotate so an idle pool is still spread evenly. */
class LeastOutstanding implements BalancerPolicy {
  readonly name = 'least-outstanding';
  private rotation = 0;
  pick(candidates: readonly EndpointState[]): EndpointState {
    nonEmpty(candidates);
    this.rotation = (this.rotation + 1) % candidates.length;
    let best = candidates[this.rotation] as EndpointState;
    for (let i = 1; i < candidates.length; i++) {
      const candidate = candidates[(this.rotation + i) % candidates.length] as EndpointState;
      if (candidate.outstanding < best.outstanding) best = candidate;
    }
    return best;
  }
}

/** Two random candidates, the one with fewer requests in flight wins (Mitzenmacher). */
class PowerOfTwoChoices implements BalancerPolicy {
  readonly name = 'power-of-two';
  constructor(private readonly random: Random) {}
  pick(candidates: readonly EndpointState[]): EndpointState {
    nonEmpty(candidates);
    if (candidates.length === 1) return candidates[0] as EndpointState;
    const first = Math.floor(this.random() * candidates.length);
    let second = Math.floor(this.random() * (candidates.length - 1));
    if (second >= first) second++;
    const a = candidates[first] as EndpointState;
    const b = candidates[second] as EndpointState;
    return b.outstanding < a.outstanding ? b : a;
  }
}

/** The same key always goes to the same endpoint while it is healthy (cache locality). */
class KeyAffinity implements BalancerPolicy {
  readonly name = 'key-affinity';
  private readonly ring: HashRing;
  private readonly fallback = new RoundRobin();
  constructor(addresses: readonly string[], virtualNodesPerEndpoint: number) {
    this.ring = new HashRing(addresses, virtualNodesPerEndpoint);
  }
  pick(candidates: readonly EndpointState[], key: Uint8Array | undefined): EndpointState {
    nonEmpty(candidates);
    if (key === undefined) return this.fallback.pick(candidates);
    const byAddress = new Map(candidates.map((c) => [c.address, c]));
    const owner = this.ring.lookup(key, (address) => byAddress.has(address));
    if (owner === undefined) throw new Error('balancer invariant: ring has no allowed owner');
    return byAddress.get(owner) as EndpointState;
  }
}

export function createPolicy(
  options: BalancerOptions,
  addresses: readonly string[],
  random: Random = systemRandom,
): BalancerPolicy {
  const policy = options.policy;
  switch (policy) {
    case 'round-robin':
      return new RoundRobin();
    case 'random':
      return new RandomPick(random);
    case 'weighted-round-robin':
      return new SmoothWeightedRoundRobin();
    case 'least-outstanding':
      return new LeastOutstanding();
    case 'power-of-two':
      return new PowerOfTwoChoices(random);
    case 'key-affinity':
      return new KeyAffinity(addresses, options.virtualNodesPerEndpoint ?? 160);
    default:
      return assertNever(policy);
  }
}

/**
 * The endpoints of one client with their health. An endpoint is ejected after
 * `failuresToEject` consecutive failures; an ejected endpoint gets no traffic until a probe
 * (driven by the client's timer, see dueForProbe) succeeds. Ejections back off exponentially.
 * When every endpoint is ejected the pool fails open and picks among all of them, since
 * refusing every request helps nobody.
 */
export class EndpointPool {
  readonly endpoints: readonly EndpointState[];
  private readonly policy: BalancerPolicy;
  private leaderAddress: string | undefined;

  constructor(
    addresses: readonly string[],
    balancer: BalancerOptions,
    private readonly health: HealthOptions = defaultHealthOptions,
    private readonly clock: Clock = systemClock,
    random: Random = systemRandom,
  ) {
    if (addresses.length === 0) throw new RangeError('at least one endpoint is required');
    if (new Set(addresses).size !== addresses.length) throw new RangeError('endpoints must be distinct');
    this.endpoints = addresses.map((a) => new EndpointState(a, balancer.weights?.[a] ?? 1));
    this.policy = createPolicy(balancer, addresses, random);
  }

  get policyName(): BalancerPolicyName {
    return this.policy.name;
  }

  /** Picks an endpoint for a request; `exclude` holds endpoints this request already failed on. */
  pick(key?: Uint8Array, exclude?: ReadonlySet<string>): EndpointState {
    const notExcluded = this.endpoints.filter((e) => exclude === undefined || !exclude.has(e.address));
    const healthy = notExcluded.filter((e) => !e.ejected);
    if (healthy.length > 0) return this.policy.pick(healthy, key);
    const pool = notExcluded.length > 0 ? notExcluded : this.endpoints;
    return this.policy.pick(pool, key);
  }

  /** The leader's endpoint when known and not ejected. */
  leader(exclude?: ReadonlySet<string>): EndpointState | undefined {
    if (this.leaderAddress === undefined) return undefined;
    const leader = this.endpoints.find((e) => e.address === this.leaderAddress);
    if (leader === undefined || leader.ejected || exclude?.has(leader.address)) return undefined;
    return leader;
  }

  setLeaderByMemberId(leaderMemberId: string | undefined): void {
    const leader = this.endpoints.find((e) => e.memberId !== undefined && e.memberId === leaderMemberId);
    this.leaderAddress = leader?.address;
  }

  forgetLeader(): void {
    this.leaderAddress = undefined;
  }

  get leaderKnown(): string | undefined {
    return this.leaderAddress;
  }

  recordSuccess(endpoint: EndpointState): void {
    endpoint.consecutiveFailures = 0;
  }

  recordFailure(endpoint: EndpointState): void {
    endpoint.consecutiveFailures++;
    if (!endpoint.ejected && endpoint.consecutiveFailures >= this.health.failuresToEject)
      this.eject(endpoint);
    if (endpoint.address === this.leaderAddress) this.leaderAddress = undefined;
  }

  /** Ejected endpoints whose probe time has come. */
  dueForProbe(): EndpointState[] {
    const now = this.clock.nowMs();
    return this.endpoints.filter((e) => e.ejected && e.probeAtMs <= now);
  }

  recordProbe(endpoint: EndpointState, healthy: boolean): void {
    if (!endpoint.ejected) return;
    if (healthy) {
      endpoint.ejected = false;
      endpoint.consecutiveFailures = 0;
      endpoint.ejections = 0;
      return;
    }
    this.eject(endpoint);
  }

  private eject(endpoint: EndpointState): void {
    endpoint.ejected = true;
    endpoint.ejections++;
    const backoffMs = this.health.ejectionBaseMs * 2 ** Math.min(endpoint.ejections - 1, 20);
    endpoint.probeAtMs = this.clock.nowMs() + Math.min(this.health.ejectionMaxMs, backoffMs);
  }
}
