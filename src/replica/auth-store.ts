// etcd's auth store as replicated state: users (bcrypt password hash, roles), roles (key
// permissions), the enabled flag and the auth revision. Changed only by applying committed
// entries (AuthOp), so every member holds the same store; the server keeps its encoding in the
// keyspace's meta, written in the same LMDB transaction as the entry that changed it, so
// snapshots carry it. Passwords are hashed by the member that receives the request, before it
// proposes (an entry carries the hash, never the password), so applying is cheap everywhere.
//
// The rules and their order follow etcd 3.4's auth store (server/auth/store.go); the error texts
// are etcd's (errors.ts), checked against a real etcd 3.4.

import type { EtcdAuthState } from '../mvcc/etcd-snapshot.js';
import { BinaryReader, BinaryWriter } from '../util/binary.js';
import { EtcdError, type EtcdErrorCode } from '../wire/etcd-errors.js';

export type PermissionType = 'READ' | 'WRITE' | 'READWRITE';
const permissionTypes: readonly PermissionType[] = ['READ', 'WRITE', 'READWRITE'];

export interface KeyPermission {
  permType: PermissionType;
  key: Uint8Array;
  /** Empty: the single key; [0x00]: every key from `key` on; otherwise [key, rangeEnd). */
  rangeEnd: Uint8Array;
}

export interface AuthUser {
  name: string;
  /** bcrypt hash; empty for a user added with no_password (who cannot authenticate by password). */
  passwordHash: string;
  noPassword: boolean;
  /** Sorted, no duplicates (etcd keeps them sorted). */
  roles: string[];
}

export interface AuthRole {
  name: string;
  /** Sorted by key, stable: a new permission goes after the ones with an equal key. */
  permissions: KeyPermission[];
}

/** Who a request runs as, and the auth revision its credentials were checked at. */
export interface AuthInfo {
  username: string;
  revision: number;
}

/** Auth changes proposed through Raft. Passwords are already hashed. */
export type AuthOp =
  | { type: 'authEnable' }
  | { type: 'authDisable' }
  | { type: 'authenticate'; name: string; simpleToken: string }
  | { type: 'userAdd'; name: string; passwordHash: string; noPassword: boolean }
  | { type: 'userDelete'; name: string }
  | { type: 'userChangePassword'; name: string; passwordHash: string }
  | { type: 'userGrantRole'; user: string; role: string }
  | { type: 'userRevokeRole'; name: string; role: string }
  | { type: 'roleAdd'; name: string }
  | { type: 'roleDelete'; role: string }
  | { type: 'roleGrantPermission'; name: string; permission: KeyPermission }
  | { type: 'roleRevokePermission'; role: string; key: Uint8Array; rangeEnd: Uint8Array };

/** The auth store's record in the keyspace's meta (so snapshots and restores carry it). */
export const AUTH_META_NAME = 'cluster/auth';

export const ROOT_USER = 'root';
export const ROOT_ROLE = 'root';

/** What applying an auth op did, for the member's token table (simple tokens live per member). */
export type AuthEffect =
  | { type: 'none' }
  | { type: 'unchanged' }
  | { type: 'disabled' }
  | { type: 'userChanged'; name: string }
  | { type: 'authenticated'; name: string; simpleToken: string };

function fail(code: EtcdErrorCode): never {
  throw new EtcdError(code);
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  return Buffer.compare(a, b);
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.compare(a, b) === 0;
}

/** Ops that only root may propose while auth is enabled (etcd's needAdminPermission). */
export function needsAdmin(op: AuthOp): boolean {
  return op.type !== 'authenticate';
}

interface Interval {
  begin: Uint8Array;
  /** undefined = no upper bound. */
  end: Uint8Array | undefined;
}

/** A permission as an interval, as etcd's range permission cache builds it. */
function permissionInterval(p: KeyPermission): Interval {
  if (p.rangeEnd.length === 0) return { begin: p.key, end: Buffer.concat([p.key, Buffer.of(0)]) };
  const unbounded = p.rangeEnd.length === 1 && p.rangeEnd[0] === 0;
  return { begin: p.key, end: unbounded ? undefined : p.rangeEnd };
}

