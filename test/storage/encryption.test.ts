import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { EntryType, emptyConfState } from '../../src/raft/types.js';
import { EncryptionError, EncryptionKeys, envelopeKeyId } from '../../src/storage/encryption.js';
import { Wal } from '../../src/storage/wal.js';
import { walFiles, withTempDir } from './helpers.js';

const AAD = Buffer.from('test');
const MARKER = 'PLAINTEXT-MARKER-7f3a';

function keyLine(id: string, key = randomBytes(32)): string {
  return `${id}:${key.toString('base64')}`;
}

describe('encryption key file', () => {
  it('reads named keys, skips comments and blank lines, and makes the first one active', () =>
    withTempDir(async (dir) => {
      const file = join(dir, 'keys');
      await writeFile(file, `# keys\n\n${keyLine('k1')}\n${keyLine('k2')}\n`);
      const keys = EncryptionKeys.fromFile(file);
      assert.equal(keys.activeKeyId(), 'k1');
      assert.deepEqual(keys.keyIds(), ['k1', 'k2']);
    }));

  it('refuses a key that is not 32 bytes, a bad id, a duplicate id and an empty file, naming the problem', () =>
    withTempDir(async (dir) => {
      const file = join(dir, 'keys');
      const cases: [string, RegExp][] = [
        [keyLine('short', randomBytes(16)), /key "short" is 16 bytes; AES-256 needs 32/],
        [keyLine('bad id!'), /key id "bad id!" must be/],
        [`${keyLine('k1')}\n${keyLine('k1')}`, /key id "k1" appears twice/],
        ['# nothing\n', /holds no key/],
        ['k1 no colon', /expected <id>:<base64 key>/],
      ];
      for (const [text, message] of cases) {
        await writeFile(file, text);
        assert.throws(
          () => EncryptionKeys.fromFile(file),
          (e: unknown) => {
            assert.ok(e instanceof EncryptionError);
            assert.equal(e.code, 'ENCRYPTION_KEY_FILE');
            assert.match(e.message, message);
            return true;
          },
        );
      }
      assert.throws(() => EncryptionKeys.fromFile(join(dir, 'missing')), /cannot read encryption key file/);
    }));
});

describe('AES-256-GCM envelope', () => {
  it('round-trips, names its key id, uses a fresh nonce each time and leaves no plaintext', () => {
    const keys = EncryptionKeys.of([['k1', randomBytes(32)]]);
    const plain = Buffer.from(MARKER);
    const a = keys.seal(plain, AAD);
    const b = keys.seal(plain, AAD);
    assert.notDeepEqual(a, b);
    assert.equal(envelopeKeyId(a, 'test'), 'k1');
    assert.ok(!a.includes(MARKER));
    assert.deepEqual(keys.open(a, AAD, 'test'), plain);
  });

  it('refuses a flipped bit, another aad and a same-named wrong key (tag failure, names the key id)', () => {
    const keys = EncryptionKeys.of([['k1', randomBytes(32)]]);
    const sealed = keys.seal(Buffer.from(MARKER), AAD);
    const flipped = Buffer.from(sealed);
    flipped[flipped.length - 20]! ^= 1;
    const wrong = EncryptionKeys.of([['k1', randomBytes(32)]]);
    for (const attempt of [
      () => keys.open(flipped, AAD, 'here'),
      () => keys.open(sealed, Buffer.from('other'), 'here'),
      () => wrong.open(sealed, AAD, 'here'),
    ]) {
      assert.throws(attempt, (e: unknown) => {
        assert.ok(e instanceof EncryptionError);
        assert.equal(e.code, 'ENCRYPTION_AUTH_FAILED');
        assert.match(e.message, /here: AES-GCM authentication failed with encryption key "k1"/);
        return true;
      });
    }
  });

  it('refuses data sealed under a key id the ring does not hold', () => {
    const old = EncryptionKeys.of([['old', randomBytes(32)]]);
    const sealed = old.seal(Buffer.from(MARKER), AAD);
    const ring = EncryptionKeys.of([['new', randomBytes(32)]]);
    assert.throws(
      () => ring.open(sealed, AAD, 'here'),
      (e: unknown) =>
        e instanceof EncryptionError && e.code === 'ENCRYPTION_KEY_MISSING' && /"old"/.test(e.message),
    );
  });

  it('seals with the new active key after setActive and still opens the old ones', () => {
    const keys = EncryptionKeys.of([
      ['k1', randomBytes(32)],
      ['k2', randomBytes(32)],
    ]);
    const before = keys.seal(Buffer.from('a'), AAD);
    keys.setActive('k2');
    const after = keys.seal(Buffer.from('b'), AAD);
    assert.equal(envelopeKeyId(before, 't'), 'k1');
    assert.equal(envelopeKeyId(after, 't'), 'k2');
    assert.equal(keys.open(before, AAD, 't').toString(), 'a');
    assert.throws(() => keys.setActive('k3'), /encryption key "k3" is not in the key file/);
  });
});

