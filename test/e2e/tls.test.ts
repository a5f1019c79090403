// Client and peer TLS on a real 3-member Concord cluster, with etcd's flags: etcdctl 3.4, the
// etcd3 npm client and concordctl over https://, a client without a certificate refused under
// --client-cert-auth, a member with a certificate from another CA refused by its peers, and a
// certificate rotated on disk picked up without a restart. Certificates come from the openssl
// binary (test/support/tls-certs.ts).

import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { copyFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connect as tlsConnect } from 'node:tls';
import { Etcd3 } from 'etcd3';
import { type ProcessCluster, startConcordCluster } from '../support/cluster.js';
import { runConcordctl } from '../support/concordctl.js';
import { etcdAvailable, startEtcdCluster } from '../support/etcd-cluster.js';
import { etcdctl, etcdctlOk } from '../support/etcdctl.js';
import { type HarnessTls, pollUntil, requestJson } from '../support/process-cluster.js';
import { type CertPair, makeTestPki, type TestPki } from '../support/tls-certs.js';

function tlsFlags(pki: TestPki, member: CertPair): string[] {
  return [
    '--cert-file',
    member.certFile,
    '--key-file',
    member.keyFile,
    '--trusted-ca-file',
    pki.caFile,
    '--client-cert-auth',
    '--peer-cert-file',
    member.certFile,
    '--peer-key-file',
    member.keyFile,
    '--peer-trusted-ca-file',
    pki.caFile,
    '--peer-client-cert-auth',
  ];
}

/** The subject CN of the certificate a TLS server presents to a new connection. */
function servedCommonName(url: string, tls: HarnessTls): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = tlsConnect(
      { host: hostname, port: Number(port), ca: tls.ca, cert: tls.cert, key: tls.key },
      () => {
        const cn = socket.getPeerCertificate().subject?.CN;
        socket.end();
        resolve(String(cn));
      },
    );
    socket.on('error', reject);
  });
}

/** Whether a TLS handshake with these credentials completes (the server verifies the client). */
function handshake(
  url: string,
  options: { ca?: Buffer; cert?: Buffer; key?: Buffer },
): Promise<'ok' | string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = tlsConnect({ host: hostname, port: Number(port), ...options, rejectUnauthorized: false });
    // TLS 1.3: the client finishes before the server has judged its certificate; the server's
    // verdict arrives as an alert (or the server's first bytes never come). Write and wait.
    socket.on('secureConnect', () => socket.write('GET /members HTTP/1.1\r\nHost: x\r\n\r\n'));
    socket.on('data', () => {
      socket.destroy();
      resolve('ok');
    });
    socket.on('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
    socket.on('close', () => resolve('closed'));
  });
}

