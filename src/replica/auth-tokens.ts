// etcd's auth tokens (--auth-token): "simple" tokens, random strings each member remembers for a
// TTL that every use renews (assigned when an Authenticate entry is applied, so every member
// knows them; lost on restart, as in etcd), and "jwt" tokens signed with node:crypto, which any
// member verifies on its own until they expire. Both name a user; a simple token is checked at the
// store's current auth revision, a JWT at the revision it was issued at (so a change of the auth
// store makes older JWTs answer "revision of auth store is old", and clients re-authenticate).

import {
  createHmac,
  createPrivateKey,
  createPublicKey,
  constants as cryptoConstants,
  type KeyObject,
  randomInt,
  sign as signBytes,
  timingSafeEqual,
  verify as verifyBytes,
} from 'node:crypto';
import { readFileSync } from 'node:fs';

/** etcd's default --auth-token-ttl (seconds) for simple tokens. */
export const SIMPLE_TOKEN_TTL_SECONDS_DEFAULT = 300;
/** etcd's default JWT ttl: 5 minutes. */
export const JWT_TTL_SECONDS_DEFAULT = 300;
const SIMPLE_TOKEN_LETTERS = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ';
const SIMPLE_TOKEN_PREFIX_LENGTH = 16;

export type JwtSignMethod =
  | 'RS256'
  | 'RS384'
  | 'RS512'
  | 'PS256'
  | 'PS384'
  | 'PS512'
  | 'ES256'
  | 'ES384'
  | 'ES512'
  | 'HS256'
  | 'HS384'
  | 'HS512';
const signMethods: readonly string[] = [
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'HS256',
  'HS384',
  'HS512',
];

export interface JwtOptions {
  signMethod: JwtSignMethod;
  ttlSeconds: number;
  /** PEM file paths (RS/PS/ES), or for HS the shared secret's file as priv-key. */
  publicKeyFile?: string;
  privateKeyFile?: string;
}

export type AuthTokenConfig = { type: 'simple' } | ({ type: 'jwt' } & JwtOptions);

/** Parses etcd's --auth-token value: `simple`, or `jwt,pub-key=…,priv-key=…,sign-method=…,ttl=…`. */
export function parseAuthTokenFlag(value: string): AuthTokenConfig {
  const [kind, ...options] = value.split(',');
  if (kind === 'simple' && options.length === 0) return { type: 'simple' };
  if (kind !== 'jwt')
    throw new Error(`--auth-token: unknown token type ${JSON.stringify(kind)} (simple or jwt)`);
  const jwt: { type: 'jwt' } & JwtOptions = {
    type: 'jwt',
    signMethod: 'RS256',
    ttlSeconds: JWT_TTL_SECONDS_DEFAULT,
  };
  for (const option of options) {
    const at = option.indexOf('=');
    const name = at < 0 ? option : option.slice(0, at);
    const optionValue = at < 0 ? '' : option.slice(at + 1);
    if (name === 'pub-key') jwt.publicKeyFile = optionValue;
    else if (name === 'priv-key') jwt.privateKeyFile = optionValue;
    else if (name === 'sign-method') {
      if (!signMethods.includes(optionValue))
        throw new Error(`--auth-token: unknown sign-method ${JSON.stringify(optionValue)}`);
      jwt.signMethod = optionValue as JwtSignMethod;
    } else if (name === 'ttl') jwt.ttlSeconds = parseDurationSeconds(optionValue);
    else throw new Error(`--auth-token: unknown jwt option ${JSON.stringify(name)}`);
  }
  if (jwt.signMethod.startsWith('HS')) {
    if (jwt.privateKeyFile === undefined)
      throw new Error('--auth-token: an HS sign-method needs priv-key (the secret)');
  } else if (jwt.publicKeyFile === undefined) throw new Error('--auth-token: jwt needs pub-key');
  return jwt;
}

