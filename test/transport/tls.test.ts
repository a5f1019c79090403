import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';
import { MessageType, message } from '../../src/raft/types.js';
import { TransportError } from '../../src/transport/errors.js';
import { type PeerTlsOptions, PeerTransport } from '../../src/transport/peer-transport.js';
import { type Harness, sleep, startTransport, waitFor } from './helpers.js';

// Certificates are made per run with the openssl CLI: a cluster CA, node certificates it signs
// (SAN IP:127.0.0.1, server+client auth), and a rogue CA with a certificate of its own.

let dir = '';
let good: PeerTlsOptions;
let rogue: PeerTlsOptions;

function openssl(...args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
}

function issue(ca: string, name: string): PeerTlsOptions {
  openssl(
    'req',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-keyout',
    `${name}.key`,
    '-out',
    `${name}.csr`,
    '-subj',
    `/CN=${name}`,
  );
  openssl(
    'x509',
    '-req',
    '-in',
    `${name}.csr`,
    '-CA',
    `${ca}.crt`,
    '-CAkey',
    `${ca}.key`,
    '-CAcreateserial',
    '-out',
    `${name}.crt`,
    '-days',
    '1',
    '-extfile',
    'ext.cnf',
  );
  return {
    cert: readFileSync(join(dir, `${name}.crt`)),
    key: readFileSync(join(dir, `${name}.key`)),
    ca: readFileSync(join(dir, 'cluster-ca.crt')),
  };
}

function ca(name: string): void {
  openssl(
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-keyout',
    `${name}.key`,
    '-out',
    `${name}.crt`,
    '-subj',
    `/CN=${name}`,
    '-days',
    '1',
  );
}

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'concord-transport-tls-'));
  writeFileSync(
    join(dir, 'ext.cnf'),
    'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n',
  );
  ca('cluster-ca');
  ca('rogue-ca');
  good = issue('cluster-ca', 'node');
  // The rogue trusts the cluster CA (so it would accept the server) but its own cert is foreign.
  rogue = issue('rogue-ca', 'rogue');
});

after(() => {
  rmSync(dir, { recursive: true, force: true });
});

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function node(id: number, tls: PeerTlsOptions): Promise<Harness> {
  const harness = await startTransport(id, { tls, listenUrl: 'https://127.0.0.1:0' });
  cleanups.push(() => harness.transport.close());
  return harness;
}

describe('peer TLS', () => {
  it('carries messages and a snapshot over mutual TLS', async () => {
    const a = await node(1, good);
    const b = await node(2, good);
    assert.match(a.transport.url, /^https:\/\/127\.0\.0\.1:\d+$/);
    a.transport.addPeer(2, b.transport.url);
    b.transport.addPeer(1, a.transport.url);
    a.transport.send([
      message({ type: MessageType.Heartbeat, from: 1, to: 2, term: 4, context: Uint8Array.of(9) }),
    ]);
    await waitFor('heartbeat over TLS', () => b.received.length === 1);
    assert.deepEqual(Array.from(b.received[0]!.context), [9]);
    const data = new Uint8Array(3 << 20).map((_, i) => i % 251);
    b.transport.send([
      message({
        type: MessageType.Snapshot,
        from: 2,
        to: 1,
        term: 4,
        snapshot: {
          metadata: {
            index: 8,
            term: 4,
            confState: {
              voters: [1, 2],
              learners: [],
              votersOutgoing: [],
              learnersNext: [],
              autoLeave: false,
            },
          },
          data,
        },
      }),
    ]);
    await waitFor('snapshot over TLS', () => b.snapshotStatus.length === 1, 10_000);
    assert.deepEqual(b.snapshotStatus, [{ peer: 1, ok: true }]);
    assert.ok(
      Buffer.from(a.received.find((m) => m.type === MessageType.Snapshot)!.snapshot!.data).equals(data),
    );
  });

  it('refuses a peer whose certificate is not signed by the cluster CA', async () => {
    const server = await node(2, good);
    const intruder = await node(1, rogue);
    intruder.transport.addPeer(2, server.transport.url);
    intruder.transport.send([message({ type: MessageType.Heartbeat, from: 1, to: 2, term: 1 })]);
    await waitFor('server reports the TLS failure', () =>
      server.errors.some((e) => e.error.code === 'TLS_FAILED'),
    );
    await sleep(50);
    assert.equal(server.received.length, 0);
    assert.equal(intruder.transport.stats().peers['2']!.connected, 0);
  });

  it('requires https:// peer URLs when TLS is configured, and TLS options for https://', () => {
    assert.throws(
      () =>
        new PeerTransport({
          nodeId: 1,
          clusterId: 'c',
          listenUrl: 'http://127.0.0.1:0',
          tls: good,
          onMessage: () => {},
        }),
      (e: unknown) =>
        e instanceof TransportError && e.code === 'BAD_PEER_URL' && /requires peer TLS/.test(e.message),
    );
    assert.throws(
      () =>
        new PeerTransport({
          nodeId: 1,
          clusterId: 'c',
          listenUrl: 'https://127.0.0.1:0',
          onMessage: () => {},
        }),
      (e: unknown) =>
        e instanceof TransportError && e.code === 'BAD_PEER_URL' && /no peer TLS/.test(e.message),
    );
  });
});
