// Random operation sequences from a seed. The generator knows nothing of the answers: it draws
// from small pools of keys, values and revisions so that operations collide (same keys, ranges
// over written keys, revisions near the newest and the compacted one), and it remembers only what
// it made (lease labels, watcher labels, raised alarms) so later operations can refer to them.

import { SimRng } from '../../src/sim/rng.js';
import type { WireObject } from './normalise.js';
import {
  type BytesSpec,
  bytesOf,
  type CompareResult,
  type CompareSpec,
  type LeaseSpec,
  type OpSpec,
  type RangeSpec,
  type RevisionSpec,
  type SortOrder,
  type SortTarget,
  type Target,
  type TxnOpSpec,
  type TxnSpec,
} from './ops.js';
import { encodeRequest } from './requests.js';

export type Variant = 'kv' | 'watch';

/** etcd's defaults, which both clusters run with. */
export const requestBytesMax = 1.5 * 1024 * 1024;
export const grpcOverheadBytes = 512 * 1024;
export const txnOpsMax = 128;
/** Watch streams per side; stream n is opened at watchStreamTargets[n]. */
export const watchStreamTargets: readonly Target[] = ['follower', 'follower', 'leader'];
const txnDepthMax = 3;

const keys = [
  'a',
  'b',
  'c',
  'd',
  'foo',
  'foo/1',
  'foo/2',
  'foo/3',
  'foo0',
  'fop',
  'z',
  '\x00',
  '\xff',
  'a\x00',
];
const rangeEnds = ['b', 'c', 'e', 'foo0', 'foo/3', 'fop', 'zz', '\x00', '\xff', 'a', '\x01'];
const values = ['', 'v', 'v1', 'v2', 'value', '\x00\x01', 'a'];

/** A seeded source of choices with the helpers the generator needs. */
class Chooser {
  private readonly rng: SimRng;
  constructor(seed: number) {
    this.rng = new SimRng(seed, 14);
  }
  int(lo: number, hi: number): number {
    return lo + this.rng.nextInt(hi - lo + 1);
  }
  chance(p: number): boolean {
    return this.rng.nextInt(1_000_000) < p * 1_000_000;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.rng.nextInt(items.length)]!;
  }
  /** Picks by weight: [[weight, value], ...]. */
  weighted<T>(choices: readonly (readonly [number, T])[]): T {
    const total = choices.reduce((sum, [w]) => sum + w, 0);
    let x = this.rng.nextInt(total);
    for (const [w, value] of choices) {
      if (x < w) return value;
      x -= w;
    }
    return choices[choices.length - 1]![1];
  }
}

interface GeneratorState {
  grants: number[];
  nextLeaseLabel: number;
  watchers: { label: number; stream: number }[];
  nextWatchLabel: number;
  alarms: { member: 'follower' | 'leader'; alarm: 'NOSPACE' | 'CORRUPT' }[];
  /** Some lease got a server-chosen (random) ID: ordering compares on leases would be chance. */
  serverChosenLease: boolean;
}

/**
 * The sequence for a run with auth on (--auth): the same operations, with every range whose end
 * is not after its key (an empty range) made proper, its bounds swapped (or the end dropped when
 * equal), and the top-level ranges of writing txns reading a key the user may read, no nested txns,
 * no alarm activations and no from-key watches; see avoidedEtcdBehaviours (auth-empty-range,
 * auth-txn-range-replicas, auth-nested-txn, auth-alarm-applier, auth-from-key-watch).
 */
export function generateAuthSequence(seed: number, opsCount: number, variant: Variant): OpSpec[] {
  const ops = generateSequence(seed, opsCount, variant);
  for (const op of ops) {
    properRanges(op);
    if (op.type === 'alarm' && op.action === 'ACTIVATE') Object.assign(op, alarmList);
    if (op.type === 'watchCreate' && op.rangeEnd === '\x00') delete op.rangeEnd;
    if (op.type !== 'txn') continue;
    withoutNestedTxns(op);
    if (writes(op)) readableRanges(op);
  }
  return ops;
}

