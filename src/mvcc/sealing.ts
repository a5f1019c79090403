// Encryption at rest for the keyspace (--encryption-key-file): what the LMDB file holds instead of
// user keys and values.
//
//   revs       every record (kind, revisions, lease, key, value) is one AES-256-GCM envelope
//              (storage/encryption.ts: key id, nonce, tag) with the revision key as aad, so a
//              record cannot be moved to another revision undetected.
//   live, history, leaseKeys
//              are keyed by an index token instead of the user key: HMAC-SHA-256 of the key
//              under the keyspace's index key, truncated to INDEX_TOKEN_BYTES. Equal keys get
//              equal tokens (point reads, puts, compares and per-key history stay one B-tree
//              lookup), but tokens do not keep the keys' byte order, so a range read scans every
//              live (or history) entry, opens its record and sorts: O(keys in the store) instead
//              of O(keys in the range). That is the price of no plaintext key on disk; an
//              order-preserving encoding would leak the order and prefixes of the keys.
//   meta       `indexKey`: the index key (32 random bytes made when the keyspace is created),
//              sealed under the active data key. Rotation re-seals it; the index key itself does
//              not change (re-keying every index entry would rewrite the whole store), so a
//              holder of an old data key and an old copy of the file can test guessed keys, but
//              cannot read values written after the rotation.
//
// Values in live, history and leaseKeys carry no user data (revisions, kinds, nothing).

import { createHmac, randomBytes } from 'node:crypto';
import { EncryptionError, type EncryptionKeys, envelopeKeyId } from '../storage/encryption.js';

export const INDEX_TOKEN_BYTES = 16;
const INDEX_KEY_BYTES = 32;
const INDEX_KEY_AAD = Buffer.from('concord/mvcc-index-key');
const RECORD_AAD_PREFIX = Buffer.from('concord/mvcc-rev/');

export class KeyspaceSealing {
  private constructor(
    readonly keys: EncryptionKeys,
    private readonly indexKey: Buffer,
  ) {}

  /** A new keyspace: a fresh index key, and its sealed form to store in meta. */
  static create(keys: EncryptionKeys): { sealing: KeyspaceSealing; sealedIndexKey: Buffer } {
    const indexKey = randomBytes(INDEX_KEY_BYTES);
    return {
      sealing: new KeyspaceSealing(keys, indexKey),
      sealedIndexKey: keys.seal(indexKey, INDEX_KEY_AAD),
    };
  }

  /** An existing keyspace: opens its sealed index key (throws EncryptionError naming the key id). */
  static open(keys: EncryptionKeys, sealedIndexKey: Uint8Array, where: string): KeyspaceSealing {
    const indexKey = keys.open(sealedIndexKey, INDEX_KEY_AAD, `${where} (index key)`);
    if (indexKey.length !== INDEX_KEY_BYTES)
      throw new EncryptionError('ENCRYPTION_AUTH_FAILED', `${where}: index key has ${indexKey.length} bytes`);
    return new KeyspaceSealing(keys, indexKey);
  }

  /** The index key sealed under the active data key (rotation stores this). */
  resealIndexKey(): Buffer {
    return this.keys.seal(this.indexKey, INDEX_KEY_AAD);
  }

  /** What live, history and leaseKeys are keyed by instead of `key`. */
  token(key: Uint8Array): Buffer {
    return createHmac('sha256', this.indexKey).update(key).digest().subarray(0, INDEX_TOKEN_BYTES);
  }

  sealRecord(revKey: Uint8Array, record: Uint8Array): Buffer {
    return this.keys.seal(record, recordAad(revKey));
  }

  openRecord(revKey: Uint8Array, sealed: Uint8Array, where: string): Buffer {
    return this.keys.open(sealed, recordAad(revKey), where);
  }

  /** Whether a stored envelope is sealed under another key than the active one. */
  isStale(sealed: Uint8Array, where: string): boolean {
    return envelopeKeyId(sealed, where) !== this.keys.activeKeyId();
  }
}

function recordAad(revKey: Uint8Array): Buffer {
  return Buffer.concat([RECORD_AAD_PREFIX, revKey]);
}