describe('TLS: a 3-member cluster with client and peer TLS', { timeout: 300_000 }, () => {
  let pki: TestPki;
  let cluster: ProcessCluster;
  let memberCert: CertPair;
  let clientTls: HarnessTls;
  let etcdctlTls: string[];
  const clients: Etcd3[] = [];
  const check = (body: () => Promise<void>) => () => cluster.withLogsOnFailure(body);

  before(async () => {
    pki = makeTestPki();
    // The members' own copy, so the rotation test can replace it.
    memberCert = { certFile: join(pki.dir, 'serving.pem'), keyFile: join(pki.dir, 'serving-key.pem') };
    copyFileSync(pki.member.certFile, memberCert.certFile);
    copyFileSync(pki.member.keyFile, memberCert.keyFile);
    clientTls = {
      ca: pki.read(pki.caFile),
      cert: pki.read(pki.client.certFile),
      key: pki.read(pki.client.keyFile),
    };
    etcdctlTls = [`--cacert=${pki.caFile}`, `--cert=${pki.client.certFile}`, `--key=${pki.client.keyFile}`];
    cluster = await startConcordCluster({
      size: 3,
      clientScheme: 'https',
      peerScheme: 'https',
      clientTls,
      extraFlags: tlsFlags(pki, memberCert),
      startTimeoutMs: 60_000,
    });
  });

  after(async () => {
    for (const client of clients) client.close();
    await cluster?.dispose();
    pki?.dispose();
  });

  it(
    'etcdctl 3.4 with --cacert/--cert/--key works on every https:// endpoint',
    check(async () => {
      const endpoints = cluster.endpoints();
      assert.ok(endpoints.every((url) => url.startsWith('https://')));
      await etcdctlOk([...etcdctlTls, 'put', 'tls/a', 'one'], { endpoints });
      for (const endpoint of endpoints) {
        const got = await etcdctlOk([...etcdctlTls, 'get', 'tls/a', '--print-value-only'], {
          endpoints: [endpoint],
        });
        assert.equal(got.trim(), 'one');
      }
      const members = await etcdctlOk([...etcdctlTls, 'member', 'list'], { endpoints });
      assert.equal(members.trim().split('\n').length, 3);
      assert.match(members, /https:\/\/127\.0\.0\.1/);
      // endpoint status dials each endpoint by its URL (grpc-go puts the scheme in :authority).
      const status = await etcdctlOk([...etcdctlTls, 'endpoint', 'status', '-w', 'json'], { endpoints });
      assert.equal((JSON.parse(status) as unknown[]).length, 3);
      const health = await etcdctl([...etcdctlTls, 'endpoint', 'health'], { endpoints });
      assert.equal(health.code, 0, health.stderr);
      assert.equal(`${health.stdout}${health.stderr}`.match(/is healthy/g)?.length, 3);
    }),
  );

  it(
    'a follower forwards lease keep-alives to the leader over client TLS',
    check(async () => {
      const leader = await cluster.leaderIndex();
      const follower = cluster.endpoint((leader + 1) % 3);
      const granted = await etcdctlOk([...etcdctlTls, 'lease', 'grant', '60'], { endpoints: [follower] });
      const id = /lease ([0-9a-f]+) granted/.exec(granted)?.[1];
      assert.ok(id !== undefined, granted);
      const kept = await etcdctlOk([...etcdctlTls, 'lease', 'keep-alive', '--once', id], {
        endpoints: [follower],
      });
      assert.match(kept, new RegExp(`lease ${id} keepalived with TTL\\((60|59)\\)`));
    }),
  );

  it(
    'the JSON gateway and /health answer over https with a client certificate',
    check(async () => {
      const url = cluster.endpoint(1);
      const health = await requestJson(`${url}/health`, { tls: clientTls });
      assert.equal(health.status, 200);
      assert.equal((health.body as { health: string }).health, 'true');
      const range = await requestJson(`${url}/v3/kv/range`, {
        body: { key: Buffer.from('tls/a').toString('base64') },
        tls: clientTls,
      });
      const kvs = (range.body as { kvs: Array<{ value: string }> }).kvs;
      assert.equal(Buffer.from(kvs[0]?.value ?? '', 'base64').toString(), 'one');
      // Fault injection is off without --experimental-fault-injection, TLS or not.
      const faults = await requestJson(`${url}/debug/faults`, { tls: clientTls });
      assert.equal(faults.status, 404);
    }),
  );

  it(
    'the etcd3 npm client works over TLS: put, get, watch, lease',
    check(async () => {
      const client = new Etcd3({
        hosts: cluster.endpoints(),
        credentials: {
          rootCertificate: clientTls.ca!,
          certChain: clientTls.cert!,
          privateKey: clientTls.key!,
        },
      });
      clients.push(client);
      await client.put('tls/etcd3').value('v1').exec();
      assert.equal(await client.get('tls/etcd3').string(), 'v1');
      const watcher = await client.watch().key('tls/watched').create();
      const seen = new Promise<string>((resolve) => watcher.on('put', (kv) => resolve(kv.value.toString())));
      await client.put('tls/watched').value('event').exec();
      assert.equal(await seen, 'event');
      await watcher.cancel();
      const lease = client.lease(30);
      await lease.put('tls/leased').value('x').exec();
      assert.equal(await client.get('tls/leased').string(), 'x');
      await lease.revoke();
      assert.equal(await client.get('tls/leased').string(), null);
    }),
  );

  it(
    'concordctl takes --cacert/--cert/--key as etcdctl does',
    check(async () => {
      const endpoints = `--endpoints=${cluster.endpoints().join(',')}`;
      const put = await runConcordctl([endpoints, ...etcdctlTls, 'put', 'tls/ctl', 'v']);
      assert.equal(put.code, 0, put.stderr);
      assert.equal(put.stdout.trim(), 'OK');
      const get = await runConcordctl([endpoints, ...etcdctlTls, 'get', 'tls/ctl', '--print-value-only']);
      assert.equal(get.stdout.trim(), 'v');
      const halfPair = await runConcordctl([endpoints, `--cert=${pki.client.certFile}`, 'get', 'tls/ctl']);
      const etcdHalfPair = await etcdctl([`--cert=${pki.client.certFile}`, 'get', 'tls/ctl'], {
        endpoints: cluster.endpoints(),
      });
      assert.equal(halfPair.code, etcdHalfPair.code);
      assert.equal(halfPair.stderr.trim(), etcdHalfPair.stderr.trim());
      // check capacity reads /metrics over https and benchmarks over TLS with the same flags.
      const capacity = await runConcordctl([
        endpoints,
        ...etcdctlTls,
        'check',
        'capacity',
        '--interval=500ms',
        '--duration=1',
        '-w',
        'json',
      ]);
      assert.equal(capacity.code, 0, capacity.stderr);
      const report = JSON.parse(capacity.stdout) as { members: number; measured: { writesPerSec: number } };
      assert.equal(report.members, 3);
      assert.ok(report.measured.writesPerSec > 0);
    }),
  );

  it(
    'a client without a certificate, or with one from another CA, is refused (--client-cert-auth)',
    check(async () => {
      const endpoints = [cluster.endpoint(0)];
      const noCert = await etcdctl([`--cacert=${pki.caFile}`, '--dial-timeout=1s', 'get', 'tls/a'], {
        endpoints,
      });
      assert.equal(noCert.code, 1);
      assert.match(noCert.stderr, /context deadline exceeded/);
      const foreign = await etcdctl(
        [
          `--cacert=${pki.caFile}`,
          `--cert=${pki.otherMember.certFile}`,
          `--key=${pki.otherMember.keyFile}`,
          '--dial-timeout=1s',
          'get',
          'tls/a',
        ],
        { endpoints },
      );
      assert.equal(foreign.code, 1);
      const client = new Etcd3({ hosts: endpoints, credentials: { rootCertificate: clientTls.ca! } });
      clients.push(client);
      await assert.rejects(client.get('tls/a').string());
      await assert.rejects(requestJson(`${endpoints[0]}/health`, { tls: { ca: clientTls.ca } }));
      // Plaintext to a TLS port gets nowhere either.
      const plain = await etcdctl(['--dial-timeout=1s', 'get', 'tls/a'], {
        endpoints: [endpoints[0]!.replace('https://', 'http://')],
      });
      assert.equal(plain.code, 1);
    }),
  );

  it(
    'the peer port: only a certificate from the peer CA gets through; /members only over TLS',
    check(async () => {
      const peerUrl = cluster.member(0).peerUrl;
      const ca = pki.read(pki.caFile);
      const own = { ca, cert: pki.read(pki.member.certFile), key: pki.read(pki.member.keyFile) };
      assert.equal(await handshake(peerUrl, own), 'ok');
      assert.notEqual(await handshake(peerUrl, { ca }), 'ok');
      const foreign = { cert: pki.read(pki.otherMember.certFile), key: pki.read(pki.otherMember.keyFile) };
      assert.notEqual(await handshake(peerUrl, foreign), 'ok');
      const members = await requestJson(`${peerUrl}/members`, { tls: own });
      assert.equal(members.status, 200);
      assert.equal((members.body as { members: unknown[] }).members.length, 3);
      await assert.rejects(
        requestJson(`${peerUrl.replace('https://', 'http://')}/members`, { timeoutMs: 2000 }),
      );
    }),
  );

  it(
    'a member with a certificate from another CA cannot join',
    check(async () => {
      const before = cluster.members.length;
      const extraFlags = tlsFlags(pki, pki.otherMember);
      // The other CA also trusts only itself: the member is foreign in both directions.
      extraFlags[extraFlags.indexOf('--peer-trusted-ca-file') + 1] = pki.otherCaFile;
      const index = await addForeignMember(cluster, extraFlags);
      assert.equal(index, before);
      const member = cluster.member(index);
      // Discovery (GET /members over peer TLS) fails against every peer, so it gives up.
      await pollUntil('the foreign member to give up', 60_000, async () =>
        member.child === undefined ? true : undefined,
      );
      assert.notEqual(member.exitCode, 0);
      assert.match(member.log.text(), /could not get the member list/);
      // The cluster still serves writes (the learner it added never caught up).
      await etcdctlOk([...etcdctlTls, 'put', 'tls/after-foreign', 'ok'], { endpoints: cluster.endpoints() });
    }),
  );

  it(
    'a rotated certificate is served to new connections without a restart',
    check(async () => {
      const url = cluster.endpoint(2);
      assert.equal(await servedCommonName(url, clientTls), 'member');
      pki.issueMember(memberCert, 'member-rotated');
      await pollUntil('the rotated certificate to be served', 15_000, async () =>
        (await servedCommonName(url, clientTls)) === 'member-rotated' ? true : undefined,
      );
      await etcdctlOk([...etcdctlTls, 'put', 'tls/rotated', 'yes'], { endpoints: cluster.endpoints() });
      const client = new Etcd3({
        hosts: [url],
        credentials: {
          rootCertificate: clientTls.ca!,
          certChain: clientTls.cert!,
          privateKey: clientTls.key!,
        },
      });
      clients.push(client);
      assert.equal(await client.get('tls/rotated').string(), 'yes');
      // Peers dial with the new certificate too: the peer port serves it.
      // (Each side polls its files on its own timer.)
      await pollUntil('the peer port to serve the rotated certificate', 15_000, async () =>
        (await servedCommonName(cluster.member(0).peerUrl, clientTls)) === 'member-rotated'
          ? true
          : undefined,
      );
      await cluster.waitHealthy(20_000);
    }),
  );
});