describe('WAL with encryption', () => {
  const entry = (index: number) => ({
    term: 1,
    index,
    type: EntryType.Normal,
    data: Buffer.from(`${MARKER}-${index}`),
  });

  it('writes no entry payload in plaintext and recovers every entry with the key', () =>
    withTempDir(async (dir) => {
      const keys = EncryptionKeys.of([['k1', randomBytes(32)]]);
      const { wal } = await Wal.open(dir, { encryption: keys });
      wal.appendEntries(1, [entry(1), entry(2), entry(3)]);
      wal.saveHardState(1, { term: 1, vote: 1, commit: 3 });
      await wal.sync();
      await wal.close();
      for (const name of await walFiles(dir)) assert.ok(!(await readFile(join(dir, name))).includes(MARKER));
      const { wal: reopened, recovered } = await Wal.open(dir, { encryption: keys });
      await reopened.close();
      const data = recovered.groups.get(1)!.entries.map((e) => Buffer.from(e.data).toString());
      assert.deepEqual(
        data,
        [1, 2, 3].map((i) => `${MARKER}-${i}`),
      );
    }));

  it('control: without encryption the same payload is found in the segment', () =>
    withTempDir(async (dir) => {
      const { wal } = await Wal.open(dir);
      wal.appendEntries(1, [entry(1)]);
      await wal.sync();
      await wal.close();
      const found = await Promise.all(
        (await walFiles(dir)).map(async (n) => (await readFile(join(dir, n))).includes(MARKER)),
      );
      assert.ok(found.includes(true));
    }));

  it('refuses to open an encrypted WAL without the key, or with a wrong key under the same id', () =>
    withTempDir(async (dir) => {
      const { wal } = await Wal.open(dir, { encryption: EncryptionKeys.of([['k1', randomBytes(32)]]) });
      wal.appendEntries(1, [entry(1)]);
      await wal.sync();
      await wal.close();
      await assert.rejects(
        Wal.open(dir),
        /the WAL is encrypted; start the member with --encryption-key-file/,
      );
      await assert.rejects(
        Wal.open(dir, { encryption: EncryptionKeys.of([['k1', randomBytes(32)]]) }),
        /AES-GCM authentication failed with encryption key "k1"/,
      );
      await assert.rejects(
        Wal.open(dir, { encryption: EncryptionKeys.of([['k2', randomBytes(32)]]) }),
        /encryption key "k1" is not in the key file/,
      );
    }));
});

describe('WAL key ids and rollover for rotation', () => {
  it('reports the key ids its segments hold, and after rolloverNow + releaseTo only the new one', () =>
    withTempDir(async (dir) => {
      const keys = EncryptionKeys.of([
        ['k1', randomBytes(32)],
        ['k2', randomBytes(32)],
      ]);
      const entry = (index: number) => ({
        term: 1,
        index,
        type: EntryType.Normal,
        data: Buffer.from(`v${index}`),
      });
      const { wal } = await Wal.open(dir, { encryption: keys });
      wal.appendEntries(1, [entry(1), entry(2)]);
      wal.saveHardState(1, { term: 1, vote: 1, commit: 2 });
      await wal.sync();
      keys.setActive('k2');
      await wal.rolloverNow();
      wal.appendEntries(1, [entry(3)]);
      await wal.sync();
      assert.deepEqual(wal.keyIdsInUse(), ['k1', 'k2']);
      await wal.close();
      const again = await Wal.open(dir, { encryption: keys });
      assert.deepEqual(again.wal.keyIdsInUse(), ['k1', 'k2'], 'recovered from the segments');
      again.wal.saveSnapshotMarker(1, { index: 2, term: 1, confState: emptyConfState() });
      await again.wal.releaseTo(1, 2);
      assert.deepEqual(again.wal.keyIdsInUse(), ['k2']);
      await again.wal.close();
      const onlyK2 = EncryptionKeys.of([['k2', keys.require('k2')]]);
      const last = await Wal.open(dir, { encryption: onlyK2 });
      assert.deepEqual(
        last.recovered.groups.get(1)!.entries.map((e) => e.index),
        [3],
      );
      await last.wal.close();
    }));
});