/** etcd 3.4 checks no permission inside a nested txn (auth-nested-txn): they are left out. */
function withoutNestedTxns(txn: TxnSpec): void {
  txn.success = txn.success.filter((op) => op.type !== 'txn');
  txn.failure = txn.failure.filter((op) => op.type !== 'txn');
}

/** What an alarm activation becomes with auth on (auth-alarm-applier). */
const alarmList = { action: 'GET', member: 'zero', alarm: 'NONE' } as const;

/** A key auth.ts grants read on. */
const readableKey = 'a';

function readableRanges(txn: TxnSpec): void {
  for (const op of [...txn.success, ...txn.failure]) {
    if (op.type !== 'range') continue;
    op.key = readableKey;
    delete op.rangeEnd;
  }
}

/** Fixes every {key, rangeEnd} in an operation, nested txn ops and compares included. */
function properRanges(value: unknown): void {
  if (value === null || typeof value !== 'object') return;
  if (Array.isArray(value)) {
    for (const item of value) properRanges(item);
    return;
  }
  const spec = value as { key?: BytesSpec; rangeEnd?: BytesSpec };
  if (spec.key !== undefined && spec.rangeEnd !== undefined && spec.rangeEnd !== '\x00') {
    const order = Buffer.compare(bytesOf(spec.key), bytesOf(spec.rangeEnd));
    if (order === 0) delete spec.rangeEnd;
    if (order > 0) [spec.key, spec.rangeEnd] = [spec.rangeEnd, spec.key];
  }
  for (const field of Object.values(value)) properRanges(field);
}

export function generateSequence(seed: number, opsCount: number, variant: Variant): OpSpec[] {
  const c = new Chooser(seed);
  const state: GeneratorState = {
    grants: [],
    nextLeaseLabel: 1,
    watchers: [],
    nextWatchLabel: 1,
    alarms: [],
    serverChosenLease: false,
  };
  const ops: OpSpec[] = [];
  while (ops.length < opsCount) {
    // A raised alarm is lowered soon, so most of a run writes.
    const raised = state.alarms[0];
    if (raised !== undefined && c.chance(0.3)) {
      state.alarms.shift();
      ops.push({ type: 'alarm', action: 'DEACTIVATE', member: raised.member, alarm: raised.alarm });
      continue;
    }
    const op = variant === 'watch' && c.chance(0.3) ? watchOp(c, state) : kvOp(c, state);
    const target = c.weighted<Target>([
      [6, 'follower'],
      [2, 'leader'],
      [1, 'follower2'],
    ]);
    if (target !== 'follower' && !op.type.startsWith('watch')) op.at = target;
    ops.push(op);
  }
  return ops;
}

function key(c: Chooser): BytesSpec {
  if (c.chance(0.02)) return '';
  if (c.chance(0.01)) return { fill: 'k', bytes: c.pick([255, 1000, 1964]) };
  return c.pick(keys);
}

function value(c: Chooser): BytesSpec {
  if (c.chance(0.004)) {
    // Around etcd's limits: accepted, over --max-request-bytes, over gRPC's receive limit.
    const bytes = c.pick([
      requestBytesMax - 4096,
      requestBytesMax + 4096,
      requestBytesMax + grpcOverheadBytes + 4096,
    ]);
    return { fill: 'x', bytes };
  }
  if (c.chance(0.02)) return { fill: 'y', bytes: c.int(100, 5000) };
  return c.pick(values);
}

function rangeEnd(c: Chooser): BytesSpec | undefined {
  return c.chance(0.45) ? c.pick(rangeEnds) : undefined;
}

function revision(c: Chooser): RevisionSpec {
  return c.weighted<RevisionSpec>([
    [8, { rel: -c.int(0, 12) }],
    [2, { rel: c.int(1, 3) }],
    [2, c.int(1, 4)],
    [1, 0],
    [1, -1],
    [1, 2 ** 40],
  ]);
}

