// etcd's range semantics over the record store: a range at the current or a historical revision,
// with limit, count, keys-only, revision filters and sort (etcd's executeRange).

import { decodeLive } from './encoding.js';
import { assertNever, CompactedError, FutureRevisionError, type MvccError } from './errors.js';
import { goSort } from './go-sort.js';
import { type KeyRange, toKeyRange } from './key-range.js';
import { EMPTY, type RecordStore, versionKv } from './store.js';
import type { KeyValue, RangeRequest, RangeResponse } from './types.js';

/** etcd's checkRange: 0 = current; note a negative revision is below any compact revision. */
export function checkReadRevision(
  revision: number,
  current: number,
  compactRevision: number,
): MvccError | undefined {
  if (revision === 0) return undefined;
  if (revision > current) return new FutureRevisionError(revision, current);
  if (revision < compactRevision) return new CompactedError(compactRevision);
  return undefined;
}

/** etcd's executeRange over `current` (the revision a write txn would report). */
export function rangeAt(store: RecordStore, req: RangeRequest, current: number): RangeResponse {
  const atRevision = req.revision && req.revision > 0 ? req.revision : current;
  const range = toKeyRange(req.key, req.rangeEnd);
  const sortOrder = req.sortOrder ?? 'none';
  const sortTarget = req.sortTarget ?? 'key';
  const limit = Math.max(0, req.limit ?? 0);
  const filtered = !!(
    req.minModRevision ||
    req.maxModRevision ||
    req.minCreateRevision ||
    req.maxCreateRevision
  );
  // Without sort order or filters only limit+1 kvs are fetched (one extra for `more`). As in etcd
  // this looks at the raw sort order: target≠key with order none fetches limit+1 in key order,
  // then sorts those ascending by the target.
  const fetchMax = limit > 0 && sortOrder === 'none' && !filtered ? limit + 1 : 0;
  // keys_only blanks values after sorting, so a sort by value still needs them.
  const withValue = !req.keysOnly || sortTarget === 'value';
  const { kvs: raw, count } =
    atRevision >= current
      ? collectLive(store, range, req.countOnly ? -1 : fetchMax, withValue)
      : collectHistorical(store, range, atRevision, req.countOnly ? -1 : fetchMax, withValue);
  let kvs = !filtered
    ? raw
    : raw.filter(
        (kv) =>
          !(req.maxModRevision && kv.modRevision > req.maxModRevision) &&
          !(req.minModRevision && kv.modRevision < req.minModRevision) &&
          !(req.maxCreateRevision && kv.createRevision > req.maxCreateRevision) &&
          !(req.minCreateRevision && kv.createRevision < req.minCreateRevision),
      );
  kvs = sortKvs(kvs, sortOrder, sortTarget);
  let more = false;
  if (limit > 0 && kvs.length > limit) {
    kvs = kvs.slice(0, limit);
    more = true;
  }
  if (req.keysOnly && withValue) kvs = kvs.map((kv) => ({ ...kv, value: EMPTY }));
  return { revision: current, kvs, more, count };
}

/** fetchMax: 0 = all, -1 = none (count only). */
function collectLive(
  store: RecordStore,
  range: KeyRange,
  fetchMax: number,
  withValue: boolean,
): { kvs: KeyValue[]; count: number } {
  const kvs: KeyValue[] = [];
  if (range.single || store.sealing) {
    const found = store.liveInRange(range);
    const kept = fetchMax < 0 ? [] : fetchMax > 0 ? found.slice(0, fetchMax) : found;
    for (const { key, live } of kept) kvs.push(store.liveKv(key, live, withValue));
    return { kvs, count: found.length };
  }
  let count = 0;
  for (const { key, value } of store.liveEntries(range)) {
    count++;
    if (fetchMax < 0 || (fetchMax > 0 && kvs.length >= fetchMax)) continue;
    kvs.push(store.liveKv(key, decodeLive(value), withValue));
  }
  return { kvs, count };
}

function collectHistorical(
  store: RecordStore,
  range: KeyRange,
  revision: number,
  fetchMax: number,
  withValue: boolean,
): { kvs: KeyValue[]; count: number } {
  const kvs: KeyValue[] = [];
  let count = 0;
  for (const { main, sub } of store.historicalVersions(range, revision)) {
    count++;
    if (fetchMax < 0 || (fetchMax > 0 && kvs.length >= fetchMax)) continue;
    kvs.push(versionKv(store.readRecord(main, sub), main, withValue));
  }
  return { kvs, count };
}

export function compareNumbers(a: number, b: number): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * etcd's sort rules: target key + order none (or ascend) keeps key order; any other target with
 * order none sorts ascending. etcd sorts with Go's sort.Sort, which is not stable: ties (equal
 * values, versions, revisions of one txn) end in the order that algorithm leaves them, reproduced
 * by goSort. Descending is Go's sort.Reverse: the same algorithm with the comparison turned round.
 */
export function sortKvs(
  kvs: KeyValue[],
  order: RangeRequest['sortOrder'],
  target: RangeRequest['sortTarget'],
): KeyValue[] {
  let effective = order ?? 'none';
  const t = target ?? 'key';
  if (t !== 'key' && effective === 'none') effective = 'ascend';
  else if (t === 'key' && effective === 'ascend') effective = 'none';
  if (effective === 'none') return kvs;
  const cmp = (a: KeyValue, b: KeyValue): number => {
    switch (t) {
      case 'key':
        return Buffer.compare(a.key, b.key);
      case 'version':
        return compareNumbers(a.version, b.version);
      case 'create':
        return compareNumbers(a.createRevision, b.createRevision);
      case 'mod':
        return compareNumbers(a.modRevision, b.modRevision);
      case 'value':
        return Buffer.compare(a.value, b.value);
      default:
        return assertNever(t);
    }
  };
  const sorted = [...kvs];
  if (effective === 'descend') goSort(sorted, (a, b) => cmp(b, a) < 0);
  else goSort(sorted, (a, b) => cmp(a, b) < 0);
  return sorted;
}
