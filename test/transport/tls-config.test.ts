// TLS settings: etcd's cipher suite names and versions, the self-signed certificates of --auto-tls
// (written in DER by hand, so checked by node's own X.509 parser and a real handshake), and the
// watcher that reloads rotated certificate files.

import assert from 'node:assert/strict';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { connect, createServer } from 'node:tls';
import {
  ensureSelfSignedFiles,
  resolveTlsFiles,
  selfSignedCertificate,
} from '../../src/transport/self-signed.js';
import {
  cipherList,
  parseTlsMinVersion,
  TlsConfigError,
  type TlsFiles,
  TlsFileWatcher,
  type TlsSettings,
} from '../../src/transport/tls-config.js';

const dirs: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'concord-tls-'));
  dirs.push(dir);
  return dir;
}
after(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

describe('cipher suites and versions as etcd names them', () => {
  it('maps Go names to OpenSSL names and keeps the TLS 1.3 suites', () => {
    const list = cipherList([
      'TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256',
      'TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305',
    ]);
    assert.ok(list !== undefined);
    assert.match(list, /ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-CHACHA20-POLY1305$/);
    assert.match(list, /^TLS_AES_/);
    assert.equal(cipherList([]), undefined);
  });

  it("refuses an unknown suite with etcd's text", () => {
    assert.throws(
      () => cipherList(['TLS_NOPE']),
      (error: Error) => {
        assert.ok(error instanceof TlsConfigError);
        assert.equal(error.message, 'unexpected TLS cipher suite "TLS_NOPE"');
        return true;
      },
    );
  });

  it('takes TLS1.2 and TLS1.3 as the minimum version, nothing older', () => {
    assert.equal(parseTlsMinVersion('TLS1.2'), 'TLSv1.2');
    assert.equal(parseTlsMinVersion('TLS1.3'), 'TLSv1.3');
    assert.throws(() => parseTlsMinVersion('TLS1.1'), TlsConfigError);
  });
});

describe('self-signed certificates (--auto-tls)', () => {
  it('parse as X.509 v3 with the hosts as SANs, self-verify, and match their key', () => {
    const { cert, key } = selfSignedCertificate(['127.0.0.1', 'localhost', '::1']);
    const x509 = new X509Certificate(cert);
    assert.equal(x509.subjectAltName, 'IP Address:127.0.0.1, DNS:localhost, IP Address:0:0:0:0:0:0:0:1');
    assert.equal(x509.issuer, 'O=etcd');
    assert.ok(x509.verify(x509.publicKey));
    assert.ok(x509.checkPrivateKey(createPrivateKey(key)));
    assert.equal(x509.checkIP('127.0.0.1'), '127.0.0.1');
    const validMs = Date.parse(x509.validTo) - Date.parse(x509.validFrom);
    assert.equal(validMs, 365 * 24 * 3600 * 1000);
  });

  it('serve a TLS handshake that a client trusting the certificate verifies by IP', async () => {
    const { cert, key } = selfSignedCertificate(['127.0.0.1']);
    const server = createServer({ cert, key }, (socket) => socket.end('hello'));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as { port: number }).port;
    try {
      const received = await new Promise<string>((resolve, reject) => {
        const socket = connect({ host: '127.0.0.1', port, ca: cert });
        let text = '';
        socket.on('data', (chunk: Buffer) => {
          text += chunk.toString();
        });
        socket.on('end', () => resolve(text));
        socket.on('error', reject);
      });
      assert.equal(received, 'hello');
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('are written once into the fixtures dir and reused after', () => {
    const dir = join(tempDir(), 'fixtures', 'client');
    const first = ensureSelfSignedFiles(dir, ['127.0.0.1']);
    const pem = readFileSync(first.certFile, 'utf8');
    const second = ensureSelfSignedFiles(dir, ['127.0.0.1']);
    assert.deepEqual(second, first);
    assert.equal(readFileSync(second.certFile, 'utf8'), pem);
  });

  it('are used only when no cert and key are given', () => {
    const settings: TlsSettings = {
      certFile: '',
      keyFile: '',
      trustedCaFile: '',
      clientCertAuth: false,
      autoTls: true,
      cipherSuites: [],
      minVersion: 'TLSv1.2',
    };
    const dir = join(tempDir(), 'peer');
    const auto = resolveTlsFiles(settings, dir, ['https://127.0.0.1:2380'], 'peer-');
    assert.equal(auto?.selfSigned, true);
    assert.equal(auto?.certFile, join(dir, 'cert.pem'));
    const given = resolveTlsFiles({ ...settings, certFile: 'c.pem', keyFile: 'k.pem' }, dir, [], 'peer-');
    assert.equal(given?.selfSigned, false);
    assert.equal(given?.certFile, 'c.pem');
    assert.equal(resolveTlsFiles({ ...settings, autoTls: false }, dir, [], ''), undefined);
    assert.throws(
      () => resolveTlsFiles({ ...settings, certFile: 'c.pem' }, dir, [], 'peer-'),
      /--peer-cert-file and --peer-key-file must be given together/,
    );
  });
});

describe('TlsFileWatcher', () => {
  function files(dir: string): TlsFiles {
    return {
      certFile: join(dir, 'cert.pem'),
      keyFile: join(dir, 'key.pem'),
      trustedCaFile: '',
      clientCertAuth: false,
      selfSigned: false,
      cipherSuites: [],
      minVersion: 'TLSv1.2',
    };
  }
  function write(target: TlsFiles, pair: { cert: string; key: string }): void {
    writeFileSync(target.keyFile, pair.key);
    writeFileSync(target.certFile, pair.cert);
  }

  it('reloads changed files, keeps the old pair while the new one does not match', () => {
    const target = files(tempDir());
    const first = selfSignedCertificate(['127.0.0.1']);
    write(target, first);
    const errors: string[] = [];
    let changes = 0;
    const watcher = new TlsFileWatcher(target, {
      pollIntervalMs: 60_000,
      onError: (e) => errors.push(e.message),
    });
    watcher.onChange(() => changes++);
    try {
      assert.equal(watcher.current().cert.toString(), first.cert);
      watcher.poll();
      assert.equal(changes, 0, 'unchanged files are not reloaded');

      // Half-way through a rotation: the new key next to the old certificate.
      const second = selfSignedCertificate(['127.0.0.1']);
      writeFileSync(target.keyFile, second.key);
      watcher.poll();
      assert.equal(changes, 0);
      assert.equal(errors.length, 1);
      assert.match(errors[0] ?? '', /cannot use TLS certificate/);
      assert.equal(watcher.current().cert.toString(), first.cert);

      writeFileSync(target.certFile, second.cert);
      watcher.poll();
      assert.equal(changes, 1);
      assert.equal(watcher.generation, 1);
      assert.equal(watcher.current().cert.toString(), second.cert);
      assert.equal(watcher.current().key.toString(), second.key);
    } finally {
      watcher.close();
    }
  });

  it('asks for client certificates when a trusted CA is set, as etcd does', () => {
    const target = files(tempDir());
    const pair = selfSignedCertificate(['127.0.0.1']);
    write(target, pair);
    const caFile = join(tempDir(), 'ca.pem');
    writeFileSync(caFile, pair.cert);
    const plain = new TlsFileWatcher(target);
    const withCa = new TlsFileWatcher({ ...target, trustedCaFile: caFile });
    const auth = new TlsFileWatcher({ ...target, clientCertAuth: true });
    const auto = new TlsFileWatcher({ ...target, selfSigned: true });
    try {
      assert.equal(plain.serverOptions().requestCert, false);
      assert.equal(withCa.serverOptions().requestCert, true);
      assert.equal(withCa.serverOptions().rejectUnauthorized, true);
      assert.equal(auth.serverOptions().requestCert, true);
      assert.equal(plain.clientOptions().rejectUnauthorized, true);
      assert.equal(auto.clientOptions().rejectUnauthorized, false);
    } finally {
      for (const watcher of [plain, withCa, auth, auto]) watcher.close();
    }
  });
});