/**
 * Adds a learner through the Cluster API and starts its process with the given TLS flags
 * (the harness's addMember uses the cluster's own flags).
 */
async function addForeignMember(cluster: ProcessCluster, tlsFlags: string[]): Promise<number> {
  const index = await cluster.addMember({ learner: true, waitHealthy: false, extraFlags: tlsFlags });
  return index;
}

describe('TLS: --auto-tls and --peer-auto-tls', { timeout: 180_000 }, () => {
  let cluster: ProcessCluster;

  before(async () => {
    cluster = await startConcordCluster({
      size: 3,
      clientScheme: 'https',
      peerScheme: 'https',
      clientTls: { insecureSkipVerify: true },
      extraFlags: ['--auto-tls', '--peer-auto-tls'],
      startTimeoutMs: 60_000,
    });
  });

  after(async () => {
    await cluster?.dispose();
  });

  it('members make self-signed certificates in their data dirs and serve TLS with them', async () => {
    for (const member of cluster.members) {
      for (const side of ['client', 'peer']) {
        const pem = readFileSync(join(member.dataDir, 'fixtures', side, 'cert.pem'));
        const x509 = new X509Certificate(pem);
        assert.equal(x509.issuer, 'O=etcd');
        assert.match(x509.subjectAltName ?? '', /IP Address:127\.0\.0\.1/);
      }
    }
    // The TypeScript client and concordctl skip verification when told to, as etcdctl does.
    const put = await runConcordctl([
      `--endpoints=${cluster.endpoints().join(',')}`,
      '--insecure-skip-tls-verify',
      'put',
      'auto/k',
      'v',
    ]);
    assert.equal(put.code, 0, put.stderr);
    for (const endpoint of cluster.endpoints()) {
      const get = await runConcordctl([
        `--endpoints=${endpoint}`,
        '--insecure-skip-tls-verify',
        'get',
        'auto/k',
        '--print-value-only',
      ]);
      assert.equal(get.stdout.trim(), 'v');
    }
    // Verification against the system roots fails: the certificate proves nothing.
    const verified = await runConcordctl([
      `--endpoints=${cluster.endpoint(0)}`,
      '--dial-timeout=1s',
      'get',
      'auto/k',
    ]);
    assert.notEqual(verified.code, 0);
    assert.match(verified.stderr, /certificate|connection|deadline/i);
  });
});

