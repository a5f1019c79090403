// Who a request runs as: credentials (a token from the gRPC metadata `token` or the gateway's
// Authorization header; with --client-cert-auth the client certificate's common name) resolved
// against this member's tokens and the replicated auth store. Also where passwords are hashed and
// checked: on the member that received the request, with bcryptjs's asynchronous functions (they
// yield to the event loop), never while applying entries.

import bcrypt from 'bcryptjs';
import { EtcdError } from '../wire/etcd-errors.js';
import type { AuthEffect, AuthInfo, AuthStore } from './auth-store.js';
import {
  type AuthTokenConfig,
  JwtTokens,
  SIMPLE_TOKEN_TTL_SECONDS_DEFAULT,
  SimpleTokens,
  simpleTokenPrefix,
} from './auth-tokens.js';

/** etcd's default --bcrypt-cost (bcrypt.DefaultCost). */
export const BCRYPT_COST_DEFAULT = 10;
/** Lapsed simple tokens are dropped at most this often. */
const TOKEN_SWEEP_INTERVAL_MS = 10_000;

export interface Credentials {
  token?: string;
  /** The verified client certificate's common name (only with --client-cert-auth). */
  commonName?: string;
}

export interface AuthGateOptions {
  token?: AuthTokenConfig;
  /** --auth-token-ttl (seconds), for simple tokens. */
  simpleTokenTtlSeconds?: number;
  /** --bcrypt-cost. */
  bcryptCost?: number;
}

export class AuthGate {
  private readonly simple: SimpleTokens;
  private readonly jwt: JwtTokens | undefined;
  private readonly bcryptCost: number;
  private lastSweepMs = 0;

  constructor(
    public store: AuthStore,
    options: AuthGateOptions = {},
  ) {
    this.simple = new SimpleTokens(
      (options.simpleTokenTtlSeconds ?? SIMPLE_TOKEN_TTL_SECONDS_DEFAULT) * 1000,
    );
    const token = options.token ?? { type: 'simple' };
    this.jwt = token.type === 'jwt' ? new JwtTokens(token) : undefined;
    this.bcryptCost = options.bcryptCost ?? BCRYPT_COST_DEFAULT;
  }

  get tokenType(): 'simple' | 'jwt' {
    return this.jwt === undefined ? 'simple' : 'jwt';
  }

  /**
   * The user a request runs as, or undefined when it carries no credentials. An unknown, forged
   * or expired token is refused (etcd's AuthInfoFromCtx), whether or not auth is enabled.
   */
  resolve(credentials: Credentials, nowMs = Date.now()): AuthInfo | undefined {
    const { token } = credentials;
    if (token !== undefined && token !== '') {
      if (this.jwt !== undefined) {
        const claims = this.jwt.verify(token, nowMs);
        if (claims === undefined) throw new EtcdError('invalidAuthToken');
        return claims;
      }
      this.sweep(nowMs);
      const username = this.simple.username(token, nowMs);
      if (username === undefined) throw new EtcdError('invalidAuthToken');
      return { username, revision: this.store.revision };
    }
    if (credentials.commonName !== undefined)
      return { username: credentials.commonName, revision: this.store.revision };
    return undefined;
  }

  private sweep(nowMs: number): void {
    if (nowMs - this.lastSweepMs < TOKEN_SWEEP_INTERVAL_MS) return;
    this.lastSweepMs = nowMs;
    this.simple.sweep(nowMs);
  }

  /** What an applied auth op means for this member's simple tokens. */
  onApplied(effect: AuthEffect, nowMs = Date.now()): void {
    if (effect.type !== 'unchanged' && effect.type !== 'authenticated')
      this.jwt?.forgetOlderThan(this.store.revision);
    switch (effect.type) {
      case 'disabled':
        this.simple.clear();
        return;
      case 'userChanged':
        this.simple.invalidateUser(effect.name);
        return;
      case 'authenticated':
        if (this.jwt === undefined) this.simple.assign(effect.simpleToken, effect.name, nowMs);
        return;
      case 'none':
      case 'unchanged':
        return;
    }
  }

  /** After an authenticate entry applied at `index`: the token the client gets. */
  tokenFor(effect: Extract<AuthEffect, { type: 'authenticated' }>, nowMs = Date.now()): string {
    if (this.jwt !== undefined) return this.jwt.sign(effect.name, this.store.revision, nowMs);
    return effect.simpleToken;
  }

  /** A fresh simple token prefix for an authenticate entry (apply appends the entry's index). */
  newSimpleTokenPrefix(): string {
    return simpleTokenPrefix();
  }

  hash(password: string): Promise<string> {
    return bcrypt.hash(password, this.bcryptCost);
  }

  /**
   * etcd's CheckPassword: the auth revision the password was checked at, or the refusal (auth
   * not enabled, unknown user or wrong password, a user without a password).
   */
  async checkPassword(name: string, password: string): Promise<number> {
    const store = this.store;
    if (!store.enabled) throw new EtcdError('authNotEnabled');
    const user = store.user(name);
    if (user === undefined) throw new EtcdError('authFailed');
    if (user.noPassword) throw new EtcdError('authNoPasswordUser');
    const revision = store.revision;
    if (!(await bcrypt.compare(password, user.passwordHash))) throw new EtcdError('authFailed');
    return revision;
  }
}
