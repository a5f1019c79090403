// Unit rules of the API layer: protocol sniffing, txn duplicate-key detection, watch fragment
// splitting, streaming JSON splitting, and gateway JSON encoding.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { classifyPreface, opensWithEmptySettings } from '../../src/api/api-server.js';
import { EtcdError } from '../../src/api/errors.js';
import { JsonObjectSplitter } from '../../src/api/http-gateway.js';
import { jsonToMessage, messageToJson } from '../../src/api/json-codec.js';
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
    if (error instanceof EtcdError && error.code === 'duplicateKey') return true;
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
    assert.equal(isDuplicate(txn([put('zzz'), del('a', '\0')])), true);
    assert.equal(isDuplicate(txn([del('a'), del('a')])), false);
  });

  it('nested txns count with both of their branches', () => {
    const nested: RequestOp = { type: 'txn', request: txn([put('x')], [put('x')]) };
    assert.equal(isDuplicate(txn([nested])), false);
    assert.equal(isDuplicate(txn([put('x'), nested])), true);
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

describe('streaming JSON request splitting', () => {
  it('finds whole objects across chunk boundaries, ignoring braces in strings', () => {
    const splitter = new JsonObjectSplitter(1024);
    assert.deepEqual(splitter.push('{"a":"}{"'), []);
    assert.deepEqual(splitter.push(',"b":{"c":1}}\n{"d'), ['{"a":"}{","b":{"c":1}}']);
    assert.deepEqual(splitter.push('":"\\"}"}'), ['{"d":"\\"}"}']);
  });

  it('refuses garbage between objects and over-long objects', () => {
    assert.throws(() => new JsonObjectSplitter(1024).push('x{}'), /unexpected/);
    assert.throws(() => new JsonObjectSplitter(8).push('{"aaaaaaaaaaaa'), {
      message: 'etcdserver: request is too large',
    });
  });
});

describe('gateway JSON codec', () => {
  it('decodes base64 bytes and both name styles; rejects non-integer int64', () => {
    const decoded = jsonToMessage(
      { key: b('k').toString('base64'), rangeEnd: 'AA==', limit: '5' },
      'etcdserverpb.RangeRequest',
    );
    assert.deepEqual(decoded, { key: b('k'), range_end: Buffer.from([0]), limit: '5' });
    assert.throws(() => jsonToMessage({ limit: '1.5' }, 'etcdserverpb.RangeRequest'), /integer/);
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
