// The auth store's rules (etcd 3.4's, with its error texts), its permission intervals, its
// encoding, the auth ops in proposals, and the two token kinds.

import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { checkTxnPermitted, checkWritePermitted } from '../../src/replica/auth-checks.js';
import { AuthGate } from '../../src/replica/auth-gate.js';
import { type AuthInfo, type AuthOp, AuthStore } from '../../src/replica/auth-store.js';
import {
  JWT_VERIFIED_CACHE_MAX,
  JwtTokens,
  parseAuthTokenFlag,
  SimpleTokens,
} from '../../src/replica/auth-tokens.js';
import { decodeProposal, encodeProposal } from '../../src/replica/proposal.js';
import { EtcdError, etcdErrors } from '../../src/wire/etcd-errors.js';

const bytes = (text: string) => Buffer.from(text);
const ROOT: AuthInfo = { username: 'root', revision: Number.MAX_SAFE_INTEGER };

function refusedWith(code: keyof typeof etcdErrors, work: () => unknown): void {
  assert.throws(work, (error: unknown) => {
    assert.ok(error instanceof EtcdError, String(error));
    assert.equal(error.code, code);
    assert.equal(error.message, etcdErrors[code][1]);
    return true;
  });
}

/** root (with the root role) and alice (role reader), auth still disabled. */
function storeWithUsers(): AuthStore {
  const store = new AuthStore();
  const ops: AuthOp[] = [
    { type: 'userAdd', name: 'root', passwordHash: 'h', noPassword: false },
    { type: 'roleAdd', name: 'root' },
    { type: 'userGrantRole', user: 'root', role: 'root' },
    { type: 'userAdd', name: 'alice', passwordHash: 'h', noPassword: false },
    { type: 'roleAdd', name: 'reader' },
    { type: 'userGrantRole', user: 'alice', role: 'reader' },
  ];
  for (const op of ops) store.apply(op, undefined);
  return store;
}

const grant = (permType: 'READ' | 'WRITE' | 'READWRITE', key: string, rangeEnd = ''): AuthOp => ({
  type: 'roleGrantPermission',
  name: 'reader',
  permission: { permType, key: bytes(key), rangeEnd: bytes(rangeEnd) },
});

