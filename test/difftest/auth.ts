// The auth mode (--auth): both clusters get a root user and a non-root user whose role grants
// some of the generated keys, auth is enabled, and the generated operations run as the non-root
// user, so permitted and denied requests both occur (a Range or Put over a range the role does
// not cover, a Txn whose compare or branch is not granted, a watch on a denied key, Hash and
// Defragment, which need root). The setup's answers are compared like any other.

import type { WireObject } from './normalise.js';

export interface AuthStep {
  method: string;
  request: WireObject;
}

const enc = (text: string) => Buffer.from(text, 'latin1');

export const rootPassword = 'root-pw';
export const authUser = { name: 'alice', password: 'alice-pw' };

/**
 * The non-root user's role: readwrite on the "foo/" prefix and on "z", read on [a, c) ("a",
 * "a\0", "b"), write on "d". The generator's other keys ("c", "foo", "foo0", "fop", "\0", "\xff")
 * and most of its ranges are denied.
 */
const grants: readonly { permType: string; key: string; range_end?: string }[] = [
  { permType: 'READWRITE', key: 'foo/', range_end: 'foo0' },
  { permType: 'READ', key: 'a', range_end: 'c' },
  { permType: 'WRITE', key: 'd' },
  { permType: 'READWRITE', key: 'z' },
];

/** Run at the leader without a token, in order; AuthEnable last. */
export const authSetup: readonly AuthStep[] = [
  { method: 'etcdserverpb.Auth/UserAdd', request: { name: 'root', password: rootPassword } },
  { method: 'etcdserverpb.Auth/UserGrantRole', request: { user: 'root', role: 'root' } },
  { method: 'etcdserverpb.Auth/RoleAdd', request: { name: 'rw' } },
  ...grants.map((g) => ({
    method: 'etcdserverpb.Auth/RoleGrantPermission',
    request: {
      name: 'rw',
      perm: {
        permType: g.permType,
        key: enc(g.key),
        ...(g.range_end === undefined ? {} : { range_end: enc(g.range_end) }),
      },
    },
  })),
  { method: 'etcdserverpb.Auth/UserAdd', request: authUser },
  { method: 'etcdserverpb.Auth/UserGrantRole', request: { user: authUser.name, role: 'rw' } },
  { method: 'etcdserverpb.Auth/AuthEnable', request: {} },
];

/** Authenticate requests for the tokens a side uses once auth is on. */
export const rootLogin: AuthStep = {
  method: 'etcdserverpb.Auth/Authenticate',
  request: { name: 'root', password: rootPassword },
};
export const userLogin: AuthStep = { method: 'etcdserverpb.Auth/Authenticate', request: authUser };