/** True when the union of `intervals` covers `wanted` (etcd's IntervalTree.Contains). */
function covers(intervals: Interval[], wanted: Interval): boolean {
  const sorted = intervals
    .filter((i) => (i.end === undefined || compareBytes(i.end, wanted.begin) > 0) && overlapsEnd(i, wanted))
    .sort((a, b) => compareBytes(a.begin, b.begin));
  const first = sorted[0];
  if (first === undefined || compareBytes(first.begin, wanted.begin) > 0) return false;
  let reach: Uint8Array | undefined = first.end;
  for (const next of sorted.slice(1)) {
    if (reach === undefined) return true;
    if (compareBytes(reach, next.begin) < 0) return false;
    if (next.end === undefined || compareBytes(next.end, reach) > 0) reach = next.end;
  }
  return reach === undefined || (wanted.end !== undefined && compareBytes(reach, wanted.end) >= 0);
}

function overlapsEnd(i: Interval, wanted: Interval): boolean {
  return wanted.end === undefined || compareBytes(i.begin, wanted.end) < 0;
}

function grants(permType: PermissionType, wanted: 'READ' | 'WRITE'): boolean {
  return permType === 'READWRITE' || permType === wanted;
}

export class AuthStore {
  enabled = false;
  /** etcd's authRevision: 1 in a fresh store, +1 on every change that succeeds. */
  revision = 1;
  private readonly users = new Map<string, AuthUser>();
  private readonly roles = new Map<string, AuthRole>();

  user(name: string): AuthUser | undefined {
    return this.users.get(name);
  }

  role(name: string): AuthRole | undefined {
    return this.roles.get(name);
  }

  userNames(): string[] {
    return [...this.users.keys()].sort();
  }

  roleNames(): string[] {
    return [...this.roles.keys()].sort();
  }

  hasRootRole(name: string): boolean {
    return this.users.get(name)?.roles.includes(ROOT_ROLE) ?? false;
  }

  // ---- checks (etcd's IsAdminPermitted / isOpPermitted) --------------------------------------

  /** Throws unless `info` names a root user (no-op while auth is disabled). */
  checkAdmin(info: AuthInfo | undefined): void {
    if (!this.enabled) return;
    if (info === undefined || info.username === '') fail('userEmpty');
    if (!this.users.has(info.username)) fail('userNotFound');
    if (!this.hasRootRole(info.username)) fail('permissionDenied');
  }

  /**
   * Throws unless `info` may read or write [key, rangeEnd) (rangeEnd empty: the key alone). A
   * request checked at an older auth revision is refused with authOldRevision, as etcd does.
   */
  checkRange(
    info: AuthInfo | undefined,
    key: Uint8Array,
    rangeEnd: Uint8Array,
    wanted: 'READ' | 'WRITE',
  ): void {
    if (!this.enabled) return;
    if (info === undefined || info.revision === 0) fail('userEmpty');
    if (info.revision < this.revision) fail('authOldRevision');
    const user = this.users.get(info.username);
    if (user === undefined) fail('permissionDenied');
    if (user.roles.includes(ROOT_ROLE)) return;
    if (!this.rangePermitted(user, key, rangeEnd, wanted)) fail('permissionDenied');
  }

  private rangePermitted(
    user: AuthUser,
    key: Uint8Array,
    rangeEnd: Uint8Array,
    wanted: 'READ' | 'WRITE',
  ): boolean {
    const intervals: Interval[] = [];
    for (const roleName of user.roles) {
      for (const p of this.roles.get(roleName)?.permissions ?? [])
        if (grants(p.permType, wanted)) intervals.push(permissionInterval(p));
    }
    if (rangeEnd.length === 0) {
      // A single key: permitted when some permission holds it.
      return intervals.some(
        (i) => compareBytes(i.begin, key) <= 0 && (i.end === undefined || compareBytes(key, i.end) < 0),
      );
    }
    const unbounded = rangeEnd.length === 1 && rangeEnd[0] === 0;
    return covers(intervals, { begin: key, end: unbounded ? undefined : rangeEnd });
  }

