// An in-memory MVCC keyspace with etcd's semantics, small enough to trust: each key's history as a
// list of versions. It is both the shards' keyspace in the harness (TxnKeyspace) and, holding
// every key, the reference the committed history is replayed against.

import type { TxnKeyspace } from '../../src/txn/shard-txn-state.js';
import type {
  Compare,
  DeleteRangeResponse,
  KeyValue,
  LeafOp,
  LeafResponse,
  PutRequest,
  PutResponse,
  RangeRequest,
  RangeResponse,
  ResponseOp,
  Revision,
  TxnRequest,
  TxnResponse,
} from '../../src/txn/types.js';

interface Version {
  readonly revision: Revision;
  readonly kv: KeyValue | undefined; // undefined: a tombstone
}

const EMPTY = new Uint8Array(0);

export function bytes(text: string): Uint8Array {
  return new Uint8Array(Buffer.from(text, 'latin1'));
}

export function text(b: Uint8Array): string {
  return Buffer.from(b).toString('latin1');
}

/** etcd's range selection as a predicate over latin1 key strings (byte order = code unit order). */
function inRange(key: string, from: Uint8Array, rangeEnd: Uint8Array | undefined): boolean {
  const start = text(from);
  if (!rangeEnd || rangeEnd.length === 0) return key === start;
  if (rangeEnd.length === 1 && rangeEnd[0] === 0) return key >= start;
  return key >= start && key < text(rangeEnd);
}

export class ModelKeyspace implements TxnKeyspace {
  private readonly history = new Map<string, Version[]>();
  /** Every write as (key, revision), in apply order: the harness checks revisions per key increase. */
  readonly writes: { key: string; revision: Revision }[] = [];

  private latest(key: string): KeyValue | undefined {
    const versions = this.history.get(key);
    return versions?.[versions.length - 1]?.kv;
  }

  private at(key: string, revision: Revision): KeyValue | undefined {
    const versions = this.history.get(key) ?? [];
    let found: KeyValue | undefined;
    for (const v of versions) if (v.revision <= revision) found = v.kv;
    return found;
  }

  private keysIn(from: Uint8Array, rangeEnd: Uint8Array | undefined): string[] {
    return [...this.history.keys()].filter((k) => inRange(k, from, rangeEnd)).sort();
  }

  private record(key: string, revision: Revision, kv: KeyValue | undefined): void {
    const versions = this.history.get(key) ?? [];
    const last = versions[versions.length - 1];
    if (last && last.revision >= revision) {
      throw new Error(`key ${key}: write at ${revision} after a version at ${last.revision}`);
    }
    versions.push({ revision, kv });
    this.history.set(key, versions);
    this.writes.push({ key, revision });
  }

  evaluateCompare(c: Compare): { keys: number; holds: boolean } {
    const live = this.keysIn(c.key, c.rangeEnd).flatMap((k) => {
      const kv = this.latest(k);
      return kv ? [kv] : [];
    });
    return { keys: live.length, holds: live.every((kv) => compareHolds(c, kv)) };
  }

  checkPut(req: PutRequest): { code: string; message: string } | undefined {
    if ((req.ignoreValue || req.ignoreLease) && !this.latest(text(req.key))) {
      return { code: 'key-not-found', message: 'etcdserver: key not found' };
    }
    return undefined;
  }

  applyOps(ops: readonly LeafOp[], revision: Revision): LeafResponse[] {
    return ops.map((op) => this.applyOp(op, revision));
  }

  applyOp(op: LeafOp, revision: Revision): LeafResponse {
    switch (op.type) {
      case 'put':
        return { type: 'put', response: this.put(op.request, revision) };
      case 'deleteRange': {
        const r = op.request;
        const response: DeleteRangeResponse = { revision, deleted: 0, prevKvs: [] };
        for (const key of this.keysIn(r.key, r.rangeEnd)) {
          const kv = this.latest(key);
          if (!kv) continue;
          response.deleted++;
          if (r.prevKv) response.prevKvs.push(kv);
          this.record(key, revision, undefined);
        }
        return { type: 'deleteRange', response };
      }
      case 'range':
        return { type: 'range', response: this.range(op.request, revision) };
    }
  }

  private put(req: PutRequest, revision: Revision): PutResponse {
    const key = text(req.key);
    const prev = this.latest(key);
    const kv: KeyValue = {
      key: bytes(key),
      createRevision: prev ? prev.createRevision : revision,
      modRevision: revision,
      version: prev ? prev.version + 1 : 1,
      value: req.ignoreValue && prev ? prev.value : (req.value ?? EMPTY),
      lease: req.ignoreLease && prev ? prev.lease : (req.lease ?? 0n),
    };
    this.record(key, revision, kv);
    return req.prevKv && prev ? { revision, prevKv: prev } : { revision };
  }