/** A Go duration as etcd's jwt ttl takes it (e.g. 5m, 30s, 1h, 1m30s). */
function parseDurationSeconds(text: string): number {
  const units: Record<string, number> = { h: 3600, m: 60, s: 1, ms: 0.001 };
  let total = 0;
  let rest = text;
  if (rest === '') throw new Error('--auth-token: empty ttl');
  while (rest.length > 0) {
    const match = /^(\d+(?:\.\d+)?)(ms|h|m|s)/.exec(rest);
    if (match === null)
      throw new Error(`--auth-token: bad ttl ${JSON.stringify(text)} (for example 5m or 30s)`);
    total += Number(match[1]) * units[match[2]!]!;
    rest = rest.slice(match[0].length);
  }
  return total;
}

/** etcd's simple token prefix: 16 random letters (the applied entry's index is appended). */
export function simpleTokenPrefix(): string {
  let out = '';
  for (let i = 0; i < SIMPLE_TOKEN_PREFIX_LENGTH; i++)
    out += SIMPLE_TOKEN_LETTERS[randomInt(SIMPLE_TOKEN_LETTERS.length)];
  return out;
}

/** The simple tokens this member knows: token → user and when it lapses (renewed on each use). */
export class SimpleTokens {
  private readonly tokens = new Map<string, { username: string; expiresAtMs: number }>();

  constructor(private readonly ttlMs: number) {}

  assign(token: string, username: string, nowMs: number): void {
    this.tokens.set(token, { username, expiresAtMs: nowMs + this.ttlMs });
  }

  /** The token's user, renewing its TTL; undefined for an unknown or lapsed token. */
  username(token: string, nowMs: number): string | undefined {
    const entry = this.tokens.get(token);
    if (entry === undefined) return undefined;
    if (entry.expiresAtMs <= nowMs) {
      this.tokens.delete(token);
      return undefined;
    }
    entry.expiresAtMs = nowMs + this.ttlMs;
    return entry.username;
  }

  /** A deleted user or a changed password ends that user's tokens (etcd's invalidateUser). */
  invalidateUser(username: string): void {
    for (const [token, entry] of this.tokens) if (entry.username === username) this.tokens.delete(token);
  }

  clear(): void {
    this.tokens.clear();
  }

  /** Drops lapsed tokens (bounded memory for clients that never come back). */
  sweep(nowMs: number): void {
    for (const [token, entry] of this.tokens) if (entry.expiresAtMs <= nowMs) this.tokens.delete(token);
  }
}

function base64url(data: Buffer | string): string {
  return Buffer.from(data).toString('base64url');
}

const digestOf = (method: JwtSignMethod) => `sha${method.slice(2)}`;

/** Verified tokens a member remembers (a client sends the same token on every request). */
export const JWT_VERIFIED_CACHE_MAX = 1024;

interface VerifiedJwt {
  username: string;
  revision: number;
  expiresAtMs: number;
}

/**
 * JWTs signed and verified with node:crypto: claims username, revision and exp (etcd's). A token
 * whose signature checked out is remembered with its claims (a public-key verify costs tens of
 * microseconds, more than the rest of a request's auth): the claims are a function of the token's
 * text and the keys, which do not change while the member runs, so a remembered token answers as
 * a fresh verify would; its expiry is checked on every use, and its auth revision by the store on
 * every check, as for a fresh one.
 */
export class JwtTokens {
  private readonly privateKey: KeyObject | Buffer | undefined;
  private readonly publicKey: KeyObject | Buffer;
  /** token → claims, oldest first (evicted first when full). */
  private readonly verified = new Map<string, VerifiedJwt>();
  /** Signature checks made so far (a remembered token needs none). */
  signatureChecks = 0;

  constructor(private readonly options: JwtOptions) {
    const hmac = options.signMethod.startsWith('HS');
    if (hmac) {
      const secret = readFileSync(options.privateKeyFile!);
      this.privateKey = secret;
      this.publicKey = secret;
    } else {
      this.privateKey =
        options.privateKeyFile === undefined
          ? undefined
          : createPrivateKey(readFileSync(options.privateKeyFile));
      this.publicKey = createPublicKey(readFileSync(options.publicKeyFile!));
    }
  }

