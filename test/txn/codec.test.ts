// The transaction layer's bytes (src/txn/codec.ts): every ShardTxnCommand kind round-trips
// byte for byte, with arbitrary keys (empty, binary), ranges, compares of every target and nested
// txns; every truncation and random garbage is refused with the typed error, never a RangeError
// or a half-decoded command. A ShardTxnState snapshot taken in the middle of harness runs and
// restored, then fed the rest of the log (itself encoded and decoded), answers every command as
// the original did and ends in the original's state; a flipped byte is a CRC error.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { crc32 } from 'node:zlib';
import fc from 'fast-check';
import {
  decodeShardTxnCommand,
  decodeShardTxnSnapshot,
  encodeShardTxnCommand,
  encodeShardTxnSnapshot,
  MAX_TXN_NESTING,
  TxnCommandInvalidError,
  TxnSnapshotCorruptError,
} from '../../src/txn/codec.js';
import { ShardTxnState } from '../../src/txn/shard-txn-state.js';
import type {
  AbortReason,
  Compare,
  LeafOp,
  LockInterval,
  RequestOp,
  ShardTxnCommand,
  ShardTxnResult,
  TxnMeta,
  TxnPart,
  TxnRequest,
} from '../../src/txn/types.js';
import { DEFAULT_OPTIONS, TxnHarness } from './harness.js';
import { ModelKeyspace } from './model-keyspace.js';

// --- arbitraries ----------------------------------------------------------------------------

const bytesArb = fc.oneof(
  fc.constant(new Uint8Array(0)),
  fc.uint8Array({ maxLength: 12 }),
  fc.constantFrom(new Uint8Array([0]), new Uint8Array([0xff, 0x00, 0x80])),
);
const uintArb = fc.oneof(fc.nat(1000), fc.maxSafeNat());
const intArb = fc.oneof(fc.integer({ min: -1000, max: 1000 }), fc.maxSafeInteger());
const leaseArb = fc.oneof(
  fc.constant(0n),
  fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
  fc.constantFrom(-(2n ** 63n), 2n ** 63n - 1n),
);
const stringArb = fc.oneof(fc.string(), fc.string({ unit: 'binary', maxLength: 8 }));
const boolArb = fc.boolean();

const resultArb = fc.constantFrom('equal', 'greater', 'less', 'not-equal' as const);
const compareBase = { result: resultArb, key: bytesArb, rangeEnd: bytesArb };
const compareArb: fc.Arbitrary<Compare> = fc.oneof(
  fc.record(
    { ...compareBase, target: fc.constant('version' as const), version: intArb },
    { requiredKeys: ['result', 'key', 'target', 'version'] },
  ),
  fc.record(
    { ...compareBase, target: fc.constant('create' as const), createRevision: intArb },
    { requiredKeys: ['result', 'key', 'target', 'createRevision'] },
  ),
  fc.record(
    { ...compareBase, target: fc.constant('mod' as const), modRevision: intArb },
    { requiredKeys: ['result', 'key', 'target', 'modRevision'] },
  ),
  fc.record(
    { ...compareBase, target: fc.constant('value' as const), value: bytesArb },
    { requiredKeys: ['result', 'key', 'target', 'value'] },
  ),
  fc.record(
    { ...compareBase, target: fc.constant('lease' as const), lease: leaseArb },
    { requiredKeys: ['result', 'key', 'target', 'lease'] },
  ),
);

const rangeOpArb = fc
  .record(
    {
      key: bytesArb,
      rangeEnd: bytesArb,
      limit: intArb,
      revision: intArb,
      sortOrder: fc.constantFrom('none', 'ascend', 'descend' as const),
      sortTarget: fc.constantFrom('key', 'version', 'create', 'mod', 'value' as const),
      serializable: boolArb,
      keysOnly: boolArb,
      countOnly: boolArb,
      minModRevision: intArb,
      maxModRevision: intArb,
      minCreateRevision: intArb,
      maxCreateRevision: intArb,
    },
    { requiredKeys: ['key'] },
  )
  .map((request) => ({ type: 'range' as const, request }));
