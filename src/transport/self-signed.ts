// --auto-tls and --peer-auto-tls: a self-signed certificate in the data dir, as etcd's
// transport.SelfCert makes one (<data-dir>/fixtures/client or fixtures/peer, cert.pem and
// key.pem, reused when both exist; valid one year; the listen URLs' hosts as SANs; usable for
// server and client authentication; organization "etcd").
//
// node:crypto makes keys and signatures but not certificates, so the X.509 structure (RFC 5280)
// is written here in DER: a v3 TBSCertificate with an ECDSA P-256 key, signed with
// ecdsa-with-SHA256.

import { generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import { existsSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { TlsConfigError, type TlsFiles, type TlsSettings } from './tls-config.js';

const VALIDITY_MS = 365 * 24 * 3600 * 1000;

function tlv(tag: number, content: Buffer): Buffer {
  const length = content.length;
  let header: Buffer;
  if (length < 0x80) header = Buffer.from([tag, length]);
  else {
    const bytes: number[] = [];
    for (let rest = length; rest > 0; rest = Math.floor(rest / 256)) bytes.unshift(rest % 256);
    header = Buffer.from([tag, 0x80 | bytes.length, ...bytes]);
  }
  return Buffer.concat([header, content]);
}

const sequence = (...parts: Buffer[]) => tlv(0x30, Buffer.concat(parts));
const set = (...parts: Buffer[]) => tlv(0x31, Buffer.concat(parts));
const explicit = (n: number, content: Buffer) => tlv(0xa0 + n, content);
const octetString = (content: Buffer) => tlv(0x04, content);
const bitString = (content: Buffer, unusedBits = 0) =>
  tlv(0x03, Buffer.concat([Buffer.from([unusedBits]), content]));
const booleanTrue = () => tlv(0x01, Buffer.from([0xff]));

function integer(bytes: Buffer): Buffer {
  let start = 0;
  while (start < bytes.length - 1 && bytes[start] === 0) start++;
  const trimmed = bytes.subarray(start);
  return tlv(0x02, (trimmed[0] as number) & 0x80 ? Buffer.concat([Buffer.from([0]), trimmed]) : trimmed);
}

function oid(dotted: string): Buffer {
  const parts = dotted.split('.').map(Number);
  const out = [40 * (parts[0] as number) + (parts[1] as number)];
  for (const part of parts.slice(2)) {
    const groups = [part & 0x7f];
    for (let rest = Math.floor(part / 128); rest > 0; rest = Math.floor(rest / 128))
      groups.unshift((rest & 0x7f) | 0x80);
    out.push(...groups);
  }
  return tlv(0x06, Buffer.from(out));
}

/** UTCTime before 2050, GeneralizedTime from then on (RFC 5280 4.1.2.5). */
function time(date: Date): Buffer {
  const iso = date.toISOString(); // 2026-12-05T07:00:00.000Z
  const digits = `${iso.slice(0, 4)}${iso.slice(5, 7)}${iso.slice(8, 10)}${iso.slice(11, 13)}${iso.slice(14, 16)}${iso.slice(17, 19)}Z`;
  return date.getUTCFullYear() < 2050
    ? tlv(0x17, Buffer.from(digits.slice(2), 'latin1'))
    : tlv(0x18, Buffer.from(digits, 'latin1'));
}

function name(organization: string): Buffer {
  return sequence(set(sequence(oid('2.5.4.10'), tlv(0x0c, Buffer.from(organization, 'utf8')))));
}

function ipBytes(host: string): Buffer {
  if (isIP(host) === 4) return Buffer.from(host.split('.').map(Number));
  // IPv6: expand "::" and write eight 16-bit groups.
  const [head = '', tail = ''] = host.split('::');
  const headGroups = head === '' ? [] : head.split(':');
  const tailGroups = tail === '' ? [] : tail.split(':');
  const groups = host.includes('::')
    ? [...headGroups, ...new Array(8 - headGroups.length - tailGroups.length).fill('0'), ...tailGroups]
    : headGroups;
  const out = Buffer.alloc(16);
  for (const [i, group] of groups.entries()) out.writeUInt16BE(Number.parseInt(group, 16), i * 2);
  return out;
}

function subjectAltNames(hosts: readonly string[]): Buffer {
  const names = hosts.map((host) => {
    const bare = host.replace(/^\[|\]$/g, '');
    return isIP(bare) !== 0 ? tlv(0x87, ipBytes(bare)) : tlv(0x82, Buffer.from(bare, 'latin1'));
  });
  return sequence(...names);
}

function extension(id: string, critical: boolean, value: Buffer): Buffer {
  return critical
    ? sequence(oid(id), booleanTrue(), octetString(value))
    : sequence(oid(id), octetString(value));
}

/** A self-signed certificate and its key, both PEM. */
export function selfSignedCertificate(
  hosts: readonly string[],
  now = new Date(),
): { cert: string; key: string } {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const serial = randomBytes(16);
  serial[0] = (serial[0] as number) & 0x7f;
  const signatureAlgorithm = sequence(oid('1.2.840.10045.4.3.2'));
  const extensions = [
    // keyUsage: digitalSignature (bit 0) and keyEncipherment (bit 2).
    extension('2.5.29.15', true, bitString(Buffer.from([0xa0]), 5)),
    // extKeyUsage: serverAuth, clientAuth.
    extension('2.5.29.37', false, sequence(oid('1.3.6.1.5.5.7.3.1'), oid('1.3.6.1.5.5.7.3.2'))),
    extension('2.5.29.19', true, sequence()),
  ];
  if (hosts.length > 0) extensions.push(extension('2.5.29.17', false, subjectAltNames(hosts)));
  const tbs = sequence(
    explicit(0, integer(Buffer.from([2]))),
    integer(serial),
    signatureAlgorithm,
    name('etcd'),
    sequence(time(now), time(new Date(now.getTime() + VALIDITY_MS))),
    name('etcd'),
    publicKey.export({ type: 'spki', format: 'der' }),
    explicit(3, sequence(...extensions)),
  );
  const signature = sign('sha256', tbs, privateKey);
  const der = sequence(tbs, signatureAlgorithm, bitString(signature));
  const base64 = der.toString('base64').replace(/(.{64})/g, '$1\n');
  return {
    cert: `-----BEGIN CERTIFICATE-----\n${base64.replace(/\n$/, '')}\n-----END CERTIFICATE-----\n`,
    key: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
  };
}

/** Writes cert.pem and key.pem into dir unless both exist (etcd keeps an existing pair). */
export function ensureSelfSignedFiles(
  dir: string,
  hosts: readonly string[],
): { certFile: string; keyFile: string } {
  const certFile = join(dir, 'cert.pem');
  const keyFile = join(dir, 'key.pem');
  if (existsSync(certFile) && existsSync(keyFile)) return { certFile, keyFile };
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const { cert, key } = selfSignedCertificate(hosts);
  writeFileSync(`${keyFile}.tmp`, key, { mode: 0o600 });
  writeFileSync(`${certFile}.tmp`, cert);
  renameSync(`${keyFile}.tmp`, keyFile);
  renameSync(`${certFile}.tmp`, certFile);
  return { certFile, keyFile };
}

/**
 * Which files one side uses: the given cert and key, else (with auto TLS) a self-signed pair in
 * fixturesDir, else none (plaintext). `flagPrefix` is '' or 'peer-' for the error texts.
 */
export function resolveTlsFiles(
  settings: TlsSettings | undefined,
  fixturesDir: string,
  urls: readonly string[],
  flagPrefix: '' | 'peer-',
): TlsFiles | undefined {
  if (settings === undefined) return undefined;
  const common = {
    trustedCaFile: settings.trustedCaFile,
    clientCertAuth: settings.clientCertAuth,
    cipherSuites: settings.cipherSuites,
    minVersion: settings.minVersion,
  };
  if (settings.certFile !== '' || settings.keyFile !== '') {
    if (settings.certFile === '' || settings.keyFile === '') {
      throw new TlsConfigError(`--${flagPrefix}cert-file and --${flagPrefix}key-file must be given together`);
    }
    return { ...common, certFile: settings.certFile, keyFile: settings.keyFile, selfSigned: false };
  }
  if (!settings.autoTls) return undefined;
  const hosts = [...new Set(urls.map((url) => new URL(url).hostname))];
  return { ...common, ...ensureSelfSignedFiles(fixturesDir, hosts), selfSigned: true };
}
