// Encryption at rest: AES-256-GCM (node:crypto) with named keys, so a key can be rotated while
// data sealed under older keys stays readable until it is re-encrypted.
//
// Key file (--encryption-key-file): one key per line, `<id>:<base64 of 32 bytes>`; blank lines
// and lines starting with `#` are ignored. Ids are 1–32 characters of [A-Za-z0-9._-]. The first
// key is the one a new data dir starts with; once the cluster has agreed on another active key
// (`concordctl encryption rotate-key`), that one is used, and it must be in the file.
//
// Sealed envelope (everything this module produces):
//   u8 version (1) | u8 idLength | id (ascii) | nonce (12 bytes, random) | ciphertext | tag (16)
// The additional authenticated data names the purpose and, where the caller has one, the place
// (a revision key, a WAL group), so a ciphertext cannot be moved to another place undetected.
//
// Nonces are random: with 96 bits, NIST SP 800-38D bounds one key to 2^32 encryptions, far above
// what a member writes between rotations.

import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';

export const ENCRYPTION_KEY_BYTES = 32;
export const ENCRYPTION_NONCE_BYTES = 12;
export const ENCRYPTION_TAG_BYTES = 16;
const ENVELOPE_VERSION = 1;
const KEY_ID_PATTERN = /^[A-Za-z0-9._-]{1,32}$/;

export type EncryptionErrorCode = 'ENCRYPTION_KEY_FILE' | 'ENCRYPTION_KEY_MISSING' | 'ENCRYPTION_AUTH_FAILED';

export class EncryptionError extends Error {
  constructor(
    readonly code: EncryptionErrorCode,
    message: string,
    /** The key id the failure is about (the one a ciphertext names, or the one asked for). */
    readonly keyId?: string,
  ) {
    super(message);
    this.name = 'EncryptionError';
  }
}

/** The key ring read from a key file: named 256-bit keys, one of them active for new writes. */
export class EncryptionKeys {
  private keys: Map<string, Buffer>;
  private active: string;

  private constructor(
    readonly file: string,
    keys: Map<string, Buffer>,
    active: string,
  ) {
    this.keys = keys;
    this.active = active;
  }

  /** Reads and checks a key file; throws EncryptionError('ENCRYPTION_KEY_FILE') naming the problem. */
  static fromFile(file: string): EncryptionKeys {
    const { keys, first } = readKeyFile(file);
    return new EncryptionKeys(file, keys, first);
  }

  /** A key ring from keys in memory (tests, benchmarks). The first one is active. */
  static of(entries: readonly [string, Uint8Array][]): EncryptionKeys {
    const keys = new Map<string, Buffer>();
    for (const [id, key] of entries)
      keys.set(checkKeyId(id, 'key ring'), checkKey(Buffer.from(key), id, 'key ring'));
    const first = entries[0]?.[0];
    if (first === undefined)
      throw new EncryptionError('ENCRYPTION_KEY_FILE', 'a key ring needs at least one key');
    return new EncryptionKeys('(memory)', keys, first);
  }

  /** Reads the file again (a rotation adds keys, a finished one drops old keys); the active id stays. */
  reload(): void {
    if (this.file === '(memory)') return;
    const { keys } = readKeyFile(this.file);
    this.keys = keys;
  }

  activeKeyId(): string {
    return this.active;
  }

  keyIds(): string[] {
    return [...this.keys.keys()];
  }

  has(id: string): boolean {
    return this.keys.has(id);
  }

  /** Makes `id` the key new data is sealed with; it must be in the ring. */
  setActive(id: string): void {
    this.require(id);
    this.active = id;
  }

  /** Throws ENCRYPTION_KEY_MISSING unless the key file holds `id`. */
  require(id: string): Buffer {
    const key = this.keys.get(id);
    if (key === undefined) {
      throw new EncryptionError(
        'ENCRYPTION_KEY_MISSING',
        `encryption key "${id}" is not in the key file ${this.file}: add it (the data is sealed with it) and start again`,
        id,
      );
    }
    return key;
  }

  /** Seals `plain` under the active key. */
  seal(plain: Uint8Array, aad: Uint8Array): Buffer {
    const id = this.active;
    const key = this.require(id);
    const idBytes = Buffer.from(id, 'ascii');
    const head = 2 + idBytes.length;
    const out = Buffer.allocUnsafe(head + ENCRYPTION_NONCE_BYTES + plain.length + ENCRYPTION_TAG_BYTES);
    out[0] = ENVELOPE_VERSION;
    out[1] = idBytes.length;
    idBytes.copy(out, 2);
    const nonce = out.subarray(head, head + ENCRYPTION_NONCE_BYTES);
    randomBytes(ENCRYPTION_NONCE_BYTES).copy(nonce);
    const cipher = createCipheriv('aes-256-gcm', key, nonce);
    cipher.setAAD(aad);
    const body = head + ENCRYPTION_NONCE_BYTES;
    let o = body + cipher.update(plain).copy(out, body);
    o += cipher.final().copy(out, o);
    cipher.getAuthTag().copy(out, o);
    return out;
  }