  // ---- applying ------------------------------------------------------------------------------

  /**
   * Applies a committed auth op for `info` (undefined: the request carried no credentials).
   * Throws EtcdError for a refused op, which then changed nothing.
   */
  apply(op: AuthOp, info: AuthInfo | undefined): AuthEffect {
    if (needsAdmin(op)) this.checkAdmin(info);
    const effect = this.applyUnchecked(op);
    // etcd commits a new auth revision for each change, except an enable (its AuthEnable only
    // reloads the revision) and what changed nothing (a repeated grant).
    if (op.type !== 'authenticate' && op.type !== 'authEnable' && effect.type !== 'unchanged')
      this.revision++;
    return effect;
  }

  private applyUnchecked(op: AuthOp): AuthEffect {
    switch (op.type) {
      case 'authEnable': {
        if (this.enabled) return { type: 'unchanged' };
        const root = this.users.get(ROOT_USER);
        if (root === undefined) fail('rootUserNotExist');
        if (!root.roles.includes(ROOT_ROLE)) fail('rootRoleNotExist');
        this.enabled = true;
        return { type: 'none' };
      }
      case 'authDisable':
        if (!this.enabled) return { type: 'unchanged' };
        this.enabled = false;
        return { type: 'disabled' };
      case 'authenticate':
        if (!this.enabled) fail('authNotEnabled');
        if (!this.users.has(op.name)) fail('authFailed');
        return { type: 'authenticated', name: op.name, simpleToken: op.simpleToken };
      case 'userAdd':
        if (op.name === '') fail('userEmpty');
        if (this.users.has(op.name)) fail('userAlreadyExist');
        this.users.set(op.name, {
          name: op.name,
          passwordHash: op.noPassword ? '' : op.passwordHash,
          noPassword: op.noPassword,
          roles: [],
        });
        return { type: 'none' };
      case 'userDelete':
        if (this.enabled && op.name === ROOT_USER) fail('invalidAuthMgmt');
        if (!this.users.delete(op.name)) fail('userNotFound');
        return { type: 'userChanged', name: op.name };
      case 'userChangePassword': {
        const user = this.users.get(op.name) ?? fail('userNotFound');
        user.passwordHash = op.passwordHash;
        user.noPassword = false;
        return { type: 'userChanged', name: op.name };
      }
      case 'userGrantRole': {
        const user = this.users.get(op.user) ?? fail('userNotFound');
        if (op.role !== ROOT_ROLE && !this.roles.has(op.role)) fail('roleNotFound');
        if (user.roles.includes(op.role)) return { type: 'unchanged' };
        user.roles = [...user.roles, op.role].sort();
        return { type: 'none' };
      }
      case 'userRevokeRole': {
        if (this.enabled && op.name === ROOT_USER && op.role === ROOT_ROLE) fail('invalidAuthMgmt');
        const user = this.users.get(op.name) ?? fail('userNotFound');
        if (!user.roles.includes(op.role)) fail('roleNotGranted');
        user.roles = user.roles.filter((r) => r !== op.role);
        return { type: 'none' };
      }
      case 'roleAdd':
        if (op.name === '') fail('roleEmpty');
        if (this.roles.has(op.name)) fail('roleAlreadyExist');
        this.roles.set(op.name, { name: op.name, permissions: [] });
        return { type: 'none' };
      case 'roleDelete':
        if (this.enabled && op.role === ROOT_ROLE) fail('invalidAuthMgmt');
        if (!this.roles.delete(op.role)) fail('roleNotFound');
        for (const user of this.users.values())
          if (user.roles.includes(op.role)) user.roles = user.roles.filter((r) => r !== op.role);
        return { type: 'none' };
      case 'roleGrantPermission': {
        const role = this.roles.get(op.name) ?? fail('roleNotFound');
        const p = op.permission;
        const same = role.permissions.find(
          (q) => sameBytes(q.key, p.key) && sameBytes(q.rangeEnd, p.rangeEnd),
        );
        if (same !== undefined) same.permType = p.permType;
        else {
          const at = role.permissions.findIndex((q) => compareBytes(q.key, p.key) > 0);
          const copy = {
            permType: p.permType,
            key: Uint8Array.from(p.key),
            rangeEnd: Uint8Array.from(p.rangeEnd),
          };
          if (at < 0) role.permissions.push(copy);
          else role.permissions.splice(at, 0, copy);
        }
        return { type: 'none' };
      }
      case 'roleRevokePermission': {
        const role = this.roles.get(op.role) ?? fail('roleNotFound');
        const at = role.permissions.findIndex(
          (q) => sameBytes(q.key, op.key) && sameBytes(q.rangeEnd, op.rangeEnd),
        );
        if (at < 0) fail('permissionNotGranted');
        role.permissions.splice(at, 1);
        return { type: 'none' };
      }
    }
  }

