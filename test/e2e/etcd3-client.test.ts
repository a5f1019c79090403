// The `etcd3` npm client (a third-party gRPC client) against a real 3-node Concord cluster,
// connected to all three endpoints so its requests land on leader and followers alike.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Etcd3, EtcdLockFailedError, type IKeyValue, type Watcher } from 'etcd3';
import { e2eEngines, type ProcessCluster, startConcordCluster } from '../support/cluster.js';
import { pollUntil } from '../support/process-cluster.js';

const lockWorkers = 4;
const lockRoundsPerWorker = 5;
const lockAttemptsMax = 2000;
const lockRetryDelayMs = 10;

async function acquireWithRetry<T>(acquire: () => Promise<T>): Promise<T> {
  for (let attempt = 0; attempt < lockAttemptsMax; attempt++) {
    try {
      return await acquire();
    } catch (error) {
      if (!(error instanceof EtcdLockFailedError)) throw error;
      await new Promise((resolve) => setTimeout(resolve, lockRetryDelayMs));
    }
  }
  throw new Error(`lock not acquired after ${lockAttemptsMax} attempts`);
}

interface SeenEvent {
  type: 'put' | 'delete';
  key: string;
  value: string;
  modRevision: string;
}

function recordEvents(watcher: Watcher, into: SeenEvent[]): void {
  const push = (type: SeenEvent['type']) => (kv: IKeyValue) =>
    into.push({ type, key: kv.key.toString(), value: kv.value.toString(), modRevision: kv.mod_revision });
  watcher.on('put', push('put'));
  watcher.on('delete', push('delete'));
}

/** The suite runs on both engines under `npm test`; CONCORD_E2E_CONSENSUS picks one (see e2eEngines). */
const E2E_ENGINES = ['raft', 'multi-paxos'] as const;

