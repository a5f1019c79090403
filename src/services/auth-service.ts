// etcd's Auth service on a member (EtcdBackend.auth): changes go through Raft as AuthOps (each
// member applies them to its copy of the store); passwords are hashed here, on the member that
// received the request, before proposing; reads of the store (user/role get and list) are served
// from this member's copy after a linearizable barrier, with etcd's permission rules.

import type { AuthGate } from '../replica/auth-gate.js';
import type { AuthEffect, AuthInfo, AuthOp } from '../replica/auth-store.js';
import { EtcdError } from '../wire/etcd-errors.js';
import type { AuthBackend, Credentials, HeaderInfo, Permission, WithHeader } from './backend.js';

export interface AuthServiceHost {
  header(): HeaderInfo;
  barrier(): Promise<void>;
  propose(request: AuthOp, info: AuthInfo | undefined): Promise<AuthEffect>;
}

/** Authenticate is retried when the store changed while the password was being checked (etcd). */
const AUTHENTICATE_ATTEMPTS_MAX = 5;

export class AuthService implements AuthBackend {
  constructor(
    private readonly gate: AuthGate,
    private readonly host: AuthServiceHost,
  ) {}

  resolve(credentials: Credentials): AuthInfo | undefined {
    return this.gate.resolve(credentials);
  }

  enabled(): boolean {
    return this.gate.store.enabled;
  }

  checkAdmin(info: AuthInfo | undefined): void {
    this.gate.store.checkAdmin(info);
  }

  checkRead(info: AuthInfo | undefined, key: Uint8Array, rangeEnd: Uint8Array): void {
    this.gate.store.checkRange(info, key, rangeEnd, 'READ');
  }

  private async change(request: AuthOp, info: AuthInfo | undefined): Promise<{ header: HeaderInfo }> {
    await this.host.propose(request, info);
    return { header: this.host.header() };
  }

  async authStatus(): Promise<WithHeader<{ enabled: boolean; authRevision: number }>> {
    await this.host.barrier();
    const store = this.gate.store;
    return { header: this.host.header(), enabled: store.enabled, authRevision: store.revision };
  }

  authEnable(info: AuthInfo | undefined): Promise<{ header: HeaderInfo }> {
    return this.change({ type: 'authEnable' }, info);
  }

  authDisable(info: AuthInfo | undefined): Promise<{ header: HeaderInfo }> {
    return this.change({ type: 'authDisable' }, info);
  }

  async authenticate(name: string, password: string): Promise<WithHeader<{ token: string }>> {
    await this.host.barrier();
    for (let attempt = 1; ; attempt++) {
      const checkedRevision = await this.gate.checkPassword(name, password);
      const effect = await this.host.propose(
        { type: 'authenticate', name, simpleToken: this.gate.newSimpleTokenPrefix() },
        undefined,
      );
      if (effect.type !== 'authenticated') throw new Error('authenticate applied without a token');
      // etcd: the password was checked against a store that changed meanwhile: check again.
      if (checkedRevision === this.gate.store.revision || attempt >= AUTHENTICATE_ATTEMPTS_MAX)
        return { header: this.host.header(), token: this.gate.tokenFor(effect) };
    }
  }

  async userAdd(
    info: AuthInfo | undefined,
    name: string,
    password: string,
    options: { noPassword: boolean; hashedPassword: string },
  ): Promise<{ header: HeaderInfo }> {
    // etcd refuses an empty name before hashing; the apply repeats every check.
    if (name === '') throw new EtcdError('userEmpty');
    this.gate.store.checkAdmin(info);
    let passwordHash = '';
    if (!options.noPassword)
      passwordHash = options.hashedPassword !== '' ? options.hashedPassword : await this.gate.hash(password);
    return this.change({ type: 'userAdd', name, passwordHash, noPassword: options.noPassword }, info);
  }

  async userGet(info: AuthInfo | undefined, name: string): Promise<WithHeader<{ roles: string[] }>> {
    await this.host.barrier();
    const store = this.gate.store;
    // etcd: a user may look at itself without being root.
    if (!(store.enabled && info !== undefined && info.username === name)) store.checkAdmin(info);
    const user = store.user(name);
    if (user === undefined) throw new EtcdError('userNotFound');
    return { header: this.host.header(), roles: [...user.roles] };
  }

  async userList(info: AuthInfo | undefined): Promise<WithHeader<{ users: string[] }>> {
    await this.host.barrier();
    this.gate.store.checkAdmin(info);
    return { header: this.host.header(), users: this.gate.store.userNames() };
  }

  userDelete(info: AuthInfo | undefined, name: string): Promise<{ header: HeaderInfo }> {
    return this.change({ type: 'userDelete', name }, info);
  }

  async userChangePassword(
    info: AuthInfo | undefined,
    name: string,
    password: string,
    hashedPassword: string,
  ): Promise<{ header: HeaderInfo }> {
    this.gate.store.checkAdmin(info);
    const passwordHash = hashedPassword !== '' ? hashedPassword : await this.gate.hash(password);
    return this.change({ type: 'userChangePassword', name, passwordHash }, info);
  }

  userGrantRole(info: AuthInfo | undefined, user: string, role: string): Promise<{ header: HeaderInfo }> {
    return this.change({ type: 'userGrantRole', user, role }, info);
  }

  userRevokeRole(info: AuthInfo | undefined, name: string, role: string): Promise<{ header: HeaderInfo }> {
    return this.change({ type: 'userRevokeRole', name, role }, info);
  }

  roleAdd(info: AuthInfo | undefined, name: string): Promise<{ header: HeaderInfo }> {
    return this.change({ type: 'roleAdd', name }, info);
  }

  async roleGet(
    info: AuthInfo | undefined,
    role: string,
  ): Promise<WithHeader<{ permissions: Permission[] }>> {
    await this.host.barrier();
    const store = this.gate.store;
    // etcd: a user may look at the roles it has without being root.
    const own =
      store.enabled && info !== undefined && (store.user(info.username)?.roles.includes(role) ?? false);
    if (!own) store.checkAdmin(info);
    const found = store.role(role);
    if (found === undefined) throw new EtcdError('roleNotFound');
    return { header: this.host.header(), permissions: found.permissions.map((p) => ({ ...p })) };
  }

  async roleList(info: AuthInfo | undefined): Promise<WithHeader<{ roles: string[] }>> {
    await this.host.barrier();
    this.gate.store.checkAdmin(info);
    return { header: this.host.header(), roles: this.gate.store.roleNames() };
  }

  roleDelete(info: AuthInfo | undefined, role: string): Promise<{ header: HeaderInfo }> {
    return this.change({ type: 'roleDelete', role }, info);
  }

  roleGrantPermission(
    info: AuthInfo | undefined,
    name: string,
    permission: Permission,
  ): Promise<{ header: HeaderInfo }> {
    return this.change({ type: 'roleGrantPermission', name, permission }, info);
  }

  roleRevokePermission(
    info: AuthInfo | undefined,
    role: string,
    key: Uint8Array,
    rangeEnd: Uint8Array,
  ): Promise<{ header: HeaderInfo }> {
    return this.change({ type: 'roleRevokePermission', role, key, rangeEnd }, info);
  }
}