  // ---- etcd's snapshot format -----------------------------------------------------------------

  toEtcd(): EtcdAuthState {
    return {
      enabled: this.enabled,
      revision: this.revision,
      users: [...this.users.values()]
        .sort((a, b) => (a.name < b.name ? -1 : 1))
        .map((u) => ({
          name: u.name,
          passwordHash: u.passwordHash,
          noPassword: u.noPassword,
          roles: [...u.roles],
        })),
      roles: [...this.roles.values()]
        .sort((a, b) => (a.name < b.name ? -1 : 1))
        .map((r) => ({ name: r.name, permissions: r.permissions.map((p) => ({ ...p })) })),
    };
  }

  static fromEtcd(state: EtcdAuthState): AuthStore {
    const store = new AuthStore();
    store.enabled = state.enabled;
    store.revision = Math.max(1, state.revision);
    for (const u of state.users)
      store.users.set(u.name, {
        name: u.name,
        passwordHash: u.passwordHash,
        noPassword: u.noPassword,
        roles: [...new Set(u.roles)].sort(),
      });
    for (const r of state.roles)
      store.roles.set(r.name, { name: r.name, permissions: r.permissions.map((p) => ({ ...p })) });
    return store;
  }

  // ---- encoding (the keyspace's meta record) -------------------------------------------------

  encode(): Uint8Array {
    const w = new BinaryWriter(256);
    w.u8(1).bool(this.enabled).uvarint(this.revision);
    w.uvarint(this.users.size);
    for (const u of this.users.values()) {
      w.string(u.name).string(u.passwordHash).bool(u.noPassword);
      w.strings(u.roles);
    }
    w.uvarint(this.roles.size);
    for (const r of this.roles.values()) {
      w.string(r.name).uvarint(r.permissions.length);
      for (const p of r.permissions) w.u8(permissionTypes.indexOf(p.permType)).bytes(p.key).bytes(p.rangeEnd);
    }
    return w.finish();
  }

  static decode(data: Uint8Array): AuthStore {
    const r = new BinaryReader(data);
    const version = r.u8();
    if (version !== 1) throw new Error(`unknown auth store encoding version ${version}`);
    const store = new AuthStore();
    store.enabled = r.bool();
    store.revision = r.uvarint();
    const userCount = r.uvarint();
    for (let i = 0; i < userCount; i++) {
      const name = r.string();
      const passwordHash = r.string();
      const noPassword = r.bool();
      store.users.set(name, { name, passwordHash, noPassword, roles: r.strings() });
    }
    const roleCount = r.uvarint();
    for (let i = 0; i < roleCount; i++) {
      const name = r.string();
      const count = r.uvarint();
      const permissions: KeyPermission[] = [];
      for (let j = 0; j < count; j++) {
        const permType = permissionTypes[r.u8()];
        if (permType === undefined) throw new Error('unknown permission type in the auth store');
        permissions.push({ permType, key: r.bytes(), rangeEnd: r.bytes() });
      }
      store.roles.set(name, { name, permissions });
    }
    r.expectDone();
    return store;
  }
}