const putOpArb = fc
  .record(
    {
      key: bytesArb,
      value: bytesArb,
      lease: leaseArb,
      prevKv: boolArb,
      ignoreValue: boolArb,
      ignoreLease: boolArb,
    },
    { requiredKeys: ['key'] },
  )
  .map((request) => ({ type: 'put' as const, request }));
const deleteOpArb = fc
  .record({ key: bytesArb, rangeEnd: bytesArb, prevKv: boolArb }, { requiredKeys: ['key'] })
  .map((request) => ({ type: 'deleteRange' as const, request }));
const leafOpArb: fc.Arbitrary<LeafOp> = fc.oneof(rangeOpArb, putOpArb, deleteOpArb);

const { txn: txnRequestArb } = fc.letrec<{ txn: TxnRequest; op: RequestOp }>((tie) => ({
  txn: fc.record({
    compare: fc.array(compareArb, { maxLength: 3 }),
    success: fc.array(tie('op'), { maxLength: 3 }),
    failure: fc.array(tie('op'), { maxLength: 3 }),
  }),
  op: fc.oneof(
    { maxDepth: 3, depthIdentifier: 'txn' },
    leafOpArb,
    tie('txn').map((request) => ({ type: 'txn' as const, request })),
  ),
}));

const metaArb: fc.Arbitrary<TxnMeta> = fc.record({
  id: stringArb,
  primary: uintArb,
  priority: intArb,
  startRevision: uintArb,
  startedAtMs: intArb,
});
const lockArb: fc.Arbitrary<LockInterval> = fc.record({ start: bytesArb, end: bytesArb, write: boolArb });
const partArb: fc.Arbitrary<TxnPart> = fc.record({
  compares: fc.array(fc.record({ id: uintArb, compare: compareArb }), { maxLength: 4 }),
  ops: fc.array(fc.record({ id: uintArb, op: leafOpArb }), { maxLength: 4 }),
  locks: fc.array(lockArb, { maxLength: 4 }),
});
const executedArb = fc.array(uintArb, { maxLength: 6 });
const reasonArb: fc.Arbitrary<AbortReason> = fc.oneof(
  fc.constant({ kind: 'coordinator' as const }),
  fc.constant({ kind: 'expired' as const }),
  fc.record({ kind: fc.constant('wound' as const), byPriority: intArb }),
);

const COMMANDS: {
  readonly [K in ShardTxnCommand['type']]: fc.Arbitrary<Extract<ShardTxnCommand, { type: K }>>;
} = {
  prepare: fc.record({ type: fc.constant('prepare' as const), meta: metaArb, part: partArb, nowMs: intArb }),
  commit: fc.record({
    type: fc.constant('commit' as const),
    meta: metaArb,
    revision: uintArb,
    executed: executedArb,
    nowMs: intArb,
  }),
  abort: fc.record({ type: fc.constant('abort' as const), meta: metaArb, nowMs: intArb }),
  'record-begin': fc.record({ type: fc.constant('record-begin' as const), meta: metaArb, nowMs: intArb }),
  'record-heartbeat': fc.record({
    type: fc.constant('record-heartbeat' as const),
    txnId: stringArb,
    nowMs: intArb,
  }),
  'record-forget': fc.record({
    type: fc.constant('record-forget' as const),
    txnId: stringArb,
    nowMs: intArb,
  }),
  'record-commit': fc.record({
    type: fc.constant('record-commit' as const),
    txnId: stringArb,
    revision: uintArb,
    executed: executedArb,
    nowMs: intArb,
  }),
  'record-abort': fc.record({
    type: fc.constant('record-abort' as const),
    meta: metaArb,
    reason: reasonArb,
    nowMs: intArb,
  }),
  single: fc.record({
    type: fc.constant('single' as const),
    request: txnRequestArb,
    revision: uintArb,
    nowMs: intArb,
  }),
};
/** fast-check builds some records with a null prototype; a plain copy compares as decoded values do. */
const commandArb: fc.Arbitrary<ShardTxnCommand> = fc
  .oneof(...Object.values(COMMANDS))
  .map((c) => structuredClone(c));

