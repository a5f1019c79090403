// A deliberately simple in-memory reference of etcd v3 KV semantics, written independently of the
// LMDB keyspace: every change is kept in one list and each read replays it. Slow and obviously
// right is the point; property tests check the keyspace against it.

import type {
  Compare,
  DeleteRangeRequest,
  KeyValue,
  PutRequest,
  RangeRequest,
  RangeResponse,
  RequestOp,
  ResponseOp,
  TxnRequest,
  TxnResponse,
  WriteOp,
  WriteResponse,
} from '../../src/mvcc/types.js';

export type ModelResult<T> = { ok: true; value: T } | { ok: false; code: string };

class ModelError extends Error {
  constructor(readonly code: string) {
    super(code);
  }
}

interface Change {
  main: number;
  key: string;
  kv: KeyValue | undefined;
}

const TXN_OPS_MAX = 128;
const s = (b: Uint8Array): string => Buffer.from(b).toString('latin1');
const bytes = (k: string): Buffer => Buffer.from(k, 'latin1');

function inRange(key: string, begin: string, end: string | undefined): boolean {
  if (end === undefined || end === '') return key === begin;
  if (end === '\0') return key >= begin;
  return key >= begin && key < end;
}

export class Model {
  revision = 0;
  /** etcd's compactMainRev: -1 until the first compaction (so Compact(0) succeeds once). */
  compactRevision = -1;
  private changes: Change[] = [];
  readonly leases = new Map<bigint, number>();

  private stateAt(revision: number): Map<string, KeyValue> {
    const m = new Map<string, KeyValue>();
    for (const c of this.changes) {
      if (c.main > revision) break;
      if (c.kv) m.set(c.key, c.kv);
      else m.delete(c.key);
    }
    return m;
  }

  range(req: RangeRequest): ModelResult<RangeResponse> {
    return wrap(() => {
      checkRange(req);
      // Top-level ranges read a negative revision as "current".
      const r = { ...req, revision: Math.max(0, req.revision ?? 0) };
      this.checkRev(r.revision, this.revision);
      return this.rangeIn(r, this.stateAt(this.revision), this.revision);
    });
  }

  private checkRev(rev: number, current: number): void {
    if (rev === 0) return;
    if (rev > current) throw new ModelError('future-revision');
    if (rev < this.compactRevision) throw new ModelError('compacted');
  }

