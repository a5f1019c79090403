// Unit rules of the API layer: protocol sniffing, txn duplicate-key detection, watch fragment
// splitting, streaming JSON splitting, and gateway JSON encoding.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { classifyPreface, opensWithEmptySettings } from '../../src/api/api-server.js';
import { decodeJsonpb, readWholeJson } from '../../src/api/go-json.js';
import { RequestStreamReader } from '../../src/api/http-gateway.js';
import { messageToJson } from '../../src/api/json-codec.js';
import { checkTxn, defaultValidationLimits } from '../../src/api/validate.js';
import { splitEvents } from '../../src/api/watch-session.js';
import type { WireEvent } from '../../src/api/wire.js';
import type { RequestOp, TxnRequest } from '../../src/mvcc/types.js';
import { findProtoDir } from '../../src/wire/etcd-proto.js';

const b = (text: string) => Buffer.from(text);
const put = (key: string): RequestOp => ({ type: 'put', request: { key: b(key), value: b('v') } });
const del = (key: string, rangeEnd?: string): RequestOp => ({
  type: 'deleteRange',
  request: { key: b(key), rangeEnd: rangeEnd === undefined ? undefined : b(rangeEnd) },
});
const txn = (success: RequestOp[], failure: RequestOp[] = []): TxnRequest => ({
  compare: [],
  success,
  failure,
});
const isDuplicate = (request: TxnRequest) => {
  try {
    checkTxn(request, defaultValidationLimits);
    return false;
  } catch (error) {
    if ((error as Error).message === 'etcdserver: duplicate key given in txn request') return true;
    throw error;
  }
};