/**
 * A copy without the properties whose value is undefined: the encoding treats an optional field
 * set to undefined as absent (the planner writes `rangeEnd: undefined`), so decoded values lack them.
 */
function defined<T>(value: T): T {
  if (value instanceof Uint8Array || value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.map(defined) as T;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) if (v !== undefined) out[k] = defined(v);
  return out as T;
}

function assertCommandInvalid(payload: Uint8Array): void {
  assert.throws(
    () => decodeShardTxnCommand(payload),
    (e: unknown) => e instanceof TxnCommandInvalidError && e.code === 'txn-command-invalid',
  );
}

function assertSnapshotCorrupt(payload: Uint8Array, code?: string): void {
  assert.throws(
    () => decodeShardTxnSnapshot(payload),
    (e: unknown) => e instanceof TxnSnapshotCorruptError && (code === undefined || e.code === code),
  );
}

// --- commands -------------------------------------------------------------------------------

for (const [kind, arb] of Object.entries(COMMANDS)) {
  test(`${kind}: decode(encode(c)) is c, and encode of that is the same bytes`, () => {
    fc.assert(
      fc.property(arb as fc.Arbitrary<ShardTxnCommand>, (generated) => {
        const cmd = structuredClone(generated);
        const bytes = encodeShardTxnCommand(cmd);
        const decoded = decodeShardTxnCommand(bytes);
        assert.deepStrictEqual(decoded, cmd);
        assert.deepStrictEqual(encodeShardTxnCommand(decoded), bytes);
        // A Buffer payload (as a WAL hands it back) decodes to plain Uint8Arrays all the same.
        assert.deepStrictEqual(decodeShardTxnCommand(Buffer.from(bytes)), cmd);
      }),
      { numRuns: 300 },
    );
  });
}

test('every truncation of a valid command is refused with TxnCommandInvalidError', () => {
  fc.assert(
    fc.property(commandArb, (cmd) => {
      const bytes = encodeShardTxnCommand(cmd);
      for (let n = 0; n < bytes.length; n++) assertCommandInvalid(bytes.subarray(0, n));
      // And one trailing byte too many.
      assertCommandInvalid(Uint8Array.from([...bytes, 0]));
    }),
    { numRuns: 300 },
  );
});

/** Garbage decodes to the typed error, or (by chance a valid encoding) to a whole command that encodes back to it. */
function decodeGarbage(payload: Uint8Array): void {
  let cmd: ShardTxnCommand;
  try {
    cmd = decodeShardTxnCommand(payload);
  } catch (error) {
    assert.ok(error instanceof TxnCommandInvalidError, `not the typed error: ${String(error)}`);
    assert.equal(error.code, 'txn-command-invalid');
    return;
  }
  // Every accepted payload is the one encoding of its command.
  assert.deepStrictEqual(encodeShardTxnCommand(cmd), Uint8Array.from(payload));
}

test('random bytes, with or without a valid header, give the typed error or a whole command', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 64 }), fc.integer({ min: 0, max: 10 }), (tail, tag) => {
      decodeGarbage(tail);
      decodeGarbage(Uint8Array.from([1, tag, ...tail]));
    }),
    { numRuns: 3000 },
  );
});

test('a valid command with a byte changed gives the typed error or a whole command', () => {
  fc.assert(
    fc.property(commandArb, fc.nat(), fc.integer({ min: 1, max: 255 }), (cmd, at, xor) => {
      const bytes = encodeShardTxnCommand(cmd);
      const i = at % bytes.length;
      bytes[i]! ^= xor;
      decodeGarbage(bytes);
    }),
    { numRuns: 2000 },
  );
});

