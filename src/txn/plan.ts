// A txn cut along shard boundaries: which compares, ops and lock intervals each shard gets, the
// branch the compare outcomes choose, and the shards' piece responses merged back into etcd's
// TxnResponse. Pure functions; the coordinator and a shard's fast path both use them.

import { compareKeys, requestInterval } from '../shard/keys.js';
import type {
  Compare,
  CompareOutcome,
  KeyInterval,
  KeyValue,
  LeafOp,
  LeafResponse,
  LockInterval,
  PartCompare,
  PartOp,
  PartResponse,
  RangeRequest,
  RequestOp,
  ResponseOp,
  Revision,
  ShardId,
  TxnPart,
  TxnRequest,
  TxnResponse,
} from './types.js';

/** One shard's share of a request's key range, as ShardMap.piecesForRequest gives it. */
export interface RoutePiece {
  readonly shardId: ShardId;
  readonly start: Uint8Array;
  readonly end: Uint8Array;
}

/** Cuts etcd's [key, range_end) into per-shard pieces in key order (none for an empty range). */
export type Router = (key: Uint8Array, rangeEnd: Uint8Array) => readonly RoutePiece[];

type PlanItem =
  | { readonly kind: 'leaf'; readonly id: number }
  | { readonly kind: 'txn'; readonly node: PlanNode };

interface PlanNode {
  readonly compareIds: readonly number[];
  readonly success: readonly PlanItem[];
  readonly failure: readonly PlanItem[];
}

export interface TxnPlan {
  readonly request: TxnRequest;
  readonly root: PlanNode;
  /** Every compare of the txn, nested ones included, by id. */
  readonly compares: readonly Compare[];
  /** Every leaf op of every branch, by id. */
  readonly ops: readonly LeafOp[];
  /** The shards the txn touches, in key order of their first piece; the first is the primary. */
  readonly shards: readonly ShardId[];
  readonly parts: ReadonlyMap<ShardId, TxnPart>;
  /** For each op id, the shards holding a piece of it, in key order. */
  readonly opShards: ReadonlyMap<number, readonly ShardId[]>;
  /** For each compare id, the shards holding a piece of it. */
  readonly compareShards: ReadonlyMap<number, readonly ShardId[]>;
}

const ALL_FROM_KEY = Uint8Array.of(0);

/** The request's key and range_end for one piece: a single key stays a single key. */
function pieceRange(key: Uint8Array, rangeEnd: Uint8Array | undefined, piece: RoutePiece) {
  if (!rangeEnd || rangeEnd.length === 0) return { key, rangeEnd };
  return { key: piece.start, rangeEnd: piece.end.length === 0 ? ALL_FROM_KEY : piece.end };
}

function pieceOp(op: LeafOp, piece: RoutePiece): LeafOp {
  switch (op.type) {
    case 'put':
      return op;
    case 'deleteRange':
      return {
        type: 'deleteRange',
        request: { ...op.request, ...pieceRange(op.request.key, op.request.rangeEnd, piece) },
      };
    case 'range': {
      // Limit and sort are applied when the pieces are merged; values are kept if the merge sorts by them.
      const r = op.request;
      const request: RangeRequest = {
        ...r,
        ...pieceRange(r.key, r.rangeEnd, piece),
        limit: 0,
        sortOrder: 'none',
        sortTarget: 'key',
        keysOnly: !!r.keysOnly && r.sortTarget !== 'value',
      };
      return { type: 'range', request };
    }
  }
}

function opRange(op: LeafOp): { key: Uint8Array; rangeEnd: Uint8Array } {
  const r = op.request;
  return {
    key: r.key,
    rangeEnd: op.type === 'put' ? new Uint8Array(0) : (op.request.rangeEnd ?? new Uint8Array(0)),
  };
}