for (const consensus of e2eEngines(E2E_ENGINES)) {
  describe(`etcd3 npm client against a 3-node Concord cluster on ${consensus}`, { timeout: 120_000 }, () => {
    let cluster: ProcessCluster;
    let client: Etcd3;
    const extraClients: Etcd3[] = [];
    const newClient = () => {
      const extra = new Etcd3({ hosts: cluster.endpoints() });
      extraClients.push(extra);
      return extra;
    };
    const check = (body: () => Promise<void>) => () => cluster.withLogsOnFailure(body);

    before(async () => {
      cluster = await startConcordCluster({ size: 3, consensus });
      client = new Etcd3({ hosts: cluster.endpoints() });
    });

    after(async () => {
      for (const extra of extraClients) extra.close();
      client?.close();
      await cluster?.dispose();
    });

    it(
      'KV: put, get, prefix range, delete with revisions that only grow',
      check(async () => {
        const first = await client.put('kv/one').value('1').exec();
        const second = await client.put('kv/two').value('2').exec();
        assert.ok(BigInt(second.header.revision) > BigInt(first.header.revision));
        assert.equal(await client.get('kv/one').string(), '1');
        assert.deepEqual(await client.getAll().prefix('kv/').strings(), { 'kv/one': '1', 'kv/two': '2' });
        const updated = await client.put('kv/one').value('uno').getPrevious();
        assert.equal(updated?.value.toString(), '1');
        const meta = await client.get('kv/one').exec();
        assert.equal(meta.kvs[0]?.version, '2');
        assert.equal(meta.kvs[0]?.create_revision, first.header.revision);
        const deleted = await client.delete().prefix('kv/').exec();
        assert.equal(deleted.deleted, '2');
        assert.equal(await client.get('kv/one').string(), null);
      }),
    );

    it(
      'txn: then-branch when every compare holds, else-branch otherwise',
      check(async () => {
        await client.put('txn/k').value('a');
        const won = await client
          .if('txn/k', 'Value', '==', 'a')
          .and('txn/k', 'Version', '==', 1)
          .then(client.put('txn/k').value('b'))
          .else(client.put('txn/k').value('else'))
          .commit();
        assert.equal(won.succeeded, true);
        const lost = await client
          .if('txn/k', 'Value', '==', 'a')
          .then(client.put('txn/k').value('never'))
          .else(client.get('txn/k'))
          .commit();
        assert.equal(lost.succeeded, false);
        assert.equal(lost.responses[0]?.response_range?.kvs[0]?.value.toString(), 'b');
        const absent = await client
          .if('txn/absent', 'Create', '==', 0)
          .then(client.put('txn/absent').value('created'))
          .commit();
        assert.equal(absent.succeeded, true);
        assert.equal(await client.get('txn/absent').string(), 'created');
      }),
    );

    it(
      'watch on a prefix delivers events in revision order and resumes from a revision',
      check(async () => {
        const events: SeenEvent[] = [];
        const watcher = await client.watch().prefix('watch/').create();
        recordEvents(watcher, events);
        const writer = newClient();
        const revisions: string[] = [];
        for (let i = 0; i < 10; i++) {
          revisions.push(
            (
              await writer
                .put(`watch/k${i % 3}`)
                .value(`v${i}`)
                .exec()
            ).header.revision,
          );
        }
        await writer.put('other').value('not watched');
        await writer.delete().key('watch/k0');
        await pollUntil('11 watch events', 10_000, async () => (events.length >= 11 ? true : undefined));
        await watcher.cancel();
        assert.equal(events.length, 11);
        assert.deepEqual(
          events.slice(0, 10).map((e) => e.modRevision),
          revisions,
        );
        assert.deepEqual(events[10], {
          type: 'delete',
          key: 'watch/k0',
          value: '',
          modRevision: events[10]?.modRevision,
        });
        for (let i = 1; i < events.length; i++) {
          assert.ok(
            BigInt(events[i]?.modRevision ?? 0) > BigInt(events[i - 1]?.modRevision ?? 0),
            'revisions increase',
          );
        }

        // A new watcher starting at the 6th put's revision replays from there, in the same order.
        const replayed: SeenEvent[] = [];
        const resumed = await client
          .watch()
          .prefix('watch/')
          .startRevision(revisions[5] as string)
          .create();
        recordEvents(resumed, replayed);
        await pollUntil('the replayed events', 10_000, async () => (replayed.length >= 6 ? true : undefined));
        await resumed.cancel();
        assert.deepEqual(replayed, events.slice(5));
      }),
    );

    it(
      'leases: keepalive holds the key; revoke and expiry both delete attached keys',
      check(async () => {
        const kept = client.lease(2, { autoKeepAlive: false });
        await kept.put('lease/kept').value('x');
        const revoked = client.lease(30, { autoKeepAlive: false });
        await revoked.put('lease/revoked').value('y');
        assert.equal(await client.get('lease/revoked').string(), 'y');
        await revoked.revoke();
        assert.equal(
          await client.get('lease/revoked').string(),
          null,
          'revoke deletes attached keys at once',
        );

        // Keep the 2 s lease alive for ~4 s: the key must survive past its TTL.
        const keepUntil = Date.now() + 4000;
        while (Date.now() < keepUntil) {
          await kept.keepaliveOnce();
          await new Promise((resolve) => setTimeout(resolve, 500));
        }
        assert.equal(await client.get('lease/kept').string(), 'x', 'kept alive past its TTL');
        const ttl = await client.lease(1, { autoKeepAlive: false });
        await ttl.put('lease/expiring').value('z');
        const grantedAt = Date.now();
        await pollUntil('the expired lease key to vanish', 15_000, async () =>
          (await client.get('lease/expiring').string()) === null ? true : undefined,
        );
        assert.ok(Date.now() - grantedAt >= 900, 'the key outlived at least its TTL');
        await pollUntil('the unrefreshed 2 s lease key to vanish', 15_000, async () =>
          (await client.get('lease/kept').string()) === null ? true : undefined,
        );
        kept.release();
        ttl.release();
      }),
    );

    it(
      'locks: concurrent holders never overlap and every critical section runs',
      check(async () => {
        let inside = 0;
        let maxInside = 0;
        let sections = 0;
        const worker = async (id: number) => {
          const mine = newClient();
          for (let round = 0; round < lockRoundsPerWorker; round++) {
            // etcd3's Lock does not queue: acquire() fails at once while another session holds
            // the key, so contenders retry with a bounded number of attempts.
            const lock = await acquireWithRetry(() => mine.lock('locks/x').ttl(10).acquire());
            inside++;
            maxInside = Math.max(maxInside, inside);
            const counter = Number((await mine.get('locks/counter').string()) ?? '0');
            await new Promise((resolve) => setTimeout(resolve, 5));
            await mine.put('locks/counter').value(String(counter + 1));
            await mine.put('locks/last').value(String(id));
            sections++;
            inside--;
            await lock.release();
          }
        };
        await Promise.all(Array.from({ length: lockWorkers }, (_, id) => worker(id)));
        assert.equal(maxInside, 1, 'two holders were inside the lock at once');
        assert.equal(sections, lockWorkers * lockRoundsPerWorker);
        assert.equal(await client.get('locks/counter').string(), String(lockWorkers * lockRoundsPerWorker));
      }),
    );

    it(
      'elections: first campaigner leads, observers see it, resign hands over',
      check(async () => {
        const election = client.election('e2e-election', 5);
        const first = newClient().election('e2e-election', 5).campaign('first');
        await first.wait();
        const observer = await election.observe();
        assert.equal(observer.leader(), 'first');
        const changes: Array<string | undefined> = [];
        observer.on('change', (value) => changes.push(value));

        const second = newClient().election('e2e-election', 5).campaign('second');
        // The client's wait() hears only an 'elected' emitted after it is called, and second can
        // win before first.resign() returns: the member serving second's check may apply the
        // revoke before the one answering first's revoke does. So listen from the start.
        const secondWins = second.wait();
        secondWins.catch(() => undefined); // a failure is reported where it is awaited below
        let secondElected = false;
        second.on('elected', () => {
          secondElected = true;
        });
        // While first leads, second must stay a candidate.
        await new Promise((resolve) => setTimeout(resolve, 500));
        assert.equal(secondElected, false);
        assert.equal(await election.leader(), 'first');

        await first.resign();
        await secondWins;
        assert.equal(await election.leader(), 'second');
        await pollUntil('the observer to see the new leader', 10_000, async () =>
          changes.includes('second') ? true : undefined,
        );
        await observer.cancel();
        await second.resign();
      }),
    );

    it(
      'maintenance status and member list describe the three members',
      check(async () => {
        const members = await client.cluster.memberList({});
        assert.equal(members.members.length, 3);
        assert.deepEqual(members.members.map((m) => m.name).sort(), ['m0', 'm1', 'm2']);
        const ids = new Set(members.members.map((m) => m.ID));
        const status = await client.maintenance.status();
        assert.ok(ids.has(status.leader), `leader ${status.leader} is a member`);
        assert.equal(status.version.length > 0, true);
      }),
    );
  });
}