  private rangeIn(req: RangeRequest, working: Map<string, KeyValue>, reported: number): RangeResponse {
    const state = req.revision && req.revision > 0 ? this.stateAt(req.revision) : working;
    const begin = s(req.key);
    const end = req.rangeEnd ? s(req.rangeEnd) : undefined;
    let kvs = [...state.entries()]
      .filter(([k]) => inRange(k, begin, end))
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([, kv]) => kv);
    const count = kvs.length;
    const filtered = !!(
      req.minModRevision ||
      req.maxModRevision ||
      req.minCreateRevision ||
      req.maxCreateRevision
    );
    // etcd quirk: with sort_order NONE (even when sort_target is not KEY, which later sorts
    // ascending) and no filters, only the first limit+1 keys in key order are fetched and sorted.
    if (req.limit && req.limit > 0 && (req.sortOrder ?? 'none') === 'none' && !filtered)
      kvs = kvs.slice(0, req.limit + 1);
    kvs = kvs.filter(
      (kv) =>
        (!req.minModRevision || kv.modRevision >= req.minModRevision) &&
        (!req.maxModRevision || kv.modRevision <= req.maxModRevision) &&
        (!req.minCreateRevision || kv.createRevision >= req.minCreateRevision) &&
        (!req.maxCreateRevision || kv.createRevision <= req.maxCreateRevision),
    );
    const target = req.sortTarget ?? 'key';
    let order = req.sortOrder ?? 'none';
    if (order === 'none' && target !== 'key') order = 'ascend';
    if (order !== 'none') {
      const field = (kv: KeyValue): number | string =>
        target === 'key'
          ? s(kv.key)
          : target === 'value'
            ? s(kv.value)
            : target === 'version'
              ? kv.version
              : target === 'create'
                ? kv.createRevision
                : kv.modRevision;
      const dir = order === 'descend' ? -1 : 1;
      kvs = [...kvs].sort((a, b) => {
        const x = field(a);
        const y = field(b);
        return x < y ? -dir : x > y ? dir : 0;
      });
    }
    let more = false;
    if (req.limit && req.limit > 0 && kvs.length > req.limit) {
      kvs = kvs.slice(0, req.limit);
      more = true;
    }
    if (req.countOnly) {
      kvs = [];
      more = false;
    }
    if (req.keysOnly) kvs = kvs.map((kv) => ({ ...kv, value: new Uint8Array(0) }));
    return { revision: reported, kvs, more, count };
  }

  apply(op: WriteOp): ModelResult<WriteResponse> {
    return wrap(() => this.applyOp(op));
  }

  private applyOp(op: WriteOp): WriteResponse {
    switch (op.type) {
      case 'put': {
        checkPut(op.request);
        const lease = op.request.lease ?? 0n;
        if (lease !== 0n && !this.leases.has(lease)) throw new ModelError('lease-not-found');
        const w = this.begin();
        const response = w.put(op.request);
        w.commit();
        return { type: 'put', response };
      }
      case 'deleteRange': {
        if (op.request.key.length === 0) throw new ModelError('key-not-provided');
        const w = this.begin();
        const response = w.del(op.request);
        w.commit();
        return { type: 'deleteRange', response };
      }
      case 'txn':
        return { type: 'txn', response: this.txn(op.request) };
      case 'compact': {
        if (op.request.revision <= this.compactRevision) throw new ModelError('compacted');
        if (op.request.revision > this.revision) throw new ModelError('future-revision');
        this.compactRevision = op.request.revision;
        return { type: 'compact', response: { revision: this.revision } };
      }
      case 'leaseGrant':
        if (this.leases.has(op.request.id)) throw new ModelError('lease-exists');
        this.leases.set(op.request.id, op.request.ttlSeconds);
        return {
          type: 'leaseGrant',
          response: { revision: this.revision, id: op.request.id, ttlSeconds: op.request.ttlSeconds },
        };
      case 'leaseRevoke': {
        if (!this.leases.has(op.request.id)) throw new ModelError('lease-not-found');
        const w = this.begin();
        const keys = [...w.state.entries()]
          .filter(([, kv]) => kv.lease === op.request.id)
          .map(([k]) => k)
          .sort();
        for (const k of keys) w.del({ key: bytes(k) });
        w.commit();
        this.leases.delete(op.request.id);
        return { type: 'leaseRevoke', response: { revision: w.revisionNow() } };
      }
      case 'leaseCheckpoint':
        return { type: 'leaseCheckpoint', response: { revision: this.revision } };
      case 'noop':
        return { type: 'noop', response: { revision: this.revision } };
    }
  }

  private begin(): Writer {
    return new Writer(this, this.stateAt(this.revision), this.revision);
  }

  /** @internal used by Writer */
  commitChanges(changes: Change[]): void {
    if (changes.length === 0) return;
    this.changes.push(...changes);
    this.revision++;
  }

  private txn(req: TxnRequest): TxnResponse {
    checkTxn(req, TXN_OPS_MAX);
    const dupErr = intervals(req.success) ?? intervals(req.failure);
    if (dupErr) throw new ModelError(dupErr);
    const w = this.begin();
    const before = new Map(w.state);
    const path: boolean[] = [];
    const decide = (t: TxnRequest): void => {
      const ok = t.compare.every((c) => compareHolds(before, c));
      path.push(ok);
      for (const op of ok ? t.success : t.failure) if (op.type === 'txn') decide(op.request);
    };
    decide(req);
    let pos = 0;
    const check = (t: TxnRequest): void => {
      const ops = path[pos++] ? t.success : t.failure;
      for (const op of ops) {
        if (op.type === 'range') this.checkRev(op.request.revision ?? 0, this.revision);
        if (op.type === 'put') {
          if ((op.request.ignoreValue || op.request.ignoreLease) && !before.has(s(op.request.key)))
            throw new ModelError('key-not-found');
          const lease = op.request.lease ?? 0n;
          if (lease !== 0n && !this.leases.has(lease)) throw new ModelError('lease-not-found');
        }
        if (op.type === 'txn') check(op.request);
      }
    };
    check(req);
    pos = 0;
    const exec = (t: TxnRequest, top: boolean): TxnResponse => {
      const succeeded = path[pos++]!;
      const responses: ResponseOp[] = [];
      for (const op of succeeded ? t.success : t.failure) responses.push(this.execOp(op, w, exec));
      return { revision: top ? w.revisionNow() : 0, succeeded, responses };
    };
    const response = exec(req, true);
    w.commit();
    return response;
  }

  private execOp(op: RequestOp, w: Writer, exec: (t: TxnRequest, top: boolean) => TxnResponse): ResponseOp {
    switch (op.type) {
      case 'range':
        return { type: 'range', response: this.rangeIn(op.request, w.state, w.revisionNow()) };
      case 'put':
        return { type: 'put', response: w.put(op.request) };
      case 'deleteRange':
        return { type: 'deleteRange', response: w.del(op.request) };
      case 'txn':
        return { type: 'txn', response: exec(op.request, false) };
    }
  }
}