describe('connection sniffing', () => {
  it('the full HTTP/2 preface selects gRPC; a prefix of it stays undecided', () => {
    const preface = b('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
    assert.equal(classifyPreface(preface), 'http2');
    assert.equal(classifyPreface(Buffer.concat([preface, b('frames')])), 'http2');
    assert.equal(classifyPreface(preface.subarray(0, 5)), 'undecided');
    assert.equal(classifyPreface(b('P')), 'undecided');
  });

  it('HTTP/1 methods are recognised at the first differing byte', () => {
    assert.equal(classifyPreface(b('POST /v3/kv/range HTTP/1.1')), 'http1');
    assert.equal(classifyPreface(b('GET /health HTTP/1.1')), 'http1');
    assert.equal(classifyPreface(b('PO')), 'http1');
  });
});

describe('txn duplicate keys (etcd checkIntervals)', () => {
  it('the same key put twice in one branch is a duplicate; across branches it is not', () => {
    assert.equal(isDuplicate(txn([put('a'), put('a')])), true);
    assert.equal(isDuplicate(txn([put('a')], [put('a')])), false);
  });

  it('a put inside a deleted range of the same branch is a duplicate; outside it is not', () => {
    assert.equal(isDuplicate(txn([put('b'), del('a', 'c')])), true);
    assert.equal(isDuplicate(txn([put('c'), del('a', 'c')])), false);
    // etcd compares delete intervals as strings: a from-key delete ("\0" end) overlaps no put.
    assert.equal(isDuplicate(txn([put('zzz'), del('a', '\0')])), false);
    assert.equal(isDuplicate(txn([del('a'), del('a')])), false);
  });

  it('nested txns count with both of their branches', () => {
    const nested: RequestOp = { type: 'txn', request: txn([put('x')], [put('x')]) };
    assert.equal(isDuplicate(txn([nested])), false);
    assert.equal(isDuplicate(txn([put('x'), nested])), true);
  });

  it('a nested put may meet a delete of its sibling branch, and the outer txn branches are separate', () => {
    // Checked against etcd 3.4.23 (test/difftest regression cases).
    assert.equal(isDuplicate(txn([{ type: 'txn', request: txn([put('x')], [del('x')]) }])), false);
    assert.equal(isDuplicate(txn([del('k')], [put('k')])), false);
    const nestedPut: RequestOp = { type: 'txn', request: txn([put('k')]) };
    assert.equal(isDuplicate(txn([del('k')], [put('k'), nestedPut])), true);
  });

  it('empty compare keys are refused', () => {
    const request: TxnRequest = {
      compare: [{ target: 'version', version: 0, result: 'equal', key: b('') }],
      success: [],
      failure: [],
    };
    assert.throws(() => checkTxn(request, defaultValidationLimits), {
      message: 'etcdserver: key is not provided',
    });
  });
});

describe('watch fragments', () => {
  const event = (size: number): WireEvent => ({
    type: 'PUT',
    kv: {
      key: b('k'),
      value: Buffer.alloc(size),
      create_revision: 1,
      mod_revision: 1,
      version: 1,
      lease: '0',
    },
  });

  it('splits greedily under the byte bound and keeps every event once, in order', () => {
    const events = [event(100), event(100), event(100), event(500), event(10)];
    const pieces = splitEvents(events, 300);
    assert.deepEqual(pieces.flat(), events);
    assert.ok(pieces.length >= 3);
    assert.ok(pieces.every((p) => p.length > 0));
  });

  it('a lone oversized event travels alone rather than being dropped', () => {
    const pieces = splitEvents([event(1000)], 100);
    assert.equal(pieces.length, 1);
  });
});

describe('streaming JSON request reading', () => {
  const texts = (reader: RequestStreamReader, ended = false) =>
    [...reader.messages(ended)].map(({ node, source }) => source.subarray(node.start, node.end).toString());

  it('finds whole values across chunk boundaries, ignoring braces in strings', () => {
    const reader = new RequestStreamReader(1024);
    reader.push(Buffer.from('{"a":"}{"'));
    assert.deepEqual(texts(reader), []);
    reader.push(Buffer.from(',"b":{"c":1}}\n{"d'));
    assert.deepEqual(texts(reader), ['{"a":"}{","b":{"c":1}}']);
    reader.push(Buffer.from('":"\\"}"}'));
    assert.deepEqual(texts(reader), ['{"d":"\\"}"}']);
  });

  it('names garbage as Go does, and bounds an unfinished value', () => {
    const garbage = new RequestStreamReader(1024);
    garbage.push(Buffer.from('x{}'));
    assert.throws(() => texts(garbage), { message: "invalid character 'x' looking for beginning of value" });
    const long = new RequestStreamReader(8);
    long.push(Buffer.from('{"aaaaaaaaaaaa'));
    assert.throws(() => texts(long), { message: 'etcdserver: request is too large' });
    const truncated = new RequestStreamReader(1024);
    truncated.push(Buffer.from('{"a":1'));
    assert.deepEqual(texts(truncated), []);
    assert.throws(() => texts(truncated, true), { message: 'unexpected EOF' });
  });
});

describe('gateway JSON codec', () => {
  const decode = (text: string, type = 'etcdserverpb.RangeRequest') => {
    const bytes = Buffer.from(text);
    return decodeJsonpb(readWholeJson(bytes), type, bytes);
  };

  it('decodes base64 bytes and both name styles, camelCase winning as in jsonpb', () => {
    const decoded = decode(
      `{"key":"${b('k').toString('base64')}","rangeEnd":"AA==","limit":"5","keys_only":true,"keysOnly":false}`,
    );
    assert.deepEqual(decoded, { key: b('k'), range_end: Buffer.from([0]), limit: '5', keys_only: false });
    assert.deepEqual(decode('{"ID":9135039952044942139}', 'etcdserverpb.LeaseKeepAliveRequest'), {
      ID: '9135039952044942139',
    });
  });

  it("refuses what etcd's gateway refuses, in its words", () => {
    const cases: Array<[string, string]> = [
      ['{"key":"YQ==","limit":1.5}', 'json: cannot unmarshal number 1.5 into Go value of type int64'],
      ['{"key":"YQ==","limit":"x"}', "invalid character 'x' looking for beginning of value"],
      [
        '{"key":"YQ==","limit":"18446744073709551616"}',
        'json: cannot unmarshal number 18446744073709551616 into Go value of type int64',
      ],
      ['{"key":5}', 'json: cannot unmarshal number into Go value of type []uint8'],
      ['{"key":"YQ"}', 'illegal base64 data at input byte 0'],
      ['{"key":"YQ==","serializable":"true"}', 'json: cannot unmarshal string into Go value of type bool'],
      [
        '{"key":"YQ==","sort_order":"BAD"}',
        'unknown value "BAD" for enum etcdserverpb.RangeRequest_SortOrder',
      ],
      ['[]', 'json: cannot unmarshal array into Go value of type map[string]json.RawMessage'],
      ['{"key":"YQ=="', 'unexpected end of JSON input'],
      ['{"key" 1}', "invalid character '1' after object key"],
      ['{"key":tru}', "invalid character '}' in literal true (expecting 'e')"],
    ];
    for (const [text, message] of cases) assert.throws(() => decode(text), { message }, text);
  });

  it('encodes int64 as strings, bytes as base64 and omits zero values and zero enums', () => {
    const json = messageToJson(
      {
        header: { cluster_id: '1', member_id: '2', revision: 3, raft_term: '0' },
        events: [
          { type: 'PUT', kv: { key: b('k'), value: b(''), version: 1, lease: '0' } },
          { type: 'DELETE', kv: { key: b('k') } },
        ],
        watch_id: 0,
        created: false,
      },
      'etcdserverpb.WatchResponse',
    );
    assert.deepEqual(json, {
      header: { cluster_id: '1', member_id: '2', revision: '3' },
      events: [{ kv: { key: 'aw==', version: '1' } }, { type: 'DELETE', kv: { key: 'aw==' } }],
    });
  });
});

describe('proto location', () => {
  it('walks up from the module to the package root holding proto/', () => {
    assert.match(findProtoDir(), /proto$/);
    assert.throws(() => findProtoDir('file:///'), /cannot find the proto/);
  });
});

it('only connections opening with an empty SETTINGS frame (grpc-go) take the authority repair path', () => {
  const preface = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
  const emptySettings = Buffer.from('000000040000000000', 'hex');
  const nodeSettings = Buffer.from('000006040000000000' + '00040000ffff', 'hex');
  assert.equal(opensWithEmptySettings(Buffer.concat([preface, emptySettings])), true);
  assert.equal(opensWithEmptySettings(Buffer.concat([preface, nodeSettings])), false);
  assert.equal(opensWithEmptySettings(preface), false);
});
