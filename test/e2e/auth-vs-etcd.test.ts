// etcd's auth, end to end: an etcdctl 3.4 transcript of the auth commands people use (users,
// roles, permissions on a key, a range and a prefix, auth enable, allowed and denied get, put, del,
// txn, watch, lock, maintenance and membership calls, password change, wrong password, root rules,
// revocations taking effect, auth disable) must print the same on etcd 3.4 and on a 3-member
// Concord cluster, after blanking response headers (IDs, terms). Then, on Concord: the etcd3 npm
// client with a user, a member restart that keeps users and roles, a permission change seen by
// every member at once, a forged or expired token refused (simple and JWT tokens).

import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Etcd3 } from 'etcd3';
import { startConcordCluster } from '../support/cluster.js';
import { runConcordctl as concordctl } from '../support/concordctl.js';
import { etcdAvailable, startEtcdCluster } from '../support/etcd-cluster.js';
import { etcdctl } from '../support/etcdctl.js';
import { type ProcessCluster, restoreFlags } from '../support/process-cluster.js';
import { type CertPair, makeTestPki, type TestPki } from '../support/tls-certs.js';

/** What a cluster restored from a snapshot of setUpUsers' cluster must answer. */
async function assertUsersCameAlong(endpoint: string): Promise<void> {
  const anonymous = await etcdctl(['get', 'app/one'], { endpoints: [endpoint] });
  assert.match(anonymous.stderr, /user name is empty/);
  const alice = await etcdctl(['--user', 'alice:alicepw', 'get', 'app/one'], { endpoints: [endpoint] });
  assert.equal(alice.stdout, 'app/one\n1\n', alice.stderr);
  const denied = await etcdctl(['--user', 'alice:alicepw', 'put', 'other', 'x'], { endpoints: [endpoint] });
  assert.match(denied.stderr, /permission denied/);
  const users = await etcdctl(['--user', 'root:rootpw', 'user', 'list'], { endpoints: [endpoint] });
  assert.equal(users.stdout, 'alice\nroot\n', users.stderr);
}

const ROOT = ['--user', 'root:rootpw'];
const ALICE = ['--user', 'alice:alicepw'];
const ALICE2 = ['--user', 'alice:newpw'];

interface Step {
  args: string[];
  stdin?: string;
  /** For commands that block (watch): stop after this long and compare what was printed. */
  timeoutMs?: number;
  /** What etcd's own answer must show, so a step failing the same way on both cannot pass unnoticed. */
  expect?: RegExp;
}