class Writer {
  readonly changes: Change[] = [];
  constructor(
    private readonly model: Model,
    readonly state: Map<string, KeyValue>,
    private readonly begin: number,
  ) {}

  revisionNow(): number {
    return this.begin + (this.changes.length > 0 ? 1 : 0);
  }

  put(req: PutRequest): { revision: number; prevKv?: KeyValue } {
    const k = s(req.key);
    const prev = this.state.get(k);
    if ((req.ignoreValue || req.ignoreLease) && !prev) throw new ModelError('key-not-found');
    const main = this.begin + 1;
    const kv: KeyValue = {
      key: bytes(k),
      createRevision: prev ? prev.createRevision : main,
      modRevision: main,
      version: prev ? prev.version + 1 : 1,
      value: req.ignoreValue ? prev!.value : (req.value ?? new Uint8Array(0)),
      lease: req.ignoreLease ? prev!.lease : (req.lease ?? 0n),
    };
    this.state.set(k, kv);
    this.changes.push({ main, key: k, kv });
    return req.prevKv && prev ? { revision: main, prevKv: prev } : { revision: main };
  }

  del(req: DeleteRangeRequest): { revision: number; deleted: number; prevKvs: KeyValue[] } {
    const begin = s(req.key);
    const end = req.rangeEnd ? s(req.rangeEnd) : undefined;
    const keys = [...this.state.keys()].filter((k) => inRange(k, begin, end)).sort();
    const prevKvs: KeyValue[] = [];
    for (const k of keys) {
      if (req.prevKv) prevKvs.push(this.state.get(k)!);
      this.state.delete(k);
      this.changes.push({ main: this.begin + 1, key: k, kv: undefined });
    }
    return { revision: this.revisionNow(), deleted: keys.length, prevKvs };
  }

  commit(): void {
    this.model.commitChanges(this.changes);
  }
}

function wrap<T>(f: () => T): ModelResult<T> {
  try {
    return { ok: true, value: f() };
  } catch (e) {
    if (e instanceof ModelError) return { ok: false, code: e.code };
    throw e;
  }
}

function checkRange(r: RangeRequest): void {
  if (r.key.length === 0) throw new ModelError('key-not-provided');
}

function checkPut(r: PutRequest): void {
  if (r.key.length === 0) throw new ModelError('key-not-provided');
  if (r.ignoreValue && r.value && r.value.length > 0) throw new ModelError('value-provided');
  if (r.ignoreLease && r.lease && r.lease !== 0n) throw new ModelError('lease-provided');
}

