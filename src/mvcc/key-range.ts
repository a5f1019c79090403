// A request's key range ([key, range_end) with etcd's conventions) as the keyspace's parts see it.

/** [begin, end) in bytes; end undefined = up to the last key. */
export interface KeyRange {
  begin: Uint8Array;
  end: Uint8Array | undefined;
  single: boolean;
}

/** etcd's range_end: empty = the key alone, "\0" = every key from `key` on. */
export function toKeyRange(key: Uint8Array, rangeEnd: Uint8Array | undefined): KeyRange {
  if (!rangeEnd || rangeEnd.length === 0) return { begin: key, end: undefined, single: true };
  if (rangeEnd.length === 1 && rangeEnd[0] === 0) return { begin: key, end: undefined, single: false };
  return { begin: key, end: rangeEnd, single: false };
}

export function inRange(range: KeyRange, key: Uint8Array): boolean {
  if (range.single) return Buffer.compare(range.begin, key) === 0;
  if (Buffer.compare(key, range.begin) < 0) return false;
  return range.end === undefined || Buffer.compare(key, range.end) < 0;
}