const transcript: Step[] = [
  { args: ['auth', 'enable'], expect: /root user does not exist/ },
  { args: ['user', 'add', 'root:rootpw'], expect: /User root created/ },
  { args: ['user', 'add', 'root:other'], expect: /user name already exists/ },
  { args: ['role', 'add', 'root'] },
  { args: ['role', 'add', 'root'], expect: /role name already exists/ },
  { args: ['user', 'add', 'alice:alicepw'] },
  { args: ['role', 'add', 'reader'] },
  { args: ['user', 'get', 'nobody'], expect: /user name not found/ },
  { args: ['role', 'get', 'nobody'], expect: /role name not found/ },
  // read on a key, readwrite on a prefix, write on a range
  { args: ['role', 'grant-permission', 'reader', 'read', 'foo'] },
  { args: ['role', 'grant-permission', 'reader', 'readwrite', 'pre/', '--prefix'] },
  { args: ['role', 'grant-permission', 'reader', 'write', 'a', 'z'] },
  { args: ['role', 'grant-permission', 'reader', 'read', 'r1', 'r5'] },
  { args: ['role', 'grant-permission', 'nobody', 'read', 'x'], expect: /role name not found/ },
  { args: ['role', 'revoke-permission', 'reader', 'bar'], expect: /permission is not granted/ },
  { args: ['user', 'grant-role', 'alice', 'reader'] },
  { args: ['user', 'grant-role', 'alice', 'reader'] },
  { args: ['user', 'grant-role', 'alice', 'nobody'], expect: /role name not found/ },
  { args: ['user', 'revoke-role', 'alice', 'nobody'], expect: /role is not granted/ },
  { args: ['role', 'get', 'reader'], expect: /KV Read/ },
  { args: ['role', 'get', 'reader', '-w', 'json'] },
  { args: ['user', 'get', 'alice'] },
  { args: ['user', 'get', 'alice', '--detail'] },
  { args: ['user', 'get', 'alice', '-w', 'json'] },
  { args: ['user', 'list'] },
  { args: ['role', 'list'] },
  // root exists but lacks the root role: etcdctl then tries to add the role, which exists.
  { args: ['auth', 'enable'], expect: /role name already exists/ },
  { args: ['user', 'grant-role', 'root', 'root'] },
  { args: ['auth', 'enable'], expect: /Authentication Enabled/ },
  { args: ['auth', 'enable'] },
  // no credentials, wrong ones
  { args: ['get', 'foo'], expect: /user name is empty/ },
  { args: ['put', 'foo', 'x'], expect: /user name is empty/ },
  {
    args: ['--user', 'root:wrong', 'get', 'foo'],
    expect: /authentication failed, invalid user ID or password/,
  },
  { args: ['--user', 'nobody:x', 'get', 'foo'], expect: /authentication failed/ },
  // root may do anything
  { args: [...ROOT, 'put', 'foo', '1'] },
  { args: [...ROOT, 'put', 'pre/a', '1'] },
  { args: [...ROOT, 'put', 'r2', 'v'] },
  { args: [...ROOT, 'put', 'secret', 's'] },
  // alice: read foo, readwrite pre/*, write [a, z), read [r1, r5)
  { args: [...ALICE, 'get', 'foo'], expect: /^exit 0\nfoo\n1/ },
  { args: [...ALICE, 'put', 'foo', '2'], expect: /OK/ },
  { args: [...ALICE, 'get', 'foo', '--prefix'], expect: /permission denied/ },
  { args: [...ALICE, 'get', 'r1', 'r5'], expect: /r2/ },
  { args: [...ALICE, 'get', 'r1', 'r6'], expect: /permission denied/ },
  { args: [...ALICE, 'put', 'b', '2'] },
  { args: [...ALICE, 'get', 'b'], expect: /permission denied/ },
  { args: [...ALICE, 'del', 'b', '--prev-kv'], expect: /permission denied/ },
  { args: [...ALICE, 'del', 'b'], expect: /^exit 0\n1/ },
  { args: [...ALICE, 'put', 'pre/a', '3', '--prev-kv'] },
  { args: [...ALICE, 'get', 'pre/', '--prefix'] },
  { args: [...ALICE, 'del', 'pre/', '--prefix', '--prev-kv'] },
  { args: [...ALICE, 'get', 'secret'], expect: /permission denied/ },
  { args: [...ALICE, 'put', 'zz', '1'], expect: /permission denied/ },
  // txn: every compare and both branches are checked
  { args: [...ALICE, 'txn'], stdin: 'value("foo") = "2"\n\nput foo 3\n\nput b 3\n\n', expect: /SUCCESS/ },
  { args: [...ALICE, 'txn'], stdin: 'value("foo") = "3"\n\nput foo 4\n\nput zz 3\n\n', expect: /denied/ },
  { args: [...ALICE, 'txn'], stdin: 'value("b") = "3"\n\nput foo 4\n\n\n', expect: /denied/ },
  { args: [...ALICE, 'txn'], stdin: 'value("foo") = "3"\n\nget foo\n\nget secret\n\n', expect: /denied/ },
  { args: [...ALICE, 'txn'], stdin: 'value("foo") = "3"\n\nget foo\n\n\n', expect: /SUCCESS/ },
  // watch: a key alice may read replays its history; one she may not is cancelled
  { args: [...ALICE, 'watch', 'foo', '--rev=1'], timeoutMs: 8000, expect: /PUT\nfoo\n1/ },
  { args: [...ALICE, 'watch', 'b'], expect: /watch is canceled by the server/ },
  { args: [...ALICE, 'watch', 'secret', '--prefix'], expect: /watch is canceled by the server/ },
  // admin-only calls, and lock/election through their KV requests
  { args: [...ALICE, 'user', 'list'], expect: /permission denied/ },
  { args: [...ALICE, 'role', 'list'], expect: /permission denied/ },
  { args: [...ALICE, 'user', 'get', 'alice'], expect: /Roles: reader/ },
  { args: [...ALICE, 'role', 'get', 'reader'] },
  { args: [...ALICE, 'user', 'get', 'root'], expect: /permission denied/ },
  { args: [...ALICE, 'role', 'get', 'root'], expect: /permission denied/ },
  { args: [...ALICE, 'user', 'add', 'bob:x'], expect: /permission denied/ },
  { args: [...ALICE, 'auth', 'disable'], expect: /permission denied/ },
  { args: [...ALICE, 'defrag'], expect: /auth: permission denied/ },
  { args: [...ALICE, 'endpoint', 'hashkv'], expect: /auth: permission denied/ },
  { args: ['endpoint', 'hashkv'], expect: /auth: user name is empty/ },
  { args: [...ALICE, 'member', 'add', 'x', '--peer-urls=http://127.0.0.1:1'], expect: /permission denied/ },
  { args: [...ALICE, 'lock', 'mylock', 'echo', 'held'], expect: /permission denied/ },
  { args: [...ALICE, 'elect', 'myelection', 'me'], expect: /permission denied/ },
  { args: [...ROOT, 'lock', 'mylock', 'echo', 'held'], expect: /held/ },
  // root rules while enabled
  { args: [...ROOT, 'user', 'delete', 'root'], expect: /invalid auth management/ },
  { args: [...ROOT, 'user', 'revoke-role', 'root', 'root'], expect: /invalid auth management/ },
  { args: [...ROOT, 'role', 'delete', 'root'], expect: /invalid auth management/ },
  // password change: the old one stops working
  {
    args: [...ROOT, 'user', 'passwd', 'alice', '--interactive=false'],
    stdin: 'newpw\n',
    expect: /Password updated/,
  },
  { args: [...ALICE, 'get', 'foo'], expect: /authentication failed/ },
  { args: [...ALICE2, 'get', 'foo'], expect: /^exit 0\nfoo\n3/ },
  // revocations take effect at once
  { args: [...ROOT, 'role', 'revoke-permission', 'reader', 'foo'] },
  { args: [...ALICE2, 'get', 'foo'], expect: /permission denied/ },
  { args: [...ROOT, 'user', 'revoke-role', 'alice', 'reader'] },
  { args: [...ALICE2, 'get', 'pre/a'], expect: /permission denied/ },
  { args: [...ROOT, 'user', 'grant-role', 'alice', 'reader'] },
  { args: [...ROOT, 'role', 'delete', 'reader'] },
  { args: [...ROOT, 'user', 'get', 'alice'] },
  { args: [...ROOT, 'user', 'delete', 'alice'] },
  { args: [...ALICE2, 'get', 'foo'], expect: /authentication failed/ },
  // auth disable: anyone may read again, and root may go
  { args: [...ROOT, 'auth', 'disable'], expect: /Authentication Disabled/ },
  { args: ['get', 'foo'], expect: /^exit 0\nfoo\n3/ },
  { args: ['user', 'delete', 'root'] },
  { args: ['auth', 'enable'], expect: /root user does not exist/ },
];

