// Coordination recipes under concurrency against a real 3-node cluster: mutual exclusion with
// fencing, lock and leadership handed on when the holder process is SIGKILLed, counters under
// contention and under a leader crash, queues, barriers, semaphores, readers-writer locks,
// service discovery and config watches.

import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import {
  Barrier,
  type Client,
  ConfigWatch,
  Counter,
  DoubleBarrier,
  Election,
  guardedPut,
  type LeaderInfo,
  Mutex,
  PriorityQueue,
  Queue,
  ReadWriteLock,
  Semaphore,
  type ServiceInstance,
  ServiceRegistry,
} from '../../src/client/index.js';
import type { ProcessCluster } from '../support/process-cluster.js';
import { clientFor, startCluster, waitUntil } from './support.js';

const holderScript = fileURLToPath(new URL('./fixtures/holder.js', import.meta.url));

/** Starts the holder process and resolves with its first output line once it holds. */
function startHolder(args: string[]): { child: ChildProcess; line: Promise<string> } {
  const child = spawn(process.execPath, [holderScript, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    err += chunk.toString();
  });
  const line = new Promise<string>((resolve, reject) => {
    child.stdout?.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const newline = out.indexOf('\n');
      if (newline >= 0) resolve(out.slice(0, newline));
    });
    child.once('exit', (code) => reject(new Error(`holder exited early (${code}): ${err}`)));
  });
  line.catch(() => undefined);
  return { child, line };
}

async function killHolder(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGKILL');
  await exited;
}

