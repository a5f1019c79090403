// The node:http2 gRPC server's own rules: routing, framing limits, deadlines, cancellation,
// streaming statuses, backpressure and graceful close. grpc-js clients check what real clients
// see; a raw node:http2 client sends what grpc-js never would (compressed flags, split prefixes).

import assert from 'node:assert/strict';
import { type ClientHttp2Session, connect, type IncomingHttpHeaders } from 'node:http2';
import { afterEach, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import * as grpc from '@grpc/grpc-js';
import { ApiRequestError, toWireStatus } from '../../src/api/errors.js';
import {
  encodeGrpcMessage,
  H2GrpcServer,
  type H2Method,
  type H2ServerCall,
  parseGrpcTimeoutMs,
} from '../../src/api/h2-grpc.js';
import type { RawBytesMethod } from './harness.js';

const receiveMessageBytesMax = 1024;
const waitMs = 5000;

function method(path: string, requestStream: boolean, responseStream: boolean): H2Method {
  return {
    path,
    requestStream,
    responseStream,
    requestDeserialize: (bytes: Buffer) => Buffer.from(bytes),
    responseSerialize: (message: Buffer) => message,
  };
}

const echo = method('/test.T/Echo', false, false);
const slow = method('/test.T/Slow', false, false);
const chat = method('/test.T/Chat', true, true);
const feed = method('/test.T/Feed', false, true);
const paths = [echo, slow, chat, feed, method('/test.T/Missing', false, false)];

interface Fixture {
  server: H2GrpcServer;
  port: number;
  echoCalls: Buffer[];
  slowSignals: AbortSignal[];
  /** Settles the pending Slow calls. */
  releaseSlow: () => void;
  feedCalls: H2ServerCall[];
  chatScript: (call: H2ServerCall) => void;
}

async function startFixture(): Promise<Fixture> {
  const server = new H2GrpcServer({ receiveMessageBytesMax, toStatus: toWireStatus });
  let release: () => void = () => {};
  let released = new Promise<void>((resolve) => {
    release = resolve;
  });
  const fixture: Fixture = {
    server,
    port: 0,
    echoCalls: [],
    slowSignals: [],
    releaseSlow: () => {
      release();
      released = new Promise<void>((resolve) => {
        release = resolve;
      });
    },
    feedCalls: [],
    chatScript: () => {},
  };
  server.addUnary(echo, async (request: Buffer) => {
    fixture.echoCalls.push(request);
    if (request.toString() === 'fail')
      throw new ApiRequestError(grpc.status.FAILED_PRECONDITION, 'naïve 100% ✓');
    return request;
  });
  server.addUnary(slow, async (request: Buffer, signal: AbortSignal) => {
    fixture.slowSignals.push(signal);
    await released;
    return request;
  });
  server.addStreaming(chat, (call) => fixture.chatScript(call));
  server.addStreaming(feed, (call) => {
    fixture.feedCalls.push(call);
  });
  fixture.port = await server.listen(0, '127.0.0.1');
  return fixture;
}

function bytesClient(port: number): grpc.Client {
  const definition: Record<string, grpc.MethodDefinition<Buffer, Buffer>> = {};
  for (const m of paths) {
    definition[m.path] = {
      path: m.path,
      requestStream: m.requestStream,
      responseStream: m.responseStream,
      requestSerialize: (bytes: Buffer) => bytes,
      requestDeserialize: (bytes: Buffer) => bytes,
      responseSerialize: (bytes: Buffer) => bytes,
      responseDeserialize: (bytes: Buffer) => bytes,
    };
  }
  const Ctor = grpc.makeGenericClientConstructor(definition, 'H2Test');
  return new Ctor(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
}

function unary(
  client: grpc.Client,
  path: string,
  body: Buffer,
  options: grpc.CallOptions = {},
): { call: grpc.ClientUnaryCall; result: Promise<Buffer> } {
  let call: grpc.ClientUnaryCall | undefined;
  const result = new Promise<Buffer>((resolve, reject) => {
    const fn = (client as unknown as Record<string, RawBytesMethod>)[path]!;
    call = fn.call(client, body, new grpc.Metadata(), options, (error, response) =>
      error ? reject(error) : resolve(response!),
    );
  });
  return { call: call!, result };
}

function frame(body: Buffer, flag = 0): Buffer {
  const prefix = Buffer.alloc(5);
  prefix[0] = flag;
  prefix.writeUInt32BE(body.length, 1);
  return Buffer.concat([prefix, body]);
}

interface RawOutcome {
  headers: IncomingHttpHeaders;
  trailers: IncomingHttpHeaders;
  data: Buffer;
}

/** One request over a raw HTTP/2 client; each chunk goes out in its own turn (its own DATA frame). */
async function rawRequest(
  session: ClientHttp2Session,
  path: string,
  chunks: Buffer[],
  extraHeaders: Record<string, string> = {},
): Promise<RawOutcome> {
  const request = session.request({
    ':method': 'POST',
    ':path': path,
    'content-type': 'application/grpc',
    te: 'trailers',
    ...extraHeaders,
  });
  const outcome: RawOutcome = { headers: {}, trailers: {}, data: Buffer.alloc(0) };
  const parts: Buffer[] = [];
  request.on('response', (headers) => {
    outcome.headers = headers;
  });
  request.on('trailers', (trailers) => {
    outcome.trailers = trailers;
  });
  request.on('data', (chunk: Buffer) => parts.push(chunk));
  const closed = new Promise<void>((resolve) => request.on('close', () => resolve()));
  request.on('error', () => {});
  for (const chunk of chunks) {
    if (request.destroyed) break;
    request.write(chunk);
    await sleep(5);
  }
  if (!request.destroyed) request.end();
  await closed;
  outcome.data = Buffer.concat(parts);
  return outcome;
}

/** grpc-status of a response: from the trailers, or from the headers of a trailers-only one. */
function statusOf(outcome: RawOutcome): number {
  return Number(outcome.trailers['grpc-status'] ?? outcome.headers['grpc-status']);
}

async function waitFor(condition: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + waitMs;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

describe('h2 gRPC server', () => {
  let fixture: Fixture | undefined;
  let client: grpc.Client | undefined;
  let session: ClientHttp2Session | undefined;

  const start = async () => {
    fixture = await startFixture();
    client = bytesClient(fixture.port);
    session = connect(`http://127.0.0.1:${fixture.port}`);
    session.on('error', () => {});
    return fixture;
  };

  /** A bidi call to the chat method from the grpc-js client. */
  const openChatStream = () =>
    (client as unknown as Record<string, () => grpc.ClientDuplexStream<Buffer, Buffer>>)[chat.path]!.call(
      client,
    );

  /** A chat call that has sent one message; `cancelled()` tells whether its server side saw onCancel. */
  const openChat = async (f: Fixture) => {
    let cancelled = false;
    let started = false;
    f.chatScript = (call) => {
      started = true;
      call.onCancel = () => {
        cancelled = true;
      };
    };
    const stream = openChatStream();
    stream.on('error', () => {});
    stream.write(Buffer.from('x'));
    // The server must hold the call before a test closes it (a fixed sleep loses on a busy machine).
    for (const deadline = Date.now() + 10_000; !started; await sleep(5))
      if (Date.now() > deadline) throw new Error('the server never saw the chat call');
    return { stream, cancelled: () => cancelled };
  };

  afterEach(async () => {
    client?.close();
    session?.destroy();
    fixture?.releaseSlow();
    await fixture?.server.close(100);
    client = undefined;
    session = undefined;
    fixture = undefined;
  });

  it('a unary call gets its response and status OK', async () => {
    const f = await start();
    const response = await unary(client!, echo.path, Buffer.from('hello')).result;
    assert.equal(response.toString(), 'hello');
    assert.equal(f.echoCalls.length, 1);
  });

  it('an unknown method is answered UNIMPLEMENTED with a trailers-only response', async () => {
    await start();
    await assert.rejects(unary(client!, '/test.T/Missing', Buffer.from('x')).result, {
      code: grpc.status.UNIMPLEMENTED,
      details: 'The server does not implement the method /test.T/Missing',
    });
    const raw = await rawRequest(session!, '/nope.N/Nothing', [frame(Buffer.from('x'))]);
    assert.equal(raw.headers[':status'], 200);
    assert.equal(raw.headers['grpc-status'], String(grpc.status.UNIMPLEMENTED), 'status in the only HEADERS');
    assert.deepEqual(raw.trailers, {});
  });

  it('a request without a gRPC content-type is refused with HTTP 415', async () => {
    await start();
    const raw = await rawRequest(session!, echo.path, [frame(Buffer.from('x'))], {
      'content-type': 'text/plain',
    });
    assert.equal(raw.headers[':status'], 415);
    assert.equal(fixture!.echoCalls.length, 0);
  });

  it('a message over the receive limit is RESOURCE_EXHAUSTED and never reaches the handler', async () => {
    const f = await start();
    await assert.rejects(unary(client!, echo.path, Buffer.alloc(receiveMessageBytesMax + 1)).result, {
      code: grpc.status.RESOURCE_EXHAUSTED,
      details: `grpc: received message larger than max (${receiveMessageBytesMax + 1} vs. ${receiveMessageBytesMax})`,
    });
    assert.equal(f.echoCalls.length, 0);
    const atLimit = await unary(client!, echo.path, Buffer.alloc(receiveMessageBytesMax, 7)).result;
    assert.equal(atLimit.length, receiveMessageBytesMax);
  });

  it('a message with the compressed flag, or a grpc-encoding we lack, is UNIMPLEMENTED', async () => {
    const f = await start();
    const flagged = await rawRequest(session!, echo.path, [frame(Buffer.from('x'), 1)]);
    assert.equal(statusOf(flagged), grpc.status.UNIMPLEMENTED);
    const gzip = await rawRequest(session!, echo.path, [frame(Buffer.from('x'))], {
      'grpc-encoding': 'gzip',
    });
    assert.equal(statusOf(gzip), grpc.status.UNIMPLEMENTED);
    assert.match(decodeURIComponent(String(gzip.headers['grpc-message'])), /Decompressor is not installed/);
    assert.equal(f.echoCalls.length, 0);
  });

  it('a message split across DATA frames, prefix included, is reassembled', async () => {
    const f = await start();
    const whole = frame(Buffer.from('reassembled'));
    const pieces = [whole.subarray(0, 2), whole.subarray(2, 7), whole.subarray(7)];
    const raw = await rawRequest(session!, echo.path, pieces);
    assert.equal(statusOf(raw), grpc.status.OK);
    assert.equal(raw.data.subarray(5).toString(), 'reassembled');
    assert.equal(raw.data.readUInt32BE(1), 'reassembled'.length);
    assert.equal(f.echoCalls[0]!.toString(), 'reassembled');
  });

  it('a unary call with no message, or with two, is refused and the handler not called', async () => {
    const f = await start();
    const none = await rawRequest(session!, echo.path, []);
    assert.equal(statusOf(none), grpc.status.UNIMPLEMENTED);
    const two = await rawRequest(session!, echo.path, [frame(Buffer.from('a')), frame(Buffer.from('b'))]);
    assert.equal(statusOf(two), grpc.status.UNIMPLEMENTED);
    assert.equal(f.echoCalls.length, 0);
  });

  it('an error status reaches the client with its message intact (percent-encoded on the wire)', async () => {
    await start();
    await assert.rejects(unary(client!, echo.path, Buffer.from('fail')).result, {
      code: grpc.status.FAILED_PRECONDITION,
      details: 'naïve 100% ✓',
    });
    assert.equal(encodeGrpcMessage('plain text'), 'plain text');
    assert.equal(encodeGrpcMessage('100%\n'), '100%25%0A');
  });

  it('grpc-timeout parses every unit; absent or malformed means no deadline', () => {
    assert.equal(parseGrpcTimeoutMs('100m'), 100);
    assert.equal(parseGrpcTimeoutMs('5S'), 5000);
    assert.equal(parseGrpcTimeoutMs('2M'), 120_000);
    assert.equal(parseGrpcTimeoutMs('1H'), 3_600_000);
    assert.equal(parseGrpcTimeoutMs('3000u'), 3);
    assert.equal(parseGrpcTimeoutMs('2000000n'), 2);
    assert.equal(parseGrpcTimeoutMs(undefined), undefined);
    assert.equal(parseGrpcTimeoutMs('5'), undefined);
    assert.equal(parseGrpcTimeoutMs('123456789S'), undefined, 'more than 8 digits');
    assert.equal(parseGrpcTimeoutMs('99999999H'), undefined, 'beyond what a timer holds');
  });

  it('a passed grpc-timeout answers DEADLINE_EXCEEDED and aborts the handler signal', async () => {
    const f = await start();
    const raw = await rawRequest(session!, slow.path, [frame(Buffer.from('x'))], { 'grpc-timeout': '50m' });
    assert.equal(statusOf(raw), grpc.status.DEADLINE_EXCEEDED);
    assert.equal(f.slowSignals.length, 1);
    assert.equal(f.slowSignals[0]!.aborted, true);
  });

  it('a client that cancels aborts the handler signal', async () => {
    const f = await start();
    const { call, result } = unary(client!, slow.path, Buffer.from('x'));
    result.catch(() => {});
    await waitFor(() => f.slowSignals.length === 1, 'the handler to start');
    assert.equal(f.slowSignals[0]!.aborted, false);
    call.cancel();
    await waitFor(() => f.slowSignals[0]!.aborted, 'the signal to abort');
  });

  it("a streaming call's error status arrives after the messages queued before it", async () => {
    const f = await start();
    f.chatScript = (call) => {
      call.onMessage = (message) => {
        for (let i = 0; i < 3; i++) call.write(Buffer.from(`${message}-${i}`));
        call.fail(new ApiRequestError(grpc.status.RESOURCE_EXHAUSTED, 'stop here'));
      };
    };
    const stream = openChatStream();
    const received: string[] = [];
    stream.on('data', (message: Buffer) => received.push(message.toString()));
    const ended = new Promise<grpc.ServiceError>((resolve) => stream.on('error', resolve));
    stream.write(Buffer.from('m'));
    const error = await ended;
    assert.equal(error.code, grpc.status.RESOURCE_EXHAUSTED);
    assert.equal(error.details, 'stop here');
    assert.deepEqual(received, ['m-0', 'm-1', 'm-2']);
  });

  it('a bidi stream that the client half-closes can still be answered, then ends OK', async () => {
    const f = await start();
    f.chatScript = (call) => {
      const seen: string[] = [];
      call.onMessage = (message) => seen.push(String(message));
      call.onHalfClose = () => {
        call.write(Buffer.from(seen.join('+')));
        call.end();
      };
    };
    const stream = openChatStream();
    const received: string[] = [];
    stream.on('data', (message: Buffer) => received.push(message.toString()));
    const status = new Promise<grpc.StatusObject>((resolve) => stream.on('status', resolve));
    stream.write(Buffer.from('a'));
    stream.write(Buffer.from('b'));
    stream.end();
    assert.equal((await status).code, grpc.status.OK);
    assert.deepEqual(received, ['a+b']);
  });

  it('write answers false against a slow reader, and onDrain fires once it reads again', async () => {
    const f = await start();
    const request = session!.request({
      ':method': 'POST',
      ':path': feed.path,
      'content-type': 'application/grpc',
      te: 'trailers',
    });
    request.on('error', () => {});
    request.pause();
    request.end(frame(Buffer.from('go')));
    await waitFor(() => f.feedCalls.length === 1, 'the feed to start');
    const call = f.feedCalls[0]!;
    let drained = 0;
    call.onDrain = () => drained++;
    const chunk = Buffer.alloc(4096, 1);
    let written = 0;
    // HTTP/2 flow control (64 KiB window) holds the rest: write must refuse well before 1 MiB.
    while (call.write(chunk)) {
      written++;
      assert.ok(written < 256, 'write never reported a full buffer');
    }
    assert.ok(call.queuedMessages > 0);
    const writable = call.whenWritable();
    let bytes = 0;
    request.on('data', (data: Buffer) => {
      bytes += data.length;
    });
    request.resume();
    await writable;
    await waitFor(() => drained > 0, 'onDrain');
    call.end();
    await new Promise<void>((resolve) => request.on('close', () => resolve()));
    assert.equal(bytes, (written + 1) * (chunk.length + 5), 'every queued message arrived');
    assert.equal(call.queuedMessages, 0);
  });

  it('a client that goes away cancels its streaming call', async () => {
    const { stream, cancelled } = await openChat(await start());
    stream.cancel();
    await waitFor(cancelled, 'onCancel');
  });

  it('close(grace) lets an in-flight unary finish, then frees every connection and the port', async () => {
    const f = await start();
    const { result } = unary(client!, slow.path, Buffer.from('finish me'));
    await waitFor(() => f.slowSignals.length === 1, 'the handler to start');
    const closed = f.server.close(waitMs);
    setTimeout(() => f.releaseSlow(), 100);
    assert.equal((await result).toString(), 'finish me');
    await closed;
    assert.equal(f.slowSignals[0]!.aborted, false);
    assert.equal(f.server.sessionCount, 0);
    // The port is free again: a fresh server can bind it.
    const again = new H2GrpcServer({ receiveMessageBytesMax, toStatus: toWireStatus });
    assert.equal(await again.listen(f.port, '127.0.0.1'), f.port);
    await again.close(0);
  });

  it('close(grace) ends calls that outlive the grace period', async () => {
    const f = await start();
    const { cancelled } = await openChat(f);
    const started = Date.now();
    await f.server.close(100);
    assert.ok(Date.now() - started < waitMs);
    assert.equal(cancelled(), true);
    assert.equal(f.server.sessionCount, 0);
  });
});