function lease(c: Chooser, state: GeneratorState): LeaseSpec {
  if (state.grants.length > 0 && c.chance(0.8)) return { grant: c.pick(state.grants) };
  return { id: c.pick(['0', '424242', '-7']) };
}

function range(c: Chooser): RangeSpec {
  const op: RangeSpec = { type: 'range', key: key(c) };
  const end = rangeEnd(c);
  if (end !== undefined) op.rangeEnd = end;
  if (c.chance(0.3)) op.limit = c.pick([0, 1, 2, 3, -1]);
  if (c.chance(0.25)) op.revision = revision(c);
  if (c.chance(0.3)) op.sortOrder = c.pick<SortOrder>(['NONE', 'ASCEND', 'DESCEND']);
  if (c.chance(0.3)) op.sortTarget = c.pick<SortTarget>(['KEY', 'VERSION', 'CREATE', 'MOD', 'VALUE']);
  if (c.chance(0.2)) op.serializable = true;
  if (c.chance(0.15)) op.keysOnly = true;
  if (c.chance(0.15)) op.countOnly = true;
  if (c.chance(0.1)) op.minModRevision = revision(c);
  if (c.chance(0.1)) op.maxModRevision = revision(c);
  if (c.chance(0.1)) op.minCreateRevision = revision(c);
  if (c.chance(0.1)) op.maxCreateRevision = revision(c);
  return op;
}

function put(c: Chooser, state: GeneratorState): OpSpec & { type: 'put' } {
  const op: OpSpec & { type: 'put' } = { type: 'put', key: key(c) };
  const ignoreValue = c.chance(0.1);
  if (!ignoreValue || c.chance(0.2)) op.value = value(c);
  if (ignoreValue) op.ignoreValue = true;
  const ignoreLease = c.chance(0.1);
  if (ignoreLease) op.ignoreLease = true;
  if ((!ignoreLease && c.chance(0.25)) || (ignoreLease && c.chance(0.1))) op.lease = lease(c, state);
  if (c.chance(0.3)) op.prevKv = true;
  return op;
}

function del(c: Chooser): OpSpec & { type: 'delete' } {
  const op: OpSpec & { type: 'delete' } = { type: 'delete', key: key(c) };
  const end = rangeEnd(c);
  if (end !== undefined) op.rangeEnd = end;
  if (c.chance(0.4)) op.prevKv = true;
  return op;
}

function compare(c: Chooser, state: GeneratorState): CompareSpec {
  const result = c.pick<CompareResult>(['EQUAL', 'GREATER', 'LESS', 'NOT_EQUAL']);
  const base = { result, key: key(c), ...(c.chance(0.2) ? { rangeEnd: c.pick(rangeEnds) } : {}) };
  switch (c.pick(['VERSION', 'CREATE', 'MOD', 'VALUE', 'LEASE'] as const)) {
    case 'VERSION':
      return { ...base, target: 'VERSION', version: c.int(0, 3) };
    case 'CREATE':
      return { ...base, target: 'CREATE', revision: revision(c) };
    case 'MOD':
      return { ...base, target: 'MOD', revision: revision(c) };
    case 'VALUE':
      return { ...base, target: 'VALUE', value: c.pick(values) };
    case 'LEASE': {
      // Random lease IDs differ between the clusters: only equality compares mean the same on both.
      const equality = state.serverChosenLease && (result === 'GREATER' || result === 'LESS');
      return { ...base, result: equality ? 'NOT_EQUAL' : result, target: 'LEASE', lease: lease(c, state) };
    }
  }
}

function txnOp(c: Chooser, state: GeneratorState, depth: number): TxnOpSpec {
  return c.weighted<() => TxnOpSpec>([
    [40, () => range(c)],
    [50, () => put(c, state)],
    [30, () => del(c)],
    [depth < txnDepthMax ? 20 : 0, () => txn(c, state, depth + 1)],
    [1, () => ({ type: 'empty' })],
  ])();
}