test('unknown version and tag, bad enum, flag and sign bytes, unsafe integers are refused', () => {
  const ok = encodeShardTxnCommand({ type: 'record-heartbeat', txnId: 't', nowMs: 5 });
  assert.deepStrictEqual([...ok], [1, 5, 1, 0x74, 0, 5]);
  assertCommandInvalid(Uint8Array.from([2, 5, 1, 0x74, 0, 5])); // version
  assertCommandInvalid(Uint8Array.from([1, 0, 1, 0x74, 0, 5])); // tag
  assertCommandInvalid(Uint8Array.from([1, 99, 1, 0x74, 0, 5])); // tag
  assertCommandInvalid(Uint8Array.from([1, 5, 1, 0x74, 2, 5])); // sign byte
  assertCommandInvalid(Uint8Array.from([1, 5, 1, 0x74, 1, 0])); // negative zero
  assertCommandInvalid(Uint8Array.from([1, 5, 1, 0xff, 0, 5])); // not UTF-8
  // A varint of 2^53 (past the safe integers) as a revision.
  const unsafe = [0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10];
  assertCommandInvalid(Uint8Array.from([1, 7, 1, 0x74, ...unsafe, 0, 0, 5]));
  assert.deepStrictEqual(
    decodeShardTxnCommand(Uint8Array.from([1, 7, 1, 0x74, ...unsafe.slice(0, 7), 0x0f, 0, 0, 5])),
    { type: 'record-commit', txnId: 't', revision: 15 * 2 ** 49, executed: [], nowMs: 5 },
  );
  // The same value with a redundant zero byte (0x85 0x00 is 5 as well): refused, one encoding per value.
  assertCommandInvalid(Uint8Array.from([1, 5, 1, 0x74, 0, 0x85, 0x00]));
  // A leading byte order mark is part of the id, not stripped.
  const bom = { type: 'record-forget' as const, txnId: '\uFEFFt', nowMs: 1 };
  assert.deepStrictEqual(decodeShardTxnCommand(encodeShardTxnCommand(bom)), bom);
  // A presence mask with a bit past the put's optional fields.
  const put = encodeShardTxnCommand({
    type: 'single',
    request: { compare: [], success: [{ type: 'put', request: { key: new Uint8Array([7]) } }], failure: [] },
    revision: 3,
    nowMs: 0,
  });
  const maskAt = put.indexOf(7) + 1;
  assert.equal(put[maskAt], 0);
  put[maskAt] = 1 << 5;
  assertCommandInvalid(put);
});

test('txns nested deeper than MAX_TXN_NESTING are refused both ways, without exhausting the stack', () => {
  const nest = (depth: number): TxnRequest => {
    let request: TxnRequest = { compare: [], success: [], failure: [] };
    for (let i = 0; i < depth; i++)
      request = { compare: [], success: [{ type: 'txn', request }], failure: [] };
    return request;
  };
  const single = (depth: number): ShardTxnCommand => ({
    type: 'single',
    request: nest(depth),
    revision: 1,
    nowMs: 1,
  });
  const max = single(MAX_TXN_NESTING);
  assert.deepStrictEqual(decodeShardTxnCommand(encodeShardTxnCommand(max)), max);
  assert.throws(() => encodeShardTxnCommand(single(MAX_TXN_NESTING + 1)), RangeError);
  // Hand-made: 100k levels of "compare 0, success 1 op of type txn".
  const deep = [1, 9];
  for (let i = 0; i < 100_000; i++) deep.push(0, 1, 3);
  assertCommandInvalid(Uint8Array.from(deep));
});