describe('auth store: etcd 3.4 rules and errors', () => {
  it('auth enable needs the root user, with the root role', () => {
    const store = new AuthStore();
    refusedWith('rootUserNotExist', () => store.apply({ type: 'authEnable' }, undefined));
    store.apply({ type: 'userAdd', name: 'root', passwordHash: 'h', noPassword: false }, undefined);
    refusedWith('rootRoleNotExist', () => store.apply({ type: 'authEnable' }, undefined));
    store.apply({ type: 'userGrantRole', user: 'root', role: 'root' }, undefined);
    store.apply({ type: 'authEnable' }, undefined);
    assert.equal(store.enabled, true);
  });

  it('names: empty, taken, missing', () => {
    const store = storeWithUsers();
    refusedWith('userEmpty', () =>
      store.apply({ type: 'userAdd', name: '', passwordHash: 'h', noPassword: false }, undefined),
    );
    refusedWith('userAlreadyExist', () =>
      store.apply({ type: 'userAdd', name: 'alice', passwordHash: 'h', noPassword: false }, undefined),
    );
    refusedWith('roleEmpty', () => store.apply({ type: 'roleAdd', name: '' }, undefined));
    refusedWith('roleAlreadyExist', () => store.apply({ type: 'roleAdd', name: 'reader' }, undefined));
    refusedWith('userNotFound', () => store.apply({ type: 'userDelete', name: 'bob' }, undefined));
    refusedWith('userNotFound', () =>
      store.apply({ type: 'userChangePassword', name: 'bob', passwordHash: 'x' }, undefined),
    );
    refusedWith('userNotFound', () =>
      store.apply({ type: 'userGrantRole', user: 'bob', role: 'reader' }, undefined),
    );
    refusedWith('roleNotFound', () =>
      store.apply({ type: 'userGrantRole', user: 'alice', role: 'nope' }, undefined),
    );
    refusedWith('roleNotGranted', () =>
      store.apply({ type: 'userRevokeRole', name: 'alice', role: 'nope' }, undefined),
    );
    refusedWith('roleNotFound', () => store.apply({ type: 'roleDelete', role: 'nope' }, undefined));
    refusedWith('roleNotFound', () =>
      store.apply({ ...grant('READ', 'a'), name: 'nope' } as AuthOp, undefined),
    );
    refusedWith('permissionNotGranted', () =>
      store.apply(
        { type: 'roleRevokePermission', role: 'reader', key: bytes('a'), rangeEnd: bytes('') },
        undefined,
      ),
    );
  });

  it('while enabled only root manages, and root stays root', () => {
    const store = storeWithUsers();
    store.apply({ type: 'authEnable' }, undefined);
    const alice: AuthInfo = { username: 'alice', revision: store.revision };
    refusedWith('userEmpty', () => store.apply({ type: 'roleAdd', name: 'x' }, undefined));
    refusedWith('permissionDenied', () => store.apply({ type: 'roleAdd', name: 'x' }, alice));
    refusedWith('userNotFound', () =>
      store.apply({ type: 'roleAdd', name: 'x' }, { username: 'ghost', revision: 9 }),
    );
    refusedWith('invalidAuthMgmt', () => store.apply({ type: 'userDelete', name: 'root' }, ROOT));
    refusedWith('invalidAuthMgmt', () =>
      store.apply({ type: 'userRevokeRole', name: 'root', role: 'root' }, ROOT),
    );
    refusedWith('invalidAuthMgmt', () => store.apply({ type: 'roleDelete', role: 'root' }, ROOT));
    store.apply({ type: 'authDisable' }, ROOT);
    store.apply({ type: 'userDelete', name: 'root' }, undefined);
    assert.equal(store.user('root'), undefined);
  });

  it('the auth revision moves on every change but an enable (etcd 3.4), not on a repeated grant', () => {
    const store = storeWithUsers();
    const before = store.revision;
    store.apply({ type: 'userGrantRole', user: 'alice', role: 'reader' }, undefined);
    assert.equal(store.revision, before);
    store.apply({ type: 'authEnable' }, undefined);
    assert.equal(store.revision, before);
    store.apply({ type: 'authenticate', name: 'alice', simpleToken: 't' }, undefined);
    assert.equal(store.revision, before);
    store.apply({ type: 'authDisable' }, ROOT);
    assert.equal(store.revision, before + 1);
    store.apply({ type: 'authDisable' }, ROOT);
    assert.equal(store.revision, before + 1);
    store.apply(grant('READ', 'k'), undefined);
    store.apply(grant('WRITE', 'k'), undefined);
    assert.equal(store.revision, before + 3);
  });

  it('deleting a role takes it from every user', () => {
    const store = storeWithUsers();
    store.apply({ type: 'roleDelete', role: 'reader' }, undefined);
    assert.deepEqual(store.user('alice')?.roles, []);
  });

  it('permissions: a key, a range, a prefix, unions of ranges, from-key', () => {
    const store = storeWithUsers();
    for (const op of [
      grant('READ', 'foo'),
      grant('READWRITE', 'pre/', 'pre0'),
      grant('WRITE', 'a', 'c'),
      grant('READ', 'm', 'n'),
      grant('READ', 'n', 'p'),
      grant('READ', 'x', '\0'),
    ])
      store.apply(op, undefined);
    store.apply({ type: 'authEnable' }, undefined);
    const alice: AuthInfo = { username: 'alice', revision: store.revision };
    const read = (key: string, end = '') => store.checkRange(alice, bytes(key), bytes(end), 'READ');
    const write = (key: string, end = '') => store.checkRange(alice, bytes(key), bytes(end), 'WRITE');
    read('foo');
    refusedWith('permissionDenied', () => read('foo', 'fop'));
    refusedWith('permissionDenied', () => write('foo'));
    read('pre/x');
    write('pre/x');
    read('pre/', 'pre0');
    write('b');
    write('a', 'c');
    refusedWith('permissionDenied', () => write('a', 'd'));
    refusedWith('permissionDenied', () => read('b'));
    read('m', 'p'); // [m, n) and [n, p) together
    refusedWith('permissionDenied', () => read('m', 'q'));
    read('y');
    read('x', '\0');
    refusedWith('permissionDenied', () => read('w', '\0'));
    refusedWith('userEmpty', () => store.checkRange(undefined, bytes('foo'), bytes(''), 'READ'));
    refusedWith('authOldRevision', () =>
      store.checkRange({ username: 'alice', revision: store.revision - 1 }, bytes('foo'), bytes(''), 'READ'),
    );
    store.checkRange(ROOT, bytes('anything'), bytes('\0'), 'WRITE');
  });

  it('a permission change, role revoke, role delete or re-grant shows in the very next check', () => {
    const store = storeWithUsers();
    store.apply(grant('READ', 'k'), undefined);
    store.apply({ type: 'authEnable' }, undefined);
    const read = () =>
      store.checkRange({ username: 'alice', revision: store.revision }, bytes('k'), bytes(''), 'READ');
    read();
    read(); // answered from the per-user intervals
    store.apply({ type: 'roleRevokePermission', role: 'reader', key: bytes('k'), rangeEnd: bytes('') }, ROOT);
    refusedWith('permissionDenied', read);
    store.apply(grant('READ', 'k'), ROOT);
    read();
    store.apply({ type: 'userRevokeRole', name: 'alice', role: 'reader' }, ROOT);
    refusedWith('permissionDenied', read);
    store.apply({ type: 'userGrantRole', user: 'alice', role: 'reader' }, ROOT);
    read();
    store.apply({ type: 'roleDelete', role: 'reader' }, ROOT);
    refusedWith('permissionDenied', read);
    store.apply({ type: 'roleAdd', name: 'reader' }, ROOT);
    store.apply({ type: 'userGrantRole', user: 'alice', role: 'reader' }, ROOT);
    refusedWith('permissionDenied', read);
    store.apply(grant('READWRITE', 'k'), ROOT);
    read();
    store.apply({ type: 'userDelete', name: 'alice' }, ROOT);
    refusedWith('permissionDenied', read);
  });

  it('a txn needs read on every compare and what every op of both branches needs, nested too', () => {
    const store = storeWithUsers();
    store.apply(grant('READWRITE', 'k'), undefined);
    store.apply(grant('READ', 'r'), undefined);
    store.apply({ type: 'authEnable' }, undefined);
    const alice: AuthInfo = { username: 'alice', revision: store.revision };
    const put = (key: string) => ({ type: 'put' as const, request: { key: bytes(key), value: bytes('v') } });
    const cmp = (key: string) => ({
      result: 'equal' as const,
      key: bytes(key),
      target: 'version' as const,
      version: 1,
    });
    checkTxnPermitted(store, alice, { compare: [cmp('r')], success: [put('k')], failure: [] });
    refusedWith('permissionDenied', () =>
      checkTxnPermitted(store, alice, { compare: [cmp('secret')], success: [put('k')], failure: [] }),
    );
    refusedWith('permissionDenied', () =>
      checkTxnPermitted(store, alice, { compare: [], success: [put('k')], failure: [put('r')] }),
    );
    const nested = { type: 'txn' as const, request: { compare: [], success: [put('secret')], failure: [] } };
    refusedWith('permissionDenied', () =>
      checkTxnPermitted(store, alice, { compare: [], success: [], failure: [nested] }),
    );
    refusedWith('permissionDenied', () =>
      checkWritePermitted(store, alice, { type: 'deleteRange', request: { key: bytes('r'), prevKv: false } }),
    );
  });

  it('keeps permissions sorted by key as etcd lists them, and survives encode/decode', () => {
    const store = storeWithUsers();
    for (const op of [
      grant('WRITE', 'b'),
      grant('READ', 'a', 'z'),
      grant('READ', 'a'),
      grant('READWRITE', 'b'),
    ])
      store.apply(op, undefined);
    const text = (b: Uint8Array) => Buffer.from(b).toString();
    const listed = store
      .role('reader')!
      .permissions.map((p) => `${p.permType}:${text(p.key)}:${text(p.rangeEnd)}`);
    assert.deepEqual(listed, ['READ:a:z', 'READ:a:', 'READWRITE:b:']);
    store.apply({ type: 'authEnable' }, undefined);
    const copy = AuthStore.decode(store.encode());
    assert.deepEqual(copy.encode(), store.encode());
    assert.equal(copy.enabled, true);
    assert.deepEqual(copy.userNames(), ['alice', 'root']);
  });

  it('every auth op crosses the log unchanged, with and without the user it runs as', () => {
    // Buffers and Uint8Arrays alike as hex, so a copy compares equal to its original.
    const hex = (_key: string, value: unknown) => {
      if (value instanceof Uint8Array) return Buffer.from(value).toString('hex');
      const maybe = value as { type?: unknown; data?: unknown } | null;
      if (maybe !== null && typeof maybe === 'object' && maybe.type === 'Buffer' && Array.isArray(maybe.data))
        return Buffer.from(maybe.data as number[]).toString('hex');
      return value;
    };
    const same = (a: unknown, b: unknown) => assert.equal(JSON.stringify(a, hex), JSON.stringify(b, hex));
    const ops: AuthOp[] = [
      { type: 'authEnable' },
      { type: 'authDisable' },
      { type: 'authenticate', name: 'a', simpleToken: 'abc' },
      { type: 'userAdd', name: 'a', passwordHash: '$2a$10$x', noPassword: true },
      { type: 'userDelete', name: 'a' },
      { type: 'userChangePassword', name: 'a', passwordHash: 'h' },
      { type: 'userGrantRole', user: 'a', role: 'r' },
      { type: 'userRevokeRole', name: 'a', role: 'r' },
      { type: 'roleAdd', name: 'r' },
      { type: 'roleDelete', role: 'r' },
      grant('READWRITE', 'k', 'l'),
      { type: 'roleRevokePermission', role: 'r', key: bytes('k'), rangeEnd: bytes('\0') },
    ];
    for (const request of ops) {
      const plain = { proposer: 1, requestId: 2, op: { type: 'auth' as const, request } };
      same(decodeProposal(encodeProposal(plain)), plain);
      const authed = {
        proposer: 1,
        requestId: 3,
        op: { type: 'authed' as const, username: 'u', authRevision: 7, op: plain.op },
      };
      same(decodeProposal(encodeProposal(authed)), authed);
    }
  });
});

