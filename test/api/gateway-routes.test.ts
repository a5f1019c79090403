// The JSON gateway's maintenance, cluster, lock and election routes, including the two
// server-streaming ones (snapshot, observe), exercised with fetch as a curl user would.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { Disposable } from '../../src/services/backend.js';
import { type Harness, startHarness } from './harness.js';

const b64 = (text: string) => Buffer.from(text).toString('base64');
const unb64 = (text: unknown) => Buffer.from(String(text), 'base64').toString();

type Json = Record<string, unknown>;

/** Reads JSON lines from a streaming response until `count` arrived (then stops reading). */
async function readLines(body: ReadableStream<Uint8Array>, count: number): Promise<Json[]> {
  const reader = body.getReader();
  const lines: Json[] = [];
  let buffer = '';
  const decoder = new TextDecoder();
  while (lines.length < count) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    for (let newline = buffer.indexOf('\n'); newline >= 0; newline = buffer.indexOf('\n')) {
      lines.push(JSON.parse(buffer.slice(0, newline)) as Json);
      buffer = buffer.slice(newline + 1);
    }
  }
  reader.releaseLock();
  return lines;
}

describe('JSON gateway maintenance, cluster, lock and election routes', () => {
  let harness: Harness;
  let liveObservers = 0;

  before(async () => {
    harness = await startHarness();
    // Count observe subscriptions so the test can see the gateway dispose them.
    const observe = harness.backend.observe.bind(harness.backend);
    harness.backend.observe = (name, onLeader): Disposable => {
      liveObservers++;
      const subscription = observe(name, onLeader);
      return {
        dispose: () => {
          liveObservers--;
          subscription.dispose();
        },
      };
    };
  });

  after(async () => {
    await harness.close();
  });

  const post = async (path: string, body: unknown = {}) => {
    const response = await fetch(`${harness.server.url}${path}`, {
      method: 'POST',
      body: JSON.stringify(body),
    });
    return { status: response.status, json: (await response.json()) as Json };
  };

  it('hash and hashkv answer with the backend hashes', async () => {
    const hash = await post('/v3/maintenance/hash');
    assert.equal(hash.status, 200);
    assert.equal(hash.json.hash, 1234);
    await post('/v3/kv/put', { key: b64('h'), value: b64('1') });
    const hashKv = await post('/v3/maintenance/hashkv', { revision: '0' });
    assert.equal(hashKv.json.hash, 5678);
    const future = await post('/v3/maintenance/hashkv', { revision: '999999' });
    assert.equal(future.status, 400);
    assert.equal(future.json.error, 'etcdserver: mvcc: required revision is a future revision');
  });

  it('alarm activates, lists and deactivates with enum names', async () => {
    const memberID = harness.backend.memberId.toString();
    const activated = await post('/v3/maintenance/alarm', { action: 'ACTIVATE', memberID, alarm: 'NOSPACE' });
    assert.equal(activated.status, 200);
    assert.deepEqual(activated.json.alarms, [{ memberID, alarm: 'NOSPACE' }]);
    const listed = await post('/v3/maintenance/alarm', { action: 'GET' });
    assert.deepEqual(listed.json.alarms, [{ memberID, alarm: 'NOSPACE' }]);
    await post('/v3/maintenance/alarm', { action: 'DEACTIVATE', memberID, alarm: 'NOSPACE' });
    const cleared = await post('/v3/maintenance/alarm', {});
    assert.equal(cleared.json.alarms, undefined, 'an empty list is omitted');
  });

  it('defragment and transfer-leadership answer without a header (as etcd); an unknown target is not found', async () => {
    const defrag = await post('/v3/maintenance/defragment');
    assert.equal(defrag.status, 200);
    assert.equal(defrag.json.header, undefined);
    const moved = await post('/v3/maintenance/transfer-leadership', {
      targetID: harness.backend.memberId.toString(),
    });
    assert.equal(moved.status, 200);
    const unknown = await post('/v3/maintenance/transfer-leadership', { targetID: '3' });
    assert.equal(unknown.status, 404);
    assert.equal(unknown.json.error, 'etcdserver: member not found');
  });

  it('member add, update, promote and remove change the member list', async () => {
    const added = await post('/v3/cluster/member/add', {
      peerURLs: ['http://10.0.0.2:2380'],
      isLearner: true,
    });
    assert.equal(added.status, 200);
    const member = added.json.member as Json;
    assert.deepEqual(member.peerURLs, ['http://10.0.0.2:2380']);
    assert.equal(member.isLearner, true);
    const id = String(member.ID);
    const duplicate = await post('/v3/cluster/member/add', { peerURLs: ['http://10.0.0.2:2380'] });
    assert.equal(duplicate.json.error, 'etcdserver: Peer URLs already exists');
    const updated = await post('/v3/cluster/member/update', { ID: id, peerURLs: ['http://10.0.0.3:2380'] });
    const afterUpdate = (updated.json.members as Json[]).find((m) => m.ID === id);
    assert.deepEqual(afterUpdate?.peerURLs, ['http://10.0.0.3:2380']);
    const promoted = await post('/v3/cluster/member/promote', { ID: id });
    assert.equal(
      (promoted.json.members as Json[]).find((m) => m.ID === id)?.isLearner,
      undefined,
      'a voter has isLearner false, omitted',
    );
    const again = await post('/v3/cluster/member/promote', { ID: id });
    assert.equal(again.json.error, 'etcdserver: can only promote a learner member');
    const removed = await post('/v3/cluster/member/remove', { ID: id });
    assert.equal(
      (removed.json.members as Json[]).some((m) => m.ID === id),
      false,
    );
    const gone = await post('/v3/cluster/member/remove', { ID: id });
    assert.equal(gone.status, 404);
    const badUrl = await post('/v3/cluster/member/add', { peerURLs: ['not a url'] });
    assert.equal(badUrl.json.error, 'etcdserver: given member URLs are invalid');
  });

  it('lock returns a key under the name and unlock releases it', async () => {
    await post('/v3/lease/grant', { TTL: '30', ID: '77' });
    const locked = await post('/v3/lock/lock', { name: b64('gw-lock'), lease: '77' });
    assert.equal(locked.status, 200);
    const key = String(locked.json.key);
    assert.match(unb64(key), /^gw-lock\//);
    const held = await post('/v3/kv/range', { key: locked.json.key });
    assert.equal(held.json.count, '1');
    const unlocked = await post('/v3/lock/unlock', { key });
    assert.equal(unlocked.status, 200);
    const released = await post('/v3/kv/range', { key: locked.json.key });
    assert.equal(released.json.count, undefined);
    const nameless = await post('/v3/lock/lock', {});
    assert.equal(nameless.json.error, '"name" field must be provided');
  });

  it('campaign, leader, proclaim, observe (streamed) and resign', async () => {
    const nobody = await post('/v3/election/leader', { name: b64('gw-e') });
    assert.equal(nobody.status, 500);
    assert.equal(nobody.json.error, 'election: no leader');
    await post('/v3/lease/grant', { TTL: '30', ID: '78' });
    const won = await post('/v3/election/campaign', { name: b64('gw-e'), lease: '78', value: b64('first') });
    const leader = won.json.leader as Json;
    assert.equal(unb64(leader.name), 'gw-e');
    assert.equal(leader.lease, '78');

    const abort = new AbortController();
    const observed = await fetch(`${harness.server.url}/v3/election/observe`, {
      method: 'POST',
      body: JSON.stringify({ name: b64('gw-e') }),
      signal: abort.signal,
    });
    assert.equal(observed.status, 200);
    assert.ok(observed.body);
    const lines = readLines(observed.body, 2);
    await new Promise((resolve) => setTimeout(resolve, 50));
    const proclaimed = await post('/v3/election/proclaim', { leader, value: b64('second') });
    assert.equal(proclaimed.status, 200);
    const values = (await lines).map((line) => unb64(((line.result as Json).kv as Json).value));
    assert.deepEqual(values, ['first', 'second']);
    assert.equal(liveObservers, 1);
    abort.abort();
    for (let i = 0; i < 100 && liveObservers > 0; i++)
      await new Promise((resolve) => setTimeout(resolve, 10));
    assert.equal(liveObservers, 0, 'the subscription ends with the client');

    const current = await post('/v3/election/leader', { name: b64('gw-e') });
    assert.equal(unb64((current.json.kv as Json).value), 'second');
    const noLeaderKey = await post('/v3/election/proclaim', { value: b64('x') });
    assert.equal(noLeaderKey.json.error, '"leader" field must be provided');
    assert.equal((await post('/v3/election/resign', { leader })).status, 200);
    assert.equal(
      (await post('/v3/election/leader', { name: b64('gw-e') })).json.error,
      'election: no leader',
    );
  });

  it('snapshot streams base64 chunks followed by their sha256', async () => {
    const response = await fetch(`${harness.server.url}/v3/maintenance/snapshot`, {
      method: 'POST',
      body: '{}',
    });
    assert.equal(response.status, 200);
    assert.ok(response.body);
    const lines = await readLines(response.body, Number.POSITIVE_INFINITY);
    const results = lines.map((line) => line.result as Json);
    assert.ok(results.length >= 2);
    const blobs = results.map((r) => Buffer.from(String(r.blob), 'base64'));
    const content = Buffer.concat(blobs.slice(0, -1));
    assert.equal(content.length % 512, 0);
    assert.deepEqual(blobs.at(-1), createHash('sha256').update(content).digest());
    assert.equal(results.at(-1)?.remaining_bytes, undefined, 'the last message has 0 remaining');
    assert.ok(results.every((r) => (r.header as Json).revision === String(harness.backend.revision)));
  });

  it('compaction with physical=true compacts through the gateway', async () => {
    await post('/v3/kv/put', { key: b64('c'), value: b64('1') });
    const revision = String(harness.backend.revision);
    const compacted = await post('/v3/kv/compaction', { revision, physical: true });
    assert.equal(compacted.status, 200);
    const old = await post('/v3/kv/range', { key: b64('c'), revision: '1' });
    assert.equal(old.json.error, 'etcdserver: mvcc: required revision has been compacted');
  });
});