/** Cuts a txn into per-shard parts. The request is assumed valid (mvcc's checkTxnRequest passed). */
export function planTxn(request: TxnRequest, route: Router): TxnPlan {
  const compares: Compare[] = [];
  const ops: LeafOp[] = [];
  const walk = (req: TxnRequest): PlanNode => {
    const compareIds = req.compare.map((c) => compares.push(c) - 1);
    const items = (list: readonly RequestOp[]): PlanItem[] =>
      list.map((op) =>
        op.type === 'txn' ? { kind: 'txn', node: walk(op.request) } : { kind: 'leaf', id: ops.push(op) - 1 },
      );
    const success = items(req.success);
    const failure = items(req.failure);
    return { compareIds, success, failure };
  };
  const root = walk(request);

  const building = new Map<
    ShardId,
    { compares: PartCompare[]; ops: PartOp[]; locks: LockInterval[]; firstKey: Uint8Array }
  >();
  const partOf = (piece: RoutePiece, write: boolean) => {
    let part = building.get(piece.shardId);
    if (!part) {
      part = { compares: [], ops: [], locks: [], firstKey: piece.start };
      building.set(piece.shardId, part);
    } else if (compareKeys(piece.start, part.firstKey) < 0) {
      part.firstKey = piece.start;
    }
    part.locks.push({ start: piece.start, end: piece.end, write });
    return part;
  };
  const compareShards = new Map<number, ShardId[]>();
  compares.forEach((c, id) => {
    const pieces = route(c.key, c.rangeEnd ?? new Uint8Array(0));
    compareShards.set(
      id,
      pieces.map((p) => p.shardId),
    );
    for (const piece of pieces) {
      partOf(piece, false).compares.push({ id, compare: { ...c, ...pieceRange(c.key, c.rangeEnd, piece) } });
    }
  });
  const opShards = new Map<number, ShardId[]>();
  ops.forEach((op, id) => {
    const { key, rangeEnd } = opRange(op);
    const pieces = route(key, rangeEnd);
    opShards.set(
      id,
      pieces.map((p) => p.shardId),
    );
    for (const piece of pieces) partOf(piece, op.type !== 'range').ops.push({ id, op: pieceOp(op, piece) });
  });
  const shards = [...building.entries()]
    .sort((a, b) => compareKeys(a[1].firstKey, b[1].firstKey) || a[0] - b[0])
    .map(([id]) => id);
  const parts = new Map<ShardId, TxnPart>();
  for (const id of shards) {
    const p = building.get(id)!;
    parts.set(id, { compares: p.compares, ops: p.ops, locks: p.locks });
  }
  return { request, root, compares, ops, shards, parts, opShards, compareShards };
}

/** A router that sends every range to one shard: what a shard uses for its own fast path. */
export function singleShardRouter(shardId: ShardId): Router {
  return (key, rangeEnd) => {
    const interval = requestInterval(key, rangeEnd);
    return interval.empty ? [] : [{ shardId, start: interval.start, end: interval.end }];
  };
}