function checkTxn(t: TxnRequest, budget: number): void {
  const n = Math.max(t.compare.length, t.success.length, t.failure.length);
  if (n > budget) throw new ModelError('too-many-ops');
  if (t.compare.some((c) => c.key.length === 0)) throw new ModelError('key-not-provided');
  for (const op of [...t.success, ...t.failure]) {
    if (op.type === 'range') checkRange(op.request);
    else if (op.type === 'put') checkPut(op.request);
    else if (op.type === 'deleteRange' && op.request.key.length === 0)
      throw new ModelError('key-not-provided');
    else if (op.type === 'txn') checkTxn(op.request, budget - n);
  }
}

type Del = [string, string | undefined];

function delHits(d: Del, k: string): boolean {
  // A delete with range_end "\0" (or any end not above the key) is an empty interval to etcd's
  // overlap check, so it never conflicts.
  if (d[1] === undefined) return d[0] === k;
  return d[0] <= k && k < d[1];
}

/** Returns the error code, or the puts/dels sets (etcd's checkIntervals). */
function intervalsOf(ops: RequestOp[]): { puts: Set<string>; dels: Del[] } | string {
  const dels: Del[] = ops
    .filter((o) => o.type === 'deleteRange')
    .map((o) => {
      const r = (o as { request: DeleteRangeRequest }).request;
      return [s(r.key), r.rangeEnd && r.rangeEnd.length > 0 ? s(r.rangeEnd) : undefined];
    });
  const puts = new Set<string>();
  for (const op of ops) {
    if (op.type !== 'txn') continue;
    const a = intervalsOf(op.request.success);
    if (typeof a === 'string') return a;
    const b = intervalsOf(op.request.failure);
    if (typeof b === 'string') return b;
    for (const k of a.puts) {
      if (puts.has(k) || dels.some((d) => delHits(d, k))) return 'duplicate-key';
      puts.add(k);
    }
    for (const k of b.puts) {
      if ((puts.has(k) && !a.puts.has(k)) || dels.some((d) => delHits(d, k))) return 'duplicate-key';
      puts.add(k);
    }
    dels.push(...a.dels, ...b.dels);
  }
  for (const op of ops) {
    if (op.type !== 'put') continue;
    const k = s(op.request.key);
    if (puts.has(k) || dels.some((d) => delHits(d, k))) return 'duplicate-key';
    puts.add(k);
  }
  return { puts, dels };
}

function intervals(ops: RequestOp[]): string | undefined {
  const r = intervalsOf(ops);
  return typeof r === 'string' ? r : undefined;
}

function compareHolds(state: Map<string, KeyValue>, c: Compare): boolean {
  const begin = s(c.key);
  const end = c.rangeEnd && c.rangeEnd.length > 0 ? s(c.rangeEnd) : undefined;
  const kvs = [...state.entries()].filter(([k]) => inRange(k, begin, end)).map(([, kv]) => kv);
  if (kvs.length === 0) {
    if (c.target === 'value') return false;
    return holds(c, undefined);
  }
  return kvs.every((kv) => holds(c, kv));
}

function holds(c: Compare, kv: KeyValue | undefined): boolean {
  let r: number;
  const cmp = (a: number | bigint | string, b: number | bigint | string): number =>
    a < b ? -1 : a > b ? 1 : 0;
  switch (c.target) {
    case 'value':
      r = cmp(s(kv!.value), s(c.value));
      break;
    case 'version':
      r = cmp(kv?.version ?? 0, c.version);
      break;
    case 'create':
      r = cmp(kv?.createRevision ?? 0, c.createRevision);
      break;
    case 'mod':
      r = cmp(kv?.modRevision ?? 0, c.modRevision);
      break;
    case 'lease':
      r = cmp(kv?.lease ?? 0n, c.lease);
      break;
  }
  return c.result === 'equal'
    ? r === 0
    : c.result === 'not-equal'
      ? r !== 0
      : c.result === 'greater'
        ? r > 0
        : r < 0;
}
