// The ordered byte keyspace the shard map partitions: key order, etcd's [key, range_end) rules and
// the `{…}` hash-tag groups a split must never cut through.

/** The empty key: as a shard start it is −∞ (the first key), as a shard end it is +∞. */
export const KEYSPACE_EDGE: Uint8Array = new Uint8Array(0);

const OPEN_BRACE = 0x7b; // '{'
const CLOSE_BRACE = 0x7d; // '}'

/** Byte-wise lexicographic order, the order etcd and LMDB keep keys in. */
export function compareKeys(a: Uint8Array, b: Uint8Array): number {
  return Buffer.compare(a, b);
}

export function keysEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.compare(a, b) === 0;
}

/** Order of exclusive range ends, where the empty end means +∞. */
export function compareEnds(a: Uint8Array, b: Uint8Array): number {
  if (a.length === 0) return b.length === 0 ? 0 : 1;
  if (b.length === 0) return -1;
  return Buffer.compare(a, b);
}

/** Whether `key` lies in [start, end), the empty end meaning +∞. */
export function keyInRange(key: Uint8Array, start: Uint8Array, end: Uint8Array): boolean {
  return compareKeys(key, start) >= 0 && (end.length === 0 || compareKeys(key, end) < 0);
}

/**
 * The range_end that selects every key with `prefix` (etcd clientv3's `GetPrefixRangeEnd`):
 * the prefix with its last byte below 0xff incremented and what follows it dropped. A prefix of
 * only 0xff bytes (or the empty prefix) has no such end and gets "\0", etcd's "all keys from key".
 */
export function prefixRangeEnd(prefix: Uint8Array): Uint8Array {
  for (let i = prefix.length - 1; i >= 0; i--) {
    const byte = prefix[i]!;
    if (byte < 0xff) {
      const end = prefix.slice(0, i + 1);
      end[i] = byte + 1;
      return end;
    }
  }
  return Uint8Array.of(0);
}

/**
 * A request's key range as a half-open interval [start, end) over the keyspace, with the empty
 * end meaning +∞, following etcd's RangeRequest rules for `range_end`:
 *   - empty: the single key `key`;
 *   - "\0": every key greater than or equal to `key`;
 *   - otherwise [key, range_end); a range_end at or below key selects nothing (`empty: true`).
 */
export interface KeyInterval {
  readonly start: Uint8Array;
  readonly end: Uint8Array;
  readonly empty: boolean;
}

export function requestInterval(key: Uint8Array, rangeEnd: Uint8Array): KeyInterval {
  if (rangeEnd.length === 0) return { start: key, end: keySuccessor(key), empty: false };
  if (rangeEnd.length === 1 && rangeEnd[0] === 0) return { start: key, end: KEYSPACE_EDGE, empty: false };
  return { start: key, end: rangeEnd, empty: compareKeys(rangeEnd, key) <= 0 };
}

/** The smallest key greater than `key`: `key` followed by a zero byte. */
export function keySuccessor(key: Uint8Array): Uint8Array {
  const next = new Uint8Array(key.length + 1);
  next.set(key);
  return next;
}

/**
 * The hash tag of a key, by Redis Cluster's rule: if the key has a '{', and after that first '{'
 * a '}', and at least one byte between them, the tag is the bytes between the first '{' and the
 * first '}' after it. Otherwise the key has no tag (then, as in Redis, a later "{…}" does not
 * count: "a{}{b}" has no tag, "a{{b}}" has the tag "{b", "a{b}{c}" has the tag "b").
 */
export function hashTag(key: Uint8Array): Uint8Array | undefined {
  const close = tagCloseIndex(key);
  if (close === undefined) return undefined;
  return key.subarray(key.indexOf(OPEN_BRACE) + 1, close);
}

/**
 * The tag group of a key: the bytes up to and including its hash tag's closing '}' ("user{42}"
 * for "user{42}/name"), or undefined for an untagged key. The keys of a group are exactly the
 * keys that start with it, so a group is the contiguous range [group, prefixRangeEnd(group)), and
 * every key in it has the same tag. Range shards keep each group whole. (Keys with the same tag
 * but different bytes before the '{' — "a{42}" and "b{42}" — are in different groups: in an
 * ordered keyspace they are not neighbours. Put the tag first, "{42}/a", to group by tag alone.)
 */
export function tagGroup(key: Uint8Array): Uint8Array | undefined {
  const close = tagCloseIndex(key);
  return close === undefined ? undefined : key.subarray(0, close + 1);
}

function tagCloseIndex(key: Uint8Array): number | undefined {
  const open = key.indexOf(OPEN_BRACE);
  if (open < 0) return undefined;
  const close = key.indexOf(CLOSE_BRACE, open + 1);
  if (close < 0 || close === open + 1) return undefined;
  return close;
}

/**
 * Whether a shard boundary at `key` (keys below it on one side, `key` and above on the other)
 * would cut a tag group in two. A boundary is inside a group exactly when `key` starts with the
 * group and is longer than it; a boundary at the group itself ("user{42}") or at an untagged key
 * keeps every group whole.
 */
export function boundaryInsideTagGroup(key: Uint8Array): boolean {
  const group = tagGroup(key);
  return group !== undefined && group.length < key.length;
}

/** The nearest boundary at or below `key` that cuts no tag group (the group's start, or `key`). */
export function alignBoundaryToTagGroup(key: Uint8Array): Uint8Array {
  const group = tagGroup(key);
  return group === undefined ? key : group;
}

/** Text for messages: printable ASCII as is, anything else as \xNN. */
export function describeKey(key: Uint8Array): string {
  let text = '';
  for (const byte of key) {
    text +=
      byte >= 0x20 && byte < 0x7f && byte !== 0x5c && byte !== 0x22
        ? String.fromCharCode(byte)
        : `\\x${byte.toString(16).padStart(2, '0')}`;
  }
  return `"${text}"`;
}
