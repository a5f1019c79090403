// etcd's decoder errors, reproduced byte for byte: each row is an answer real etcd 3.4.23 gave
// ("grpc: error unmarshalling request: <text>"), recorded with test/difftest; the difftest
// regression cases send a few of them to etcd itself.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { goCamelCase, gogoDecodeError, withoutUnknownFields } from '../../src/wire/proto-check.js';

const rows: readonly [string, string, string | undefined][] = [
  ['etcdserverpb.RangeRequest', 'ff', 'unexpected EOF'],
  // linearizable is etcd 3.5's: to etcd 3.4 an unknown field, whatever its wire type.
  ['etcdserverpb.MemberListRequest', '0a22b1b826f4', 'unexpected EOF'],
  ['etcdserverpb.MemberListRequest', '0a00', undefined],
  ['etcdserverpb.RangeRequest', '0805', 'proto: wrong wireType = 0 for field Key'],
  ['etcdserverpb.RangeRequest', '0a01610c', 'proto: RangeRequest: wiretype end group for non-group'],
  ['etcdserverpb.RangeRequest', '0a016100', 'proto: RangeRequest: illegal tag 0 (wire type 0)'],
  ['etcdserverpb.RangeRequest', '0a0161fb0100', 'unexpected EOF'],
  ['etcdserverpb.RangeRequest', '0a01617801', undefined],
  ['etcdserverpb.RangeRequest', '0a0161ffffffffffffffffffff01', 'proto: integer overflow'],
  [
    'etcdserverpb.RangeRequest',
    '0a0161a206ffffffffffffffffff01',
    'proto: negative length found during unmarshaling',
  ],
  ['etcdserverpb.RangeRequest', '0a01619b06a2060100a4061a', 'proto: wrong wireType = 2 for field Limit'],
  ['etcdserverpb.TxnRequest', '0a050a03a20601', 'proto: wrong wireType = 2 for field Result'],
  ['etcdserverpb.TxnRequest', '1204120208011a00', 'proto: wrong wireType = 0 for field Key'],
  ['etcdserverpb.LeaseGrantRequest', '0a05', 'proto: wrong wireType = 2 for field TTL'],
  ['etcdserverpb.RangeRequest', '0a0161a90601020304', 'unexpected EOF'],
  ['etcdserverpb.RangeRequest', '0a0161ad06010203', 'unexpected EOF'],
  ['etcdserverpb.RangeRequest', '0a01611e', 'proto: wrong wireType = 6 for field Limit'],
  ['etcdserverpb.MemberListRequest', '02', 'proto: MemberListRequest: illegal tag 0 (wire type 2)'],
  ['etcdserverpb.WatchRequest', '0a020801', 'proto: wrong wireType = 0 for field Key'],
  ['etcdserverpb.WatchRequest', '0a00', undefined],
];

describe("etcd's (gogo) decoder errors", () => {
  it('every recorded answer of etcd 3.4.23', () => {
    for (const [type, hex, expected] of rows) {
      assert.equal(gogoDecodeError(type, Buffer.from(hex, 'hex')), expected, `${type} ${hex}`);
    }
  });

  it('packed and unpacked repeated enums; a packed run may not end past the input', () => {
    // WatchRequest{create_request{filters: [NOPUT, NODELETE]}}, unpacked and packed.
    assert.equal(gogoDecodeError('etcdserverpb.WatchRequest', Buffer.from('0a0428002801', 'hex')), undefined);
    assert.equal(gogoDecodeError('etcdserverpb.WatchRequest', Buffer.from('0a042a020001', 'hex')), undefined);
    assert.equal(
      gogoDecodeError('etcdserverpb.WatchRequest', Buffer.from('0a032a0500', 'hex')),
      'unexpected EOF',
    );
  });

  it("Go field names follow gogo's CamelCase", () => {
    assert.equal(goCamelCase('range_end'), 'RangeEnd');
    assert.equal(goCamelCase('remaining_TTL'), 'Remaining_TTL');
    assert.equal(goCamelCase('memberID'), 'MemberID');
    assert.equal(goCamelCase('_my_field_name_2'), 'XMyFieldName_2');
  });
});

describe('withoutUnknownFields', () => {
  it('drops unknown fields at every depth, keeps known ones byte for byte', () => {
    const hex = (typeName: string, input: string) =>
      withoutUnknownFields(typeName, Buffer.from(input, 'hex')).toString('hex');
    // LeaseTimeToLive with only an unknown fixed32 field under a 7-byte tag.
    assert.equal(hex('etcdserverpb.LeaseTimeToLiveRequest', 'bd85c6a49dcd62c91a4dc0'), '');
    // Range key "a" then the same unknown field.
    assert.equal(hex('etcdserverpb.RangeRequest', '0a0161bd85c6a49dcd62c91a4dc0'), '0a0161');
    // A txn whose success op holds a put with an unknown varint field (number 15): the embedded
    // messages' lengths shrink with them.
    const put = '0a01611201627801';
    const op = `12${(put.length / 2).toString(16).padStart(2, '0')}${put}`;
    const txn = `12${(op.length / 2).toString(16).padStart(2, '0')}${op}`;
    assert.equal(hex('etcdserverpb.TxnRequest', txn), '120812060a0161120162');
  });
});