function txn(c: Chooser, state: GeneratorState, depth = 1): TxnSpec {
  const branch = (): TxnOpSpec[] => {
    if (c.chance(0.005))
      return Array.from({ length: txnOpsMax + 1 }, (_, i) => ({ type: 'range', key: `r${i}` }));
    return Array.from({ length: c.int(0, depth === 1 ? 4 : 2) }, () => txnOp(c, state, depth));
  };
  const made: TxnSpec = {
    type: 'txn',
    compare: Array.from({ length: c.int(0, 2) }, () => compare(c, state)),
    success: branch(),
    failure: branch(),
  };
  if (depth === 1 && writes(made)) currentRevisionRanges(made);
  if (depth === 1 && hasFromKeyDelete(made)) plainPuts(made);
  return made;
}

function hasFromKeyDelete(txn: TxnSpec): boolean {
  return [...txn.success, ...txn.failure].some(
    (op) => (op.type === 'delete' && op.rangeEnd === '\x00') || (op.type === 'txn' && hasFromKeyDelete(op)),
  );
}

/**
 * etcd 3.4 panics (the member exits) applying a txn whose ignore_value/ignore_lease put comes
 * after a from-key delete of that key: its pre-checks look at the state before the txn, and
 * checkIntervals does not see a "\0" range end as covering anything. Such txns get plain puts
 * (see avoidedEtcdBehaviours).
 */
function plainPuts(txn: TxnSpec): void {
  for (const op of [...txn.success, ...txn.failure]) {
    if (op.type === 'put') {
      delete op.ignoreValue;
      delete op.ignoreLease;
    }
    if (op.type === 'txn') plainPuts(op);
  }
}

function writes(txn: TxnSpec): boolean {
  return [...txn.success, ...txn.failure].some(
    (op) => op.type === 'put' || op.type === 'delete' || (op.type === 'txn' && writes(op)),
  );
}

/**
 * etcd 3.4 drops the ranges of a txn on the members that did not receive it
 * (removeNeedlessRangeReqs), so a txn whose range revision fails the compacted/future check is
 * refused by the member that answers and applied by the others: etcd's replicas then differ.
 * Txns that write therefore read at the current revision only (see avoidedEtcdBehaviours).
 */
function currentRevisionRanges(txn: TxnSpec): void {
  for (const op of [...txn.success, ...txn.failure]) {
    if (op.type === 'range' && op.revision !== undefined) op.revision = { rel: 0 };
    if (op.type === 'txn') currentRevisionRanges(op);
  }
}

function kvOp(c: Chooser, state: GeneratorState): OpSpec {
  return c.weighted<() => OpSpec>([
    [18, () => range(c)],
    [22, () => put(c, state)],
    [8, () => del(c)],
    [16, () => txn(c, state)],
    [2, () => ({ type: 'compact', revision: revision(c), ...(c.chance(0.5) ? { physical: true } : {}) })],
    [3, () => leaseGrant(c, state)],
    [1, () => ({ type: 'leaseRevoke', lease: lease(c, state) })],
    [
      2,
      () => ({ type: 'leaseTimeToLive', lease: lease(c, state), ...(c.chance(0.5) ? { keys: true } : {}) }),
    ],
    [1, () => ({ type: 'leaseLeases' })],
    [1, () => ({ type: 'leaseKeepAlive', lease: lease(c, state) })],
    [1, () => alarm(c, state)],
    [1, () => ({ type: 'status' })],
    [1, () => ({ type: 'memberList', ...(c.chance(0.5) ? { linearizable: true } : {}) })],
    [1, () => ({ type: 'hashKV', revision: c.chance(0.5) ? 0 : revision(c) })],
    [2, () => rawOp(c)],
    [1, () => ({ type: 'call', ...c.pick(otherCalls) })],
  ])();
}

