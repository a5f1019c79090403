// Balancing policies and endpoint health, with a fake clock and a seeded generator: each policy's
// distribution over 10,000 picks, and ejection, probing and re-admission.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type BalancerPolicyName, EndpointPool, type EndpointState } from '../../src/client/balancer.js';
import { FakeClock, seededRandom } from '../../src/client/clock.js';
import { HashRing } from '../../src/client/hash-ring.js';

const endpoints = ['http://a:1', 'http://b:1', 'http://c:1'];
const picks = 10_000;

function countPicks(pool: EndpointPool, n: number, key?: (i: number) => Uint8Array): Map<string, number> {
  const counts = new Map<string, number>(pool.endpoints.map((e) => [e.address, 0]));
  for (let i = 0; i < n; i++) {
    const chosen = pool.pick(key?.(i));
    counts.set(chosen.address, (counts.get(chosen.address) ?? 0) + 1);
  }
  return counts;
}

function pool(
  policy: BalancerPolicyName,
  weights?: Record<string, number>,
  clock = new FakeClock(),
): EndpointPool {
  return new EndpointPool(
    endpoints,
    { policy, weights },
    { failuresToEject: 3, ejectionBaseMs: 1000, ejectionMaxMs: 8000 },
    clock,
    seededRandom(42),
  );
}

function show(counts: Map<string, number>): string {
  return [...counts.entries()].map(([a, n]) => `${a.slice(7, 8)}=${n}`).join(' ');
}

describe('balancer distributions over 10,000 picks', () => {
  test('round-robin gives every endpoint an equal share (±1)', (t) => {
    const counts = countPicks(pool('round-robin'), picks);
    t.diagnostic(`round-robin: ${show(counts)}`);
    for (const n of counts.values()) assert.ok(Math.abs(n - picks / 3) <= 1, show(counts));
  });

  test('random spreads within 5% of an equal share', (t) => {
    const counts = countPicks(pool('random'), picks);
    t.diagnostic(`random: ${show(counts)}`);
    for (const n of counts.values()) assert.ok(Math.abs(n - picks / 3) < picks * 0.05, show(counts));
  });

  test('smooth weighted round-robin follows the weights exactly and interleaves (nginx order)', (t) => {
    const weighted = pool('weighted-round-robin', { 'http://a:1': 5, 'http://b:1': 1, 'http://c:1': 1 });
    const first = Array.from({ length: 7 }, () => weighted.pick().address.slice(7, 8)).join('');
    assert.equal(first, 'aabacaa');
    const counts = countPicks(weighted, picks - 7);
    counts.set('http://a:1', (counts.get('http://a:1') ?? 0) + 5);
    counts.set('http://b:1', (counts.get('http://b:1') ?? 0) + 1);
    counts.set('http://c:1', (counts.get('http://c:1') ?? 0) + 1);
    t.diagnostic(`weighted 5:1:1: ${show(counts)}`);
    assert.ok(Math.abs((counts.get('http://a:1') ?? 0) - (picks * 5) / 7) <= 2, show(counts));
    assert.ok(Math.abs((counts.get('http://b:1') ?? 0) - picks / 7) <= 2, show(counts));
  });

  test('least-outstanding always takes the endpoint with the fewest requests in flight', () => {
    const least = pool('least-outstanding');
    const [a, b, c] = least.endpoints as [EndpointState, EndpointState, EndpointState];
    a.outstanding = 5;
    b.outstanding = 0;
    c.outstanding = 2;
    for (let i = 0; i < 100; i++) assert.equal(least.pick().address, b.address);
    b.outstanding = 0;
    a.outstanding = 0;
    c.outstanding = 0;
    const counts = countPicks(least, 999);
    for (const n of counts.values()) assert.equal(n, 333, 'an idle pool rotates evenly');
  });

  test('power-of-two never picks the single most loaded endpoint and is uniform when idle', (t) => {
    const p2c = pool('power-of-two');
    const [a] = p2c.endpoints as [EndpointState];
    a.outstanding = 10;
    const loaded = countPicks(p2c, picks);
    t.diagnostic(`power-of-two with a busy: ${show(loaded)}`);
    assert.equal(loaded.get(a.address), 0);
    a.outstanding = 0;
    const idle = countPicks(p2c, picks);
    t.diagnostic(`power-of-two idle: ${show(idle)}`);
    for (const n of idle.values()) assert.ok(Math.abs(n - picks / 3) < picks * 0.05, show(idle));
  });

  test('load-aware policies send more to a fast endpoint than round-robin does (queue simulation)', (t) => {
    // Each tick 4 requests arrive; a completes 3 per tick, b and c 1 per tick each, so an even
    // split (4/3 each) overloads b and c while a idles.
    const ratesPerTick = new Map([
      ['http://a:1', 3],
      ['http://b:1', 1],
      ['http://c:1', 1],
    ]);
    const simulate = (policy: BalancerPolicyName) => {
      const p = pool(policy);
      const counts = new Map<string, number>(endpoints.map((e) => [e, 0]));
      let outstandingMax = 0;
      for (let tick = 0; tick < picks / 4; tick++) {
        for (let r = 0; r < 4; r++) {
          const chosen = p.pick();
          chosen.outstanding++;
          counts.set(chosen.address, (counts.get(chosen.address) ?? 0) + 1);
        }
        for (const e of p.endpoints) {
          outstandingMax = Math.max(outstandingMax, e.outstanding);
          e.outstanding = Math.max(0, e.outstanding - (ratesPerTick.get(e.address) ?? 0));
        }
      }
      return { counts, outstandingMax };
    };
    const rr = simulate('round-robin');
    const lor = simulate('least-outstanding');
    const p2c = simulate('power-of-two');
    t.diagnostic(
      `4 arrivals/tick; fast a (3/tick), slow b, c (1/tick): round-robin ${show(rr.counts)} max queue ${rr.outstandingMax}`,
    );
    t.diagnostic(`least-outstanding ${show(lor.counts)} max queue ${lor.outstandingMax}`);
    t.diagnostic(`power-of-two ${show(p2c.counts)} max queue ${p2c.outstandingMax}`);
    assert.ok((lor.counts.get('http://a:1') ?? 0) > picks * 0.45);
    assert.ok((p2c.counts.get('http://a:1') ?? 0) > picks * 0.45);
    assert.ok(rr.outstandingMax > 100, 'round-robin lets the slow queues grow');
    assert.ok(lor.outstandingMax < 10 && p2c.outstandingMax < 10, 'load-aware queues stay short');
  });

  test("key affinity sends a key to one endpoint, spreads keys evenly, and moves only an ejected endpoint's keys", (t) => {
    const clock = new FakeClock();
    const affinity = pool('key-affinity', undefined, clock);
    const key = (i: number) => Buffer.from(`user/${i}`);
    const owners = Array.from({ length: picks }, (_, i) => affinity.pick(key(i)).address);
    for (let i = 0; i < 100; i++) assert.equal(affinity.pick(key(i)).address, owners[i]);
    const counts = new Map<string, number>();
    for (const o of owners) counts.set(o, (counts.get(o) ?? 0) + 1);
    t.diagnostic(`key affinity, 10,000 keys: ${show(counts)}`);
    for (const n of counts.values()) assert.ok(Math.abs(n - picks / 3) < picks * 0.1, show(counts));
    const b = affinity.endpoints[1] as EndpointState;
    for (let i = 0; i < 3; i++) affinity.recordFailure(b);
    let moved = 0;
    for (let i = 0; i < picks; i++) {
      const now = affinity.pick(key(i)).address;
      assert.notEqual(now, b.address);
      if (owners[i] !== b.address) assert.equal(now, owners[i], 'keys of healthy endpoints stay put');
      else moved++;
    }
    assert.equal(moved, counts.get(b.address));
  });

  test('the hash ring keeps most keys in place when an endpoint is added', () => {
    const before = new HashRing(['a', 'b', 'c']);
    const after = new HashRing(['a', 'b', 'c', 'd']);
    let moved = 0;
    for (let i = 0; i < picks; i++) if (before.lookup(`k${i}`) !== after.lookup(`k${i}`)) moved++;
    assert.ok(moved > picks * 0.15 && moved < picks * 0.35, `moved ${moved} of ${picks}, expected about 1/4`);
  });
});

