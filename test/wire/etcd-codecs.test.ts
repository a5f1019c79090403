// The hand-written codecs must be indistinguishable from proto-loader/protobufjs: the same
// objects out of the same bytes, and bytes that protobufjs reads back as it reads its own.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { MethodDefinition, ServiceDefinition } from '@grpc/grpc-js';
import fc from 'fast-check';
import { fastCodecMethods, withFastCodecs } from '../../src/api/grpc-codecs.js';
import {
  decodeLeaseKeepAliveRequest,
  decodePutRequest,
  decodeRangeRequest,
  decodeTxnRequest,
  encodePutResponse,
  ProtoDecodeError,
  ProtoShapeError,
} from '../../src/wire/etcd-codecs.js';
import { type EtcdServiceName, serviceDefinition } from '../../src/wire/etcd-proto.js';

const runs = Number(process.env.CONCORD_CODEC_RUNS ?? 300);

type Method = MethodDefinition<unknown, unknown>;

function reference(service: EtcdServiceName, method: string): Method {
  const definition = serviceDefinition(service)[method];
  assert.ok(definition, `${service}/${method}`);
  return definition as Method;
}

function fast(service: EtcdServiceName, method: string): Method {
  const definition = withFastCodecs(service, serviceDefinition(service))[method];
  assert.ok(definition, `${service}/${method}`);
  return definition as Method;
}

// ---- arbitraries (input shapes protobufjs' fromObject takes) ----

const int64Max = 2n ** 63n - 1n;
const int64 = fc.oneof(
  fc.constant('0'),
  fc.integer({ min: 0, max: 1_000_000 }).map(String),
  fc.bigInt({ min: -int64Max - 1n, max: int64Max }).map(String),
  fc.constantFrom(String(int64Max), String(-int64Max - 1n), '9007199254740993', '-1'),
);
const uint64 = fc.oneof(
  fc.integer({ min: 0, max: 1_000_000 }).map(String),
  fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }).map(String),
  fc.constant('18446744073709551615'),
);
/** Handlers also hand numbers (revisions, counts) to the serializer. */
const int64Out = fc.oneof(int64, fc.integer({ min: -(2 ** 40), max: 2 ** 40 }), fc.maxSafeInteger());
const bytes = fc.oneof(
  fc.constant(Buffer.alloc(0)),
  fc.uint8Array({ maxLength: 40 }).map((array) => Buffer.from(array)),
  fc.uint8Array({ minLength: 120, maxLength: 400 }).map((array) => Buffer.from(array)),
);
const enumOf = (names: string[]) =>
  fc.oneof(fc.constantFrom(...names), fc.integer({ min: 0, max: names.length + 3 }));
const partial = <T extends Record<string, fc.Arbitrary<unknown>>>(fields: T) =>
  fc.record(fields, { requiredKeys: [] });

const rangeRequest = partial({
  key: bytes,
  range_end: bytes,
  limit: int64,
  revision: int64,
  sort_order: enumOf(['NONE', 'ASCEND', 'DESCEND']),
  sort_target: enumOf(['KEY', 'VERSION', 'CREATE', 'MOD', 'VALUE']),
  serializable: fc.boolean(),
  keys_only: fc.boolean(),
  count_only: fc.boolean(),
  min_mod_revision: int64,
  max_mod_revision: int64,
  min_create_revision: int64,
  max_create_revision: int64,
});
const putRequest = partial({
  key: bytes,
  value: bytes,
  lease: int64,
  prev_kv: fc.boolean(),
  ignore_value: fc.boolean(),
  ignore_lease: fc.boolean(),
});
const deleteRangeRequest = partial({ key: bytes, range_end: bytes, prev_kv: fc.boolean() });
const compare = fc
  .tuple(
    partial({
      result: enumOf(['EQUAL', 'GREATER', 'LESS', 'NOT_EQUAL']),
      target: enumOf(['VERSION', 'CREATE', 'MOD', 'VALUE', 'LEASE']),
      key: bytes,
      range_end: bytes,
    }),
    fc.oneof(
      fc.constant({}),
      fc.record({ version: int64 }),
      fc.record({ create_revision: int64 }),
      fc.record({ mod_revision: int64 }),
      fc.record({ value: bytes }),
      fc.record({ lease: int64 }),
    ),
  )
  .map(([fields, union]) => ({ ...fields, ...union }));