/** Calls with nothing to resolve: Hash, Defragment, and the auth calls that read (auth is off). */
const otherCalls: readonly { method: string; request: Record<string, string> }[] = [
  { method: 'etcdserverpb.Maintenance/Hash', request: {} },
  { method: 'etcdserverpb.Maintenance/Defragment', request: {} },
  { method: 'etcdserverpb.Auth/UserList', request: {} },
  { method: 'etcdserverpb.Auth/RoleList', request: {} },
  { method: 'etcdserverpb.Auth/UserGet', request: { name: 'root' } },
  { method: 'etcdserverpb.Auth/RoleGet', request: { role: 'root' } },
  { method: 'etcdserverpb.Auth/AuthDisable', request: {} },
  { method: 'etcdserverpb.Auth/Authenticate', request: { name: 'root', password: 'x' } },
];

/** Unary methods raw bytes go to: none that could raise alarms, change members or grant short leases. */
const rawMethods: readonly (readonly [string, WireObject])[] = [
  ['etcdserverpb.KV/Range', { key: Buffer.from('a'), range_end: Buffer.from('z'), limit: '2' }],
  ['etcdserverpb.KV/Put', { key: Buffer.from('raw'), value: Buffer.from('v'), prev_kv: true }],
  ['etcdserverpb.KV/DeleteRange', { key: Buffer.from('raw') }],
  [
    'etcdserverpb.KV/Txn',
    {
      compare: [{ result: 'EQUAL', target: 'VERSION', key: Buffer.from('raw'), version: '1' }],
      success: [{ request_put: { key: Buffer.from('raw'), value: Buffer.from('t') } }],
      failure: [{ request_range: { key: Buffer.from('raw') } }],
    },
  ],
  ['etcdserverpb.KV/Compact', { revision: '1' }],
  ['etcdserverpb.Lease/LeaseRevoke', { ID: '424242' }],
  ['etcdserverpb.Lease/LeaseTimeToLive', { ID: '424242', keys: true }],
  ['etcdserverpb.Maintenance/Status', {}],
  ['etcdserverpb.Cluster/MemberList', {}],
];

/** First messages for raw streams (the stream is closed after its first answer). */
const rawStreamMethods: readonly (readonly [string, WireObject])[] = [
  [
    'etcdserverpb.Watch/Watch',
    { create_request: { key: Buffer.from('a'), range_end: Buffer.from('c'), prev_kv: true } },
  ],
  ['etcdserverpb.Watch/Watch', { progress_request: {} }],
  ['etcdserverpb.Lease/LeaseKeepAlive', { ID: '424242' }],
];

function randomBytes(c: Chooser, count: number): number[] {
  return Array.from({ length: count }, () => c.int(0, 255));
}

/** Request bytes that are malformed (or merely odd) in the ways a decoder can meet. */
function rawOp(c: Chooser): OpSpec {
  const stream = c.chance(0.15);
  const [method, message] = c.pick(stream ? rawStreamMethods : rawMethods);
  const valid = [...encodeRequest(method, message)];
  const cut = c.int(0, Math.max(0, valid.length - 1));
  const bytes = c.weighted<() => number[]>([
    [3, () => randomBytes(c, c.int(0, 12))],
    [3, () => valid.slice(0, cut)],
    // The first tag with another wire type.
    [3, () => (valid.length === 0 ? [] : [(valid[0]! & ~7) | c.int(0, 7), ...valid.slice(1)])],
    // An unknown field of any wire type, with some bytes after it.
    [3, () => [...valid, ...varint(c.int(15, 3000) * 8 + c.int(0, 7)), ...randomBytes(c, c.int(0, 9))]],
    // Field number 0, a tag longer than 10 bytes, a negative length.
    [1, () => [...valid, c.int(0, 7)]],
    [1, () => [...valid, ...Array(10).fill(0xff), 0x01]],
    [1, () => [...valid, 0xa2, 0x06, ...Array(9).fill(0xff), 0x01]],
    // A group around an unknown field.
    [1, () => [...valid, 0x9b, 0x06, 0xa2, 0x06, 0x01, 0x00, 0xa4, 0x06]],
    [1, () => valid],
  ])();
  return { type: stream ? 'rawStream' : 'raw', method, hex: Buffer.from(bytes).toString('hex') };
}

