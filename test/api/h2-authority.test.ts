import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  AuthorityRewriter,
  encodeLiterals,
  fixAuthority,
  HpackDecoder,
  HpackError,
  huffmanDecode,
} from '../../src/api/h2-authority.js';

// "www.example.com" Huffman-coded, from RFC 7541 appendix C.4.1.
const EXAMPLE_HUFFMAN = Buffer.from('f1e3c2e5f23a6ba0ab90f4ff', 'hex');

test('Huffman strings decode as RFC 7541 shows', () => {
  assert.equal(huffmanDecode(EXAMPLE_HUFFMAN).toString(), 'www.example.com');
  assert.throws(() => huffmanDecode(Buffer.from([0x00])), HpackError, 'padding must be ones');
});

test('header blocks decode with the static and dynamic tables (RFC 7541 C.4 requests)', () => {
  const decoder = new HpackDecoder();
  const first = decoder.decode(Buffer.from('828684418cf1e3c2e5f23a6ba0ab90f4ff', 'hex'));
  assert.deepEqual(first, [
    [':method', 'GET'],
    [':scheme', 'http'],
    [':path', '/'],
    [':authority', 'www.example.com'],
  ]);
  // The second request refers to the authority inserted into the dynamic table by the first.
  const second = decoder.decode(Buffer.from('828684be5886a8eb10649cbf', 'hex'));
  assert.deepEqual(second.at(-2), [':authority', 'www.example.com']);
  assert.deepEqual(second.at(-1), ['cache-control', 'no-cache']);
});

test('literals re-encode to the same fields and never index', () => {
  const fields: [string, string][] = [
    [':authority', '127.0.0.1:2379'],
    ['content-type', 'application/grpc'],
  ];
  const encoded = encodeLiterals(fields);
  assert.deepEqual(new HpackDecoder().decode(encoded), fields);
  assert.equal(encoded[0], 0, 'literal without indexing, new name');
});

test('a scheme in :authority is stripped, other authorities are left alone', () => {
  assert.equal(fixAuthority('http://127.0.0.1:2379'), '127.0.0.1:2379');
  assert.equal(fixAuthority('https://host:1/'), 'host:1');
  assert.equal(fixAuthority('127.0.0.1:2379'), '127.0.0.1:2379');
});

function frame(type: number, flags: number, streamId: number, payload: Buffer): Buffer {
  const header = Buffer.alloc(9);
  header.writeUIntBE(payload.length, 0, 3);
  header[3] = type;
  header[4] = flags;
  header.writeUInt32BE(streamId, 5);
  return Buffer.concat([header, payload]);
}

test('a connection whose first authority is fine passes byte for byte, HPACK state intact', () => {
  const preface = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
  // RFC 7541 C.4: the second block indexes the dynamic entry the first one inserted.
  const first = frame(0x1, 0x4, 1, Buffer.from('828684418cf1e3c2e5f23a6ba0ab90f4ff', 'hex'));
  const second = frame(0x1, 0x4, 3, Buffer.from('828684be5886a8eb10649cbf', 'hex'));
  const input = Buffer.concat([preface, first, second]);
  const rewriter = new AuthorityRewriter();
  const output = Buffer.concat([rewriter.push(input.subarray(0, 30)), rewriter.push(input.subarray(30))]);
  assert.equal(rewriter.firstAuthorityNeedsFix, false);
  assert.deepEqual(output, input);
});

test('the rewriter repairs the authority of a header block split across CONTINUATION frames', () => {
  const preface = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
  const settings = frame(0x4, 0, 0, Buffer.alloc(0));
  const block = encodeLiterals([
    [':method', 'POST'],
    [':authority', 'http://127.0.0.1:2379'],
    [':path', '/etcdserverpb.Maintenance/Status'],
  ]);
  const headers = frame(0x1, 0x1, 1, block.subarray(0, 10));
  const continuation = frame(0x9, 0x4, 1, block.subarray(10));
  const data = frame(0x0, 0x1, 1, Buffer.from('abc'));
  const input = Buffer.concat([preface, settings, headers, continuation, data]);
  const rewriter = new AuthorityRewriter();
  // Feed byte by byte: frame boundaries must not depend on chunking.
  const output = Buffer.concat([...input].map((byte) => rewriter.push(Buffer.from([byte]))));
  assert.equal(rewriter.firstAuthorityNeedsFix, true);
  assert.deepEqual(output.subarray(0, 24), preface);
  const rewrittenHeaders = output.subarray(24 + settings.length);
  const length = rewrittenHeaders.readUIntBE(0, 3);
  assert.equal(rewrittenHeaders[3], 0x1);
  assert.equal(rewrittenHeaders[4], 0x5, 'END_STREAM kept, END_HEADERS set');
  const fields = new HpackDecoder().decode(rewrittenHeaders.subarray(9, 9 + length));
  assert.deepEqual(fields[1], [':authority', '127.0.0.1:2379']);
  assert.deepEqual(rewrittenHeaders.subarray(9 + length), data, 'other frames pass unchanged');
});

test('a connection whose first authority is fine reaches the server byte for byte', () => {
  const preface = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
  // RFC 7541 C.4: the first block indexes its authority, the second refers to that entry. Were
  // the first re-encoded as literals, the server's table would lack it and the second would fail.
  const first = frame(0x1, 0x5, 1, Buffer.from('828684418cf1e3c2e5f23a6ba0ab90f4ff', 'hex'));
  const second = frame(0x1, 0x5, 3, Buffer.from('828684be5886a8eb10649cbf', 'hex'));
  const input = Buffer.concat([preface, first, second]);
  const rewriter = new AuthorityRewriter();
  const output = Buffer.concat([...input].map((byte) => rewriter.push(Buffer.from([byte]))));
  assert.equal(rewriter.firstAuthorityNeedsFix, false);
  assert.deepEqual(output, input);
});