const { txnRequest } = fc.letrec<{ txnRequest: Record<string, unknown>; requestOp: Record<string, unknown> }>(
  (tie) => ({
    requestOp: fc.oneof(
      { depthSize: 'small', withCrossShrink: true },
      fc.constant({}),
      fc.record({ request_range: rangeRequest }),
      fc.record({ request_put: putRequest }),
      fc.record({ request_delete_range: deleteRangeRequest }),
      fc.record({ request_txn: tie('txnRequest') }),
    ),
    txnRequest: partial({
      compare: fc.array(compare, { maxLength: 3 }),
      success: fc.array(tie('requestOp'), { maxLength: 3 }),
      failure: fc.array(tie('requestOp'), { maxLength: 3 }),
    }),
  }),
);

const header = partial({ cluster_id: uint64, member_id: uint64, revision: int64Out, raft_term: uint64 });
const keyValue = partial({
  key: bytes,
  create_revision: int64Out,
  mod_revision: int64Out,
  version: int64Out,
  value: bytes,
  lease: int64Out,
});
const optionalKv = fc.oneof(fc.constant(undefined), fc.constant(null), keyValue);
const rangeResponse = partial({
  header,
  kvs: fc.array(keyValue, { maxLength: 4 }),
  more: fc.boolean(),
  count: int64Out,
});
const putResponse = partial({ header, prev_kv: optionalKv });
const deleteRangeResponse = partial({
  header,
  deleted: int64Out,
  prev_kvs: fc.array(keyValue, { maxLength: 4 }),
});
const { txnResponse } = fc.letrec<{
  txnResponse: Record<string, unknown>;
  responseOp: Record<string, unknown>;
}>((tie) => ({
  responseOp: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.record({ response_range: rangeResponse }),
    fc.record({ response_put: putResponse }),
    fc.record({ response_delete_range: deleteRangeResponse }),
    fc.record({ response_txn: tie('txnResponse') }),
  ),
  txnResponse: partial({
    header,
    succeeded: fc.boolean(),
    responses: fc.array(tie('responseOp'), { maxLength: 3 }),
  }),
}));
const event = partial({ type: fc.constantFrom('PUT', 'DELETE', 0, 1), kv: keyValue, prev_kv: optionalKv });
const watchResponse = partial({
  header,
  watch_id: int64Out,
  created: fc.boolean(),
  canceled: fc.boolean(),
  compact_revision: int64Out,
  cancel_reason: fc.oneof(
    fc.constant(''),
    fc.string({ maxLength: 20 }),
    fc.string({ minLength: 130, maxLength: 200 }),
  ),
  fragment: fc.boolean(),
  events: fc.array(event, { maxLength: 4 }),
});
const keepAliveRequest = partial({ ID: int64 });
const keepAliveResponse = partial({ header, ID: int64Out, TTL: int64Out });

// ---- unknown fields: one of each skippable wire type, under field numbers no message uses ----

const unknownField = fc.oneof(
  fc
    .tuple(fc.integer({ min: 100, max: 2000 }), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }))
    .map(([field, value]) => Buffer.concat([varint(BigInt(field) << 3n), varint(value)])),
  fc
    .tuple(fc.integer({ min: 100, max: 2000 }), fc.uint8Array({ minLength: 8, maxLength: 8 }))
    .map(([field, value]) => Buffer.concat([varint((BigInt(field) << 3n) | 1n), value])),
  fc
    .tuple(fc.integer({ min: 100, max: 2000 }), fc.uint8Array({ maxLength: 20 }))
    .map(([field, value]) =>
      Buffer.concat([varint((BigInt(field) << 3n) | 2n), varint(BigInt(value.length)), value]),
    ),
  fc
    .tuple(fc.integer({ min: 100, max: 2000 }), fc.uint8Array({ minLength: 4, maxLength: 4 }))
    .map(([field, value]) => Buffer.concat([varint((BigInt(field) << 3n) | 5n), value])),
);

function varint(value: bigint): Buffer {
  const out: number[] = [];
  let rest = value;
  while (rest >= 0x80n) {
    out.push(Number(rest & 0x7fn) | 0x80);
    rest >>= 7n;
  }
  out.push(Number(rest));
  return Buffer.from(out);
}

// ---- properties ----

interface RequestCase {
  service: EtcdServiceName;
  method: string;
  arbitrary: fc.Arbitrary<Record<string, unknown>>;
}

