import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import { isDeepStrictEqual } from 'node:util';
import { EntryType, type Message, MessageType, message } from '../../src/raft/types.js';
import type { LinkVerdict } from '../../src/transport/peer-transport.js';
import { type Harness, sleep, startTransport, waitFor } from './helpers.js';

// Jepsen-lite: three transports under a seeded random link filter (drops, delays) and node
// restarts on the same port. The transport may lose messages (Raft tolerates that) but must never
// corrupt, duplicate or misroute one, and must recover fully once the faults stop.

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function prng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

function tagged(from: number, to: number, id: number, random: () => number): Message {
  const dataBytes = Math.floor(random() * 2000);
  const data = new Uint8Array(dataBytes).map((_, i) => (id + i) & 0xff);
  return message({
    type: random() < 0.5 ? MessageType.Append : MessageType.Heartbeat,
    from,
    to,
    term: id,
    index: id,
    commit: id * 3,
    entries: dataBytes > 0 ? [{ term: id, index: id + 1, type: EntryType.Normal, data }] : [],
    context: Uint8Array.of(id & 0xff, (id >> 8) & 0xff),
  });
}

function plain(value: unknown): unknown {
  if (value instanceof Uint8Array) return Array.from(value);
  if (Array.isArray(value)) return value.map(plain);
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plain(v)]));
  }
  return value;
}

function same(a: Message, b: Message): boolean {
  return isDeepStrictEqual(plain(a), plain(b));
}

describe('PeerTransport under faults', () => {
  it('never corrupts, duplicates or misroutes under drops, delays and restarts, and recovers', async () => {
    const random = prng(20261125);
    const ids = [1, 2, 3];
    const fast = { pingIntervalMs: 100, idleTimeoutMs: 1000, backoffMinMs: 5, backoffMaxMs: 50 };
    const live = new Map<number, Harness>();
    const urls = new Map<number, string>();
    const received = new Map<number, Message[]>(ids.map((id) => [id, []]));
    const verdicts = { drop: 0, delay: 0 };
    const filter = (): LinkVerdict => {
      const r = random();
      if (r < 0.1) {
        verdicts.drop++;
        return 'drop';
      }
      if (r < 0.3) {
        verdicts.delay++;
        return { delayMs: 1 + Math.floor(random() * 15) };
      }
      return 'pass';
    };
    const start = async (id: number): Promise<void> => {
      const h = await startTransport(id, {
        ...fast,
        ...(urls.has(id) ? { listenUrl: urls.get(id)! } : {}),
        onMessage: (m) => received.get(id)!.push(m),
      });
      h.transport.setLinkFilter(filter);
      urls.set(id, h.transport.url);
      live.set(id, h);
    };
    for (const id of ids) await start(id);
    cleanups.push(async () => {
      for (const h of live.values()) await h.transport.close();
    });
    const wire = (): void => {
      for (const [id, h] of live) {
        for (const peer of ids) if (peer !== id && urls.has(peer)) h.transport.addPeer(peer, urls.get(peer)!);
      }
    };
    wire();

    const sent = new Map<number, Message>();
    let nextId = 1;
    const deadline = Date.now() + 1500;
    let nextRestart = Date.now() + 300;
    let restarts = 0;
    while (Date.now() < deadline) {
      for (const [id, h] of live) {
        const batch: Message[] = [];
        const count = Math.floor(random() * 6);
        for (let k = 0; k < count; k++) {
          const to = ids.filter((p) => p !== id)[Math.floor(random() * 2)]!;
          const m = tagged(id, to, nextId++, random);
          sent.set(m.index, m);
          batch.push(m);
        }
        h.transport.send(batch);
      }
      if (Date.now() > nextRestart) {
        nextRestart += 300;
        restarts++;
        const victim = ids[Math.floor(random() * ids.length)]!;
        await live.get(victim)!.transport.close();
        live.delete(victim);
        await sleep(20);
        await start(victim);
        wire();
      }
      await sleep(2);
    }

    for (const h of live.values()) h.transport.setLinkFilter(undefined);
    await sleep(100); // delayed deliveries drain
    const before = new Map([...received].map(([id, list]) => [id, list.length]));
    // Recovery: with faults off, every link carries traffic again.
    await waitFor(
      'all links up',
      () =>
        [...live].every(([id, h]) => {
          const peers = h.transport.stats().peers;
          return ids.every((p) => p === id || peers[String(p)]?.connected === 1);
        }),
      5000,
    );
    const finals: Message[] = [];
    for (const [id, h] of live) {
      const batch = ids.filter((p) => p !== id).map((to) => tagged(id, to, nextId++, random));
      for (const m of batch) sent.set(m.index, m);
      finals.push(...batch);
      h.transport.send(batch);
    }
    await waitFor('final round delivered', () =>
      finals.every((f) => received.get(f.to)!.some((m) => m.index === f.index)),
    );

    let deliveredCount = 0;
    for (const [id, list] of received) {
      const seen = new Set<number>();
      for (const m of list) {
        assert.equal(m.to, id, 'misrouted');
        assert.ok(!seen.has(m.index), `message ${m.index} delivered twice`);
        seen.add(m.index);
        const original = sent.get(m.index);
        assert.ok(original !== undefined, `message ${m.index} was never sent`);
        assert.ok(same(m, original), `message ${m.index} altered in transit`);
      }
      deliveredCount += list.length;
    }
    assert.ok(deliveredCount > sent.size / 3, `only ${deliveredCount} of ${sent.size} delivered`);
    assert.ok([...before.values()].every((n) => n > 0));
    assert.ok(restarts >= 3, `only ${restarts} restarts`);
    assert.ok(
      verdicts.drop > 50 && verdicts.delay > 100,
      `faults barely exercised: ${JSON.stringify(verdicts)}`,
    );
  });
});
