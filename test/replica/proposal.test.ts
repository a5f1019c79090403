import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import type { Compare, RequestOp, TxnRequest } from '../../src/mvcc/types.js';
import { decodeProposal, encodeProposal, type Proposal, type ServerOp } from '../../src/replica/proposal.js';
import { DecodeError } from '../../src/util/binary.js';

const bytes = fc.uint8Array({ maxLength: 40 }).map((b) => new Uint8Array(b));
const rev = fc.nat({ max: Number.MAX_SAFE_INTEGER });
/** Range and compare revisions keep their sign as etcd does (negative ones mean something there). */
const signedRev = fc.oneof(rev, fc.integer({ min: -Number.MAX_SAFE_INTEGER, max: -1 }));
const lease = fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n });

const put = fc.record({
  key: bytes,
  value: bytes,
  lease,
  prevKv: fc.boolean(),
  ignoreValue: fc.boolean(),
  ignoreLease: fc.boolean(),
});
const del = fc.record({ key: bytes, rangeEnd: bytes, prevKv: fc.boolean() });
const range = fc.record({
  key: bytes,
  rangeEnd: bytes,
  limit: rev,
  revision: signedRev,
  sortOrder: fc.constantFrom('none' as const, 'ascend' as const, 'descend' as const),
  sortTarget: fc.constantFrom(
    'key' as const,
    'version' as const,
    'create' as const,
    'mod' as const,
    'value' as const,
  ),
  serializable: fc.boolean(),
  keysOnly: fc.boolean(),
  countOnly: fc.boolean(),
  minModRevision: signedRev,
  maxModRevision: signedRev,
  minCreateRevision: signedRev,
  maxCreateRevision: signedRev,
});
const result = fc.constantFrom('equal' as const, 'greater' as const, 'less' as const, 'not-equal' as const);
const compare: fc.Arbitrary<Compare> = fc.oneof(
  fc.record({
    result,
    key: bytes,
    rangeEnd: bytes,
    target: fc.constant('version' as const),
    version: signedRev,
  }),
  fc.record({
    result,
    key: bytes,
    rangeEnd: bytes,
    target: fc.constant('create' as const),
    createRevision: signedRev,
  }),
  fc.record({
    result,
    key: bytes,
    rangeEnd: bytes,
    target: fc.constant('mod' as const),
    modRevision: signedRev,
  }),
  fc.record({ result, key: bytes, rangeEnd: bytes, target: fc.constant('value' as const), value: bytes }),
  fc.record({ result, key: bytes, rangeEnd: bytes, target: fc.constant('lease' as const), lease }),
);
const { txn } = fc.letrec<{ txn: TxnRequest; op: RequestOp }>((tie) => ({
  txn: fc.record({
    compare: fc.array(compare, { maxLength: 3 }),
    success: fc.array(tie('op'), { maxLength: 3 }),
    failure: fc.array(tie('op'), { maxLength: 3 }),
  }),
  op: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.record({ type: fc.constant('range' as const), request: range }),
    fc.record({ type: fc.constant('put' as const), request: put }),
    fc.record({ type: fc.constant('deleteRange' as const), request: del }),
    fc.record({ type: fc.constant('txn' as const), request: tie('txn') as fc.Arbitrary<TxnRequest> }),
  ),
}));
const urls = fc.array(fc.webUrl(), { maxLength: 3 });
const serverOp: fc.Arbitrary<ServerOp> = fc.oneof(
  fc.constant({ type: 'noop' as const }),
  fc.record({ type: fc.constant('put' as const), request: put }),
  fc.record({ type: fc.constant('deleteRange' as const), request: del }),
  fc.record({ type: fc.constant('txn' as const), request: txn }),
  fc.record({
    type: fc.constant('compact' as const),
    request: fc.record({ revision: signedRev, physical: fc.boolean() }),
  }),
  fc.record({
    type: fc.constant('leaseGrant' as const),
    request: fc.record({ id: lease, ttlSeconds: fc.nat() }),
  }),
  fc.record({ type: fc.constant('leaseRevoke' as const), request: fc.record({ id: lease }) }),
  fc.record({
    type: fc.constant('leaseCheckpoint' as const),
    request: fc.record({ id: lease, remainingTtlSeconds: fc.nat() }),
  }),
  fc.record({
    type: fc.constant('publishMember' as const),
    memberId: rev,
    name: fc.string(),
    clientUrls: urls,
  }),
  fc.record({ type: fc.constant('updateMember' as const), memberId: rev, peerUrls: urls }),
  fc.record({
    type: fc.constant('alarm' as const),
    action: fc.constantFrom('activate' as const, 'deactivate' as const),
    memberId: rev,
    alarm: fc.constantFrom('NOSPACE' as const, 'CORRUPT' as const),
  }),
  fc.record({
    type: fc.constant('encryptionKey' as const),
    keyId: fc.stringMatching(/^[A-Za-z0-9._-]{1,32}$/),
  }),
);

test('every proposal survives an encode/decode round trip unchanged', () => {
  fc.assert(
    fc.property(fc.record({ proposer: rev, requestId: rev, op: serverOp }), (proposal: Proposal) => {
      assert.deepEqual(decodeProposal(encodeProposal(proposal)), structuredClone(proposal));
    }),
    { numRuns: 500 },
  );
});

test('truncated or padded proposals are rejected, never half-decoded', () => {
  const data = encodeProposal({
    proposer: 3,
    requestId: 7,
    op: { type: 'put', request: { key: new Uint8Array([1, 2]), value: new Uint8Array([3]), lease: 0n } },
  });
  for (let cut = 0; cut < data.length; cut++) {
    assert.throws(() => decodeProposal(data.subarray(0, cut)), DecodeError);
  }
  const padded = new Uint8Array(data.length + 1);
  padded.set(data);
  assert.throws(() => decodeProposal(padded), DecodeError);
});

test('a compare operand beyond 2^53 (the wire allows int64) is carried as 2^53 - 1, which no revision or version reaches', () => {
  const key = new Uint8Array([1]);
  const huge = 2 ** 60;
  const compare: Compare[] = [
    { result: 'less', key, target: 'version', version: huge },
    { result: 'greater', key, target: 'create', createRevision: huge },
    { result: 'equal', key, target: 'mod', modRevision: huge },
  ];
  const decoded = decodeProposal(
    encodeProposal({
      proposer: 1,
      requestId: 2,
      op: { type: 'txn', request: { compare, success: [], failure: [] } },
    }),
  );
  assert.ok(decoded.op.type === 'txn');
  assert.deepEqual(
    decoded.op.request.compare.map((c) =>
      c.target === 'version'
        ? c.version
        : c.target === 'create'
          ? c.createRevision
          : c.target === 'mod'
            ? c.modRevision
            : undefined,
    ),
    [Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
  );
});