describe('recipes against a 3-node cluster', { timeout: 150_000 }, () => {
  let cluster: ProcessCluster;
  const clients: Client[] = [];
  const newClient = () => {
    const c = clientFor(cluster);
    clients.push(c);
    return c;
  };

  before(async () => {
    cluster = await startCluster({ size: 3, electionTimeoutMs: 1000 });
  });

  after(async () => {
    for (const c of clients) c.close();
    await cluster?.dispose();
  });

  test('Mutex: 5 contenders never overlap and fencing tokens strictly increase', async () => {
    let inside = 0;
    let overlaps = 0;
    const tokens: bigint[] = [];
    const contender = async (id: number) => {
      const client = newClient();
      for (let round = 0; round < 4; round++) {
        const mutex = new Mutex(client, 'recipes/mutex', { ttlSeconds: 5 });
        const token = await mutex.lock();
        inside++;
        if (inside > 1) overlaps++;
        tokens.push(token);
        const applied = await guardedPut(client, 'recipes/mutex-data', `${id}-${round}`, {
          lockKey: mutex.key,
          token,
        });
        assert.equal(applied, true, 'the holder can write under its fencing token');
        await sleep(5);
        inside--;
        await mutex.unlock();
      }
    };
    await Promise.all([0, 1, 2, 3, 4].map(contender));
    assert.equal(overlaps, 0);
    assert.equal(tokens.length, 20);
    for (let i = 1; i < tokens.length; i++)
      assert.ok((tokens[i] as bigint) > (tokens[i - 1] as bigint), `token ${i} grows`);
  });

  test('Mutex: when the holder process is SIGKILLed its lease expires and the waiter gets the lock; the old token is fenced off', async () => {
    const client = newClient();
    const holder = startHolder([
      'lock',
      cluster.members.map((m) => m.clientUrl).join(','),
      'recipes/killed-lock',
      '2',
    ]);
    try {
      const [, holderKey, holderToken] = (await holder.line).split(' ');
      const waiter = new Mutex(client, 'recipes/killed-lock', { ttlSeconds: 5 });
      let acquiredAt = 0;
      const acquired = waiter.lock().then((token) => {
        acquiredAt = Date.now();
        return token;
      });
      await sleep(500);
      assert.equal(acquiredAt, 0, 'the waiter waits while the holder lives');
      const killedAt = Date.now();
      await killHolder(holder.child);
      const token = await acquired;
      const waitedMs = acquiredAt - killedAt;
      assert.ok(waitedMs < 6000, `lock handed on ${waitedMs} ms after the kill (TTL 2 s)`);
      assert.ok(token > BigInt(holderToken as string));
      const stale = await guardedPut(client, 'recipes/fenced', 'stale', {
        lockKey: holderKey as string,
        token: BigInt(holderToken as string),
      });
      assert.equal(stale, false, "the dead holder's token no longer applies");
      assert.equal(await guardedPut(client, 'recipes/fenced', 'fresh', { lockKey: waiter.key, token }), true);
      await waiter.unlock();
    } finally {
      await killHolder(holder.child);
    }
  });

  test('Election: the next candidate takes over when the leader process dies; observers see both leaders', async () => {
    const client = newClient();
    const holder = startHolder([
      'elect',
      cluster.members.map((m) => m.clientUrl).join(','),
      'recipes/election',
      '2',
      'first',
    ]);
    const seen: string[] = [];
    const controller = new AbortController();
    try {
      await holder.line;
      const observer = new Election(client, 'recipes/election');
      const observing = (async () => {
        for await (const leader of observer.observe({ signal: controller.signal })) {
          seen.push((leader as LeaderInfo).value.toString());
        }
      })().catch(() => undefined);
      assert.equal((await observer.leader())?.value.toString(), 'first');
      const candidate = new Election(client, 'recipes/election', { ttlSeconds: 5 });
      const elected = candidate.campaign('second');
      await sleep(300);
      assert.equal(candidate.isLeader, false);
      await killHolder(holder.child);
      await elected;
      assert.equal(candidate.isLeader, true);
      assert.equal((await observer.leader())?.value.toString(), 'second');
      await candidate.proclaim('second-v2');
      await waitUntil('observer to see the new leader and its proclamation', 5000, () =>
        seen.includes('second-v2'),
      );
      assert.deepEqual(seen.slice(0, 1), ['first']);
      assert.ok(seen.indexOf('second') < seen.indexOf('second-v2'));
      await candidate.resign();
      assert.equal(await observer.leader(), undefined);
      controller.abort();
      await observing;
    } finally {
      controller.abort();
      await killHolder(holder.child);
    }
  });

  test('Election: observing ends when aborted while its request is in flight (nobody leads, nothing else will wake it)', async () => {
    const client = newClient();
    const controller = new AbortController();
    // The abort lands while the observer's get is outstanding, before it starts waiting.
    const abortingGet = new Proxy(client, {
      get(target, property) {
        const value: unknown = Reflect.get(target, property);
        if (typeof value !== 'function') return value;
        if (property !== 'get') return value.bind(target);
        return async (...args: unknown[]) => {
          const result: unknown = await value.apply(target, args);
          controller.abort();
          return result;
        };
      },
    });
    const observer = new Election(abortingGet, 'recipes/observe-abort');
    const seen: LeaderInfo[] = [];
    const observing = (async () => {
      for await (const leader of observer.observe({ signal: controller.signal })) seen.push(leader);
    })();
    const stuck = sleep(5000).then(() => 'still observing 5 s after the abort');
    assert.equal(await Promise.race([observing.then(() => 'ended'), stuck]), 'ended');
    assert.deepEqual(seen, []);
  });

  test('Counter: 4 clients x 25 concurrent increments end at exactly 100', async (t) => {
    const counters = [0, 1, 2, 3].map(() => new Counter(newClient(), 'recipes/counter'));
    const results: bigint[] = [];
    await Promise.all(
      counters.map(async (counter) => {
        for (let i = 0; i < 25; i++) results.push(await counter.incr());
      }),
    );
    assert.equal(await (counters[0] as Counter).get(), 100n);
    assert.deepEqual(
      [...results].sort((a, b) => (a < b ? -1 : 1)),
      Array.from({ length: 100 }, (_, i) => BigInt(i + 1)),
      'every increment returned a distinct new value',
    );
    const conflicts = counters.reduce((sum, c) => sum + c.conflicts, 0);
    t.diagnostic(`counter 4x25: final 100, CAS conflicts retried: ${conflicts}`);
  });

  test('Counter: with the cluster leader killed mid-run the value is within [acked, acked + unknown]', async (t) => {
    const counters = [0, 1, 2, 3].map(() => new Counter(newClient(), 'recipes/counter-crash'));
    let acked = 0;
    let unknown = 0;
    let notApplied = 0;
    let done = 0;
    const leader = await cluster.leaderIndex();
    const worker = async (counter: Counter) => {
      for (let i = 0; i < 25; i++) {
        for (;;) {
          try {
            await counter.incr();
            acked++;
            break;
          } catch (error) {
            const outcome = (error as { outcome?: string }).outcome;
            if (outcome === 'unknown') {
              unknown++;
              break;
            }
            // Not applied: retrying cannot double-count.
            notApplied++;
            await sleep(50);
          }
        }
        done++;
      }
    };
    const workers = Promise.all(counters.map(worker));
    await waitUntil('a third of the increments', 20_000, () => done >= 30);
    await cluster.kill(leader);
    await workers;
    await cluster.restart(leader);
    const final = Number(await (counters[0] as Counter).get());
    t.diagnostic(
      `counter with leader killed: acked ${acked}, unknown ${unknown}, retried-not-applied ${notApplied}, final ${final}`,
    );
    assert.equal(acked + unknown, 100);
    assert.ok(
      final >= acked && final <= acked + unknown,
      `final ${final} within [${acked}, ${acked + unknown}]`,
    );
  });

  test('Queue: items come out once each, in FIFO order; dequeue waits for an item', async () => {
    const client = newClient();
    const queue = new Queue(client, 'recipes/queue');
    const waiting = queue.dequeue();
    await sleep(200);
    await queue.enqueue('first');
    assert.equal((await waiting).toString(), 'first');
    for (let i = 0; i < 10; i++) await queue.enqueue(`item-${i}`);
    const inOrder: string[] = [];
    for (let i = 0; i < 5; i++) inOrder.push((await queue.dequeue()).toString());
    assert.deepEqual(inOrder, ['item-0', 'item-1', 'item-2', 'item-3', 'item-4']);
    const consumers = [newClient(), newClient()].map((c) => new Queue(c, 'recipes/queue'));
    const rest = await Promise.all([0, 1, 2, 3, 4].map((i) => (consumers[i % 2] as Queue).dequeue()));
    assert.deepEqual(rest.map((b) => b.toString()).sort(), [
      'item-5',
      'item-6',
      'item-7',
      'item-8',
      'item-9',
    ]);
    assert.equal(await queue.length(), 0);
  });

  test('PriorityQueue: lowest priority number first, FIFO within a priority', async () => {
    const queue = new PriorityQueue(newClient(), 'recipes/pq');
    await queue.enqueue('low-1', 5);
    await queue.enqueue('high-1', 1);
    await queue.enqueue('low-2', 5);
    await queue.enqueue('high-2', 1);
    await queue.enqueue('mid', 3);
    const out: string[] = [];
    for (let i = 0; i < 5; i++) out.push((await queue.dequeue()).toString());
    assert.deepEqual(out, ['high-1', 'high-2', 'mid', 'low-1', 'low-2']);
  });

  test('Barrier: waiters block while it is held and all pass once released', async () => {
    const barrier = new Barrier(newClient(), 'recipes/barrier');
    await barrier.hold();
    let passed = 0;
    const waiters = [0, 1, 2].map(() =>
      new Barrier(newClient(), 'recipes/barrier').wait().then(() => passed++),
    );
    await sleep(400);
    assert.equal(passed, 0);
    await barrier.release();
    await Promise.all(waiters);
    assert.equal(passed, 3);
    await new Barrier(newClient(), 'recipes/barrier').wait();
  });

  test('DoubleBarrier: nobody gets past enter until all 3 arrive, nobody past leave until all left', async () => {
    const events: string[] = [];
    const participant = async (id: number, delayMs: number) => {
      const barrier = new DoubleBarrier(newClient(), 'recipes/double', 3, { ttlSeconds: 5 });
      await sleep(delayMs);
      events.push(`arrive-${id}`);
      await barrier.enter();
      events.push(`entered-${id}`);
      await sleep(delayMs);
      events.push(`leaving-${id}`);
      await barrier.leave();
      events.push(`left-${id}`);
    };
    await Promise.all([participant(0, 0), participant(1, 150), participant(2, 300)]);
    const lastArrive = Math.max(...[0, 1, 2].map((i) => events.indexOf(`arrive-${i}`)));
    const firstEntered = Math.min(...[0, 1, 2].map((i) => events.indexOf(`entered-${i}`)));
    assert.ok(lastArrive < firstEntered, events.join(' '));
    const lastLeaving = Math.max(...[0, 1, 2].map((i) => events.indexOf(`leaving-${i}`)));
    const firstLeft = Math.min(...[0, 1, 2].map((i) => events.indexOf(`left-${i}`)));
    assert.ok(lastLeaving < firstLeft, events.join(' '));
  });

  test('Semaphore: at most 2 of 6 contenders hold a permit at once, and 2 do', async () => {
    let holding = 0;
    let holdingMax = 0;
    await Promise.all(
      [0, 1, 2, 3, 4, 5].map(async () => {
        const semaphore = new Semaphore(newClient(), 'recipes/semaphore', 2, { ttlSeconds: 5 });
        await semaphore.acquire();
        holding++;
        holdingMax = Math.max(holdingMax, holding);
        // Hold until a second holder shows up (or 1.5 s), so the bound is reached, not assumed.
        const until = Date.now() + 1500;
        while (holding < 2 && Date.now() < until) await sleep(10);
        await sleep(50);
        holding--;
        await semaphore.release();
      }),
    );
    assert.equal(holdingMax, 2);
  });

  test('ReadWriteLock: readers share, a writer excludes readers and writers', async () => {
    const client = newClient();
    const r1 = new ReadWriteLock(client, 'recipes/rw');
    const r2 = new ReadWriteLock(newClient(), 'recipes/rw');
    await r1.readLock();
    await r2.readLock();
    const writer = new ReadWriteLock(newClient(), 'recipes/rw');
    let written = false;
    const writing = writer.writeLock().then(() => {
      written = true;
    });
    await sleep(300);
    assert.equal(written, false, 'the writer waits for the readers');
    const lateReader = new ReadWriteLock(newClient(), 'recipes/rw');
    let lateRead = false;
    const reading = lateReader.readLock().then(() => {
      lateRead = true;
    });
    await r1.unlock();
    await sleep(200);
    assert.equal(written, false);
    await r2.unlock();
    await writing;
    await sleep(200);
    assert.equal(lateRead, false, 'a reader that came after the writer waits for it');
    await writer.unlock();
    await reading;
    await lateReader.unlock();
  });

  test('ServiceRegistry and ConfigWatch: members and config changes reach watchers', async () => {
    const registry = new ServiceRegistry(newClient(), 'recipes/services');
    const a = await registry.register('api', 'a', 'http://10.0.0.1:80', { ttlSeconds: 5 });
    const b = await registry.register('api', 'b', 'http://10.0.0.2:80', { ttlSeconds: 5 });
    assert.deepEqual(
      (await registry.discover('api')).map((i) => i.id),
      ['a', 'b'],
    );
    const updates: ServiceInstance[][] = [];
    const watch = await registry.watch('api', (instances) => updates.push(instances));
    await a.deregister();
    await waitUntil('deregistration seen', 5000, () =>
      updates.some((u) => u.length === 1 && u[0]?.id === 'b'),
    );
    watch.close();
    await b.deregister();

    const client = newClient();
    const configs: Map<string, string>[] = [];
    const config = new ConfigWatch(client, 'recipes/config/', { onChange: (c) => configs.push(new Map(c)) });
    await client.put('recipes/config/timeout', '5s');
    const initial = await config.start();
    assert.equal(initial.get('timeout'), '5s');
    await client
      .txn()
      .then(
        { type: 'put', key: 'recipes/config/retries', value: '3' },
        { type: 'put', key: 'recipes/config/timeout', value: '9s' },
      )
      .commit();
    await client.delete('recipes/config/retries');
    await waitUntil('config updates', 5000, () => configs.length >= 3);
    config.close();
    assert.deepEqual(
      Object.fromEntries(configs[1] ?? []),
      { timeout: '9s', retries: '3' },
      'a txn arrives as one change',
    );
    assert.deepEqual(Object.fromEntries(configs[2] ?? []), { timeout: '9s' });
  });
});