  sign(username: string, revision: number, nowMs: number): string {
    if (this.privateKey === undefined) throw new Error('auth: jwt token signing needs priv-key');
    const header = base64url(JSON.stringify({ alg: this.options.signMethod, typ: 'JWT' }));
    const exp = Math.floor(nowMs / 1000 + this.options.ttlSeconds);
    const payload = base64url(JSON.stringify({ exp, revision, username }));
    const input = `${header}.${payload}`;
    return `${input}.${base64url(this.signature(input))}`;
  }

  private signature(input: string): Buffer {
    const method = this.options.signMethod;
    const digest = digestOf(method);
    if (method.startsWith('HS'))
      return createHmac(digest, this.privateKey as Buffer)
        .update(input)
        .digest();
    const key = this.privateKey as KeyObject;
    if (method.startsWith('PS'))
      return signBytes(digest, Buffer.from(input), {
        key,
        padding: cryptoConstants.RSA_PKCS1_PSS_PADDING,
        saltLength: cryptoConstants.RSA_PSS_SALTLEN_DIGEST,
      });
    if (method.startsWith('ES'))
      return signBytes(digest, Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' });
    return signBytes(digest, Buffer.from(input), key);
  }

  /** The token's user and revision if its signature, algorithm and expiry hold; else undefined. */
  verify(token: string, nowMs: number): { username: string; revision: number } | undefined {
    const known = this.verified.get(token);
    if (known !== undefined) {
      if (known.expiresAtMs <= nowMs) {
        this.verified.delete(token);
        return undefined;
      }
      return { username: known.username, revision: known.revision };
    }
    const claims = this.verifyUncached(token, nowMs);
    if (claims === undefined) return undefined;
    if (this.verified.size >= JWT_VERIFIED_CACHE_MAX) {
      const oldest = this.verified.keys().next().value;
      if (oldest !== undefined) this.verified.delete(oldest);
    }
    this.verified.set(token, claims);
    return { username: claims.username, revision: claims.revision };
  }

  /** Remembered tokens (bounded by JWT_VERIFIED_CACHE_MAX). */
  get verifiedCount(): number {
    return this.verified.size;
  }

  /** Forgets remembered tokens issued before auth revision `revision` (the store refuses them anyway). */
  forgetOlderThan(revision: number): void {
    for (const [token, claims] of this.verified) if (claims.revision < revision) this.verified.delete(token);
  }

  private verifyUncached(token: string, nowMs: number): VerifiedJwt | undefined {
    const parts = token.split('.');
    if (parts.length !== 3) return undefined;
    const [header, payload, signature] = parts as [string, string, string];
    let claims: unknown;
    try {
      const head = JSON.parse(Buffer.from(header, 'base64url').toString('utf8')) as { alg?: unknown };
      if (head.alg !== this.options.signMethod) return undefined;
      this.signatureChecks++;
      if (!this.signatureValid(`${header}.${payload}`, Buffer.from(signature, 'base64url'))) return undefined;
      claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
    } catch {
      return undefined;
    }
    const { username, revision, exp } = claims as { username?: unknown; revision?: unknown; exp?: unknown };
    if (typeof username !== 'string' || typeof revision !== 'number' || typeof exp !== 'number')
      return undefined;
    if (exp * 1000 <= nowMs) return undefined;
    return { username, revision, expiresAtMs: exp * 1000 };
  }

  private signatureValid(input: string, signature: Buffer): boolean {
    const method = this.options.signMethod;
    const digest = digestOf(method);
    if (method.startsWith('HS')) {
      const expected = createHmac(digest, this.publicKey as Buffer)
        .update(input)
        .digest();
      return expected.length === signature.length && timingSafeEqual(expected, signature);
    }
    const key = this.publicKey as KeyObject;
    if (method.startsWith('PS'))
      return verifyBytes(
        digest,
        Buffer.from(input),
        {
          key,
          padding: cryptoConstants.RSA_PKCS1_PSS_PADDING,
          saltLength: cryptoConstants.RSA_PSS_SALTLEN_DIGEST,
        },
        signature,
      );
    if (method.startsWith('ES'))
      return verifyBytes(digest, Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' }, signature);
    return verifyBytes(digest, Buffer.from(input), key, signature);
  }
}