test('encode refuses what would not read back the same', () => {
  const meta: TxnMeta = { id: 't', primary: 1, priority: 0, startRevision: 1, startedAtMs: 0 };
  assert.throws(
    () => encodeShardTxnCommand({ type: 'commit', meta, revision: -1, executed: [], nowMs: 0 }),
    RangeError,
  );
  assert.throws(
    () => encodeShardTxnCommand({ type: 'commit', meta, revision: 1.5, executed: [], nowMs: 0 }),
    RangeError,
  );
  assert.throws(() => encodeShardTxnCommand({ type: 'abort', meta, nowMs: 2 ** 53 }), RangeError);
  assert.throws(
    () => encodeShardTxnCommand({ type: 'abort', meta: { ...meta, id: 'a\uD800' }, nowMs: 0 }),
    RangeError,
  );
  const put = (lease: bigint): ShardTxnCommand => ({
    type: 'single',
    request: {
      compare: [],
      success: [{ type: 'put', request: { key: new Uint8Array(), lease } }],
      failure: [],
    },
    revision: 1,
    nowMs: 0,
  });
  assert.throws(() => encodeShardTxnCommand(put(2n ** 63n)), RangeError);
  assert.doesNotThrow(() => encodeShardTxnCommand(put(-(2n ** 63n))));
});

// --- snapshots over harness runs ------------------------------------------------------------

type Answer = ShardTxnResult | { readonly threw: string };

/** A command's result, or the error it threw (an invariant error must be thrown again after a restore). */
function answer(state: ShardTxnState, cmd: ShardTxnCommand): Answer {
  try {
    return defined(state.apply(cmd));
  } catch (error) {
    return { threw: String(error) };
  }
}

/**
 * Replays a shard's log from the start (the reference) and, for each cut, replays the log up to
 * the cut, snapshots it through the bytes, restores a fresh state from them and feeds it the rest
 * of the log through the command codec: every answer, the final state and the keyspace must be
 * the reference's.
 */
function replayWithCuts(
  log: readonly ShardTxnCommand[],
  options: ShardTxnState['options'],
  cuts: readonly number[],
): { reference: ShardTxnState; snapshots: Uint8Array[]; checked: number; dropped: number } {
  const referenceKeyspace = new ModelKeyspace();
  const reference = new ShardTxnState(referenceKeyspace, options);
  let dropped = 0;
  let finished = 0;
  const answers = log.map((cmd) => {
    const a = answer(reference, cmd);
    const now = reference.exportImage().finished.length;
    if (now < finished) dropped++;
    finished = now;
    return a;
  });
  const finalBytes = encodeShardTxnSnapshot(reference.exportImage());
  const snapshots: Uint8Array[] = [];
  let checked = 0;
  for (const cut of cuts) {
    const keyspace = new ModelKeyspace();
    const before = new ShardTxnState(keyspace, options);
    for (const cmd of log.slice(0, cut)) answer(before, cmd);
    const bytes = encodeShardTxnSnapshot(before.exportImage());
    snapshots.push(bytes);
    const image = decodeShardTxnSnapshot(bytes);
    assert.deepStrictEqual(image, defined(before.exportImage()), `cut ${cut}: the image round-trips`);
    assert.deepStrictEqual(encodeShardTxnSnapshot(image), bytes, `cut ${cut}: the bytes round-trip`);
    // A replica restarting from the snapshot: a fresh state over the same keyspace, fed the rest
    // of the log as it would read it back from its WAL.
    const restored = new ShardTxnState(keyspace, options);
    restored.restore(image);
    for (let i = cut; i < log.length; i++) {
      const cmd = decodeShardTxnCommand(encodeShardTxnCommand(log[i]!));
      assert.deepStrictEqual(cmd, defined(log[i]), `entry ${i} round-trips`);
      assert.deepStrictEqual(
        answer(restored, cmd),
        answers[i],
        `cut ${cut}: entry ${i} (${cmd.type}) answers the same`,
      );
      checked++;
    }
    assert.deepStrictEqual(
      defined(restored.exportImage()),
      defined(reference.exportImage()),
      `cut ${cut}: the same final state`,
    );
    assert.deepStrictEqual(encodeShardTxnSnapshot(restored.exportImage()), finalBytes);
    assert.deepStrictEqual(keyspace.dump(), referenceKeyspace.dump(), `cut ${cut}: the same keyspace`);
  }
  return { reference, snapshots, checked, dropped };
}