const requestCases: RequestCase[] = [
  { service: 'etcdserverpb.KV', method: 'Range', arbitrary: rangeRequest },
  { service: 'etcdserverpb.KV', method: 'Put', arbitrary: putRequest },
  { service: 'etcdserverpb.KV', method: 'DeleteRange', arbitrary: deleteRangeRequest },
  { service: 'etcdserverpb.KV', method: 'Txn', arbitrary: txnRequest },
  { service: 'etcdserverpb.Lease', method: 'LeaseKeepAlive', arbitrary: keepAliveRequest },
];

interface ResponseCase {
  service: EtcdServiceName;
  method: string;
  arbitrary: fc.Arbitrary<Record<string, unknown>>;
}

const responseCases: ResponseCase[] = [
  { service: 'etcdserverpb.KV', method: 'Range', arbitrary: rangeResponse },
  { service: 'etcdserverpb.KV', method: 'Put', arbitrary: putResponse },
  { service: 'etcdserverpb.KV', method: 'DeleteRange', arbitrary: deleteRangeResponse },
  { service: 'etcdserverpb.KV', method: 'Txn', arbitrary: txnResponse },
  { service: 'etcdserverpb.Watch', method: 'Watch', arbitrary: watchResponse },
  { service: 'etcdserverpb.Lease', method: 'LeaseKeepAlive', arbitrary: keepAliveResponse },
];

function outcome(run: () => unknown): { value: unknown } | { threw: true } {
  try {
    return { value: run() };
  } catch {
    return { threw: true };
  }
}

describe('fast request decoders read what protobufjs writes exactly as protobufjs reads it', () => {
  for (const { service, method, arbitrary } of requestCases) {
    it(`${method} request: same object as proto-loader, unknown fields skipped`, () => {
      const ref = reference(service, method);
      const ours = fast(service, method);
      assert.notEqual(ours.requestDeserialize, ref.requestDeserialize, 'fast decoder installed');
      fc.assert(
        fc.property(arbitrary, fc.array(unknownField, { maxLength: 3 }), (request, unknown) => {
          const encoded = ref.requestSerialize(request);
          assert.deepStrictEqual(ours.requestDeserialize(encoded), ref.requestDeserialize(encoded));
          const withUnknown = Buffer.concat([...unknown, encoded, ...unknown]);
          assert.deepStrictEqual(ours.requestDeserialize(withUnknown), ref.requestDeserialize(encoded));
        }),
        { numRuns: runs },
      );
    });

    // protobufjs reads a 64-bit varint cut short in its last 4 bytes as if complete; we refuse
    // it. So: whatever we accept, protobufjs reads the same; whatever protobufjs refuses, we do.
    it(`${method} request: a truncated message fails or reads the same as with protobufjs`, () => {
      const ref = reference(service, method);
      const ours = fast(service, method);
      fc.assert(
        fc.property(arbitrary, fc.nat(), (request, cut) => {
          const encoded = ref.requestSerialize(request);
          if (encoded.length === 0) return;
          const truncated = encoded.subarray(0, cut % encoded.length);
          const result = outcome(() => ours.requestDeserialize(truncated));
          if ('value' in result) assert.deepStrictEqual(result.value, ref.requestDeserialize(truncated));
        }),
        { numRuns: runs },
      );
    });

    it(`${method} request: random bytes either fail or read the same as with protobufjs`, () => {
      const ref = reference(service, method);
      const ours = fast(service, method);
      fc.assert(
        fc.property(fc.uint8Array({ maxLength: 64 }), (array) => {
          const garbage = Buffer.from(array);
          const result = outcome(() => ours.requestDeserialize(garbage));
          if ('value' in result) assert.deepStrictEqual(result.value, ref.requestDeserialize(garbage));
        }),
        { numRuns: runs },
      );
    });
  }
});

describe('fast response encoders write what protobufjs reads back as it reads its own', () => {
  for (const { service, method, arbitrary } of responseCases) {
    it(`${method} response: protobufjs decodes our bytes to the object it decodes from its own`, () => {
      const ref = reference(service, method);
      const ours = fast(service, method);
      assert.notEqual(ours.responseSerialize, ref.responseSerialize, 'fast encoder installed');
      fc.assert(
        fc.property(arbitrary, (response) => {
          const expected = ref.responseDeserialize(ref.responseSerialize(response));
          assert.deepStrictEqual(ref.responseDeserialize(ours.responseSerialize(response)), expected);
        }),
        { numRuns: runs },
      );
    });
  }
});

