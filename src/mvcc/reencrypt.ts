// Key rotation of an encrypted keyspace: re-sealing its records and index key under the active
// data key in bounded steps, outside the apply transactions (it changes no logical result), and
// counting which key seals what.

import { envelopeKeyId } from '../storage/encryption.js';
import { encodeRecord } from './encoding.js';
import { invariant } from './errors.js';
import type { KeyspaceSealing } from './sealing.js';
import type { RecordStore } from './store.js';

/**
 * Re-seals, in one write transaction, up to `recordsMax` records from revision key `cursor` on
 * (undefined = the first), and the sealed index key, that are sealed under another key than the
 * active one. Returns where the next step resumes, or undefined when the pass is done.
 */
export function reencryptStep(
  store: RecordStore,
  sealing: KeyspaceSealing,
  cursor: Buffer | undefined,
  recordsMax: number,
): Buffer | undefined {
  const { revs } = store.dbs;
  const where = `keyspace ${store.path} revision record`;
  let resume: Buffer | undefined;
  store.transaction(() => {
    const sealedIndexKey = store.sealedIndexKey();
    invariant(sealedIndexKey !== undefined, 'encrypted keyspace without its index key');
    if (sealing.isStale(sealedIndexKey, store.path)) store.writeSealedIndexKey(sealing.resealIndexKey());
    const stale: { key: Buffer; value: Buffer }[] = [];
    let examined = 0;
    for (const { key, value } of revs.getRange({ start: cursor })) {
      if (examined === recordsMax) {
        resume = Buffer.from(key);
        break;
      }
      examined++;
      if (sealing.isStale(value, where)) stale.push({ key: Buffer.from(key), value: Buffer.from(value) });
    }
    for (const { key, value } of stale) {
      const record = store.loadRecord(key, value);
      const plain = encodeRecord(
        record.kind,
        record.key,
        record.createRevision,
        record.version,
        record.lease,
        record.value,
      );
      revs.putSync(key, sealing.sealRecord(key, plain));
    }
  });
  return resume;
}

/** How many stored envelopes each key id seals (revision records and the index key). */
export function encryptionKeyUse(store: RecordStore): Map<string, number> {
  const use = new Map<string, number>();
  const count = (sealed: Uint8Array): void => {
    const id = envelopeKeyId(sealed, store.path);
    use.set(id, (use.get(id) ?? 0) + 1);
  };
  const sealedIndexKey = store.sealedIndexKey();
  if (sealedIndexKey !== undefined) count(sealedIndexKey);
  for (const { value } of store.dbs.revs.getRange({})) count(value);
  return use;
}
