// The etcd3 npm client (a real third-party etcd client over gRPC) against the API layer.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Etcd3, EtcdLeaseInvalidError, GRPCOutOfRangeError, type IKeyValue, type Watcher } from 'etcd3';
import { backendKinds, type Harness, startHarness } from './harness.js';

for (const kind of backendKinds) {
  describe(`etcd3 npm client against the API server (${kind} backend)`, () => {
    let harness: Harness;
    let client: Etcd3;

    before(async () => {
      harness = await startHarness({}, kind);
      client = new Etcd3({ hosts: harness.server.url });
    });

    after(async () => {
      client.close();
      await harness.close();
    });

    it('put then get returns the stored value with etcd revisions', async () => {
      await client.put('alpha').value('one');
      assert.equal(await client.get('alpha').string(), 'one');
      const response = await client.get('alpha').exec();
      assert.equal(response.kvs.length, 1);
      assert.equal(response.kvs[0]!.version, '1');
      assert.equal(response.kvs[0]!.create_revision, response.kvs[0]!.mod_revision);
      assert.equal(response.header.revision, response.kvs[0]!.mod_revision);
    });

    it('prefix reads list keys in order and delete by prefix removes them all', async () => {
      await client.put('dir/b').value('2');
      await client.put('dir/a').value('1');
      await client.put('dir0').value('outside');
      assert.deepEqual(await client.getAll().prefix('dir/').strings(), { 'dir/a': '1', 'dir/b': '2' });
      assert.equal(await client.getAll().prefix('dir/').count(), 2);
      const deleted = await client.delete().prefix('dir/').exec();
      assert.equal(deleted.deleted, '2');
      assert.deepEqual(await client.getAll().prefix('dir/').keys(), []);
      assert.equal(await client.get('dir0').string(), 'outside');
    });

    it('txn runs the success branch only when every compare holds', async () => {
      await client.put('txn-key').value('v1');
      const won = await client
        .if('txn-key', 'Value', '==', 'v1')
        .then(client.put('txn-key').value('v2'))
        .else(client.put('txn-key').value('lost'))
        .commit();
      assert.equal(won.succeeded, true);
      const lost = await client
        .if('txn-key', 'Value', '==', 'v1')
        .then(client.put('txn-key').value('v3'))
        .else(client.get('txn-key'))
        .commit();
      assert.equal(lost.succeeded, false);
      const range = lost.responses[0]!.response_range!;
      assert.equal(range.kvs[0]!.value.toString(), 'v2');
    });

    it('watch delivers puts and deletes with prev kv, in order', async () => {
      const watcher: Watcher = await client.watch().key('watched').withPreviousKV().create();
      const seen: string[] = [];
      const done = new Promise<void>((resolve) => {
        watcher.on('put', (kv: IKeyValue, prev?: IKeyValue) => {
          seen.push(`put:${kv.value.toString()}:${prev?.value.toString() ?? '-'}`);
        });
        watcher.on('delete', (kv: IKeyValue, prev?: IKeyValue) => {
          seen.push(`delete:${prev?.value.toString() ?? '-'}`);
          if (kv.key.toString() === 'watched') resolve();
        });
      });
      await client.put('watched').value('a');
      await client.put('watched').value('b');
      await client.delete().key('watched');
      await done;
      await watcher.cancel();
      assert.deepEqual(seen, ['put:a:-', 'put:b:a', 'delete:b']);
    });

    it('watch from a start revision replays history', async () => {
      const first = await client.put('history').value('h1').exec();
      await client.put('history').value('h2');
      const values: string[] = [];
      const watcher = await client.watch().key('history').startRevision(first.header.revision).create();
      await new Promise<void>((resolve) => {
        watcher.on('put', (kv: IKeyValue) => {
          values.push(kv.value.toString());
          if (values.length === 2) resolve();
        });
      });
      await watcher.cancel();
      assert.deepEqual(values, ['h1', 'h2']);
    });

    it('lease grant attaches keys and revoke deletes them', async () => {
      const lease = client.lease(30, { autoKeepAlive: false });
      const id = await lease.grant();
      await lease.put('leased').value('x');
      const live = await client.get('leased').exec();
      assert.equal(live.kvs[0]!.lease, id);
      const keepAlive = await lease.keepaliveOnce();
      assert.equal(keepAlive.TTL, '30');
      await lease.revoke();
      assert.equal(await client.get('leased').string(), null);
    });

    it('compaction makes old revisions unreadable with the compacted error', async () => {
      const first = await client.put('compact-me').value('old').exec();
      await client.put('compact-me').value('new');
      const current = Number((await client.get('compact-me').exec()).header.revision);
      await client.kv.compact({ revision: current });
      await assert.rejects(
        client.get('compact-me').revision(first.header.revision).exec(),
        (error: Error) => {
          assert.ok(error instanceof GRPCOutOfRangeError);
          assert.match(error.message, /: etcdserver: mvcc: required revision has been compacted$/);
          return true;
        },
      );
    });

    it('a put bound to an unknown lease fails with the lease-not-found error the client maps', async () => {
      await assert.rejects(client.put('orphan').value('v').lease('424242').exec(), EtcdLeaseInvalidError);
      assert.equal(await client.get('orphan').string(), null);
    });
  });
}
