// Encryption at rest in the keyspace: nothing of a user key or value in the LMDB file, the same
// answers as a plain keyspace, a wrong or missing key refused at open, a damaged record reported
// as corruption.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { CorruptError } from '../../src/mvcc/errors.js';
import { Keyspace } from '../../src/mvcc/keyspace.js';
import type { WriteOp } from '../../src/mvcc/types.js';
import { EncryptionError, EncryptionKeys } from '../../src/storage/encryption.js';
import { applyOps, b, norm, openTemp } from './helpers.js';

const KEY_MARK = 'SECRETKEY-4b1d';
const VALUE_MARK = 'SECRETVALUE-93c2';

function writes(): WriteOp[] {
  const ops: WriteOp[] = [{ type: 'leaseGrant', request: { id: 7n, ttlSeconds: 100 } }];
  for (let i = 0; i < 50; i++) {
    ops.push({
      type: 'put',
      request: { key: b(`${KEY_MARK}/${i}`), value: b(`${VALUE_MARK}-${i}`), lease: i % 5 === 0 ? 7n : 0n },
    });
  }
  ops.push({ type: 'deleteRange', request: { key: b(`${KEY_MARK}/3`) } });
  return ops;
}

function fileHasMarks(dir: string): boolean {
  const file = readFileSync(join(dir, 'ks', 'data.mdb'));
  return file.includes(KEY_MARK) || file.includes(VALUE_MARK) || file.includes(KEY_MARK.slice(0, 8));
}

describe('keyspace encryption at rest', () => {
  test('no user key or value in the file; reads, history and lease keys answer as a plain keyspace', async () => {
    const keys = EncryptionKeys.of([['k1', randomBytes(32)]]);
    const sealed = openTemp({ encryption: keys });
    const plain = openTemp();
    try {
      applyOps(sealed.ks, writes());
      applyOps(plain.ks, writes());
      const reads = [
        { key: b(KEY_MARK), rangeEnd: b(`${KEY_MARK}0`) },
        { key: b(`${KEY_MARK}/1`), rangeEnd: b(`${KEY_MARK}/3`), limit: 4 },
        { key: b(`${KEY_MARK}/2`) },
        { key: b('\u0000'), rangeEnd: b('\u0000'), revision: 20, countOnly: true },
        { key: b('\u0000'), rangeEnd: b('\u0000'), revision: 30, sortOrder: 'descend' as const },
      ];
      for (const read of reads)
        assert.deepStrictEqual(norm(sealed.ks.range(read)), norm(plain.ks.range(read)));
      assert.deepStrictEqual(norm(sealed.ks.leaseKeys(7n)), norm(plain.ks.leaseKeys(7n)));
      assert.deepStrictEqual(sealed.ks.hashKV(0), plain.ks.hashKV(0));
      applyOps(sealed.ks, [{ type: 'leaseRevoke', request: { id: 7n } }]);
      applyOps(plain.ks, [{ type: 'leaseRevoke', request: { id: 7n } }]);
      const all = { key: b('\u0000'), rangeEnd: b('\u0000') };
      assert.deepStrictEqual(norm(sealed.ks.range(all)), norm(plain.ks.range(all)));
      await sealed.reopen();
      await plain.reopen();
      assert.ok(!fileHasMarks(sealed.dir), 'plaintext found in the encrypted keyspace');
      assert.ok(fileHasMarks(plain.dir), 'control: the plain keyspace holds the marks (the grep can fail)');
      assert.deepStrictEqual(sealed.ks.encryptionKeyUse(), new Map([['k1', 1 + 50 + 1 + 10]]));
    } finally {
      await sealed.cleanup();
      await plain.cleanup();
    }
  });

  test('opening with a missing key, a wrong key, no key file, or encryption on a plain keyspace fails naming why', async () => {
    const t = openTemp({ encryption: EncryptionKeys.of([['k1', randomBytes(32)]]) });
    const p = openTemp();
    try {
      applyOps(t.ks, writes());
      await t.ks.close();
      await p.ks.close();
      const path = join(t.dir, 'ks');
      const refused = (open: () => unknown, code: string, message: RegExp): void =>
        assert.throws(
          open,
          (e: unknown) => e instanceof EncryptionError && e.code === code && message.test(e.message),
        );
      refused(
        () => Keyspace.open(path, { encryption: EncryptionKeys.of([['k2', randomBytes(32)]]) }),
        'ENCRYPTION_KEY_MISSING',
        /encryption key "k1" is not in the key file/,
      );
      refused(
        () => Keyspace.open(path, { encryption: EncryptionKeys.of([['k1', randomBytes(32)]]) }),
        'ENCRYPTION_AUTH_FAILED',
        /authentication failed with encryption key "k1"/,
      );
      refused(
        () => Keyspace.open(path),
        'ENCRYPTION_KEY_MISSING',
        /is encrypted with key "k1"; start the member with --encryption-key-file/,
      );
      refused(
        () => Keyspace.open(join(p.dir, 'ks'), { encryption: EncryptionKeys.of([['k1', randomBytes(32)]]) }),
        'ENCRYPTION_KEY_FILE',
        /was created without encryption/,
      );
      t.ks = Keyspace.open(path, t.options);
      p.ks = Keyspace.open(join(p.dir, 'ks'));
    } finally {
      await t.cleanup();
      await p.cleanup();
    }
  });

  test('a record that fails its GCM tag is corruption: reported to the handler, never served', async () => {
    const keys = EncryptionKeys.of([['k1', randomBytes(32)]]);
    const t = openTemp({ encryption: keys });
    try {
      applyOps(t.ks, writes());
      // The same id with other key bytes: every record now fails authentication.
      t.options.encryption = EncryptionKeys.of([['k1', randomBytes(32)]]);
      const reported: Error[] = [];
      // Reopening checks the index key first, so swap the ring under an open keyspace instead.
      (t.ks as unknown as { sealing: { keys: EncryptionKeys } }).sealing.keys.setActive('k1');
      const ring = (t.ks as unknown as { sealing: { keys: EncryptionKeys } }).sealing;
      (ring as { keys: EncryptionKeys }).keys = t.options.encryption;
      t.ks.onCorruption((e) => reported.push(e));
      assert.throws(() => t.ks.range({ key: b(`${KEY_MARK}/1`) }), CorruptError);
      assert.equal(reported.length, 1);
      assert.match(reported[0]!.message, /authentication failed with encryption key "k1"/);
      t.options.encryption = keys;
      (ring as { keys: EncryptionKeys }).keys = keys;
    } finally {
      await t.cleanup();
    }
  });
});