function cutsOf(n: number, harness: TxnHarness): number[] {
  const cuts = new Set([0, 1, Math.floor(n / 4), Math.floor(n / 2), Math.floor((3 * n) / 4), n - 1, n]);
  for (let k = 0; k < 4; k++) cuts.add(harness.rng.between(0, n));
  return [...cuts];
}

const SNAPSHOT_SEEDS = Number(process.env.TXN_CODEC_SEEDS ?? 12);

test('a snapshot taken mid-run and restored answers the rest of the log as the original did', async () => {
  let checked = 0;
  let withLocks = 0;
  let withPending = 0;
  let withOutcomes = 0;
  for (let seed = 1; seed <= SNAPSHOT_SEEDS; seed++) {
    const harness = new TxnHarness({ ...DEFAULT_OPTIONS, seed, ...(seed % 3 === 0 ? { outages: 2 } : {}) });
    await harness.run();
    for (const shard of harness.shards) {
      const result = replayWithCuts(shard.log, shard.state.options, cutsOf(shard.log.length, harness));
      assert.deepStrictEqual(
        result.reference.exportImage(),
        shard.state.exportImage(),
        'the replay is the run',
      );
      checked += result.checked;
      for (const bytes of result.snapshots) {
        const image = decodeShardTxnSnapshot(bytes);
        if (image.locks.length > 0) withLocks++;
        if (image.pendingRecords.length > 0) withPending++;
        if (image.finished.length > 0) withOutcomes++;
      }
    }
  }
  // The cuts must have caught the interesting states, or the test proves little.
  assert.ok(withLocks > 10, `snapshots holding locks: ${withLocks}`);
  assert.ok(withPending > 5, `snapshots holding PENDING records: ${withPending}`);
  assert.ok(withOutcomes > 10, `snapshots holding outcomes: ${withOutcomes}`);
  assert.ok(checked > 1000, `entries applied after a restore: ${checked}`);
});

test('one run, snapshotted after every entry of every shard', async () => {
  const harness = new TxnHarness({ ...DEFAULT_OPTIONS, seed: 2 });
  await harness.run();
  let checked = 0;
  for (const shard of harness.shards) {
    const cuts = Array.from({ length: shard.log.length + 1 }, (_, i) => i);
    const result = replayWithCuts(shard.log, shard.state.options, cuts);
    assert.deepStrictEqual(
      result.reference.exportImage(),
      shard.state.exportImage(),
      'the replay is the run',
    );
    checked += result.checked;
  }
  assert.ok(checked > 10_000, `entries applied after a restore: ${checked}`);
});

test('with a short retention (outcomes and records dropped mid-log), a restored state still answers the same', async () => {
  let dropped = 0;
  let checked = 0;
  for (let seed = 1; seed <= 4; seed++) {
    const harness = new TxnHarness({ ...DEFAULT_OPTIONS, seed });
    await harness.run();
    for (const shard of harness.shards) {
      const options = { ...shard.state.options, retainMs: 50 };
      const result = replayWithCuts(shard.log, options, cutsOf(shard.log.length, harness));
      dropped += result.dropped;
      checked += result.checked;
    }
  }
  assert.ok(dropped > 10, `replays that dropped outcomes: ${dropped}`);
  assert.ok(checked > 500, `entries applied after a restore: ${checked}`);
});

test('restore replaces a state that already held locks, records and outcomes', async () => {
  const harness = new TxnHarness({ ...DEFAULT_OPTIONS, seed: 3 });
  await harness.run();
  const shard = harness.shards[0]!;
  const half = Math.floor(shard.log.length / 2);
  const a = new ShardTxnState(new ModelKeyspace(), shard.state.options);
  for (const cmd of shard.log.slice(0, half)) a.apply(cmd);
  const b = new ShardTxnState(new ModelKeyspace(), shard.state.options);
  for (const cmd of shard.log) b.apply(cmd);
  const empty = new ShardTxnState(new ModelKeyspace(), shard.state.options);
  b.restore(decodeShardTxnSnapshot(encodeShardTxnSnapshot(a.exportImage())));
  assert.deepStrictEqual(defined(b.exportImage()), defined(a.exportImage()));
  b.restore(decodeShardTxnSnapshot(encodeShardTxnSnapshot(empty.exportImage())));
  assert.deepStrictEqual(b.exportImage(), empty.exportImage());
  assert.equal(b.locks.size, 0);
});