describe('endpoint health', () => {
  test('an endpoint is ejected after 3 consecutive failures and gets no traffic while ejected', () => {
    const clock = new FakeClock();
    const p = pool('round-robin', undefined, clock);
    const b = p.endpoints[1] as EndpointState;
    p.recordFailure(b);
    p.recordFailure(b);
    p.recordSuccess(b);
    p.recordFailure(b);
    p.recordFailure(b);
    assert.equal(b.ejected, false, 'a success resets the count');
    p.recordFailure(b);
    assert.equal(b.ejected, true);
    const counts = countPicks(p, 1000);
    assert.equal(counts.get(b.address), 0);
  });

  test('an ejected endpoint is probed after its ejection time, re-ejected with doubled backoff, re-admitted on success', () => {
    const clock = new FakeClock();
    const p = pool('round-robin', undefined, clock);
    const b = p.endpoints[1] as EndpointState;
    for (let i = 0; i < 3; i++) p.recordFailure(b);
    assert.deepEqual(p.dueForProbe(), []);
    clock.advance(999);
    assert.deepEqual(p.dueForProbe(), []);
    clock.advance(1);
    assert.deepEqual(p.dueForProbe(), [b]);
    p.recordProbe(b, false);
    clock.advance(1999);
    assert.deepEqual(p.dueForProbe(), [], 'second ejection lasts 2000 ms');
    clock.advance(1);
    assert.deepEqual(p.dueForProbe(), [b]);
    p.recordProbe(b, true);
    assert.equal(b.ejected, false);
    const counts = countPicks(p, 300);
    assert.equal(counts.get(b.address), 100, 're-admitted endpoint gets its share again');
  });

  test('ejection backoff is capped at ejectionMaxMs', () => {
    const clock = new FakeClock();
    const p = pool('round-robin', undefined, clock);
    const a = p.endpoints[0] as EndpointState;
    for (let i = 0; i < 3; i++) p.recordFailure(a);
    for (let i = 0; i < 10; i++) p.recordProbe(a, false);
    assert.equal(a.probeAtMs - clock.nowMs(), 8000);
  });

  test('with every endpoint ejected the pool fails open instead of refusing requests', () => {
    const p = pool('round-robin');
    for (const e of p.endpoints) for (let i = 0; i < 3; i++) p.recordFailure(e);
    const counts = countPicks(p, 300);
    for (const n of counts.values()) assert.equal(n, 100);
  });

  test('excluded endpoints (already failed for this request) are skipped while others remain', () => {
    const p = pool('round-robin');
    const exclude = new Set(['http://a:1', 'http://b:1']);
    for (let i = 0; i < 10; i++) assert.equal(p.pick(undefined, exclude).address, 'http://c:1');
  });

  test('the leader endpoint is used when known and healthy, forgotten when it fails', () => {
    const p = pool('round-robin');
    p.endpoints.forEach((e, i) => {
      e.memberId = String(100 + i);
    });
    p.setLeaderByMemberId('102');
    assert.equal(p.leader()?.address, 'http://c:1');
    p.recordFailure(p.endpoints[2] as EndpointState);
    assert.equal(p.leader(), undefined);
  });
});
