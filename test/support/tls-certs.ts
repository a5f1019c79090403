// Test certificates made with the `openssl` binary (.ci/run installs it): a CA, a member
// certificate signed by it (SANs 127.0.0.1 and localhost, usable as server and client
// certificate, as etcd's docs make them), a client certificate, and a second, unrelated CA with a
// member certificate of its own (to show that a member refuses it). Everything lives in one temp
// dir that dispose() removes.

import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const opensslPath = process.env.E2E_OPENSSL_BIN ?? '/usr/bin/openssl';

export interface CertPair {
  certFile: string;
  keyFile: string;
}

export interface TestPki {
  dir: string;
  caFile: string;
  /** Signed by caFile; SANs 127.0.0.1, localhost; serverAuth + clientAuth. */
  member: CertPair;
  /** Signed by caFile; CN "root"; clientAuth only. */
  client: CertPair;
  otherCaFile: string;
  /** Signed by otherCaFile, otherwise like `member`. */
  otherMember: CertPair;
  /** Issues another member certificate from caFile into the given paths (rotation). */
  issueMember(into: CertPair, commonName: string): void;
  read(path: string): Buffer;
  dispose(): void;
}

function openssl(args: string[]): void {
  execFileSync(opensslPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

function makeCa(dir: string, name: string): { cert: string; key: string } {
  const cert = join(dir, `${name}.pem`);
  const key = join(dir, `${name}-key.pem`);
  openssl([
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-keyout',
    key,
    '-out',
    cert,
    '-days',
    '2',
    '-subj',
    `/CN=${name}`,
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign,digitalSignature',
  ]);
  return { cert, key };
}

let serial = 1;

function issue(
  dir: string,
  ca: { cert: string; key: string },
  into: CertPair,
  commonName: string,
  extensions: string,
): void {
  const csr = join(dir, `req-${serial}.csr`);
  const ext = join(dir, `ext-${serial}.cnf`);
  writeFileSync(ext, extensions);
  openssl([
    'req',
    '-new',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-keyout',
    into.keyFile,
    '-out',
    csr,
    '-subj',
    // An empty common name gives a certificate whose subject has no CN at all.
    commonName === '' ? '/O=concord-test' : `/CN=${commonName}`,
  ]);
  openssl([
    'x509',
    '-req',
    '-in',
    csr,
    '-CA',
    ca.cert,
    '-CAkey',
    ca.key,
    '-set_serial',
    String(1000 + serial++),
    '-days',
    '2',
    '-extfile',
    ext,
    '-out',
    into.certFile,
  ]);
  rmSync(csr);
  rmSync(ext);
}

const memberExtensions =
  'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n' +
  'extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n';
const clientExtensions =
  'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n';

export function makeTestPki(): TestPki {
  const dir = mkdtempSync(join(tmpdir(), 'concord-pki-'));
  try {
    const ca = makeCa(dir, 'ca');
    const other = makeCa(dir, 'other-ca');
    const pair = (name: string): CertPair => ({
      certFile: join(dir, `${name}.pem`),
      keyFile: join(dir, `${name}-key.pem`),
    });
    const member = pair('member');
    const client = pair('client');
    const otherMember = pair('other-member');
    issue(dir, ca, member, 'member', memberExtensions);
    issue(dir, ca, client, 'root', clientExtensions);
    issue(dir, other, otherMember, 'member', memberExtensions);
    return {
      dir,
      caFile: ca.cert,
      member,
      client,
      otherCaFile: other.cert,
      otherMember,
      issueMember: (into, commonName) => issue(dir, ca, into, commonName, memberExtensions),
      read: (path) => readFileSync(path),
      dispose: () => rmSync(dir, { recursive: true, force: true }),
    };
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
}