function varint(value: number): number[] {
  const out: number[] = [];
  while (value >= 0x80) {
    out.push((value & 0x7f) | 0x80);
    value = Math.floor(value / 0x80);
  }
  out.push(value);
  return out;
}

function leaseGrant(c: Chooser, state: GeneratorState): OpSpec {
  const label = state.nextLeaseLabel++;
  state.grants.push(label);
  const id = c.weighted<string>([
    [3, '0'],
    [3, String(c.int(1, 2 ** 31))],
    [2, String(1000 + c.int(0, 4))],
    [1, '-5'],
  ]);
  if (id === '0') state.serverChosenLease = true;
  const ttl = c.weighted<number>([
    [6, c.pick([3600, 7200, 86400])],
    [1, 9_000_000_000],
    [1, 9_000_000_001],
  ]);
  return { type: 'leaseGrant', label, ttl, id };
}

function alarm(c: Chooser, state: GeneratorState): OpSpec {
  if (c.chance(0.6))
    return { type: 'alarm', action: 'GET', member: 'zero', alarm: c.pick(['NONE', 'NOSPACE'] as const) };
  const member = c.pick(['follower', 'leader'] as const);
  const kind = c.weighted<'NOSPACE' | 'CORRUPT'>([
    [5, 'NOSPACE'],
    [1, 'CORRUPT'],
  ]);
  if (c.chance(0.2)) {
    return {
      type: 'alarm',
      action: 'DEACTIVATE',
      member: c.pick(['zero', 'unknown', member] as const),
      alarm: kind,
    };
  }
  state.alarms.push({ member, alarm: kind });
  return { type: 'alarm', action: 'ACTIVATE', member, alarm: kind };
}

function watchOp(c: Chooser, state: GeneratorState): OpSpec {
  const stream = c.int(0, watchStreamTargets.length - 1);
  const onStream = state.watchers.filter((w) => w.stream === stream);
  return c.weighted<() => OpSpec>([
    [5, () => watchCreate(c, state, stream)],
    [onStream.length > 0 ? 3 : 0, () => watchCancel(c, state, stream)],
    [1, () => ({ type: 'watchCancel', stream, watcher: { id: c.int(0, 8) } })],
    [1, () => ({ type: 'watchProgress', stream })],
  ])();
}

function watchCreate(c: Chooser, state: GeneratorState, stream: number): OpSpec {
  const label = state.nextWatchLabel++;
  state.watchers.push({ label, stream });
  const op: OpSpec & { type: 'watchCreate' } = {
    type: 'watchCreate',
    stream,
    label,
    key: c.chance(0.03) ? '' : c.pick(keys),
  };
  const end = rangeEnd(c);
  if (end !== undefined) op.rangeEnd = end;
  if (c.chance(0.4)) op.startRevision = revision(c);
  if (c.chance(0.4)) op.prevKv = true;
  if (c.chance(0.15)) op.noPut = true;
  if (c.chance(0.15)) op.noDelete = true;
  if (c.chance(0.1)) op.progressNotify = true;
  if (c.chance(0.2)) op.fragment = true;
  if (c.chance(0.1)) op.watchId = c.int(-2, 6);
  return op;
}

function watchCancel(c: Chooser, state: GeneratorState, stream: number): OpSpec {
  const onStream = state.watchers.filter((w) => w.stream === stream);
  const chosen = c.pick(onStream);
  if (c.chance(0.8)) state.watchers.splice(state.watchers.indexOf(chosen), 1);
  return { type: 'watchCancel', stream, watcher: { label: chosen.label } };
}