/** Response headers hold IDs and terms two clusters cannot share. */
function normalise(text: string): string {
  return text.replace(/"header":\{[^}]*\}/g, '"header":<h>');
}

async function run(
  cluster: ProcessCluster,
  step: Step,
  endpoint = cluster.members[0]!.clientUrl,
): Promise<string> {
  const result = await etcdctl(step.args, {
    endpoints: [endpoint],
    stdin: step.stdin,
    timeoutMs: step.timeoutMs,
  });
  const error = result.stderr.split('\n').find((l) => l.startsWith('Error:')) ?? '';
  // Watch cancellations and per-endpoint failures (defrag, hashkv) are printed on stderr too.
  const notes = result.stderr
    .split('\n')
    .filter((l) => l.startsWith('watch was canceled') || l.startsWith('Failed to'))
    .join('\n');
  const text = `exit ${result.timedOut ? 'timeout' : result.code}\n${result.stdout}${notes}${error}`;
  return normalise(text.replaceAll(endpoint.replace('http://', ''), '<endpoint>'));
}

async function gateway(
  endpoint: string,
  path: string,
  body: unknown,
  token?: string,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(`${endpoint}${path}`, {
    method: 'POST',
    headers: token === undefined ? {} : { Authorization: token },
    body: JSON.stringify(body),
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

const b64 = (text: string) => Buffer.from(text).toString('base64');

/** The first answer of a gateway watch stream (the create response), then the stream is dropped. */
async function firstWatchAnswer(
  endpoint: string,
  key: string,
  token?: string,
): Promise<Record<string, unknown>> {
  const abort = new AbortController();
  const response = await fetch(`${endpoint}/v3/watch`, {
    method: 'POST',
    headers: token === undefined ? {} : { Authorization: token },
    body: JSON.stringify({ create_request: { key: b64(key) } }),
    signal: abort.signal,
  });
  const reader = response.body!.getReader();
  let text = '';
  try {
    while (!text.includes('\n')) {
      const { value, done } = await reader.read();
      if (done) break;
      text += Buffer.from(value).toString();
    }
  } finally {
    abort.abort();
  }
  const { result } = JSON.parse(text.split('\n')[0]!) as { result: Record<string, unknown> };
  const { header: _header, ...rest } = result;
  return rest;
}

/** Root, and alice who may read and write under app/. */
async function setUpUsers(endpoint: string): Promise<void> {
  for (const args of [
    ['user', 'add', 'root:rootpw'],
    ['user', 'grant-role', 'root', 'root'],
    ['user', 'add', 'alice:alicepw'],
    ['role', 'add', 'app'],
    ['role', 'grant-permission', 'app', 'readwrite', 'app/', '--prefix'],
    ['user', 'grant-role', 'alice', 'app'],
    ['auth', 'enable'],
  ]) {
    const result = await etcdctl(args, { endpoints: [endpoint] });
    assert.equal(result.code, 0, `etcdctl ${args.join(' ')}: ${result.stderr}`);
  }
}

describe('etcd auth: the etcdctl transcript is the same on etcd 3.4 and Concord', {
  skip: !etcdAvailable() && 'etcd 3.4 is not installed',
  timeout: 600_000,
}, () => {
  let etcd: ProcessCluster | undefined;
  let concord: ProcessCluster | undefined;

  before(async () => {
    const [e, c] = await Promise.allSettled([
      startEtcdCluster({ size: 1 }),
      startConcordCluster({ size: 3 }),
    ]);
    if (e.status === 'rejected' || c.status === 'rejected') {
      await Promise.all([e, c].map((r) => (r.status === 'fulfilled' ? r.value.dispose() : undefined)));
      throw e.status === 'rejected' ? e.reason : (c as PromiseRejectedResult).reason;
    }
    etcd = e.value;
    concord = c.value;
  });

  after(async () => {
    await etcd?.dispose();
    await concord?.dispose();
  });

  it('prints the same thing for every command, in order', async () => {
    for (const step of transcript) {
      const [fromEtcd, fromConcord] = await Promise.all([run(etcd!, step), run(concord!, step)]);
      assert.equal(fromConcord, fromEtcd, `etcdctl ${step.args.join(' ')}`);
      if (step.expect) assert.match(fromEtcd, step.expect, `etcd's answer to etcdctl ${step.args.join(' ')}`);
    }
  });

  it('the gateway answers auth calls with etcd statuses and bodies', async () => {
    const pick = (r: { status: number; body: Record<string, unknown> }) => {
      const { header: _header, token: _token, ...rest } = r.body;
      return { status: r.status, ...rest };
    };
    for (const cluster of [etcd!, concord!]) await setUpUsers(cluster.members[0]!.clientUrl);
    const answers: unknown[][] = [];
    for (const cluster of [etcd!, concord!]) {
      const url = cluster.members[0]!.clientUrl;
      const out: unknown[] = [];
      const login = await gateway(url, '/v3/auth/authenticate', { name: 'alice', password: 'alicepw' });
      const token = String(login.body.token);
      out.push(pick(login), typeof login.body.token);
      out.push(pick(await gateway(url, '/v3/auth/authenticate', { name: 'alice', password: 'bad' })));
      out.push(pick(await gateway(url, '/v3/kv/put', { key: b64('app/x'), value: b64('1') }, token)));
      const range = await gateway(url, '/v3/kv/range', { key: b64('app/x') }, token);
      out.push(range.status, (range.body.kvs as unknown[] | undefined)?.length);
      out.push(pick(await gateway(url, '/v3/kv/range', { key: b64('other') }, token)));
      out.push(pick(await gateway(url, '/v3/kv/range', { key: b64('app/x') }, 'forged.1')));
      out.push(pick(await gateway(url, '/v3/kv/range', { key: b64('app/x') })));
      out.push(pick(await gateway(url, '/v3/auth/user/list', {}, token)));
      const rootLogin = await gateway(url, '/v3/auth/authenticate', { name: 'root', password: 'rootpw' });
      const rootToken = String(rootLogin.body.token);
      out.push(pick(await gateway(url, '/v3/auth/user/add', { name: '', password: 'x' }, rootToken)));
      out.push(pick(await gateway(url, '/v3/auth/role/add', { name: '' }, rootToken)));
      out.push(
        pick(
          await gateway(url, '/v3/auth/user/add', { name: 'np', options: { no_password: true } }, rootToken),
        ),
      );
      out.push(pick(await gateway(url, '/v3/auth/authenticate', { name: 'np', password: '' })));
      out.push(
        pick(
          await gateway(
            url,
            '/v3/auth/role/grant',
            { name: 'app', perm: { key: b64('k'), permType: 'WRITE' } },
            rootToken,
          ),
        ),
      );
      out.push(pick(await gateway(url, '/v3/auth/role/get', { role: 'app' }, rootToken)));
      out.push(pick(await gateway(url, '/v3/auth/user/delete', { name: 'root' }, rootToken)));
      out.push(pick(await gateway(url, '/v3/maintenance/hash', {}, token)));
      out.push(pick(await gateway(url, '/v3/maintenance/hash', {}, 'forged.2')));
      // watch refusals: no read permission, no user, a token nobody issued
      out.push(await firstWatchAnswer(url, 'secret', token));
      out.push(await firstWatchAnswer(url, 'secret'));
      out.push(await firstWatchAnswer(url, 'app/x', 'forged.3'));
      // a lease holding a key alice may not write can be neither revoked nor attached by her
      const grant = await gateway(url, '/v3/lease/grant', { TTL: '600' }, rootToken);
      const lease = String(grant.body.ID);
      out.push(
        pick(await gateway(url, '/v3/kv/put', { key: b64('secret'), value: b64('s'), lease }, rootToken)),
      );
      out.push(pick(await gateway(url, '/v3/kv/put', { key: b64('app/l'), value: b64('v'), lease }, token)));
      out.push(pick(await gateway(url, '/v3/lease/revoke', { ID: lease }, token)));
      out.push(pick(await gateway(url, '/v3/lease/revoke', { ID: lease }, rootToken)));
      // Raft requests resolve the token they carry; Alarm answers with the auth package's error
      out.push(
        pick(await gateway(url, '/v3/auth/authenticate', { name: 'alice', password: 'alicepw' }, 'forged.4')),
      );
      out.push(pick(await gateway(url, '/v3/maintenance/alarm', {}, 'forged.5')));
      out.push(pick(await gateway(url, '/v3/kv/compaction', { revision: '1' }, 'forged.6')));
      // v3lock passes the KV error on as a plain one
      out.push(pick(await gateway(url, '/v3/lock/lock', { name: b64('l1') })));
      out.push(pick(await gateway(url, '/v3/lock/lock', { name: b64('l1') }, token)));
      out.push(pick(await gateway(url, '/v3/auth/disable', {}, rootToken)));
      // auth disable drops every simple token
      out.push(pick(await gateway(url, '/v3/kv/range', { key: b64('app/x') }, token)));
      answers.push(out);
    }
    assert.deepEqual(answers[1], answers[0]);
  });
});

describe('etcd auth on Concord: clients, restarts, tokens', { timeout: 600_000 }, () => {
  let cluster: ProcessCluster | undefined;
  let keyDir: string | undefined;

  before(async () => {
    cluster = await startConcordCluster({ size: 3 });
    await setUpUsers(cluster.members[0]!.clientUrl);
  });

  after(async () => {
    await cluster?.dispose();
    if (keyDir !== undefined) await rm(keyDir, { recursive: true, force: true });
  });

  it('the etcd3 npm client works as a user and is refused outside its permissions', async () => {
    const alice = new Etcd3({
      hosts: cluster!.endpoints(),
      auth: { username: 'alice', password: 'alicepw' },
    });
    const anonymous = new Etcd3({ hosts: cluster!.endpoints() });
    try {
      await alice.put('app/one').value('1');
      assert.equal(await alice.get('app/one').string(), '1');
      await assert.rejects(alice.get('secret').string(), /permission denied/);
      await assert.rejects(async () => alice.put('secret').value('x'), /permission denied/);
      await assert.rejects(anonymous.get('app/one').string(), /user name is empty/);
      const wrong = new Etcd3({ hosts: cluster!.endpoints(), auth: { username: 'alice', password: 'nope' } });
      await assert.rejects(wrong.get('app/one').string(), /authentication failed/);
      wrong.close();
    } finally {
      alice.close();
      anonymous.close();
    }
  });

  it('a permission change takes effect on every member at once', async () => {
    const url0 = cluster!.members[0]!.clientUrl;
    for (const member of cluster!.members) {
      const ok = await etcdctl(['--user', 'alice:alicepw', 'get', 'app/one'], {
        endpoints: [member.clientUrl],
      });
      assert.equal(ok.code, 0, ok.stderr);
    }
    const revoke = await etcdctl(
      ['--user', 'root:rootpw', 'role', 'revoke-permission', 'app', 'app/', '--prefix'],
      {
        endpoints: [url0],
      },
    );
    assert.equal(revoke.code, 0, revoke.stderr);
    for (const member of cluster!.members) {
      const denied = await etcdctl(['--user', 'alice:alicepw', 'get', 'app/one'], {
        endpoints: [member.clientUrl],
      });
      assert.match(denied.stderr, /permission denied/, member.name);
    }
    const grant = await etcdctl(
      ['--user', 'root:rootpw', 'role', 'grant-permission', 'app', 'readwrite', 'app/', '--prefix'],
      {
        endpoints: [url0],
      },
    );
    assert.equal(grant.code, 0, grant.stderr);
  });

  it('a restarted member keeps users, roles, permissions and the enabled flag', async () => {
    await cluster!.stop(1);
    await cluster!.restart(1);
    const url1 = cluster!.members[1]!.clientUrl;
    const users = await etcdctl(['--user', 'root:rootpw', 'user', 'list'], { endpoints: [url1] });
    assert.equal(users.stdout, 'alice\nroot\n');
    const role = await etcdctl(['--user', 'root:rootpw', 'role', 'get', 'app'], { endpoints: [url1] });
    assert.match(role.stdout, /\[app\/, app0\) \(prefix app\/\)/);
    const anonymous = await etcdctl(['get', 'app/one'], { endpoints: [url1] });
    assert.match(anonymous.stderr, /user name is empty/);
    const alice = await etcdctl(['--user', 'alice:alicepw', 'get', 'app/one'], { endpoints: [url1] });
    assert.equal(alice.stdout, 'app/one\n1\n');
  });

  it('snapshots carry users, roles and the enabled flag between etcd 3.4 and Concord, both ways', {
    skip: !etcdAvailable() && 'etcd 3.4 is not installed',
  }, async () => {
    keyDir ??= await mkdtemp(join(tmpdir(), 'concord-auth-'));
    // Concord → etcd: bcrypt hashes made by bcryptjs are checked by etcd's Go bcrypt.
    const fromConcord = join(keyDir, 'from-concord.db');
    const save = await etcdctl(['--user', 'root:rootpw', 'snapshot', 'save', fromConcord], {
      endpoints: [cluster!.members[0]!.clientUrl],
    });
    assert.equal(save.code, 0, save.stderr);
    const etcd = await startEtcdCluster({
      size: 1,
      beforeStart: async (plan) => {
        const restored = await etcdctl(['snapshot', 'restore', fromConcord, ...restoreFlags(plan)], {
          endpoints: [],
        });
        assert.equal(restored.code, 0, restored.stderr);
      },
    });
    try {
      await assertUsersCameAlong(etcd.members[0]!.clientUrl);
      // etcd → Concord: Go's hashes checked by bcryptjs.
      const fromEtcd = join(keyDir, 'from-etcd.db');
      const saved = await etcdctl(['--user', 'root:rootpw', 'snapshot', 'save', fromEtcd], {
        endpoints: [etcd.members[0]!.clientUrl],
      });
      assert.equal(saved.code, 0, saved.stderr);
      const restoredConcord = await startConcordCluster({
        size: 1,
        beforeStart: async (plan) => {
          const restored = await concordctl(['snapshot', 'restore', fromEtcd, ...restoreFlags(plan)]);
          assert.equal(restored.code, 0, restored.stderr + restored.stdout);
          assert.match(restored.stderr, /auth enabled: 2 users and 1 roles restored/);
        },
      });
      try {
        await assertUsersCameAlong(restoredConcord.members[0]!.clientUrl);
      } finally {
        await restoredConcord.dispose();
      }
    } finally {
      await etcd.dispose();
    }
  });

  it('a forged simple token is refused; a token issued by one member works on another', async () => {
    const [url0, url2] = [cluster!.members[0]!.clientUrl, cluster!.members[2]!.clientUrl];
    const login = await gateway(url0, '/v3/auth/authenticate', { name: 'alice', password: 'alicepw' });
    const token = String(login.body.token);
    assert.match(token, /^[a-zA-Z]{16}\.\d+$/);
    const elsewhere = await gateway(url2, '/v3/kv/range', { key: b64('app/one') }, token);
    assert.equal(elsewhere.status, 200);
    const forged = await gateway(url2, '/v3/kv/range', { key: b64('app/one') }, `${token.slice(0, 15)}X.1`);
    assert.deepEqual([forged.status, forged.body.message], [401, 'etcdserver: invalid auth token']);
  });

  it('simple tokens lapse after --auth-token-ttl; JWTs are checked for signature and expiry', async () => {
    keyDir ??= await mkdtemp(join(tmpdir(), 'concord-auth-'));
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const other = generateKeyPairSync('rsa', { modulusLength: 2048 });
    await writeFile(join(keyDir, 'priv.pem'), privateKey.export({ type: 'pkcs8', format: 'pem' }));
    await writeFile(join(keyDir, 'pub.pem'), publicKey.export({ type: 'spki', format: 'pem' }));
    const jwtFlag = `jwt,pub-key=${join(keyDir, 'pub.pem')},priv-key=${join(keyDir, 'priv.pem')},sign-method=RS256,ttl=6s`;
    const [simple, jwt] = await Promise.all([
      startConcordCluster({ size: 1, extraFlags: ['--auth-token-ttl', '2'] }),
      startConcordCluster({ size: 1, extraFlags: ['--auth-token', jwtFlag] }),
    ]);
    try {
      for (const c of [simple, jwt]) await setUpUsers(c.members[0]!.clientUrl);
      const [simpleUrl, jwtUrl] = [simple.members[0]!.clientUrl, jwt.members[0]!.clientUrl];
      const simpleToken = String(
        (await gateway(simpleUrl, '/v3/auth/authenticate', { name: 'alice', password: 'alicepw' })).body
          .token,
      );
      const jwtToken = String(
        (await gateway(jwtUrl, '/v3/auth/authenticate', { name: 'alice', password: 'alicepw' })).body.token,
      );
      assert.equal(jwtToken.split('.').length, 3);
      const claims = JSON.parse(Buffer.from(jwtToken.split('.')[1]!, 'base64url').toString()) as Record<
        string,
        unknown
      >;
      assert.equal(claims.username, 'alice');
      // etcd 3.4 with the same setup (six changes; enabling does not count) signs revision 7.
      assert.equal(claims.revision, 7);
      assert.deepEqual(Object.keys(claims), ['exp', 'revision', 'username']);
      assert.equal((await gateway(jwtUrl, '/v3/kv/range', { key: b64('app/one') }, jwtToken)).status, 200);
      // Same claims, signed with another key; and claims changed under the real signature.
      const [head, , signature] = jwtToken.split('.') as [string, string, string];
      const rootClaims = Buffer.from(JSON.stringify({ ...claims, username: 'root' })).toString('base64url');
      const { createSign } = await import('node:crypto');
      const forgedSignature = createSign('sha256')
        .update(`${head}.${rootClaims}`)
        .sign(other.privateKey)
        .toString('base64url');
      for (const forged of [
        `${head}.${rootClaims}.${forgedSignature}`,
        `${head}.${rootClaims}.${signature}`,
      ]) {
        const answer = await gateway(jwtUrl, '/v3/auth/user/list', {}, forged);
        assert.deepEqual([answer.status, answer.body.message], [401, 'etcdserver: invalid auth token']);
      }
      // A change of the auth store: the JWT checked at the older revision is told so (etcd's text).
      const change = await etcdctl(['--user', 'root:rootpw', 'role', 'add', 'other'], {
        endpoints: [jwtUrl],
      });
      assert.equal(change.code, 0, change.stderr);
      const old = await gateway(jwtUrl, '/v3/kv/range', { key: b64('app/one') }, jwtToken);
      assert.deepEqual([old.status, old.body.message], [400, 'etcdserver: revision of auth store is old']);
      await sleep(7000);
      for (const [url, token] of [
        [simpleUrl, simpleToken],
        [jwtUrl, jwtToken],
      ] as const) {
        const expired = await gateway(url, '/v3/kv/range', { key: b64('app/one') }, token);
        assert.deepEqual([expired.status, expired.body.message], [401, 'etcdserver: invalid auth token']);
      }
    } finally {
      await simple.dispose();
      await jwt.dispose();
    }
  });
});

describe('with --client-cert-auth the certificate common name is the user, on etcd 3.4 and Concord', {
  skip: !etcdAvailable() && 'etcd 3.4 is not installed',
  timeout: 300_000,
}, () => {
  let pki: TestPki | undefined;
  const clusters: ProcessCluster[] = [];
  let alice: CertPair;
  let stranger: CertPair;
  let nameless: CertPair;

  before(async () => {
    pki = makeTestPki();
    alice = { certFile: join(pki.dir, 'alice.pem'), keyFile: join(pki.dir, 'alice-key.pem') };
    stranger = { certFile: join(pki.dir, 'stranger.pem'), keyFile: join(pki.dir, 'stranger-key.pem') };
    pki.issueMember(alice, 'alice');
    pki.issueMember(stranger, 'stranger');
    nameless = { certFile: join(pki.dir, 'nameless.pem'), keyFile: join(pki.dir, 'nameless-key.pem') };
    pki.issueMember(nameless, '');
    const flags = [
      '--cert-file',
      pki.member.certFile,
      '--key-file',
      pki.member.keyFile,
      '--trusted-ca-file',
      pki.caFile,
      '--client-cert-auth',
    ];
    const clientTls = {
      ca: pki.read(pki.caFile),
      cert: pki.read(pki.client.certFile),
      key: pki.read(pki.client.keyFile),
    };
    const options = {
      size: 1,
      clientScheme: 'https' as const,
      clientTls,
      extraFlags: flags,
      startTimeoutMs: 60_000,
    };
    const [e, c] = await Promise.allSettled([startEtcdCluster(options), startConcordCluster(options)]);
    for (const r of [e, c]) if (r.status === 'fulfilled') clusters.push(r.value);
    if (e.status === 'rejected' || c.status === 'rejected')
      throw e.status === 'rejected' ? e.reason : (c as PromiseRejectedResult).reason;
  });

  after(async () => {
    for (const cluster of clusters) await cluster.dispose();
    pki?.dispose();
  });

  it('answers the same with the CN "root", "alice", an unknown CN and no CN', async () => {
    const as = (pair: CertPair) => [
      `--cacert=${pki!.caFile}`,
      `--cert=${pair.certFile}`,
      `--key=${pair.keyFile}`,
    ];
    const root = as(pki!.client); // CN "root"
    const steps: Step[] = [
      { args: [...root, 'user', 'add', 'root:rootpw'] },
      { args: [...root, 'user', 'grant-role', 'root', 'root'] },
      { args: [...root, 'user', 'add', 'alice:alicepw'] },
      { args: [...root, 'role', 'add', 'app'] },
      { args: [...root, 'role', 'grant-permission', 'app', 'readwrite', 'app/', '--prefix'] },
      { args: [...root, 'user', 'grant-role', 'alice', 'app'] },
      { args: [...root, 'auth', 'enable'], expect: /Authentication Enabled/ },
      { args: [...root, 'user', 'list'], expect: /alice\nroot/ },
      { args: [...root, 'put', 'secret', 's'], expect: /OK/ },
      { args: [...as(alice), 'put', 'app/x', '1'], expect: /OK/ },
      { args: [...as(alice), 'get', 'app/x'], expect: /app\/x\n1/ },
      { args: [...as(alice), 'get', 'secret'], expect: /permission denied/ },
      { args: [...as(alice), 'user', 'list'], expect: /permission denied/ },
      { args: [...as(stranger), 'get', 'app/x'], expect: /permission denied/ },
      // A verified certificate without a CN is the user "" (not found), not "no user given".
      { args: [...as(nameless), 'get', 'app/x'], expect: /permission denied/ },
      { args: [...as(nameless), 'user', 'list'], expect: /user name is empty/ },
      // A token wins over the certificate.
      { args: [...as(alice), '--user', 'root:rootpw', 'get', 'secret'], expect: /secret\ns/ },
      { args: [...root, 'auth', 'disable'], expect: /Authentication Disabled/ },
    ];
    const [etcd, concord] = clusters as [ProcessCluster, ProcessCluster];
    for (const step of steps) {
      const [fromEtcd, fromConcord] = await Promise.all([run(etcd, step), run(concord, step)]);
      assert.equal(fromConcord, fromEtcd, `etcdctl ${step.args.slice(3).join(' ')}`);
      if (step.expect)
        assert.match(fromEtcd, step.expect, `etcd's answer to etcdctl ${step.args.slice(3).join(' ')}`);
    }
  });
});