describe('auth tokens', () => {
  it('simple tokens: renewed by use, lapse unused, end with their user', () => {
    const tokens = new SimpleTokens(1000);
    tokens.assign('t1', 'alice', 0);
    assert.equal(tokens.username('t1', 900), 'alice');
    assert.equal(tokens.username('t1', 1800), 'alice');
    assert.equal(tokens.username('t1', 2900), undefined);
    tokens.assign('t2', 'alice', 0);
    tokens.invalidateUser('alice');
    assert.equal(tokens.username('t2', 1), undefined);
  });

  it('JWT: RS256 and ES256 sign and verify; a forged, re-signed or expired token is refused', () => {
    const dir = mkdtempSync(join(tmpdir(), 'concord-jwt-unit-'));
    try {
      for (const [method, type] of [
        ['RS256', 'rsa'],
        ['PS256', 'rsa'],
        ['ES256', 'ec'],
      ] as const) {
        const pair =
          type === 'rsa'
            ? generateKeyPairSync('rsa', { modulusLength: 2048 })
            : generateKeyPairSync('ec', { namedCurve: 'P-256' });
        const priv = join(dir, `${method}.key`);
        const pub = join(dir, `${method}.pub`);
        writeFileSync(priv, pair.privateKey.export({ type: 'pkcs8', format: 'pem' }));
        writeFileSync(pub, pair.publicKey.export({ type: 'spki', format: 'pem' }));
        const config = parseAuthTokenFlag(`jwt,pub-key=${pub},priv-key=${priv},sign-method=${method},ttl=1m`);
        assert.equal(config.type, 'jwt');
        const jwt = new JwtTokens(config as Extract<typeof config, { type: 'jwt' }>);
        const token = jwt.sign('alice', 5, 1_000_000);
        assert.deepEqual(jwt.verify(token, 1_000_000), { username: 'alice', revision: 5 });
        assert.equal(jwt.verify(token, 1_000_000 + 61_000), undefined, 'expired');
        const [head, payload, signature] = token.split('.') as [string, string, string];
        const claims = JSON.parse(Buffer.from(payload, 'base64url').toString()) as object;
        const asRoot = Buffer.from(JSON.stringify({ ...claims, username: 'root' })).toString('base64url');
        assert.equal(jwt.verify(`${head}.${asRoot}.${signature}`, 1_000_000), undefined, 'changed claims');
        const none = Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT' })).toString('base64url');
        assert.equal(jwt.verify(`${none}.${payload}.`, 1_000_000), undefined, 'alg none');
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('JWT: a verified token is remembered, yet still expires, is refused after an auth change, and a forgery is not', () => {
    const dir = mkdtempSync(join(tmpdir(), 'concord-jwt-cache-'));
    try {
      const pair = generateKeyPairSync('rsa', { modulusLength: 2048 });
      const priv = join(dir, 'k.pem');
      const pub = join(dir, 'k.pub');
      writeFileSync(priv, pair.privateKey.export({ type: 'pkcs8', format: 'pem' }));
      writeFileSync(pub, pair.publicKey.export({ type: 'spki', format: 'pem' }));
      const store = storeWithUsers();
      store.apply(grant('READ', 'a'), undefined);
      store.apply({ type: 'authEnable' }, undefined);
      const gate = new AuthGate(store, {
        token: { type: 'jwt', signMethod: 'RS256', ttlSeconds: 60, publicKeyFile: pub, privateKeyFile: priv },
      });
      const jwt = (gate as unknown as { jwt: JwtTokens }).jwt;
      const t0 = 1_000_000;
      const token = gate.tokenFor({ type: 'authenticated', name: 'alice', simpleToken: '' }, t0);
      const first = gate.resolve({ token }, t0);
      assert.deepEqual(first, { username: 'alice', revision: store.revision });
      assert.equal(jwt.signatureChecks, 1);
      for (let i = 0; i < 5; i++) assert.deepEqual(gate.resolve({ token }, t0 + i), first);
      assert.equal(jwt.signatureChecks, 1, 'the remembered token is not verified again');
      store.checkRange(gate.resolve({ token }, t0), bytes('a'), new Uint8Array(0), 'READ');

      // A forged signature on the same claims is a different token: checked, and refused.
      const [head, payload] = token.split('.') as [string, string, string];
      assert.throws(() => gate.resolve({ token: `${head}.${payload}.AAAA` }, t0), /invalid auth token/);

      // Expiry (ttl 60 s) holds for the remembered token, which is then forgotten.
      refusedWith('invalidAuthToken', () => gate.resolve({ token }, t0 + 60_000));
      assert.equal(jwt.verifiedCount, 0);

      // An auth change (here: alice deleted) moves the revision; the remembered token is refused.
      const token2 = gate.tokenFor({ type: 'authenticated', name: 'alice', simpleToken: '' }, t0);
      const info = gate.resolve({ token: token2 }, t0);
      assert.equal(jwt.verifiedCount, 1);
      gate.onApplied(store.apply({ type: 'userDelete', name: 'alice' }, ROOT));
      assert.equal(jwt.verifiedCount, 0, 'tokens of an older auth revision are forgotten');
      refusedWith('authOldRevision', () =>
        store.checkRange(gate.resolve({ token: token2 }, t0), bytes('a'), new Uint8Array(0), 'READ'),
      );
      refusedWith('authOldRevision', () => store.checkRange(info, bytes('a'), new Uint8Array(0), 'READ'));

      // The memory is bounded: the oldest tokens go first.
      for (let i = 0; i < JWT_VERIFIED_CACHE_MAX + 10; i++)
        jwt.verify(jwt.sign(`u${i}`, store.revision, t0), t0);
      assert.equal(jwt.verifiedCount, JWT_VERIFIED_CACHE_MAX);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('--auth-token flag values', () => {
    assert.deepEqual(parseAuthTokenFlag('simple'), { type: 'simple' });
    assert.throws(() => parseAuthTokenFlag('magic'), /unknown token type/);
    assert.throws(() => parseAuthTokenFlag('jwt,sign-method=RS256'), /pub-key/);
    assert.throws(() => parseAuthTokenFlag('jwt,pub-key=a,sign-method=XX1'), /sign-method/);
    const jwt = parseAuthTokenFlag('jwt,pub-key=a,priv-key=b,sign-method=ES256,ttl=1m30s');
    assert.deepEqual(jwt, {
      type: 'jwt',
      signMethod: 'ES256',
      ttlSeconds: 90,
      publicKeyFile: 'a',
      privateKeyFile: 'b',
    });
  });

  it('passwords: bcrypt on the receiving member; wrong, unknown and no-password users refused', async () => {
    const store = new AuthStore();
    const gate = new AuthGate(store, { bcryptCost: 4 });
    const hash = await gate.hash('pw');
    assert.match(hash, /^\$2[ab]\$04\$/);
    store.apply({ type: 'userAdd', name: 'root', passwordHash: hash, noPassword: false }, undefined);
    store.apply({ type: 'userAdd', name: 'np', passwordHash: '', noPassword: true }, undefined);
    store.apply({ type: 'userGrantRole', user: 'root', role: 'root' }, undefined);
    await assert.rejects(gate.checkPassword('root', 'pw'), /authentication is not enabled/);
    store.apply({ type: 'authEnable' }, undefined);
    assert.equal(await gate.checkPassword('root', 'pw'), store.revision);
    await assert.rejects(gate.checkPassword('root', 'nope'), /invalid user ID or password/);
    await assert.rejects(gate.checkPassword('ghost', 'pw'), /invalid user ID or password/);
    await assert.rejects(gate.checkPassword('np', ''), /password was given for no password user/);
    assert.throws(() => gate.resolve({ token: 'unknown.1' }), /invalid auth token/);
    assert.deepEqual(gate.resolve({ commonName: 'root' }), { username: 'root', revision: store.revision });
    assert.equal(gate.resolve({}), undefined);
  });
});