  /**
   * Opens an envelope made by seal() with the same aad. Throws ENCRYPTION_KEY_MISSING when the
   * key it names is not in the file, ENCRYPTION_AUTH_FAILED when the tag does not verify (a wrong
   * key under that id, or damaged or moved data): never returns unauthenticated bytes.
   */
  open(sealed: Uint8Array, aad: Uint8Array, where: string): Buffer {
    const { id, nonce, body, tag } = parseEnvelope(sealed, where);
    const key = this.require(id);
    const decipher = createDecipheriv('aes-256-gcm', key, nonce);
    decipher.setAAD(aad);
    decipher.setAuthTag(tag);
    const first = decipher.update(body);
    try {
      const last = decipher.final();
      return last.length === 0 ? first : Buffer.concat([first, last]);
    } catch {
      throw new EncryptionError(
        'ENCRYPTION_AUTH_FAILED',
        `${where}: AES-GCM authentication failed with encryption key "${id}": ` +
          `the key file holds a different key under that id, or the data is damaged`,
        id,
      );
    }
  }
}

/** The key id an envelope names (without opening it). */
export function envelopeKeyId(sealed: Uint8Array, where: string): string {
  return parseEnvelope(sealed, where).id;
}

/** Bytes seal() adds to a plaintext sealed under key `id`. */
export function envelopeOverheadBytes(id: string): number {
  return 2 + id.length + ENCRYPTION_NONCE_BYTES + ENCRYPTION_TAG_BYTES;
}

function parseEnvelope(
  sealed: Uint8Array,
  where: string,
): { id: string; nonce: Uint8Array; body: Uint8Array; tag: Uint8Array } {
  const buf = Buffer.from(sealed.buffer, sealed.byteOffset, sealed.byteLength);
  const idLength = buf[1] ?? 0;
  const head = 2 + idLength;
  if (buf.length < head + ENCRYPTION_NONCE_BYTES + ENCRYPTION_TAG_BYTES || buf[0] !== ENVELOPE_VERSION) {
    throw new EncryptionError('ENCRYPTION_AUTH_FAILED', `${where}: not an encrypted envelope (damaged data)`);
  }
  const id = buf.toString('ascii', 2, head);
  return {
    id,
    nonce: buf.subarray(head, head + ENCRYPTION_NONCE_BYTES),
    body: buf.subarray(head + ENCRYPTION_NONCE_BYTES, buf.length - ENCRYPTION_TAG_BYTES),
    tag: buf.subarray(buf.length - ENCRYPTION_TAG_BYTES),
  };
}

function readKeyFile(file: string): { keys: Map<string, Buffer>; first: string } {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new EncryptionError(
      'ENCRYPTION_KEY_FILE',
      `cannot read encryption key file ${file}: ${(e as Error).message}`,
    );
  }
  const keys = new Map<string, Buffer>();
  let first: string | undefined;
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === '' || line.startsWith('#')) continue;
    const where = `${file} line ${i + 1}`;
    const colon = line.indexOf(':');
    if (colon < 0) throw new EncryptionError('ENCRYPTION_KEY_FILE', `${where}: expected <id>:<base64 key>`);
    const id = checkKeyId(line.slice(0, colon), where);
    if (keys.has(id))
      throw new EncryptionError('ENCRYPTION_KEY_FILE', `${where}: key id "${id}" appears twice`, id);
    keys.set(id, checkKey(Buffer.from(line.slice(colon + 1).trim(), 'base64'), id, where));
    first ??= id;
  }
  if (first === undefined) throw new EncryptionError('ENCRYPTION_KEY_FILE', `${file} holds no key`);
  return { keys, first };
}

function checkKeyId(id: string, where: string): string {
  if (!KEY_ID_PATTERN.test(id)) {
    throw new EncryptionError(
      'ENCRYPTION_KEY_FILE',
      `${where}: key id "${id}" must be 1 to 32 characters of A-Z a-z 0-9 . _ -`,
    );
  }
  return id;
}

function checkKey(key: Buffer, id: string, where: string): Buffer {
  if (key.length !== ENCRYPTION_KEY_BYTES) {
    throw new EncryptionError(
      'ENCRYPTION_KEY_FILE',
      `${where}: key "${id}" is ${key.length} bytes; AES-256 needs ${ENCRYPTION_KEY_BYTES} (base64 of 32 random bytes, e.g. \`openssl rand -base64 32\`)`,
      id,
    );
  }
  return key;
}