/** A compare over a range with no key compares the zero values (etcd); a value compare then fails. */
function zeroValueHolds(c: Compare): boolean {
  if (c.target === 'value') return false;
  const operand =
    c.target === 'version'
      ? c.version
      : c.target === 'create'
        ? c.createRevision
        : c.target === 'mod'
          ? c.modRevision
          : c.lease;
  const zero = typeof operand === 'bigint' ? 0n : 0;
  const cmp = zero < operand ? -1 : zero > operand ? 1 : 0;
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
 * The compares' results over the whole txn from the shards' outcomes: a compare holds when every
 * key of its range on every shard holds, or, if no shard has a key in its range, by the zero values.
 */
export function compareResults(plan: TxnPlan, outcomes: Iterable<CompareOutcome>): boolean[] {
  const keys = new Array<number>(plan.compares.length).fill(0);
  const holds = new Array<boolean>(plan.compares.length).fill(true);
  for (const o of outcomes) {
    keys[o.id] = keys[o.id]! + o.keys;
    if (o.keys > 0 && !o.holds) holds[o.id] = false;
  }
  return plan.compares.map((c, id) => (keys[id]! === 0 ? zeroValueHolds(c) : holds[id]!));
}

/** The chosen branch: whether the outer txn succeeded and the leaf op ids executed, in request order. */
export interface ChosenBranch {
  readonly succeeded: boolean;
  readonly executed: readonly number[];
}

export function chooseBranch(plan: TxnPlan, results: readonly boolean[]): ChosenBranch {
  const executed: number[] = [];
  const visit = (node: PlanNode): boolean => {
    const ok = node.compareIds.every((id) => results[id]!);
    for (const item of ok ? node.success : node.failure) {
      if (item.kind === 'leaf') executed.push(item.id);
      else visit(item.node);
    }
    return ok;
  };
  const succeeded = visit(plan.root);
  return { succeeded, executed };
}

function sortKvs(kvs: KeyValue[], req: RangeRequest): KeyValue[] {
  let order = req.sortOrder ?? 'none';
  const target = req.sortTarget ?? 'key';
  if (target !== 'key' && order === 'none') order = 'ascend';
  else if (target === 'key' && order === 'ascend') order = 'none';
  if (order === 'none') return kvs;
  const field = (kv: KeyValue): number | Uint8Array =>
    target === 'key'
      ? kv.key
      : target === 'value'
        ? kv.value
        : target === 'version'
          ? kv.version
          : target === 'create'
            ? kv.createRevision
            : kv.modRevision;
  const cmp = (a: KeyValue, b: KeyValue): number => {
    const x = field(a);
    const y = field(b);
    if (typeof x === 'number' && typeof y === 'number') return x - y;
    return Buffer.compare(x as Uint8Array, y as Uint8Array);
  };
  const sign = order === 'descend' ? -1 : 1;
  return [...kvs].sort((a, b) => sign * cmp(a, b));
}

const EMPTY = new Uint8Array(0);

/** One leaf op's response from its pieces (in key order), as one shard holding every key would give it. */
export function mergeLeafResponse(
  op: LeafOp,
  pieces: readonly LeafResponse[],
  revision: Revision,
): LeafResponse {
  switch (op.type) {
    case 'put': {
      const only = pieces[0];
      if (only?.type !== 'put') throw new Error('a put has exactly one piece response');
      return { type: 'put', response: { ...only.response, revision } };
    }
    case 'deleteRange': {
      let deleted = 0;
      const prevKvs: KeyValue[] = [];
      for (const p of pieces) {
        if (p.type !== 'deleteRange') throw new Error('deleteRange piece response expected');
        deleted += p.response.deleted;
        prevKvs.push(...p.response.prevKvs);
      }
      return { type: 'deleteRange', response: { revision, deleted, prevKvs } };
    }
    case 'range': {
      const req = op.request;
      let count = 0;
      let kvs: KeyValue[] = [];
      for (const p of pieces) {
        if (p.type !== 'range') throw new Error('range piece response expected');
        count += p.response.count;
        kvs.push(...p.response.kvs);
      }
      kvs = sortKvs(kvs, req);
      const limit = Math.max(0, req.limit ?? 0);
      let more = false;
      if (limit > 0 && kvs.length > limit) {
        kvs = kvs.slice(0, limit);
        more = true;
      }
      if (req.keysOnly) kvs = kvs.map((kv) => (kv.value.length === 0 ? kv : { ...kv, value: EMPTY }));
      return { type: 'range', response: { revision, kvs, more, count } };
    }
  }
}

/**
 * etcd's TxnResponse from the executed ops' piece responses. `pieces` maps each executed op id to
 * its piece responses in key order; revision is the commit revision (nested txns report 0, as etcd).
 */
export function buildTxnResponse(
  plan: TxnPlan,
  results: readonly boolean[],
  pieces: ReadonlyMap<number, readonly LeafResponse[]>,
  revision: Revision,
): TxnResponse {
  const build = (node: PlanNode, top: boolean): TxnResponse => {
    const succeeded = node.compareIds.every((id) => results[id]!);
    const responses: ResponseOp[] = [];
    for (const item of succeeded ? node.success : node.failure) {
      if (item.kind === 'txn') responses.push({ type: 'txn', response: build(item.node, false) });
      else responses.push(mergeLeafResponse(plan.ops[item.id]!, pieces.get(item.id) ?? [], revision));
    }
    return { revision: top ? revision : 0, succeeded, responses };
  };
  return build(plan.root, true);
}

/** Groups shard part responses by op id, keeping the shards in the op's key order. */
export function collectPieces(
  plan: TxnPlan,
  byShard: ReadonlyMap<ShardId, readonly PartResponse[]>,
): Map<number, LeafResponse[]> {
  const pieces = new Map<number, LeafResponse[]>();
  for (const [id, shards] of plan.opShards) {
    const list: LeafResponse[] = [];
    for (const shard of shards) {
      for (const r of byShard.get(shard) ?? []) if (r.id === id) list.push(r.response);
    }
    pieces.set(id, list);
  }
  return pieces;
}

/** Whether two half-open intervals (empty end = +∞) share a key. */
export function intervalsOverlap(a: KeyInterval, b: KeyInterval): boolean {
  const aBeforeB = a.end.length > 0 && compareKeys(a.end, b.start) <= 0;
  const bBeforeA = b.end.length > 0 && compareKeys(b.end, a.start) <= 0;
  return !aBeforeB && !bBeforeA;
}

/** Whether two locks exclude each other: they share a key and at least one writes. */
export function locksConflict(a: LockInterval, b: LockInterval): boolean {
  return (a.write || b.write) && intervalsOverlap(a, b);
}

/** Whether the executed ops write anything (a txn whose branch only reads still takes a revision). */
export function writesAnything(plan: TxnPlan, executed: readonly number[]): boolean {
  return executed.some((id) => plan.ops[id]!.type !== 'range');
}

export { EMPTY as EMPTY_BYTES };