/** A snapshot from the middle of a harness run that holds locks, records and outcomes. */
async function busySnapshot(): Promise<Uint8Array> {
  const harness = new TxnHarness({ ...DEFAULT_OPTIONS, seed: 5 });
  await harness.run();
  for (const shard of harness.shards) {
    const state = new ShardTxnState(new ModelKeyspace(), shard.state.options);
    for (const cmd of shard.log) {
      state.apply(cmd);
      const image = state.exportImage();
      if (
        image.locks.length >= 1 &&
        image.pendingRecords.length >= 1 &&
        image.decidedRecords.length >= 1 &&
        image.finished.length >= 2
      ) {
        return encodeShardTxnSnapshot(image);
      }
    }
  }
  assert.fail('no busy state in the run');
}

test('a flipped byte anywhere in a snapshot is reported as a CRC error', async () => {
  const bytes = await busySnapshot();
  for (let i = 0; i < bytes.length; i++) {
    for (const xor of [0x01, 0x80, 0xff]) {
      const bad = bytes.slice();
      bad[i]! ^= xor;
      assertSnapshotCorrupt(bad, 'txn-snapshot-crc');
    }
  }
});

test('every truncation and random bytes are refused with TxnSnapshotCorruptError', async () => {
  const bytes = await busySnapshot();
  for (let n = 0; n < bytes.length; n++) assertSnapshotCorrupt(bytes.subarray(0, n));
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 200 }), (garbage) => assertSnapshotCorrupt(garbage)),
    { numRuns: 2000 },
  );
});

/** A body with a valid CRC appended: what a snapshot written by buggy code would look like. */
function withCrc(body: Uint8Array): Uint8Array {
  const out = new Uint8Array(body.length + 4);
  out.set(body);
  new DataView(out.buffer).setUint32(body.length, crc32(body), true);
  return out;
}

test('a body with a valid CRC that does not decode, or breaks the invariants, is txn-snapshot-invalid', async () => {
  const bytes = await busySnapshot();
  const body = bytes.subarray(0, bytes.length - 4);
  assert.deepStrictEqual(withCrc(body), bytes);
  // Truncated bodies, properly signed.
  for (let n = 0; n < body.length; n++)
    assertSnapshotCorrupt(withCrc(body.subarray(0, n)), 'txn-snapshot-invalid');
  // Random bodies, properly signed: invalid, or by chance a whole image that round-trips.
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 120 }), (garbage) => {
      const payload = withCrc(Uint8Array.from([1, ...garbage]));
      try {
        const image = decodeShardTxnSnapshot(payload);
        assert.deepStrictEqual(encodeShardTxnSnapshot(image), payload);
      } catch (error) {
        assert.ok(error instanceof TxnSnapshotCorruptError, String(error));
        assert.equal(error.code, 'txn-snapshot-invalid');
      }
    }),
    { numRuns: 2000 },
  );
  // Well-formed bytes, impossible states.
  const image = decodeShardTxnSnapshot(bytes);
  const lock = image.locks[0]!;
  const pending = image.pendingRecords[0]!;
  const bad = [
    { ...image, locks: [lock, lock] },
    { ...image, finished: [image.finished[0]!, image.finished[0]!] },
    { ...image, decidedRecords: [...image.decidedRecords, pending] },
    {
      ...image,
      pendingRecords: [...image.pendingRecords, { ...pending, state: { status: 'aborted' as const } }],
    },
  ];
  for (const b of bad) assertSnapshotCorrupt(encodeShardTxnSnapshot(b), 'txn-snapshot-invalid');
  assertSnapshotCorrupt(withCrc(Uint8Array.from([2, ...body.subarray(1)])), 'txn-snapshot-invalid');
});
