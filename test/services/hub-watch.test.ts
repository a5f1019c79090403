// When a watch fan-out is drained relative to the HTTP/2 writes of the turn that committed: a put's
// unary response leaves in two writes (headers and data next turn, the trailers that complete
// the call the turn after); a drain in between would hold the writer's put back by the fan-out.

import assert from 'node:assert/strict';
import { connect, createServer, type ServerHttp2Stream } from 'node:http2';
import { describe, it } from 'node:test';
import { Keyspace } from '../../src/mvcc/keyspace.js';
import { watchFromHub } from '../../src/services/hub-watch.js';
import { withTempDir } from '../storage/helpers.js';

/** What the gRPC server does for a unary response: headers, one message, trailers on request. */
function respondUnary(stream: ServerHttp2Stream): void {
  stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
  stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
  stream.end(Buffer.from([0, 0, 0, 0, 0]));
}

describe('watch drains from the hub', () => {
  it('run after the unary response written in the same turn as the commit has completed', () =>
    withTempDir(async (dir) => {
      const keyspace = Keyspace.open(dir, { noSync: true });
      const order: string[] = [];
      const watcher = watchFromHub(
        keyspace.watchHub,
        { key: Buffer.from('k'), rangeEnd: new Uint8Array(0), startRevision: 0, prevKv: false, filters: [] },
        { onEvents: () => order.push('fan-out drained'), onCompacted: () => {} },
      );
      const server = createServer();
      server.on('stream', (stream) => {
        stream.on('close', () => order.push('response completed'));
        stream.resume();
        // As the raft loop does: apply (which readies the watchers) and answer in one immediate.
        stream.on('end', () =>
          setImmediate(() => {
            keyspace.applyBatch([
              { index: 1, op: { type: 'put', request: { key: Buffer.from('k'), value: Buffer.from('v') } } },
            ]);
            respondUnary(stream);
          }),
        );
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      const { port } = server.address() as { port: number };
      const client = connect(`http://127.0.0.1:${port}`);
      try {
        const request = client.request({
          ':method': 'POST',
          ':path': '/t.T/Put',
          'content-type': 'application/grpc',
        });
        request.resume();
        const closed = new Promise((resolve) => request.on('close', resolve));
        request.end(Buffer.from([0, 0, 0, 0, 0]));
        await closed;
        while (order.length < 2) await new Promise((resolve) => setImmediate(resolve));
        assert.deepEqual(order, ['response completed', 'fan-out drained']);
      } finally {
        watcher.cancel();
        client.close();
        await new Promise((resolve) => server.close(resolve));
        await keyspace.close();
      }
    }));
});
