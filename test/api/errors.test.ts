// Exact gRPC status codes and messages for refused requests, checked with a raw gRPC client,
// and that a refused request never reaches the backend.

import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import { status } from '@grpc/grpc-js';
import { EtcdError } from '../../src/api/errors.js';
import { type Harness, hostPort, type RawClient, rawCall, rawClient, startHarness } from './harness.js';

const b = (text: string) => Buffer.from(text);

function expectStatus(code: number, details: string) {
  return (error: { code?: number; details?: string }) => {
    assert.equal(error.details, details);
    assert.equal(error.code, code);
    return true;
  };
}

describe('etcd error statuses', () => {
  let harness: Harness;
  let kv: RawClient;
  let lease: RawClient;
  let cluster: RawClient;
  let auth: RawClient;

  before(async () => {
    harness = await startHarness();
    const address = hostPort(harness.server);
    kv = rawClient(address, 'etcdserverpb.KV');
    lease = rawClient(address, 'etcdserverpb.Lease');
    cluster = rawClient(address, 'etcdserverpb.Cluster');
    auth = rawClient(address, 'etcdserverpb.Auth');
  });

  beforeEach(() => {
    harness.backend.calls.length = 0;
    harness.backend.failWrites = undefined;
  });

  after(async () => {
    for (const client of [kv, lease, cluster, auth]) client.close();
    await harness.close();
  });

  it('an empty key is refused before the backend sees it', async () => {
    const emptyKey = expectStatus(status.INVALID_ARGUMENT, 'etcdserver: key is not provided');
    await assert.rejects(rawCall(kv, 'Put', { key: b(''), value: b('v') }), emptyKey);
    await assert.rejects(rawCall(kv, 'Range', { key: b('') }), emptyKey);
    await assert.rejects(rawCall(kv, 'DeleteRange', { key: b('') }), emptyKey);
    assert.deepEqual(harness.backend.calls, []);
  });

  it('ignore_value with a value and ignore_lease with a lease are refused', async () => {
    await assert.rejects(
      rawCall(kv, 'Put', { key: b('k'), value: b('v'), ignore_value: true }),
      expectStatus(status.INVALID_ARGUMENT, 'etcdserver: value is provided'),
    );
    await assert.rejects(
      rawCall(kv, 'Put', { key: b('k'), lease: '5', ignore_lease: true }),
      expectStatus(status.INVALID_ARGUMENT, 'etcdserver: lease is provided'),
    );
    assert.deepEqual(harness.backend.calls, []);
  });

  it('a txn putting one key twice is refused as a duplicate key', async () => {
    const put = (key: string) => ({ request_put: { key: b(key), value: b('v') } });
    await assert.rejects(
      rawCall(kv, 'Txn', { success: [put('a'), put('a')] }),
      expectStatus(status.INVALID_ARGUMENT, 'etcdserver: duplicate key given in txn request'),
    );
    const deleteAll = { request_delete_range: { key: b('a'), range_end: b('b') } };
    await assert.rejects(
      rawCall(kv, 'Txn', { success: [put('ab'), deleteAll] }),
      expectStatus(status.INVALID_ARGUMENT, 'etcdserver: duplicate key given in txn request'),
    );
    assert.deepEqual(harness.backend.calls, []);
  });

  it('a txn with more than 128 ops in a branch is refused; 128 is accepted', async () => {
    const ops = (n: number) =>
      Array.from({ length: n }, (_, i) => ({ request_put: { key: b(`op${i}`), value: b('v') } }));
    await assert.rejects(
      rawCall(kv, 'Txn', { success: ops(129) }),
      expectStatus(status.INVALID_ARGUMENT, 'etcdserver: too many operations in txn request'),
    );
    assert.deepEqual(harness.backend.calls, []);
    const accepted = await rawCall(kv, 'Txn', { success: ops(128) });
    assert.equal(accepted.succeeded, true);
    assert.equal((accepted.responses as unknown[]).length, 128);
  });

  it('a put over max-request-bytes is refused with request too large and stores nothing', async () => {
    const value = Buffer.alloc(1.5 * 1024 * 1024 + 1, 1);
    await assert.rejects(
      rawCall(kv, 'Put', { key: b('big'), value }),
      expectStatus(status.INVALID_ARGUMENT, 'etcdserver: request is too large'),
    );
    assert.deepEqual(harness.backend.calls, []);
    const justUnder = Buffer.alloc(1024 * 1024, 2);
    await rawCall(kv, 'Put', { key: b('big'), value: justUnder });
  });

  it('a message beyond the gRPC receive limit is refused by gRPC itself', async () => {
    const value = Buffer.alloc(3 * 1024 * 1024, 1);
    await assert.rejects(rawCall(kv, 'Put', { key: b('huge'), value }), (error: { code?: number }) => {
      assert.equal(error.code, status.RESOURCE_EXHAUSTED);
      return true;
    });
    assert.deepEqual(harness.backend.calls, []);
  });

  it('reads at compacted and future revisions fail with the mvcc errors', async () => {
    await rawCall(kv, 'Put', { key: b('r'), value: b('1') });
    await rawCall(kv, 'Put', { key: b('r'), value: b('2') });
    const header = (await rawCall(kv, 'Range', { key: b('r') })).header as { revision: string };
    const revision = Number(header.revision);
    await rawCall(kv, 'Compact', { revision });
    await assert.rejects(
      rawCall(kv, 'Range', { key: b('r'), revision: revision - 1 }),
      expectStatus(status.OUT_OF_RANGE, 'etcdserver: mvcc: required revision has been compacted'),
    );
    await assert.rejects(
      rawCall(kv, 'Range', { key: b('r'), revision: revision + 100 }),
      expectStatus(status.OUT_OF_RANGE, 'etcdserver: mvcc: required revision is a future revision'),
    );
  });

  it('backend availability errors travel with etcd codes and texts', async () => {
    const cases: Array<[EtcdError, number, string]> = [
      [new EtcdError('noLeader'), status.UNAVAILABLE, 'etcdserver: no leader'],
      [new EtcdError('leaderChanged'), status.UNAVAILABLE, 'etcdserver: leader changed'],
      [new EtcdError('timeout'), status.UNAVAILABLE, 'etcdserver: request timed out'],
      [new EtcdError('noSpace'), status.RESOURCE_EXHAUSTED, 'etcdserver: mvcc: database space exceeded'],
      [new EtcdError('notCapable'), status.UNAVAILABLE, 'etcdserver: not capable'],
    ];
    for (const [error, code, details] of cases) {
      harness.backend.failWrites = error;
      await assert.rejects(rawCall(kv, 'Put', { key: b('k'), value: b('v') }), expectStatus(code, details));
    }
  });

  it('lease errors: unknown lease, TTL too large, and TTL -1 for an unknown lease time-to-live', async () => {
    await assert.rejects(
      rawCall(lease, 'LeaseRevoke', { ID: '99' }),
      expectStatus(status.NOT_FOUND, 'etcdserver: requested lease not found'),
    );
    await assert.rejects(
      rawCall(lease, 'LeaseGrant', { TTL: '9000000001' }),
      expectStatus(status.OUT_OF_RANGE, 'etcdserver: too large lease TTL'),
    );
    const ttl = await rawCall(lease, 'LeaseTimeToLive', { ID: '99' });
    assert.equal(ttl.TTL, '-1');
    const granted = await rawCall(lease, 'LeaseGrant', { TTL: '10', ID: '77' });
    await assert.rejects(
      rawCall(lease, 'LeaseGrant', { TTL: '10', ID: granted.ID as string }),
      expectStatus(status.FAILED_PRECONDITION, 'etcdserver: lease already exists'),
    );
  });

  it('lease IDs beyond 2^53 survive the round trip exactly', async () => {
    const id = '9007199254740993';
    const granted = await rawCall(lease, 'LeaseGrant', { TTL: '10', ID: id });
    assert.equal(granted.ID, id);
    const list = await rawCall(lease, 'LeaseLeases', {});
    assert.ok((list.leases as Array<{ ID: string }>).some((l) => l.ID === id));
  });

  it('member errors: bad URLs, unknown member, promoting a voter, duplicate peer URL', async () => {
    await assert.rejects(
      rawCall(cluster, 'MemberAdd', { peerURLs: ['not a url'] }),
      expectStatus(status.INVALID_ARGUMENT, 'etcdserver: given member URLs are invalid'),
    );
    await assert.rejects(
      rawCall(cluster, 'MemberRemove', { ID: '12345' }),
      expectStatus(status.NOT_FOUND, 'etcdserver: member not found'),
    );
    const members = await rawCall(cluster, 'MemberList', {});
    const self = (members.members as Array<{ ID: string; peerURLs: string[] }>)[0]!;
    assert.equal(self.ID, harness.backend.memberId.toString());
    await assert.rejects(
      rawCall(cluster, 'MemberPromote', { ID: self.ID }),
      expectStatus(status.FAILED_PRECONDITION, 'etcdserver: can only promote a learner member'),
    );
    await assert.rejects(
      rawCall(cluster, 'MemberAdd', { peerURLs: self.peerURLs }),
      expectStatus(status.FAILED_PRECONDITION, 'etcdserver: Peer URLs already exists'),
    );
  });

  it('auth answers as an etcd with authentication disabled', async () => {
    const state = await rawCall(auth, 'AuthStatus', {});
    assert.equal(state.enabled, false);
    await assert.rejects(
      rawCall(auth, 'Authenticate', { name: 'root', password: 'x' }),
      expectStatus(status.FAILED_PRECONDITION, 'etcdserver: authentication is not enabled'),
    );
    await assert.rejects(
      rawCall(auth, 'AuthEnable', {}),
      expectStatus(status.FAILED_PRECONDITION, 'etcdserver: root user does not exist'),
    );
  });

  it('every response header carries cluster id, member id, revision and raft term', async () => {
    const put = await rawCall(kv, 'Put', { key: b('h'), value: b('v') });
    const header = put.header as Record<string, string>;
    assert.equal(header.cluster_id, harness.backend.clusterId.toString());
    assert.equal(header.member_id, harness.backend.memberId.toString());
    assert.equal(header.revision, String(harness.backend.revision));
    assert.equal(header.raft_term, harness.backend.raftTerm.toString());
  });
});