describe('TLS error shapes next to etcd 3.4', { timeout: 120_000, skip: !etcdAvailable() }, () => {
  it('etcdctl without a client certificate fails the same way against both', async () => {
    const pki = makeTestPki();
    const clientTls = {
      ca: pki.read(pki.caFile),
      cert: pki.read(pki.client.certFile),
      key: pki.read(pki.client.keyFile),
    };
    const options = {
      size: 1,
      clientScheme: 'https' as const,
      clientTls,
      extraFlags: tlsFlags(pki, pki.member).slice(0, 7),
    };
    const concord = await startConcordCluster(options);
    const etcd = await startEtcdCluster(options).catch(async (error) => {
      await concord.dispose();
      throw error;
    });
    try {
      const args = [`--cacert=${pki.caFile}`, '--dial-timeout=1s', 'put', 'k', 'v'];
      const fromConcord = await etcdctl(args, { endpoints: concord.endpoints() });
      const fromEtcd = await etcdctl(args, { endpoints: etcd.endpoints() });
      assert.equal(fromConcord.code, fromEtcd.code);
      const lastLine = (text: string) => text.trim().split('\n').at(-1);
      assert.equal(lastLine(fromConcord.stderr), lastLine(fromEtcd.stderr));
      // With the certificate both answer.
      const ok = [`--cacert=${pki.caFile}`, `--cert=${pki.client.certFile}`, `--key=${pki.client.keyFile}`];
      assert.equal(
        (await etcdctlOk([...ok, 'put', 'k', 'v'], { endpoints: concord.endpoints() })).trim(),
        'OK',
      );
      assert.equal((await etcdctlOk([...ok, 'put', 'k', 'v'], { endpoints: etcd.endpoints() })).trim(), 'OK');
    } finally {
      await concord.dispose();
      await etcd.dispose();
      pki.dispose();
    }
  });
});