describe('fast codecs: edge cases', () => {
  it('every method in the fast table exists in its service', () => {
    for (const key of fastCodecMethods) {
      const [service, method] = key.split('/') as [EtcdServiceName, string];
      const definition: ServiceDefinition = serviceDefinition(service);
      assert.ok(definition[method], key);
    }
  });

  it('int64 extremes and defaults decode as proto-loader decimal strings', () => {
    const ref = reference('etcdserverpb.KV', 'Put');
    for (const lease of ['0', '-1', '9223372036854775807', '-9223372036854775808', '9007199254740993']) {
      const decoded = decodePutRequest(ref.requestSerialize({ lease }) as Buffer);
      assert.equal(decoded.lease, lease);
    }
    assert.deepStrictEqual(decodePutRequest(Buffer.alloc(0)), ref.requestDeserialize(Buffer.alloc(0)));
  });

  it('txns nested past protobufjs recursion limit are refused, and below it read the same', () => {
    const ref = reference('etcdserverpb.KV', 'Txn');
    // Each level is a TxnRequest whose success op is a RequestOp holding the next TxnRequest.
    const nested = (levels: number): Buffer => {
      let txn = Buffer.alloc(0);
      for (let level = 0; level < levels; level++) {
        const op = Buffer.concat([Buffer.from([0x22]), varint(BigInt(txn.length)), txn]);
        txn = Buffer.concat([Buffer.from([0x12]), varint(BigInt(op.length)), op]);
      }
      return txn;
    };
    assert.deepStrictEqual(decodeTxnRequest(nested(40)), ref.requestDeserialize(nested(40)));
    assert.throws(() => ref.requestDeserialize(nested(60)));
    assert.throws(() => decodeTxnRequest(nested(60)), ProtoDecodeError);
  });

  it('a known field with the wrong wire type is refused', () => {
    // RangeRequest.key (field 1) sent as a varint.
    assert.throws(() => decodeRangeRequest(Buffer.from([0x08, 0x01])), ProtoDecodeError);
    // LeaseKeepAliveRequest.ID (field 1) sent as fixed32.
    assert.throws(() => decodeLeaseKeepAliveRequest(Buffer.from([0x0d, 1, 2, 3, 4])), ProtoDecodeError);
  });

  it('invalid wire types 6 and 7 and an unterminated varint are refused', () => {
    assert.throws(() => decodePutRequest(Buffer.from([0x7e])), ProtoDecodeError);
    assert.throws(() => decodePutRequest(Buffer.from([0x7f])), ProtoDecodeError);
    assert.throws(() => decodePutRequest(Buffer.from([0x18, 0xff, 0xff])), ProtoDecodeError);
    assert.throws(() => decodePutRequest(Buffer.from([0x18, ...new Array(11).fill(0xff)])), ProtoDecodeError);
  });

  it('a value the fast encoder does not take falls back to protobufjs', () => {
    const ref = reference('etcdserverpb.KV', 'Put');
    const ours = fast('etcdserverpb.KV', 'Put');
    const odd = { header: { revision: 'not a number' } };
    assert.throws(() => encodePutResponse({ header: { revision: { low: 1, high: 0 } } }), ProtoShapeError);
    const base64Key = { header: {}, prev_kv: { key: 'a2V5', value: Buffer.from('v') } };
    assert.deepStrictEqual(
      ref.responseDeserialize(ours.responseSerialize(base64Key)),
      ref.responseDeserialize(ref.responseSerialize(base64Key)),
    );
    assert.deepStrictEqual(
      outcome(() => ours.responseSerialize(odd)),
      outcome(() => ref.responseSerialize(odd)),
    );
  });

  it('the scratch buffer is reset after a failed encode (the next encode is not polluted)', () => {
    const ref = reference('etcdserverpb.KV', 'Put');
    assert.throws(() => encodePutResponse({ header: { revision: 5 }, prev_kv: { key: 7 } }), ProtoShapeError);
    const response = { header: { revision: 9 } };
    assert.deepStrictEqual(
      ref.responseDeserialize(encodePutResponse(response)),
      ref.responseDeserialize(ref.responseSerialize(response)),
    );
  });
});