  /** etcd's range at `req.revision` (0: the latest state), answering with header revision `current`. */
  range(req: RangeRequest, current: Revision): RangeResponse {
    const at = req.revision && req.revision > 0 ? req.revision : undefined;
    let kvs: KeyValue[] = [];
    for (const key of this.keysIn(req.key, req.rangeEnd)) {
      const kv = at === undefined ? this.latest(key) : this.at(key, at);
      if (kv) kvs.push(kv);
    }
    kvs = kvs.filter(
      (kv) =>
        !(req.maxModRevision && kv.modRevision > req.maxModRevision) &&
        !(req.minModRevision && kv.modRevision < req.minModRevision) &&
        !(req.maxCreateRevision && kv.createRevision > req.maxCreateRevision) &&
        !(req.minCreateRevision && kv.createRevision < req.minCreateRevision),
    );
    const count = kvs.length;
    let order = req.sortOrder ?? 'none';
    const target = req.sortTarget ?? 'key';
    if (target !== 'key' && order === 'none') order = 'ascend';
    if (order !== 'none') {
      const f = (kv: KeyValue) =>
        target === 'key'
          ? text(kv.key)
          : target === 'value'
            ? text(kv.value)
            : target === 'version'
              ? kv.version
              : target === 'create'
                ? kv.createRevision
                : kv.modRevision;
      const sign = order === 'descend' ? -1 : 1;
      kvs = [...kvs].sort((a, b) => {
        const x = f(a);
        const y = f(b);
        return sign * (x < y ? -1 : x > y ? 1 : 0);
      });
    }
    let more = false;
    const limit = req.limit ?? 0;
    if (limit > 0 && kvs.length > limit) {
      kvs = kvs.slice(0, limit);
      more = true;
    }
    if (req.countOnly) kvs = [];
    if (req.keysOnly) kvs = kvs.map((kv) => ({ ...kv, value: EMPTY }));
    return { revision: current, kvs, more, count };
  }

  /** Each key's versions as text, for comparing a sharded history with the reference. */
  dump(): Map<string, string[]> {
    const out = new Map<string, string[]>();
    for (const [key, versions] of [...this.history.entries()].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
      out.set(
        key,
        versions.map((v) =>
          v.kv
            ? `${v.revision}:${text(v.kv.value)}:c${v.kv.createRevision}:v${v.kv.version}`
            : `${v.revision}:deleted`,
        ),
      );
    }
    return out;
  }
}

function compareHolds(c: Compare, kv: KeyValue | undefined): boolean {
  let cmp: number;
  switch (c.target) {
    case 'value':
      if (!kv) return false;
      cmp = Buffer.compare(kv.value, c.value);
      break;
    case 'version':
      cmp = Math.sign((kv?.version ?? 0) - c.version);
      break;
    case 'create':
      cmp = Math.sign((kv?.createRevision ?? 0) - c.createRevision);
      break;
    case 'mod':
      cmp = Math.sign((kv?.modRevision ?? 0) - c.modRevision);
      break;
    case 'lease': {
      const l = kv?.lease ?? 0n;
      cmp = l < c.lease ? -1 : l > c.lease ? 1 : 0;
      break;
    }
  }
  switch (c.result) {
    case 'equal':
      return cmp === 0;
    case 'not-equal':
      return cmp !== 0;
    case 'greater':
      return cmp > 0;
    case 'less':
      return cmp < 0;
  }
}

/**
 * etcd's Txn on one keyspace holding every key, written independently of src/txn: every compare
 * (nested ones too) against the state before the txn, then the chosen branches' ops in order,
 * every write at `revision`. What a cross-shard txn committed at `revision` must have answered.
 */
export function referenceTxn(model: ModelKeyspace, req: TxnRequest, revision: Revision): TxnResponse {
  const holds = (c: Compare): boolean => {
    const { keys, holds: all } = model.evaluateCompare(c);
    return keys > 0 ? all : compareHolds(c, undefined);
  };
  const path: boolean[] = [];
  const plan = (r: TxnRequest): void => {
    const ok = r.compare.every(holds);
    path.push(ok);
    for (const op of ok ? r.success : r.failure) if (op.type === 'txn') plan(op.request);
  };
  plan(req);
  let pos = 0;
  const run = (r: TxnRequest, top: boolean): TxnResponse => {
    const ok = path[pos++]!;
    const responses: ResponseOp[] = [];
    for (const op of ok ? r.success : r.failure) {
      if (op.type === 'txn') responses.push({ type: 'txn', response: run(op.request, false) });
      else responses.push(model.applyOp(op, revision));
    }
    return { revision: top ? revision : 0, succeeded: ok, responses };
  };
  return run(req, true);
}

/** Whether the branch `referenceTxn` would take fails a put check (then etcd answers an error and applies nothing). */
export function referenceCheckFails(model: ModelKeyspace, req: TxnRequest): boolean {
  const holds = (c: Compare): boolean => {
    const { keys, holds: all } = model.evaluateCompare(c);
    return keys > 0 ? all : compareHolds(c, undefined);
  };
  const visit = (r: TxnRequest): boolean => {
    const ok = r.compare.every(holds);
    return (ok ? r.success : r.failure).some((op) =>
      op.type === 'txn' ? visit(op.request) : op.type === 'put' && model.checkPut(op.request) !== undefined,
    );
  };
  return visit(req);
}
